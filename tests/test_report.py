"""The run's report: flag table, per-round flag lines, trust.png levels, ROC with operating points."""

from __future__ import annotations

import json

from fedad.server import report as rep

REASON = "quarantined (flagged in 3 rounds): distance z 12.4 above 3.5, cosine z -8.1 below -3.5 and more words"


def _rounds() -> list[dict]:
    out = []
    for r in (1, 2, 3):
        flags = {
            "honest": {"client": "honest", "weight": 1.0, "flagged": False, "reason": None},
            "evil1": {"client": "evil1", "weight": 0.0, "flagged": r < 3, "reason": "cosine" if r < 3 else REASON},
            "evil2": {"client": "evil2", "weight": 0.0, "flagged": True, "reason": REASON},
        }
        out.append(
            {
                "round": r,
                "flags": flags,
                "flagged": ["evil1", "evil2"] if r < 3 else ["evil2"],
                "flag_precision": 1.0 if r < 3 else None,
                "flag_recall": 1.0,
            }
        )
    return out


def test_flag_table_keeps_the_whole_last_reason_and_says_n_a(tmp_path):
    rounds = _rounds()
    rows = rep.write_flag_report(tmp_path, rounds)
    text = rep.format_flag_summary(rows, rounds)
    assert REASON in text
    assert "r3: n/a/1.00" in text and "r1: 1.00/1.00" in text


def test_a_line_per_round_names_who_was_flagged():
    rounds = _rounds()
    line = rep.format_round_flags(rounds[0])
    assert line.startswith("round 1: flagged evil1 (cosine), evil2 (quarantined")
    assert "precision/recall 1.00/1.00" in line
    quiet = {
        "round": 4,
        "flags": {"a": {"flagged": False, "reason": None}},
        "flag_precision": None,
        "flag_recall": None,
    }
    assert rep.format_round_flags(quiet) == "round 4: flagged nobody; flag precision/recall n/a/n/a"
    assert rep.format_round_flags({"round": 1}) is None


def test_clients_at_weight_zero_get_distinct_levels_in_trust_png(tmp_path):
    offsets = rep.zero_weight_offsets({"honest": [1.0, 1.0], "evil1": [0.5, 0.0], "evil2": [0.0, 0.0]})
    assert set(offsets) == {"evil1", "evil2"} and len(set(offsets.values())) == 2
    assert all(-0.1 < v < 0 for v in offsets.values())
    rep.plot_trust(tmp_path, _rounds())
    assert (tmp_path / "trust.png").stat().st_size > 1000


def test_roc_shows_the_operating_point_and_the_baselines(tmp_path):
    import numpy as np

    pos, neg = np.zeros(50, np.int64), np.zeros(50, np.int64)
    pos[40:] = 10
    neg[:45] = 100
    report = {
        "metrics": {"far": 0.02, "recall": 0.9},
        "roc": rep.roc_from_histograms(pos, neg),
        "baselines": {"centralized": {"far": 0.03, "recall": 0.8}, "local_only": None},
    }
    json.dumps(report)  # the curve goes into report.json
    assert rep.operating_points(report) == {"federated at its threshold": (0.02, 0.9), "centralized": (0.03, 0.8)}
    rep.plot_report_roc(tmp_path, report)
    assert (tmp_path / "roc.png").stat().st_size > 1000
    assert rep.roc_from_histograms(pos, np.zeros(50, np.int64)) is None


def test_every_panel_of_clients_png_has_a_y_axis_label(tmp_path, monkeypatch):
    from pathlib import Path

    from matplotlib.figure import Figure

    labels: dict[str, list[str]] = {}
    save = Figure.savefig

    def spy(self, fname, *args, **kwargs):
        labels[Path(fname).name] = [ax.get_ylabel() for ax in self.axes]
        return save(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    per_client = [
        {"client": "a", "train_loss": 0.5, "seconds": 1.0},
        {"client": "b", "train_loss": 0.4, "seconds": 2.0},
    ]
    rounds = [{"round": r, "loss": 0.5 / r, "train_loss": 0.4 / r, "per_client": per_client} for r in (1, 2)]
    rep.plot_rounds(tmp_path, rounds)
    assert len(labels["clients.png"]) == 2 and all(labels["clients.png"]), labels
    assert all(labels["loss.png"])


def test_metrics_over_the_never_flagged_nodes(tmp_path):
    rows = rep.write_flag_report(tmp_path, _rounds())  # evil1 and evil2 flagged, honest never
    per_client = {
        "honest": {"tp": 9, "fp": 1, "tn": 89, "fn": 1, "outside_training_range": 0.0},
        "evil1": {"tp": 0, "fp": 50, "tn": 40, "fn": 10},
        "evil2": {"tp": 5, "fp": 5, "tn": 85, "fn": 5},
        "late": {"tp": 4, "fp": 0, "tn": 96, "fn": 0},  # answered the test, never in a flagged round's table
        "unlabelled": {"tp": None, "fp": None, "tn": None, "fn": None},
    }
    m = rep.unflagged_metrics(per_client, rows)
    assert m is not None and m["clients"] == ["honest", "late"]
    assert m["f1"] == 2 * 13 / (2 * 13 + 1 + 1) and m["far"] == 1 / 186
    clean_rows = [dict(r, flagged_rounds=0) for r in rows]
    assert rep.unflagged_metrics(per_client, clean_rows) is None  # nobody flagged: the plant metrics say it all
    assert rep.unflagged_metrics({"evil1": per_client["evil1"]}, rows) is None
