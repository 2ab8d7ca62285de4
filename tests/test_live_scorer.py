"""Live scoring (fedad.common.live_scorer): causal decisions equal the batch ones; atomic model hand-over."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fedad.common.errors import FedadError
from fedad.common.live_scorer import LiveModel, LiveScorer, record_window
from fedad.common.stream_rule import AdaptiveParams, adaptive_alarms


def _rig(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """400 training rows of a 4-sensor rig, then a stream: normal, a fault on sensor 2, a new normal level."""
    rng = np.random.default_rng(seed)
    n = 1400
    drive = np.sin(np.arange(n) / 15.0)
    X = np.column_stack([drive, 2 * drive, -drive, 0.5 * drive]) + rng.normal(scale=0.05, size=(n, 4))
    X[700:900, 2] += 4.0
    X[900:, 0] += 0.5
    return X[:400], X[400:]


def _fit(seed: int = 0, **kw):
    from fedad.common.detector import AutoencoderDetector

    train, _ = _rig(seed)
    return AutoencoderDetector(epochs=20, batch_size=32, device="cpu", seed=seed, **kw).fit(train)


@pytest.fixture(scope="module")
def dense():
    return _fit()


@pytest.fixture(scope="module")
def other():
    return _fit(seed=1)


def _feed(scorer: LiveScorer, X: np.ndarray, sizes: list[int]) -> list:
    out, i, k = [], 0, 0
    while i < len(X):
        n = sizes[k % len(sizes)]
        out += scorer.score(X[i : i + n])
        i, k = i + n, k + 1
    return out


@pytest.mark.parametrize("sizes", [[1], [3, 1, 17, 64]])
def test_live_decisions_equal_batch_decisions(dense, sizes):
    _, stream = _rig()
    batch_scores = dense.decision_function(stream)
    batch_flags = batch_scores > dense.threshold_
    assert 0 < batch_flags.sum() < len(stream)  # both kinds of decision occur
    got = _feed(LiveScorer(LiveModel(dense, "v1")), stream, sizes)
    assert [d.record for d in got] == list(range(len(stream)))
    np.testing.assert_array_equal([d.alarm for d in got], batch_flags)
    np.testing.assert_allclose([d.score for d in got], batch_scores, rtol=1e-5, atol=1e-7)
    assert {d.version for d in got} == {"v1"} and all(d.latency_ms >= 0 for d in got)


def test_sequence_model_waits_for_its_first_window(tmp_path):
    from fedad.common.detector import AutoencoderDetector

    train, stream = _rig()
    det = AutoencoderDetector(model="dense", window=6, epochs=5, batch_size=32, device="cpu").fit(train)
    assert record_window(det) == 6
    scorer = LiveScorer(LiveModel(det, "w"))
    assert len(scorer.score(stream[:3])) == 0  # the first window is not full yet
    got = list(scorer.score(stream[3:5])) + _feed(scorer, stream[5:300], [1, 4])
    batch = det.decision_function(stream[:300])
    assert [d.record for d in got] == list(range(300))
    np.testing.assert_array_equal([d.alarm for d in got], batch > det.threshold_)
    np.testing.assert_allclose([d.score for d in got], batch, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("sizes", [[1], [7, 50]])
def test_live_adaptive_rule_equals_batch_including_rebaselines(dense, sizes):
    _, stream = _rig()
    params = AdaptiveParams(smooth=20)
    batch = adaptive_alarms(dense, stream, params)
    assert batch.events and batch.alarms.any()  # a re-baseline (a fresh model mid-stream) happens
    scorer = LiveScorer(LiveModel(dense, "a"), adaptive=params)
    got = _feed(scorer, stream, sizes)
    np.testing.assert_array_equal([d.alarm for d in got], batch.alarms.astype(bool))
    np.testing.assert_allclose([d.score for d in got], batch.scores, rtol=1e-4, atol=1e-6)
    assert {d.threshold for d in got} == {batch.threshold}


def test_swap_mid_stream_drops_and_repeats_nothing(dense, other):
    _, stream = _rig()
    scorer = LiveScorer(LiveModel(dense, "1"))
    got = _feed(scorer, stream[:500], [1, 9])
    scorer.swap(LiveModel(other, "2"))
    got += _feed(scorer, stream[500:], [5, 1])
    assert [d.record for d in got] == list(range(len(stream)))
    assert [d.version for d in got] == ["1"] * 500 + ["2"] * (len(stream) - 500)
    np.testing.assert_array_equal(
        [d.alarm for d in got[500:]], other.decision_function(stream[500:]) > other.threshold_
    )
    np.testing.assert_array_equal(
        [d.alarm for d in got[:500]], dense.decision_function(stream[:500]) > dense.threshold_
    )


def test_swap_from_another_thread_is_atomic(dense, other):
    _, stream = _rig()
    scorer = LiveScorer(LiveModel(dense, "0"))
    models = [dense, other]
    stop = threading.Event()

    def swapper() -> None:
        v = 0
        while not stop.is_set() and v < 200:
            v += 1
            scorer.swap(LiveModel(models[v % 2], str(v)))

    t = threading.Thread(target=swapper)
    t.start()
    try:
        got = _feed(scorer, np.tile(stream, (3, 1)), [2, 1, 5])
    finally:
        stop.set()
        t.join()
    assert [d.record for d in got] == list(range(3 * len(stream)))
    versions = [int(d.version) for d in got]
    assert versions == sorted(versions)  # versions only increase
    for d, x in zip(got, np.tile(stream, (3, 1)), strict=True):  # each decision made by the model it names
        det = models[int(d.version) % 2]
        assert d.alarm == bool(det.decision_function(x[None, :])[0] > det.threshold_)


def test_swap_refuses_another_shape(dense):
    from fedad.common.detector import AutoencoderDetector

    train, _ = _rig()
    three = AutoencoderDetector(epochs=1, device="cpu").fit(train[:, :3])
    scorer = LiveScorer(LiveModel(dense, "1"))
    with pytest.raises(FedadError):
        scorer.swap(LiveModel(three, "2"))
    assert scorer.version == "1"


def test_detrending_models_are_refused_live():
    det = _fit(preprocessing={"detrend": "diff"})
    with pytest.raises(FedadError, match="row-wise"):
        LiveScorer(LiveModel(det, "x"))


def test_a_batch_of_decisions_materialises_alarms_only_when_asked(dense):
    _, stream = _rig()
    batch = LiveScorer(LiveModel(dense, "v")).score(stream)
    flags = dense.decision_function(stream) > dense.threshold_
    assert len(batch) == len(stream) and [d.record for d in batch.alarmed()] == np.flatnonzero(flags).tolist()
    assert batch[3].to_dict()["record"] == 3 and batch[3].version == "v"
