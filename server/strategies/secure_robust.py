"""``secure-robust``: flag and trust-weight updates the aggregator cannot read (Paillier + blind decryption).

Clients send packed ciphertexts of their quantized updates and embeddings under the plant's public key.
Per round the aggregator draws a fresh public seed, computes m sketch rows per client homomorphically, has
them and the embeddings blind-decrypted by fedad-keyholder, scores and flags the clients on the sketches
(``fedad.server.defence.sketch_round``), forms the encrypted weighted sum of the kept clients with integer
exponents and has only that aggregate blind-decrypted. It never holds the private key.
"""

from __future__ import annotations

import secrets
import time

import numpy as np
from flwr.common import Parameters, Scalar, ndarrays_to_parameters

from fedad.common.crypto.codec import decode_message
from fedad.common.crypto.embedding import dequantize_embedding, embedding_layout
from fedad.common.crypto.encryption import weighted_sum
from fedad.common.crypto.keys import key_fingerprint
from fedad.common.crypto.packing import SlotLayout, unpack
from fedad.common.crypto.sketch import SketchPlan, decode_sketch, leakage, secure_layout, sketch_ciphertexts
from fedad.common.crypto.statistics import counts_layout
from fedad.common.errors import FedadError
from fedad.server.aggregation import apply_update
from fedad.server.defence.flags import flag_precision_recall
from fedad.server.defence.sketch_round import (
    WEIGHT_TOTAL,
    coefficients,
    integer_coefficients,
    lenient_slots,
    mean_from_slots,
    score_sketches,
    sketch_vector,
    update_from_mean,
)
from fedad.server.strategies.base import client_name, value_count
from fedad.server.strategies.paillier import message_from_parameters
from fedad.server.strategies.robust_base import RobustStrategy


