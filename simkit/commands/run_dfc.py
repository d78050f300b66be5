"""``simkit run_dfc``: strong_dfc's ``run_dfc.py`` command line, verbatim, with its defaults.

Meulemans et al. 2021/2022 (``mariacer/strong_dfc``, research note ../shared/research/dfc.md).
Two-phase DFC: every epoch runs one noisy feedback ("sleep") epoch, the forward epoch, and
``--extra_fb_epochs`` more sleep epochs; ``--init_fb_epochs`` sleep epochs pre-train the feedback
weights first. ``--strong_feedback --ss`` is two-phase Strong-DFC. The options shared with
``run_bp`` (data, split, Adam betas 0.99, per-layer clipping, float32 unless
``--double_precision``) come from :mod:`simkit.commands.run_bp`.

``--ssa`` is DFC-SSA, the linearised steady state solved directly (the original's crashes on
torch 2: ``torch.solve`` is gone). ``--low_pass_filter_u``, ``--include_only_converged_samples``
(with ``--epsilon_di``) and ``--use_jacobian_as_fb`` run on the readable reference loop
(:mod:`simkit.dynamics.controller`); ``--use_jacobian_as_fb`` with ``--noisy_dynamics``, which
crashes the original, is refused with a message. ``--compute_jacobian_at`` is accepted and has no
effect, as in the original (it stores the value and never reads it).
Any ``--save_*`` flag or ``--compare_with_ndi`` turns on the per-epoch diagnostics (condition 2,
angles to BP, GN, DFC-SSA and H per layer, the feedback-to-feed-forward drive ratio, the distance
to the SSA output, the control norm) in metrics.csv; ``--save_df`` alone does too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from simkit.commands.options import SWITCH, add_table, simkit_group
from simkit.commands.run_bp import INITIALIZATIONS, add_dfc_common, add_simkit_options, dfc_config
from simkit.commands.runner import (
    command_flags,
    default_out_dir,
    execute,
    parse_number_or_list,
)
from simkit.errors import UserError
from simkit.rules.dfc_options import DEFAULT, help_text
from simkit.training.config import resolve_config

PAPER_COMMAND = "strong_dfc run_dfc.py (Meulemans et al. 2021/2022): DFC, two-phase Strong-DFC"
FLAGS = ("ss", "ssa", "noisy_dynamics", "low_pass_filter_noise", "strong_feedback",
         "error_as_loss_grad", "pretrain_without_controller", "freeze_fb_weights",
         "freeze_fb_weights_output", "scaling_fb_updates", "inst_system_dynamics",
         "proactive_controller", "inst_transmission", "inst_transmission_fb", "use_bp_updates",
         "low_pass_filter_u", "include_only_converged_samples", "use_jacobian_as_fb")
FLOATS = ("weight_decay_fb", "adam_beta1_fb", "adam_beta2_fb", "tau_noise", "target_stepsize",
          "sigma_init", "tau_f", "dt_di", "time_constant_ratio", "sigma", "sigma_output",
          "alpha_di", "k_p", "apical_time_constant", "dt_di_fb", "time_constant_ratio_fb",
          "sigma_fb", "sigma_output_fb", "alpha_di_fb", "k_p_fb", "epsilon_di")
INTS = ("init_fb_epochs", "extra_fb_epochs", "tmax_di", "tmax_di_fb")
SAVE = ("save_df", "save_fb_statistics_init", "save_bp_angle", "save_H_angle", "save_lu_loss",
        "save_ratio_ff_fb", "save_condition_fb", "save_ndi_angle", "compare_with_ndi")


OPTIMIZERS = ("SGD", "RMSprop", "Adam")
#: run_dfc.py's options beyond run_bp's that are not a DFCOptions field of the same name and
#: default (those take their help from :func:`~simkit.rules.dfc_options.help_text`).
DFC_OWN = (
    ("--freeze_fw_weights", False, SWITCH, "the forward weights do not learn (the epochs still "
                                           "run)"),
    ("--lr_fb", "0.1", str, help_text("lr_fb")),
    ("--lr_fb_init", None, str, "learning rate of the feedback pre-training (default: --lr_fb)"),
    ("--optimizer_fb", None, OPTIMIZERS, "optimiser of the feedback weights (default: "
                                         "--optimizer)"),
    ("--momentum_fb", None, float, "momentum of SGD or RMSprop on the feedback weights (default: "
                                   "--momentum)"),
    ("--adam_epsilon_fb", "1e-8", str, help_text("adam_epsilon_fb")),
    ("--initialization_fb", "xavier_normal", (*INITIALIZATIONS, "weight_product"),
     help_text("initialization_fb")),
    ("--learning_rule", "nonlinear_difference", ("nonlinear_difference", "voltage_difference"),
     help_text("learning_rule")),
    ("--normalize_lr", False, SWITCH, "the forward learning rate is lr / target_stepsize"),
    ("--compute_jacobian_at", "ss", ("ss", "average_ss", "full_trajectory"),
     "has no effect, as in the original (which stores it and never reads it)"),
)
SIMKIT_DFC = (  # simkit's own DFC options
    ("--noise_stream", DEFAULT.noise_stream, ("counter", "numpy"),
     "the normals of the noisy phases: counter (5x faster) or numpy (NumPy's generator)"),
    ("--highpass_start", DEFAULT.highpass_start, ("first", "zero"),
     "where the single phase's low pass of u starts: first (the original's: at the first "
     "control) or zero"),
)


def dfc_table(names, kind) -> tuple:
    """Option-table rows of DFCOptions fields: their defaults and help (:func:`help_text`)."""
    return tuple((f"--{f}", getattr(DEFAULT, f), kind, help_text(f)) for f in names)


def add_dfc_options(p, single_phase=False):
    """The options of run_dfc.py / run_dfc_single_phase.py beyond run_bp's."""
    add_dfc_common(p)
    add_table(p, DFC_OWN)
    add_table(simkit_group(p), SIMKIT_DFC)
    add_table(p, dfc_table(FLAGS, SWITCH) + dfc_table(FLOATS, float) + dfc_table(INTS, int))
    if single_phase:              # not an option of run_dfc_single_phase.py: the default (dt_di_fb)
        p.set_defaults(apical_time_constant_fb=DEFAULT.apical_time_constant_fb)
    else:
        add_table(p, dfc_table(("apical_time_constant_fb",), float))
    add_table(p, tuple((f"--{f}", False, SWITCH, "turns on the diagnostics in metrics.csv")
                       for f in SAVE))


