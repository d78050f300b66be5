"""What every subcommand's parser shares: one-line errors with exit status 2, help that shows each
option's default, the common options (``--backend``, ``--data-dir``, ``--progress``, ``--quiet``,
``--threads``, ``--divergence-factor`` / ``--no-divergence-check``) and option tables (the papers'
command lines)."""
from __future__ import annotations

import argparse
import copy
import sys

SIMKIT_OPTIONS = "simkit options"      # the help's heading of simkit's own options
SWITCH = "switch"                      # an option table's kind of a flag without value (default off)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default, ``(default: X)``, unless the help says it
    already (``%(default)s`` or its own ``(default: ...)``); a switch's default is ``off``; nothing
    is added for a required option or a default of None (the help says what None means)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or action.required or action.default is argparse.SUPPRESS \
                or "(default" in text or "%(default)" in text:
            return text
        if action.nargs == 0 and action.const is True:            # store_true
            return f"{text} (default: off)"
        if action.default is None:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (what is wrong, and where to look), exit status 2, and
    :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def common_options(threads_aliases=()) -> argparse.ArgumentParser:
    """Options every subcommand takes (kebab-case, simkit's own); ``threads_aliases``: other
    spellings of ``--threads`` (bdfa-torch's ``-threads``)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group(SIMKIT_OPTIONS)
    g.add_argument("--backend", choices=("auto", "numpy", "numba", "cupy"), default=None,
                   help="array backend (default: SIMKIT_BACKEND, else auto: cupy > numba > numpy)")
    g.add_argument("--data-dir", default=None,
                   help="folder with the data sets (default: SIMKIT_DATA, else ./data)")
    g.add_argument("--progress", action="store_true", default=None,
                   help="show progress bars even when output is not a terminal")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bars or lines, no per-epoch lines")
    g.add_argument("--threads", *threads_aliases, dest="threads", type=int, default=None,
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


def simkit_group(p):
    """The parser's "simkit options" group (from :func:`common_options`), where a command adds
    its own options, so that the help has one such heading."""
    return next(g for g in p._action_groups if g.title == SIMKIT_OPTIONS)


def add_table(p, table):
    """Add the options of ``table``, rows ``(flags, default, kind, help[, more])``: ``flags`` one
    spelling or a tuple (the first names the value), ``kind`` a type, :data:`SWITCH` or a tuple
    of choices, ``more`` further ``add_argument`` keywords (``nargs``, ``required``)."""
    for flags, default, kind, text, *more in table:
        flags = (flags,) if isinstance(flags, str) else tuple(flags)
        dest = flags[0].lstrip("-").replace("-", "_")
        kw = {"dest": dest, "help": text, **(more[0] if more else {})}
        if kind == SWITCH:
            p.add_argument(*flags, action="store_true", **kw)
        elif isinstance(kind, tuple):
            p.add_argument(*flags, default=default, choices=kind, **kw)
        else:
            p.add_argument(*flags, default=default, type=kind, **kw)


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
