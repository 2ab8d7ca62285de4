"""Errors raised where encrypted bytes arrive: each names what was wrong so the server can drop one client.

All are ``ValueError`` subclasses (bad data, not bad code). The aggregator catches ``CiphertextError``
around one client's message, rejects that client and goes on with the others.
"""

from __future__ import annotations


class CiphertextError(ValueError):
    """An encrypted message or ciphertext that cannot be accepted (malformed, out of range, wrong key)."""


class MessageFormatError(CiphertextError):
    """The message bytes do not follow the wire format: bad magic or version, truncated, wrong lengths."""


class KeyMismatchError(CiphertextError):
    """The message was encrypted under a different public key than the one we hold."""


class LayoutMismatchError(CiphertextError):
    """The message's slot layout or value count differs from what this round expects."""


class PackingError(ValueError):
    """Values that do not fit the slot layout, or a decrypted block that cannot be a packed sum."""
