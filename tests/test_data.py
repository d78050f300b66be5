"""Tests of simkit.data: loaders on small files in the real formats, corrupt files, downloads from
file:// URLs, checks, the CLI, and (when SIMKIT_DATA holds them) the real data sets."""
import argparse
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from simkit import data
from simkit.data import cifar, sources, uci
from simkit.errors import DataError, UserError

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------- writers of the real formats
def idx_bytes(arr, code=0x08):
    arr = np.asarray(arr, np.uint8)
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write(path, content, gz=False):
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def make_idx_set(folder, n_train=6, n_test=4, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train)),
              "test": (rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test))}
    for (img, lbl), (x, y) in zip((IDX_NAMES[:2], IDX_NAMES[2:]), arrays.values()):
        write(Path(folder) / img, idx_bytes(x), gz)
        write(Path(folder) / lbl, idx_bytes(y), gz)
    return arrays


def make_cifar_bin(folder, n=3, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name in (*cifar.TRAIN_BIN, cifar.TEST_BIN):
        labels, pixels = rng.integers(0, 10, n), rng.integers(0, 256, (n, 3072))
        rec = np.column_stack([labels, pixels]).astype(np.uint8)
        write(Path(folder) / name, rec.tobytes())
        out[name] = (pixels, labels)
    return out


WINE_HEADER = ";".join(f'"{c}"' for c in uci.WINE_COLUMNS)


def wine_rows(rng, n):
    rows = []
    for _ in range(n):
        vals = [f"{v:.3g}" for v in rng.uniform(0.1, 20, 11)] + [str(rng.integers(3, 9))]
        rows.append(";".join(vals))
    return rows


def make_wine(folder, n_red=6, n_white=9, seed=0):
    rng = np.random.default_rng(seed)
    for color, n in (("red", n_red), ("white", n_white)):
        write(Path(folder) / f"winequality-{color}.csv",
              ("\n".join([WINE_HEADER, *wine_rows(rng, n)]) + "\n").encode())


def make_sgemm(folder, n=10, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    table = np.column_stack([rng.integers(1, 100, (n, 14)), rng.uniform(10, 900, (n, 4)).round(2)])
    lines = [",".join(uci.SGEMM_COLUMNS)] + [",".join(f"{v:g}" for v in row) for row in table]
    write(Path(folder) / "sgemm_product.csv", ("\n".join(lines) + "\n").encode(), gz)
    return table


def one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# ---------------------------------------------------------------- paths, registry
def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMKIT_DATA", str(tmp_path / "env"))
    assert data.resolve_data_dir(tmp_path / "x") == tmp_path / "x"
    assert data.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("SIMKIT_DATA")
    monkeypatch.chdir(tmp_path)
    assert data.resolve_data_dir() == tmp_path / "data"


def test_unknown_name_and_option():
    with pytest.raises(DataError) as e:
        data.load("imagenet")
    one_line_error(e, "imagenet", "mnist", "student_teacher", "sgemm")
    with pytest.raises(DataError) as e:
        data.load("linear_regression", n_trian=5)
    one_line_error(e, "n_trian", "n_train")
    assert set(data.DATASETS) == {"mnist", "fashion_mnist", "kmnist", "cifar10", "mnist5k",
                                  "wine_quality", "sgemm", "linear_regression",
                                  "nonlinear_regression", "student_teacher"}


# ---------------------------------------------------------------- IDX
@pytest.mark.parametrize("name,folder", [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist"),
                                         ("kmnist", "kmnist"), ("mnist", "MNIST/raw"),
                                         ("mnist", ".")])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_loader(tmp_path, name, folder, gz):
    arrays = make_idx_set(tmp_path / folder, gz=gz)
    ds = data.load(name.replace("_", "-"), tmp_path)
    assert ds.name == name and ds.task == "classification" and ds.n_classes == 10
    assert ds.x_train.shape == (6, 784) and ds.x_test.shape == (4, 784)
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    assert ds.n_in == 784 and ds.n_out == 10
    np.testing.assert_array_equal(ds.x_train, arrays["train"][0].reshape(6, 784) / 255.0)
    np.testing.assert_array_equal(ds.y_test, arrays["test"][1])
    assert set(ds.meta["files"].values()) == {"non-canonical"} and not ds.meta["canonical"]


def _corrupt_idx(tmp, case):
    """Write a valid MNIST set, then break one file; return the broken file's name."""
    folder = tmp / "mnist"
    make_idx_set(folder, gz=False)
    img, lbl = folder / IDX_NAMES[0], folder / IDX_NAMES[1]
    good = img.read_bytes()
    if case == "magic":
        img.write_bytes(b"\x08\x00" + good[2:])
    elif case == "dtype":
        img.write_bytes(good[:2] + b"\x0d" + good[3:])
    elif case == "ndim":
        lbl.write_bytes(idx_bytes(np.zeros((6, 1))))
        return lbl.name
    elif case == "truncated":
        img.write_bytes(good[:-5])
    elif case == "trailing":
        img.write_bytes(good + b"\x00\x00")
    elif case == "short":
        img.write_bytes(good[:10])
    elif case == "gzip":
        img.unlink()
        gz = write(img, good, gz=True)
        gz.write_bytes(gz.read_bytes()[:-20])
        return gz.name
    elif case == "not_gzip":
        img.rename(img.with_name(img.name + ".gz"))
        return img.name + ".gz"
    elif case == "label_range":
        lbl.write_bytes(idx_bytes([1, 2, 10, 3, 4, 5]))
        return lbl.name
    elif case == "count":
        lbl.write_bytes(idx_bytes([1, 2, 3, 4, 5]))
        return lbl.name
    elif case == "size":
        img.write_bytes(idx_bytes(np.zeros((6, 28, 27))))
    return img.name


@pytest.mark.parametrize("case", ["magic", "dtype", "ndim", "truncated", "trailing", "short",
                                  "gzip", "not_gzip", "label_range", "count", "size"])
def test_idx_corrupt(tmp_path, case):
    fname = _corrupt_idx(tmp_path, case)
    with pytest.raises(DataError) as e:
        data.load("mnist", tmp_path)
    one_line_error(e, fname)
    status = dict((n, (s, m)) for n, s, m in data.check(tmp_path))["mnist"]
    assert status[0] == "corrupt" and fname in status[1]


def test_idx_missing_names_files(tmp_path):
    (tmp_path / "mnist").mkdir()
    write(tmp_path / "mnist" / IDX_NAMES[0], idx_bytes(np.zeros((1, 28, 28))), gz=True)
    with pytest.raises(DataError) as e:
        data.load("mnist", tmp_path)
    msg = one_line_error(e, *IDX_NAMES[1:], str(tmp_path / "mnist"), "simkit data fetch mnist",
                         "SIMKIT_DATA")
    assert "train-images-idx3-ubyte.gz," not in msg  # the file that is there is not listed


# ---------------------------------------------------------------- CIFAR-10
def test_cifar_binary(tmp_path):
    written = make_cifar_bin(tmp_path / "cifar-10-batches-bin")
    ds = data.load("cifar10", tmp_path)
    assert ds.x_train.shape == (15, 3072) and ds.x_test.shape == (3, 3072)
    np.testing.assert_array_equal(ds.x_train[:3] * 255, written["data_batch_1.bin"][0])
    np.testing.assert_array_equal(ds.y_train[3:6], written["data_batch_2.bin"][1])
    assert ds.meta["format"] == "binary" and ds.x_train.max() <= 1.0


@pytest.mark.parametrize("case", ["length", "label"])
def test_cifar_binary_corrupt(tmp_path, case):
    folder = tmp_path / "cifar-10-batches-bin"
    make_cifar_bin(folder)
    bad = folder / "data_batch_3.bin"
    content = bytearray(bad.read_bytes())
    if case == "length":
        content = content[:-1]
    else:
        content[cifar.RECORD] = 10
    bad.write_bytes(bytes(content))
    with pytest.raises(DataError) as e:
        data.load("cifar10", tmp_path)
    one_line_error(e, "data_batch_3.bin", "3073" if case == "length" else "label 10")


def write_cifar_py(folder, n=2, protocol=2, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name in (*cifar.TRAIN_PY, cifar.TEST_PY):
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batch = {b"batch_label": b"training batch", b"labels": labels,
                 b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 b"filenames": [b"img%d.png" % i for i in range(n)]}
        write(Path(folder) / name, pickle.dumps(batch, protocol=protocol))
        out[name] = batch
    return out


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_cifar_python_pickles(tmp_path, protocol):
    batches = write_cifar_py(tmp_path / "cifar-10-batches-py", protocol=protocol)
    ds = data.load("cifar10", tmp_path)
    assert ds.meta["format"] == "python pickle" and ds.x_train.shape == (10, 3072)
    np.testing.assert_array_equal(ds.x_test * 255, batches["test_batch"][b"data"])
    np.testing.assert_array_equal(ds.y_train[:2], batches["data_batch_1"][b"labels"])


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_cifar_pickle_refuses_foreign_globals(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_py(folder)
    marker = tmp_path / "pwned"
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": _Evil(marker)}, protocol=2))
    with pytest.raises(DataError) as e:
        data.load("cifar10", tmp_path)
    one_line_error(e, "data_batch_2", "system")
    assert not marker.exists()
    evil = pickle.dumps(_Evil(marker), protocol=0)
    with pytest.raises(DataError):
        cifar.RestrictedUnpickler(io.BytesIO(evil), "x").load()
    assert not marker.exists()


@pytest.mark.parametrize("case", ["truncated", "not_dict", "bad_labels"])
def test_cifar_pickle_malformed(tmp_path, case):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar_py(folder)
    target = folder / "test_batch"
    if case == "truncated":
        target.write_bytes(target.read_bytes()[:100])
    elif case == "not_dict":
        target.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    else:
        batch = {**batches["test_batch"], b"labels": [1, 12]}
        target.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError) as e:
        data.load("cifar10", tmp_path)
    one_line_error(e, "test_batch")


def test_cifar_missing(tmp_path):
    with pytest.raises(DataError) as e:
        data.load("cifar10", tmp_path)
    one_line_error(e, "data_batch_1.bin", "test_batch.bin", "cifar-10-batches-bin",
                   "simkit data fetch cifar10")


# ---------------------------------------------------------------- UCI (F³ preprocessing)
def test_f3_split_matches_sklearn():
    sk = pytest.importorskip("sklearn.model_selection")
    for n in (2, 5, 15, 101, 6497):
        rows = np.arange(n)
        train, test = uci.f3_split(n)
        sk_train, sk_test = sk.train_test_split(rows, test_size=0.2, random_state=1)
        np.testing.assert_array_equal(train, sk_train)
        np.testing.assert_array_equal(test, sk_test)


def test_wine_quality(tmp_path):
    make_wine(tmp_path / "wine-quality")
    raw = data.load("wine_quality", tmp_path, normalize=False)
    ds = data.load("wine_quality", tmp_path)
    assert ds.task == "regression" and ds.n_in == 12 and ds.n_out == 1
    assert len(ds.x_train) == 12 and len(ds.x_test) == 3  # 15 rows, ceil(0.2 * 15) = 3 test
    red = np.loadtxt(tmp_path / "wine-quality/winequality-red.csv", delimiter=";", skiprows=1)
    white = np.loadtxt(tmp_path / "wine-quality/winequality-white.csv", delimiter=";", skiprows=1)
    allx = np.column_stack([np.concatenate([red, white])[:, :11], [0] * 6 + [1] * 9])
    train, test = uci.f3_split(15)
    np.testing.assert_array_equal(raw.x_train, allx[train])
    np.testing.assert_array_equal(raw.y_test[:, 0], np.concatenate([red, white])[test, 11])
    np.testing.assert_allclose(ds.x_train,
                               (raw.x_train - uci.WINE_FEATURE_MEAN) / uci.WINE_FEATURE_STD)
    np.testing.assert_allclose(ds.y_train, (raw.y_train - 5.825476236290167) / 0.8781308165686595)
    assert ds.meta["target_std"] == uci.WINE_TARGET_STD


@pytest.mark.parametrize("case", ["header", "columns", "text", "fields", "quality", "nan"])
def test_wine_corrupt(tmp_path, case):
    make_wine(tmp_path / "wine-quality")
    path = tmp_path / "wine-quality/winequality-white.csv"
    lines = path.read_text().splitlines()
    if case == "header":
        lines[0] = lines[0].replace("alcohol", "alcool")
    elif case == "columns":
        lines = [";".join(line.split(";")[:-1]) for line in lines]
    elif case == "text":
        lines[3] = "abc;" + ";".join(lines[3].split(";")[1:])
    elif case == "fields":
        lines[2] = lines[2] + ";1.0"
    elif case == "quality":
        lines[4] = ";".join(lines[4].split(";")[:-1] + ["5.5"])
    else:
        lines[4] = "nan;" + ";".join(lines[4].split(";")[1:])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        data.load("wine_quality", tmp_path)
    one_line_error(e, "winequality-white.csv")


@pytest.mark.parametrize("gz", [False, True])
def test_sgemm(tmp_path, gz):
    table = make_sgemm(tmp_path / "sgemm", gz=gz)
    raw = data.load("sgemm", tmp_path, normalize=False)
    ds = data.load("sgemm", tmp_path)
    assert raw.x_train.shape == (32, 14) and raw.y_train.shape == (32, 1)  # 8 configs x 4 runs
    assert raw.x_test.shape == (8, 14) and ds.n_in == 14 and ds.n_out == 1
    train, test = uci.f3_split(10)
    for run in range(4):  # the melt: all Run1 rows, then Run2, ...
        np.testing.assert_array_equal(raw.x_train[8 * run:8 * run + 8], table[train, :14])
        np.testing.assert_array_equal(raw.y_train[8 * run:8 * run + 8, 0], table[train, 14 + run])
        np.testing.assert_array_equal(raw.y_test[2 * run:2 * run + 2, 0], table[test, 14 + run])
    np.testing.assert_allclose(ds.x_test,
                               (raw.x_test - uci.SGEMM_FEATURE_MEAN) / uci.SGEMM_FEATURE_STD)
    np.testing.assert_allclose(ds.y_train, (raw.y_train - 217.8314705220405) / 369.30339822069976)


def test_sgemm_pandas_melt_equivalence(tmp_path):
    pd = pytest.importorskip("pandas")
    sk = pytest.importorskip("sklearn.model_selection")
    make_sgemm(tmp_path / "sgemm", n=23)
    df = pd.read_csv(tmp_path / "sgemm/sgemm_product.csv")
    tr, te = sk.train_test_split(df, test_size=0.2, random_state=1)
    ds = data.load("sgemm", tmp_path, normalize=False)
    for part, frame in (("train", tr), ("test", te)):
        melted = frame.melt(id_vars=list(uci.SGEMM_COLUMNS[:14])).drop(columns=["variable"])
        np.testing.assert_array_equal(getattr(ds, f"x_{part}"), melted.to_numpy(float)[:, :14])
        np.testing.assert_array_equal(getattr(ds, f"y_{part}"), melted.to_numpy(float)[:, 14:])


def test_sgemm_corrupt_and_missing(tmp_path):
    make_sgemm(tmp_path / "sgemm")
    path = tmp_path / "sgemm/sgemm_product.csv"
    path.write_text(path.read_text().replace("Run4 (ms)", "Run5 (ms)"))
    with pytest.raises(DataError) as e:
        data.load("sgemm", tmp_path)
    one_line_error(e, "sgemm_product.csv", "header")
    path.unlink()
    with pytest.raises(DataError) as e:
        data.load("sgemm", tmp_path)
    one_line_error(e, "sgemm_product.csv", "simkit data fetch sgemm")


# ---------------------------------------------------------------- mnist5k, synthetic
def test_mnist5k():
    ds = data.load("mnist5k")
    assert ds.x_train.shape == (4000, 784) and ds.x_test.shape == (1000, 784)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_test), [100] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_train), [400] * 10)
    assert not np.all(np.diff(ds.y_train) >= 0)  # shuffled
    again = data.load("mnist5k")
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    rows = {r.tobytes() for r in ds.x_train}
    assert not any(r.tobytes() in rows for r in ds.x_test[:200])


