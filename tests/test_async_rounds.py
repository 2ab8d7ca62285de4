"""The asynchronous loop's bookkeeping (versions, staleness, every node's validation loss, stale answers, a node
that leaves) with in-process stand-in nodes: no training, no transport. The real gRPC path with real clients
is tests/test_async_federation.py."""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np
from flwr.common import Code, EvaluateRes, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

from fedad.common.preprocessing import ScalerStats
from fedad.server.async_rounds import AsyncRounds
from fedad.server.federation import FedadServer
from fedad.server.main import build_parser, build_spec, build_strategy


class Node:
    """Answers like a client whose training pulls every weight a tenth of the way to 1; one call at a time."""

    def __init__(self, cid: str, seconds: float, fail_after: int | None = None, after=None) -> None:
        self.cid, self.seconds, self.fail_after = cid, seconds, fail_after
        self.after = after  # a slow node: each training ends only once the other nodes have trained this often
        self.busy, self.fits, self.overlaps = threading.Lock(), 0, 0
        self.bases: list[int] = []  # the global version each training started from
        self.rng = np.random.default_rng(len(cid))

    def _enter(self) -> None:
        if not self.busy.acquire(blocking=False):  # Flower's gRPC bridge refuses a second call meanwhile
            self.overlaps += 1
            self.busy.acquire()

    def fit(self, ins, timeout, group_id):
        self._enter()
        try:
            self.fits += 1
            self.bases.append(int(ins.config["version"]))
            if self.fail_after is not None and self.fits > self.fail_after:
                raise ConnectionError("stream closed")
            time.sleep(self.seconds)
            waited = time.monotonic()  # bounded: after the last version the fast nodes train no more
            while self.after is not None and min(n.fits for n in self.after) < 4 * self.fits:
                if time.monotonic() - waited > 5.0:
                    break
                time.sleep(0.005)
            w = parameters_to_ndarrays(ins.parameters)
            new = [x + 0.1 * (1.0 - x) + self.rng.normal(0, 1e-4, x.shape) for x in w]
            metrics = {"name": self.cid, "train_loss": 0.5, "seconds": self.seconds}
            return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(new), 100, metrics)
        finally:
            self.busy.release()

    def evaluate(self, ins, timeout, group_id):
        self._enter()
        try:
            loss = float(np.mean([np.mean((x - 1.0) ** 2) for x in parameters_to_ndarrays(ins.parameters)]))
            return EvaluateRes(Status(Code.OK, ""), loss, 50, {"name": self.cid})
        finally:
            self.busy.release()


def _run(tmp_path, nodes: list[Node], k: int, versions: int, max_staleness: int = 10):
    args = build_parser().parse_args(["--async-buffer", str(k), "--min-clients", str(len(nodes))])
    strategy, spec = build_strategy(args), build_spec(args)
    spec.feature_names = ["a", "b"]
    server = FedadServer(
        strategy=strategy,
        spec=spec,
        out_dir=tmp_path,
        min_clients=len(nodes),
        wait_timeout=5,
        resume=False,
        log=logging.getLogger("test-async"),
        async_buffer=k,
    )
    server.scaler = ScalerStats(count=1, sum=[0, 0], sumsq=[0, 0], min=[0, 0], max=[0, 0])
    for node in nodes:  # admitted as after the statistics phase
        strategy.names[node.cid] = node.cid
        server.admitted.add(node.cid)
        server.asked.add(node.cid)
        server.declared[node.cid] = 100
        server._client_manager.register(node)  # type: ignore[arg-type]  # a stand-in for a ClientProxy
    server.parameters = ndarrays_to_parameters([np.zeros((2, 2)), np.zeros(2)])
    (tmp_path / "rounds.jsonl").write_text("")
    last, reason, _ = AsyncRounds(server, k, max_staleness, 1.0).run(1, versions, 60.0)
    recs = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    return server, last, recs


