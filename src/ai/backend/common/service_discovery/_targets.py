"""Rendering of Prometheus HTTP SD target groups (private; see :mod:`.prometheus`)."""

from __future__ import annotations

import re
from typing import Any

from .types import ServiceMetadata

__all__ = ("META_LABEL_PREFIX", "prometheus_label_name", "target_group")

META_LABEL_PREFIX = "__meta_backendai_"
"""Prefix of the relabeling labels added to each target group."""

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def prometheus_label_name(name: str) -> str:
    """``name`` with every character Prometheus rejects replaced by ``_`` (valid names kept)."""
    cleaned = _INVALID.sub("_", name) or "_"
    return f"_{cleaned}" if cleaned[0].isdigit() else cleaned


def target_group(record: ServiceMetadata, *, meta_labels: bool) -> dict[str, Any] | None:
    """The target group of one record (``None`` without a ``prometheus_address``).

    It does not depend on the record's health status, so a cache may keep it across heartbeats.
    """
    endpoint = record.endpoint
    if not endpoint.prometheus_address:
        return None
    service_id = str(record.id)
    labels = {prometheus_label_name(k): v for k, v in record.labels.items()}
    labels["service_id"] = service_id
    labels["service_group"] = record.service_group
    labels["display_name"] = record.display_name
    labels["version"] = record.version
    if meta_labels:
        m = META_LABEL_PREFIX
        labels[m + "service_id"] = service_id
        labels[m + "service_group"] = record.service_group
        labels[m + "display_name"] = record.display_name
        labels[m + "version"] = record.version
        labels[m + "address"] = endpoint.address
        labels[m + "port"] = str(endpoint.port)
        labels[m + "protocol"] = endpoint.protocol
        for k, v in record.labels.items():
            labels[m + "label_" + prometheus_label_name(k)] = v
    return {"targets": [endpoint.prometheus_address], "labels": labels}