def test_linear_regression():
    ds = data.load("linear_regression")
    assert ds.x_train.shape == (2000, 30) and ds.y_train.shape == (2000, 10)
    (t, b), = ds.meta["teacher"]
    assert t.shape == (10, 30) and np.abs(t).max() <= 1
    np.testing.assert_allclose(ds.y_train, ds.x_train @ t.T)
    np.testing.assert_array_equal(ds.y_test, data.load("linear_regression").y_test)
    other = data.load("linear_regression", n_train=100, n_test=0, seed=1, dims=(5, 3))
    assert other.x_train.shape == (100, 5) and other.x_test.shape == (0, 5) and other.n_out == 3
    assert not np.array_equal(data.load("linear_regression", seed=1).x_train, ds.x_train)


def test_nonlinear_regression():
    ds = data.load("nonlinear_regression", n_train=500, seed=3)
    assert ds.x_train.shape == (500, 30) and ds.y_train.shape == (500, 10)
    layers = ds.meta["teacher"]
    assert [w.shape for w, _ in layers] == [(20, 30), (10, 20), (10, 10)]
    assert max(np.abs(w).max() for lay in layers for w in lay) <= 0.01
    h = np.tanh(ds.x_test @ layers[0][0].T + layers[0][1])
    h = np.tanh(h @ layers[1][0].T + layers[1][1])
    np.testing.assert_allclose(ds.y_test, h @ layers[2][0].T + layers[2][1])
    np.testing.assert_array_equal(ds.y_train, data.load("nonlinear_regression", n_train=500,
                                                        seed=3).y_train)
    assert data.load("nonlinear_regression", n_train=3).x_train.shape == (3, 30)


