"""Where data files live, finding them, and reading them (gzip or raw) with one-line errors."""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from simkit.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


class MissingDataError(DataError):
    """Some files of a data set are not in any of the folders searched."""


def resolve_data_dir(data_dir=None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$SIMKIT_DATA``, else ``./data``.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Explicit folder (e.g. from ``--data-dir``). ``None`` or ``""`` means not given.

    Returns
    -------
    pathlib.Path
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("SIMKIT_DATA", "")
    if env:
        return Path(env).expanduser()
    return Path.cwd() / "data"


def one_line(text) -> str:
    """Collapse whitespace (including newlines) so a message fits on one line."""
    return " ".join(str(text).split())


def search_dirs(root: Path, folders) -> list[Path]:
    """The folders searched for a data set: each named subfolder of ``root``, then ``root``."""
    return [root / f for f in folders] + [root]


def missing_message(name: str, root: Path, folders, missing, hint: str = "") -> str:
    """One line: which files are missing, where we looked, and how to get them."""
    where = ", ".join(str(d) for d in search_dirs(root, folders))
    return (f"{name}: missing {', '.join(missing)}{hint}; searched {where}; "
            f"run `simkit data fetch {name}`, or put the files in {root / folders[0]}, or set "
            f"--data-dir / SIMKIT_DATA to the folder that holds {folders[0]}/")


def locate(name: str, data_dir, folders, files: dict, hint: str = "") -> dict:
    """Find every file of a data set.

    Parameters
    ----------
    name : str
        Data set name (for messages).
    data_dir : path or None
        See :func:`resolve_data_dir`.
    folders : sequence of str
        Subfolders of the data dir to search, in order; the data dir itself is searched last.
    files : dict
        Logical key -> tuple of accepted file names, canonical name first (e.g. the ``.gz``
        and the uncompressed spelling).
    hint : str
        Appended to the list of missing names in the error message.

    Returns
    -------
    dict
        Logical key -> path of the first accepted name found.

    Raises
    ------
    MissingDataError
        Naming every missing file, the folders searched and how to get the files.
    """
    root = resolve_data_dir(data_dir)
    dirs = search_dirs(root, folders)
    found, missing = {}, []
    for key, names in files.items():
        hit = next((d / n for d in dirs for n in names if (d / n).is_file()), None)
        if hit is None:
            missing.append(names[0])
        else:
            found[key] = hit
    if missing:
        raise MissingDataError(missing_message(name, root, folders, missing, hint))
    return found


def read_file(path: Path) -> tuple[bytes, bytes]:
    """Read a file and undo gzip compression if it is gzipped.

    Returns
    -------
    raw, content : bytes
        The bytes on disk and the decompressed bytes (the same object when not gzipped).

    Raises
    ------
    DataError
        If the file cannot be read, or is a broken or truncated gzip stream.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({one_line(exc.strerror or exc)})") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            return raw, gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: broken or truncated gzip file ({one_line(exc)}); delete it "
                            "and download it again") from None
    if path.suffix == ".gz":
        raise DataError(f"{path}: not a gzip file (no gzip header) although it is named .gz; "
                        "delete it and download it again")
    return raw, raw
