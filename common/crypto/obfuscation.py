"""Paillier obfuscators r^n mod n^2: the one expensive step of encryption, spread over the machine's cores.

Every ciphertext a client sends is c = (1 + m*n) * r^n mod n^2 with a fresh uniform r in Z*_n, so no
two encryptions of the same block look alike. Computing r^n mod n^2 (a 2048-bit exponent mod a
4096-bit modulus) costs ~8-10 ms; everything else in encryption costs microseconds. This module
computes obfuscators in a process pool (gmpy2 holds the GIL, so threads would not help) and can do so
ahead of time, while the client trains, via ``precompute_obfuscators``.

The pool's workers receive only (n, count) -- or (p, q, count) for a client that holds the private key
and asks for the faster factored path -- and return fixed-width big-endian bytes; they draw randomness
from the OS CSPRNG (``secrets``) themselves, so workers never share random state. Workers are started
with the "forkserver" method where available: safe even when the parent runs gRPC or torch threads.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

import gmpy2

# fewer obfuscators than this are computed in-process: a pool round trip is not worth it
MIN_PARALLEL = 8

_pool: ProcessPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def random_obfuscators_bytes(n: int, count: int) -> bytes:
    """``count`` fresh r^n mod n^2 (r uniform in Z*_n), each 2*key_bytes big-endian; runs in a worker."""
    n_mpz = gmpy2.mpz(n)
    n_square = n_mpz * n_mpz
    width = 2 * ((int(n).bit_length() + 7) // 8)
    out = bytearray()
    for _ in range(count):
        while True:
            r = secrets.randbelow(n - 1) + 1
            if gmpy2.gcd(r, n_mpz) == 1:  # fails with probability ~2/sqrt(n): never in practice
                break
        out += int(gmpy2.powmod(r, n_mpz, n_square)).to_bytes(width, "big")
    return bytes(out)


def djn_exponent_bits(key_bits: int) -> int:
    """Length of the DJN short exponent: a quarter of the key (512 bits for 2048), at least 256."""
    return max(256, int(key_bits) // 4)


def short_obfuscators_bytes(n: int, base: int, count: int, exponent_bits: int) -> bytes:
    """``count`` obfuscators h^a mod n^2 with h = x^n a fixed random n-th residue and a uniform
    ``exponent_bits``-bit exponent (Damgard-Jurik-Nielsen's short-exponent variant; Intel's Paillier
    library uses n/2-bit exponents and h = (-x^2)^n): ~key_bits / exponent_bits times cheaper than r^n,
    secure under the DJN short-exponent assumption in addition to DCR. Used by secure-robust (see
    docs/secure-robust.md, "Encryption randomness")."""
    n_mpz = gmpy2.mpz(n)
    n_square = n_mpz * n_mpz
    h = gmpy2.mpz(base)
    width = 2 * ((int(n).bit_length() + 7) // 8)
    out = bytearray()
    for _ in range(count):
        a = secrets.randbits(int(exponent_bits)) | 1
        out += int(gmpy2.powmod(h, a, n_square)).to_bytes(width, "big")
    return bytes(out)


def factored_obfuscators_bytes(p: int, q: int, count: int) -> bytes:
    """Like ``random_obfuscators_bytes`` but ~3.5x faster, for a client that holds the factors p, q of n.

    Z*_(p^2) is cyclic of order p(p-1). When gcd(q, p-1) = 1, the n-th powers and the p-th powers are both
    its unique subgroup of order p-1, so for uniform a the value a^p mod p^2 is distributed exactly as
    r^n mod p^2 (likewise b^q mod q^2), and joining the two by CRT gives exactly the distribution of
    r^n mod n^2: a 1024-bit exponent mod p^2 instead of a 2048-bit one mod n^2. Callers check the gcds.
    """
    p_mpz, q_mpz = gmpy2.mpz(p), gmpy2.mpz(q)
    p_square, q_square = p_mpz * p_mpz, q_mpz * q_mpz
    p_square_inv = gmpy2.invert(p_square, q_square)
    width = 2 * ((int(p_mpz * q_mpz).bit_length() + 7) // 8)
    out = bytearray()
    for _ in range(count):
        a = _unit_below(p_square, p_mpz)
        b = _unit_below(q_square, q_mpz)
        x_p = gmpy2.powmod(a, p_mpz, p_square)
        x_q = gmpy2.powmod(b, q_mpz, q_square)
        x = x_p + p_square * ((x_q - x_p) * p_square_inv % q_square)
        out += int(x).to_bytes(width, "big")
    return bytes(out)


def _unit_below(modulus, prime) -> gmpy2.mpz:
    """Uniform element of [1, modulus) coprime with ``prime``."""
    while True:
        a = gmpy2.mpz(secrets.randbelow(int(modulus) - 1) + 1)
        if a % prime:
            return a


def can_use_factors(private_key) -> bool:
    """True when the fast factored obfuscators apply: gcd(q, p-1) = gcd(p, q-1) = 1 (always for equal-size
    primes, as phe generates them)."""
    p, q = int(private_key.p), int(private_key.q)
    return p != q and gmpy2.gcd(q, p - 1) == 1 and gmpy2.gcd(p, q - 1) == 1


def _split_bytes(data: bytes, width: int) -> list[int]:
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


def _get_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool kept across calls (a client encrypts every round); rebuilt if the size changes."""
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers != workers:
            _shutdown_locked()
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            _pool_workers = workers
        return _pool


