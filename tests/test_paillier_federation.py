"""Paillier mode end to end: fedad-server --strategy paillier and fedad-client processes over real gRPC.

- the aggregator refuses a private key (exit 2, one line, nothing written);
- an encrypted federation reaches the F1 of plaintext FedAvg on the same shards and seed, with the
  server never able to read a private key (the clients' copy is deleted before the server starts);
- bad encrypted updates from a real misbehaving peer (tests/paillier_bad_client.py) are rejected per
  client with the reason in rounds.jsonl, and the round goes on with the others.

1024-bit keys (tests only). The crypto arithmetic itself (exact integer sums, the de-quantization error
bound) is tested in tests/test_crypto_aggregate.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from procs import ENV, finish, free_port, rounds, start_client, start_server, wait_for

pytestmark = pytest.mark.integration

BAD_CLIENT = Path(__file__).with_name("paillier_bad_client.py")
F1_ROUNDS = 6
# the misbehaving client's k-th training round sends kind k; what the server's rejection must say about it
REJECTION_REASONS = {
    "range": "outside (0, n^2)",
    "layout": "slot layout",
    "count": "values, expected",
    "key": "encrypted under key",
    "truncated": "truncated message",
    "plaintext": "expected one encrypted message",
}


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    from fedad.common.synth import write_plant

    d = tmp_path_factory.mktemp("paillier-plant")
    write_plant(d, nodes=4, records=40_000, seed=3, formats=("csv",))
    return sorted(d.glob("node_*.csv"))


def keygen(out: Path, cli: bool = False) -> tuple[Path, Path]:
    """A 1024-bit pair in ``out``: through the real CLI (fedad keygen), or in-process (faster, same files)."""
    if cli:
        p = subprocess.run(
            [sys.executable, "-m", "fedad.common.cli", "keygen", "--bits", "1024", "--out", str(out)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        return out / "public.key", out / "private.key"
    from fedad.common.crypto.keys import generate_keypair, save_keypair

    return save_keypair(out, *generate_keypair(1024))


def server_log(out: Path) -> str:
    return out.with_name(out.name + "-server.log").read_text()


# grpcio's connectivity-polling thread can print this, in either wording, when a client's connection attempt
# fails while the server is not up yet (the client retries and goes on): noise of the retry path, not an error of
# fedad (fedad's clients silence both: server/transport._is_grpc_poll_race); only from grpc's poller thread
GRPC_RETRY_NOISE = (
    "ValueError: Cannot monitor channel state: Channel closed!",
    "ValueError: Cannot invoke RPC: Channel closed!",
)


def tracebacks(text: str) -> list[str]:
    """Tracebacks in a process log, except grpcio's retry-path noise above."""
    blocks, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j][0].isspace()), len(lines) - 1)
            if lines[end] not in GRPC_RETRY_NOISE or not any("_poll_connectivity" in x for x in lines[i:end]):
                blocks.append("\n".join(lines[i : end + 1]))
    return blocks


