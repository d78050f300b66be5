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


#: The figure scripts, in the source tree's ``figures/`` folder (they are not installed with the
#: package): script -> what it draws. Each runs as ``python figures/SCRIPT``, with ``--quick`` for
#: a check in a minute or less and ``--help`` for its options.
FIGURES = {
    "dfc_table.py": "Meulemans et al. 2021/2022: MNIST test accuracy of DFC, Strong-DFC and "
                    "Strong-DFC 2-phase, simkit vs the papers",
    "fig3_linear_regression.py": "Podlaski & Machens 2020, Fig. 3a-f: linear regression "
                                 "30-20-10 with BP, FA, PBP, NDI and DI",
    "fig3_nonlinear_regression.py": "Podlaski & Machens 2020, Fig. 3g-k: nonlinear regression "
                                    "30-20-10-10 (tanh) with BP, FA, PBP, NDI, DI and SDI",
    "fig4a_mnist.py": "Podlaski & Machens 2020, Fig. 4a: MNIST classification 784-1000-10 with "
                      "BP, FA, PBP and NDI",
    "fig4b_autoencoder.py": "Podlaski & Machens 2020, Fig. 4b: MNIST autoencoder "
                            "784-500-250-30-250-500-784 with BP, FA, PBP and NDI",
    "gait_curves.py": "Ahmad et al. 2020 (GAIT-prop): MNIST test error of BP, GAIT-prop and TP, "
                      "simkit vs original",
}


def figures_folder():
    """The source tree's ``figures/`` folder beside the package, or None (an installed copy)."""
    from pathlib import Path
    folder = Path(__file__).resolve().parents[2] / "figures"
    return folder if folder.is_dir() else None


def figures_note() -> str:
    """Where the figure scripts are and how to run one."""
    folder = figures_folder()
    where = str(folder) if folder else ("the source tree's figures/ folder (not installed with "
                                         "the package)")
    return f"  scripts: {where}; run one as: python figures/SCRIPT --quick (a check) or --help"


def listing(args) -> int:
    from simkit.commands import command_modules
    from simkit.data import DATASETS
    from simkit.rules import RULES
    papers = {m.__name__.rsplit(".", 1)[1]: m.PAPER_COMMAND for m in command_modules()
              if hasattr(m, "PAPER_COMMAND")}
    sections = {
        "rules": {k: v[0] for k, v in RULES.items()},
        "datasets": DATASETS,
        "figures": {f"figures/{k}": v for k, v in FIGURES.items()},
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
        if name == "figures":
            print(figures_note())
    return 0
