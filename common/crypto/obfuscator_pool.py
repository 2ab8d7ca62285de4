"""A bounded pool of Paillier obfuscators filled by a background thread between rounds, each handed out once.

A paillier client needs one fresh obfuscator r^n mod n^2 per ciphertext of its update; computing them is
the whole cost of encryption (~2.5 ms each from the factors at 2048 bits). The pool keeps up to
``capacity`` of them ready (a client sizes it to one update's blocks), refills in a daemon thread right
after each ``take`` -- i.e. while the server aggregates and the other phases run -- so the next round's
encryption is packing plus one multiplication per block. Memory: capacity x 2 x key_bytes (+ ~30 bytes of
Python int header each): 40 obfuscators at 2048 bits are ~22 kB.

Never reused: every obfuscator is created once, appended once and popped once (under a lock); ``take``
computes any shortfall in the caller instead of waiting. gmpy2 holds the GIL, so the thread competes with
Python code in this process only while it runs; torch's kernels release the GIL.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from fedad.common.crypto.obfuscation import can_use_factors, factored_obfuscators_bytes, random_obfuscators_bytes


class ObfuscatorPool:
    """Up to ``capacity`` ready obfuscators for ``public_key`` (factored from ``private_key`` when given)."""

    def __init__(self, public_key, capacity: int, private_key=None, start: bool = True):
        n = int(public_key.n)
        if private_key is not None and int(private_key.public_key.n) != n:
            raise ValueError("the private key does not match the public key")
        self.public_key, self.capacity = public_key, max(0, int(capacity))
        self.width = 2 * ((n.bit_length() + 7) // 8)
        self._make: Callable[[int], bytes] = (
            partial(factored_obfuscators_bytes, int(private_key.p), int(private_key.q))
            if private_key is not None and can_use_factors(private_key)
            else partial(random_obfuscators_bytes, n)
        )
        self._ready: deque[int] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.made = 0  # obfuscators created (in the thread or in take)
        self.handed = 0  # obfuscators handed out by take
        self.inline = 0  # of those, computed by take itself (the pool was short): on the caller's critical path
        self._thread = threading.Thread(target=self._fill, name="obfuscator-pool", daemon=True)
        self._thread.start()
        if start:
            self._wake.set()

    @property
    def memory_bytes(self) -> int:
        """Upper bound of the ready obfuscators' payload (capacity x 2 x key bytes)."""
        return self.capacity * self.width

    @property
    def ready(self) -> int:
        with self._lock:
            return len(self._ready)

    def _one(self) -> int:
        value = int.from_bytes(self._make(1), "big")
        with self._lock:
            self.made += 1
        return value

    def _fill(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._stop.is_set():
                with self._lock:
                    if len(self._ready) >= self.capacity:
                        break
                value = self._one()
                with self._lock:
                    self._ready.append(value)

    def take(self, count: int) -> list[int]:
        """``count`` obfuscators never handed out before: ready ones first, the shortfall computed here."""
        count = max(0, int(count))
        with self._lock:
            out = [self._ready.popleft() for _ in range(min(count, len(self._ready)))]
        short = count - len(out)
        out += [self._one() for _ in range(short)]
        with self._lock:
            self.handed += len(out)
            self.inline += short
        self._wake.set()  # refill in the background, off the next round's critical path
        return out

    def wait_full(self, timeout: float) -> bool:
        """Block until the pool holds ``capacity`` (tests and benches); False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.ready < self.capacity:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Stop the filling thread (ready obfuscators are dropped)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        with self._lock:
            self._ready.clear()
