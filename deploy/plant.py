"""Helpers of the emulated plant in docker-compose.yml (the image runs them; CI runs `check` on the host).

    plant.py data       one shard per node: /import/node_NN.csv|.parquet when the user gave one, else synthetic;
                        empties every mounted /live/NN volume (the live profile's streams and alarms)
    plant.py live       the `live` profile's plant: every node's shard replayed into its growing /live/NN/stream.csv
                        at FEDAD_LIVE_RATE records/s (fedad.common.emitter), its alarms (/live/NN/alarms.jsonl)
                        mirrored to /results/alarms/client-N.jsonl and /results/live.json refreshed every round
    plant.py summary    wait for the server's final exit (SERVER_EXIT, written by the server's entrypoint; a
                        restarted server container writes none), then print the run's report (who took part,
                        refused, failed, flagged, metrics), write
                        /results/summary.txt and summary.json; under secure-robust also copy the key holder's
                        audit of this run (/audit/audit.jsonl, last session) to /results/keyholder-audit.jsonl
    plant.py audit      one line about the last session of a key holder's audit log (the keyholder service)
    plant.py health     the server's healthcheck: its port accepts connections (or its run is over and it is
                        writing its plots); a node's is fedad's own (python -m fedad.client.health)
    plant.py check      assert a run's results (CI): every round had the expected clients, F1, refused, flagged,
                        the key holder's audit, the faults of a chaos run (nodes gone, rejoined, server resumed)

`summary` and `check` use only the standard library, so `python3 deploy/plant.py check` works on any host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

SHARD_FORMATS = (".csv", ".parquet")


def log(level: str, msg: str, tag: str) -> None:
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} {level} [{tag}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- data
def prepare_data(args) -> int:
    """Fill every mounted /shards/NN volume with node NN's shard; results directory owned by the server's uid."""
    tag = "data"
    shards_root, import_dir, results = Path(args.shards), Path(args.import_dir), Path(args.results)
    slots = sorted(p for p in shards_root.iterdir() if p.is_dir() and p.name.isdigit()) if shards_root.is_dir() else []
    if not slots:
        log("ERROR", f"no shard volumes mounted under {shards_root} (expected {shards_root}/01 ...)", tag)
        return 2
    nodes = len(slots)
    records = int(os.environ.get("FEDAD_RECORDS", "100000"))
    seed = int(os.environ.get("FEDAD_SEED", "0"))
    uid, gid = int(os.environ.get("FEDAD_UID", "1000")), int(os.environ.get("FEDAD_GID", "1000"))

    user_files: dict[str, Path] = {}
    for slot in slots:
        for ext in SHARD_FORMATS:
            f = import_dir / f"node_{slot.name}{ext}"
            if f.is_file():
                user_files[slot.name] = f
                break
    synthetic = [s.name for s in slots if s.name not in user_files]
    plant: dict = {"nodes": {}, "records": records, "seed": seed}
    generated: Path | None = None
    if synthetic:
        if records < nodes * 100:
            log("ERROR", f"FEDAD_RECORDS={records} is too small: at least 100 records per node ({nodes} nodes)", tag)
            return 2
        from fedad.common.errors import FedadError
        from fedad.common.synth import write_plant

        generated = Path(tempfile.mkdtemp(prefix="plant-"))
        t0 = time.perf_counter()
        try:
            manifest = write_plant(generated / "plant", nodes, records, seed, formats=("csv",))
        except FedadError as exc:
            log("ERROR", f"synthetic plant: {exc}", tag)
            return 2
        plant["synthetic_manifest"] = manifest
        log(
            "INFO",
            f"synthetic plant: {records} records over {nodes} nodes (seed {seed}) in {time.perf_counter() - t0:.1f} s",
            tag,
        )
    for slot in slots:
        src = user_files.get(slot.name) or (generated / "plant" / f"node_{slot.name}.csv")  # type: ignore[operator]
        if not src.is_file():
            log("ERROR", f"node {slot.name}: {src} was not written", tag)
            return 1
        for old in slot.iterdir():  # one shard per node, nothing else
            if old.is_file() and old.name.startswith("shard"):
                old.unlink()
        dest = slot / f"shard{src.suffix}"
        tmp = slot / f".shard.tmp{src.suffix}"
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        source = f"{args.host_import_dir}/{src.name} (yours)" if slot.name in user_files else "synthetic"
        plant["nodes"][slot.name] = {"source": source, "bytes": dest.stat().st_size}
        log("INFO", f"node {slot.name}: {source} -> shard volume ({dest.stat().st_size / 1e6:.2f} MB)", tag)
    if generated:
        shutil.rmtree(generated, ignore_errors=True)
    for slot in sorted(p for p in Path(args.live).iterdir() if p.is_dir()) if Path(args.live).is_dir() else []:
        for old in slot.iterdir():  # a new run's live streams start empty (and a plain run sees none)
            if old.is_file():
                old.unlink()
        os.chmod(slot, 0o1777)  # the live job writes stream.csv (FEDAD_UID), the node its alarms.jsonl (uid 10001)

    # ./results on the host: created by Docker as root when missing; hand it to the server's uid.
    results.mkdir(parents=True, exist_ok=True)
    st = results.stat()
    if st.st_uid == 0 and uid != 0:
        os.chown(results, uid, gid)
        log("INFO", f"results directory handed to uid {uid}:{gid} (FEDAD_UID/FEDAD_GID)", tag)
    os.chmod(results, results.stat().st_mode | 0o755)  # readable by whoever runs the plant
    resume = os.environ.get("FEDAD_RESUME", "0").lower() in ("1", "true", "yes", "on")
    if server_answers(os.environ.get("FEDAD_SERVER", "")):
        log("INFO", "a server of this plant is running: its outputs in the results directory stay as they are", tag)
    else:
        (results / SERVER_EXIT).unlink(missing_ok=True)  # this run's end is still to come (summary waits for it)
        (results / LIVE_REPORT).unlink(missing_ok=True)  # written by the live job: the server then runs continuously
        if resume:
            log("INFO", "FEDAD_RESUME=1: the previous run's outputs stay; the server resumes from its checkpoint", tag)
        elif moved := move_aside(results, uid, gid):
            log("INFO", f"a new run: the previous run's {', '.join(moved[1])} moved to {moved[0]}", tag)
    path = results / "plant.json"
    tmp = results / ".plant.json.tmp"
    tmp.write_text(json.dumps(plant, indent=2) + "\n")
    os.chown(tmp, uid, gid)
    os.replace(tmp, path)
    return 0


# Everything a run writes into the results directory (the server, the summary job, the data job itself).
RUN_OUTPUTS = (
    "report.json",
    "summary.txt",
    "summary.json",
    "rounds.jsonl",
    "flags.jsonl",
    "keyholder-audit.jsonl",
    "plant.json",
    "global_weights.npz",
    "model",
    "checkpoint",
    "*.png",
    ".*.tmp",
    ".server-exit",
    "live.json",
    "alarms",
    "versions",
    "stop",
)
LIVE_REPORT = "live.json"  # the live profile's report; its presence tells the server to run continuously
SERVER_EXIT = ".server-exit"  # the server's exit code, written by its entrypoint when the run is over


def move_aside(results: Path, uid: int, gid: int) -> tuple[Path, list[str]] | None:
    """Move the previous run's outputs to results/previous-<UTC time>/ (a new run never mixes with them)."""
    found = sorted({p for pattern in RUN_OUTPUTS for p in results.glob(pattern)})
    if not found:
        return None
    dest = results / time.strftime("previous-%Y%m%dT%H%M%SZ", time.gmtime())
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{dest.name.split('.')[0]}.{n}")
    dest.mkdir()
    os.chown(dest, uid, gid)
    os.chmod(dest, 0o755)
    for path in found:
        os.replace(path, dest / path.name)
    return dest, [p.name for p in found if not p.name.startswith(".")]


