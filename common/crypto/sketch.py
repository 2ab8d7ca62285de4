"""Linear sketches of an encrypted update, computed homomorphically by the aggregator (secure-robust).

A client's update is quantized (q in [0, 2^b - 1]) and packed into B blocks of L slots; block j encrypts
P_j = sum_i q_(j,i) 2^(i*s). After every ciphertext of a round is in, the aggregator draws a fresh public
seed; row r of the sketch plan is a random pair of disjoint block subsets S+ and S- of equal size t
(t = floor(B / 2)). The row's ciphertext

    prod_(j in S+) C_j * (prod_(j in S-) C_j)^-1 * Enc(O * sum_i 2^(i*s))        with O = t * (2^b - 1)

decrypts to slots sum_(S+) q_(j,i) - sum_(S-) q_(j,i) + O, each in [0, 2 O] (no borrow between slots), so
the signed sketch y_(r,i) = sum_j sign_(r,j) q_(j,i) has the quantization offsets cancelled. A row mixes
many coordinates with random signs, so norms, distances and cosines between clients' updates survive in
sketch space (in expectation, up to the factor 2t / B); the m x L sketch numbers are all the aggregator
learns about one client. The layout's headroom must cover 2t as well as the aggregate's weight total.

The last block is usually partial: its padding slots hold 0, not a quantized value, so they would add
+-(2^b - 1)/2 per row to every client's sketch alike (a common vector that swamps cosines and norms). The
sketch therefore fills them with 2^(b-1), the quantized zero (``pad_value``), homomorphically in
``sketch_ciphertexts`` and in the clear in ``sketch_quantized``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gmpy2
import numpy as np

from fedad.common.crypto.exceptions import PackingError
from fedad.common.crypto.packing import SlotLayout, unpack

SEED_BYTES = 32


def secure_layout(key_bits: int, bits: int, n_values: int, weight_total: int) -> SlotLayout:
    """Layout whose headroom covers both the aggregate's integer weight total and the sketch's 2t <= B."""
    headroom = SlotLayout.headroom_for(weight_total)
    while True:  # more headroom -> fewer slots per block -> more blocks: iterate to the fixed point
        layout = SlotLayout(bits=int(bits), headroom_bits=headroom, key_bits=int(key_bits))
        need = SlotLayout.headroom_for(max(int(weight_total), layout.blocks_for(n_values)))
        if need <= headroom:
            return layout
        headroom = need


@dataclass(frozen=True)
class SketchPlan:
    """m rows of (plus blocks, minus blocks), drawn from a public seed over B blocks."""

    seed: bytes
    n_blocks: int
    plus: tuple[tuple[int, ...], ...]
    minus: tuple[tuple[int, ...], ...]

    @classmethod
    def draw(cls, seed: bytes, n_blocks: int, rows: int) -> SketchPlan:
        """The plan a seed gives: each row a random permutation of the blocks cut into S+, S- (t each)."""
        if int(n_blocks) < 2:
            raise PackingError(f"a sketch needs at least 2 blocks, the update has {n_blocks}")
        if int(rows) < 1:
            raise PackingError(f"sketch rows must be at least 1, got {rows}")
        if len(seed) != SEED_BYTES:
            raise PackingError(f"a sketch seed has {SEED_BYTES} bytes, got {len(seed)}")
        rng = np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))
        t = int(n_blocks) // 2
        plus, minus = [], []
        for _ in range(int(rows)):
            order = rng.permutation(int(n_blocks))
            plus.append(tuple(sorted(int(j) for j in order[:t])))
            minus.append(tuple(sorted(int(j) for j in order[t : 2 * t])))
        return cls(bytes(seed), int(n_blocks), tuple(plus), tuple(minus))

    @property
    def rows(self) -> int:
        """m, the number of sketch rows per client."""
        return len(self.plus)

    @property
    def half(self) -> int:
        """t, the size of each of the two subsets."""
        return len(self.plus[0])

    def signs(self) -> np.ndarray:
        """The (m, B) sign matrix: +1 on S+, -1 on S-, 0 elsewhere."""
        s = np.zeros((self.rows, self.n_blocks), dtype=np.int64)
        for r, (p, q) in enumerate(zip(self.plus, self.minus, strict=True)):
            s[r, list(p)] = 1
            s[r, list(q)] = -1
        return s

    def offset(self, layout: SlotLayout) -> int:
        """Per-slot offset O = t (2^b - 1) that keeps every sketch slot non-negative."""
        return self.half * ((1 << layout.bits) - 1)

    def check(self, layout: SlotLayout) -> None:
        """Raise PackingError when 2t exceeds the layout's headroom (slots could carry into each other)."""
        if 2 * self.half > layout.max_sum:
            raise PackingError(
                f"a sketch over 2 x {self.half} blocks needs headroom for {2 * self.half}, the "
                f"layout has {layout.max_sum}"
            )


