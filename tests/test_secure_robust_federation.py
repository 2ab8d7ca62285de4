"""secure-robust end to end: fedad keygen, fedad certs, fedad-keyholder, fedad-server and fedad-client processes.

One run over real gRPC on 127.0.0.1, the aggregator and the key holder speaking mutual TLS (the key holder
pins the certificate `fedad certs --client aggregator` made), the clients holding only public.key, one of
them sending sign-flipped updates:

- the run completes with report.json; the attacker is flagged and gets weight 0 in rounds 1 and 2 at least,
  the honest clients are never flagged; the detector reaches F1 >= 0.8 on the honest nodes' test rows
  (false alarms < 3 % for a 1 % target);
- the key holder's audit log shows per round exactly live clients x m sketch rows, one embedding block each
  and the aggregate's blocks, then only the threshold histogram, and no refusal;
- the key holder's /metrics (--metrics-port) counts exactly the audited decryptions as served;
- a client started with --private-key (paillier mode) against this server exits non-zero, saying why, and
  the run goes on without it.

1024-bit keys (tests only).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from procs import ENV, finish, free_port, keyholder_cmd, rounds, run_module, start_client, start_server
from test_telemetry_federation import scrape

from fedad.common.metrics import metrics_from_confusion

pytestmark = pytest.mark.integration

ROWS, N_ROUNDS = 8, 3
NODES = ["node_01", "node_02", "node_03", "node_04"]
ATTACKER = "node_04"


def cli(*args: str) -> subprocess.CompletedProcess:
    p = run_module("fedad.common.cli", *args)
    assert p.returncode == 0, p.stderr
    return p


def test_secure_robust_federation_flags_the_attacker_through_a_pinned_key_holder(tmp_path):
    keys, certs, plant = tmp_path / "keys", tmp_path / "certs", tmp_path / "plant"
    cli("keygen", "--bits", "1024", "--out", str(keys))
    cli("certs", "--out", str(certs), "--host", "localhost", "--host", "127.0.0.1", "--client", "aggregator")
    cli("data", "synth", "--nodes", "4", "--records", "40000", "--seed", "0", "--format", "csv", "--out", str(plant))
    shards = {p.stem: p for p in plant.glob("node_*.csv")}
    assert sorted(shards) == NODES

    run, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    audit, ready = tmp_path / "audit.jsonl", tmp_path / "keyholder.ready"
    kh_address, address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    kh_metrics = free_port()
    keyholder = subprocess.Popen(
        [
            *keyholder_cmd(),
            "--listen",
            kh_address,
            "--private-key",
            str(keys / "private.key"),
            "--certificates",
            str(certs / "ca.pem"),
            str(certs / "server.pem"),
            str(certs / "server.key"),
            "--aggregator-cert",
            str(certs / "aggregator.pem"),
            "--audit",
            str(audit),
            "--ready-file",
            str(ready),
            "--max-clients",
            "6",
            "--sketch-rows",
            str(ROWS),
            "--metrics-port",
            str(kh_metrics),
            "--metrics-host",
            "127.0.0.1",
        ],
        stdout=open(tmp_path / "keyholder.log", "w"),
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    procs = [keyholder]
    try:
        server = start_server(
            address,
            run,
            "--strategy",
            "secure-robust",
            "--public-key",
            str(keys / "public.key"),
            "--keyholder",
            kh_address,
            "--keyholder-certificates",
            str(certs / "ca.pem"),
            str(certs / "aggregator.pem"),
            str(certs / "aggregator.key"),
            "--sketch-rows",
            str(ROWS),
            "--malicious",
            ATTACKER,
            "--rounds",
            str(N_ROUNDS),
            "--min-clients",
            "4",
            "--local-epochs",
            "5",
            "--seed",
            "0",
            "--wait-timeout",
            "120",
            "--round-timeout",
            "180",
        )
        clients = [
            start_client(
                address,
                shards[name],
                name,
                logs,
                "--public-key",
                str(keys / "public.key"),
                "--connect-timeout",
                "120",
                *(["--attack", "sign-flip"] if name == ATTACKER else []),
            )
            for name in NODES
        ]
        # a paillier-mode node (it holds the private key) connects alongside: whichever phase it first gets a
        # config in (statistics, or validation as a newcomer), it must refuse to take part and exit
        wrong = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedad.client.main",
                "--server",
                address,
                "--data",
                str(shards["node_01"]),
                "--name",
                "paillier-node",
                "--device",
                "cpu",
                "--private-key",
                str(keys / "private.key"),
                "--connect-timeout",
                "120",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "wrong.err", "w"),
            env=ENV,
        )
        procs += [server, *clients, wrong]
        codes = finish([server, *clients, wrong], timeout=300)
        kh_samples = scrape(kh_metrics)  # the key holder still serves /metrics after the run
        text = (tmp_path / "run-server.log").read_text()
        assert codes[:5] == [0] * 5, text[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    # the wrong client: non-zero exit, one clear reason, no traceback; the run went on without it
    err = (tmp_path / "wrong.err").read_text()
    assert codes[5] == 2, err[-2000:]
    assert "this node is set up for paillier but the server runs secure-robust; refusing to send its update" in err, (
        err[-2000:]
    )
    assert "Traceback" not in err
    failures = json.loads((run / "report.json").read_text())["failures"]
    assert len(failures) == 1 and failures[0]["phase"] in ("stats", "val", "fit"), failures  # its exit, seen there

    report = json.loads((run / "report.json").read_text())
    assert report["strategy"] == "secure-robust" and len(report["rounds"]) == N_ROUNDS
    # 5 % anomalies: chance is ROC-AUC 0.5, F1 ~0.1. F1 and the false-alarm rate are asserted on the honest
    # nodes' test rows. The attacker's own rows (in the report while it is not quarantined) are a site the model
    # never learned, its updates having been left out: over 22 runs on 2026-12-05 its false alarms went from 0
    # to 319 of ~1900 with the fresh sketch seed of each round, and the plant F1 from 0.71 to 0.96, while the
    # honest nodes' F1 stayed at 0.87-0.96. (With 3 local epochs the model is not converged after 3 rounds and
    # F1 swung 0.67-0.85 from run to run; on the seed-3 plant two of the four nodes leave their training
    # operating range in the test period, F1 0.3-0.6 for every strategy.)
    m = report["metrics"]
    assert m["roc_auc"] > 0.95, m
    honest = [report["per_client_test"][n] for n in NODES[:3]]
    h = metrics_from_confusion(*(sum(c[k] for c in honest) for k in ("tp", "fp", "tn", "fn")))
    assert h["f1"] >= 0.8 and h["far"] < 0.03, (h, report["per_client_test"])
    # the report gives the same numbers: metrics over the never-flagged nodes, named, and the server log says them
    assert report["flags"]["unflagged_metrics"] == {"clients": NODES[:3], **h}, report["flags"]
    assert f"the 3 never-flagged node(s) ({', '.join(NODES[:3])}): F1 {h['f1']:.3f}" in text
    recs = rounds(run)
    assert [r["round"] for r in recs] == list(range(1, N_ROUNDS + 1))
    for r in recs:
        assert r["clients"] == NODES and r["rejected"] == {}
        assert set(NODES[:3]) <= set(r["kept"])  # honest nodes always kept, never flagged
        assert all(r["flags"][n]["weight"] > 0.0 and not r["flags"][n]["flagged"] for n in NODES[:3])
        assert r["sketch_rows"] == ROWS and 0.0 < r["leakage"] < 1.0
        assert r["keyholder_blocks"]["sketch"] == 4 * ROWS and r["keyholder_blocks"]["embedding"] == 4
    # flagged and left out with weight 0 in rounds 1 and 2 (cosine z -6 to -18). In round 3 its cosine z was -2.5
    # to -4.2 over five runs: as the model converges, honest updates align less and a sign flip stands out less;
    # it was then unflagged but at weight 0 (direction trust) in some runs, and kept in one run under load (a
    # known weakness of the late rounds, named in the closing note)
    for r in recs[:2]:
        assert r["flagged"] == [ATTACKER] and r["flag_precision"] == 1.0 and r["flag_recall"] == 1.0, r["flags"]
        assert sorted(r["kept"]) == NODES[:3] and r["flags"][ATTACKER]["weight"] == 0.0, r["flags"]
    assert len({r["sketch_seed"] for r in recs}) == N_ROUNDS  # a fresh public seed every round
    flags = [json.loads(line) for line in (run / "flags.jsonl").read_text().splitlines()]
    assert len(flags) == 4 * N_ROUNDS
    assert not [f for f in flags if f["flagged"] and f["client"] != ATTACKER]
    summary = {row["client"]: row for row in report["flags"]["summary"]}
    assert summary[ATTACKER]["flagged_rounds"] >= 2
    assert all(summary[n]["flagged_rounds"] == 0 for n in NODES[:3])
    # quarantined (and then left out of the threshold and the evaluation) exactly when flagged in all 3 rounds
    quarantined = summary[ATTACKER]["flagged_rounds"] == N_ROUNDS
    assert sorted(report["per_client_test"]) == (NODES[:3] if quarantined else NODES)
    # the server decrypted nothing itself: the model came back through the key holder, plaintext
    assert (run / "global_weights.npz").exists()
    assert "private.key" not in text

    # the key holder: per round 4 clients x (m + 1) + the aggregate; then the histogram only; no refusals
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert not [e for e in entries if "refused" in e]
    for rnd in range(1, N_ROUNDS + 1):
        (begin,) = [e for e in entries if e["op"] == "begin" and e["round"] == rnd]
        agg = recs[rnd - 1]["keyholder_blocks"]["aggregate"]
        assert begin["budget"] == {"sketch": 4 * ROWS, "embedding": 4, "aggregate": agg}
        done = {e["kind"]: e["blocks"] for e in entries if e["op"] == "decrypt" and e["round"] == rnd}
        assert done == {"sketch": 4 * ROWS, "embedding": 4, "aggregate": agg}
    final = [e for e in entries if e["round"] == N_ROUNDS + 1]
    assert final[0]["op"] == "begin" and final[0]["final"] is True
    assert [(e["kind"], e["blocks"]) for e in final[1:]] == [("histogram", final[0]["budget"]["histogram"])]
    assert len(entries) == N_ROUNDS * 4 + 2
    # its Prometheus counter: one served request per audited decryption, none refused
    served = kh_samples.get(("fedad_keyholder_requests_total", (("outcome", "served"),)))
    assert served == len([e for e in entries if e["op"] == "decrypt"]), kh_samples
    assert kh_samples.get(("fedad_keyholder_requests_total", (("outcome", "refused"),)), 0.0) == 0.0
    kh_log = (tmp_path / "keyholder.log").read_text()
    assert "mutual TLS, aggregator pinned" in kh_log
