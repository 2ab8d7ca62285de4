"""What every fedad strategy shares: all live clients per round, validation of updates, weighted losses.

Concrete strategies (one file each) only say how accepted updates become the new global weights.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from fedad.common.compression import Compression, decompress_weights
from fedad.common.errors import FedadError
from fedad.common.node_names import is_valid_node_name
from fedad.common.wire import WireError, decode_array
from fedad.server import validation as check
from fedad.server.aggregation import global_embedding, validate_update

ConfigFn = Callable[[int], dict[str, Scalar]]


def client_name(res: FitRes | EvaluateRes, proxy: ClientProxy) -> str:
    """The node's stable name: its certificate subject under mutual TLS, else the valid name it reports."""
    identity = getattr(proxy, "identity", None)
    if identity is not None:
        return identity.name
    name = res.metrics.get("name") if res.metrics else None
    return name if isinstance(name, str) and is_valid_node_name(name) else f"cid-{proxy.cid[:8]}"


def embedding_of(metrics: dict) -> np.ndarray | None:
    """The plaintext mean embedding a client reported, or None (absent or malformed)."""
    emb = metrics.get("embedding")
    try:
        return None if emb is None else decode_array(emb)
    except WireError:
        return None


@runtime_checkable
class SecureStrategy(Protocol):
    """What the server reads of a strategy with ``encrypted = True`` (Paillier, secure-robust)."""

    public_key: Any  # a phe PaillierPublicKey (phe ships no types)
    n_values: int | None  # the model's parameter count, set by the server from the initial model
    max_clients: int

    def secure_config(self) -> dict[str, Scalar]: ...


@runtime_checkable
class BlindStrategy(SecureStrategy, Protocol):
    """An encrypted strategy with a plaintext global model (``plaintext_model = True``: secure-robust)."""

    def decrypt_histogram(self, data: bytes, rnd: int, clients: int, n_bins: int) -> np.ndarray: ...


def value_count(n_values: int | None) -> int:
    """An encrypted strategy's ``n_values``, which the server sets from the initial model before any round."""
    if n_values is None:
        raise RuntimeError("the model's parameter count is not set yet (the server sets it from the initial model)")
    return n_values


