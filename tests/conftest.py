"""Test configuration: ``tests/`` is put on ``sys.path`` so that every test module imports the
shared helpers one way, ``from helpers import ...``, whatever pytest's import mode."""
import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
