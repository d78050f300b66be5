"""``simkit run_dfc_single_phase``: strong_dfc's ``run_dfc_single_phase.py``, verbatim.

Single-phase Strong-DFC (Meulemans et al. 2022, arXiv 2204.07249): the forward simulation is
always noisy (Ornstein-Uhlenbeck noise, instantaneous apical compartment) and the feedback
weights learn from the high-passed control of that same simulation on every minibatch; only
``--init_fb_epochs`` of feedback pre-training run separately. Flags and defaults are
run_dfc.py's (:mod:`simkit.commands.run_dfc`); ``--ss`` and ``--extra_fb_epochs`` are accepted
and ignored, as the original warns.
"""
from __future__ import annotations

import sys

from simkit.commands.run_bp import add_simkit_options
from simkit.commands.run_dfc import add_dfc_options, run

PAPER_COMMAND = "strong_dfc run_dfc_single_phase.py (Meulemans et al. 2022): Strong-DFC"


def register(sub, parent):
    p = sub.add_parser("run_dfc_single_phase", parents=[parent],
                       help="strong_dfc's run_dfc_single_phase.py, verbatim",
                       description=__doc__.split("\n\n")[0])
    add_dfc_options(p, single_phase=True)
    add_simkit_options(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    if args.ss or args.extra_fb_epochs:
        print("simkit: --ss and --extra_fb_epochs have no effect in the single phase "
              "(as in the original)", file=sys.stderr)
    args.ss, args.extra_fb_epochs = False, 0
    return run(args, single_phase=True)