def test_student_teacher():
    ds = data.load("student_teacher")
    assert ds.x_train.shape == (1000, 10) and ds.y_train.shape == (1000, 2)
    assert ds.x_test.shape == (1000, 10) and ds.meta["x_val"].shape == (1000, 10)
    assert np.abs(ds.x_train).max() <= 1
    seeds = np.random.RandomState(42)  # DFC: test, train, val seeds from RandomState(seed)
    s_test, s_train = seeds.randint(100), seeds.randint(100)
    for x, s in ((ds.x_train, s_train), (ds.x_test, s_test)):
        np.testing.assert_array_equal(x, np.random.RandomState(s).uniform(-1, 1, (1000, 10)))
    (w1, b1), (w2, b2) = ds.meta["teacher"]
    assert w1.shape == (5, 10) and w2.shape == (2, 5) and not b1.any()
    np.testing.assert_allclose(ds.y_test, np.tanh(ds.x_test @ w1.T) @ w2.T)
    alias = data.load("student_teacher", teacher_num_train=20, teacher_num_test=7,
                      teacher_num_val=0, teacher_n_in=4, teacher_n_out=3,
                      teacher_size_hidden="6,6", teacher_linear=True, data_random_seed=5)
    short = data.load("student_teacher", n_train=20, n_test=7, n_val=0, n_in=4, n_out=3,
                      hidden=[6, 6], linear=True, seed=5)
    np.testing.assert_array_equal(alias.y_train, short.y_train)
    assert alias.x_train.shape == (20, 4) and alias.y_test.shape == (7, 3)
    w = np.eye(4)
    for wl, _ in alias.meta["teacher"]:
        w = wl @ w
    np.testing.assert_allclose(alias.y_train, alias.x_train @ w.T)  # linear teacher
    split = data.load("student_teacher", shared_teacher=False)
    np.testing.assert_array_equal(split.y_test, ds.y_test)  # the test teacher is drawn first
    assert not np.allclose(split.y_train, ds.y_train)
    with pytest.raises(DataError) as e:
        data.load("student_teacher", hidden="5,x")
    one_line_error(e, "hidden")


