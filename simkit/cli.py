"""The ``simkit`` command: subcommands, global options, and one-line errors.

``simkit train``     train a network with any rule on any data set (``--resume DIR`` continues)
``simkit run_bp``    the strong_dfc ``run_bp.py`` command line, verbatim
``simkit list``      rules, data sets, figures and paper commands
``simkit info``      backend, device, versions, data found
``simkit data``      ``fetch NAME`` / ``check``

Bad input prints one line, ``simkit: error: ...``, and exits with status 2. Ctrl-C exits with
status 130 after saying how to resume.
"""
from __future__ import annotations

import argparse
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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UserError as exc:          # raised by a flag's own type check
        print(f"simkit: error: {exc}", file=sys.stderr)
        return 2
    args.given_options = lambda: given_options(parser, argv)     # for resume checks
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "threads", None) is not None:
            from simkit.backend import limit_threads
            limit_threads(args.threads)
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except UserError as exc:
        print(f"simkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        hint = getattr(args, "resume_hint", None)
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"\nsimkit: {what}" + (f"; resume with: {hint}" if hint else ""), file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
