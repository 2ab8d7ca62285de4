"""Benchmark: detection quality and flag precision/recall of every strategy under every poisoning attack.

10 clients, 3 of them malicious (the last three), each attack of ``client/attacks`` with its default
strength, plus a clean run (all 10 honest); strategies: FedAvg, Flower's Krum, MultiKrum, FedMedian,
FedTrimmedAvg and Bulyan, and fedad's trust, flag and robust. Per (attack, strategy): F1 and ROC-AUC of
the final global model, the F1 drop against the *clean run of the same strategy* (``f1_drop`` =
clean F1 - attacked F1; positive = worse), and, for the strategies that flag (flag, robust), the flag
precision/recall pooled over rounds 2..R (a client counts as caught in a round when it is flagged or
quarantined, as in the server's report). Targets (issue 5) for ``robust``: flag precision and recall
>= 0.95 and F1 drop <= 0.02 for every attack.

    python bench/poisoning.py [--rounds 8|auto] [--attacks sign_flip alie] [--strategies fedavg robust]
                              [--data SKAB_DIR] [--json FILE]

**In-process simulation of the same math, not a gRPC run.** 10 x 9 x 9 real-process federations would
take hours on 2 cores, so this script drives the phases of ``fedad.server.federation.FedadServer``
itself: 10 ``fedad.client.site.Site`` objects (the clients' own local code: split, preprocessing,
training, scoring); the statistics phase (``--scaling`` as the server's: ``site``, the default, where
each client keeps its own scaler, or ``global``, the merged ``ScalerStats``); initial weights from
``build_model`` under the seed; R rounds of local training (``Site.train`` with the client's round
seed) followed, on the malicious sites, by ``AttackRunner.prepare``/``AttackRunner.apply`` exactly as
``fedad-client --attack`` calls them (colluders share their honest updates through a real
``CollusionChannel`` in a temporary directory; every colluder's honest update is published before any
of them crafts, which is what the parallel processes see when none of them times out); aggregation; a
threshold as the server sets it (``combined_threshold``: the robust combination of all 10 sites' validation
histograms, or each site's own with ``--threshold-scope site``); and
summed confusion counts / score histograms on the test parts (``metrics_from_counts``). fedad's
strategies go through ``fedad.server.defence.round.aggregate_round`` - the numpy entry the Flower adapters
call - with the mean latent embeddings the clients send and a trust history and quarantine kept across
rounds; the baselines use Flower's own functions from ``flwr.server.strategy.aggregate`` on the
clients' weights, as Flower's strategies do, and FedAvg is ``fedad.server.aggregation.weighted_average``
(what ``--strategy fedavg`` runs). Not exercised here: the transport (gRPC, serialisation, the wire
encodings of statistics, histograms and embeddings, timeouts, failed clients) and the per-round
validation loss; the gRPC path of the same attack and defence is covered by ``tests/test_poisoning.py``
(real server and client processes). Local training is chaotic in floating-point detail (Adam turns
tiny differences, such as the order in which the server sums the clients' statistics, into full-size
steps), so a gRPC run need not reproduce these numbers bit for bit.

Baseline parameters: the baselines are told the true number of attackers where their precondition
allows it. Krum: f = 3; MultiKrum: f = 3, keeps n - f = 7; FedTrimmedAvg: beta = 0.3 (cuts 3 per side;
Flower's default is 0.2); FedMedian: none; Bulyan needs n >= 4f + 3, so at n = 10 it runs with f = 1
(Krum as its selection rule), i.e. it is given fewer attackers than there are.

Detection metrics are computed on the test parts of the 7 honest clients (the same 7 in the clean
run), so that the attack's effect on the model is measured, not the loss of the attackers' own data
from training; ``f1_all`` in the JSON counts all 10 test parts, as the server's report does.

Data: the synthetic plant by default (``fedad.common.synth.generate_node``, nodes 1-10, ``--records``
records per node); with ``--data SKAB_DIR`` the labelled SKAB files (``anomaly-free`` has no labels and
is left out) are dealt round-robin into 10 pseudo-clients, each the concatenation of its files.

Attack settings: each attack's defaults (docs/attacks.md) as ``fedad-client --attack NAME`` uses them
(no --attack-scale, attack seed 0); ALIE's z from n = 10 and m = 3 (``--num-clients 10``). Progress goes
to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ATTACKS = ("sign_flip", "scaling", "gaussian", "zero", "data_poisoning", "alie", "ipm", "min_max")
STRATEGIES = (
    "fedavg",
    "krum",
    "multikrum",
    "fedmedian",
    "fedtrimmedavg",
    "bulyan",
    "trust",
    "flag",
    "robust",
    "secure-robust",
)
DEFAULT_STRATEGIES = STRATEGIES[:-1]  # secure-robust has its own bench (bench/secure_robust.py)
OURS = ("trust", "flag", "robust", "secure-robust")
FLAGGING = ("flag", "robust", "secure-robust")  # trust only flags invalid updates: it down-weights instead
SECURE_KEY_BITS = 2048  # the layout (slots per block) of a 2048-bit key, as fedad keygen makes by default
CLEAN = "none"
N_CLIENTS, N_MALICIOUS = 10, 3
TRIM_BETA = 0.3
BULYAN_F = (N_CLIENTS - 3) // 4  # Bulyan's precondition n >= 4f + 3
TARGET_PR, TARGET_DROP = 0.95, 0.02


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ data


def _dataset(X, names, y, source):
    from fedad.common.data import Dataset

    return Dataset(X=np.asarray(X, dtype=np.float64), feature_names=list(names), y=y, time=None, source=source)


def plant_shards(records: int, seed: int) -> list:
    """Nodes 1..10 of the synthetic plant, ``records`` each (as ``write_plant`` would split them)."""
    from fedad.common.synth import SENSORS, generate_node

    shards = []
    for node in range(1, N_CLIENTS + 1):
        df = generate_node(node, records, seed)
        shards.append(
            _dataset(df[list(SENSORS)].to_numpy(np.float64), SENSORS, df["label"].to_numpy(np.int8), f"node{node:02d}")
        )
    return shards


def skab_shards(path: Path) -> list:
    """The labelled SKAB files dealt round-robin into 10 pseudo-clients (concatenated in file order)."""
    import pandas as pd

    from fedad.common.data import dataset_from_frame, load_skab_files
    from fedad.common.errors import FedadError

    files = [(name, frame) for name, frame in load_skab_files(path) if "anomaly" in frame.columns]
    if len(files) < N_CLIENTS:
        raise FedadError(f"{path}: found {len(files)} labelled SKAB files, need at least {N_CLIENTS}")
    shards = []
    for i in range(N_CLIENTS):
        frame = pd.concat([f for _, f in files[i::N_CLIENTS]], ignore_index=True)
        shards.append(dataset_from_frame(frame, f"skab{i + 1:02d}", "anomaly", "datetime", drop=("changepoint",)))
    return shards


# ---------------------------------------------------------------------------------------- aggregation


@dataclass
class StrategyState:
    """What a strategy keeps across rounds (trust history, quarantine) and the flag tallies from round 2."""

    name: str
    history: object = None
    quarantine: object = None
    tp: int = 0
    fp: int = 0
    fn: int = 0
    malicious_weight: list[float] = field(default_factory=list)
    stalled_rounds: int = 0
    secure: dict = field(default_factory=dict)  # secure-robust: sketch rows, clip, bits, rng
    shadow: dict = field(default_factory=dict)  # secure-robust: plaintext robust on the same updates (paired)

    @classmethod
    def new(cls, name: str, quarantine_after: int, secure: dict | None = None) -> StrategyState:
        from fedad.server.defence.quarantine import Quarantine
        from fedad.server.defence.trust import TrustHistory

        shadow = {
            "history": TrustHistory(),
            "quarantine": Quarantine(max_flags=quarantine_after),
            "tp": 0,
            "fp": 0,
            "fn": 0,
        }
        return cls(
            name, TrustHistory(), Quarantine(max_flags=quarantine_after), secure=dict(secure or {}), shadow=shadow
        )


def aggregate(
    state: StrategyState,
    rnd: int,
    global_w: list[np.ndarray],
    names: list[str],
    results: list[tuple[list[np.ndarray], int, np.ndarray]],
    malicious: set[str],
) -> list[np.ndarray]:
    """New global weights from one round's (weights, examples, embedding) per client."""
    from flwr.server.strategy.aggregate import aggregate_bulyan, aggregate_krum, aggregate_median, aggregate_trimmed_avg

    from fedad.server.aggregation import apply_update, compute_update, weighted_average

    pairs = [(w, n) for w, n, _ in results]
    s = state.name
    if s == "fedavg":
        return weighted_average(pairs)
    if s == "krum":
        return aggregate_krum(pairs, num_malicious=N_MALICIOUS, to_keep=0)
    if s == "multikrum":
        return aggregate_krum(pairs, num_malicious=N_MALICIOUS, to_keep=len(pairs) - N_MALICIOUS)
    if s == "fedmedian":
        return aggregate_median(pairs)
    if s == "fedtrimmedavg":
        return aggregate_trimmed_avg(pairs, proportiontocut=TRIM_BETA)
    if s == "bulyan":
        return aggregate_bulyan(list(pairs), BULYAN_F, aggregate_krum, to_keep=0)
    from fedad.server.defence.round import aggregate_round

    dim = int(sum(w.size for w in global_w))
    updates = [compute_update(w, global_w) for w, _, _ in results]
    if s == "secure-robust":
        total, res = secure_round(state, names, updates, results, dim)
        sh = state.shadow  # paired: plaintext robust scores the very same updates (its own history/quarantine)
        plain = aggregate_round(
            "robust",
            names,
            updates,
            [float(n) for _, n, _ in results],
            dim=dim,
            embeddings=[e for _, _, e in results],
            history=sh["history"],
            quarantine=sh["quarantine"],
        )
        if rnd >= 2:
            caught, present = plain.flagged | (sh["quarantine"].quarantined & set(names)), malicious & set(names)
            sh["tp"] += len(caught & present)
            sh["fp"] += len(caught - present)
            sh["fn"] += len(present - caught)
    else:
        res = aggregate_round(
            s,
            names,
            updates,
            [float(n) for _, n, _ in results],
            dim=dim,
            embeddings=None if s == "flag" else [e for _, _, e in results],
            history=state.history,
            quarantine=state.quarantine,
        )
        total = res.update
    if rnd >= 2:
        caught = res.flagged | (state.quarantine.quarantined & set(names)) if s in FLAGGING else set()
        present = malicious & set(names)
        state.tp += len(caught & present)
        state.fp += len(caught - present)
        state.fn += len(present - caught)
        state.malicious_weight.append(sum(r["weight"] for r in res.records if r["client"] in malicious))
    if not res.kept:  # the server would stop the run here (no usable update); keep the model instead
        state.stalled_rounds += 1
        return global_w
    return apply_update(global_w, total)