def server_answers(address: str) -> bool:
    """Whether HOST:PORT accepts a TCP connection (False when empty or unresolvable)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return False
    try:
        socket.create_connection((host, int(port)), 2).close()
    except OSError:
        return False
    return True


def health(args) -> int:
    """The server's healthcheck: exit 0 when alive (see the module docstring), else 1 with one line why."""
    if server_answers(f"127.0.0.1:{args.port}"):
        return 0
    if args.done and Path(args.done).is_file():  # the run is over: plots and the model are being written
        return 0
    print(f"unhealthy: nothing accepts connections on port {args.port}", file=sys.stderr)
    return 1


# ------------------------------------------------------------------------------------------- results
def _rounds(results: Path) -> list[dict]:
    path = results / "rounds.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def _is_flag(v) -> bool:
    """One client's entry in a round's ``flags``: a bool, or a dict with flagged/quarantined/reasons."""
    if isinstance(v, dict):
        if "flagged" in v:  # fedad's own records: flagged is the verdict (a quarantined client is left out, not
            return bool(v["flagged"])  # flagged again; report.json's flagged_rounds counts the same way)
        for key in ("flagged", "quarantined", "excluded"):
            if v.get(key):
                return True
        reasons = v.get("reasons") or v.get("reason")
        return bool(reasons) and v.get("flagged") is not False
    return bool(v)


