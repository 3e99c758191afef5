"""Transport clients of layer 4: one subpackage per external service (``valkey``, ``etcd``, ...),
each with an abstract interface, a real backend and, where it helps tests, an in-memory backend
that passes the same conformance suite; no client raises a third-party library's error.
"""
