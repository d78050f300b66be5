"""``simkit data fetch NAME`` and ``simkit data check``."""
from __future__ import annotations

import argparse
import sys


def register_cli(subparsers) -> None:
    """Add the ``data`` command (``fetch NAME``, ``check``) to an argparse subparsers object.

    Each action sets ``func`` to a handler ``handler(args) -> int``. The handlers read
    ``args.data_dir`` (``None`` when not given); ``--data-dir`` is also accepted after the
    action.
    """
    from simkit.data.sources import SOURCES
    p = subparsers.add_parser("data", help="download (fetch NAME) or check the data sets",
                              description="Download or check the file-based data sets.")
    p.set_defaults(func=lambda args: _no_action(p))
    actions = p.add_subparsers(dest="data_action", metavar="ACTION")
    f = actions.add_parser("fetch", help="download a data set's official files and verify them",
                           description="Download the official files, verify their checksums "
                                       "and move them into the data dir.")
    f.add_argument("name", help="data set: " + ", ".join(SOURCES))
    c = actions.add_parser("check", help="which data sets are present, intact and canonical",
                           description="Parse every data file found and compare checksums; "
                                       "exit status 2 if any file is corrupt.")
    for q in (f, c):
        q.add_argument("--data-dir", default=argparse.SUPPRESS,
                       help="folder with the data sets (default: SIMKIT_DATA, else ./data)")
    f.set_defaults(func=fetch_command)
    c.set_defaults(func=check_command)


def _no_action(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def fetch_command(args) -> int:
    """Handler of ``simkit data fetch NAME``: prints the files now in place."""
    from simkit.data.fetch import fetch
    progress = not getattr(args, "quiet", False)
    for path in fetch(args.name, getattr(args, "data_dir", None), progress=progress):
        print(path)
    return 0


def check_command(args) -> int:
    """Handler of ``simkit data check``: a table; 0 unless some file is corrupt (then 2)."""
    from simkit.data.check import check
    from simkit.data.paths import resolve_data_dir
    rows = check(getattr(args, "data_dir", None))
    print(f"data dir: {resolve_data_dir(getattr(args, 'data_dir', None))}")
    width = max(len(r[0]) for r in rows)
    for name, status, message in rows:
        print(f"  {name:<{width}}  {status:<7}  {message}")
    return 2 if any(r[1] == "corrupt" for r in rows) else 0
