"""Client of the storage proxy's manager-facing API (volumes, folders, quota scopes, files).

Paths, methods and bodies follow upstream's storage-proxy manager API; every request carries the
``X-BackendAI-Storage-Auth-Token`` header. Errors are :class:`~.exceptions.StorageProxyError`
subclasses chosen by status, carrying the body's ``error_code`` when there is one.

Guarantees:
- each method sends upstream's method, path and JSON body and parses the answer into its model
  [tests/clients/http/test_storage_proxy.py::test_volumes_folders_quotas_files];
- error statuses map to the error classes above with the upstream error code
  [tests/clients/http/test_storage_proxy.py::test_errors_carry_upstream_code].
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from pydantic import BaseModel, Field, ValidationError

from ...dto import BaseRequestModel, BaseResponseModel
from .exceptions import StorageProxyError, status_error_class
from .pool import HTTPSessionPool

__all__ = (
    "AUTH_HEADER",
    "FolderUsage",
    "QuotaScopeUsage",
    "StorageProxyClient",
    "StorageProxyStatus",
    "VFolderEntry",
    "VFolderListing",
    "VolumeInfo",
    "VolumeList",
)

AUTH_HEADER: Final = "X-BackendAI-Storage-Auth-Token"

M = TypeVar("M", bound=BaseModel)


class StorageProxyStatus(BaseResponseModel):
    """``GET /``: the proxy's status and version."""

    status: str
    type: str | None = None
    storage_proxy: str | None = Field(default=None, alias="storage-proxy")


class VolumeInfo(BaseResponseModel):
    """One volume of ``GET /volumes``."""

    name: str
    backend: str
    path: str
    fsprefix: str | None = None
    capabilities: list[str] = Field(default_factory=list)


class VolumeList(BaseResponseModel):
    """``GET /volumes``."""

    volumes: list[VolumeInfo]


class QuotaScopeUsage(BaseResponseModel):
    """``GET /quota-scope``: bytes used and the limit (``None`` when unknown or unlimited)."""

    used_bytes: int | None = None
    limit_bytes: int | None = None


class FolderUsage(BaseResponseModel):
    """``GET /folder/usage``."""

    file_count: int
    used_bytes: int


class VFolderEntry(BaseResponseModel):
    """One directory entry of ``POST /folder/file/list``."""

    name: str
    type: str
    stat: dict[str, Any] = Field(default_factory=dict)
    symlink_target: str | None = None


class VFolderListing(BaseResponseModel):
    """``POST /folder/file/list``."""

    items: list[VFolderEntry]


class _QuotaOptions(BaseRequestModel):
    limit_bytes: int = Field(ge=0)