class FedadStrategy(Strategy):
    """Base adapter between Flower's calls and fedad's aggregation functions."""

    name = "base"

    def __init__(
        self, *, fit_config: ConfigFn, evaluate_config: ConfigFn, initial_parameters: Parameters | None = None
    ) -> None:
        super().__init__()
        self.fit_config, self.evaluate_config = fit_config, evaluate_config
        self.initial_parameters = initial_parameters
        self.excluded: set[str] = set()  # client names kept out of rounds (refused, quarantined)
        self.names: dict[str, str] = {}  # Flower cid -> client name, learned from results
        self.global_weights: list[np.ndarray] | None = None
        self.last_rejections: dict[str, str] = {}
        self.last_clipped: dict[str, str] = {}
        self.last_client_reports: dict[str, dict] = {}
        self.global_embedding: np.ndarray | None = None  # mean client embedding: the contrastive alignment target
        self.compress: Compression | None = None  # --compress: plaintext answers are compressed deltas

    @property
    def extra_fit_config(self) -> dict[str, Scalar]:
        """What the server adds to every training instruction (the compression clients must use)."""
        return {"compress": self.compress.name} if self.compress is not None else {}

    def decode_weights(self, parameters: Parameters) -> list[np.ndarray]:
        """A training answer's new weights: its tensors, or the round's global weights plus its compressed delta."""
        arrays = parameters_to_ndarrays(parameters)
        if self.compress is None:
            return arrays
        return decompress_weights(arrays, self.round_weights(), self.compress)

    def __repr__(self) -> str:
        return f"fedad:{self.name}"

    def round_weights(self) -> list[np.ndarray]:
        """This round's global weights (``configure_fit`` sets them before ``aggregate_fit`` reads them)."""
        if self.global_weights is None:
            raise RuntimeError(f"{self!r}: no global weights yet (aggregate_fit before configure_fit)")
        return self.global_weights

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.initial_parameters

    def clients(self, client_manager: ClientManager) -> list[ClientProxy]:
        """Every connected client that is not excluded by name."""
        return [c for cid, c in client_manager.all().items() if self.names.get(cid) not in self.excluded]

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: ClientManager):
        self.global_weights = parameters_to_ndarrays(parameters)
        ins = FitIns(parameters, self.fit_config(server_round))
        return [(c, ins) for c in self.clients(client_manager)]

    def accept(self, results: list[tuple[ClientProxy, FitRes]]) -> list[tuple[str, list[np.ndarray], int, dict]]:
        """Decode results, rejecting non-finite or wrong-shape updates whatever the strategy."""
        shapes = [w.shape for w in self.global_weights or []]
        accepted, self.last_rejections = [], {}
        for proxy, res in results:
            name = client_name(res, proxy)
            self.names[proxy.cid] = name
            try:
                weights = self.decode_weights(res.parameters)
            except Exception as exc:  # noqa: BLE001 - malformed tensors from a peer
                self.last_rejections[name] = f"undecodable update: {exc}"
                continue
            reason = validate_update(weights, shapes)
            if reason is None and res.num_examples <= 0:
                reason = f"claims {res.num_examples} examples"
            if reason:
                self.last_rejections[name] = reason
                continue
            accepted.append((name, weights, int(res.num_examples), dict(res.metrics or {})))
        return accepted

    def check_result(self, res: FitRes) -> None:
        """Raise when one training answer cannot be aggregated (the server refuses that answer only)."""
        check.tensors(self.decode_weights(res.parameters), [w.shape for w in self.global_weights or []])

    def aggregate_fit(self, server_round: int, results, failures) -> tuple[Parameters | None, dict[str, Scalar]]:
        accepted = self.accept(results)
        self.last_client_reports, self.last_clipped = {}, {}
        if not accepted:
            return None, {}
        new = self.aggregate_updates(server_round, accepted)
        self.note_embeddings([embedding_of(m) for _, _, _, m in accepted], [n for _, _, n, _ in accepted])
        return ndarrays_to_parameters(new), {}

    def note_embeddings(self, embeddings: list[np.ndarray | None], num_examples: list[float]) -> None:
        """Keep the mean of the embeddings of the clients used this round as next round's global embedding."""
        g = global_embedding(embeddings, num_examples)
        if g is not None:
            self.global_embedding = g

    def aggregate_buffer(
        self,
        names: list[str],
        deltas: list[np.ndarray],
        counts: list[float],
        staleness: list[int],
        embeddings: list[np.ndarray | None],
        server_lr: float = 1.0,
    ) -> np.ndarray:
        """Asynchronous mode: the flat step from a buffer of flat deltas (each from its own base model)."""
        raise FedadError(f"--strategy {self.name} does not aggregate asynchronously (--async-buffer)")

    @abstractmethod
    def aggregate_updates(
        self, server_round: int, accepted: list[tuple[str, list[np.ndarray], int, dict]]
    ) -> list[np.ndarray]:
        """New global weights from accepted (name, weights, examples, metrics); one per strategy file."""

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: ClientManager):
        ins = EvaluateIns(parameters, self.evaluate_config(server_round))
        return [(c, ins) for c in self.clients(client_manager)]

    def aggregate_evaluate(self, server_round: int, results, failures) -> tuple[float | None, dict[str, Scalar]]:
        if not results:
            return None, {}
        total = sum(r.num_examples for _, r in results)
        return float(sum(r.loss * r.num_examples for _, r in results) / max(total, 1)), {}

    def evaluate(self, server_round: int, parameters: Parameters):
        return None

    def untrusted(self) -> set[str]:
        """Clients whose statistics must not shape the threshold or the evaluation (quarantined ones)."""
        return set()

    def state_dict(self) -> dict:
        """Strategy state to checkpoint (JSON-able)."""
        state: dict = {"excluded": sorted(self.excluded)}
        if self.global_embedding is not None:
            state["global_embedding"] = [float(v) for v in self.global_embedding]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.excluded = set(state.get("excluded", []))
        g = state.get("global_embedding")
        self.global_embedding = None if g is None else np.asarray(g, dtype=np.float64)
