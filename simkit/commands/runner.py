"""Run a resolved configuration in a run directory (shared by every training subcommand)."""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from simkit.backend import get_backend
from simkit.commands.options import apply_divergence_flag
from simkit.errors import UserError
from simkit.training.config import build, load_splits, resolve_config
from simkit.training.epochs import Trainer
from simkit.training.rundir import RunDir

#: The folder every command writes its run directories into unless ``--out-dir`` names one.
RUNS = Path("runs")


def default_out_dir(cfg, label=None) -> Path:
    """``runs/DATE-TIME_LABEL_DATASET_sSEED``: the default run directory of every command; LABEL
    is the rule for ``simkit train``, the command (and its variant) for a paper's command line."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return RUNS / f"{stamp}_{label or cfg['rule']}_{cfg['dataset']}_s{cfg['seed']}"


def progress_setting(args):
    """None: bars only on a terminal; True: always; False: never."""
    if getattr(args, "quiet", False):
        return False
    return True if getattr(args, "progress", None) else None


def add_checkpoint_option(p):
    """``--checkpoint-minutes``: checkpoints inside long epochs too (not part of the run's config,
    so a resumed run may change it)."""
    p.add_argument("--checkpoint-minutes", dest="checkpoint_minutes", type=_minutes, default=10.0,
                   metavar="MIN",
                   help="also checkpoint inside an epoch after this many minutes since the last "
                        "save, so a Ctrl-C loses at most that much (default: %(default)s; 0: epoch "
                        "ends only)")


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UserError(f"--checkpoint-minutes must be a number >= 0, got {text!r}")
    return value


def resume_command(args, out_dir) -> str:
    """The command line that continues this run: the paper commands' own ``--resume`` (which
    keeps their settings, e.g. run_dfc's one BLAS thread), else ``simkit train --resume``."""
    d = shlex.quote(str(out_dir))
    cmd = getattr(args, "command", None)
    if cmd in ("run_bp", "run_dfc", "run_dfc_single_phase"):
        return f"simkit {cmd} --resume --out_dir {d}"
    return f"simkit train --resume {d}"


def execute(cfg: dict, out_dir, *, resume=False, args=None, on_batch=None, extra_info=None):
    """Train ``cfg`` in ``out_dir`` (a new run, or ``resume`` the one there: its stored
    configuration, checked against ``args`` by :func:`stored_run`); returns the summary."""
    run = RunDir(out_dir)
    if resume:
        command = getattr(args, "command", None)
        paper = command if command in ("run_bp", "run_dfc", "run_dfc_single_phase") else None
        _, cfg, epochs = stored_run(out_dir, paper, args, flags_key=paper and "paper_flags")
        if epochs is not None:
            cfg["epochs"] = epochs
    else:
        run.check_new()
    apply_divergence_flag(cfg, args)
    bk = get_backend(cfg["backend"], cfg["dtype"])
    splits, ds = load_splits(bk, cfg)
    net, rule, opt, loss, streams = build(bk, cfg, ds, n_train=len(splits["train"]),
                                          train=splits["train"])
    quiet = bool(getattr(args, "quiet", False))
    minutes = getattr(args, "checkpoint_minutes", None)
    trainer = Trainer(bk, cfg, net, rule, opt, loss, splits, run=run,
                      shuffle_seed=int(streams[1].generate_state(1)[0]),
                      progress=progress_setting(args), log=None if quiet else print,
                      on_batch=on_batch,
                      checkpoint_seconds=60.0 * minutes if minutes else None)
    if args is not None:
        args.resume_hint = resume_command(args, out_dir)
    trainer.start(resume, cfg, data={"name": ds.name, "task": ds.task,
                                     "n_train": len(splits["train"]), "n_test": len(splits["test"]),
                                     "n_val": len(splits["val"]) if "val" in splits else 0,
                                     "meta": {k: str(v) for k, v in ds.meta.items()}},
                  **(extra_info or {}))
    if resume and not quiet:
        print(f"simkit: resuming {out_dir} after epoch {trainer.epoch}", file=sys.stderr)
    return fit_and_report(trainer, out_dir, quiet)


def fit_and_report(trainer, out_dir, quiet: bool, after_fit=None) -> dict:
    """Run ``trainer.fit()``, then ``after_fit()`` (a command's own closing lines) and, unless
    ``quiet``, the one-line summary; returns the summary."""
    summary = trainer.fit()
    if after_fit is not None:
        after_fit()
    if not quiet:
        print(format_summary(summary, out_dir))
    return summary


