"""A typed façade over the agent RPC methods that managers call most.

Method names and argument order follow upstream's manager ``AgentClient`` (which calls
``rpc.call.<name>(*args, agent_id=...)``); ``agent_id`` is sent only when the façade has one,
as agents before the multi-agent runtime do not take it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .exceptions import AgentProtocolError
from .models import (
    CreateKernelsRequest,
    DestroyKernelRequest,
    ExecuteRequest,
    ExecuteResult,
    FileListing,
    KernelLogs,
    PurgeImagesRequest,
    PurgeImagesResult,
    RestartKernelRequest,
    UploadFileRequest,
)
from .pool import AgentPeer

__all__ = ("AgentClient",)

M = TypeVar("M", bound=BaseModel)


class AgentClient:
    """Typed calls to one agent through an :class:`~.pool.AgentPeer`; raises ``AgentRPCError``."""

    __slots__ = ("_agent_id", "_peer", "_timeout")

    def __init__(
        self, peer: AgentPeer, *, agent_id: str | None = None, timeout: float | None = None
    ) -> None:
        self._peer = peer
        self._agent_id = agent_id
        self._timeout = timeout

    @property
    def address(self) -> str:
        """The agent's RPC address."""
        return self._peer.address

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._agent_id is not None:
            kwargs["agent_id"] = self._agent_id
        if self._timeout is None:
            return await self._peer.invoke(method, args, kwargs)
        return await self._peer.invoke(method, args, kwargs, timeout=self._timeout)

    def _parse(self, method: str, model: type[M], value: Any) -> M:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise AgentProtocolError(
                f"{method} on agent at {self.address} answered an unexpected shape: {exc}",
                data={"method": method, "address": self.address},
            ) from exc

    # -- liveness and hardware ----------------------------------------------------------------

    async def ping(self, msg: str = "ping") -> str:
        """Round-trip ``msg`` through the agent."""
        return str(await self._peer.invoke("ping", (msg,), timeout=self._timeout or 10.0))

    async def health(self) -> dict[str, Any]:
        """The agent's lightweight health report."""
        return dict(await self._call("health"))

    async def gather_hwinfo(self) -> dict[str, Any]:
        """Hardware information per device plugin."""
        return dict(await self._call("gather_hwinfo"))

    async def scan_gpu_alloc_map(self) -> dict[str, Any]:
        """The GPU allocation map of the agent."""
        return dict(await self._call("scan_gpu_alloc_map"))

    # -- images ---------------------------------------------------------------------------------

    async def check_and_pull(
        self, image_configs: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, str]:
        """Pull the images that are missing; returns a background-task id per image."""
        result = await self._call("check_and_pull", dict(image_configs))
        return {str(k): str(v) for k, v in dict(result).items()}

    async def purge_images(self, request: PurgeImagesRequest) -> PurgeImagesResult:
        """Remove images from the agent."""
        result = await self._call("purge_images", request.images, request.force, request.noprune)
        return self._parse("purge_images", PurgeImagesResult, result)

    # -- kernels --------------------------------------------------------------------------------

    async def create_kernels(self, request: CreateKernelsRequest) -> Any:
        """Create a session's kernels on the agent."""
        return await self._call(
            "create_kernels",
            request.session_id,
            request.kernel_ids,
            request.kernel_configs,
            request.cluster_info,
            request.kernel_image_refs,
        )

    async def destroy_kernel(self, request: DestroyKernelRequest) -> None:
        """Destroy one kernel."""
        await self._call(
            "destroy_kernel",
            request.kernel_id,
            request.session_id,
            request.reason,
            suppress_events=request.suppress_events,
        )

    async def restart_kernel(self, request: RestartKernelRequest) -> dict[str, Any]:
        """Restart one kernel with an updated config."""
        result = await self._call(
            "restart_kernel",
            request.session_id,
            request.kernel_id,
            request.image_ref,
            request.update_config,
        )
        return dict(result)

    async def execute(self, request: ExecuteRequest) -> ExecuteResult:
        """Run code (or continue a run) in a kernel."""
        result = await self._call(
            "execute",
            request.session_id,
            request.kernel_id,
            request.major_api_version,
            request.run_id,
            request.mode,
            request.code,
            request.opts,
            request.flush_timeout,
        )
        return self._parse("execute", ExecuteResult, result)

    async def interrupt_kernel(self, kernel_id: str) -> dict[str, Any]:
        """Interrupt the running code of a kernel."""
        return dict(await self._call("interrupt_kernel", kernel_id))

    async def get_logs(self, kernel_id: str) -> KernelLogs:
        """The container logs of a kernel."""
        return self._parse("get_logs", KernelLogs, await self._call("get_logs", kernel_id))

    # -- files ----------------------------------------------------------------------------------

    async def upload_file(self, request: UploadFileRequest) -> dict[str, Any]:
        """Write a file into a kernel's work directory."""
        result = await self._call(
            "upload_file", request.kernel_id, request.filename, request.payload
        )
        return {} if result is None else dict(result)

    async def download_file(self, kernel_id: str, filepath: str) -> bytes:
        """A file or directory of a kernel, as the agent's tar archive bytes."""
        return bytes(await self._call("download_file", kernel_id, filepath))

    async def download_single(self, kernel_id: str, filepath: str) -> bytes:
        """One file of a kernel, as raw bytes."""
        return bytes(await self._call("download_single", kernel_id, filepath))

    async def list_files(self, kernel_id: str, path: str) -> FileListing:
        """List a directory inside a kernel."""
        result = await self._call("list_files", kernel_id, path)
        return self._parse("list_files", FileListing, result)