def test_versions_go_on_without_the_slow_node_and_every_node_evaluates_every_version(tmp_path):
    fast = [Node("n0", 0.01), Node("n1", 0.01)]
    nodes = [*fast, Node("n2", 0.01, after=fast)]  # n2 answers once for every 4 answers of each fast node
    server, last, recs = _run(tmp_path, nodes, k=2, versions=12)
    assert last == 12 and [r["version"] for r in recs] == list(range(1, 13))
    assert all(len(r["clients"]) == 2 and set(r["staleness"]) == set(r["clients"]) for r in recs)
    assert any("n2" not in r["clients"] for r in recs)
    assert any(r["staleness"].get("n2", 0) >= 2 for r in recs), recs  # the slow node's answers are stale
    # every version's loss is every node's, the last one included (made after the nodes' last evaluations)
    assert all(r["val_clients"] == ["n0", "n1", "n2"] and r["loss"] is not None for r in recs)
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert all(b["elapsed"] > a["elapsed"] for a, b in zip(recs, recs[1:], strict=False))
    assert all(n.overlaps == 0 for n in nodes)  # one call at a time per node
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["round"] == 12
    assert server.rounds == recs and not server.failures


def test_an_answer_over_max_staleness_is_dropped_and_said(tmp_path):
    fast = [Node("n0", 0.01), Node("n1", 0.01)]
    nodes = [*fast, Node("n2", 0.01, after=fast)]
    _, _, recs = _run(tmp_path, nodes, k=2, versions=12, max_staleness=1)
    dropped = [r["stale"]["n2"] for r in recs if "n2" in r.get("stale", {})]
    assert dropped and "over --max-staleness 1" in dropped[0]
    assert all(t <= 1 for r in recs for t in r["staleness"].values())


def test_a_node_that_leaves_is_recorded_and_the_run_goes_on(tmp_path):
    nodes = [Node("n0", 0.02), Node("n1", 0.02), Node("n2", 0.02), Node("n3", 0.02, fail_after=2)]
    server, last, recs = _run(tmp_path, nodes, k=2, versions=10)
    assert last == 10 and len(recs) == 10
    assert [f["client"] for f in server.failures] == ["n3"] and "stream closed" in server.failures[0]["error"]
    assert any(r["failed"] == ["n3"] for r in recs)
    assert recs[-1]["val_clients"] == ["n0", "n1", "n2"]  # a node that left is not waited for


def test_a_node_never_trains_twice_from_the_same_version(tmp_path):
    # n0 is 10x faster than the others: before this rule it trained from version 0 again and again while
    # waiting for a second answer, and those answers re-applied the same delta in versions 2, 3, ...
    nodes = [Node("n0", 0.005), Node("n1", 0.05), Node("n2", 0.05)]
    _, last, recs = _run(tmp_path, nodes, k=2, versions=8)
    assert last == 8 and len(recs) == 8
    for node in nodes:
        assert node.bases == sorted(set(node.bases)), (node.cid, node.bases)
    assert len(nodes[0].bases) >= 4  # the fast node still trained from most versions


def test_departures_reported_from_grpc_threads_are_each_taken_once(tmp_path):
    """Connections end on gRPC threads while a round takes the departed set: no departure is lost or counted twice."""
    import sys

    args = build_parser().parse_args(["--min-clients", "1"])
    server = FedadServer(
        strategy=build_strategy(args),
        spec=build_spec(args),
        out_dir=tmp_path,
        min_clients=1,
        wait_timeout=5,
        resume=False,
        log=logging.getLogger("test-departures"),
    )
    server.log.disabled = True
    names = [[f"t{t}-n{i}" for i in range(3000)] for t in range(4)]

    class Proxy:
        def __init__(self, cid: str) -> None:
            self.cid = cid

    for name in sum(names, []):
        server.strategy.names[name] = name
    taken: list[str] = []
    done = threading.Event()

    def leave(batch: list[str]) -> None:
        for name in batch:
            server._client_left(Proxy(name))  # type: ignore[arg-type]  # as _ClientManager.unregister calls it

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a read-then-clear would lose names
    try:
        threads = [threading.Thread(target=leave, args=(batch,)) for batch in names]
        for t in threads:
            t.start()
        watcher = threading.Thread(target=lambda: ([t.join() for t in threads], done.set()))
        watcher.start()
        while not done.is_set():
            taken.extend(server._take_departed())
        watcher.join()
        taken.extend(server._take_departed())
    finally:
        sys.setswitchinterval(previous)
    assert len(taken) == len(set(taken)) == 12000