def _reason(v) -> str:
    if isinstance(v, dict):
        r = v.get("reasons") or v.get("reason") or ""
        return ", ".join(map(str, r)) if isinstance(r, (list, tuple)) else str(r)
    return ""


def summarize(results: Path) -> dict:
    """Everything an operator (or CI) asks after a run, from report.json and rounds.jsonl."""
    report = json.loads((results / "report.json").read_text())
    rounds = _rounds(results)
    per_round = []
    flagged: dict[str, dict] = {}
    for r in rounds or report.get("rounds", []):
        per_round.append(
            {
                "round": r.get("round"),
                "clients": sorted(r.get("clients") or []),
                "loss": r.get("loss"),
                "failed": r.get("failed") or [],
                "rejected": sorted(r.get("rejected") or {}),
            }
        )
        for name, v in (r.get("flags") or {}).items():
            if isinstance(v, dict) and not _is_flag(v) and str(v.get("reason") or "").startswith("quarantined"):
                flagged.setdefault(name, {"rounds": [], "reasons": []}).setdefault("quarantined_rounds", []).append(
                    r.get("round")
                )
            if _is_flag(v):
                f = flagged.setdefault(name, {"rounds": [], "reasons": []})
                f["rounds"].append(r.get("round"))
                if _reason(v) and _reason(v) not in f["reasons"]:
                    f["reasons"].append(_reason(v))
        for name, why in (r.get("rejected") or {}).items():
            f = flagged.setdefault(name, {"rounds": [], "reasons": []})
            if r.get("round") not in f["rounds"]:
                f["rounds"].append(r.get("round"))
            if f"rejected: {why}" not in f["reasons"]:
                f["reasons"].append(f"rejected: {why}")
    flag_block = report.get("flags") if isinstance(report.get("flags"), dict) else {}
    for entry in flag_block.get("summary") or []:  # robust strategies: one entry per client
        if isinstance(entry, dict) and entry.get("flagged_rounds"):
            f = flagged.setdefault(str(entry.get("client")), {"rounds": [], "reasons": []})
            if entry.get("last_reason"):
                f["reasons"] = [str(entry["last_reason"])]  # the last word is the shortest and most telling
    flag_scores = [
        {k: r.get(k) for k in ("round", "flag_precision", "flag_recall")}
        for r in flag_block.get("per_round") or []
        if isinstance(r, dict) and "flag_recall" in r
    ]
    for key in ("flagged", "quarantined"):  # report-level lists or dicts, whatever a strategy writes
        val = report.get(key)
        if isinstance(val, dict):
            for name, v in val.items():
                if _is_flag(v) or v is None or isinstance(v, (list, int, float, str)):
                    flagged.setdefault(name, {"rounds": [], "reasons": []})["reasons"].append(key)
        elif isinstance(val, list):
            for name in val:
                flagged.setdefault(str(name), {"rounds": [], "reasons": []})["reasons"].append(key)
    participants = sorted({c for r in per_round for c in r["clients"]})
    plant = {}
    if (results / "plant.json").is_file():
        plant = json.loads((results / "plant.json").read_text())
    keyholder = None
    if (results / "keyholder-audit.jsonl").is_file():
        keyholder = audit_summary(read_audit(results / "keyholder-audit.jsonl"))
    return {
        "strategy": report.get("strategy"),
        "model": report.get("model"),
        "seconds": report.get("seconds"),
        "metrics": report.get("metrics") or {},
        "rounds": per_round,
        "participants": participants,
        "refused": report.get("refused") or {},
        "failures": report.get("failures") or [],
        "refused_connections": report.get("refused_connections") or [],
        "flagged": {k: flagged[k] for k in sorted(flagged)},
        "malicious": flag_block.get("malicious") or [],
        "flag_scores": flag_scores,
        "plant": plant.get("nodes", {}),
        "keyholder": keyholder,
        "status": report.get("status", "ok"),
        "error": report.get("error"),
    }


