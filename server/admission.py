"""Who takes part in a round: connections that passed admission (features checked), and dropping the others.

An idle or silent connection never passes admission, so it neither counts toward --min-clients nor
receives (and holds up) round instructions; after the admission timeout it is disconnected.
"""
from __future__ import annotations

from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy


class AdmittedClients:
    """A read-only view of a client manager that shows only admitted, non-excluded connections."""

    def __init__(self, manager: ClientManager, admitted: set[str], strategy) -> None:
        self.manager, self.admitted, self.strategy = manager, admitted, strategy

    def all(self) -> dict[str, ClientProxy]:
        return {cid: c for cid, c in self.manager.all().items()
                if cid in self.admitted and self.strategy.names.get(cid) not in self.strategy.excluded}

    def num_available(self) -> int:
        return len(self.all())


def drop_connection(manager: ClientManager, proxy: ClientProxy) -> None:
    """Forget a connection and close its stream (Flower's servicer then ends the gRPC call)."""
    manager.unregister(proxy)
    bridge = getattr(proxy, "bridge", None)
    if bridge is not None:
        try:
            bridge.close()
        except Exception:  # noqa: BLE001 - an already closed bridge
            pass
