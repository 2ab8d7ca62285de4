"""Who may take part: the connection's certificate identity, revocations, expiry, one connection per name.

Plain Python, no gRPC: the transport asks ``admit`` when a node connects and ``release`` when it leaves;
the round loop asks ``problem`` before it uses a node's result.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path

from fedad.common.errors import FedadError
from fedad.common.pki import CertificateInfo


def parse_revocations(text: str) -> tuple[frozenset[str], frozenset[int]]:
    """Names and serials from a revocation list: one per line, ``0x<hex>`` is a serial, ``#`` starts a comment."""
    names, serials = set(), set()
    for raw in text.splitlines():
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.lower().startswith("0x"):
            try:
                serials.add(int(entry, 16))
            except ValueError:
                raise FedadError(f"revocation list: {entry!r} is not a hexadecimal serial") from None
        else:
            names.add(entry)
    return frozenset(names), frozenset(serials)


class Revocations:
    """A revocation list file, re-read whenever asked to (every round); a missing file revokes nobody."""

    def __init__(self, path: str | None, log: logging.Logger | None = None) -> None:
        self.path = Path(path) if path else None
        self.log = log or logging.getLogger("fedad.server")
        self.names: frozenset[str] = frozenset()
        self.serials: frozenset[int] = frozenset()

    def reload(self) -> None:
        """Re-read the file (it is small); a malformed file keeps the previous list and logs why."""
        if self.path is None:
            return
        try:
            names, serials = parse_revocations(self.path.read_text())
        except FileNotFoundError:
            names, serials = frozenset(), frozenset()
        except (OSError, UnicodeDecodeError, FedadError) as exc:
            self.log.error("revocation list %s unreadable, keeping the previous one: %s", self.path, exc)
            return
        if (names, serials) != (self.names, self.serials):
            self.log.info("revocation list %s: %d name(s), %d serial(s)", self.path, len(names), len(serials))
        self.names, self.serials = names, serials

    def revoked(self, info: CertificateInfo) -> bool:
        return info.name in self.names or info.serial in self.serials


class NodeGate:
    """Decides whether a certificate identity may connect or be heard, and remembers every refusal."""

    def __init__(self, revocations: Revocations, log: logging.Logger | None = None) -> None:
        self.revocations = revocations
        self.log = log or logging.getLogger("fedad.server")
        self.refusals: list[dict] = []  # {"client", "reason", "time"}: connections and results refused
        self._connected: dict[str, int] = {}  # name -> serial of its live connection
        self._lock = threading.Lock()

    def problem(self, info: CertificateInfo, now: dt.datetime | None = None) -> str | None:
        """Why ``info`` may not take part right now (revoked, expired, not yet valid), or None."""
        self.revocations.reload()
        if self.revocations.revoked(info):
            return f"certificate revoked (serial 0x{info.serial:x})"
        return info.validity_problem(now)

    def admit(self, info: CertificateInfo) -> str | None:
        """Register a new connection for ``info``; the reason it is refused, or None when admitted."""
        reason = self.problem(info)
        with self._lock:
            if reason is None and info.name in self._connected:
                reason = f"a connection with the certificate of {info.name} is already open"
            if reason is None:
                self._connected[info.name] = info.serial
                return None
        self.refuse(info.name, f"new connection refused: {reason}")
        return reason

    def release(self, info: CertificateInfo) -> None:
        with self._lock:
            if self._connected.get(info.name) == info.serial:
                del self._connected[info.name]

    def refuse(self, name: str, reason: str) -> None:
        """Record and log a refusal (the name is a validated certificate subject)."""
        self.log.error("refusing %s: %s", name, reason)
        with self._lock:
            self.refusals.append({"client": name, "reason": reason, "time": time.time()})
