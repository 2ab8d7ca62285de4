"""The aggregator's side of blind decryption: blind, ask fedad-keyholder, unblind.

``BlindDecryptor`` implements the ``Decryptor`` protocol (``decrypt_blocks``), so the crypto helpers that
take a decryptor (``decrypt_mean``, ``decrypt_counts``) work unchanged; each call is charged by the key
holder to the open round under a ``kind`` (sketch, embedding, aggregate, histogram).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fedad.common.crypto.blinding import blind, unblind
from fedad.common.crypto.codec import ciphertext_bytes
from fedad.common.crypto.keys import key_bytes, key_fingerprint
from fedad.common.crypto.obfuscation import ObfuscatorReserve, available_cores, djn_exponent_bits
from fedad.common.errors import FedadError
from fedad.server.keyholder import BEGIN, DECRYPT, MAX_MESSAGE, bytes_to_ints, frame, ints_to_bytes, unframe


class KeyHolderError(FedadError):
    """The key holder refused a request or cannot be reached."""


class KeyHolderClient:
    """gRPC channel to fedad-keyholder (mutual TLS when ``certificates`` = (CA, cert, key) PEM bytes)."""

    def __init__(self, address: str, certificates: tuple[bytes, bytes, bytes] | None = None, timeout: float = 60.0):
        import grpc

        options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
        if certificates is None:
            self.channel = grpc.insecure_channel(address, options=options)
        else:
            ca, cert, key = certificates
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
            self.channel = grpc.secure_channel(address, creds, options=options)
        ident = lambda b: b  # noqa: E731
        self._begin = self.channel.unary_unary(BEGIN, request_serializer=ident, response_deserializer=ident)
        self._decrypt = self.channel.unary_unary(DECRYPT, request_serializer=ident, response_deserializer=ident)
        self.address, self.timeout = address, timeout

    def _call(self, method, request: bytes) -> tuple[dict, bytes]:
        import grpc

        try:
            return unframe(method(request, timeout=self.timeout, wait_for_ready=True))
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise KeyHolderError(f"key holder {self.address} refused: {code}: {details}") from None

    def wait_ready(self, timeout: float) -> None:
        """Block until the channel connects; KeyHolderError after ``timeout`` seconds."""
        import grpc

        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise KeyHolderError(f"key holder {self.address} not reachable after {timeout:.0f} s") from None

    def begin_round(
        self,
        key: str,
        rnd: int,
        clients: int,
        aggregate_blocks: int | None = None,
        final: bool = False,
        rounds: int | None = None,
    ) -> dict:
        header = {"key": key, "round": rnd, "clients": clients, "final": final}
        if rounds is not None:
            header["rounds"] = rounds
        if aggregate_blocks is not None:
            header["aggregate_blocks"] = aggregate_blocks
        return self._call(self._begin, frame(header))[0]["budget"]

    def decrypt(
        self, key: str, rnd: int, kind: str, ciphertexts: Sequence[int], width: int, plain_width: int
    ) -> list[int]:
        header, payload = self._call(
            self._decrypt, frame({"key": key, "round": rnd, "kind": kind}, ints_to_bytes(ciphertexts, width))
        )
        plain = bytes_to_ints(payload, plain_width)
        if len(plain) != len(ciphertexts):
            raise KeyHolderError(f"key holder returned {len(plain)} plaintexts for {len(ciphertexts)} ciphertexts")
        return plain

    def close(self) -> None:
        self.channel.close()


class BlindDecryptor:
    """Decrypts through the key holder without it learning anything: one fresh random mask per ciphertext."""

    def __init__(self, public_key, client: KeyHolderClient, reserve: ObfuscatorReserve | None = None):
        self.public_key, self.client = public_key, client
        self.fingerprint = key_fingerprint(public_key)
        # blinding masks need fresh obfuscators: computed on all cores between rounds, with DJN short exponents
        # (the key holder decrypts the blinded value anyway: what hides it is the uniform mask; the obfuscator
        # only unlinks the blinded ciphertext from the aggregator's)
        self.reserve = reserve or ObfuscatorReserve(
            public_key, workers=available_cores(), short_exponent_bits=djn_exponent_bits(public_key.n.bit_length())
        )
        self.round, self.kind = 0, "aggregate"
        self.requested: dict[str, int] = {}  # blocks sent to the key holder this round, per kind
        self.seconds = 0.0
        self.run_rounds: int | None = None  # the run's training rounds, declared to the key holder (it caps them)

    def begin_round(self, rnd: int, clients: int, aggregate_blocks: int | None = None, final: bool = False) -> dict:
        self.round, self.requested = int(rnd), {}
        if self.run_rounds is None:
            return self.client.begin_round(self.fingerprint, self.round, clients, aggregate_blocks, final)
        return self.client.begin_round(
            self.fingerprint, self.round, clients, aggregate_blocks, final, rounds=self.run_rounds
        )

    def decrypt_blocks(self, ciphertexts: list[int]) -> list[int]:
        """Plaintexts of ``ciphertexts`` (charged to the current round and ``self.kind``)."""
        t0 = time.perf_counter()
        blinded, masks = blind(self.public_key, ciphertexts, self.reserve.take(len(ciphertexts)))
        plain = self.client.decrypt(
            self.fingerprint,
            self.round,
            self.kind,
            blinded,
            ciphertext_bytes(self.public_key),
            key_bytes(self.public_key),
        )
        self.requested[self.kind] = self.requested.get(self.kind, 0) + len(ciphertexts)
        self.seconds += time.perf_counter() - t0
        return unblind(self.public_key, plain, masks)

    def as_kind(self, kind: str) -> BlindDecryptor:
        """Set the kind the next calls are charged to; returns self (``decrypt_mean(d.as_kind('aggregate'), ...)``)."""
        self.kind = kind
        return self


class InProcessKeyHolder:
    """KeyHolderClient's two calls answered by a ``KeyHolder`` policy in this process, no gRPC (tests, benches)."""

    def __init__(self, holder) -> None:
        self.holder = holder

    def begin_round(self, key, rnd, clients, aggregate_blocks=None, final=False, rounds=None):
        header = {"key": key, "round": rnd, "clients": clients, "final": final}
        if aggregate_blocks is not None:
            header["aggregate_blocks"] = aggregate_blocks
        return self.holder.begin(header)

    def decrypt(self, key, rnd, kind, ciphertexts, width, plain_width):
        return self.holder.decrypt({"key": key, "round": rnd, "kind": kind}, list(ciphertexts))
