"""A client's side of the encrypted strategies.

``SecureClient`` (--strategy paillier): holds the private key, encrypts what it sends and decrypts the
aggregates the server returns. ``PublicKeyClient`` (--strategy secure-robust): holds only the public key,
encrypts its update (new weights minus the global ones), its mean embedding and its histogram; the global
model and the threshold come back in plaintext after the key holder's blind decryption.
"""

from __future__ import annotations

import numpy as np

from fedad.common.crypto.codec import encode_message
from fedad.common.crypto.decryptor import LocalDecryptor
from fedad.common.crypto.embedding import embedding_layout, quantize_embedding
from fedad.common.crypto.encryption import encrypt_blocks
from fedad.common.crypto.keys import key_fingerprint, load_private_key, load_public_key
from fedad.common.crypto.obfuscation import ObfuscatorReserve, djn_exponent_bits
from fedad.common.crypto.obfuscator_pool import ObfuscatorPool
from fedad.common.crypto.packing import SlotLayout, pack, quantize
from fedad.common.crypto.statistics import decrypt_counts, decrypt_fixed_point, encrypt_counts, encrypt_fixed_point
from fedad.common.crypto.update import decrypt_mean, encrypt_update, slot_layout
from fedad.common.errors import FedadError
from fedad.common.preprocessing import ScalerStats


class SecureClient:
    """Holds the private key (clients only) and speaks the encrypted formats of the paillier strategy."""

    mode = "paillier"

    def __init__(self, private_key_path: str):
        self.private_key = load_private_key(private_key_path)
        self.public_key = self.private_key.public_key
        self.decryptor = LocalDecryptor(self.private_key)
        self.fingerprint = key_fingerprint(self.public_key)
        self.pool: ObfuscatorPool | None = None  # one update's obfuscators, refilled between rounds

    def check(self, config: dict) -> None:
        """Refuse a run under another key than ours."""
        _check_key(config, self.fingerprint)

    # scaler statistics: count, sum, sum of squares (min/max are not additive, so not sent)
    def encrypt_stats(self, stats: ScalerStats) -> bytes:
        return encrypt_fixed_point(
            self.public_key, np.concatenate([[stats.count], stats.sum, stats.sumsq]), self.private_key
        )

    def decrypt_stats(self, data: bytes, n_features: int) -> ScalerStats:
        v = decrypt_fixed_point(self.decryptor, data, 1 + 2 * n_features)
        s, ss = v[1 : 1 + n_features], v[1 + n_features :]
        count = int(round(v[0]))
        mean = s / max(count, 1)
        return ScalerStats(count=count, sum=s, sumsq=ss, min=mean.copy(), max=mean.copy())

    def obfuscators(self, blocks: int) -> list[int]:
        """``blocks`` fresh obfuscators from the pool (sized to one update), which then refills in the background."""
        if self.pool is None or self.pool.capacity != blocks:
            if self.pool is not None:
                self.pool.close()
            self.pool = ObfuscatorPool(self.public_key, blocks, self.private_key, start=False)
        return self.pool.take(blocks)

    def encrypt_weights(self, weights: list[np.ndarray], config: dict) -> np.ndarray:
        layout = slot_layout(self.public_key, int(config["bits"]), int(config["max_sum"]))
        blocks = layout.blocks_for(sum(int(np.size(w)) for w in weights))
        msg = encrypt_update(
            self.public_key,
            weights,
            float(config["clip"]),
            int(config["bits"]),
            layout,
            obfuscators=self.obfuscators(blocks),
        )
        return np.frombuffer(msg, dtype=np.uint8)

    def decrypt_weights(self, parameters: list[np.ndarray], config: dict, shapes) -> list[np.ndarray]:
        if len(parameters) != 1 or parameters[0].dtype != np.uint8:
            raise FedadError("expected an encrypted global model from the server")
        # lenient: a peer's out-of-range plaintexts (no range proofs) spoil values, which are clamped to the
        # clip range, instead of making every honest node's decryption fail
        return decrypt_mean(
            self.decryptor,
            parameters[0].tobytes(),
            int(config["total_weight"]),
            shapes,
            float(config["clip"]),
            int(config["bits"]),
            lenient=True,
        )

    def encrypt_histogram(self, counts: np.ndarray, config: dict) -> bytes:
        return encrypt_counts(self.public_key, counts, int(config["max_clients"]), self.private_key)

    def decrypt_histogram(self, data: bytes, config: dict, n_bins: int) -> np.ndarray:
        return decrypt_counts(self.decryptor, data, int(config["max_clients"]), n_bins, lenient=True)


