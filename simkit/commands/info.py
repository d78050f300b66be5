"""``simkit info`` (backend, device, versions, data found) and ``simkit list``."""
from __future__ import annotations

from simkit.backend import get_backend, versions


def register(sub, parent):
    p = sub.add_parser("info", parents=[parent], help="backend, device, versions and data found")
    p.set_defaults(func=info)
    p = sub.add_parser("list", parents=[parent], help="rules, data sets, figures and paper commands")
    p.add_argument("what", nargs="?", choices=("rules", "datasets", "figures", "commands"),
                   help="list only this")
    p.set_defaults(func=listing)


def info(args) -> int:
    from simkit import __version__
    from simkit.data import check, resolve_data_dir
    bk = get_backend(args.backend, announce=False)
    print(f"simkit {__version__}")
    print(f"backend: {bk.describe()} [{bk.reason}]")
    print("versions: " + ", ".join(f"{k} {v or '-'}" for k, v in versions().items()))
    print(f"data dir: {resolve_data_dir(args.data_dir)}")
    for name, status, message in check(args.data_dir):
        print(f"  {name:<16} {status:<8} {message}")
    return 0


def figures() -> dict:
    """Figure scripts in the checkout's figures/ folder: name -> first docstring paragraph."""
    import ast
    from pathlib import Path

    from simkit.figure import first_paragraph
    folder = Path(__file__).resolve().parents[2] / "figures"
    out = {}
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        out[f"figures/{path.name}"] = first_paragraph(doc)
    return out


def listing(args) -> int:
    from simkit.commands import command_modules
    from simkit.data import DATASETS
    from simkit.rules import RULES
    papers = {m.__name__.rsplit(".", 1)[1]: m.PAPER_COMMAND for m in command_modules()
              if hasattr(m, "PAPER_COMMAND")}
    sections = {
        "rules": {k: v[0] for k, v in RULES.items()},
        "datasets": DATASETS,
        "figures": figures(),
        "commands": papers,
    }
    for name, items in sections.items():
        if args.what and args.what != name:
            continue
        print(f"{name}:")
        width = max((len(k) for k in items), default=0)
        for key, text in items.items():
            print(f"  {key:<{width}}  {text}")
        if not items:
            print("  (none yet)")
    return 0
