"""Volume mount events (broadcast, domain ``volume``)."""

from __future__ import annotations

from ..event import AbstractBroadcastEvent
from ..types import EventDomain

__all__ = (
    "DoVolumeMountEvent",
    "DoVolumeUnmountEvent",
    "VolumeMountedEvent",
    "VolumeUnmountedEvent",
)


class _VolumeEvent(AbstractBroadcastEvent, domain=EventDomain.VOLUME):
    pass


class DoVolumeMountEvent(_VolumeEvent, name="do_volume_mount"):
    """Ask storage proxies and agents to mount a volume (``quota_scope_id`` as text)."""

    dir_name: str
    volume_backend_name: str
    quota_scope_id: str
    fs_location: str
    fs_type: str = "nfs"
    cmd_options: str | None = None
    scaling_group: str | None = None
    edit_fstab: bool = False
    fstab_path: str = "/etc/fstab"


class DoVolumeUnmountEvent(_VolumeEvent, name="do_volume_unmount"):
    """Ask storage proxies and agents to unmount a volume."""

    dir_name: str
    volume_backend_name: str
    quota_scope_id: str
    scaling_group: str | None = None
    edit_fstab: bool = False
    fstab_path: str | None = None


class _AgentVolumeMountEvent(_VolumeEvent):
    node_id: str
    node_type: str
    mount_path: str
    quota_scope_id: str
    err_msg: str | None = None


class VolumeMountedEvent(_AgentVolumeMountEvent, name="volume_mounted"):
    """A node mounted a volume (``err_msg`` set on failure)."""


class VolumeUnmountedEvent(_AgentVolumeMountEvent, name="volume_unmounted"):
    """A node unmounted a volume (``err_msg`` set on failure)."""