def shutdown_pool() -> None:
    """Stop the worker processes (also done at interpreter exit)."""
    with _pool_lock:
        _shutdown_locked()


def _shutdown_locked() -> None:
    global _pool, _pool_workers
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
    _pool, _pool_workers = None, 0


atexit.register(shutdown_pool)


def resolve_workers(workers: int | None) -> int:
    """None -> all available cores; otherwise at least 1."""
    return available_cores() if workers is None else max(1, int(workers))


def precompute_obfuscators(public_key, count: int, workers: int | None = None, private_key=None) -> list[int]:
    """``count`` fresh obfuscators for ``public_key``, computed on up to ``workers`` cores (None: all).

    A client that holds the matching ``private_key`` may pass it: the obfuscators then come from the
    factors (same distribution, ~3.5x less work; see ``factored_obfuscators_bytes``).
    """
    count = int(count)
    if count <= 0:
        return []
    n = int(public_key.n)
    width = 2 * ((n.bit_length() + 7) // 8)
    job: Callable[[int], bytes]  # count -> that many obfuscators' bytes (a partial: picklable for the pool)
    if private_key is not None:
        if private_key.public_key.n != n:
            raise ValueError("the private key does not match the public key")
        if can_use_factors(private_key):
            job = partial(factored_obfuscators_bytes, int(private_key.p), int(private_key.q))
        else:
            job = partial(random_obfuscators_bytes, n)
    else:
        job = partial(random_obfuscators_bytes, n)
    workers = resolve_workers(workers)
    if workers == 1 or count < MIN_PARALLEL:
        return _split_bytes(job(count), width)
    # a few chunks per worker balance uneven cores without many round trips
    n_chunks = min(count, workers * 4)
    sizes = [count // n_chunks + (1 if i < count % n_chunks else 0) for i in range(n_chunks)]
    for attempt in (1, 2):
        try:
            pool = _get_pool(workers)
            futures = [pool.submit(job, size) for size in sizes]
            return [c for future in futures for c in _split_bytes(future.result(), width)]
        except BrokenProcessPool:
            shutdown_pool()  # a worker died (OOM killer, signal): start a fresh pool once
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class ObfuscatorReserve:
    """Obfuscators computed ahead of need in worker processes (while a client trains, or between rounds).

    ``refill(count)`` starts computing in the background on ``workers`` pool processes; ``take(count)``
    returns ``count`` obfuscators, from what is ready first and computing the rest in this process. Every
    obfuscator is handed out once.
    """

    def __init__(self, public_key, workers: int = 1, short_exponent_bits: int | None = None):
        self.public_key, self.workers = public_key, max(1, int(workers))
        self._ready: list[int] = []
        self._pending: list = []
        self._job: Callable[..., bytes] = random_obfuscators_bytes
        self._args: tuple[int, ...] = (int(public_key.n),)
        if short_exponent_bits:  # DJN: one full r^n now, then h^a with short a
            base = int.from_bytes(random_obfuscators_bytes(int(public_key.n), 1), "big")
            self._job = short_obfuscators_bytes
            self._args = (int(public_key.n), base)
            self._exponent_bits = int(short_exponent_bits)

    def refill(self, count: int) -> None:
        """Start computing ``count`` more (no-op while a refill is still running)."""
        if count <= 0 or any(not f.done() for f in self._pending):
            return
        self._collect()
        pool = _get_pool(self.workers)
        sizes = [count // self.workers + (1 if i < count % self.workers else 0) for i in range(self.workers)]
        self._pending = [pool.submit(self._job, *self._call_args(size)) for size in sizes if size]

    def _call_args(self, size: int) -> tuple:
        if self._job is short_obfuscators_bytes:
            return (*self._args, size, self._exponent_bits)
        return (*self._args, size)

    def _collect(self, wait: bool = False) -> None:
        width = 2 * ((int(self.public_key.n).bit_length() + 7) // 8)
        keep = []
        for future in self._pending:
            if not (wait or future.done()):
                keep.append(future)
                continue
            try:
                self._ready += _split_bytes(future.result(), width)
            except BrokenProcessPool:
                shutdown_pool()
            except CancelledError:  # the shared pool was rebuilt for another size: take() computes the shortfall
                pass
        self._pending = keep

    def take(self, count: int, wait: bool = True) -> list[int]:
        """``count`` fresh obfuscators (waits for a running refill when ``wait``, else computes the shortfall)."""
        self._collect(wait)
        out = [self._ready.pop() for _ in range(min(count, len(self._ready)))]
        if len(out) < count:
            width = 2 * ((int(self.public_key.n).bit_length() + 7) // 8)
            out += _split_bytes(self._job(*self._call_args(count - len(out))), width)
        return out
