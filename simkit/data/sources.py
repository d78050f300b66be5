"""Where the official files come from, and the checksums that identify the canonical copies.

:data:`SOURCES` is the download table used by :func:`simkit.data.fetch`; tests replace its URLs
with ``file://`` URLs. Each entry has the target ``folder`` (relative to the data dir) and a list
of ``files``; a file has a ``name``, a ``url`` and an ``md5`` or ``sha256`` of the downloaded
file. An archive has ``extract`` (``"tar"`` or ``"zip"``): a tar is unpacked into its ``into``
folder; from a zip only the ``member`` is kept, checked against ``member_md5``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_KMNIST = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/"
_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_files(base, md5s):
    return [{"name": f"{n}.gz", "url": f"{base}{n}.gz", "md5": m} for n, m in zip(_IDX, md5s)]


SOURCES = {
    # MD5s of the gzip files: torchvision's MNIST / FashionMNIST resource lists; KMNIST from CODH.
    "mnist": {"folder": "mnist", "files": _idx_files(_MNIST, (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))},
    "fashion_mnist": {"folder": "fashion-mnist", "files": _idx_files(_FASHION, (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))},
    "kmnist": {"folder": "kmnist", "files": _idx_files(_KMNIST, (
        "bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
        "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134"))},
    "cifar10": {"folder": "", "files": [{
        "name": "cifar-10-binary.tar.gz",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "md5": "c32a1d4ab5d03f1284b67883e8d87530", "extract": "tar", "into": "cifar-10-batches-bin",
        "members": ("data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                    "data_batch_5.bin", "test_batch.bin", "batches.meta.txt")}]},
    "wine_quality": {"folder": "wine-quality", "files": [
        {"name": "winequality-red.csv", "url": _UCI + "wine-quality/winequality-red.csv",
         "md5": "2daeecee174368f8a33b82c8cccae3a5"},
        {"name": "winequality-white.csv", "url": _UCI + "wine-quality/winequality-white.csv",
         "md5": "5d9ff0f7f716dace19e3ab4578775fd7"}]},
    "sgemm": {"folder": "sgemm", "files": [{
        "name": "sgemm_product_dataset.zip", "url": _UCI + "00440/sgemm_product_dataset.zip",
        "extract": "zip", "member": "sgemm_product.csv",
        "member_md5": "7f81f8e6b587ac17bef127fba8098e72"}]},
}

# MD5 of the *uncompressed* canonical files, so that a re-compressed (or gunzipped) copy whose
# content is canonical is recognised. MNIST/Fashion-MNIST: the published MD5s of the extracted
# IDX files; wine and SGEMM: the files as the UCI repository distributes them.
CONTENT_MD5 = {
    "mnist": {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
              "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
              "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
              "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"},
    "fashion_mnist": {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                      "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                      "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                      "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"},
    "wine_quality": {"winequality-red.csv": "2daeecee174368f8a33b82c8cccae3a5",
                     "winequality-white.csv": "5d9ff0f7f716dace19e3ab4578775fd7"},
    "sgemm": {"sgemm_product.csv": "7f81f8e6b587ac17bef127fba8098e72"},
}

CANONICAL = "canonical"                  # the file's own checksum matches
CANONICAL_CONTENT = "canonical content"  # re-compressed or uncompressed, content matches
NON_CANONICAL = "non-canonical"          # a reference checksum exists and differs
UNVERIFIED = "unverified"                # no reference checksum for this file


def file_status(name: str, path: Path, raw: bytes, content: bytes) -> str:
    """Compare a file (already read) with the canonical checksums of data set ``name``.

    Returns one of :data:`CANONICAL`, :data:`CANONICAL_CONTENT`, :data:`NON_CANONICAL`,
    :data:`UNVERIFIED`. The structure of the file is checked by the loaders, not here.
    """
    fname = Path(path).name
    base = fname[:-3] if fname.endswith(".gz") else fname
    known = {f["name"]: f.get("md5") for f in SOURCES.get(name, {}).get("files", [])}
    content_md5 = CONTENT_MD5.get(name, {}).get(base)
    if known.get(fname) and hashlib.md5(raw).hexdigest() == known[fname]:
        return CANONICAL
    if content_md5 and hashlib.md5(content).hexdigest() == content_md5:
        return CANONICAL if raw is content else CANONICAL_CONTENT
    if known.get(fname) or content_md5 or known.get(base + ".gz"):
        return NON_CANONICAL
    return UNVERIFIED