# ---------------------------------------------------------------- helpers
def test_split_validation():
    x, y = np.arange(40.0).reshape(20, 2), np.arange(20)
    xt, yt, xv, yv = data.split_validation(x, y, 5, seed=3)
    assert xt.shape == (15, 2) and xv.shape == (5, 2)
    assert sorted(np.concatenate([yt, yv])) == list(range(20))
    np.testing.assert_array_equal(xv[:, 0], 2 * yv)
    again = data.split_validation(x, y, 5, seed=3)
    np.testing.assert_array_equal(again[3], yv)
    assert not np.array_equal(data.split_validation(x, y, 5, seed=4)[3], yv)
    xt, yt, xv, yv = data.split_validation(x, y, 0, seed=3)
    assert xt is x and yt is y and xv.shape == (0, 2) and yv.shape == (0,)
    with pytest.raises(UserError):
        data.split_validation(x, y, 21, seed=0)


def test_standardize():
    x = np.array([[0.1307, 0.4388]])
    np.testing.assert_allclose(data.standardize(x, 0.1307, 0.3081), [[0.0, 1.0]])
    np.testing.assert_allclose(data.standardize(x, np.array([0, 1]), np.array([1, 2])),
                               [[0.1307, (0.4388 - 1) / 2]])
    with pytest.raises(UserError):
        data.standardize(x, 0.0, 0.0)