def test_server_refuses_a_private_key(tmp_path):
    _, private = keygen(tmp_path / "keys", cli=True)
    out = tmp_path / "run"
    script = Path(sys.executable).with_name("fedad-server")  # the installed command, as an operator runs it
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "fedad.server.main"]
    p = subprocess.run(
        [
            *cmd,
            "--strategy",
            "paillier",
            "--public-key",
            str(private),
            "--address",
            f"127.0.0.1:{free_port()}",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert ": error: " in lines[0] and "refusing a private key" in lines[0] and str(private) in lines[0]
    assert lines[0].startswith("fedad-server: ") or not script.is_file()
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert not out.exists()  # nothing written to --out


def _clients(plant, run: Path, address: str, *client_args: str) -> list[subprocess.Popen]:
    logs = run.with_name(run.name + "-logs")
    logs.mkdir()
    return [
        start_client(address, shard, f"node{i}", logs, "--connect-timeout", "900", *client_args)
        for i, shard in enumerate(plant)
    ]


def _server(plant, run: Path, address: str, *strategy_args: str) -> subprocess.Popen:
    return start_server(
        address,
        run,
        "--rounds",
        str(F1_ROUNDS),
        "--min-clients",
        str(len(plant)),
        "--local-epochs",
        "2",
        "--seed",
        "0",
        "--wait-timeout",
        "900",
        *strategy_args,
    )


def _report(run: Path, procs: list[subprocess.Popen]) -> dict:
    """Wait for a federation (server first in ``procs``); every process exits 0, no tracebacks."""
    codes = finish(procs)
    assert codes == [0] * len(procs), server_log(run)[-3000:]
    for log in run.with_name(run.name + "-logs").iterdir():
        assert not tracebacks(log.read_text()), (log.name, tracebacks(log.read_text()))
    return json.loads((run / "report.json").read_text())


def test_paillier_federation_matches_fedavg_without_a_private_key_on_the_server(plant, tmp_path):
    # 4 clients x 10k records, 6 rounds x 2 local epochs (validation loss levels off), seed 0: both runs
    # train the same model up to quantization (R / (2^16 - 1) per weight) and the integer client weights;
    # the two federations run side by side
    public, private = keygen(tmp_path / "keys")
    client_keys = tmp_path / "client-keys"  # the only copy of private.key, read by the clients at start
    client_keys.mkdir()
    shutil.move(private, client_keys / "private.key")
    plain_run, enc_run = tmp_path / "fedavg", tmp_path / "paillier"
    enc_address, plain_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    enc_clients = _clients(plant, enc_run, enc_address, "--private-key", str(client_keys / "private.key"))
    plain_procs = [
        _server(plant, plain_run, plain_address, "--strategy", "fedavg"),
        *_clients(plant, plain_run, plain_address),
    ]
    # every Paillier client has loaded its key before that server exists; then no private key is left on disk
    logs = enc_run.with_name(enc_run.name + "-logs")
    wait_for(
        lambda: all("Paillier mode" in (logs / f"node{i}.log").read_text() for i in range(len(plant))),
        120,
        "clients to load private.key",
        [*enc_clients, *plain_procs],
    )
    shutil.rmtree(client_keys)
    assert not any(p.name == "private.key" for p in tmp_path.rglob("*"))
    enc_server = _server(plant, enc_run, enc_address, "--strategy", "paillier", "--public-key", str(public))
    plain = _report(plain_run, plain_procs)
    enc = _report(enc_run, [enc_server, *enc_clients])
    print(
        f"F1 fedavg {plain['metrics']['f1']:.4f}, paillier {enc['metrics']['f1']:.4f}; thresholds "
        f"{plain['threshold']:.4g} vs {enc['threshold']:.4g}"
    )

    assert enc["strategy"] == "paillier" and len(enc["rounds"]) == F1_ROUNDS
    # the same model (threshold-free) and the same rule on the same summed histogram; the plaintext server then
    # clamps the pooled value into the range of the nodes' own thresholds (robust combination), which the
    # Paillier server cannot see, so the final thresholds (and F1) may differ by design
    assert abs(enc["metrics"]["roc_auc"] - plain["metrics"]["roc_auc"]) <= 0.01, (plain["metrics"], enc["metrics"])
    assert enc["threshold"] == pytest.approx(plain["detection"]["pooled"], rel=0.05)
    recs = rounds(enc_run)
    assert all(r["rejected"] == {} and r["failed"] == [] and len(r["clients"]) == 4 for r in recs)
    assert all(r["bytes_up"] > 0 for r in recs)
    # the server holds only ciphertexts: no plaintext model directory, the checkpoint is one encrypted message
    assert enc["model_dir"] is None and not (enc_run / "model").exists()
    import numpy as np

    with np.load(enc_run / "checkpoint" / "weights.npz", allow_pickle=False) as z:
        assert z.files == ["arr_0"] and z["arr_0"].dtype == np.uint8 and bytes(z["arr_0"][:4]) == b"FDAP"
    log = server_log(enc_run)
    assert "private.key" not in log and "encrypted sums" in log


def test_bad_encrypted_updates_are_rejected_and_the_round_goes_on(plant, tmp_path):
    public, private = keygen(tmp_path / "keys")
    other_public, _ = keygen(tmp_path / "other-keys")  # a second pair: updates under the wrong key
    run, logs, go = tmp_path / "run", tmp_path / "logs", tmp_path / "go"
    logs.mkdir()
    address = f"127.0.0.1:{free_port()}"
    n_rounds = len(REJECTION_REASONS) + 2  # the bad client joins in round 1 or 2 and sends one kind per round
    server = start_server(
        address,
        run,
        "--strategy",
        "paillier",
        "--public-key",
        str(public),
        "--rounds",
        str(n_rounds),
        "--min-clients",
        "3",
        "--local-epochs",
        "1",
        "--wait-timeout",
        "120",
    )
    bad = subprocess.Popen(
        [
            sys.executable,
            str(BAD_CLIENT),
            "--server",
            address,
            "--data",
            str(plant[3]),
            "--name",
            "mallory",
            "--private-key",
            str(private),
            "--other-key",
            str(other_public),
            "--wait-for",
            str(go),
        ],
        stdout=open(logs / "mallory.log", "w"),
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    # --slowdown: an honest round lasts 100x its training (a second or more), so the bad node, which connects
    # after the statistics phase, joins while its rounds remain however fast training is
    honest = [
        start_client(address, plant[i], f"node{i}", logs, "--private-key", str(private), "--slowdown", "100")
        for i in range(3)
    ]
    # --min-clients 3 counts usable updates: the three honest clients must all be in from the start, so the
    # bad one connects after the statistics phase and is admitted as a newcomer at the next round
    wait_for(
        lambda: "federated scaler from 3 clients" in server_log(run),
        120,
        "the statistics phase",
        [server, bad, *honest],
    )
    go.touch()
    codes = finish([server, *honest, bad])
    text = server_log(run)
    assert codes == [0, 0, 0, 0, 0], text[-3000:] + (logs / "mallory.log").read_text()[-2000:]

    recs = rounds(run)
    assert [r["round"] for r in recs] == list(range(1, n_rounds + 1))
    joined = [r["round"] for r in recs if "mallory" in r["clients"]]
    assert joined and joined == list(range(joined[0], n_rounds + 1)) and joined[0] <= 3, joined
    assert "admitted 1 newly connected client" in text
    from paillier_bad_client import KINDS

    assert tuple(REJECTION_REASONS) == KINDS
    bad_rounds = recs[joined[0] - 1 : joined[0] - 1 + len(KINDS)]
    for r, (kind, reason) in zip(bad_rounds, REJECTION_REASONS.items(), strict=True):
        assert set(r["rejected"]) == {"mallory"}, (kind, r["rejected"])
        why = r["rejected"]["mallory"]
        assert why.startswith("bad encrypted update: ") and reason in why, (kind, why)
        assert "\n" not in why and len(why) < 300
        assert f"round {r['round']}: rejected update of mallory: {why}" in text
        assert r["failed"] == [] and set(r["clients"]) == {"mallory", "node0", "node1", "node2"}
    # every other round (before it joined, and after it turned honest) aggregated everyone it had
    assert all(r["rejected"] == {} for r in recs if r not in bad_rounds)
    assert "Traceback" not in text
    report = json.loads((run / "report.json").read_text())
    # the run completed with the others: the aggregate was evaluated on all four shards
    assert report["metrics"]["f1"] is not None and len(report["per_client_test"]) == 4
    assert recs[-1]["loss"] < recs[0]["loss"]
    for name in ("node0", "node1", "node2", "mallory"):
        assert not tracebacks((logs / f"{name}.log").read_text()), name


def test_a_node_admitted_after_the_last_round_counts_in_the_encrypted_threshold(plant, tmp_path):
    """A node that connects during the last round is admitted at the threshold phase: the summed encrypted
    histograms' headroom counts it (the run used to end with 'internal error: ... weights sum to 4, above the
    announced bound 3': the bound was the last round's client count, 3, whose headroom bits hold a sum of 3)."""
    public, private = keygen(tmp_path / "keys")
    run, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    address = f"127.0.0.1:{free_port()}"
    server = start_server(
        address,
        run,
        *("--strategy", "paillier", "--public-key", str(public), "--rounds", "2", "--min-clients", "3"),
        *("--local-epochs", "2", "--wait-timeout", "120"),
    )
    # --slowdown: round 2 lasts 400x its training (seconds), long enough for the late node to start and connect
    first = [
        start_client(address, plant[i], f"node{i}", logs, "--private-key", str(private), "--slowdown", "400")
        for i in range(3)
    ]
    wait_for(lambda: "round 1/2" in server_log(run), 300, "round 1", [server, *first])
    late = start_client(address, plant[3], "node3", logs, "--private-key", str(private))
    codes = finish([server, *first, late])
    text = server_log(run)
    assert codes == [0, 0, 0, 0, 0], text[-3000:]
    assert all("node3" not in r["clients"] for r in rounds(run))  # it trained in no round
    assert text.index("admitted 1 newly connected client") > text.index("round 2/2"), text[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "ok"
    assert "node3" in report["per_client_test"]
