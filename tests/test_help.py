"""Every command's help: each option has help text that shows its default, one "simkit options"
heading, the papers' spellings next to simkit's (``--out-dir``, ``-threads``), f3's usage."""
import argparse

import pytest

from simkit.cli import build_parser
from simkit.commands.options import SIMKIT_OPTIONS

PAPER_COMMANDS = ("run_bp", "run_dfc", "run_dfc_single_phase", "f3", "bdfa", "gait")


def subparsers() -> dict:
    """``simkit``'s subcommand parsers by name."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


PARSERS = subparsers()


def options(parser):
    """The parser's options, without -h/--help."""
    return [a for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def shown_help(parser, action) -> str:
    """The help line of ``action`` as ``--help`` prints it (before wrapping)."""
    return parser._get_formatter()._expand_help(action)


def test_paper_commands_are_registered():
    assert set(PAPER_COMMANDS) <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_that_shows_its_default(name):
    parser = PARSERS[name]
    for action in options(parser):
        flag = action.option_strings[0]
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {flag}: no help"
        text = shown_help(parser, action)
        if action.required or action.default is None:
            continue                                  # nothing to show, or the help says it
        switch = action.nargs == 0 and action.const is True
        shown = "off" if switch else str(action.default)
        assert f"(default: {shown}" in text, f"{name} {flag}: {text!r}"


@pytest.mark.parametrize("name", PAPER_COMMANDS)
def test_options_without_a_value_explain_their_absence(name):
    """An option whose default is None (not given) says what happens then, or is a path/run to
    name (``--out_dir``, ``--resume``, ...): its help has ``(default: ...)`` or names a run."""
    parser = PARSERS[name]
    for action in options(parser):
        if action.default is None and not action.required and action.nargs != 0:
            text = shown_help(parser, action)
            assert "(default: " in text or "run" in text or "not supported" in text, \
                f"{name} {action.option_strings[0]}: {text!r}"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_renders_with_one_simkit_options_heading(name):
    text = PARSERS[name].format_help()
    assert text.count(f"{SIMKIT_OPTIONS}:") <= 1, text


def test_f3_usage_shows_depth_and_width_as_required():
    usage = PARSERS["f3"].format_usage()
    assert "--depth N --width N --epochs N" in usage and "[--depth" not in usage
    assert "--resume DIR" in usage


@pytest.mark.parametrize("name,flag,dest", [
    ("train", "--out-dir", "out_dir"), ("f3", "--out-dir", "out_dir"),
    ("run_bp", "--out-dir", "out_dir"), ("run_bp", "--out_dir", "out_dir"),
    ("run_dfc", "--out-dir", "out_dir"), ("run_dfc_single_phase", "--out-dir", "out_dir"),
    ("gait", "--out-dir", "out_dir"), ("gait", "--out_dir", "out_dir"),
    ("bdfa", "--out-dir", "save"), ("bdfa", "-save", "save"),
])
def test_every_training_command_takes_out_dir(name, flag, dest):
    argv = [name, flag, "somewhere"] + (["--epochs", "1"] if name == "f3" else [])
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == "somewhere"


def test_bdfa_threads_is_one_option_in_both_spellings():
    parser = PARSERS["bdfa"]
    assert parser._option_string_actions["-threads"] is parser._option_string_actions["--threads"]
    for spelling in ("-threads", "--threads"):
        assert build_parser().parse_args(["bdfa", spelling, "3"]).threads == 3
    assert build_parser().parse_args(["bdfa"]).threads is None
