"""Pydantic request and response models of the common agent RPC methods.

Requests list the arguments of upstream's agent RPC methods in their wire order; responses
ignore unknown fields, so a newer agent that adds one does not break us.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from ...dto import BaseRequestModel, BaseResponseModel

__all__ = (
    "CreateKernelsRequest",
    "DestroyKernelRequest",
    "ExecuteRequest",
    "ExecuteResult",
    "FileListing",
    "KernelLogs",
    "PurgeImagesRequest",
    "PurgeImagesResult",
    "RestartKernelRequest",
    "UploadFileRequest",
)


class CreateKernelsRequest(BaseRequestModel):
    """Arguments of ``create_kernels`` (one session's kernels on this agent)."""

    session_id: str
    kernel_ids: list[str]
    kernel_configs: list[dict[str, Any]]
    cluster_info: dict[str, Any]
    kernel_image_refs: dict[str, Any] = Field(default_factory=dict)


class DestroyKernelRequest(BaseRequestModel):
    """Arguments of ``destroy_kernel``."""

    kernel_id: str
    session_id: str
    reason: str
    suppress_events: bool = True


class RestartKernelRequest(BaseRequestModel):
    """Arguments of ``restart_kernel``."""

    session_id: str
    kernel_id: str
    image_ref: Any
    update_config: dict[str, Any] = Field(default_factory=dict)


class ExecuteRequest(BaseRequestModel):
    """Arguments of ``execute`` (run code or a batch command in a kernel)."""

    session_id: str
    kernel_id: str
    major_api_version: int
    run_id: str | None
    mode: str
    code: str
    opts: dict[str, Any] = Field(default_factory=dict)
    flush_timeout: float | None = None


class UploadFileRequest(BaseRequestModel):
    """Arguments of ``upload_file``."""

    kernel_id: str
    filename: str
    payload: bytes


class PurgeImagesRequest(BaseRequestModel):
    """Arguments of ``purge_images``."""

    images: list[str]
    force: bool = False
    noprune: bool = False


class ExecuteResult(BaseResponseModel):
    """What ``execute`` answers (upstream's camelCase keys)."""

    model_config = ConfigDict(populate_by_name=True)

    status: str
    run_id: str | None = Field(default=None, alias="runId")
    exit_code: int | None = Field(default=None, alias="exitCode")
    console: list[Any] = Field(default_factory=list)
    options: dict[str, Any] | None = None
    files: list[Any] = Field(default_factory=list)


class FileListing(BaseResponseModel):
    """What ``list_files`` answers: ``files`` is the agent's JSON text of entries."""

    files: str = ""
    errors: str = ""
    abspath: str = ""


class KernelLogs(BaseResponseModel):
    """What ``get_logs`` answers."""

    logs: str = ""


class PurgeImagesResult(BaseResponseModel):
    """What ``purge_images`` answers: one entry per image."""

    responses: list[dict[str, Any]] = Field(default_factory=list)
