"""The run's results on disk: report.json, the final model directory and PNG plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

METRIC_KEYS = ("precision", "recall", "f1", "roc_auc", "far", "mar")


ROUND_KEYS = ("round", "clients", "loss", "train_loss", "bytes_up", "bytes_down", "seconds", "failed", "rejected")
ROUND_EXTRAS = (
    "capped_examples",
    "clipped",
    "aggregate_refused",
    "version",
    "staleness",
    "elapsed",
    "val_clients",
    "stale",
)  # only in rounds where they happened


def round_summary(record: dict) -> dict:
    """The per-round fields report.json promises."""
    return {**{k: record.get(k) for k in ROUND_KEYS}, **{k: record[k] for k in ROUND_EXTRAS if k in record}}


def write_report(out: Path, report: dict) -> Path:
    """Write report.json atomically."""
    path = out / "report.json"
    tmp = path.with_name(".report.json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def plot_rounds(out: Path, rounds: list[dict]) -> None:
    """loss.png (validation and training loss per round) and clients.png (per-client train loss and seconds)."""
    if not rounds:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = [x["round"] for x in rounds]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(r, [x["loss"] if x["loss"] is not None else np.nan for x in rounds], "o-", label="global val loss")
    ax.plot(r, [x["train_loss"] for x in rounds], "s--", label="mean local train loss")
    ax.set_xlabel("round")
    ax.set_ylabel("reconstruction MSE")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("loss per round")
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)

    names = sorted({c["client"] for x in rounds for c in x.get("per_client", [])})
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        pts = [(x["round"], c) for x in rounds for c in x.get("per_client", []) if c["client"] == name]
        a1.plot([p[0] for p in pts], [p[1]["train_loss"] for p in pts], ".-", label=name)
        a2.plot([p[0] for p in pts], [p[1]["seconds"] for p in pts], ".-", label=name)
    a1.set_title("local train loss per client")
    a1.set_yscale("log")
    a1.set_xlabel("round")
    a1.set_ylabel("local train loss (reconstruction MSE)")
    a2.set_title("local training seconds per client"), a2.set_xlabel("round"), a2.set_ylabel("seconds")
    a1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "clients.png", dpi=100)
    plt.close(fig)


def roc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> dict | None:
    """The federated ROC curve ({"fpr": [...], "tpr": [...]}) from the summed per-class score histograms."""
    if pos.sum() == 0 or neg.sum() == 0:
        return None
    from fedad.common.metrics import roc_curve_from_histograms

    fpr, tpr = roc_curve_from_histograms(pos, neg)
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def operating_points(report: dict) -> dict[str, tuple[float, float]]:
    """(false positive rate, recall) of the federated model at its threshold and of every baseline."""
    rows = [("federated at its threshold", report.get("metrics") or {})]
    rows += [(name.replace("_", "-"), m) for name, m in (report.get("baselines") or {}).items() if m]
    return {
        name: (float(m["far"]), float(m["recall"]))
        for name, m in rows
        if m.get("far") is not None and m.get("recall") is not None
    }


def plot_report_roc(out: Path, report: dict) -> None:
    """roc.png: the federated ROC curve, its operating point and the baselines' (when report.json has them)."""
    roc = report.get("roc")
    if not roc:
        return
    from fedad.common.evaluation import plot_roc

    plot_roc(
        {"federated": (np.array(roc["fpr"]), np.array(roc["tpr"]))},
        out / "roc.png",
        title="ROC of the federated model",
        points=operating_points(report),
    )


def write_flag_report(out: Path, rounds: list[dict]) -> list[dict]:
    """flags.jsonl (one line per round and client: scores, trust weight, flagged, reason) and a summary."""
    lines: list[str] = []
    summary: dict[str, dict[str, Any]] = {}  # client -> its rounds, flagged rounds, weights and last reason
    for r in rounds:
        for name, rec in sorted((r.get("flags") or {}).items()):
            lines.append(json.dumps({"round": r["round"], **rec}, default=_jsonable))
            s = summary.setdefault(
                name, {"client": name, "rounds": 0, "flagged_rounds": 0, "weights": [], "last_reason": ""}
            )
            s["rounds"] += 1
            s["weights"].append(float(rec.get("weight") or 0.0))
            if rec.get("flagged"):
                s["flagged_rounds"] += 1
                s["last_reason"] = rec.get("reason") or ""
    if not lines:
        return []
    tmp = out / ".flags.jsonl.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "flags.jsonl")
    rows = []
    for s in sorted(summary.values(), key=lambda s: s["client"]):
        rows.append(
            {
                "client": s["client"],
                "rounds": s["rounds"],
                "flagged_rounds": s["flagged_rounds"],
                "mean_weight": float(np.mean(s["weights"])),
                "last_reason": s["last_reason"],
            }
        )
    return rows