def _check_key(config: dict, fingerprint: str) -> None:
    """Refuse a run under another key than this node's."""
    if config.get("key") != fingerprint:
        raise FedadError(
            f"the server's public key ({config.get('key')}) does not match this node's key "
            f"({fingerprint}); use the key of this plant"
        )


class PublicKeyClient:
    """secure-robust: encrypts with the plant's public key only; this node can decrypt nothing."""

    mode = "secure-robust"

    def __init__(self, public_key_path: str, obfuscation: str = "djn"):
        self.public_key = load_public_key(public_key_path)
        self.fingerprint = key_fingerprint(self.public_key)
        # djn: h^a with a fresh short exponent (h = x^n, x secret to this node): ~4x cheaper than r^n, which a
        # node without the private key cannot speed up by CRT; full: r^n, semantic security under DCR alone
        bits = djn_exponent_bits(self.public_key.n.bit_length()) if obfuscation == "djn" else None
        self.reserve = ObfuscatorReserve(self.public_key, short_exponent_bits=bits)
        self.rng = np.random.default_rng()  # stochastic rounding: fresh OS entropy

    def check(self, config: dict) -> None:
        _check_key(config, self.fingerprint)

    def layout(self, config: dict) -> SlotLayout:
        return SlotLayout(int(config["bits"]), int(config["headroom"]), self.public_key.n.bit_length())

    def prepare(self, config: dict, n_values: int) -> None:
        """Start computing this round's obfuscators in a worker process while the model trains."""
        self.reserve.refill(self.layout(config).blocks_for(n_values) + 1)

    def _encrypt(self, q: np.ndarray, layout: SlotLayout) -> bytes:
        blocks = pack(q, layout)
        cts = encrypt_blocks(self.public_key, blocks, obfuscators=self.reserve.take(len(blocks)))
        return encode_message(self.public_key, cts, layout, q.size)

    def encrypt_update(self, weights: list[np.ndarray], global_weights: list[np.ndarray], config: dict) -> np.ndarray:
        """The update (weights - global), clipped to [-clip, clip], quantized (stochastic), packed, encrypted."""
        update = np.concatenate(
            [
                (np.asarray(w, np.float64) - np.asarray(g, np.float64)).ravel()
                for w, g in zip(weights, global_weights, strict=True)
            ]
        )
        q, _ = quantize(update, float(config["clip"]), int(config["bits"]), self.rng)
        return np.frombuffer(self._encrypt(q, self.layout(config)), dtype=np.uint8)

    def encrypt_embedding(self, embedding: np.ndarray) -> bytes:
        """The L2-normalised mean embedding, quantized in [-1, 1] and encrypted (one block)."""
        q = quantize_embedding(embedding, self.rng)
        return self._encrypt(q, embedding_layout(self.public_key.n.bit_length()))

    def encrypt_stats(self, stats: ScalerStats) -> bytes:
        return encrypt_fixed_point(self.public_key, np.concatenate([[stats.count], stats.sum, stats.sumsq]))

    def encrypt_histogram(self, counts: np.ndarray, config: dict) -> bytes:
        return encrypt_counts(self.public_key, counts, int(config["max_clients"]))
