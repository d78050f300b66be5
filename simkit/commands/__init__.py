"""Subcommands of ``simkit``.

Every module here that defines ``register(subparsers, parent)`` is a subcommand; ``parent`` is
the parser of the common options (``--backend``, ``--data-dir``, ``--progress``, ``--quiet``),
to pass as ``parents=[parent]``. A module that runs a paper's own command line also defines
``PAPER_COMMAND``, a one-line description shown by ``simkit list commands``.
"""
import importlib
import pkgutil


def command_modules() -> list:
    """The subcommand modules, in name order."""
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "register"):
            mods.append(mod)
    return mods