def rule_options(args, cfg, single_phase=False) -> dict:
    """The DFC rule's options from the parsed flags, as run.json stores them (a dict of
    :class:`~simkit.rules.dfc_options.DFCOptions` fields; the rule post-processes them)."""
    if args.compute_jacobian_at != "ss":            # stored by the original, read nowhere
        print(f"simkit: --compute_jacobian_at={args.compute_jacobian_at} has no effect, as in the "
              "original (which stores it and never reads it); the diagnostics take J at the "
              "feed-forward state", file=sys.stderr)
    o = {f: getattr(args, f) for f in FLAGS}
    o.update({f: getattr(args, f) for f in (*FLOATS, *INTS, "apical_time_constant_fb")})
    o["learning_rule"], o["noise_stream"] = args.learning_rule, args.noise_stream
    o["highpass_start"] = args.highpass_start
    o["initialization_fb"] = "xavier_uniform" if args.initialization_fb == "xavier" \
        else args.initialization_fb
    o["lr_fb"] = parse_number_or_list(args.lr_fb, "--lr_fb")
    o["lr_fb_init"] = None if args.lr_fb_init is None else \
        parse_number_or_list(args.lr_fb_init, "--lr_fb_init")
    o["adam_epsilon_fb"] = parse_number_or_list(args.adam_epsilon_fb, "--adam_epsilon_fb")
    o["optimizer_fb"] = args.optimizer_fb or args.optimizer
    o["momentum_fb"] = args.momentum if args.momentum_fb is None else args.momentum_fb
    o["clip_grad_norm"] = args.clip_grad_norm
    o["single_phase"] = single_phase
    o["classification"] = cfg["loss"] == "ce"
    o["diagnostics"] = any(getattr(args, f) for f in SAVE)
    if args.test:
        o["init_fb_epochs"] = min(o["init_fb_epochs"], 1)
        o["extra_fb_epochs"] = min(o["extra_fb_epochs"], 1)
    o["fb_schedule"] = {"batch_size": cfg["batch_size"], "max_batches": 2 if args.test else 0}
    return o


def build_config(args, single_phase=False) -> dict:
    """The simkit configuration of a run_dfc(_single_phase) command line."""
    if args.strong_feedback and args.target_class_value == 1:
        args.target_class_value = 0.99                         # the original's post-processing
    cfg = dfc_config(args)
    cfg.setdefault("dataset_opts", {})
    cfg["rule"] = "dfc"
    cfg["rule_opts"] = rule_options(args, cfg, single_phase)
    if args.normalize_lr:
        lr = cfg["lr"]
        cfg["lr"] = [v / args.target_stepsize for v in lr] if isinstance(lr, list) \
            else lr / args.target_stepsize
    if args.freeze_fw_weights:
        cfg["lr"] = 0.0
    return cfg


def limit_blas_threads():
    """One BLAS thread unless OMP/OPENBLAS_NUM_THREADS say otherwise: the controller's products
    are too small to share between threads, and a second BLAS thread slows them down."""
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS"):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    from simkit.backend import load_blas
    load_blas()                        # SciPy's too (Numba's np.dot), before the limit
    return threadpool_limits(1, user_api="blas")


def register(sub, parent):
    p = sub.add_parser("run_dfc", parents=[parent], help="strong_dfc's run_dfc.py, verbatim",
                       description=__doc__.split("\n\n")[0])
    add_dfc_options(p)
    add_simkit_options(p)
    p.set_defaults(func=lambda args: run(args, single_phase=False))


def run(args, single_phase=False) -> int:
    limit_blas_threads()
    out_dir = Path(args.out_dir) if args.out_dir else None
    if args.resume:
        if not args.out_dir:
            raise UserError("--resume needs --out_dir naming the run to continue")
        execute({}, out_dir, resume=True, args=args)
        return 0
    cfg = resolve_config(build_config(args, single_phase))
    name = "run_dfc_single_phase" if single_phase else "run_dfc"
    execute(cfg, out_dir or default_out_dir(cfg, name), args=args,
            extra_info={"paper_command": name, "paper_flags": command_flags(args)})
    return 0