# ---------------------------------------------------------------- fetch (file:// URLs only)
@pytest.fixture
def served(tmp_path, monkeypatch):
    """Replace the SOURCES table by file:// URLs of files written under tmp_path/server."""
    server = tmp_path / "server"
    server.mkdir()

    def serve(name, files):
        entries = []
        for spec in files:
            path = server / spec["name"]
            path.write_bytes(spec.pop("content"))
            entries.append({"url": path.as_uri(), **spec})
        monkeypatch.setitem(sources.SOURCES, name, {**sources.SOURCES[name], "files": entries})
    return serve


def test_fetch_good_and_bad_checksum(tmp_path, served):
    content = {n: gzip.compress(idx_bytes(np.zeros((2, 28, 28)) if "images" in n else [1, 2]))
               for n in IDX_NAMES}
    specs = [{"name": f"{n}.gz", "content": c, "md5": hashlib.md5(c).hexdigest()}
             for n, c in content.items()]
    served("mnist", specs)
    dest = tmp_path / "data"
    paths = data.fetch("mnist", dest, progress=False)
    assert [p.name for p in paths] == [f"{n}.gz" for n in IDX_NAMES]
    assert data.load("mnist", dest).x_train.shape == (2, 784)
    status = dict((n, (s, m)) for n, s, m in data.check(dest))["mnist"]
    assert status[0] == "ok" and "canonical checksum" in status[1]
    (tmp_path / "server" / specs[0]["name"]).unlink()  # present and canonical: not downloaded
    assert data.fetch("mnist", dest, progress=False)[0] == paths[0]

    served("kmnist", [{"name": "train-images-idx3-ubyte.gz", "content": b"tampered",
                       "md5": hashlib.md5(b"original").hexdigest()}])
    with pytest.raises(DataError) as e:
        data.fetch("kmnist", dest, progress=False)
    one_line_error(e, "checksum mismatch", "train-images-idx3-ubyte.gz")
    assert list((dest / "kmnist").iterdir()) == []

    served("wine_quality", [{"name": "winequality-red.csv", "content": b"x",
                             "sha256": hashlib.sha256(b"y").hexdigest()}])
    with pytest.raises(DataError):
        data.fetch("wine_quality", dest, progress=False)
    assert list((dest / "wine-quality").iterdir()) == []


