"""The ``backend.ai-common`` command: operator tools and the demo (layer 7).

This is the only package that wires every layer together; nothing imports it.
"""

from .main import main

__all__ = ("main",)
