"""Download the official files of a data set, verify their checksums, then move them in place.

Nothing is written under its final name before its checksum matches: each download goes to a
hidden ``.part`` file in the target folder and is renamed only after the MD5/SHA-256 check. A
mismatch or a network error removes the partial file and raises a one-line DataError.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from simkit.data.paths import one_line, resolve_data_dir
from simkit.data.registry import DATASETS, canonical_name
from simkit.data.sources import SOURCES
from simkit.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60


def _temp(folder: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    os.close(fd)
    return Path(tmp)


def _download(url: str, folder: Path, name: str, progress: bool):
    """Download ``url`` into a temporary file in ``folder``. Returns (path, md5, sha256)."""
    from tqdm import tqdm
    tmp = _temp(folder, name)
    md5, sha = hashlib.md5(), hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(tmp, "wb") as out:
            size = resp.headers.get("Content-Length")
            with tqdm(total=int(size) if size else None, unit="B", unit_scale=True,
                      unit_divisor=1024, desc=name, disable=not progress) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    sha.update(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
        tmp.unlink(missing_ok=True)
        reason = one_line(getattr(exc, "reason", None) or exc)
        raise DataError(f"could not download {url}: {reason}; download it by hand into "
                        f"{folder}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, md5.hexdigest(), sha.hexdigest()


def _verify(tmp: Path, spec: dict, md5: str, sha: str, url: str, folder: Path):
    for kind, got in (("md5", md5), ("sha256", sha)):
        want = spec.get(kind)
        if want and got != want.lower():
            tmp.unlink(missing_ok=True)
            raise DataError(f"checksum mismatch for {url}: {kind} {got}, expected {want}; the "
                            f"download was removed; try again or download it by hand into {folder}")


def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _extract_member(fobj, folder: Path, name: str, expect_md5=None, what="") -> Path:
    """Copy an archive member to ``folder/name`` via a temporary file (checked if md5 given)."""
    tmp, h = _temp(folder, name), hashlib.md5()
    try:
        with open(tmp, "wb") as out:
            while chunk := fobj.read(CHUNK):
                out.write(chunk)
                h.update(chunk)
        if expect_md5 and h.hexdigest() != expect_md5:
            raise DataError(f"checksum mismatch for {what}: md5 {h.hexdigest()}, expected "
                            f"{expect_md5}; nothing was written; download it by hand into {folder}")
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return folder / name


def _unpack(archive: Path, spec: dict, folder: Path, url: str) -> list[Path]:
    try:
        if spec["extract"] == "tar":
            dest = folder / spec["into"]
            dest.mkdir(parents=True, exist_ok=True)
            out = []
            with tarfile.open(archive, "r:*") as tar:
                # only known plain files, written under their base name: no path tricks
                for m in tar.getmembers():
                    base = posixpath.basename(m.name)
                    if m.isfile() and base in spec["members"]:
                        out.append(_extract_member(tar.extractfile(m), dest, base))
            missing = sorted(set(spec["members"]) - {p.name for p in out})
            if missing:
                raise DataError(f"{url}: the archive lacks {', '.join(missing)}; not the official "
                                "archive")
            return out
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if posixpath.basename(n) == spec["member"]]
            if not names:
                raise DataError(f"{url}: the zip holds no {spec['member']}; not the official "
                                "archive")
            with zf.open(names[0]) as member:
                return [_extract_member(member, folder, spec["member"], spec.get("member_md5"),
                                        f"{spec['member']} in {url}")]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"{url}: cannot unpack the archive ({one_line(exc)}); download it by "
                        f"hand into {folder}") from None


def fetch(name: str, data_dir=None, progress: bool = True) -> list[Path]:
    """Download the official files of data set ``name`` into the data dir.

    Parameters
    ----------
    name : str
        A file-based data set (a key of :data:`simkit.data.sources.SOURCES`).
    data_dir : path, optional
        See :func:`resolve_data_dir`; files go to its subfolder for the set (e.g. ``mnist/``).
    progress : bool
        Show a tqdm progress bar per file.

    Returns
    -------
    list of pathlib.Path
        The files now in place. A plain file already present with the canonical checksum is
        kept and not downloaded again.
    """
    key = canonical_name(name)
    if key not in SOURCES:
        raise DataError(f"{key} needs no download (it is synthetic or ships with a package); "
                        f"data sets to fetch: {', '.join(k for k in DATASETS if k in SOURCES)}")
    entry = SOURCES[key]
    folder = resolve_data_dir(data_dir) / entry["folder"]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {folder} ({one_line(exc.strerror or exc)}); choose "
                        "another folder with --data-dir or SIMKIT_DATA") from None
    out = []
    for spec in entry["files"]:
        url, final = spec["url"], folder / spec["name"]
        if "extract" not in spec and spec.get("md5") and final.is_file() \
                and _md5_file(final) == spec["md5"]:
            out.append(final)
            continue
        tmp, md5, sha = _download(url, folder, spec["name"], progress)
        _verify(tmp, spec, md5, sha, url, folder)
        if "extract" in spec:
            try:
                out += _unpack(tmp, spec, folder, url)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, final)
            out.append(final)
    return out