class StorageProxyClient:
    """The manager-facing API of one storage proxy, over a shared :class:`HTTPSessionPool`."""

    def __init__(
        self, pool: HTTPSessionPool, endpoint: str, secret: str, *, timeout: float | None = None
    ) -> None:
        self._pool = pool
        self._endpoint = endpoint
        self._credentials = {AUTH_HEADER: secret}
        self._timeout = timeout

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        kwargs: dict[str, Any] = {}
        if self._timeout is not None:
            kwargs["timeout"] = self._timeout
        response = await self._pool.request(
            method,
            self._endpoint,
            path,
            credentials=self._credentials,
            json=body,
            error_class=status_error_class,
            **kwargs,
        )
        return response.json()

    def _parse(self, path: str, model: type[M], value: Any) -> M:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise StorageProxyError(
                f"storage proxy answered {path} with an unexpected shape: {exc}",
                data={"path": path},
            ) from exc

    # -- status and volumes -------------------------------------------------------------------

    async def get_status(self) -> StorageProxyStatus:
        """``GET /``."""
        return self._parse("/", StorageProxyStatus, await self._call("GET", "/"))

    async def get_volumes(self) -> list[VolumeInfo]:
        """``GET /volumes``."""
        return self._parse("/volumes", VolumeList, await self._call("GET", "/volumes")).volumes

    async def get_hwinfo(self, volume: str) -> dict[str, Any]:
        """``GET /volume/hwinfo``: the volume's hardware status."""
        return dict(await self._call("GET", "/volume/hwinfo", {"volume": volume}) or {})

    # -- quota scopes -------------------------------------------------------------------------

    async def create_quota_scope(
        self, volume: str, qsid: str, *, limit_bytes: int | None = None
    ) -> None:
        """``POST /quota-scope``."""
        options = None if limit_bytes is None else _QuotaOptions(limit_bytes=limit_bytes)
        body = {"volume": volume, "qsid": qsid, "options": _dump(options)}
        await self._call("POST", "/quota-scope", body)

    async def get_quota_scope(self, volume: str, qsid: str) -> QuotaScopeUsage:
        """``GET /quota-scope``."""
        result = await self._call("GET", "/quota-scope", {"volume": volume, "qsid": qsid})
        return self._parse("/quota-scope", QuotaScopeUsage, result)

    async def update_quota_scope(self, volume: str, qsid: str, *, limit_bytes: int) -> None:
        """``PATCH /quota-scope``: set the quota (creates the scope when missing)."""
        options = _QuotaOptions(limit_bytes=limit_bytes)
        body = {"volume": volume, "qsid": qsid, "options": _dump(options)}
        await self._call("PATCH", "/quota-scope", body)

    async def unset_quota(self, volume: str, qsid: str) -> None:
        """``DELETE /quota-scope/quota``."""
        await self._call("DELETE", "/quota-scope/quota", {"volume": volume, "qsid": qsid})

    # -- folders ------------------------------------------------------------------------------

    async def create_folder(
        self,
        volume: str,
        vfid: str,
        *,
        mode: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """``POST /folder/create``."""
        body = {"volume": volume, "vfid": vfid, "mode": mode, "options": options}
        await self._call("POST", "/folder/create", body)

    async def delete_folder(self, volume: str, vfid: str) -> None:
        """``POST /folder/delete`` (the proxy deletes in the background)."""
        await self._call("POST", "/folder/delete", {"volume": volume, "vfid": vfid})

    async def clone_folder(self, src_volume: str, src_vfid: str, dst_vfid: str) -> None:
        """``POST /folder/clone``."""
        body = {"src_volume": src_volume, "src_vfid": src_vfid, "dst_vfid": dst_vfid}
        await self._call("POST", "/folder/clone", body)

    async def get_mount(self, volume: str, vfid: str, subpath: str = ".") -> str:
        """``GET /folder/mount``: the host path of a folder."""
        body = {"volume": volume, "vfid": vfid, "subpath": subpath}
        result = await self._call("GET", "/folder/mount", body)
        return str(result["path"]) if isinstance(result, dict) else str(result)

    async def get_usage(self, volume: str, vfid: str) -> FolderUsage:
        """``GET /folder/usage``."""
        result = await self._call("GET", "/folder/usage", {"volume": volume, "vfid": vfid})
        return self._parse("/folder/usage", FolderUsage, result)

    async def get_used_bytes(self, volume: str, vfid: str) -> int:
        """``GET /folder/used-bytes``."""
        result = await self._call("GET", "/folder/used-bytes", {"volume": volume, "vfid": vfid})
        return int(result["used_bytes"])

    # -- files --------------------------------------------------------------------------------

    async def mkdir(
        self,
        volume: str,
        vfid: str,
        relpath: str,
        *,
        parents: bool = True,
        exist_ok: bool = False,
    ) -> None:
        """``POST /folder/file/mkdir``."""
        body = {
            "volume": volume,
            "vfid": vfid,
            "relpath": relpath,
            "parents": parents,
            "exist_ok": exist_ok,
        }
        await self._call("POST", "/folder/file/mkdir", body)

    async def list_files(self, volume: str, vfid: str, relpath: str = ".") -> list[VFolderEntry]:
        """``POST /folder/file/list``."""
        body = {"volume": volume, "vfid": vfid, "relpath": relpath}
        result = await self._call("POST", "/folder/file/list", body)
        return self._parse("/folder/file/list", VFolderListing, result).items

    async def rename_file(self, volume: str, vfid: str, relpath: str, new_name: str) -> None:
        """``POST /folder/file/rename``."""
        body = {"volume": volume, "vfid": vfid, "relpath": relpath, "new_name": new_name}
        await self._call("POST", "/folder/file/rename", body)

    async def move_file(self, volume: str, vfid: str, src_relpath: str, dst_relpath: str) -> None:
        """``POST /folder/file/move``."""
        body = {
            "volume": volume,
            "vfid": vfid,
            "src_relpath": src_relpath,
            "dst_relpath": dst_relpath,
        }
        await self._call("POST", "/folder/file/move", body)

    async def delete_files(
        self, volume: str, vfid: str, relpaths: list[str], *, recursive: bool = False
    ) -> None:
        """``POST /folder/file/delete``."""
        body = {"volume": volume, "vfid": vfid, "relpaths": relpaths, "recursive": recursive}
        await self._call("POST", "/folder/file/delete", body)

    async def create_download_session(
        self, volume: str, vfid: str, relpath: str, *, archive: bool = False
    ) -> str:
        """``POST /folder/file/download``: a token for the client-facing download API."""
        body = {"volume": volume, "vfid": vfid, "relpath": relpath, "archive": archive}
        return str((await self._call("POST", "/folder/file/download", body))["token"])

    async def create_upload_session(self, volume: str, vfid: str, relpath: str, size: int) -> str:
        """``POST /folder/file/upload``: a token for the client-facing upload API."""
        body = {"volume": volume, "vfid": vfid, "relpath": relpath, "size": str(size)}
        return str((await self._call("POST", "/folder/file/upload", body))["token"])


def _dump(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump()
