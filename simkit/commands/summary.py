"""``simkit summary RUN ...``: mean and spread over seeds of finished runs, as a table.

Runs whose resolved configurations differ only in the seed (and the data folder or backend) form
one row (a key a run's configuration lacks, added to simkit after it, reads as its default); each
row is labelled by the configuration keys that tell the rows apart. The value of a run is its
metric on the chosen split after its last epoch ("last") and at its best epoch ("best": highest
accuracy, lowest loss); the table gives mean and sample standard deviation over the seeds, with a
warning on stderr when runs of one row share a seed (copies of one run, not replicates).
Unfinished runs, and folders without a simkit run, are skipped with a note on stderr;
``--unfinished`` lists running and interrupted runs too, each in a row of its own (labelled by its
status, never pooled with finished seeds), so a long run's progress shows next to the others.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

from simkit.errors import UserError
from simkit.training.config import DEFAULTS  # keys added since a run count as defaults
from simkit.training.rundir import RunDir

IGNORED = ("seed", "data_dir", "backend", "divergence_factor")   # not a different experiment
HIGHER_IS_BETTER = ("acc", "auroc", "f1")


def register(sub, parent):
    p = sub.add_parser("summary", parents=[parent], help="mean +- std over seeds of finished runs",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories, or folders holding them")
    p.add_argument("--metric", default=None,
                   help="a metric of metrics.csv (default: acc for classification, else loss)")
    p.add_argument("--split", default="test", help="train, val or test (default: test)")
    p.add_argument("--csv", type=Path, default=None, help="also write the table to this CSV file")
    p.add_argument("--unfinished", action="store_true",
                   help="also list running and interrupted runs (a row each, with their status)")
    p.set_defaults(func=run)


def find_runs(paths) -> list[RunDir]:
    out = []
    for p in paths:
        if RunDir(p).exists():
            out.append(RunDir(p))
        elif p.is_dir():
            out += [RunDir(c) for c in sorted(p.iterdir()) if RunDir(c).exists()]
        else:
            print(f"simkit summary: skipped {p} (not a run directory)", file=sys.stderr)
    return out


def _flat(cfg: dict, prefix="") -> dict:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_value(run: RunDir, metric: str | None, split: str):
    """(metric, last, best, epochs) of one run, or None when it has no such metric."""
    info = run.read_info()
    task = info.get("data", {}).get("task", "classification")
    metric = metric or ("acc" if task == "classification" else "loss")
    by_epoch = {int(r["epoch"]): float(r["value"]) for r in run.read_metrics()
                if r["split"] == split and r["metric"] == metric and not r["layer"]}
    by_epoch.pop(0, None)                                  # epoch 0 is before training
    if not by_epoch:
        return None
    pick = max if metric in HIGHER_IS_BETTER else min
    return metric, by_epoch[max(by_epoch)], pick(by_epoch.values()), max(by_epoch)


def seconds_per_epoch(summary: dict):
    """A run's seconds per epoch: simkit's ``avg_time_per_epoch``, or a gait run's training plus
    evaluation seconds per epoch (None if neither is stored)."""
    if summary.get("avg_time_per_epoch"):
        return summary["avg_time_per_epoch"]
    parts = [summary.get(k) for k in ("train_seconds_per_epoch", "eval_seconds_per_epoch")]
    return sum(parts) if all(p is not None for p in parts) else None


def _mean_std(xs):
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
    return m, s


def collect(runs, metric, split, unfinished=False) -> list[dict]:
    """One row per configuration (seeds pooled), labelled by the keys that differ; with
    ``unfinished``, each unfinished run is a row of its own (its ``status`` and run folder)."""
    groups = {}
    for r in runs:
        info = r.read_info()
        cfg, status = info.get("config"), info.get("status")
        take = cfg and (status == "finished" or unfinished)
        val = run_value(r, metric, split) if take else None
        if val is None:
            print(f"simkit summary: skipped {r.path} (not a finished run with {split} "
                  f"{metric or 'acc/loss'})", file=sys.stderr)
            continue
        base = DEFAULTS if "rule" in cfg else {}        # gait runs keep run.py's own options
        flat = {k: v for k, v in _flat({**base, **cfg}).items() if k not in IGNORED}
        if status != "finished":
            flat.update(status=status, folder=r.path.name)
        g = groups.setdefault(json.dumps(flat, sort_keys=True, default=str), {"cfg": flat, "runs": []})
        g["runs"].append((cfg.get("seed"), val, seconds_per_epoch(info.get("summary") or {})))
    keys = sorted({k for g in groups.values() for k in g["cfg"]})
    differ = [k for k in keys if len({json.dumps(g["cfg"].get(k), default=str)
                                      for g in groups.values()}) > 1]
    rows = []
    for g in groups.values():
        label = ", ".join(f"{k}={g['cfg'][k]}" for k in differ if g["cfg"].get(k) is not None) or \
            f"{g['cfg'].get('rule') or g['cfg'].get('algorithm')} on {g['cfg'].get('dataset')}"
        warn_copies(label, [s for s, _, _ in g["runs"]])
        vals = [v for _, v, _ in g["runs"]]
        secs = [s for _, _, s in g["runs"] if s]
        rows.append({"run": label, "seeds": sorted(s for s, _, _ in g["runs"]), "metric": vals[0][0],
                     "epochs": max(v[3] for v in vals), "last": _mean_std([v[1] for v in vals]),
                     "best": _mean_std([v[2] for v in vals]),
                     "s_per_epoch": sum(secs) / len(secs) if secs else math.nan})
    return rows


def warn_copies(label: str, seeds: list):
    """One line on stderr when runs of one configuration share a seed: they are copies of one
    run, not replicates, so their spread says nothing about the seed-to-seed variation."""
    shared = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
    if shared:
        print(f"simkit summary: warning: {label}: {len(seeds)} runs share seed "
              f"{', '.join(map(str, shared))} and their configuration (copies, not replicates: "
              "the ± is not a spread over seeds)", file=sys.stderr)


def _fmt(ms, pct):
    m, s = ms
    scale = 100.0 if pct else 1.0
    if pct:
        return f"{m * scale:.2f}%" + ("" if math.isnan(s) else f" ± {s * scale:.2f}")
    return f"{m:.5g}" + ("" if math.isnan(s) else f" ± {s:.2g}")


def run(args) -> int:
    rows = collect(find_runs(args.runs), args.metric, args.split, args.unfinished)
    if not rows:
        raise UserError("no finished runs with that metric among the paths given")
    print(f"| run | seeds | epochs | {args.split} last | {args.split} best | s/epoch |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        pct = r["metric"] == "acc"
        print(f"| {r['run']} | {','.join(map(str, r['seeds']))} | {r['epochs']} | "
              f"{r['metric']} {_fmt(r['last'], pct)} | {_fmt(r['best'], pct)} | {r['s_per_epoch']:.2f} |")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["run", "seeds", "epochs", "metric", "split", "last_mean", "last_std",
                        "best_mean", "best_std", "s_per_epoch"])
            for r in rows:
                w.writerow([r["run"], " ".join(map(str, r["seeds"])), r["epochs"], r["metric"],
                            args.split, *r["last"], *r["best"], r["s_per_epoch"]])
    return 0
