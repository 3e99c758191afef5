"""backend.ai-common: the shared foundation of the Backend.AI platform.

Events, background tasks, message queues, clients (Redis/Valkey, etcd, agent RPC, storage
proxy), service discovery, resilience policies, metrics, auth and web plumbing, configuration
loading and the common domain types. See ``README.md`` for the module map and DESIGN.md for
the layers each module belongs to.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("backend.ai-common")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ("__version__",)