def secure_round(state: StrategyState, names: list[str], updates: list[np.ndarray], results: list, dim: int):
    """secure-robust on the quantized integers (exactly what its decryptions return; see
    ``fedad.server.defence.sketch_round.simulate_round``): the aggregator sees m sketch rows and one embedding each."""
    from fedad.common.crypto.sketch import secure_layout
    from fedad.server.defence.sketch_round import WEIGHT_TOTAL, simulate_round

    opts = state.secure
    layout = secure_layout(SECURE_KEY_BITS, opts["bits"], dim, WEIGHT_TOTAL)
    rng = opts["rng"]
    return simulate_round(
        "robust",
        names,
        updates,
        [float(n) for _, n, _ in results],
        [e for _, _, e in results],
        clip=opts["clip"],
        bits=opts["bits"],
        layout=layout,
        rows=opts["rows"],
        seed=rng.bytes(32),
        history=state.history,
        quarantine=state.quarantine,
        rng=rng,
    )


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class Setup:
    """One attack's federation: sites, attack runners, spec, initial weights; round-1 results cached."""

    sites: list
    names: list[str]
    runners: dict
    spec: object
    initial: list[np.ndarray]
    round1: list | None = None


def build_setup(shards: list, attack: str, args) -> Setup:
    """Fresh sites (data poisoning rewrites the attackers' training rows), merged scaler, initial weights."""
    import torch

    from fedad.client.attack_runner import AttackRunner
    from fedad.client.site import Site
    from fedad.common.federation_spec import FederationSpec
    from fedad.common.models.registry import build_model
    from fedad.common.preprocessing import ScalerStats
    from fedad.common.training import get_weights

    names = [f"client{i + 1:02d}" for i in range(len(shards))]
    malicious = names[-N_MALICIOUS:] if attack != CLEAN else []
    sites = [Site(shard, device="cpu") for shard in shards]
    runners = {}
    for name in malicious:
        runners[name] = AttackRunner(
            attack, None, 1, name, collusion_dir="unused", colluders=N_MALICIOUS, num_clients=N_CLIENTS
        )
        runners[name].prepare(sites[names.index(name)])
    spec = FederationSpec(
        model="dense",
        window=1,
        preprocessing={"scaler": "standard"},
        scaling=args.scaling,
        score=args.score,
        threshold_rule=args.threshold_rule,
        target_far=args.target_far,
        threshold_scope=args.threshold_scope,
        feature_names=list(shards[0].feature_names),
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    for site in sites:
        site.configure(spec, "bench")
    scaler = ScalerStats.merge([site.scaler_stats() for site in sites])  # the server's stats phase
    for site in sites:
        site.set_scaler(scaler, b"bench")  # under site scaling each site keeps its own statistics instead
    torch.manual_seed(spec.seed)
    initial = get_weights(build_model(spec.model, len(spec.feature_names), window=spec.window, **spec.sizes))
    return Setup(sites, names, runners, spec, initial)


def client_round(
    setup: Setup, rnd: int, global_w: list[np.ndarray], collusion_dir: str
) -> list[tuple[list[np.ndarray], int, np.ndarray]]:
    """Every site's answer to one fit instruction: (weights, examples, mean embedding under the global model)."""
    from fedad.client.attacks.base import flat
    from fedad.client.attacks.collusion import CollusionChannel

    quiet = logging.getLogger("bench.poisoning.client")
    trained = [site.train(global_w, setup.spec.local_epochs, setup.spec.seed * 1000 + rnd) for site in setup.sites]
    for name, runner in setup.runners.items():  # all colluders publish before any of them crafts
        runner.collusion_dir = collusion_dir
        if runner.attack.needs_benign and runner.attack.is_active(rnd):
            honest = flat(trained[setup.names.index(name)]["weights"]) - flat(global_w)
            CollusionChannel(collusion_dir, rnd, name, runner.colluders).publish(honest)
    out = []
    for name, site, res in zip(setup.names, setup.sites, trained, strict=True):
        weights, examples = res["weights"], res["examples"]
        if name in setup.runners:
            weights, examples = setup.runners[name].apply(rnd, global_w, weights, examples, quiet)
        out.append((weights, examples, site.mean_embedding(global_w)))
    return out


def evaluate(setup: Setup, weights: list[np.ndarray], malicious: set[str]) -> dict:
    """The server's threshold (robust combination of all sites' validation histograms, or each site's own
    under --threshold-scope site), metrics from the test parts' counts."""
    from fedad.common.federated_stats import N_BINS, combined_threshold, histogram, metrics_from_counts
    from fedad.common.threshold_rule import threshold_by_rule

    spec = setup.spec
    val = {
        name: site.record_scores(weights, site.split.val) for name, site in zip(setup.names, setup.sites, strict=True)
    }
    if spec.threshold_scope == "site":
        per_site = {
            n: threshold_by_rule(v, spec.threshold_rule, spec.threshold_quantile, spec.target_far)
            for n, v in val.items()
        }
        threshold = float(np.median(list(per_site.values())))
    else:
        threshold = combined_threshold({n: (histogram(v), len(v)) for n, v in val.items()}, spec).threshold
        per_site = dict.fromkeys(setup.names, threshold)
    totals = {k: np.zeros(4, dtype=np.int64) for k in ("honest", "all")}
    pos = {k: np.zeros(N_BINS, dtype=np.int64) for k in totals}
    neg = {k: np.zeros(N_BINS, dtype=np.int64) for k in totals}
    for name, site in zip(setup.names, setup.sites, strict=True):
        scores = site.record_scores(weights, site.split.test)
        y = site.split.test_labels.astype(bool)
        pred = scores > per_site[name]
        counts = np.array([(pred & y).sum(), (pred & ~y).sum(), (~pred & ~y).sum(), (~pred & y).sum()])
        for key in ("all",) if name in malicious else ("honest", "all"):
            totals[key] += counts
            pos[key] += histogram(scores[y])
            neg[key] += histogram(scores[~y])
    honest = metrics_from_counts(*map(int, totals["honest"]), pos["honest"], neg["honest"])
    every = metrics_from_counts(*map(int, totals["all"]), pos["all"], neg["all"])
    return {"threshold": threshold, "honest": honest, "all": every}


def new_state(strategy: str, args) -> StrategyState:
    secure = {
        "rows": getattr(args, "sketch_rows", 16),
        "clip": getattr(args, "update_clip", 0.5),
        "bits": getattr(args, "secure_bits", 16),
        "rng": np.random.default_rng([args.seed, 7]),
    }
    return StrategyState.new(strategy, args.quarantine_after, secure)


def auto_rounds(args) -> int:
    """The rounds fedad-server --rounds auto (its default patience, min-delta and cap: fedad.server.convergence)
    runs on the clean plant with fedavg: the federated validation loss is the validation-row-weighted mean of
    the sites' losses under each round's global model, as the server aggregates it."""
    from fedad.server.convergence import StopRule, stop_reason

    shards = skab_shards(Path(args.data)) if args.data else plant_shards(args.records, args.seed)
    setup = build_setup(shards, CLEAN, args)
    state, global_w, losses, rule = new_state("fedavg", args), setup.initial, [], StopRule()
    with tempfile.TemporaryDirectory(prefix="fedad-collusion-") as collusion_dir:
        for rnd in range(1, rule.max_rounds + 1):
            results = client_round(setup, rnd, global_w, collusion_dir)
            global_w = aggregate(state, rnd, global_w, setup.names, results, set())
            sizes = [len(site.val_samples) for site in setup.sites]
            losses.append(
                sum(site.val_loss(global_w) * n for site, n in zip(setup.sites, sizes, strict=True)) / sum(sizes)
            )
            reason = stop_reason(losses, rule)
            if reason:
                progress(f"--rounds auto: {len(losses)} rounds ({reason})")
                return max(2, len(losses))
    return rule.max_rounds


def run_one(setup: Setup, attack: str, strategy: str, args, honest_names: set[str]) -> dict:
    """One federation of ``args.rounds`` rounds with one strategy; returns its row (without the drop)."""
    t0 = time.perf_counter()
    malicious = set(setup.runners)
    state = new_state(strategy, args)
    global_w = setup.initial
    with tempfile.TemporaryDirectory(prefix="fedad-collusion-") as collusion_dir:
        for rnd in range(1, args.rounds + 1):
            if rnd == 1 and setup.round1 is not None:
                results = setup.round1  # same global model, same seeds: identical for every strategy
            else:
                results = client_round(setup, rnd, global_w, collusion_dir)
                if rnd == 1:
                    setup.round1 = results
            global_w = aggregate(state, rnd, global_w, setup.names, results, malicious)
    metrics = evaluate(setup, global_w, {n for n in setup.names if n not in honest_names})
    row = {
        "attack": attack,
        "strategy": strategy,
        "f1": metrics["honest"]["f1"],
        "roc_auc": metrics["honest"]["roc_auc"],
        "precision": metrics["honest"]["precision"],
        "recall": metrics["honest"]["recall"],
        "f1_all": metrics["all"]["f1"],
        "roc_auc_all": metrics["all"]["roc_auc"],
        "threshold": metrics["threshold"],
        "flag_precision": None,
        "flag_recall": None,
        "false_flags": None,
        "malicious_weight": None,
    }
    if strategy in FLAGGING:
        flagged = state.tp + state.fp
        row["false_flags"] = state.fp
        if malicious:
            row["flag_precision"] = state.tp / flagged if flagged else 1.0
            row["flag_recall"] = state.tp / (state.tp + state.fn) if state.tp + state.fn else 1.0
    if strategy == "secure-robust" and malicious:  # plaintext robust on the same updates, round by round
        sh = state.shadow
        row["paired_robust_precision"] = sh["tp"] / (sh["tp"] + sh["fp"]) if sh["tp"] + sh["fp"] else 1.0
        row["paired_robust_recall"] = sh["tp"] / (sh["tp"] + sh["fn"]) if sh["tp"] + sh["fn"] else 1.0
    if strategy in OURS and malicious and state.malicious_weight:
        row["malicious_weight"] = float(np.mean(state.malicious_weight))
    if state.stalled_rounds:
        row["stalled_rounds"] = state.stalled_rounds
    row["seconds"] = time.perf_counter() - t0
    return row


def run_attacks(attacks: list[str], args) -> list[dict]:
    """Rows (without drops) of every strategy under each of ``attacks`` (``none`` = the clean run)."""
    shards = skab_shards(Path(args.data)) if args.data else plant_shards(args.records, args.seed)
    names = [f"client{i + 1:02d}" for i in range(N_CLIENTS)]
    honest = set(names[:-N_MALICIOUS])
    rows = []
    total = len(attacks) * len(args.strategies)
    t_start = time.perf_counter()
    for attack in attacks:
        setup = build_setup(shards, attack, args)
        for strategy in args.strategies:
            row = run_one(setup, attack, strategy, args, honest)
            rows.append(row)
            flags = (
                ""
                if row["flag_precision"] is None
                else f", flags P/R {row['flag_precision']:.2f}/{row['flag_recall']:.2f}"
            )
            progress(
                f"[{len(rows)}/{total} {time.perf_counter() - t_start:.0f} s] {attack:<14} {strategy:<13} "
                f"F1 {_f(row['f1'])} AUC {_f(row['roc_auc'])}{flags} ({row['seconds']:.1f} s)"
            )
    return rows


def add_drops(rows: list[dict]) -> list[dict]:
    """``f1_drop`` = F1 of the same strategy's clean run minus this row's F1 (positive = worse)."""
    clean = {r["strategy"]: r["f1"] for r in rows if r["attack"] == CLEAN}
    for r in rows:
        ref = clean.get(r["strategy"])
        r["clean_f1"] = ref
        r["f1_drop"] = None if ref is None or r["f1"] is None else ref - r["f1"]
    return rows


def run_bench(args) -> list[dict]:
    """All attacks (clean run first), in ``args.jobs`` worker processes that each take whole attacks."""
    attacks = [CLEAN] + [a for a in args.attacks if a != CLEAN]
    jobs = max(1, min(args.jobs, len(attacks)))
    if jobs == 1:
        return add_drops(run_attacks(attacks, args))
    import subprocess

    with tempfile.TemporaryDirectory(prefix="fedad-bench-poisoning-") as tmp:
        procs = []
        for j in range(jobs):
            out = Path(tmp) / f"worker{j}.json"
            cmd = [
                sys.executable,
                __file__,
                "--worker-attacks",
                *attacks[j::jobs],
                "--json",
                str(out),
                "--jobs",
                "1",
                "--strategies",
                *args.strategies,
                "--rounds",
                str(args.rounds),
                "--local-epochs",
                str(args.local_epochs),
                "--batch-size",
                str(args.batch_size),
                "--lr",
                str(args.lr),
                "--records",
                str(args.records),
                "--quarantine-after",
                str(args.quarantine_after),
                "--seed",
                str(args.seed),
                "--threads",
                str(args.threads),
                "--scaling",
                args.scaling,
                "--score",
                args.score,
                "--threshold-rule",
                args.threshold_rule,
                "--threshold-scope",
                args.threshold_scope,
                *(["--target-far", str(args.target_far)] if args.target_far is not None else []),
                "--sketch-rows",
                str(args.sketch_rows),
                "--update-clip",
                str(args.update_clip),
            ]
            if args.data:
                cmd += ["--data", args.data]
            procs.append((subprocess.Popen(cmd), out))
        rows = []
        for proc, out in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"a bench worker failed (exit {proc.returncode})")
            rows += json.loads(out.read_text())
    order = {a: i for i, a in enumerate(attacks)}
    return add_drops(sorted(rows, key=lambda r: order[r["attack"]]))  # stable: strategy order kept


