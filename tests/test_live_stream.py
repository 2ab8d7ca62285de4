"""The node's live scoring (fedad.client.live_stream): hand-over of global models from the client's phases."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from fedad.client.flower_client import FedadClient
from fedad.client.live_stream import NodeStream
from fedad.client.site import Site
from fedad.common.alarms import AlarmSink
from fedad.common.data import Dataset
from fedad.common.federation_spec import FederationSpec
from fedad.common.threshold_rule import threshold_by_rule
from fedad.common.wire import encode_json

NAMES = ["a", "b", "c"]


def _site() -> Site:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3))
    X[:, 1] = X[:, 0] + 0.1 * X[:, 2]
    return Site(Dataset(X=X, feature_names=NAMES, y=None, time=None, source="s"), device="cpu")


def _weights(seed: int) -> list[np.ndarray]:
    import torch

    from fedad.common.models.registry import build_model
    from fedad.common.training import get_weights

    torch.manual_seed(seed)
    return get_weights(build_model("dense", 3))


@pytest.mark.parametrize("score", ["mse", "max"])
def test_site_detector_scores_like_the_site(score):
    site = _site()
    spec = FederationSpec(feature_names=NAMES, preprocessing={"scaler": "standard"}, score=score)
    client = FedadClient(site, "node", logging.getLogger("test"))
    client.evaluate(_weights(0), {"spec": encode_json(spec.to_dict()), "phase": "val", "round": 1})
    det = site.detector(_weights(0), 1.0, stream_state=False)
    rows = site.split.val
    np.testing.assert_allclose(det.decision_function(rows), site.record_scores(_weights(0), rows), rtol=1e-6)
    site.train(_weights(0), 1, 0)  # a later round trains the site's model: the handed-over detector keeps its own
    np.testing.assert_allclose(det.decision_function(rows), site.record_scores(_weights(0), rows), rtol=1e-6)


def test_each_global_model_is_handed_over_with_its_round_as_version(tmp_path):
    site = _site()
    spec = FederationSpec(feature_names=NAMES, preprocessing={"scaler": "standard"})
    config = {"spec": encode_json(spec.to_dict())}
    client = FedadClient(site, "node", logging.getLogger("test"))
    stream_path = tmp_path / "s.csv"
    stream_path.write_text("a,b,c\n" + "".join(f"{r[0]},{r[1]},{r[2]}\n" for r in site.split.val[:50]))
    alarms = tmp_path / "alarms.jsonl"
    sink = AlarmSink(str(alarms), all_decisions=True)
    node = NodeStream(str(stream_path), NAMES, logging.getLogger("test"), sink, idle_exit=0.5)
    client.on_global = lambda w, c, t: node.offer(site, w, c, t)
    client.evaluate(_weights(1), {**config, "phase": "val", "round": 1})
    assert node.scorer is not None and node.scorer.version == "1"
    own = threshold_by_rule(site.record_scores(_weights(1), site.split.val), spec.threshold_rule, 0.99, None)
    assert node.scorer.model.limit == pytest.approx(own)  # before the federation's threshold: the node's own
    client.evaluate(_weights(2), {**config, "phase": "val", "round": 2})
    assert node.scorer.version == "2"
    client.evaluate(_weights(2), {**config, "phase": "test", "round": 2, "threshold": 0.5})
    assert node.scorer.model.limit == 0.5  # the federation's threshold for the final model
    node.wait()  # the federation is over: the file is read to its end, then idle for 0.5 s
    assert node.error is None and not node.thread.is_alive()
    got = [json.loads(x) for x in alarms.read_text().splitlines()]
    assert [d["record"] for d in got] == list(range(50))
    versions = [int(d["version"]) for d in got]
    assert versions == sorted(versions) and set(versions) <= {1, 2}


def test_learn_from_stream_keeps_the_newest_normal_records_only():
    from fedad.common.live_scorer import Decision

    node = NodeStream("-", NAMES, logging.getLogger("test"), AlarmSink(None), learn_rows=4)
    assert node.learned_rows() is None
    rows = np.arange(18, dtype=float).reshape(6, 3)
    node._observe([Decision(i, None, 0.0, 1.0, i in (1, 4), "1", 0.1) for i in range(6)], rows)
    np.testing.assert_array_equal(node.learned_rows(), rows[[0, 2, 3, 5]])  # alarms 1 and 4 never join
    node._observe([Decision(6, None, 0.0, 1.0, False, "1", 0.1)], rows[:1] + 100)
    np.testing.assert_array_equal(node.learned_rows(), np.vstack([rows[[2, 3, 5]], rows[:1] + 100]))  # bounded


def test_site_trains_on_stream_records_besides_its_split():
    site = _site()
    spec = FederationSpec(feature_names=NAMES, preprocessing={"scaler": "standard"})
    FedadClient(site, "node", logging.getLogger("test")).evaluate(
        _weights(0), {"spec": encode_json(spec.to_dict()), "phase": "val", "round": 1}
    )
    plain = site.train(_weights(0), 1, 0)
    extra = site.train(_weights(0), 1, 0, extra_rows=site.split.val[:300] * 3.0)
    assert plain["examples"] == extra["examples"] == len(site.train_samples)  # the declared count
    assert not all(np.array_equal(a, b) for a, b in zip(plain["weights"], extra["weights"], strict=True))


def test_adaptive_rule_on_the_node_decides_like_batch_adaptive_alarms_and_goes_on_over_a_repeated_offer(tmp_path):
    from fedad.common.stream_rule import AdaptiveParams, adaptive_alarms

    site = _site()
    spec = FederationSpec(feature_names=NAMES, preprocessing={"scaler": "standard"})
    config = {"spec": encode_json(spec.to_dict())}
    client = FedadClient(site, "node", logging.getLogger("test"))
    rows = np.vstack([site.split.val[:150], site.split.val[150:300] + [0.0, 3.0, 0.0]])  # a fault in feature b
    stream_path = tmp_path / "s.csv"
    stream_path.write_text("a,b,c\n" + "".join(",".join(repr(float(v)) for v in r) + "\n" for r in rows))
    alarms = tmp_path / "alarms.jsonl"
    params = AdaptiveParams(smooth=10)
    import time

    began = time.time()
    node = NodeStream(str(stream_path), NAMES, logging.getLogger("test"), AlarmSink(str(alarms), all_decisions=True),
                      idle_exit=0.5, adaptive=params)  # fmt: skip
    client.on_global = lambda w, c, t: node.offer(site, w, c, t)
    client.evaluate(_weights(1), {**config, "phase": "val", "round": 1})
    scorer = node.scorer
    assert scorer is not None and scorer.version == "1"
    rule = scorer._rule
    assert rule is not None  # the adaptive rule, fitted on this node's training and validation rows
    deadline = time.monotonic() + 120
    while scorer.records < len(rows) and time.monotonic() < deadline:  # the whole file, by round 1's model
        time.sleep(0.05)
    # the same model again (the test phase's threshold): no hand-over, the rule's state goes on
    client.evaluate(_weights(1), {**config, "phase": "test", "round": 1, "threshold": 0.5})
    assert scorer._rule is rule
    client.evaluate(_weights(2), {**config, "phase": "val", "round": 2})  # a new model: a new rule
    assert scorer._rule is not rule and scorer.version == "2"
    node.wait()
    assert node.error is None
    got = [json.loads(x) for x in alarms.read_text().splitlines()]
    assert [d["record"] for d in got] == list(range(len(rows)))
    assert {d["version"] for d in got} == {"1"}  # all scored before round 2 arrived
    assert all(began <= d["at"] <= time.time() for d in got)  # each decision's wall-clock time
    batch = adaptive_alarms(site.detector(_weights(1), 0.5), rows, params)
    assert [d["alarm"] for d in got] == batch.alarms.astype(bool).tolist()
    np.testing.assert_allclose([d["score"] for d in got], batch.scores, rtol=1e-6)
    assert 0 < sum(d["alarm"] for d in got) < len(rows)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--rule", "adaptive"], "--rule needs --stream"),
        (["--stream", "{s}", "--alarms", "{a}", "--rule", "adaptive", "--smooth", "0"], "--smooth, --change-window"),
    ],
)
def test_client_rule_bad_input_is_one_line_and_exit_2(tmp_path, extra, message):
    from procs import run_client

    (tmp_path / "s.csv").write_text("a,b,c\n")
    (tmp_path / "d.csv").write_text("a,b,c\n1,2,3\n")
    args = [x.format(s=tmp_path / "s.csv", a=tmp_path / "al.jsonl") for x in extra]
    p = run_client("127.0.0.1:1", tmp_path / "d.csv", *args)
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == 2 and len(lines) == 1 and message in lines[0], p.stderr
    assert not (tmp_path / "al.jsonl").exists()
