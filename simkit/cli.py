"""The ``simkit`` command: subcommands, global options, and one-line errors.

``simkit train``     train a network with any rule on any data set (``--resume DIR`` continues)
``simkit run_bp``    the strong_dfc ``run_bp.py`` command line, verbatim
``simkit list``      rules, data sets, figures and paper commands
``simkit info``      backend, device, versions, data found
``simkit data``      ``fetch NAME`` / ``check``

Bad input prints one line, ``simkit: error: ...``, and exits with status 2. Ctrl-C exits with
status 130 (SIGTERM: 143) after saying how to resume. Output into a pipe that closes early
(``simkit list rules | head -1``) ends quietly with status 141 (128 + SIGPIPE), as Unix tools do.
"""
from __future__ import annotations

import argparse
import os
import sys

from simkit.commands.options import Parser, common_options, given_options
from simkit.errors import UserError
from simkit.training.signals import Terminated, sigterm_as_interrupt


def build_parser() -> Parser:
    from simkit.commands import command_modules
    from simkit.data import register_cli as register_data

    parser = Parser(prog="simkit",
                    description="simkit: biologically plausible credit assignment, written out "
                                "explicitly on NumPy/CuPy (no autograd).",
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="Run 'simkit COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parent = common_options()
    for module in command_modules():
        module.register(sub, parent)
    register_data(sub_with_parent(sub, parent))
    return parser


def sub_with_parent(sub, parent):
    """A view of ``sub`` whose ``add_parser`` adds the common options (for other modules)."""
    class _Sub:
        def add_parser(self, name, **kw):
            kw.setdefault("parents", [parent])
            return sub.add_parser(name, **kw)
    return _Sub()


def _version() -> str:
    from simkit import __version__
    return f"simkit {__version__}"


def main(argv=None) -> int:
    parsed = []                       # the parsed arguments, for the resume hint
    try:
        with sigterm_as_interrupt():
            return _run(argv, parsed)
    except KeyboardInterrupt as exc:
        hint = getattr(parsed[0], "resume_hint", None) if parsed else None
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"\nsimkit: {what}" + (f"; resume with: {hint}" if hint else ""), file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        return _closed_pipe()


def _run(argv, parsed: list) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UserError as exc:          # raised by a flag's own type check
        print(f"simkit: error: {exc}", file=sys.stderr)
        return 2
    parsed.append(args)
    args.given_options = lambda: given_options(parser, argv)     # for resume checks
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "threads", None) is not None:
            from simkit.backend import limit_threads
            limit_threads(args.threads)
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"simkit: error: {exc}", file=sys.stderr)
        return 2


def _closed_pipe() -> int:
    """The reader of stdout has gone: send what is left to devnull (so that Python's own flush
    at exit does not fail again) and exit with 141 = 128 + SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":
    sys.exit(main())