# ------------------------------------------------------------------------------------ key holder audit
def read_audit(path: Path) -> list[dict]:
    """The entries of the last session of a fedad-keyholder audit log (JSON lines; the keyholder service
    appends a ``{"op": "start"}`` line when it starts a session)."""
    entries: list[dict] = []
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict):
            entries = [e] if e.get("op") == "start" else entries + [e]
    return entries


def audit_summary(entries: list[dict]) -> dict:
    """Rounds the key holder opened, blocks it decrypted per kind, what it refused."""
    begins = [e for e in entries if e.get("op") == "begin" and "refused" not in e]
    blocks: dict[str, int] = {}
    per_round: dict[int, dict[str, int]] = {}
    for e in entries:
        if e.get("op") == "decrypt" and "refused" not in e:
            kind, n = str(e.get("kind")), int(e.get("blocks") or 0)
            blocks[kind] = blocks.get(kind, 0) + n
            rnd = per_round.setdefault(e.get("round"), {})
            rnd[kind] = rnd.get(kind, 0) + n
    final = [e.get("round") for e in begins if e.get("final")]
    return {
        "rounds": [e.get("round") for e in begins if not e.get("final")],
        "final_round": final[-1] if final else None,
        "blocks": blocks,
        "decrypted": sum(blocks.values()),
        "per_round": {str(k): v for k, v in per_round.items()},
        "refused": [f"{e.get('op')} round {e.get('round')}: {e['refused']}" for e in entries if "refused" in e],
    }


def render_audit(a: dict) -> str:
    rounds = a["rounds"]
    opened = (
        (
            "rounds "
            + (
                f"{rounds[0]}-{rounds[-1]}"
                if rounds == list(range(rounds[0], rounds[-1] + 1))
                else ",".join(map(str, rounds))
            )
        )
        if rounds
        else "no rounds"
    )
    if a["final_round"] is not None:
        opened += f" + final round {a['final_round']}"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(a["blocks"].items()))
    text = (
        f"key holder: {opened} opened, {a['decrypted']} blocks decrypted ({kinds or 'none'}), "
        f"{len(a['refused'])} requests refused"
    )
    for r in a["refused"][:3]:
        text += f"\n  REFUSED by the key holder: {r}"[:200]
    return text


def audit(args) -> int:
    path = Path(args.audit)
    if not path.is_file():
        print(f"key holder: no audit log at {path}")
        return 1
    print(render_audit(audit_summary(read_audit(path))))
    return 0


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def render(s: dict) -> str:
    lines = [
        f"fedad plant report: strategy {s['strategy']}, model {s['model']}, {len(s['rounds'])} rounds in "
        f"{(s['seconds'] or 0):.1f} s, {len(s['participants'])} nodes took part"
    ]
    for r in s["rounds"]:
        extra = ""
        if r["failed"]:
            extra += f"; failed: {', '.join(map(str, r['failed']))}"
        if r["rejected"]:
            extra += f"; rejected: {', '.join(r['rejected'])}"
        lines.append(f"  round {r['round']}: {len(r['clients'])} clients, val loss {_f(r['loss'])}{extra}")
    for name, why in s["refused"].items():
        lines.append(f"  REFUSED node {name}: {why}")
    for r in s.get("refused_connections", []):
        lines.append(f"  REFUSED connection as {r.get('client')}: {r.get('reason')}")
    seen = set()
    for f in s["failures"]:
        key = (f.get("client"), f.get("error"))
        if key not in seen:
            seen.add(key)
            lines.append(f"  FAILED node {f.get('client')} ({f.get('phase')} round {f.get('round')}): {f.get('error')}")
    if s["flagged"]:
        for name, f in s["flagged"].items():
            rounds = ",".join(str(r) for r in f["rounds"]) or "-"
            left_out = ",".join(str(r) for r in f.get("quarantined_rounds") or [])
            extra = f" (quarantined, left out in rounds {left_out})" if left_out else ""
            lines.append(f"  FLAGGED node {name} in rounds {rounds}{extra}: {'; '.join(f['reasons'])[:160]}")
        if s.get("flag_scores"):
            lines.append(
                "  flag precision/recall per round (known attackers: "
                + ", ".join(s["malicious"])
                + "): "
                + ", ".join(f"{r['round']}: {_f(r['flag_precision'])}/{_f(r['flag_recall'])}" for r in s["flag_scores"])
            )
    elif s["strategy"] in ("fedavg", "paillier"):
        lines.append(f"  flagged nodes: none ({s['strategy']} does not screen updates; FEDAD_STRATEGY=robust does)")
    else:
        lines.append("  flagged nodes: none")
    if s.get("keyholder") is not None:
        lines.append("  " + render_audit(s["keyholder"]))
    m = s["metrics"]
    lines.append(
        f"  federated test: precision {_f(m.get('precision'))}, recall {_f(m.get('recall'))}, "
        f"F1 {_f(m.get('f1'))}, ROC-AUC {_f(m.get('roc_auc'))}, false alarms {_f(m.get('far'))}"
    )
    return "\n".join(lines)