# --------------------------------------------------------------------------------------------- output


def _f(v, width: int = 5, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-".rjust(width)
    return f"{v:+.3f}".rjust(width) if signed else f"{v:.3f}".rjust(width)


def format_table(rows: list[dict]) -> str:
    """A matrix of F1 drops (attacks x strategies), then the full table."""
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    by = {(r["attack"], r["strategy"]): r for r in rows}
    w = max(len(s) for s in strategies) + 1
    out = [
        "F1 on the honest clients' test parts (clean row) and F1 drop vs the same strategy's clean run "
        "(positive = worse):",
        f"{'attack':<15}" + "".join(s.rjust(w) for s in strategies),
    ]
    for a in attacks:
        key = "f1" if a == CLEAN else "f1_drop"
        out.append(
            f"{a:<15}" + "".join(_f(by[(a, s)][key] if (a, s) in by else None, w, a != CLEAN) for s in strategies)
        )
    out += [
        "",
        f"{'attack':<15} {'strategy':<14} {'F1':>6} {'AUC':>6} {'drop':>7} {'flagP':>6} {'flagR':>6} "
        f"{'false':>5} {'w_mal':>6} {'F1 all':>6}",
    ]
    for r in rows:
        ff = "-" if r["false_flags"] is None else str(r["false_flags"])
        out.append(
            f"{r['attack']:<15} {r['strategy']:<14} {_f(r['f1'], 6)} {_f(r['roc_auc'], 6)} "
            f"{_f(r['f1_drop'], 7, True)} {_f(r['flag_precision'], 6)} {_f(r['flag_recall'], 6)} "
            f"{ff:>5} {_f(r['malicious_weight'], 6)} {_f(r['f1_all'], 6)}"
        )
    return "\n".join(out)


def target_report(rows: list[dict]) -> str:
    """Which robust targets are met, attack by attack, with FedAvg's drop beside it."""
    by = {(r["attack"], r["strategy"]): r for r in rows}
    lines = []
    for (a, s), r in by.items():
        if s != "robust" or a == CLEAN:
            continue
        misses = []
        if r["flag_precision"] is not None and r["flag_precision"] < TARGET_PR:
            misses.append(f"flag precision {r['flag_precision']:.3f}")
        if r["flag_recall"] is not None and r["flag_recall"] < TARGET_PR:
            misses.append(f"flag recall {r['flag_recall']:.3f}")
        if r["f1_drop"] is not None and r["f1_drop"] > TARGET_DROP:
            misses.append(f"F1 drop {r['f1_drop']:+.3f}")
        fedavg = by.get((a, "fedavg"), {}).get("f1_drop")
        lines.append(
            f"robust vs {a:<14}: {'MISSED: ' + ', '.join(misses) if misses else 'targets met'}"
            f" (FedAvg drop {_f(fedavg, 6, True).strip()})"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--attacks",
        nargs="+",
        default=list(ATTACKS),
        choices=ATTACKS,
        help="attacks to run (the clean run is always added)",
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        default=list(DEFAULT_STRATEGIES),
        choices=STRATEGIES,
        help="strategies (secure-robust: simulated on the quantized integers its decryptions return)",
    )
    p.add_argument("--sketch-rows", type=int, default=16, help="secure-robust: sketch rows m per client")
    p.add_argument("--update-clip", type=float, default=0.5, help="secure-robust: updates clipped to [-R, R]")
    p.add_argument(
        "--rounds",
        type=lambda v: v if v == "auto" else int(v),
        default=8,
        help="training rounds per federation, or 'auto': as many as fedad-server --rounds auto runs on the clean "
        "plant with fedavg (every federation of the bench then runs that many)",
    )
    p.add_argument("--local-epochs", type=int, default=2, help="local epochs per round")
    p.add_argument("--batch-size", type=int, default=256, help="local batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="local Adam learning rate")
    p.add_argument("--records", type=int, default=10000, help="synthetic plant: records per client")
    p.add_argument(
        "--data",
        default=None,
        metavar="SKAB_DIR",
        help="run on SKAB (its labelled files as 10 pseudo-clients) instead of the synthetic plant",
    )
    p.add_argument("--quarantine-after", type=int, default=3, help="flag/robust: quarantine after this many flags")
    p.add_argument("--seed", type=int, default=0, help="data, model and training seed")
    p.add_argument(
        "--scaling",
        default="site",
        choices=("site", "global"),
        help="as fedad-server --scaling: site (each client its own statistics) or global (merged)",
    )
    from fedad.common.scoring import DEFAULT_SCORE, SCORES
    from fedad.common.threshold_rule import DEFAULT_RULE, THRESHOLD_RULES

    p.add_argument("--score", default=DEFAULT_SCORE, choices=SCORES, help="record score (as fedad-server --score)")
    p.add_argument(
        "--threshold-rule",
        default=DEFAULT_RULE,
        choices=THRESHOLD_RULES,
        help="threshold rule (as fedad-server --threshold-rule)",
    )
    p.add_argument("--target-far", type=float, default=None, help="the rule's false-alarm rate (as fedad-server)")
    p.add_argument(
        "--threshold-scope",
        default="global",
        choices=("global", "site"),
        help="one robust global threshold, or each site's own (as fedad-server --threshold-scope)",
    )
    p.add_argument("--jobs", type=int, default=2, help="worker processes (each runs whole attacks)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--worker-attacks", nargs="+", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as a JSON list")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.rounds != "auto" and args.rounds < 2:
        print("poisoning.py: error: --rounds must be at least 2 (flags are counted from round 2)", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("bench.poisoning.client").setLevel(logging.ERROR)  # one SECURITY TEST line per round
    from fedad.common.errors import FedadError

    try:
        if args.rounds == "auto":
            args.rounds = auto_rounds(args)
        if args.worker_attacks:  # one worker of --jobs: raw rows to --json, no table
            Path(args.json).write_text(json.dumps(run_attacks(args.worker_attacks, args)) + "\n")
            return 0
        rows = run_bench(args)
    except FedadError as exc:
        print(f"poisoning.py: error: {exc}", file=sys.stderr)
        return 2
    source = f"SKAB ({args.data})" if args.data else f"synthetic plant, {args.records} records per client"
    print(
        f"{N_CLIENTS} clients, {N_MALICIOUS} malicious (last three), {args.rounds} rounds x {args.local_epochs} "
        f"local epochs, dense autoencoder, {args.scaling} scaling, seed {args.seed}; {source}"
    )
    print(format_table(rows))
    if any(r["strategy"] == "robust" for r in rows):
        print()
        print(target_report(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
