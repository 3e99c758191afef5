"""Small typed records shared by several modules (layer 2).

- :mod:`.user`: the user identity carried in request contexts and in event metadata.

Other records (task and service records) live with the packages that own them and move here only
when a second package needs them.
"""

from .user import UserData, UserRole

__all__ = ("UserData", "UserRole")