def wait_for_server_exit(results: Path, server: str, patience: float) -> int | None:
    """The server's final exit code once SERVER_EXIT appears; None when the server has not answered on
    ``server`` for ``patience`` seconds without ending (stopped for good, e.g. `docker kill`)."""
    marker = results / SERVER_EXIT
    last_seen = time.monotonic()
    while True:
        if marker.is_file():
            try:
                return int(marker.read_text().strip() or "1")
            except ValueError:
                return 1
        if not server or server_answers(server) or (results / "report.json").is_file():
            last_seen = time.monotonic()
        elif time.monotonic() - last_seen > patience:
            return None
        time.sleep(2)


def summary(args) -> int:
    results = Path(args.results)
    if args.wait:
        code = wait_for_server_exit(results, args.server, args.patience)
        if code is None:
            log(
                "ERROR",
                f"the server has not answered on {args.server} for {args.patience:.0f} s and never ended "
                "its run (docker compose ps -a; docker compose logs server)",
                "summary",
            )
            return 1
        if code != 0:
            why = ""
            if (results / "report.json").is_file():
                why = ": " + str(json.loads((results / "report.json").read_text()).get("error") or "")
            log("ERROR", f"the server ended with exit code {code}{why} (docker compose logs server)", "summary")
            return 1
    if not (results / "report.json").is_file():
        log("ERROR", f"no report.json in {results}: the server did not finish (docker compose logs server)", "summary")
        return 1
    audit_log = Path(args.audit)
    if json.loads((results / "report.json").read_text()).get("strategy") == "secure-robust" and audit_log.is_file():
        # this run's session of the key holder's audit log, next to the report
        tmp = results / ".keyholder-audit.jsonl.tmp"
        tmp.write_text("".join(json.dumps(e) + "\n" for e in read_audit(audit_log)))
        os.replace(tmp, results / "keyholder-audit.jsonl")
    s = summarize(results)
    text = render(s)
    print(text, flush=True)
    for name, body in (("summary.txt", text + "\n"), ("summary.json", json.dumps(s, indent=2) + "\n")):
        tmp = results / f".{name}.tmp"
        tmp.write_text(body)
        os.replace(tmp, results / name)
    return 0


