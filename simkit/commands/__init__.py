"""Subcommands of ``simkit``: each module has ``register(subparsers, parent)``."""