# options outside a run's configuration: a resume may give them other values
RESUME_FREE = frozenset({"resume", "load", "out_dir", "backend", "data_dir", "threads", "progress",
                         "quiet", "checkpoint_minutes", "divergence_factor"})


def stored_run(path, command, args, *, flags_key=None, epochs_dest="epochs",
               free=()) -> tuple[dict, dict, int | None]:
    """``(run.json, configuration, epochs)`` of the run in ``path`` to resume (``command``: the
    ``simkit COMMAND`` that must have made it, or None for any): the options given with the
    resume are checked by :func:`check_resume` against the run's configuration and its
    ``run.json[flags_key]`` (the command's own flags); ``epochs``: the value of ``epochs_dest``
    where it was given, else None; ``--backend`` overrides the stored backend."""
    info = RunDir(path).read_info()
    if command is not None and info.get("paper_command") != command:
        raise UserError(f"{path} is not a 'simkit {command}' run; use simkit train --resume")
    cfg = resolve_config(info["config"])
    flags = info.get(flags_key) if flags_key else None
    stored = {**info["config"], **(flags or {})}
    epochs = check_resume(path, args, stored, epochs_dest, free)
    if getattr(args, "backend", None):
        cfg["backend"] = args.backend
    return info, cfg, epochs


def check_resume(path, args, stored: dict, epochs_dest: str, free=()) -> int | None:
    """Refuse (one line listing them) the options given with a resume whose values differ from
    the run's ``stored`` ones, except :data:`RESUME_FREE`, ``free`` and ``epochs_dest``; returns
    the value given for ``epochs_dest`` (the run goes on to that many epochs), or None."""
    given = given_options(args)
    run = {dest: _show(stored[dest]) if dest in stored else "not recorded" for dest in given}
    differ = [f"{flag} {_show(getattr(args, dest))} (run: {run[dest]})"
              for dest, flag in given.items()
              if dest not in RESUME_FREE | set(free) | {epochs_dest}
              and _show(getattr(args, dest)) != run[dest]]
    if differ:
        raise UserError(f"cannot resume {path} with other settings: {'; '.join(differ)}; resume "
                        "without them (only the epochs may change), or start a new run")
    return getattr(args, epochs_dest) if epochs_dest in given else None


def command_flags(args) -> dict:
    """The command's options as ``run.json`` records them (what :func:`check_resume` compares)."""
    skip = ("func", "command", "resume_hint")
    return {k: json.loads(json.dumps(v, default=str)) for k, v in vars(args).items()
            if k not in skip and not callable(v)}


def _show(value) -> str:
    """``value`` as the command line or ``run.json`` writes it (what :func:`check_resume`
    compares)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def given_options(args) -> dict:
    """``{dest: flag}`` of the options typed on ``args``' command line, defaults left out
    (:func:`simkit.commands.options.given_options`, which :func:`simkit.cli.main` hands over as
    ``args.given_options``); empty without a command line (a library call)."""
    given = getattr(args, "given_options", None)
    return given() if given is not None else {}


def format_summary(summary: dict, out_dir) -> str:
    keys = [k for k in summary if k.startswith(("acc_", "loss_"))]
    parts = [f"{k} {100 * summary[k]:.2f}%" if k.startswith("acc_") else f"{k} {summary[k]:.4g}"
             for k in keys if summary[k] is not None]
    if "avg_time_per_epoch" in summary:
        parts.append(f"{summary['avg_time_per_epoch']:.2f} s/epoch")
    return f"done: {', '.join(parts)}; results in {out_dir}"


def parse_number_or_list(text, what):
    """``'0.1'`` -> 0.1; ``'[0.1,0.2]'`` or ``'0.1,0.2'`` -> [0.1, 0.2] (DFC's per-layer lists)."""
    from simkit.errors import UserError
    s = str(text).strip().strip("[]").replace(" ", "")
    try:
        vals = [float(v) for v in s.split(",") if v]
    except ValueError:
        raise UserError(f"{what} must be a number or a list of numbers like [0.1,0.2], got {text!r}") from None
    if not vals:
        raise UserError(f"{what} is empty")
    return vals[0] if len(vals) == 1 else vals


def parse_sizes(text, what="size_hidden"):
    from simkit.errors import UserError
    s = str(text).strip().strip("[]").replace(" ", "")
    try:
        sizes = [int(v) for v in s.split(",") if v]
    except ValueError:
        raise UserError(f"{what} must be comma-separated positive integers like 256,256, got {text!r}") from None
    if any(n < 1 for n in sizes):
        raise UserError(f"{what} must be positive integers, got {text!r}")
    return sizes


