"""Tests of the real-server harness (tests/_harness)."""
