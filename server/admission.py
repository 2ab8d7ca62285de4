"""Who takes part in a round: connections that passed admission (features checked), and dropping the others.

An idle or silent connection never passes admission, so it neither counts toward --min-clients nor
receives (and holds up) round instructions; after the admission timeout it is disconnected.
"""

from __future__ import annotations

from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.criterion import Criterion


class AdmittedClients(ClientManager):
    """A read-only view of a client manager that shows only admitted, non-excluded connections."""

    def __init__(self, manager: ClientManager, admitted: set[str], strategy) -> None:
        self.manager, self.admitted, self.strategy = manager, admitted, strategy

    def all(self) -> dict[str, ClientProxy]:
        return {
            cid: c
            for cid, c in self.manager.all().items()
            if cid in self.admitted and self.strategy.names.get(cid) not in self.strategy.excluded
        }

    def num_available(self) -> int:
        return len(self.all())

    def register(self, client: ClientProxy) -> bool:
        return False  # connections register with the real manager; this view only filters

    def unregister(self, client: ClientProxy) -> None:
        self.manager.unregister(client)

    def wait_for(self, num_clients: int, timeout: int) -> bool:
        return self.num_available() >= num_clients

    def sample(
        self, num_clients: int, min_num_clients: int | None = None, criterion: Criterion | None = None
    ) -> list[ClientProxy]:
        return [c for c in self.all().values() if criterion is None or criterion.select(c)][:num_clients]


def drop_connection(manager: ClientManager, proxy: ClientProxy) -> None:
    """Forget a connection and close its stream (Flower's servicer then ends the gRPC call)."""
    manager.unregister(proxy)
    bridge = getattr(proxy, "bridge", None)
    if bridge is not None:
        try:
            bridge.close()
        except Exception:  # noqa: BLE001 - an already closed bridge
            pass
