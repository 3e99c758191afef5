"""Agent RPC over ZeroMQ, wire-compatible with callosum (which real Backend.AI agents serve).

:class:`AgentRPCPool` keeps one connection per agent address in one ZeroMQ context and calls
methods with upstream's ``{"args": [...], "kwargs": {...}}`` msgpack bodies; :class:`AgentPeer`
is a handle on one agent and :class:`AgentClient` a typed façade over upstream's agent methods.
:class:`AgentRPCServer` dispatches method names to handlers (tests, building agents). The
caller's context bundle (request id, users, traceparent) and remaining deadline travel in the
callosum header under ``ctx``, a key callosum's decoder never reads.

Guarantees:
- failed connects release their sockets at once: 10,000 of them leave threads and descriptors
  flat [tests/clients/agent/test_pool.py::test_failed_connects_do_not_leak];
- calls to one agent reuse one connection; idle connections are evicted
  [tests/clients/agent/test_pool.py::test_connection_reused_and_evicted];
- a deadline or a cancelled caller cancels the remote handler
  [tests/clients/agent/test_pool.py::test_deadline_cancels_remote_handler];
- the context bundle reaches the handler
  [tests/clients/agent/test_pool.py::test_context_bundle_reaches_handler];
- a killed agent yields a ``BackendAIError``, opens the breaker, and calls resume after it
  restarts [tests/clients/agent/test_chaos.py::test_agent_killed_mid_call];
- callosum peers and ours call each other both ways [tests/clients/agent/test_interop.py];
- the typed :class:`AgentClient` sends upstream's method names and argument order
  [tests/clients/agent/test_client.py::test_facade_wire_calls];
- remote exceptions come back as :class:`AgentRemoteError` with their type and message
  [tests/clients/agent/test_server.py::test_remote_error_carried].

Limits:
- callosum's snappy compression is not supported (callosum 1.x never compresses RPC messages);
  a compressed message is rejected with :class:`AgentProtocolError`
  [tests/clients/agent/test_wire.py::test_compressed_rejected];
- datetimes are not encoded (upstream uses temporenc); pass ISO strings
  [tests/clients/agent/test_wire.py::test_codec_matches_upstream_ext_types].
"""

from .client import AgentClient
from .exceptions import (
    AgentAuthenticationFailed,
    AgentCallCancelled,
    AgentCallTimeout,
    AgentCircuitOpen,
    AgentConnectionLost,
    AgentInvalidArgument,
    AgentMethodNotFound,
    AgentPoolClosed,
    AgentProtocolError,
    AgentRemoteError,
    AgentRPCError,
    AgentUnreachable,
)
from .metrics import AgentRPCMetrics
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
from .policy import agent_policy
from .pool import AgentPeer, AgentRPCPool
from .server import AgentRPCServer, RPCHandler
from .types import (
    AgentPoolStatistics,
    AgentServerStatistics,
    CurveKeyPair,
    generate_keypair,
)

__all__ = (
    "AgentAuthenticationFailed",
    "AgentCallCancelled",
    "AgentCallTimeout",
    "AgentCircuitOpen",
    "AgentClient",
    "AgentConnectionLost",
    "AgentInvalidArgument",
    "AgentMethodNotFound",
    "AgentPeer",
    "AgentPoolClosed",
    "AgentPoolStatistics",
    "AgentProtocolError",
    "AgentRPCError",
    "AgentRPCMetrics",
    "AgentRPCPool",
    "AgentRPCServer",
    "AgentRemoteError",
    "AgentServerStatistics",
    "AgentUnreachable",
    "CreateKernelsRequest",
    "CurveKeyPair",
    "DestroyKernelRequest",
    "ExecuteRequest",
    "ExecuteResult",
    "FileListing",
    "KernelLogs",
    "PurgeImagesRequest",
    "PurgeImagesResult",
    "RPCHandler",
    "RestartKernelRequest",
    "UploadFileRequest",
    "agent_policy",
    "generate_keypair",
)
