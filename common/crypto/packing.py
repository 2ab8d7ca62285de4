"""BatchCrypt-style encoding of an update into Paillier plaintexts: clip, quantize, offset, pack slots.

Pure integer/numpy code, no keys. A float x is clipped to [-R, R] and mapped to an integer
q = round((x + R) / (2R) * (2^b - 1)) in [0, 2^b - 1]. Many q share one plaintext, each in a slot of
s = b + h bits, slot i of a block at bit offset i*s (little-endian slot order):

    P = q_0 + q_1 * 2^s + q_2 * 2^(2s) + ...      (L = floor((key_bits - 2) / s) slots per block)

The h headroom bits let the server add plaintexts with integer multipliers summing to at most
2^h - 1 (client weights, or later the block counts of a sketch) without a carry crossing a slot:
a slot then holds at most (2^h - 1) * (2^b - 1) < 2^s, and the whole block stays below
2^(key_bits - 2) < n. See docs/paillier.md for the arithmetic and the error bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedad.common.crypto.exceptions import PackingError

MAX_VALUE_BITS = 32
MAX_SLOT_BITS = 64  # slots are unpacked into uint64


@dataclass(frozen=True)
class SlotLayout:
    """Slot geometry of packed plaintexts: b value bits + h headroom bits per slot, for a key of key_bits."""

    bits: int
    headroom_bits: int
    key_bits: int

    def __post_init__(self) -> None:
        for name in ("bits", "headroom_bits", "key_bits"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise PackingError(f"SlotLayout.{name} must be an int, got {value!r}")
        if not 1 <= self.bits <= MAX_VALUE_BITS:
            raise PackingError(f"quantization bits must be in 1..{MAX_VALUE_BITS}, got {self.bits}")
        if self.headroom_bits < 0:
            raise PackingError(f"headroom bits must be >= 0, got {self.headroom_bits}")
        if self.slot_bits > MAX_SLOT_BITS:
            raise PackingError(
                f"slot of {self.bits}+{self.headroom_bits} bits exceeds {MAX_SLOT_BITS}; "
                "lower the quantization bits or the weight bound"
            )
        if self.key_bits - 2 < self.slot_bits:
            raise PackingError(f"a {self.key_bits}-bit key cannot hold one {self.slot_bits}-bit slot")

    @property
    def slot_bits(self) -> int:
        """Width s = b + h of one slot."""
        return self.bits + self.headroom_bits

    @property
    def slots_per_block(self) -> int:
        """L = floor((key_bits - 2) / s): every packed block and every packed sum stays below n."""
        return (self.key_bits - 2) // self.slot_bits

    @property
    def max_sum(self) -> int:
        """Largest total of integer multipliers (summed weights, sketch sizes) the slots can absorb."""
        return (1 << self.headroom_bits) - 1

    def blocks_for(self, count: int) -> int:
        """Number of plaintext blocks needed for ``count`` values."""
        return -(-int(count) // self.slots_per_block)

    @staticmethod
    def headroom_for(max_sum_of_weights: int) -> int:
        """h = ceil(log2(W + 1)): the fewest headroom bits for multipliers summing to at most W."""
        w = int(max_sum_of_weights)
        if w < 1:
            raise PackingError(f"the weight bound must be a positive integer, got {max_sum_of_weights!r}")
        return w.bit_length()  # == ceil(log2(w + 1)) for w >= 1

    @classmethod
    def for_max_sum(cls, bits: int, max_sum: int, key_bits: int) -> SlotLayout:
        """Layout whose headroom covers multipliers summing to ``max_sum`` (max(W, largest sketch))."""
        return cls(bits=int(bits), headroom_bits=cls.headroom_for(max_sum), key_bits=int(key_bits))


def _levels(bits: int) -> int:
    if not 1 <= int(bits) <= MAX_VALUE_BITS:
        raise PackingError(f"quantization bits must be in 1..{MAX_VALUE_BITS}, got {bits}")
    return (1 << int(bits)) - 1


def _check_clip(clip: float) -> float:
    clip = float(clip)
    if not np.isfinite(clip) or clip <= 0:
        raise PackingError(f"clip range R must be a positive finite number, got {clip}")
    return clip


def quantize(x: np.ndarray, clip: float, bits: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Clip x to [-clip, clip] and offset-quantize to uint64 in [0, 2^bits - 1]; returns (q, n_clipped).

    Deterministic round-to-nearest when ``rng`` is None, else stochastic rounding (unbiased).
    """
    levels = _levels(bits)
    clip = _check_clip(clip)
    x = np.asarray(x, dtype=np.float64).ravel()
    if np.isnan(x).any():
        raise PackingError("the update holds NaN values; refusing to encrypt it")
    n_clipped = int(np.count_nonzero(np.abs(x) > clip))
    scaled = (np.clip(x, -clip, clip) + clip) * (levels / (2.0 * clip))
    if rng is None:
        rounded = np.rint(scaled)
    else:
        rounded = np.floor(scaled + rng.random(scaled.shape))
    return np.clip(rounded, 0, levels).astype(np.uint64), n_clipped


