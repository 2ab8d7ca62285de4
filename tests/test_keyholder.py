"""fedad-keyholder: the blind decryption service's policy, in-process and over real gRPC on 127.0.0.1.

- begin/decrypt: a round's budget is clients x (sketch rows + embedding blocks) + the aggregate's blocks,
  the final round decrypts only the threshold histogram (``histogram_blocks()``), nothing after it;
- every refusal (unknown, replayed or decreasing round, beyond the budget, a kind not in the round, malformed
  ciphertexts, another key, too many clients, a changed aggregate size, after the final round) reaches the
  aggregator as its gRPC status through ``KeyHolderClient``'s ``KeyHolderError``, and charges nothing;
- the audit log records every request, refusals included;
- mutual TLS: only the pinned aggregator certificate is served; another certificate from the same CA gets
  PERMISSION_DENIED, a client without a certificate does not get through the handshake;
- the CLI refuses to start without TLS + pin unless --insecure, and --insecure with certificates.

1024-bit keys (tests only); the privacy of blinding is tested in tests/test_blind_decryption.py.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from procs import ENV, free_port, keyholder_cmd, wait_for

from fedad.common.commands.certs import make_certificates
from fedad.common.crypto.codec import ciphertext_bytes
from fedad.common.crypto.encryption import encrypt_blocks
from fedad.common.crypto.keys import generate_keypair, key_bytes, key_fingerprint, save_keypair
from fedad.common.crypto.statistics import counts_layout, decrypt_counts, encrypt_counts, sum_counts
from fedad.common.federated_stats import N_BINS
from fedad.server.keyholder import (
    BEGIN,
    DECRYPT,
    Budget,
    KeyHolder,
    Refusal,
    certificate_fingerprint,
    frame,
    start_server,
    unframe,
)
from fedad.server.keyholder_client import BlindDecryptor, KeyHolderClient, KeyHolderError

BUDGET = Budget(max_clients=3, sketch_rows=4, embedding_blocks=1, max_aggregate_blocks=20)


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


@pytest.fixture(scope="module")
def other_keys():
    return generate_keypair(1024)


def encrypt(pub, values) -> list[int]:
    return encrypt_blocks(pub, [int(v) for v in values], workers=1)


class Served:
    """A KeyHolder behind a real gRPC server on a free port, and an aggregator-side client for it."""

    def __init__(self, keys, audit: Path, certificates=None, pinned=None, address_host="127.0.0.1"):
        self.pub, self.priv = keys
        self.holder = KeyHolder(self.priv, BUDGET, audit=audit)
        self.audit = audit
        self.address = f"{address_host}:{free_port()}"
        self.server = start_server(self.holder, self.address, certificates, pinned)
        self.fp = key_fingerprint(self.pub)
        self.clients: list[KeyHolderClient] = []

    def client(self, certificates=None, timeout: float = 10.0) -> KeyHolderClient:
        c = KeyHolderClient(self.address, certificates, timeout=timeout)
        self.clients.append(c)
        return c

    def decrypt(self, client, rnd, kind, cts, key=None):
        return client.decrypt(key or self.fp, rnd, kind, cts, ciphertext_bytes(self.pub), key_bytes(self.pub))

    def audit_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()] if self.audit.exists() else []

    def stop(self):
        for c in self.clients:
            c.close()
        self.server.stop(None)


@pytest.fixture
def served(keys, tmp_path):
    s = Served(keys, tmp_path / "audit.jsonl")
    yield s
    s.stop()


def refusal(call, *args, **kwargs) -> tuple[str, str]:
    """(gRPC status name, details) of a refused KeyHolderClient call."""
    with pytest.raises(KeyHolderError) as info:
        call(*args, **kwargs)
    m = re.search(r"refused: ([A-Z_]+): (.*)", str(info.value))
    assert m, str(info.value)
    return m.group(1), m.group(2)


# ------------------------------------------------------------------------------------------- in-process


def test_policy_in_process(keys, tmp_path):
    pub, priv = keys
    holder = KeyHolder(priv, BUDGET, audit=tmp_path / "audit.jsonl")
    fp = key_fingerprint(pub)
    with pytest.raises(Refusal) as r:
        holder.decrypt({"key": fp, "round": 1, "kind": "sketch"}, encrypt(pub, [1]))
    assert r.value.code == "FAILED_PRECONDITION"
    assert holder.begin({"key": fp, "round": 1, "clients": 2, "aggregate_blocks": 15}) == {
        "sketch": 8,
        "embedding": 2,
        "aggregate": 15,
    }
    values = [0, 1, 2**500, pub.n - 1, 12345, 7, 8, 9]
    assert holder.decrypt({"key": fp, "round": 1, "kind": "sketch"}, encrypt(pub, values)) == values
    assert holder.current.left == {"sketch": 0, "embedding": 2, "aggregate": 15}
    for header, cts, code in [
        ({"key": fp, "round": 1, "kind": "sketch"}, encrypt(pub, [1]), "RESOURCE_EXHAUSTED"),
        ({"key": fp, "round": 1, "kind": "histogram"}, encrypt(pub, [1]), "INVALID_ARGUMENT"),
        ({"key": fp, "round": 2, "kind": "embedding"}, encrypt(pub, [1]), "FAILED_PRECONDITION"),
        ({"key": "0" * 16, "round": 1, "kind": "embedding"}, encrypt(pub, [1]), "PERMISSION_DENIED"),
        ({"key": fp, "round": 1, "kind": "embedding"}, [pub.n], "INVALID_ARGUMENT"),
        ({"key": fp, "round": 1, "kind": "embedding"}, [], "INVALID_ARGUMENT"),
    ]:
        with pytest.raises(Refusal) as r:
            holder.decrypt(header, cts)
        assert r.value.code == code, (header, r.value)
    for header, code in [
        ({"key": fp, "round": 1, "clients": 1, "aggregate_blocks": 15}, "FAILED_PRECONDITION"),
        ({"key": fp, "round": 2, "clients": 4, "aggregate_blocks": 15}, "RESOURCE_EXHAUSTED"),
        ({"key": fp, "round": 2, "clients": 1, "aggregate_blocks": 16}, "INVALID_ARGUMENT"),
        ({"key": fp, "round": 2, "clients": 1, "aggregate_blocks": 21}, "RESOURCE_EXHAUSTED"),
        ({"key": fp, "round": True, "clients": 1, "aggregate_blocks": 15}, "INVALID_ARGUMENT"),
        ({"key": fp, "round": "2", "clients": 1, "aggregate_blocks": 15}, "INVALID_ARGUMENT"),
        ({"key": "0" * 16, "round": 2, "clients": 1, "aggregate_blocks": 15}, "PERMISSION_DENIED"),
    ]:
        with pytest.raises(Refusal) as r:
            holder.begin(header)
        assert r.value.code == code, (header, r.value)
    assert holder.last_round == 1 and holder.decrypted == len(values)  # refusals changed nothing
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 1 + 1 + 1 + 6 + 7


# ------------------------------------------------------------------------------------------------- gRPC


def test_begin_and_decrypt_over_grpc(served):
    pub, c = served.pub, served.client()
    assert c.begin_round(served.fp, 1, 3, aggregate_blocks=17) == {"sketch": 12, "embedding": 3, "aggregate": 17}
    rng = np.random.default_rng(0)
    sketch = [int(v) for v in rng.integers(0, 2**62, 12)]
    assert served.decrypt(c, 1, "sketch", encrypt(pub, sketch[:5])) == sketch[:5]  # a budget spent in parts
    assert served.decrypt(c, 1, "sketch", encrypt(pub, sketch[5:])) == sketch[5:]
    assert served.decrypt(c, 1, "embedding", encrypt(pub, [0, 1, pub.n - 1])) == [0, 1, pub.n - 1]
    assert served.decrypt(c, 1, "aggregate", encrypt(pub, range(7))) == list(range(7))
    assert served.holder.current.left == {"sketch": 0, "embedding": 0, "aggregate": 10}
    assert served.holder.decrypted == 12 + 3 + 7
    # the next round has a fresh budget of the same shape
    assert c.begin_round(served.fp, 2, 1, aggregate_blocks=17) == {"sketch": 4, "embedding": 1, "aggregate": 17}
    assert served.decrypt(c, 2, "sketch", encrypt(pub, [5, 6, 7, 8])) == [5, 6, 7, 8]


def test_decrypt_for_a_round_that_is_not_open(served):
    c = served.client()
    cts = encrypt(served.pub, [1, 2])
    code, why = refusal(served.decrypt, c, 1, "sketch", cts)  # nothing opened yet
    assert code == "FAILED_PRECONDITION" and "not open" in why
    c.begin_round(served.fp, 3, 1, aggregate_blocks=14)
    for rnd in (1, 2, 4):
        code, why = refusal(served.decrypt, c, rnd, "sketch", cts)
        assert code == "FAILED_PRECONDITION" and f"round {rnd} is not open" in why and "open: 3" in why
    assert served.decrypt(c, 3, "sketch", cts) == [1, 2]


def test_replayed_and_decreasing_rounds_are_refused(served):
    c = served.client()
    c.begin_round(served.fp, 2, 1, aggregate_blocks=14)
    for rnd in (2, 1):
        code, why = refusal(c.begin_round, served.fp, rnd, 1, aggregate_blocks=14)
        assert code == "FAILED_PRECONDITION" and "already opened" in why
    for rnd in (0, -1):
        assert refusal(c.begin_round, served.fp, rnd, 1, aggregate_blocks=14)[0] == "INVALID_ARGUMENT"
    # a replay did not reopen the round's budget: the open round is still 2, with what it had left
    assert served.holder.current.round == 2 and served.holder.current.left["sketch"] == 4
    c.begin_round(served.fp, 5, 1, aggregate_blocks=14)  # rounds may skip numbers, never go back
    assert refusal(c.begin_round, served.fp, 4, 1, aggregate_blocks=14)[0] == "FAILED_PRECONDITION"


def test_requests_beyond_the_budget_are_refused_and_not_charged(served):
    pub, c = served.pub, served.client()
    c.begin_round(served.fp, 1, 2, aggregate_blocks=13)  # sketch 2 x 4, embedding 2 x 1, aggregate 13
    for kind, allowed in (("sketch", 8), ("embedding", 2), ("aggregate", 13)):
        code, why = refusal(served.decrypt, c, 1, kind, encrypt(pub, range(allowed + 1)))
        assert code == "RESOURCE_EXHAUSTED" and f"{allowed + 1} {kind} blocks" in why and f"{allowed} left" in why
        assert served.decrypt(c, 1, kind, encrypt(pub, range(allowed))) == list(range(allowed))
        code, _ = refusal(served.decrypt, c, 1, kind, encrypt(pub, [1]))
        assert code == "RESOURCE_EXHAUSTED"
    assert served.holder.decrypted == 8 + 2 + 13


def test_a_kind_not_in_the_round_is_refused(served):
    c = served.client()
    c.begin_round(served.fp, 1, 1, aggregate_blocks=12)
    for kind in ("histogram", "private_key", ""):
        code, why = refusal(served.decrypt, c, 1, kind, encrypt(served.pub, [1]))
        assert code == "INVALID_ARGUMENT" and "not decrypted in this round" in why


def test_malformed_ciphertexts_are_refused(served, keys):
    pub, priv = keys
    c = served.client()
    c.begin_round(served.fp, 1, 1, aggregate_blocks=12)
    good = encrypt(pub, [42])[0]
    width = ciphertext_bytes(pub)
    for bad in (0, pub.n, priv.p, priv.q * 12345, pub.nsquare, pub.nsquare + 1, (1 << (8 * width)) - 1):
        code, why = refusal(served.decrypt, c, 1, "sketch", [good, bad])
        assert code == "INVALID_ARGUMENT" and "malformed ciphertext" in why and "ciphertext 1" in why
    assert served.holder.current.left["sketch"] == 4 and served.holder.decrypted == 0
    # not even a whole number of ciphertexts, or no header: malformed requests
    call = c.channel.unary_unary(DECRYPT, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    head = {"key": served.fp, "round": 1, "kind": "sketch"}
    for request in (frame(head, b"\1" * (width + 1)), b"\0\0", b"\0\0\0\5nope!", frame(head)):
        with pytest.raises(Exception) as info:
            call(request, timeout=10)
        assert info.value.code().name == "INVALID_ARGUMENT", request[:20]
    assert served.decrypt(c, 1, "sketch", [good]) == [42]


def test_another_key_is_refused(served, other_keys):
    other_pub, _ = other_keys
    c = served.client()
    other_fp = key_fingerprint(other_pub)
    code, why = refusal(c.begin_round, other_fp, 1, 1, aggregate_blocks=12)
    assert code == "PERMISSION_DENIED" and other_fp in why and served.fp in why
    c.begin_round(served.fp, 1, 1, aggregate_blocks=12)
    code, _ = refusal(served.decrypt, c, 1, "sketch", encrypt(other_pub, [1]), key=other_fp)
    assert code == "PERMISSION_DENIED"
    assert served.holder.decrypted == 0


def test_too_many_clients_and_too_large_an_aggregate_are_refused(served):
    c = served.client()
    for clients in (4, 100, 0):
        code, why = refusal(c.begin_round, served.fp, 1, clients, aggregate_blocks=12)
        assert code == "RESOURCE_EXHAUSTED" and "clients" in why
    for blocks in (21, 0, None):
        code, why = refusal(c.begin_round, served.fp, 1, 2, aggregate_blocks=blocks)
        assert code == "RESOURCE_EXHAUSTED" and "aggregate" in why
    assert served.holder.current is None and served.holder.last_round == 0
    assert c.begin_round(served.fp, 1, 3, aggregate_blocks=20) == {"sketch": 12, "embedding": 3, "aggregate": 20}


def test_the_aggregate_size_is_fixed_for_the_session(served):
    c = served.client()
    c.begin_round(served.fp, 1, 2, aggregate_blocks=15)
    for blocks in (16, 14):
        code, why = refusal(c.begin_round, served.fp, 2, 2, aggregate_blocks=blocks)
        assert code == "INVALID_ARGUMENT" and "15 blocks in this session" in why
    assert c.begin_round(served.fp, 2, 2, aggregate_blocks=15)["aggregate"] == 15  # round 2 was not used up


def test_the_final_round_decrypts_only_the_histogram_and_then_nothing(served):
    pub, c = served.pub, served.client()
    d = BlindDecryptor(pub, c)  # the aggregator's side, as SecureRobust.decrypt_histogram uses it
    d.begin_round(1, 3, aggregate_blocks=15)
    budget = d.begin_round(2, 3, final=True)
    expected = counts_layout(pub, BUDGET.max_clients).blocks_for(N_BINS)
    assert budget == {"histogram": served.holder.histogram_blocks()} == {"histogram": expected}
    for kind in ("sketch", "embedding", "aggregate"):
        assert refusal(served.decrypt, c, 2, kind, encrypt(pub, [1]))[0] == "INVALID_ARGUMENT"
    # the aggregator's own path: summed encrypted histograms of 3 clients, blind-decrypted within the budget
    rng = np.random.default_rng(1)
    hists = [rng.integers(0, 5000, N_BINS) for _ in range(3)]
    data = sum_counts(pub, [encrypt_counts(pub, h, BUDGET.max_clients) for h in hists], BUDGET.max_clients, N_BINS)
    np.testing.assert_array_equal(decrypt_counts(d.as_kind("histogram"), data, BUDGET.max_clients, N_BINS), sum(hists))
    assert d.requested == {"histogram": expected}
    assert refusal(served.decrypt, c, 2, "histogram", encrypt(pub, [1]))[0] == "RESOURCE_EXHAUSTED"
    for rnd, final in ((3, False), (3, True), (100, False)):
        code, why = refusal(c.begin_round, served.fp, rnd, 1, aggregate_blocks=15, final=final)
        assert code == "FAILED_PRECONDITION" and "final round is over" in why
    assert served.holder.closed


def test_the_audit_log_records_every_request(served):
    pub, c = served.pub, served.client()
    cts = encrypt(pub, range(5))
    calls = [
        (True, lambda: served.decrypt(c, 1, "sketch", cts[:1])),  # no round open
        (False, lambda: c.begin_round(served.fp, 1, 1, aggregate_blocks=13)),
        (False, lambda: served.decrypt(c, 1, "sketch", cts[:4])),
        (True, lambda: served.decrypt(c, 1, "sketch", cts[:1])),  # beyond the budget
        (True, lambda: served.decrypt(c, 1, "histogram", cts[:1])),  # not in this round
        (True, lambda: served.decrypt(c, 1, "aggregate", [0])),  # malformed
        (True, lambda: c.begin_round(served.fp, 1, 1, aggregate_blocks=13)),  # replayed round
        (True, lambda: c.begin_round("f" * 16, 2, 1, aggregate_blocks=13)),  # another key
        (False, lambda: served.decrypt(c, 1, "aggregate", cts[:3])),
        (False, lambda: c.begin_round(served.fp, 2, 1, final=True)),
    ]
    for refused, call in calls:
        if refused:
            with pytest.raises(KeyHolderError):
                call()
        else:
            call()
    lines = served.audit_lines()
    assert len(lines) == len(calls)
    assert [("refused" in e) for e in lines] == [refused for refused, _ in calls]
    assert [e["op"] for e in lines] == [
        "decrypt",
        "begin",
        "decrypt",
        "decrypt",
        "decrypt",
        "decrypt",
        "begin",
        "begin",
        "decrypt",
        "begin",
    ]
    assert lines[2] == {"time": lines[2]["time"], "op": "decrypt", "round": 1, "kind": "sketch", "blocks": 4}
    assert lines[1]["budget"] == {"sketch": 4, "embedding": 1, "aggregate": 13} and lines[1]["final"] is False
    assert lines[-1]["final"] is True and lines[-1]["budget"] == {"histogram": served.holder.histogram_blocks()}
    assert "already opened" in lines[6]["refused"] and lines[5]["kind"] == "aggregate"
    assert all(isinstance(e["time"], float) for e in lines)
    assert sum(e["blocks"] for e in lines if e["op"] == "decrypt" and "refused" not in e) == served.holder.decrypted


# ---------------------------------------------------------------------------------------------- mutual TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("keyholder-certs")
    paths = make_certificates(out, ["localhost", "127.0.0.1"], clients=["aggregator", "intruder"])
    return {name: path.read_bytes() for name, path in paths.items()} | {"dir": out}


def test_only_the_pinned_aggregator_is_served(keys, certs, tmp_path):
    pinned = certificate_fingerprint(certs["aggregator.pem"])
    assert pinned != certificate_fingerprint(certs["intruder.pem"])
    served = Served(keys, tmp_path / "audit.jsonl", (certs["ca.pem"], certs["server.pem"], certs["server.key"]), pinned)
    try:
        intruder = served.client((certs["ca.pem"], certs["intruder.pem"], certs["intruder.key"]))
        code, why = refusal(intruder.begin_round, served.fp, 1, 1, aggregate_blocks=12)
        assert code == "PERMISSION_DENIED" and "not the pinned one" in why
        code, _ = refusal(served.decrypt, intruder, 1, "sketch", encrypt(served.pub, [1]))
        assert code == "PERMISSION_DENIED"
        assert served.holder.current is None and served.holder.last_round == 0  # it spent nothing
        # no client certificate at all: the handshake fails (the server requires one)
        anonymous = served.client((certs["ca.pem"], None, None), timeout=3)
        with pytest.raises(KeyHolderError) as info:
            anonymous.begin_round(served.fp, 1, 1, aggregate_blocks=12)
        assert re.search(r"refused: (UNAVAILABLE|DEADLINE_EXCEEDED)", str(info.value)), str(info.value)
        # and a plaintext channel to the TLS port gets nowhere either
        plain = served.client(None, timeout=3)
        with pytest.raises(KeyHolderError):
            plain.begin_round(served.fp, 1, 1, aggregate_blocks=12)
        assert served.holder.last_round == 0
        aggregator = served.client((certs["ca.pem"], certs["aggregator.pem"], certs["aggregator.key"]))
        assert aggregator.begin_round(served.fp, 1, 1, aggregate_blocks=12) == {
            "sketch": 4,
            "embedding": 1,
            "aggregate": 12,
        }
        assert served.decrypt(aggregator, 1, "sketch", encrypt(served.pub, [9, 8])) == [9, 8]
        lines = served.audit_lines()
        denied = [e for e in lines if e["op"] == "connect"]
        assert len(denied) == 2 and all(e["refused"] == "certificate not pinned" for e in denied)
        assert [e["op"] for e in lines if e["op"] != "connect"] == ["begin", "decrypt"]
    finally:
        served.stop()


# ------------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def key_files(keys, tmp_path_factory):
    return save_keypair(tmp_path_factory.mktemp("keyholder-keys"), *keys)


NEEDS_TLS = "needs --certificates CA CERT KEY and --aggregator-cert PEM"


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], NEEDS_TLS),
        (["--certificates", "ca.pem", "server.pem", "server.key"], NEEDS_TLS),
        (["--aggregator-cert", "aggregator.pem"], NEEDS_TLS),
        (["--insecure", "--certificates", "ca.pem", "server.pem", "server.key"], "--insecure cannot be combined"),
        (["--insecure", "--aggregator-cert", "aggregator.pem"], "--insecure cannot be combined"),
    ],
)
def test_cli_refuses_to_run_without_tls_and_a_pin_unless_insecure(key_files, tmp_path, extra, message):
    _, private = key_files
    p = subprocess.run(
        [
            *keyholder_cmd(),
            "--private-key",
            str(private),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--ready-file",
            str(tmp_path / "ready"),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
        cwd=tmp_path,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "ready").exists()


def _block_sigint() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "sig,inherited",
    [
        (signal.SIGINT, None),
        (signal.SIGTERM, None),  # docker stop
        (signal.SIGINT, _block_sigint),  # a blocked mask and SIG_IGN survive exec: it once never stopped
        (signal.SIGINT, _ignore_sigint),
    ],
)
def test_the_key_holder_stops_gracefully_on_sigint_and_sigterm(key_files, tmp_path, sig, inherited):
    _, private = key_files
    ready, log = tmp_path / "ready", tmp_path / "keyholder.log"
    holder = subprocess.Popen(
        [*keyholder_cmd(), "--private-key", str(private), "--listen", f"127.0.0.1:{free_port()}", "--insecure"]
        + ["--ready-file", str(ready)],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=ENV,
        preexec_fn=inherited,
    )
    holder.log_path = log  # type: ignore[attr-defined]  # watched for progress
    wait_for(ready.exists, 300, "the key holder to listen", [holder])
    holder.send_signal(sig)
    try:
        assert holder.wait(timeout=120) == 0, log.read_text()
    finally:
        holder.kill()
    text = log.read_text()
    assert f"stopping (signal {signal.Signals(sig).name})" in text and "stopped after 0 decryptions" in text


def test_cli_refuses_bad_keys_and_a_missing_pin(key_files, certs, tmp_path):
    public, private = key_files
    d = certs["dir"]
    tls = ["--certificates", str(d / "ca.pem"), str(d / "server.pem"), str(d / "server.key")]
    for extra, message in [
        (["--private-key", str(public), "--insecure"], "is a public key"),
        (["--private-key", str(private), "--insecure", "--max-clients", "0"], "--max-clients must be at least 1"),
        (["--private-key", str(private), *tls, "--aggregator-cert", str(d / "missing.pem")], "file not found"),
    ]:
        p = subprocess.run(
            [*keyholder_cmd(), "--listen", f"127.0.0.1:{free_port()}", *extra],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and message in p.stderr, p.stderr


def test_framing_round_trip_and_errors():
    head, payload = unframe(frame({"a": 1, "b": [1, 2]}, b"\0\1\2"))
    assert head == {"a": 1, "b": [1, 2]} and payload == b"\0\1\2"
    for bad in (b"", b"\0\0\0", b"\x00\x00\x00\x09{}", b"\0\0\0\2[]", b"\0\0\0\2\xff\xfe"):
        with pytest.raises(ValueError):
            unframe(bad)
    assert BEGIN.startswith("/fedad.KeyHolder/")
