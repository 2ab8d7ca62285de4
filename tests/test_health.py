"""The client's liveness file: fresh while the channel is READY, gone when it is not."""

from __future__ import annotations

import os
import time

import grpc

from fedad.client.health import LinkHealth, is_healthy, main


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_health_file_follows_the_channel_state(tmp_path):
    path = tmp_path / "run" / "health"
    path.parent.mkdir()
    path.write_text("stale from an earlier run\n")
    health = LinkHealth(path, "host:8080", interval=0.2).start()
    try:
        assert not path.exists()  # an earlier run's file never reads as this run's liveness
        health.on_state(grpc.ChannelConnectivity.CONNECTING)
        assert not _wait(path.exists, 0.6)
        health.on_state(grpc.ChannelConnectivity.READY)
        assert _wait(path.exists)
        assert is_healthy(path)[0] and main([str(path)]) == 0
        first = path.stat().st_mtime
        assert _wait(lambda: path.exists() and path.stat().st_mtime > first)  # refreshed while READY
        health.on_state(grpc.ChannelConnectivity.TRANSIENT_FAILURE)  # keepalive found the stream dead
        assert _wait(lambda: not path.exists())
        assert not is_healthy(path)[0] and main([str(path)]) == 1
        health.on_state(grpc.ChannelConnectivity.READY)
        assert _wait(path.exists)
    finally:
        health.stop()
    assert not path.exists()  # removed at exit


def test_a_file_not_refreshed_in_time_is_unhealthy(tmp_path):
    path = tmp_path / "health"
    path.write_text("{}\n")
    assert is_healthy(path, max_age=30)[0]
    old = time.time() - 120
    os.utime(path, (old, old))  # a stopped process stops refreshing it
    ok, why = is_healthy(path, max_age=30)
    assert not ok and "120 s ago" in why