def dequantize_mean(slot_sums: np.ndarray, total_weight: int, clip: float, bits: int) -> np.ndarray:
    """Float weighted mean from the integer slot sums sum_k w_k q_k and W = sum_k w_k."""
    levels = _levels(bits)
    clip = _check_clip(clip)
    if int(total_weight) < 1:
        raise PackingError(f"total weight must be a positive integer, got {total_weight!r}")
    mean_q = np.asarray(slot_sums, dtype=np.float64) / float(total_weight)
    return mean_q * (2.0 * clip / levels) - clip


def quantization_error_bound(clip: float, bits: int, stochastic: bool) -> float:
    """Per-value bound on |dequantized mean - float mean| for values inside [-clip, clip].

    One quantization step is 2R / (2^b - 1); round-to-nearest errs by at most half a step, stochastic
    rounding by less than one step. A weighted mean of per-client errors obeys the same bound.
    Clipped values add their clipped-off part |x - clip(x)|, weighted by w_k / W.
    """
    step = 2.0 * _check_clip(clip) / _levels(bits)
    return step if stochastic else step / 2.0


def pack(q: np.ndarray, layout: SlotLayout) -> list[int]:
    """Pack quantized values (each < 2^bits) into ceil(len/L) plaintext ints, slot i at bit i*s."""
    q = np.asarray(q)
    if q.ndim != 1:
        q = q.ravel()
    if q.size == 0:
        raise PackingError("nothing to pack: the update is empty")
    if q.dtype.kind not in "ui":
        raise PackingError(f"packed values must be integers, got dtype {q.dtype}")
    if q.dtype.kind == "i" and int(q.min()) < 0:
        raise PackingError("packed values must be non-negative (offset-encode first)")
    if int(q.max()) >> layout.bits:
        raise PackingError(f"a value {int(q.max())} does not fit {layout.bits} quantization bits")
    slots, width = layout.slots_per_block, layout.slot_bits
    n_blocks = layout.blocks_for(q.size)
    padded = np.zeros(n_blocks * slots, dtype="<u8")
    padded[: q.size] = q
    # bit j of value i sits at bit i*s + j of its block: lay the bits out and let packbits build bytes
    value_bits = np.unpackbits(padded.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    block_bits = value_bits[:, :width].reshape(n_blocks, slots * width)
    block_bytes = np.packbits(block_bits, axis=1, bitorder="little")
    row = block_bytes.shape[1]
    buf = block_bytes.tobytes()
    return [int.from_bytes(buf[i * row : (i + 1) * row], "little") for i in range(n_blocks)]


def unpack(blocks: list[int], layout: SlotLayout, count: int) -> np.ndarray:
    """Slot values (uint64) of packed blocks, first ``count`` of them; checks the blocks are well formed.

    Raises PackingError when the block count does not match, a block is wider than L*s bits or a
    padding slot is non-zero: signs of a wrong key, an overflowing weight sum or a corrupted aggregate.
    """
    count = int(count)
    if count < 1:
        raise PackingError(f"value count must be positive, got {count}")
    slots, width = layout.slots_per_block, layout.slot_bits
    n_blocks = layout.blocks_for(count)
    if len(blocks) != n_blocks:
        raise PackingError(f"{count} values need {n_blocks} blocks, got {len(blocks)}")
    used_bits = slots * width
    row = -(-used_bits // 8)
    parts = []
    for i, block in enumerate(blocks):
        block = int(block)
        if block < 0 or block.bit_length() > used_bits:
            raise PackingError(
                f"block {i} has {block.bit_length()} bits, more than the layout's {used_bits}: "
                "wrong key or the weights overflowed the headroom"
            )
        parts.append(block.to_bytes(row, "little"))
    block_bytes = np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(n_blocks, row)
    block_bits = np.unpackbits(block_bytes, axis=1, count=used_bits, bitorder="little")
    value_bits = np.zeros((n_blocks * slots, 64), dtype=np.uint8)
    value_bits[:, :width] = block_bits.reshape(n_blocks * slots, width)
    values = np.packbits(value_bits, axis=1, bitorder="little").view("<u8").ravel()
    if values[count:].any():
        raise PackingError("padding slots are non-zero: wrong key or a corrupted aggregate")
    return values[:count].astype(np.uint64)


def unpack_lenient(blocks: list[int], layout: SlotLayout, count: int) -> np.ndarray:
    """The first ``count`` slot values of decrypted blocks, for the side that decodes an aggregate.

    Peers prove nothing about their plaintexts: a block wider than its slots is cut to them and padding
    slots are ignored, so an out-of-range contribution spoils values (which the caller clamps) but
    never the whole aggregate. The block count must still match.
    """
    used_bits = layout.slots_per_block * layout.slot_bits
    mask = (1 << used_bits) - 1
    n = len(blocks)
    if n != layout.blocks_for(int(count)):
        raise PackingError(f"{count} values need {layout.blocks_for(int(count))} blocks, got {n}")
    return unpack([int(b) & mask for b in blocks], layout, n * layout.slots_per_block)[: int(count)]