def check(args) -> int:
    """CI assertions on a finished run; prints every failed expectation, exit 1 if any."""
    results = Path(args.results)
    if not (results / "report.json").is_file():
        print(f"check: FAIL: no {results}/report.json", file=sys.stderr)
        return 1
    s = summarize(results)
    print(render(s))
    problems = []
    if s["status"] != "ok":  # the server writes a report even when the run ends early
        problems.append(f"the run failed: {s['error']}")
    if args.rounds is not None and len(s["rounds"]) != args.rounds:
        problems.append(f"{len(s['rounds'])} rounds, expected {args.rounds}")
    expected = set(args.clients.split(",")) if args.clients else None
    for r in s["rounds"]:
        got = set(r["clients"])
        if expected is not None and got != expected:
            problems.append(
                f"round {r['round']}: clients {sorted(got)}, expected {sorted(expected)} "
                f"(missing {sorted(expected - got)}, unexpected {sorted(got - expected)})"
            )
    f1 = s["metrics"].get("f1")
    if args.min_f1 is not None and (f1 is None or f1 < args.min_f1):
        problems.append(f"final F1 {f1}, expected >= {args.min_f1}")
    for name in filter(None, (args.refused or "").split(",")):
        if name not in s["refused"]:
            problems.append(f"{name} not in report.json 'refused' {sorted(s['refused'])}")
    if args.flagged:
        want = set(args.flagged.split(","))
        missing = want - set(s["flagged"])
        if missing:
            problems.append(f"not flagged: {sorted(missing)} (flagged: {sorted(s['flagged'])})")
        if args.max_false_flags is not None:
            extra = set(s["flagged"]) - want
            if len(extra) > args.max_false_flags:
                problems.append(f"honest nodes flagged: {sorted(extra)}")
    if args.keyholder_rounds is not None:
        a = s.get("keyholder")
        want = list(range(1, args.keyholder_rounds + 1))
        if a is None:
            problems.append(f"no key holder audit ({results}/keyholder-audit.jsonl)")
        else:
            if a["rounds"] != want:
                problems.append(f"key holder opened rounds {a['rounds']}, expected {want}")
            if a["final_round"] != args.keyholder_rounds + 1 or not a["blocks"].get("histogram"):
                problems.append(f"key holder: no final round {args.keyholder_rounds + 1} with the threshold histogram")
            missing = [
                r
                for r in want
                if not a["per_round"].get(str(r), {}).get("aggregate")
                or not a["per_round"].get(str(r), {}).get("sketch")
            ]
            if missing:
                problems.append(f"key holder: no sketch or aggregate decrypted in rounds {missing}")
            if a["refused"]:
                problems.append(f"key holder refused {len(a['refused'])} requests: {a['refused'][:3]}")
    problems += chaos_problems(args, s, json.loads((results / "report.json").read_text()))
    for p in problems:
        print(f"check: FAIL: {p}", file=sys.stderr)
    if not problems:
        print("check: OK", file=sys.stderr)
    return 1 if problems else 0


def _failed_in(report: dict, rounds: list[dict]) -> dict[str, set[int]]:
    """node -> the rounds in which the run names it as failed or dropped out (per round, or 'failures')."""
    out: dict[str, set[int]] = {}
    for r in rounds:
        for name in (r.get("failed") or []) + (r.get("dropped") or []):
            out.setdefault(str(name), set()).add(int(r["round"]))
    for f in report.get("failures") or []:
        if f.get("round") is not None:
            out.setdefault(str(f.get("client")), set()).add(int(f["round"]))
    return out


def chaos_problems(args, s: dict, report: dict) -> list[str]:
    """The faults of a chaos run, each accounted for in report.json (empty list: all are)."""
    problems: list[str] = []
    rounds = s["rounds"]
    failed = _failed_in(report, rounds)
    if "unknown" in failed:
        problems.append(f"a failed node is reported as 'unknown' in rounds {sorted(failed['unknown'])}")
    if args.min_round_clients is not None:
        for r in rounds:
            if len(r["clients"]) < args.min_round_clients:
                problems.append(f"round {r['round']}: {len(r['clients'])} clients < {args.min_round_clients}")
    if args.gone:
        names, _, at = args.gone.partition("@")
        rnd = int(at)
        for name in names.split(","):
            if not failed.get(name, set()) & {rnd, rnd + 1}:
                problems.append(f"{name} (killed in round {rnd}) is not named as failed in round {rnd} or {rnd + 1}")
            later = [r["round"] for r in rounds if r["round"] > rnd and name in r["clients"]]
            if later:
                problems.append(f"{name} (killed in round {rnd}) still took part in rounds {later}")
    if args.rejoined:
        name, _, at = args.rejoined.partition("@")
        rnd = int(at)
        if not failed.get(name, set()) & {rnd, rnd + 1}:
            problems.append(f"{name} (cut off in round {rnd}) is not named as failed in round {rnd} or {rnd + 1}")
        back = [r["round"] for r in rounds if r["round"] > rnd and name in r["clients"]]
        if not back:
            problems.append(f"{name} (cut off in round {rnd}) never took part again")
    if args.resumed is not None:
        resumed = report.get("resumed")
        if not isinstance(resumed, list):
            problems.append("report.json has no 'resumed' list (which rounds a restarted server replayed)")
        elif not any(r.get("after_round") == args.resumed for r in resumed):
            problems.append(f"report.json 'resumed' {resumed} has no resume after round {args.resumed}")
    return problems