def test_fetch_network_error_and_names(tmp_path, monkeypatch):
    url = (tmp_path / "nowhere" / "file.gz").as_uri()
    monkeypatch.setitem(sources.SOURCES, "mnist", {"folder": "mnist", "files": [
        {"name": "train-images-idx3-ubyte.gz", "url": url, "md5": "0" * 32}]})
    with pytest.raises(DataError) as e:
        data.fetch("mnist", tmp_path / "data", progress=False)
    one_line_error(e, "could not download", url, str(tmp_path / "data" / "mnist"))
    assert list((tmp_path / "data" / "mnist").iterdir()) == []
    with pytest.raises(DataError) as e:
        data.fetch("student_teacher", tmp_path)
    one_line_error(e, "needs no download")
    with pytest.raises(DataError):
        data.fetch("nope", tmp_path)


def test_fetch_cifar_tarball(tmp_path, served):
    make_cifar_bin(tmp_path / "build" / "cifar-10-batches-bin")
    (tmp_path / "build" / "cifar-10-batches-bin" / "batches.meta.txt").write_text("airplane\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
        evil = tarfile.TarInfo("../../escape.bin")
        tar.addfile(evil, io.BytesIO(b""))
    blob = buf.getvalue()
    served("cifar10", [{"name": "cifar-10-binary.tar.gz", "content": blob,
                        "md5": hashlib.md5(blob).hexdigest(), "extract": "tar",
                        "into": "cifar-10-batches-bin",
                        "members": sources.SOURCES["cifar10"]["files"][0]["members"]}])
    paths = data.fetch("cifar10", tmp_path / "data", progress=False)
    assert len(paths) == 7 and not (tmp_path / "escape.bin").exists()
    assert data.load("cifar10", tmp_path / "data").x_train.shape == (15, 3072)
    assert not list((tmp_path / "data").glob("*.part")) and not list((tmp_path / "data").glob(".*"))


@pytest.mark.parametrize("good", [True, False])
def test_fetch_sgemm_zip(tmp_path, served, good):
    make_sgemm(tmp_path / "build", n=12)
    csv = (tmp_path / "build" / "sgemm_product.csv").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("sgemm_product.csv", csv)
        zf.writestr("Readme.txt", "readme")
    served("sgemm", [{"name": "sgemm_product_dataset.zip", "content": buf.getvalue(),
                      "extract": "zip", "member": "sgemm_product.csv",
                      "member_md5": hashlib.md5(csv if good else b"other").hexdigest()}])
    dest = tmp_path / "data"
    if good:
        assert data.fetch("sgemm", dest, progress=False) == [dest / "sgemm" / "sgemm_product.csv"]
        assert data.load("sgemm", dest).x_train.shape == (36, 14)  # 9 of 12 configs x 4
    else:
        with pytest.raises(DataError) as e:
            data.fetch("sgemm", dest, progress=False)
        one_line_error(e, "checksum mismatch", "sgemm_product.csv")
    left = {p.name for p in (dest / "sgemm").iterdir()}
    assert left == ({"sgemm_product.csv"} if good else set())


# ---------------------------------------------------------------- check and the CLI
def test_check_folder(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "mnist")
    make_idx_set(tmp_path / "fashion-mnist")
    fashion = tmp_path / "fashion-mnist" / "train-labels-idx1-ubyte.gz"
    monkeypatch.setitem(sources.CONTENT_MD5, "fashion_mnist", {
        "train-labels-idx1-ubyte": hashlib.md5(gzip.decompress(fashion.read_bytes())).hexdigest()})
    make_wine(tmp_path / "wine-quality")
    (tmp_path / "wine-quality" / "winequality-red.csv").write_text('"a";"b"\n1;2\n')
    rows = {name: (status, msg) for name, status, msg in data.check(tmp_path)}
    assert set(rows) == {"mnist", "fashion_mnist", "kmnist", "cifar10", "wine_quality", "sgemm"}
    assert rows["mnist"][0] == "ok" and "non-canonical local copy" in rows["mnist"][1]
    assert rows["fashion_mnist"][0] == "ok" and "canonical content" in rows["fashion_mnist"][1]
    assert {rows[n][0] for n in ("kmnist", "cifar10", "sgemm")} == {"missing"}
    assert rows["wine_quality"][0] == "corrupt" and "winequality-red.csv" in rows["wine_quality"][1]
    assert all("\n" not in msg for _, msg in rows.values())


def _parser():
    parser = argparse.ArgumentParser(prog="simkit")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quiet", action="store_true")
    data.register_cli(parser.add_subparsers(dest="command"))
    return parser


def test_cli(tmp_path, capsys, served):
    make_idx_set(tmp_path / "mnist")
    parser = _parser()
    args = parser.parse_args(["--data-dir", str(tmp_path), "data", "check"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "ok" in out and "missing" in out
    args = parser.parse_args(["data", "check", "--data-dir", str(tmp_path)])
    assert args.data_dir == str(tmp_path) and args.func(args) == 0
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b junk")
    assert args.func(args) == 2
    assert "corrupt" in capsys.readouterr().out
    blob = b"1;2\n"
    served("wine_quality", [{"name": "winequality-red.csv", "content": blob,
                             "md5": hashlib.md5(blob).hexdigest()}])
    args = parser.parse_args(["--quiet", "--data-dir", str(tmp_path), "data", "fetch",
                              "wine-quality"])
    assert args.func(args) == 0
    assert (tmp_path / "wine-quality" / "winequality-red.csv").read_bytes() == blob


# ---------------------------------------------------------------- the real data (SIMKIT_DATA)
REAL = os.environ.get("SIMKIT_DATA")


def real(folder):
    if not REAL or not (Path(REAL) / folder).is_dir():
        pytest.skip(f"SIMKIT_DATA is unset or has no {folder}/")
    return REAL


@cache
def real_load(name):
    return data.load(name, REAL)


def test_real_mnist():
    real("mnist")
    ds = real_load("mnist")     # its loading time: benchmarks/bench_bp.py prints it
    np.testing.assert_array_equal(ds.y_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(np.bincount(ds.y_train), [5923, 6742, 5958, 6131, 5842, 5421,
                                                            5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(np.bincount(ds.y_test), [980, 1135, 1032, 1010, 982, 892, 958,
                                                           1028, 974, 1009])
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    mean, std = ds.x_train.mean(), ds.x_train.std()  # DFC's standardisation gives ~N(0, 1)
    assert abs((mean - 0.1307) / 0.3081) < 0.01 and abs(std / 0.3081 - 1) < 0.01
    files = ds.meta["files"]
    assert files["train-images-idx3-ubyte.gz"] == "non-canonical"
    assert files["t10k-images-idx3-ubyte.gz"].startswith("canonical")


def test_real_check():
    real("mnist")
    rows = {name: (status, msg) for name, status, msg in data.check(REAL)}
    assert rows["mnist"][0] == "ok" and "non-canonical" in rows["mnist"][1]
    assert "corrupt" not in {status for status, _ in rows.values()}


def test_real_fashion_mnist():
    real("fashion-mnist")
    ds = real_load("fashion_mnist")
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert ds.meta["canonical"]


def test_real_wine_quality():
    real("wine-quality")
    ds = real_load("wine_quality")
    assert ds.meta["rows"] == {"red": 1599, "white": 4898}
    assert ds.x_train.shape == (5197, 12) and ds.x_test.shape == (1300, 12)
    assert ds.y_train.shape == (5197, 1) and ds.meta["canonical"]
    raw = data.load("wine_quality", REAL, normalize=False)
    quality = np.concatenate([raw.y_train, raw.y_test])[:, 0].astype(int)
    np.testing.assert_array_equal(np.bincount(quality)[3:], [30, 216, 2138, 2836, 1079, 193, 5])
    # F³'s constants are the training split's mean and (unbiased) std: the split is the same.
    np.testing.assert_allclose(raw.x_train.mean(0), uci.WINE_FEATURE_MEAN, rtol=1e-12)
    np.testing.assert_allclose(raw.x_train.std(0, ddof=1), uci.WINE_FEATURE_STD, rtol=1e-12)
    assert abs(raw.y_train.mean() - uci.WINE_TARGET_MEAN) < 1e-12
    assert np.all(raw.x_train[:, 11] == (raw.x_train[:, 11] > 0.5))


def test_real_sgemm():
    real("sgemm")
    ds = real_load("sgemm")
    assert ds.x_train.shape == (773120, 14) and ds.y_train.shape == (773120, 1)
    assert ds.x_test.shape == (193280, 14) and ds.y_test.shape == (193280, 1)
    assert ds.meta["configurations"] == 241600 and ds.meta["canonical"]
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-6)  # F³'s constants = train mean
    assert abs(ds.y_train.mean()) < 1e-12 and abs(ds.y_train.std(ddof=1) - 1) < 1e-12