def unflagged_metrics(per_client: dict[str, dict], rows: list[dict]) -> dict[str, Any] | None:
    """Detection metrics over the test counts of the nodes never flagged in the run (a security test's question:
    what the defence left the honest nodes), with their names; None when no node was flagged or none of the
    others reported labelled test counts."""
    from fedad.common.metrics import metrics_from_confusion

    flagged = {r["client"] for r in rows if r["flagged_rounds"]}
    keys = ("tp", "fp", "tn", "fn")
    clean = sorted(n for n, c in per_client.items() if n not in flagged and all(c.get(k) is not None for k in keys))
    if not flagged or not clean:
        return None
    counts = [sum(int(per_client[n][k]) for n in clean) for k in keys]
    return {"clients": clean, **metrics_from_confusion(*counts)}


def format_flag_summary(rows: list[dict], rounds: list[dict]) -> str:
    """The table printed at the end of a robust run."""
    out = [f"{'client':<16} {'flagged':>9} {'mean weight':>11}  last reason"]
    for r in rows:  # the whole reason: a cut one ("quaranti") says nothing
        out.append(
            f"{r['client']:<16} {r['flagged_rounds']:>4}/{r['rounds']:<4} {r['mean_weight']:>11.3f}  {r['last_reason']}"
        )
    pr = [(x["round"], x.get("flag_precision"), x.get("flag_recall")) for x in rounds if "flag_precision" in x]
    if pr:
        undefined = any(p is None or q is None for _, p, q in pr)
        out.append(
            "flag precision/recall per round: "
            + ", ".join(f"r{k}: {_pr(p)}/{_pr(q)}" for k, p, q in pr)
            + (" (n/a: undefined, nobody flagged or no attacker)" if undefined else "")
        )
    return "\n".join(out)


def _pr(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def format_round_flags(record: dict) -> str | None:
    """One log line per round of a screening strategy: who was flagged (and why) or that nobody was."""
    flags = record.get("flags") or {}
    if not flags:
        return None
    hit = [f"{name} ({rec.get('reason') or 'flagged'})" for name, rec in sorted(flags.items()) if rec.get("flagged")]
    quarantined = [
        name
        for name, rec in sorted(flags.items())
        if not rec.get("flagged") and str(rec.get("reason") or "").startswith("quarantined")
    ]
    text = f"round {record['round']}: flagged " + (", ".join(hit) if hit else "nobody")
    if quarantined:
        text += f"; quarantined: {', '.join(quarantined)}"
    if "flag_precision" in record:
        text += f"; flag precision/recall {_pr(record.get('flag_precision'))}/{_pr(record.get('flag_recall'))}"
    return text


def zero_weight_offsets(weights: dict[str, list[float]]) -> dict[str, float]:
    """Clients whose weight drops to 0 would all lie on one line in trust.png: each gets its own level just
    below 0 (2.5% of the highest weight apart)."""
    top = max((w for ws in weights.values() for w in ws), default=1.0) or 1.0
    zeroed = [name for name in sorted(weights) if any(w == 0 for w in weights[name])]
    return {name: -(k + 1) * 0.025 * top for k, name in enumerate(zeroed)}


def plot_trust(out: Path, rounds: list[dict]) -> None:
    """trust.png: each client's aggregation weight per round (0 when flagged), flagged rounds marked."""
    names = sorted({n for r in rounds for n in (r.get("flags") or {})})
    if not names:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = {
        name: [(r["round"], r["flags"][name]) for r in rounds if name in (r.get("flags") or {})] for name in names
    }
    offsets = zero_weight_offsets({name: [float(p[1].get("weight") or 0) for p in pts] for name, pts in series.items()})
    for name in names:
        pts = series[name]
        off = offsets.get(name, 0.0)
        ys = [float(p[1].get("weight") or 0) or off for p in pts]
        (line,) = ax.plot([p[0] for p in pts], ys, ".-", label=name)
        fx = [(p[0], y) for p, y in zip(pts, ys, strict=True) if p[1].get("flagged")]
        ax.plot([x for x, _ in fx], [y for _, y in fx], "x", color=line.get_color(), ms=9)
        if name in offsets:
            ax.annotate(
                name,
                (pts[-1][0], ys[-1]),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize=7,
                va="center",
                color=line.get_color(),
            )
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.margins(x=0.08)  # room for the names at the end of the lines at 0
    ax.set_xlabel("round")
    ax.set_ylabel(
        "share of the aggregate (x = flagged)"
        + ("\nweight 0: drawn just below 0, one level per client" if offsets else "")
    )
    ax.set_title("trust per client"), ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "trust.png", dpi=100)
    plt.close(fig)
