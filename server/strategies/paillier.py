"""Paillier FedAvg (seed paper 000): the server multiplies encrypted client models and never decrypts.

Clients send their weights clipped, quantized and packed into Paillier ciphertexts; the server forms
prod_k C_k^(w_k) with integer weights w_k from sample counts (ciphertext exponents, so it can drop a bad
client without anyone re-encrypting) and sends that encrypted aggregate back; clients decrypt and divide by
W = sum w_k. The server holds only public.key and only ever stores encrypted aggregates.
"""

from __future__ import annotations

import numpy as np
from flwr.common import FitIns, Parameters, Scalar, ndarray_to_bytes, parameters_to_ndarrays

from fedad.common.crypto.codec import decode_message, encode_message
from fedad.common.crypto.encryption import weighted_sum
from fedad.common.crypto.keys import key_fingerprint
from fedad.common.crypto.update import integer_weights, slot_layout
from fedad.server.strategies.base import FedadStrategy, client_name, value_count


def ciphertext_parameters(message: bytes) -> Parameters:
    """An encrypted message as Flower parameters (one uint8 array, serialised like any ndarray)."""
    return Parameters(tensors=[ndarray_to_bytes(np.frombuffer(message, dtype=np.uint8))], tensor_type="numpy.ndarray")


def message_from_parameters(parameters: Parameters) -> bytes:
    """The encrypted message a client sent as its only uint8 array; ValueError otherwise."""
    arrays = parameters_to_ndarrays(parameters)
    if len(arrays) != 1 or arrays[0].dtype != np.uint8 or arrays[0].ndim != 1:
        raise ValueError(f"expected one encrypted message (uint8 array), got {len(arrays)} arrays")
    return arrays[0].tobytes()


class PaillierFedAvg(FedadStrategy):
    """Encrypted sample-weighted FedAvg over packed Paillier ciphertexts."""

    name = "paillier"
    encrypted = True

    def __init__(self, *, public_key, bits: int = 16, clip: float = 4.0, max_weight: int = 1000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.public_key, self.bits, self.clip, self.max_weight = public_key, int(bits), float(clip), int(max_weight)
        self.fingerprint = key_fingerprint(public_key)
        self.n_values: int | None = None  # model parameter count, set by the server from the initial model
        self.total_weight: int | None = None  # W of the current encrypted aggregate (None: plaintext initial model)
        self.max_clients = 1

    def secure_config(self) -> dict[str, Scalar]:
        """What clients need to encrypt, and to decrypt the current global model."""
        cfg: dict[str, Scalar] = {
            "secure": "paillier",
            "key": self.fingerprint,
            "bits": self.bits,
            "clip": self.clip,
            "max_weight": self.max_weight,
            "max_clients": self.max_clients,
            "max_sum": self.max_weight * self.max_clients,
        }
        if self.total_weight is not None:
            cfg["encrypted_global"] = True
            cfg["total_weight"] = self.total_weight
        return cfg

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager):
        clients = self.clients(client_manager)
        self.max_clients = max(1, len(clients))
        ins = FitIns(parameters, self.fit_config(server_round))
        return [(c, ins) for c in clients]

    def check_result(self, res) -> None:
        """Raise when an answer is not one well-formed encrypted message of this round's layout."""
        layout = slot_layout(self.public_key, self.bits, self.max_weight * self.max_clients)
        try:
            decode_message(
                self.public_key,
                message_from_parameters(res.parameters),
                expected_layout=layout,
                expected_count=self.n_values,
            )
        except Exception as exc:  # noqa: BLE001 - the same reason aggregate_fit would give
            raise ValueError(f"bad encrypted update: {exc}") from None

    def aggregate_fit(self, server_round: int, results, failures) -> tuple[Parameters | None, dict[str, Scalar]]:
        layout = slot_layout(self.public_key, self.bits, self.max_weight * self.max_clients)
        self.last_rejections, self.last_client_reports = {}, {}
        names: list[str] = []
        blocks: list[list[int]] = []
        counts: list[int] = []
        for proxy, res in results:
            name = client_name(res, proxy)
            self.names[proxy.cid] = name
            try:
                data = message_from_parameters(res.parameters)
                cts, _, _ = decode_message(self.public_key, data, expected_layout=layout, expected_count=self.n_values)
                if res.num_examples <= 0:
                    raise ValueError(f"claims {res.num_examples} examples")
            except Exception as exc:  # noqa: BLE001 - anything a peer sends wrong rejects that peer only
                self.last_rejections[name] = f"bad encrypted update: {exc}"
                continue
            names.append(name)
            blocks.append(cts)
            counts.append(int(res.num_examples))
        if not blocks:
            return None, {}
        weights = integer_weights(counts, self.max_weight)
        aggregate = weighted_sum(self.public_key, blocks, weights, layout.max_sum)
        self.total_weight = sum(weights)
        return ciphertext_parameters(encode_message(self.public_key, aggregate, layout, value_count(self.n_values))), {}

    def aggregate_updates(self, server_round: int, accepted) -> list[np.ndarray]:
        """Unused: aggregation happens on ciphertexts in ``aggregate_fit``."""
        return []

    def state_dict(self) -> dict:
        return {**super().state_dict(), "total_weight": self.total_weight, "n_values": self.n_values}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.total_weight, self.n_values = state.get("total_weight"), state.get("n_values")
