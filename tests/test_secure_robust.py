"""secure-robust's numpy side (fedad.server.defence.sketch_round) and `fedad certs --client` for the key holder's pin.

- ``integer_coefficients``: integer exponents proportional to the coefficients, summing to at most the total;
- ``coefficients``: weight x norm rescale factor;
- ``simulate_round`` (the benchmark's plaintext path over sketches) flags sign-flip and scaling attackers among
  honest updates, keeps the honest ones, and its aggregate points where the honest updates point;
- embeddings: L2-normalised, quantized, dequantized within one step, one packed block;
- ``fedad certs --client aggregator`` writes a CA-signed client certificate and refuses bad names.

The encrypted path of the same round is checked against these functions in tests/test_blind_decryption.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from procs import ENV

from fedad.common.crypto.embedding import EMBEDDING_BITS, dequantize_embedding, embedding_layout, quantize_embedding
from fedad.common.crypto.packing import pack, quantize, unpack
from fedad.common.crypto.sketch import SketchPlan, secure_layout, sketch_quantized
from fedad.server.defence.quarantine import Quarantine
from fedad.server.defence.round import aggregate_round
from fedad.server.defence.sketch_round import (
    WEIGHT_TOTAL,
    coefficients,
    integer_coefficients,
    quantization_step,
    simulate_round,
    sketch_vector,
    update_from_mean,
)
from fedad.server.defence.trust import TrustHistory

D = 2_164  # the dense autoencoder of the 12-sensor plant
CLIP, BITS, ROWS = 0.5, 16, 8


# ------------------------------------------------------------------------------------------- coefficients


@pytest.mark.parametrize("seed", range(5))
def test_integer_coefficients_are_proportional_and_within_the_total(seed):
    rng = np.random.default_rng(seed)
    coefs = rng.exponential(1.0, rng.integers(1, 12)) * rng.choice([1e-3, 1.0, 50.0])
    coefs[rng.random(coefs.size) < 0.2] = 0.0  # flagged clients: coefficient 0
    if not coefs.any():
        coefs[0] = 0.5
    ints, big = integer_coefficients(coefs)
    assert big == pytest.approx(coefs.sum())
    assert all(isinstance(a, int) and a >= 0 for a in ints)
    assert WEIGHT_TOTAL - len(ints) < sum(ints) <= WEIGHT_TOTAL
    exact = WEIGHT_TOTAL * coefs / coefs.sum()
    assert np.all(np.array(ints) <= exact + 1e-9) and np.all(exact - np.array(ints) < 1.0)
    assert all(a == 0 for a, c in zip(ints, coefs, strict=True) if c == 0.0)
    # ordered like the coefficients
    order = np.argsort(coefs, kind="stable")
    assert list(np.array(ints)[order]) == sorted(ints)


def test_integer_coefficients_edge_cases():
    assert integer_coefficients(np.zeros(4)) == ([0, 0, 0, 0], 0.0)
    assert integer_coefficients(np.array([])) == ([], 0.0)
    assert integer_coefficients(np.array([1.0, np.nan])) == ([0, 0], 0.0)
    assert integer_coefficients(np.array([1.0, np.inf])) == ([0, 0], 0.0)
    assert integer_coefficients(np.array([0.25, 0.25, 0.5])) == ([250, 250, 500], 1.0)
    assert integer_coefficients(np.array([1.0, 1.0, 1.0])) == ([333, 333, 333], 3.0)
    assert integer_coefficients(np.array([2.0, 6.0]), total=8) == ([2, 6], 8.0)
    ints, big = integer_coefficients(np.array([1e-9, 1.0]))
    assert ints == [0, 999] and big == pytest.approx(1.0 + 1e-9)  # a negligible client rounds to 0


def test_coefficients_are_weight_times_rescale():
    records = [
        {"weight": 0.5, "rescale": 2.0},
        {"weight": 0.25, "rescale": None},
        {"weight": 0.25},
        {"weight": 0.0, "rescale": 3.0},
        {"weight": 0.1, "rescale": 0.0},
    ]
    np.testing.assert_allclose(coefficients(records), [1.0, 0.25, 0.25, 0.0, 0.0])
    # C x (sum a_k u_k / sum a_k) is the weighted sum sum c_k u_k up to the integer rounding
    rng = np.random.default_rng(0)
    u = rng.normal(size=(3, 50))
    coefs = coefficients(
        [{"weight": 0.2, "rescale": 1.5}, {"weight": 0.3, "rescale": 0.5}, {"weight": 0.5, "rescale": 1.0}]
    )
    ints, big = integer_coefficients(coefs)
    approx = update_from_mean(sum(a * v for a, v in zip(ints, u, strict=True)) / sum(ints), big)
    np.testing.assert_allclose(approx, coefs @ u, atol=3 * np.abs(u).max() * len(ints) / WEIGHT_TOTAL)


def test_quantization_step_and_sketch_vector():
    assert quantization_step(0.5, 16) == pytest.approx(1.0 / 65535)
    assert quantization_step(2.0, 8) == pytest.approx(4.0 / 255)
    sketch = np.array([[1, -2], [3, 0]], dtype=np.int64)
    np.testing.assert_allclose(sketch_vector(sketch, 0.5, 16), np.array([1, -2, 3, 0]) / 65535)


# ------------------------------------------------------------------------------------------ simulate_round


def honest_updates(rng, n: int, scale: float = 2e-3) -> list[np.ndarray]:
    direction = rng.normal(0.0, scale, D)
    return [direction + rng.normal(0.0, scale, D) for _ in range(n)]


def simulate(updates, names, rng, history=None, quarantine=None, embeddings=None):
    layout = secure_layout(2048, BITS, D, WEIGHT_TOTAL)
    return simulate_round(
        "robust",
        names,
        updates,
        [1000.0] * len(names),
        embeddings,
        clip=CLIP,
        bits=BITS,
        layout=layout,
        rows=ROWS,
        seed=rng.bytes(32),
        history=history or TrustHistory(),
        quarantine=quarantine or Quarantine(3),
        rng=rng,
    )


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("seed", range(4))
def test_simulate_round_flags_sign_flip_and_scaling_attackers(seed):
    rng = np.random.default_rng(seed)
    honest = honest_updates(rng, 7)
    flip = -honest_updates(rng, 1)[0]
    scaled = 10 * honest_updates(rng, 1)[0]
    names = [f"node{i}" for i in range(7)] + ["flipper", "scaler"]
    update, result = simulate([*honest, flip, scaled], names, rng)
    assert result.flagged == {"flipper", "scaler"}
    assert result.kept == names[:7]
    weights = {r["client"]: r["weight"] for r in result.records}
    assert weights["flipper"] == weights["scaler"] == 0.0
    assert sum(weights.values()) == pytest.approx(1.0)
    reasons = {r["client"]: r["reason"] for r in result.records}
    assert "cosine" in reasons["flipper"] or "distance" in reasons["flipper"], reasons["flipper"]
    assert "norm" in reasons["scaler"] or "distance" in reasons["scaler"], reasons["scaler"]
    mean = np.mean(honest, axis=0)
    assert update.shape == (D,)
    assert cosine(update, mean) > 0.9
    assert 0.5 < np.linalg.norm(update) / np.linalg.norm(mean) < 1.5
    # the same round on the plaintext updates flags the same clients
    plain = aggregate_round(
        "robust", names, [*honest, flip, scaled], [1000.0] * 9, history=TrustHistory(), quarantine=Quarantine(3)
    )
    assert plain.flagged == result.flagged


def test_simulate_round_leaves_an_honest_federation_alone():
    rng = np.random.default_rng(10)
    names = [f"node{i}" for i in range(8)]
    for _ in range(3):
        updates = honest_updates(rng, 8)
        update, result = simulate(updates, names, rng)
        assert result.flagged == set() and result.kept == names
        assert cosine(update, np.mean(updates, axis=0)) > 0.95


def test_simulate_round_with_embeddings_history_and_quarantine():
    rng = np.random.default_rng(3)
    names = [f"node{i}" for i in range(6)] + ["flipper"]
    history, quarantine = TrustHistory(), Quarantine(2)
    base = rng.normal(size=8)
    for rnd in range(3):
        honest = honest_updates(rng, 6)
        embeddings = [base + rng.normal(0.0, 0.2, 8) for _ in names]
        update, result = simulate([*honest, -honest[0] * 1.5], names, rng, history, quarantine, embeddings)
        assert result.kept == names[:6]
        flipper = result.records[-1]
        if rnd < 2:
            assert result.flagged == {"flipper"}
        else:  # quarantined after 2 flagged rounds: left out before scoring
            assert result.flagged == set() and flipper["reason"].startswith("quarantined")
        assert all(0.0 < r["embedding_trust"] <= 1.0 for r in result.records[:6])
        assert cosine(update, np.mean(honest, axis=0)) > 0.9
    assert quarantine.is_quarantined("flipper")
    assert history.values["flipper"] < min(history.values[n] for n in names[:6])


def test_simulate_round_sketches_what_the_clients_quantized():
    # two runs from the same rng state: the sketches come from the clients' stochastic quantization
    names = [f"node{i}" for i in range(5)]
    updates = honest_updates(np.random.default_rng(1), 5)
    a = simulate(updates, names, np.random.default_rng(2))
    b = simulate(updates, names, np.random.default_rng(2))
    np.testing.assert_array_equal(a[0], b[0])
    assert [r["cosine"] for r in a[1].records] == [r["cosine"] for r in b[1].records]
    # and they are the sketch_quantized of those integers
    layout = secure_layout(2048, BITS, D, WEIGHT_TOTAL)
    rng = np.random.default_rng(2)
    plan = SketchPlan.draw(rng.bytes(32), layout.blocks_for(D), ROWS)  # the seed simulate() passes
    qs = [quantize(u, CLIP, BITS, rng)[0] for u in updates]
    sketches = [sketch_vector(sketch_quantized(q, plan, layout), CLIP, BITS) for q in qs]
    norms = [float(np.linalg.norm(s)) for s in sketches]
    assert [r["norm"] for r in a[1].records] == pytest.approx(norms, rel=1e-12)


# ---------------------------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("dim", [1, 8, 32, 63])
def test_embedding_round_trip(dim):
    rng = np.random.default_rng(dim)
    e = rng.normal(0.0, 5.0, dim)
    unit = e / np.linalg.norm(e)
    step = 2.0 / ((1 << EMBEDDING_BITS) - 1)
    for stochastic in (None, rng):
        q = quantize_embedding(e, stochastic)
        assert q.dtype == np.uint64 and q.size == dim and int(q.max()) < 1 << EMBEDDING_BITS
        back = dequantize_embedding(q)
        assert np.abs(back - unit).max() <= (step if stochastic is not None else step / 2) + 1e-12
        assert np.linalg.norm(back) == pytest.approx(1.0, abs=dim * step)
    # direction only: a scaled embedding quantizes alike
    np.testing.assert_array_equal(quantize_embedding(3.0 * e), quantize_embedding(e))
    # one packed block under a 1024-bit key (63 slots of 16 bits), unpacked to exactly its dim values
    layout = embedding_layout(1024)
    assert layout.headroom_bits == 0 and layout.slots_per_block == 63
    blocks = pack(quantize_embedding(e), layout)
    assert len(blocks) == 1
    np.testing.assert_array_equal(unpack(blocks, layout, dim), quantize_embedding(e))


def test_zero_embedding_stays_near_zero():
    back = dequantize_embedding(quantize_embedding(np.zeros(8)))
    assert np.abs(back).max() <= 2.0 / ((1 << EMBEDDING_BITS) - 1)


# ---------------------------------------------------------------------------------------- fedad certs --client


def certs_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fedad.common.cli", "certs", *args], capture_output=True, text=True, env=ENV, timeout=60
    )


def test_certs_writes_a_ca_signed_client_certificate(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = tmp_path / "certs"
    p = certs_cli("--out", str(out), "--host", "localhost", "--client", "aggregator", "--client", "site_2-b")
    assert p.returncode == 0, p.stderr
    assert "aggregator.pem, aggregator.key" in p.stdout
    names = {f.name for f in out.iterdir()}
    assert names == {
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "aggregator.pem",
        "aggregator.key",
        "site_2-b.pem",
        "site_2-b.key",
    }
    assert (out / "aggregator.key").stat().st_mode & 0o777 == 0o600
    assert (out / "aggregator.pem").stat().st_mode & 0o777 == 0o644
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((out / "aggregator.pem").read_bytes())
    cert.verify_directly_issued_by(ca)  # raises unless signed by this CA
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "aggregator"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the key file is the certificate's key
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((out / "aggregator.key").read_bytes(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    # another CA's client certificate is not this CA's
    other = tmp_path / "other"
    assert certs_cli("--out", str(other), "--client", "aggregator").returncode == 0
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        x509.load_pem_x509_certificate((other / "aggregator.pem").read_bytes()).verify_directly_issued_by(ca)
    # no overwriting without --force, naming the client files too
    again = certs_cli("--out", str(out), "--client", "aggregator")
    assert again.returncode == 2 and "aggregator.pem" in again.stderr and "--force" in again.stderr
    forced = certs_cli("--out", str(out), "--client", "aggregator", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "aggregator.pem").read_bytes() != cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("name", ["ca", "server", "bad/name", "a b", "", "../up", "..", "a\nb"])
def test_certs_refuses_bad_client_names(tmp_path, name):
    out = tmp_path / "certs"
    p = certs_cli("--out", str(out), "--client", "aggregator", "--client", name)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    # node names are 1-64 of letters, digits, _ . - (docs/security.md); ca and server are the CA's own files
    expected = "taken by the CA/server files" if name in ("ca", "server") else "letters, digits"
    assert len(lines) == 1 and "--client" in lines[0] and expected in lines[0], p.stderr
    assert not out.exists() or not os.listdir(out)  # nothing written