def pad_value(layout: SlotLayout) -> int:
    """2^(b-1): what the sketch puts in the padding slots of a partial last block (the quantized zero)."""
    return 1 << (layout.bits - 1)


def sketch_ciphertexts(public_key, blocks: list[int], plan: SketchPlan, layout: SlotLayout, count: int) -> list[int]:
    """m ciphertexts, row r encrypting sum_(S+) P_j - sum_(S-) P_j + O per slot (see module doc); ``count``
    is the number of values packed (the last block's padding slots are filled with ``pad_value``)."""
    if len(blocks) != plan.n_blocks:
        raise PackingError(f"the plan covers {plan.n_blocks} blocks, the update has {len(blocks)}")
    if layout.blocks_for(count) != plan.n_blocks:
        raise PackingError(f"{count} values make {layout.blocks_for(count)} blocks, the plan covers {plan.n_blocks}")
    plan.check(layout)
    n = gmpy2.mpz(public_key.n)
    n_square = n * n
    packed_offset = sum(plan.offset(layout) << (i * layout.slot_bits) for i in range(layout.slots_per_block))
    enc_offset = (1 + gmpy2.mpz(packed_offset) * n) % n_square  # g^O with g = n + 1; blinding re-randomises
    cts = [gmpy2.mpz(c) for c in blocks]
    used = int(count) - (plan.n_blocks - 1) * layout.slots_per_block  # values in the last block
    pad = sum(pad_value(layout) << (i * layout.slot_bits) for i in range(used, layout.slots_per_block))
    cts[-1] = cts[-1] * (1 + gmpy2.mpz(pad) * n) % n_square
    out = []
    for plus, minus in zip(plan.plus, plan.minus, strict=True):
        num, den = enc_offset, gmpy2.mpz(1)
        for j in plus:
            num = num * cts[j] % n_square
        for j in minus:
            den = den * cts[j] % n_square
        out.append(int(num * gmpy2.invert(den, n_square) % n_square))
    return out


def decode_sketch(plaintexts: list[int], plan: SketchPlan, layout: SlotLayout) -> np.ndarray:
    """Signed (m, L) int64 sketch from the rows' decrypted plaintexts; PackingError when a row is malformed."""
    if len(plaintexts) != plan.rows:
        raise PackingError(f"{plan.rows} sketch rows expected, got {len(plaintexts)}")
    offset = plan.offset(layout)
    rows = []
    for r, value in enumerate(plaintexts):
        slots = unpack([int(value)], layout, layout.slots_per_block).astype(np.int64)
        if int(slots.max()) > 2 * offset:
            raise PackingError(f"sketch row {r} has a slot above 2 x the offset: the update's values were out of range")
        rows.append(slots - offset)
    return np.vstack(rows)


def sketch_quantized(q: np.ndarray, plan: SketchPlan, layout: SlotLayout) -> np.ndarray:
    """Reference (plaintext) sketch of quantized values q: exactly what ``decode_sketch`` recovers."""
    q = np.asarray(q, dtype=np.int64).ravel()
    slots = layout.slots_per_block
    if layout.blocks_for(q.size) != plan.n_blocks:
        raise PackingError(f"{q.size} values make {layout.blocks_for(q.size)} blocks, the plan covers {plan.n_blocks}")
    matrix = np.full(plan.n_blocks * slots, pad_value(layout), dtype=np.int64)
    matrix[: q.size] = q
    return plan.signs() @ matrix.reshape(plan.n_blocks, slots)


def leakage(plan_rows: int, layout: SlotLayout, n_values: int) -> float:
    """Numbers the aggregator learns per client (m x L) over the update's dimensions."""
    return plan_rows * layout.slots_per_block / float(n_values)
