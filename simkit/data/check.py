"""``check``: which file-based data sets are present, intact and canonical."""
from __future__ import annotations

from functools import partial

from simkit.data import cifar, idx, uci
from simkit.data.paths import MissingDataError, one_line
from simkit.data.sources import CANONICAL, CANONICAL_CONTENT, NON_CANONICAL, UNVERIFIED
from simkit.errors import DataError

VERIFIERS = {
    "mnist": partial(idx.verify, "mnist"),
    "fashion_mnist": partial(idx.verify, "fashion_mnist"),
    "kmnist": partial(idx.verify, "kmnist"),
    "cifar10": cifar.verify,
    "wine_quality": uci.verify_wine,
    "sgemm": uci.verify_sgemm,
}

_WORDS = {
    CANONICAL: "canonical checksum",
    CANONICAL_CONTENT: "canonical content (re-compressed or unpacked copy)",
    NON_CANONICAL: "non-canonical local copy, header and shape valid",
    UNVERIFIED: "structure valid, no published checksum per file",
}


def _summary(folder, status: dict) -> str:
    groups = {}
    for fname, st in status.items():
        groups.setdefault(st, []).append(fname)
    parts = []
    for st in (CANONICAL, CANONICAL_CONTENT, NON_CANONICAL, UNVERIFIED):
        files = groups.get(st, [])
        if not files:
            continue
        named = f"{len(files)} files" if len(files) > 2 else ", ".join(files)
        parts.append(f"{_WORDS[st]}: {named}")
    return f"{folder}: " + "; ".join(parts)


def check(data_dir=None) -> list[tuple[str, str, str]]:
    """Check every file-based data set in the data dir.

    Every file found is fully parsed (headers, lengths, labels, CSV columns) and its checksum is
    compared with the canonical one.

    Returns
    -------
    list of (name, status, message)
        ``status`` is ``"ok"`` (all files valid; the message says which are canonical and which
        are valid non-canonical local copies), ``"missing"`` (some files absent; the message
        names them and how to get them) or ``"corrupt"`` (the message says what is wrong).
    """
    rows = []
    for name, verify in VERIFIERS.items():
        try:
            folder, status = verify(data_dir=data_dir)
        except MissingDataError as exc:
            rows.append((name, "missing", one_line(exc)))
        except DataError as exc:
            rows.append((name, "corrupt", one_line(exc)))
        else:
            rows.append((name, "ok", _summary(folder, status)))
    return rows