class SecureRobust(RobustStrategy):
    """``robust`` (flag, then trust-weight) on sketches of encrypted updates; decryptions go through ``decryptor``."""

    mode = "robust"
    encrypted = True
    plaintext_model = True  # the aggregate is decrypted (blindly): the global model is plaintext

    def __init__(
        self,
        *,
        public_key,
        decryptor,
        sketch_rows: int = 16,
        bits: int = 16,
        clip: float = 0.5,
        min_kept: int = 2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.public_key, self.decryptor = public_key, decryptor
        self.fingerprint = key_fingerprint(public_key)
        self.rows, self.bits, self.clip = int(sketch_rows), int(bits), float(clip)
        self.min_kept = int(min_kept)  # fewer kept clients: the aggregate is not decrypted (it would be theirs)
        self.n_values: int | None = None  # set by the server from the initial model
        self.max_clients = 1

    @property
    def name(self) -> str:  # type: ignore[override]  # a property over the base class attribute name
        return "secure-robust"

    @property
    def layout(self) -> SlotLayout:
        return secure_layout(self.public_key.n.bit_length(), self.bits, value_count(self.n_values), WEIGHT_TOTAL)

    def secure_config(self) -> dict[str, Scalar]:
        """What clients need to encrypt: key, quantization, slot headroom; the histogram's client bound."""
        cfg: dict[str, Scalar] = {
            "secure": "secure-robust",
            "key": self.fingerprint,
            "bits": self.bits,
            "clip": self.clip,
            "max_clients": self.max_clients,
        }
        if self.n_values is not None:
            cfg["headroom"] = self.layout.headroom_bits
        return cfg

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager):
        clients = self.clients(client_manager)
        self.max_clients = max(1, len(clients))  # before the config is built: it names max_clients
        instructions = super().configure_fit(server_round, parameters, client_manager)
        # blinding needs one obfuscator per decrypted block: compute them while the clients train
        self.decryptor.reserve.refill(
            self.max_clients * (self.rows + 1) + self.layout.blocks_for(value_count(self.n_values))
        )
        return instructions

    def _decode(self, res, layout) -> tuple[list[int], tuple[int, int] | None]:
        """(update ciphertexts, (embedding ciphertext, its value count) or None); ValueError on anything malformed."""
        cts, _, _ = decode_message(
            self.public_key,
            message_from_parameters(res.parameters),
            expected_layout=layout,
            expected_count=self.n_values,
        )
        if res.num_examples <= 0:
            raise ValueError(f"claims {res.num_examples} examples")
        emb = (res.metrics or {}).get("embedding_enc")
        if emb is None:
            return cts, None
        emb_cts, _, count = decode_message(self.public_key, emb, expected_layout=embedding_layout(layout.key_bits))
        if len(emb_cts) != 1:
            raise ValueError(f"the embedding spans {len(emb_cts)} blocks, at most 1 is accepted")
        return cts, (emb_cts[0], count)

    def check_result(self, res) -> None:
        """Raise when an answer's update or embedding ciphertexts are malformed."""
        try:
            self._decode(res, self.layout)
        except Exception as exc:  # noqa: BLE001 - the same reason aggregate_fit would give
            raise ValueError(f"bad encrypted update: {exc}") from None

    def aggregate_fit(self, server_round: int, results, failures) -> tuple[Parameters | None, dict[str, Scalar]]:
        t0 = time.perf_counter()
        layout = self.layout
        n_values = value_count(self.n_values)
        n_blocks = layout.blocks_for(n_values)
        names: list[str] = []
        counts: list[float] = []
        blocks: list[list[int] | None] = []  # None: rejected
        emb_blocks: list[tuple[int, int] | None] = []
        rejected: dict[str, str] = {}
        for proxy, res in results:
            name = client_name(res, proxy)
            self.names[proxy.cid] = name
            names.append(name)
            counts.append(float(res.num_examples))
            try:
                cts, emb = self._decode(res, layout)
            except Exception as exc:  # noqa: BLE001 - anything a peer sends wrong rejects that peer only
                rejected[name], cts, emb = f"bad encrypted update: {exc}", None, None
            blocks.append(cts)
            emb_blocks.append(emb)
        self.last_rejections = dict(rejected)
        if not names:
            return None, {}
        # only clients that are neither rejected nor quarantined are sketched (and charged to the key holder)
        live_blocks = {
            i: b
            for i, (n, b) in enumerate(zip(names, blocks, strict=True))
            if b is not None and not self.quarantine.is_quarantined(n)
        }
        live = list(live_blocks)
        plan = SketchPlan.draw(secrets.token_bytes(32), n_blocks, self.rows)  # drawn after every ciphertext is in
        dim = self.rows * layout.slots_per_block
        sketches: list[np.ndarray | None] = [None if b is None else np.zeros(dim) for b in blocks]
        embeddings: list[np.ndarray | None] = [None] * len(names)
        d = self.decryptor
        d.seconds, t1 = 0.0, time.perf_counter()
        budget = d.begin_round(server_round, max(1, len(live)), n_blocks)
        need = {"sketch": len(live) * self.rows, "embedding": len(live), "aggregate": n_blocks}
        short = [f"{k}: {need[k]} needed, {budget.get(k, 0)} allowed" for k in need if budget.get(k, 0) < need[k]]
        if short:
            raise FedadError(
                f"the key holder's budget is too small for round {server_round} ({'; '.join(short)}): "
                f"start fedad-keyholder with --sketch-rows >= {self.rows} and --max-clients >= "
                f"{len(live)}"
            )
        if live:
            rows = [
                c for i in live for c in sketch_ciphertexts(self.public_key, live_blocks[i], plan, layout, n_values)
            ]
            plain = d.as_kind("sketch").decrypt_blocks(rows)
            for k, i in enumerate(live):
                try:
                    sketch = decode_sketch(plain[k * self.rows : (k + 1) * self.rows], plan, layout)
                    sketches[i] = sketch_vector(sketch, self.clip, self.bits)
                except ValueError as exc:
                    sketches[i], rejected[names[i]] = None, f"malformed sketch (values out of range): {exc}"
            emb_of = {i: e for i in live if (e := emb_blocks[i]) is not None and sketches[i] is not None}
            with_emb = list(emb_of)
            if with_emb and self.mode != "flag":
                plain = d.as_kind("embedding").decrypt_blocks([emb_of[i][0] for i in with_emb])
                el = embedding_layout(layout.key_bits)
                for i, value in zip(with_emb, plain, strict=True):
                    try:
                        embeddings[i] = dequantize_embedding(unpack([value], el, emb_of[i][1]))
                    except ValueError:
                        embeddings[i] = None  # malformed embedding: trust 0
        self.last_rejections = dict(rejected)
        t2 = time.perf_counter()
        result = score_sketches(
            self.mode,
            names,
            sketches,
            counts,
            embeddings=embeddings,
            rejected=rejected,
            history=self.history,
            quarantine=self.quarantine,
            flag_config=self.flag_config,
            trust_config=self.trust_config,
        )
        self.last_client_reports = {r["client"]: r for r in result.records}
        caught = result.flagged | (self.quarantine.quarantined & set(names))
        ints, scale = integer_coefficients(coefficients(result.records))
        kept = [(b, a) for i, a in enumerate(ints) if a > 0 and (b := blocks[i]) is not None]
        self.last_summary = {
            "flagged": sorted(result.flagged),
            "kept": result.kept,
            "sketch_seed": plan.seed.hex(),
            "sketch_rows": self.rows,
            "leakage": leakage(self.rows, layout, n_values),
        }
        if self.malicious:
            p, r = flag_precision_recall(caught, self.malicious & set(names))
            self.last_summary.update(flag_precision=p, flag_recall=r)
        if not kept:
            self.last_summary["keyholder_blocks"] = dict(d.requested)
            return None, {}
        if len(kept) < self.min_kept:  # the "aggregate" would be one client's whole update: do not decrypt it
            self.last_summary.update(
                keyholder_blocks=dict(d.requested),
                aggregate_skipped=(
                    f"{len(kept)} client(s) kept, fewer than {self.min_kept}: global model unchanged this round"
                ),
            )
            return ndarrays_to_parameters(self.round_weights()), {}
        t3 = time.perf_counter()
        aggregate = weighted_sum(self.public_key, [b for b, _ in kept], [a for _, a in kept], layout.max_sum)
        try:
            slots = lenient_slots(d.as_kind("aggregate").decrypt_blocks(aggregate), layout, n_values)
        except ValueError as exc:  # a kept client packed values that overflowed a whole block
            self.last_summary.update(
                keyholder_blocks=dict(d.requested),
                aggregate_skipped=(
                    f"malformed aggregate ({exc}): a kept client packed out-of-range values; global model unchanged"
                ),
            )
            return ndarrays_to_parameters(self.round_weights()), {}
        mean = mean_from_slots(slots, sum(a for _, a in kept), self.clip, self.bits)
        t4 = time.perf_counter()
        self.last_summary["keyholder_blocks"] = dict(d.requested)
        self.last_summary["secure_seconds"] = {
            "decode": t1 - t0,
            "sketch_and_embeddings": t2 - t1,
            "score": t3 - t2,
            "aggregate": t4 - t3,
            "blind_decrypt": d.seconds,
        }
        update = update_from_mean(mean, scale)
        kept_names = set(result.kept)  # the blind-decrypted embeddings of the kept clients, averaged
        self.note_embeddings([e if n in kept_names else None for n, e in zip(names, embeddings, strict=True)], counts)
        return ndarrays_to_parameters(apply_update(self.round_weights(), update)), {}

    def decrypt_histogram(self, data: bytes, rnd: int, clients: int, n_bins: int) -> np.ndarray:
        """The summed threshold histogram, blind-decrypted in the key holder's final round."""
        self.decryptor.begin_round(rnd, max(1, clients), final=True)
        layout = counts_layout(self.public_key, self.max_clients)
        try:
            cts, _, _ = decode_message(self.public_key, data, expected_layout=layout, expected_count=n_bins)
            plain = self.decryptor.as_kind("histogram").decrypt_blocks(cts)
            return lenient_slots(plain, layout, n_bins).astype(np.int64)
        except ValueError as exc:
            raise FedadError(
                f"the summed validation histogram is malformed ({exc}): a client packed out-of-range counts"
            ) from None

    def check_settings(self) -> None:
        """Refuse sketch rows that would let the aggregator solve for the updates (FedadError).

        Every row has t plus and t minus signs, so the rows' rank is at most B - 1 per slot: at m >= B - 1 a
        slot's B values are known up to one number. m <= B - 2 is required.
        """
        n_blocks = self.layout.blocks_for(value_count(self.n_values))
        if self.rows > n_blocks - 2:
            raise FedadError(
                f"--sketch-rows {self.rows} is too many for this model: its update spans {n_blocks} "
                f"blocks, and m >= {n_blocks - 1} rows would reveal the update; use at most "
                f"{max(1, n_blocks - 2)} (or a smaller key)"
            )

    def state_dict(self) -> dict:
        return {**super().state_dict(), "n_values": self.n_values, "max_clients": self.max_clients}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.n_values = state.get("n_values")
        self.max_clients = int(state.get("max_clients", 1))