# ----------------------------------------------------------------------------------------------- live
def _node_name(slot: str) -> str:
    return f"client-{int(slot)}"


def _mirror(src: Path, dst: Path, offset: int) -> tuple[int, int]:
    """Append the complete lines of ``src`` after byte ``offset`` to ``dst``; (new offset, lines copied)."""
    if not src.is_file():
        return offset, 0
    with open(src, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    if end == 0:
        return offset, 0
    with open(dst, "ab") as f:
        f.write(data[:end])
    return offset + end, data[:end].count(b"\n")


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def live(args) -> int:
    """The live plant: emit every node's records, mirror its alarms into the results, refresh live.json."""
    tag = "live"
    from fedad.common.emitter import Emitter, feed_from_file
    from fedad.common.errors import FedadError

    live_root, shards, results = Path(args.live), Path(args.shards), Path(args.results)
    slots = sorted(p.name for p in live_root.iterdir() if p.is_dir() and p.name.isdigit()) if live_root.is_dir() else []
    if not slots:
        log("ERROR", f"no live volumes mounted under {live_root} (expected {live_root}/01 ...)", tag)
        return 2
    try:
        rate = float(os.environ.get("FEDAD_LIVE_RATE", "10"))
        feeds = []
        for slot in slots:
            src = next(
                (shards / slot / f"shard{ext}" for ext in SHARD_FORMATS if (shards / slot / f"shard{ext}").is_file()),
                None,
            )
            if src is None:
                log("ERROR", f"node {slot}: no shard in {shards / slot} (docker compose logs data)", tag)
                return 2
            feeds.append(feed_from_file(src, live_root / slot / "stream.csv"))
        emitter = Emitter(feeds, rate)
    except (FedadError, ValueError) as exc:
        log("ERROR", f"FEDAD_LIVE_RATE or a shard: {exc}", tag)
        return 2
    emitter.start()
    alarm_dir = results / "alarms"
    alarm_dir.mkdir(exist_ok=True)
    offsets = {slot: 0 for slot in slots}
    counts = {slot: 0 for slot in slots}
    last: dict = {slot: None for slot in slots}
    for slot in slots:
        (alarm_dir / f"{_node_name(slot)}.jsonl").write_bytes(b"")
    stopping = []
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    report_rounds, report_time, rounds_size = -1, 0.0, -1

    def report() -> None:
        rounds = _rounds(results)
        _write_json(
            results / LIVE_REPORT,
            {
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "rate_per_node": rate,
                "records_emitted_per_node": feeds[0].written,
                "rounds": len(rounds),
                "last_round": rounds[-1] if rounds else None,
                "nodes": {
                    _node_name(s): {
                        "alarms": counts[s],
                        "last_alarm": last[s],
                        "alarms_file": f"alarms/{_node_name(s)}.jsonl",
                    }
                    for s in slots
                },
            },
        )

    log(
        "INFO",
        f"{len(slots)} node streams at {rate:g} records/s each; alarms -> {alarm_dir}, report -> "
        f"{results / LIVE_REPORT}",
        tag,
    )
    report()
    while not stopping:
        emitter.tick()
        for slot in slots:
            dst = alarm_dir / f"{_node_name(slot)}.jsonl"
            offsets[slot], n = _mirror(live_root / slot / "alarms.jsonl", dst, offsets[slot])
            if n:
                counts[slot] += n
                with open(dst, "rb") as f:
                    f.seek(max(0, dst.stat().st_size - 4096))
                    tail = f.read().splitlines()
                last[slot] = json.loads(tail[-1]) if tail else None
        rounds_file = results / "rounds.jsonl"
        size = rounds_file.stat().st_size if rounds_file.is_file() else 0
        if size == rounds_size and time.monotonic() - report_time <= 10:
            time.sleep(args.tick)
            continue
        rounds_size = size
        n_rounds = len(_rounds(results))
        if n_rounds != report_rounds or time.monotonic() - report_time > 10:
            if n_rounds != report_rounds and n_rounds:
                log(
                    "INFO",
                    f"round {n_rounds}: {sum(counts.values())} alarms so far ({feeds[0].written} records per node)",
                    tag,
                )
            report()
            report_rounds, report_time = n_rounds, time.monotonic()
        time.sleep(args.tick)
    report()
    log("INFO", f"stopped after {feeds[0].written} records per node", tag)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="plant.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="write one shard per mounted node volume")
    d.add_argument("--shards", default="/shards")
    d.add_argument("--import-dir", default="/import")
    d.add_argument("--host-import-dir", default=os.environ.get("FEDAD_DATA_DIR", "./data"))
    d.add_argument("--results", default="/results")
    d.add_argument("--live", default="/live", help="the live profile's per-node volumes (emptied)")
    lv = sub.add_parser("live", help="the live profile: emit the streams, mirror alarms, refresh live.json")
    lv.add_argument("--live", default="/live")
    lv.add_argument("--shards", default="/shards")
    lv.add_argument("--results", default="/results")
    lv.add_argument("--tick", type=float, default=0.1, help="seconds between two writes")
    sm = sub.add_parser("summary", help="print and write the run's summary")
    sm.add_argument("--results", default="/results")
    sm.add_argument("--audit", default="/audit/audit.jsonl", help="the key holder's audit log (secure-robust)")
    sm.add_argument("--wait", action="store_true", help="first wait for the server's final exit (compose)")
    sm.add_argument("--server", default=os.environ.get("FEDAD_SERVER", "server:8080"), help="HOST:PORT")
    sm.add_argument(
        "--patience",
        type=float,
        default=float(os.environ.get("FEDAD_SUMMARY_PATIENCE", "300")),
        help="seconds without an answer from the server (and no end of run) before giving up",
    )
    au = sub.add_parser("audit", help="one line about the last session of a key holder's audit log")
    au.add_argument("--audit", default="/audit/audit.jsonl")
    c = sub.add_parser("check", help="assert a run's results (CI)")
    c.add_argument("--results", default="results")
    c.add_argument("--rounds", type=int, default=None, help="expected number of rounds")
    c.add_argument("--clients", default=None, help="comma-separated names that must take part in every round")
    c.add_argument("--min-f1", type=float, default=None, help="lowest acceptable final F1")
    c.add_argument("--refused", default=None, help="comma-separated names that must be in report.json refused")
    c.add_argument("--flagged", default=None, help="comma-separated names that must have been flagged")
    c.add_argument("--max-false-flags", type=int, default=None, help="most honest nodes that may be flagged")
    c.add_argument(
        "--keyholder-rounds",
        type=int,
        default=None,
        help="secure-robust: the key holder's audit must show rounds 1..N, the final round N+1 with "
        "the threshold histogram, sketches and an aggregate every round, no refusal",
    )
    c.add_argument(
        "--gone",
        default=None,
        help="chaos: NAME,NAME@ROUND: nodes killed in round ROUND: named (never 'unknown') among the failed of "
        "round ROUND or ROUND+1, in no round after that",
    )
    c.add_argument(
        "--rejoined",
        default=None,
        help="chaos: NAME@ROUND: a node cut off in round ROUND: named among the failed of round ROUND or "
        "ROUND+1, back in a later round",
    )
    c.add_argument("--resumed", type=int, default=None, help="chaos: report.json 'resumed' has a resume after round N")
    c.add_argument("--min-round-clients", type=int, default=None, help="fewest clients any round may have")
    h = sub.add_parser("health", help="the server's healthcheck (its port, or its finished report)")
    h.add_argument("--port", type=int, default=8080)
    h.add_argument("--done", default=None, help="the server's report.json: the run is over, plots being written")
    args = p.parse_args(argv)
    commands = {
        "data": prepare_data,
        "live": live,
        "summary": summary,
        "audit": audit,
        "check": check,
        "health": health,
    }
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
