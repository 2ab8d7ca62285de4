"""No single node can crash, stall or silently ruin a run: misbehaving nodes (tests/bad_client.py) beside honest
ones, real fedad-server / fedad-client processes over real gRPC on 127.0.0.1.

One plaintext federation hosts every kind at once (each bad process misbehaves differently; ``mallory``
sends one bad kind per training round) next to a clean run of the same honest shards: the server stays
up, the honest nodes finish, every round completes, each bad answer is refused with its reason in
rounds.jsonl / report.json, and the honest nodes' F1 is within 0.02 of the clean run's. A Paillier
federation checks that valid ciphertexts of out-of-range values no longer crash the honest nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from procs import ENV, finish, free_port, rounds, start_client, start_server, wait_for

pytestmark = pytest.mark.integration

BAD_CLIENT = Path(__file__).with_name("bad_client.py")
HONEST = ("node0", "node1", "node2")
# mallory's training rounds, in order, and what the refusal must say
MALLORY = {
    "zero-count": "num_examples",
    "scaled": "magnitude|norm",
    "huge": "magnitude",
    "int64": "dtype int64",
    "nan": "non-finite",
    "metric-type": "train_loss must be a number",
}
ROUNDS = len(MALLORY) + 3  # a node that connects late joins a round or two later
ARGS = (
    "--rounds",
    str(ROUNDS),
    "--local-epochs",
    "2",
    "--seed",
    "0",
    "--wait-timeout",
    "240",
    "--round-timeout",
    "240",
)


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    import pandas as pd

    from fedad.common.synth import write_plant

    d = tmp_path_factory.mktemp("hostile-plant")
    write_plant(d, nodes=7, records=7 * 8_000, seed=5, formats=("csv",))
    shards = sorted(d.glob("node_*.csv"))
    # the bad nodes hold small shards: where one answers honestly (its first round, or test rows) it weighs
    # little, so the honest nodes' F1 can be compared with a clean run of the honest nodes alone
    for p in shards[3:]:
        pd.read_csv(p).head(1_000).to_csv(p, index=False)
    return shards


def bad(address: str, kind: str, name: str, data: Path | None, logs: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, str(BAD_CLIENT), "--kind", kind, "--server", address, "--name", name, *args]
    if data is not None:
        cmd += ["--data", str(data)]
    return subprocess.Popen(cmd, stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT, env=ENV)


def honest_f1(report: dict) -> float:
    c = {k: sum(report["per_client_test"][n][k] for n in HONEST) for k in ("tp", "fp", "fn")}
    return 2 * c["tp"] / max(1, 2 * c["tp"] + c["fp"] + c["fn"])


def test_every_bad_kind_is_refused_and_the_honest_run_is_unharmed(plant, tmp_path):
    clean_run, run = tmp_path / "clean", tmp_path / "hostile"
    logs = tmp_path / "logs"
    (logs / "clean").mkdir(parents=True)
    (logs / "hostile").mkdir()
    # the clean run: the honest nodes alone
    address = f"127.0.0.1:{free_port()}"
    server = start_server(address, clean_run, *ARGS, "--min-clients", "3")
    clients = [start_client(address, plant[i], f"node{i}", logs / "clean") for i in range(3)]
    codes = finish([server, *clients], timeout=900)
    assert codes == [0] * 4, (tmp_path / "clean-server.log").read_text()[-3000:]
    clean = json.loads((clean_run / "report.json").read_text())

    address = f"127.0.0.1:{free_port()}"
    h = logs / "hostile"
    log = tmp_path / "hostile-server.log"
    # the honest nodes are loaded and retrying before the server starts; the bad ones (loaded, waiting) and 10
    # connections that never answer join once the run has started: a misbehaving node must not decide who
    # is in the first round, and the idle ones must neither count toward --min-clients nor hold up a round
    go = tmp_path / "go"
    # --slowdown: each honest round lasts 100x its training (a few seconds), so the late nodes join while rounds
    # remain and the idle connections meet the admission timeout mid-run, however fast training is
    slow = ("--slowdown", "100")
    honest = [start_client(address, plant[i], f"node{i}", h, "--connect-timeout", "300", *slow) for i in range(3)]
    wait = ("--wait-for", str(go))
    procs = [
        bad(address, ",".join(MALLORY), "mallory", plant[3], h, *wait),
        bad(address, "replay", "replayer", plant[4], h, *wait),
        bad(address, "no-hist,count-string", "trent", plant[5], h, *wait),
        bad(address, "features", "eve", plant[6], h, *wait),
        bad(address, "big", "bigfoot", plant[3], h, *wait),
        bad(address, "hist-poison", "liar", plant[4], h, *wait),
        bad(address, "idle", "idle", None, h, "--connections", "10", "--hold", "900", *wait),
    ]
    wait_for(
        lambda: (
            all("not reachable yet" in (h / f"{n}.log").read_text() for n in HONEST)
            and all(
                "misbehaving client" in (h / f"{n}.log").read_text()
                for n in ("mallory", "replayer", "trent", "eve", "bigfoot", "liar")
            )
        ),
        600,
        "every node to be loaded",
        [*honest, *procs],
    )
    server = start_server(address, run, *ARGS, "--min-clients", "3", "--admission-timeout", "20")
    wait_for(
        lambda: "federated scaler from 3 clients" in log.read_text(),
        300,
        "the statistics phase",
        [server, *honest, *procs],
    )
    go.touch()
    codes = finish([server, *honest], timeout=1200)
    text = log.read_text()
    for p in procs:
        if p.poll() is None:
            p.kill()
    assert codes == [0, 0, 0, 0], text[-4000:]
    assert "Traceback" not in text, text[-4000:]

    recs = rounds(run)
    assert [r["round"] for r in recs] == list(range(1, ROUNDS + 1))
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "ok"
    # the idle connections were dropped at the admission timeout; no round waited on them
    assert "admission timeout" in text and "idle" not in json.dumps(recs)
    assert all(set(HONEST) <= set(r["clients"]) for r in recs)
    assert all(r["seconds"] < 200 for r in recs), [r["seconds"] for r in recs]
    # mallory sends one bad kind per round from the round it joins, each refused with its reason
    import re

    said = [r["rejected"].get("mallory", "") for r in recs if "mallory" in r["clients"]]
    assert len(said) >= len(MALLORY), [r["rejected"] for r in recs]
    # strict=False: after its last kind mallory keeps sending it, so it may have more rounds than kinds
    for why, (kind, expected) in zip(said, MALLORY.items(), strict=False):
        assert re.search(expected, why), (kind, why)
    # the replay is refused from the replayer's second round on
    replayed = [r["rejected"].get("replayer", "") for r in recs if "replayer" in r["clients"]]
    assert replayed[0] == "" and all("replay" in w for w in replayed[1:]) and len(replayed) >= 3, replayed
    # eve's malformed feature list refuses her at admission
    assert "eve" in report["refused"] and "feature list" in report["refused"]["eve"]
    # trent's missing histogram and string count: its answers are refused, the report says why
    bad_results = {(x["client"], x["phase"]) for x in report["rejected_results"]}
    assert {("trent", "threshold"), ("trent", "test")} <= bad_results, report["rejected_results"]
    # bigfoot's 40 MB tensor is over the message limit derived from the model: refused by gRPC, never aggregated
    assert all("bigfoot" not in r["clients"] for r in recs)
    assert "larger than max" in (h / "bigfoot.log").read_text()
    # the liar's invented histogram (all its weight in the top bin) cannot move the global threshold past the
    # honest nodes' own thresholds: the pooled value is clamped to the plausible node thresholds (liar: implausible)
    nodes = report["detection"]["node_thresholds"]
    assert "liar" in nodes or "liar" in report["detection"]["dropped"], report["detection"]
    assert report["detection"]["threshold"] <= max(nodes[n] for n in HONEST), report["detection"]
    # the small bad nodes (640 training samples: RMS error scales) beside the honest ones (5,120: 0.999 quantile)
    # are named, and the server says what that does to one global threshold
    assert "liar" in report["detection"]["rms_scaled_nodes"] and "node0" not in report["detection"]["rms_scaled_nodes"]
    assert "scored with RMS error scales" in text
    # the attackers cost the honest nodes' detection nothing: F1 at most 0.02 below the clean run's (the bad
    # nodes' honest parts, their first round and their small test shards, may move it either way a little)
    f1, f1_clean = honest_f1(report), honest_f1(clean)
    print(f"honest-node F1: clean {f1_clean:.4f}, hostile {f1:.4f}")
    assert f1 >= f1_clean - 0.02, (f1, f1_clean)
    assert f1_clean > 0.3


def test_paillier_out_of_range_ciphertexts_do_not_crash_honest_nodes(plant, tmp_path):
    from fedad.common.crypto.keys import generate_keypair, save_keypair

    public, private = save_keypair(tmp_path / "keys", *generate_keypair(1024))
    run, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    address = f"127.0.0.1:{free_port()}"
    server = start_server(
        address,
        run,
        "--strategy",
        "paillier",
        "--public-key",
        str(public),
        "--rounds",
        "3",
        "--min-clients",
        "3",
        "--local-epochs",
        "1",
        "--wait-timeout",
        "240",
    )
    honest = [start_client(address, plant[i], f"node{i}", logs, "--private-key", str(private)) for i in range(3)]
    mallory = bad(address, "pai-range,pai-clip", "mallory", plant[3], logs, "--private-key", str(private))
    codes = finish([server, *honest], timeout=900)
    text = (tmp_path / "run-server.log").read_text()
    if mallory.poll() is None:
        mallory.kill()
    assert codes == [0, 0, 0, 0], text[-3000:] + "\n".join((logs / f"{n}.log").read_text()[-1500:] for n in HONEST)
    recs = rounds(run)
    assert [r["round"] for r in recs] == [1, 2, 3]
    # round 1: valid ciphertexts of out-of-range values are aggregated; honest nodes decode leniently
    # round 2: all weights at the clip value with a huge count: the count is capped at what it declared
    # (mallory's own rounds: under load it may connect after round 1 has started)
    joined = [r for r in recs if "mallory" in r["clients"]]
    assert len(joined) >= 2 and "mallory" in joined[1].get("capped_examples", {}), joined
    for name in HONEST:
        assert "Traceback" not in (logs / f"{name}.log").read_text()
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "ok" and report["metrics"]["f1"] is not None
