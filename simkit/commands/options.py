"""What every subcommand's parser shares: one-line errors with exit status 2, and the common
options (``--backend``, ``--data-dir``, ``--progress``, ``--quiet``, ``--threads``)."""
from __future__ import annotations

import argparse
import copy
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
    g.add_argument("--quiet", action="store_true", help="no progress bars, no per-epoch lines")
    g.add_argument("--threads", type=int, default=None,
                   help="BLAS/Numba threads (default: all cores; 1 avoids oversubscription on a "
                        "busy machine)")
    return p


def given_options(parser: argparse.ArgumentParser, argv) -> dict:
    """``{dest: flag}`` of the options that ``argv`` gives, leaving out those that keep their
    default (what a resumed run compares with its stored settings): ``argv`` parsed again by a
    copy of ``parser`` whose defaults are suppressed."""
    parser = copy.deepcopy(parser)
    subs = {name: p for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for name, p in a.choices.items()}
    for p in [parser, *subs.values()]:
        p._defaults.clear()
        for action in p._actions:
            action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    chosen = subs.get(given.pop("command", None), parser)
    flags = {a.dest: a.option_strings[0] for a in chosen._actions if a.option_strings}
    return {dest: flags[dest] for dest in given if dest in flags}
