"""Pins the Flower internals fedad's transport relies on (server/transport.py); a Flower upgrade that moves or
changes one of them fails here first, with the name of what changed."""

from __future__ import annotations

import inspect

import flwr


def test_flower_version_is_the_pinned_minor():
    assert flwr.__version__.startswith(("1.41.", "1.42.")), flwr.__version__


def test_server_side_internals():
    from flwr.proto.transport_pb2_grpc import FlowerServiceServicer as Base
    from flwr.proto.transport_pb2_grpc import add_FlowerServiceServicer_to_server
    from flwr.server.server import run_fl
    from flwr.server.superlink.fleet.grpc_bidi.flower_service_servicer import FlowerServiceServicer
    from flwr.server.superlink.fleet.grpc_bidi.grpc_client_proxy import GrpcClientProxy
    from flwr.supercore.exit import register_signal_handlers
    from flwr.supercore.telemetry import EventType

    assert issubclass(FlowerServiceServicer, Base) and callable(add_FlowerServiceServicer_to_server)
    params = inspect.signature(FlowerServiceServicer.__init__).parameters
    assert {"client_manager", "grpc_client_proxy_factory"} <= set(params)
    assert list(inspect.signature(FlowerServiceServicer.Join).parameters) == ["self", "request_iterator", "context"]
    # the proxy factory is what lets fedad attach the connection's identity to its client proxy
    assert "self.client_proxy_factory(cid, bridge)" in inspect.getsource(FlowerServiceServicer.Join)
    assert {"cid", "bridge"} <= set(inspect.signature(GrpcClientProxy.__init__).parameters)
    assert list(inspect.signature(run_fl).parameters) == ["server", "config"]
    assert {"event_type", "exit_message", "grpc_servers"} <= set(inspect.signature(register_signal_handlers).parameters)
    assert hasattr(EventType, "START_SERVER_LEAVE")
    # what fedad replaces: Flower's own server builder still hard-codes server-side-only TLS
    from flwr.supercore import grpc as flwr_grpc

    assert "require_client_auth=False" in inspect.getsource(flwr_grpc.generic_create_grpc_server)


def test_client_side_internals():
    from flwr.compat.client.grpc_client import connection

    # grpc_connection looks up create_channel in its module at call time: fedad swaps that name
    assert callable(connection.create_channel)
    assert "create_channel(" in inspect.getsource(connection.grpc_connection)
    params = inspect.signature(connection.create_channel).parameters
    assert list(params)[:4] == ["server_address", "insecure", "root_certificates", "max_message_length"]
    from flwr.compat.client.app import start_client

    params = inspect.signature(start_client).parameters
    assert {"root_certificates", "insecure", "grpc_max_message_length"} <= set(params)


def test_grpc_poll_race_is_silenced_and_nothing_else():
    """grpc's connectivity poller may find its channel closed under it when a client's retried connection is torn
    down, in either of two words ('Cannot monitor channel state' or, as CI once printed, 'Cannot invoke RPC'):
    the client's log must not carry that traceback, but must carry every other thread's error."""
    import threading

    import grpc._channel

    from fedad.server import transport

    assert callable(grpc._channel._poll_connectivity)  # the poller the filter recognises by name

    def _poll_connectivity(message):  # named as grpc's poller
        raise ValueError(message)

    def elsewhere(message):
        raise ValueError(message)

    seen: list[str] = []
    saved = threading.excepthook
    threading.excepthook = lambda args: seen.append(str(args.exc_value))
    try:
        transport._quiet_grpc_thread_errors()
        for target, message in [
            (_poll_connectivity, "Cannot monitor channel state: Channel closed!"),
            (_poll_connectivity, "Cannot invoke RPC: Channel closed!"),
            (_poll_connectivity, "something else"),
            (elsewhere, "Cannot invoke RPC: Channel closed!"),
        ]:
            t = threading.Thread(target=target, args=(message,))
            t.start()
            t.join()
    finally:
        threading.excepthook = saved
    assert seen == ["something else", "Cannot invoke RPC: Channel closed!"]
