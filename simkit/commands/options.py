"""What every subcommand's parser shares: one-line errors with exit status 2, and the common
options (``--backend``, ``--data-dir``, ``--progress``, ``--quiet``, ``--threads``,
``--divergence-factor`` / ``--no-divergence-check``)."""
from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (what is wrong, and where to look) and exit status 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes (kebab-case, simkit's own)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("simkit options")
    g.add_argument("--backend", choices=("auto", "numpy", "numba", "cupy"), default=None,
                   help="array backend (default: SIMKIT_BACKEND, else auto: cupy > numba > numpy)")
    g.add_argument("--data-dir", default=None,
                   help="folder with the data sets (default: SIMKIT_DATA, else ./data)")
    g.add_argument("--progress", action="store_true", default=None,
                   help="show progress bars even when output is not a terminal")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bars or lines, no per-epoch lines")
    g.add_argument("--threads", type=int, default=None,
                   help="BLAS/Numba threads (default: all cores; 1 avoids oversubscription on a "
                        "busy machine)")
    g.add_argument("--divergence-factor", dest="divergence_factor", type=float, default=None,
                   metavar="F",
                   help="stop a training run (status failed, last good checkpoint kept) when a "
                        "loss exceeds F times its value before training (default 10; <= 0: "
                        "off); also accepted with --resume")
    g.add_argument("--no-divergence-check", dest="divergence_factor", action="store_const",
                   const=0.0, help="no such bound (NaN or infinite losses still stop the run)")
    return p


def apply_divergence_flag(cfg: dict, args) -> dict:
    """``cfg`` with ``--divergence-factor`` / ``--no-divergence-check`` applied where given (a
    new run stores it; a resumed one may change it)."""
    value = getattr(args, "divergence_factor", None)
    if value is not None:
        cfg["divergence_factor"] = value
    return cfg
