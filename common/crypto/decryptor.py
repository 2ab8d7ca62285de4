"""The one interface through which anything is decrypted: ``Decryptor.decrypt_blocks``.

Today clients hold private.key and decrypt locally (``LocalDecryptor``). A later key-holder service
implements the same protocol over the network; callers (``update.decrypt_mean``) do not change.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fedad.common.crypto.codec import check_ciphertext
from fedad.common.crypto.keys import PrivateKey, PublicKey


@runtime_checkable
class Decryptor(Protocol):
    """Turns Paillier ciphertexts (ints mod n^2) into plaintext ints mod n under ``public_key``."""

    public_key: PublicKey

    def decrypt_blocks(self, ciphertexts: list[int]) -> list[int]:
        """Plaintexts of ``ciphertexts``, in order."""
        ...


class LocalDecryptor:
    """Decrypts in this process with the private key (CRT on p and q, via phe and gmpy2)."""

    def __init__(self, private_key: PrivateKey):
        self._private_key = private_key
        self.public_key = private_key.public_key

    def decrypt_blocks(self, ciphertexts: list[int]) -> list[int]:
        """Plaintexts of ``ciphertexts``; each is checked to be a valid ciphertext first."""
        out = []
        for i, c in enumerate(ciphertexts):
            check_ciphertext(self.public_key, c, i)
            out.append(self._private_key.raw_decrypt(c))
        return out

    def __repr__(self) -> str:  # never print the key
        return f"LocalDecryptor(n_bits={self.public_key.n.bit_length()})"
