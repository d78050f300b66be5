"""``simkit train``: any rule on any data set, with simkit's own (kebab-case) flags."""
from __future__ import annotations

import ast

from simkit.commands.runner import (
    add_checkpoint_option,
    default_out_dir,
    execute,
    parse_number_or_list,
    parse_sizes,
)
from simkit.errors import UserError
from simkit.rules import make_rule
from simkit.training.config import DEFAULTS, resolve_config

CLIP_MODES = ("per_layer", "global")
#: Rules that need a network or a schedule of their own: ``simkit train`` refuses them before it
#: writes anything, naming the command that runs them.
OWN_COMMAND = {
    "gait": ("invertible networks", "simkit gait --algorithm GAIT"),
    "tp": ("invertible networks", "simkit gait --algorithm TP"),
    "inv_bp": ("invertible networks", "simkit gait --algorithm BP"),
    "dfc": ("its feedback (sleep) phases and controller dynamics",
            "simkit run_dfc (DFC, two-phase Strong-DFC) or simkit run_dfc_single_phase "
            "(Strong-DFC)"),
}

# flag -> (config key, type, help)
FLAGS = {
    "--rule": ("rule", str, "learning rule (see simkit list)"),
    "--dataset": ("dataset", str, "data set (see simkit list); mnist5k needs no download"),
    "--hidden": ("hidden", parse_sizes, "hidden widths, e.g. 256,256"),
    "--activation": ("hidden_activation", str, "hidden nonlinearity: tanh, relu, sigmoid, leaky_relu, linear"),
    "--loss": ("loss", str, "ce (softmax cross-entropy), mse or bce"),
    "--init": ("init", str, "weight initialiser, e.g. xavier_normal, orthogonal"),
    "--epochs": ("epochs", int, "number of epochs"),
    "--batch-size": ("batch_size", int, "minibatch size"),
    "--optimizer": ("optimizer", str, "sgd, adam or rmsprop"),
    "--lr": ("lr", lambda s: parse_number_or_list(s, "--lr"), "learning rate, or one per layer"),
    "--momentum": ("momentum", float, "SGD momentum"),
    "--beta1": ("beta1", float, "Adam beta1"),
    "--beta2": ("beta2", float, "Adam beta2"),
    "--eps": ("eps", lambda s: parse_number_or_list(s, "--eps"), "Adam/RMSprop epsilon"),
    "--weight-decay": ("weight_decay", float, "coupled L2 weight decay"),
    "--clip": ("clip", float, "max gradient norm (<= 0: off)"),
    "--clip-mode": ("clip_mode", str, f"{' or '.join(CLIP_MODES)}"),
    "--val-size": ("val_size", int, "training samples held out for validation"),
    "--standardize": ("standardize", str, "none, mnist or dataset"),
    "--target-value": ("target_value", float, "true-class target value (soft targets below 1)"),
    "--seed": ("seed", int, "run seed"),
    "--dtype": ("dtype", str, "float64 or float32"),
    "--max-batches": ("max_batches", int, "stop each epoch after N minibatches (quick checks)"),
}


def register(sub, parent):
    p = sub.add_parser("train", parents=[parent], help="train a network with any rule",
                       description="Train a network with a learning rule; every run writes "
                                   "run.json, metrics.csv and a checkpoint to its run directory.")
    for flag, (key, typ, text) in FLAGS.items():
        p.add_argument(flag, dest=key, type=typ, default=None,
                       help=f"{text} (default: {DEFAULTS[key]})")
    add_checkpoint_option(p)
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help="set any configuration key, e.g. --set rule_opts={'...':1} (default: none)")
    p.add_argument("--out-dir", default=None,
                   help="run directory (default: runs/DATE-TIME_RULE_DATASET_sSEED)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run in DIR (its run.json gives the settings)")
    p.set_defaults(func=run)


def parse_set(items) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def refuse_early(cfg):
    """One-line errors, before any file is written, for what would fail only once training runs."""
    if cfg["rule"] in OWN_COMMAND:
        needs, command = OWN_COMMAND[cfg["rule"]]
        raise UserError(f"rule {cfg['rule']!r} needs {needs}, which simkit train does not build; "
                        f"run it with {command}")
    if cfg["clip_mode"] not in CLIP_MODES:
        raise UserError(f"unknown clipping mode {cfg['clip_mode']!r}; allowed: "
                        f"{', '.join(CLIP_MODES)}")
    try:
        make_rule(cfg["rule"], **cfg["rule_opts"])
    except TypeError as exc:                    # an option the rule does not take
        raise UserError(f"rule_opts of rule {cfg['rule']!r}: {exc}") from None


def run(args) -> int:
    if args.resume:
        execute({}, args.resume, resume=True, args=args)
        return 0
    overrides = {key: getattr(args, key) for key, *_ in FLAGS.values()
                 if getattr(args, key) is not None}
    overrides.update(parse_set(args.set or ()))
    if args.backend:
        overrides["backend"] = args.backend
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    cfg = resolve_config(overrides)
    refuse_early(cfg)
    execute(cfg, args.out_dir or default_out_dir(cfg), args=args)
    return 0
