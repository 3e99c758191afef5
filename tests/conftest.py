"""Root conftest of the test suite: loads the real-server harness and pytester.

The fixtures (``redis_server``, ``redis_url``, ``redis_server_factory``, ``redis_sentinel``,
``etcd_server``, ``etcd_endpoint``, ``etcd_cluster``), the automatic ``redis``/``sentinel``/
``etcd`` markers and the autouse check that no asyncio task outlives its test live in
`tests._harness.plugin`; the process handling lives beside it in ``tests/_harness/``.
"""

pytest_plugins = ["pytester", "tests._harness.plugin"]
