"""MNIST-format (IDX) data sets: MNIST, Fashion-MNIST and Kuzushiji-MNIST.

An IDX file starts with the magic number ``00 00 TT NN`` (TT the element type, 0x08 for
unsigned bytes; NN the number of dimensions), then NN big-endian uint32 sizes, then the data.
Every header field and the file length are checked, so a truncated or foreign file raises a
:class:`~simkit.errors.DataError` instead of giving a wrong array.
"""
from __future__ import annotations

import struct

import numpy as np

from simkit.data.dataset import Dataset
from simkit.data.paths import locate, read_file
from simkit.data.sources import file_status
from simkit.errors import DataError

FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
FOLDERS = {"mnist": ("mnist", "MNIST/raw"), "fashion_mnist": ("fashion-mnist", "FashionMNIST/raw"),
           "kmnist": ("kmnist", "KMNIST/raw")}
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
          0x0D: "float32", 0x0E: "float64"}


def parse_idx(content: bytes, path, ndim: int, what: str) -> np.ndarray:
    """Parse an unsigned-byte IDX file with ``ndim`` dimensions (no copy of the data).

    Parameters
    ----------
    content : bytes
        The uncompressed file.
    path : path
        For messages.
    ndim : int
        Expected number of dimensions (3 for images, 1 for labels).
    what : str
        ``"images"`` or ``"labels"``, for messages.

    Returns
    -------
    numpy.ndarray
        A read-only uint8 view of shape given by the header.
    """
    n = len(content)
    want = 0x0800 | ndim
    if n < 4:
        raise DataError(f"{path}: only {n} bytes, too short for an IDX file; it is truncated")
    magic = int.from_bytes(content[:4], "big")
    if content[0] or content[1]:
        raise DataError(f"{path}: bad IDX magic number 0x{magic:08X} (expected 0x{want:08X} for "
                        f"{what}); not an IDX file, or corrupt")
    if content[2] != 0x08:
        kind = _TYPES.get(content[2], "unknown")
        raise DataError(f"{path}: IDX data type code 0x{content[2]:02X} ({kind}); {what} must be "
                        "0x08 (unsigned byte)")
    if content[3] != ndim:
        raise DataError(f"{path}: IDX magic 0x{magic:08X} says {content[3]} dimensions; {what} "
                        f"need {ndim} (magic 0x{want:08X})")
    header = 4 + 4 * ndim
    if n < header:
        raise DataError(f"{path}: IDX header truncated ({n} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", content[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    body = n - header
    if body != count:
        why = "truncated" if body < count else f"{body - count} trailing bytes"
        raise DataError(f"{path}: IDX header says {' x '.join(map(str, dims))} = {count} bytes of "
                        f"{what} but the file holds {body} ({why}); download it again")
    return np.frombuffer(content, np.uint8, count, header).reshape(dims)


def read_pair(images_path, images: bytes, labels_path, labels: bytes, n_classes=N_CLASSES):
    """Parse and cross-check an images file and its labels file.

    Returns
    -------
    images : numpy.ndarray
        uint8 ``[N, 28, 28]``.
    labels : numpy.ndarray
        int64 ``[N]`` with values in ``0..n_classes-1``.
    """
    x = parse_idx(images, images_path, 3, "images")
    if x.shape[1:] != IMAGE_SHAPE or x.shape[0] == 0:
        raise DataError(f"{images_path}: holds {x.shape[0]} images of {x.shape[1]}x{x.shape[2]}; "
                        f"expected at least one image of {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}")
    y = parse_idx(labels, labels_path, 1, "labels")
    if len(y) != len(x):
        raise DataError(f"{labels_path}: holds {len(y)} labels but {images_path.name} holds "
                        f"{len(x)} images; the two files do not belong together")
    bad = np.flatnonzero(y >= n_classes)
    if bad.size:
        raise DataError(f"{labels_path}: label {int(y[bad[0]])} at index {int(bad[0])} is out of "
                        f"range 0..{n_classes - 1} ({bad.size} such labels); the file is corrupt")
    return x, y.astype(np.int64)


def _read(name: str, data_dir):
    """Locate, read and validate the four files. Returns (arrays, statuses, folder)."""
    files = {k: (f"{f}.gz", f) for k, f in FILES.items()}
    paths = locate(name, data_dir, FOLDERS[name], files, hint=" (gzipped or not)")
    arrays, status = {}, {}
    for part in ("train", "test"):
        ip, lp = paths[f"{part}_images"], paths[f"{part}_labels"]
        iraw, icontent = read_file(ip)
        lraw, lcontent = read_file(lp)
        arrays[part] = read_pair(ip, icontent, lp, lcontent)
        status[ip.name] = file_status(name, ip, iraw, icontent)
        status[lp.name] = file_status(name, lp, lraw, lcontent)
    return arrays, status, paths["train_images"].parent


def verify(name: str, data_dir=None):
    """Validate the files of ``name`` without converting them. Returns (folder, {file: status})."""
    _, status, folder = _read(name, data_dir)
    return folder, status


def load_idx(name: str, data_dir=None) -> Dataset:
    """Load ``mnist``, ``fashion_mnist`` or ``kmnist``: pixels / 255 in [0, 1], flattened to 784."""
    arrays, status, folder = _read(name, data_dir)
    out = {}
    for part, (images, labels) in arrays.items():
        x = images.reshape(len(images), -1).astype(np.float64)
        x /= 255.0
        out[f"x_{part}"], out[f"y_{part}"] = x, labels
    meta = {"source": str(folder), "format": "idx", "files": status,
            "canonical": all(s.startswith("canonical") for s in status.values()),
            "preprocessing": "pixels / 255 as float64 in [0, 1], 28x28 flattened row-major to 784"}
    return Dataset(name, "classification", n_classes=N_CLASSES, meta=meta, **out)
