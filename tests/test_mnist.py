"""MNIST: the IDX reader, the loader, the shipped sample, downloads through pooch from a local
server, the lenet model and the mnist example, end to end on the sample."""
import errno
import gzip
import hashlib
import http.server
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pooch
import pytest

import cnnx
from cnnx.datasets import mnist
from cnnx.io import load_matconvnet
from cnnx.models import mnist_dagnn, mnist_lenet
from cnnx.simplenn import vl_simplenn

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 7, 3


def idx_bytes(values, code=0x08):
    """An IDX file of ``values``, written as the format says (big-endian sizes and values)."""
    values = np.asarray(values)
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, values.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in values.shape)
    return header + values.astype(dtype).tobytes()


def mnist_files(seed=0):
    """The four MNIST files (gzipped) for N_TRAIN training and N_TEST test digits."""
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8)
    train_labels = rng.integers(0, 10, N_TRAIN, dtype=np.uint8)
    test_labels = np.array([9, 0, 4], dtype=np.uint8)
    contents = [train, train_labels, test, test_labels]
    files = {name: gzip.compress(idx_bytes(values), mtime=0)
             for name, values in zip(mnist.FILES, contents)}
    return files, contents


@pytest.fixture(scope="module")
def files():
    return mnist_files()


def write_files(folder, payloads, gunzipped=False):
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in payloads.items():
        if gunzipped:
            (folder / name[:-3]).write_bytes(gzip.decompress(payload))
        else:
            (folder / name).write_bytes(payload)


def sha256_of(payloads):
    return {name: hashlib.sha256(payload).hexdigest() for name, payload in payloads.items()}


# --------------------------------------------------------------------------------------------------
# The IDX reader
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code, dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                         (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)])
@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_reads_every_type_big_endian(tmp_path, code, dtype, compressed):
    values = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 5).astype(dtype)
    if np.issubdtype(dtype, np.signedinteger) or np.issubdtype(dtype, np.floating):
        values[1] = -values[1]
    if code == 0x08:
        values[1, 2, 3] = 255
    payload = idx_bytes(values, code)
    path = tmp_path / ("file-idx3.gz" if compressed else "file-idx3")
    path.write_bytes(gzip.compress(payload) if compressed else payload)
    got = mnist.read_idx(path)
    assert got.dtype == dtype and got.dtype.isnative and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, values)


def test_read_idx_reads_one_dimension_and_the_byte_order(tmp_path):
    path = tmp_path / "labels-idx1"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    np.testing.assert_array_equal(mnist.read_idx(path), [258, -2])


@pytest.mark.parametrize("payload, message", [
    (b"\x00\x01\x08\x01", "read_idx: {path} is not an IDX file (it must start with two zero bytes, a type "
                          "code and a dimension count; it starts with b'\\x00\\x01\\x08\\x01')"),
    (b"PK", "read_idx: {path} is not an IDX file (it must start with two zero bytes, a type code and a "
            "dimension count; it starts with b'PK')"),
    (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x00", "read_idx: {path} has the unknown IDX type code 0x0A "
                                              "(known: 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "read_idx: {path} is truncated: its header is cut off "
                                                  "after 10 bytes; delete it to download it again"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03\x01\x02", "read_idx: {path} is truncated: its header "
     "gives 2x3 values (6 bytes) but it holds 2 bytes of data; delete it to download it again"),
    (b"\x00\x00\x0c\x01\x00\x00\x00\x01\x00\x00\x00\x01\x07", "read_idx: {path} is too long: its header "
     "gives 1 values (4 bytes) but it holds 5 bytes of data; delete it to download it again"),
])
def test_read_idx_rejects_what_is_not_an_idx_file(tmp_path, payload, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(payload)
    with pytest.raises(ValueError) as error:
        mnist.read_idx(path)
    assert str(error.value) == message.format(path=path)


def test_read_idx_rejects_a_damaged_gzip_file(tmp_path, files):
    payloads, _ = files
    path = tmp_path / mnist.FILES[0]
    path.write_bytes(payloads[mnist.FILES[0]][:-20])
    with pytest.raises(ValueError) as error:
        mnist.read_idx(path)
    assert str(error.value) == (f"read_idx: cannot read {path} (Compressed file ended before the "
                                "end-of-stream marker was reached); delete it to download it again")


# --------------------------------------------------------------------------------------------------
# Loading and preprocessing
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gunzipped", [False, True])  # as downloaded, or as MatConvNet keeps them
def test_load_reads_upright_images_labels_and_sets(tmp_path, files, gunzipped, monkeypatch):
    payloads, (train, train_labels, test, test_labels) = files
    write_files(tmp_path, payloads, gunzipped=gunzipped)
    monkeypatch.setattr(pooch, "create", None)  # nothing to download: pooch is never used
    images, labels, sets, classes = mnist.load(tmp_path, progress=False)
    n = N_TRAIN + N_TEST
    assert images.shape == (28, 28, 1, n) and images.dtype == np.uint8
    assert images.flags.f_contiguous
    for k, image in enumerate(list(train) + list(test)):  # images[h, w, 0, n] = file[n, h, w]
        np.testing.assert_array_equal(images[:, :, 0, k], image)
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels, np.concatenate([train_labels, test_labels]) + 1.0)
    assert sets.dtype == np.uint8
    np.testing.assert_array_equal(sets, [1] * N_TRAIN + [3] * N_TEST)
    assert classes == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]


@pytest.mark.parametrize("which, values, message", [
    (1, np.zeros(N_TRAIN + 1, np.uint8), "mnist: {labels} has 8 labels for the 7 images of {images}"),
    (1, np.array([0, 1, 2, 3, 4, 5, 10], np.uint8), "mnist: {labels} has a label 10, expected digits 0-9"),
    (1, np.zeros((N_TRAIN, 1), np.uint8),
     "mnist: {labels} holds uint8 values of shape (7, 1), expected one uint8 label per image"),
    (0, np.zeros((N_TRAIN, 28, 27), np.uint8),
     "mnist: {images} holds uint8 values of shape (7, 28, 27), expected uint8 images of 28x28"),
])
def test_load_rejects_files_that_are_not_mnists(tmp_path, files, which, values, message):
    payloads, _ = files
    write_files(tmp_path, payloads)
    (tmp_path / mnist.FILES[which]).write_bytes(gzip.compress(idx_bytes(values)))
    with pytest.raises(ValueError) as error:
        mnist.load(tmp_path, progress=False)
    assert str(error.value) == message.format(labels=tmp_path / mnist.FILES[1],
                                              images=tmp_path / mnist.FILES[0])


def test_preprocess_subtracts_the_mean_training_image():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (28, 28, 1, 12), dtype=np.uint8)
    sets = np.array([1, 3] * 6)
    data, data_mean = mnist.preprocess(images, sets)
    want_mean = images[..., sets == 1].astype(np.float64).mean(axis=3)
    assert data.dtype == np.float32 and data.flags.f_contiguous and data.shape == images.shape
    assert data_mean.dtype == np.float32 and data_mean.shape == (28, 28, 1)
    np.testing.assert_allclose(data_mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(data, images - want_mean[..., None], rtol=0, atol=1e-4)


@pytest.mark.parametrize("images, sets, message", [
    (np.zeros((28, 28, 3)), np.ones(3), "preprocess: images must be 4-D (H, W, C, N), got shape (28, 28, 3)"),
    (np.zeros((28, 28, 1, 5)), np.ones(4), "preprocess: sets has 4 entries for 5 images"),
    (np.zeros((28, 28, 1, 5)), np.full(5, 3), "preprocess: sets marks no training image (value 1)"),
])
def test_preprocess_rejects_bad_arguments(images, sets, message):
    with pytest.raises(ValueError) as error:
        mnist.preprocess(images, sets)
    assert str(error.value) == message


def test_get_imdb_is_getmnistimdbs(tmp_path, files):
    payloads, _ = files
    write_files(tmp_path, payloads)
    imdb = mnist.get_imdb(tmp_path, progress=False)
    images, labels, sets, classes = mnist.load(tmp_path, progress=False)
    data, data_mean = mnist.preprocess(images, sets)
    np.testing.assert_array_equal(imdb["images"]["data"], data)
    np.testing.assert_array_equal(imdb["images"]["data_mean"], data_mean)
    np.testing.assert_array_equal(imdb["images"]["labels"], labels)
    np.testing.assert_array_equal(imdb["images"]["set"], sets)
    assert imdb["meta"] == {"sets": ["train", "val", "test"], "classes": classes}


def test_get_batch_takes_the_images_and_labels_unchanged():
    data = np.asfortranarray(np.arange(2 * 2 * 1 * 5, dtype=np.float32).reshape(2, 2, 1, 5))
    imdb = {"images": {"data": data, "labels": np.arange(1, 6, dtype=np.float32)}}
    for _ in range(5):  # no random flips
        images, labels = mnist.get_batch(imdb, np.array([4, 1]))
        np.testing.assert_array_equal(images, data[..., [4, 1]])
        assert images.flags.f_contiguous
        np.testing.assert_array_equal(labels, [5, 2])


# --------------------------------------------------------------------------------------------------
# The shipped sample
# --------------------------------------------------------------------------------------------------


def sample_rows():
    text = gzip.decompress(mnist.sample_path().read_bytes()).decode()
    return np.array([[int(v) for v in line.split(",")] for line in text.splitlines()])


def test_sample_is_interleaved_by_class_with_the_last_100_of_each_held_out():
    rows = sample_rows()
    assert rows.shape == (5000, 785)
    images, labels, sets, classes = mnist.load_sample()
    assert images.shape == (28, 28, 1, 5000) and images.dtype == np.uint8
    assert images.flags.f_contiguous
    assert classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(labels, np.tile(np.arange(1, 11, dtype=np.float32), 500))
    np.testing.assert_array_equal(sets, [1] * 4000 + [3] * 1000)
    for digit in range(10):
        of_digit = rows[rows[:, -1] == digit, :-1]  # in file order
        assert len(of_digit) == 500
        got = images[:, :, 0, digit::10]  # the i-th image of this digit is at 10 * i + digit
        for i in (0, 1, 399, 400, 499):  # row by row: images[h, w] = pixel 28 * h + w
            np.testing.assert_array_equal(got[:, :, i], of_digit[i].reshape(28, 28))
        np.testing.assert_array_equal(got.transpose(2, 0, 1).reshape(500, -1), of_digit)


def test_sample_is_package_data_with_its_attribution():
    assert mnist.sample_path().name == "mnist_5k.csv.gz"
    assert hashlib.sha256(mnist.sample_path().read_bytes()).hexdigest() == mnist.SAMPLE_SHA256
    readme = mnist.sample_path().parent.joinpath("README.md").read_text()
    assert "Yann LeCun, Corinna Cortes" in readme and "CC BY-SA 3.0" in readme


@pytest.mark.slow
def test_wheel_holds_the_sample_and_its_readme(tmp_path):
    """setuptools' build_py is what puts files into a wheel: package data must be declared."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=lambda folder, names: [
        name for name in names if Path(folder) == ROOT and name in {".git", "build", "dist"}])
    built = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib",
                            str(tmp_path / "lib")], cwd=tree, capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    data = tmp_path / "lib" / "cnnx" / "datasets" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["README.md", "mnist_5k.csv.gz"]
    assert (data / "mnist_5k.csv.gz").read_bytes() == mnist.sample_path().read_bytes()


def test_a_damaged_sample_is_an_error(tmp_path, monkeypatch):
    damaged = tmp_path / mnist.SAMPLE
    damaged.write_bytes(gzip.compress(b"1,2,3\n"))
    monkeypatch.setattr(mnist, "sample_path", lambda: damaged)
    digest = hashlib.sha256(damaged.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as error:
        mnist.load_sample()
    assert str(error.value) == (f"mnist: the sample {damaged} is damaged (SHA-256 {digest}, expected "
                                f"{mnist.SAMPLE_SHA256}); reinstall cnnx")


def test_get_imdb_on_the_sample_removes_the_training_mean():
    imdb = mnist.get_imdb("no-such-folder", sample=True)
    images, labels, sets, _ = mnist.load_sample()
    assert not os.path.exists("no-such-folder")
    data = imdb["images"]["data"]
    assert data.shape == (28, 28, 1, 5000) and data.dtype == np.float32
    mean = images[..., sets == 1].astype(np.float64).mean(axis=3)
    np.testing.assert_allclose(imdb["images"]["data_mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(data, images - mean[..., None], atol=1e-4)
    np.testing.assert_array_equal(imdb["images"]["labels"], labels)


# --------------------------------------------------------------------------------------------------
# Downloads from a local server
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving `files` under /a/ and /b/ (two mirrors).

    `cut[path] = k` cuts the first k answers for path after half the bytes; `status[path]` answers
    with that status instead; `requests` lists the paths asked for.
    """
    state = {"files": {}, "cut": {}, "status": {}, "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["requests"].append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            if self.path in state["status"]:
                self.send_error(state["status"][self.path])
                return
            if name not in state["files"]:
                self.send_error(404)
                return
            payload = state["files"][name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if state["cut"].get(self.path, 0) > 0:
                state["cut"][self.path] -= 1
                payload = payload[:len(payload) // 2]
            self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    deadline = threading.Timer(60, httpd.shutdown)
    deadline.daemon = True
    deadline.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    state["mirrors"] = (f"{base}/a/", f"{base}/b/")
    try:
        yield state
    finally:
        deadline.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def no_sleep(monkeypatch):
    """pooch waits 1 s, 2 s... between attempts: record the waits instead."""
    waits = []
    monkeypatch.setattr(pooch.core.time, "sleep", waits.append)
    return waits


def closed_port_url():
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_download_fetches_verifies_and_loads(server, files, tmp_path):
    payloads, (train, *_) = files
    server["files"] = payloads
    folder = tmp_path / "new"
    paths = mnist.download(folder, mirrors=server["mirrors"], sha256=sha256_of(payloads),
                           progress=False)
    assert paths == [str(folder / name) for name in mnist.FILES]
    assert sorted(os.listdir(folder)) == sorted(mnist.FILES)
    for name in mnist.FILES:
        assert (folder / name).read_bytes() == payloads[name]
    assert server["requests"] == [f"/a/{name}" for name in mnist.FILES]
    # present files are not downloaded again
    images, _, _, _ = mnist.load(folder, mirrors=server["mirrors"], sha256=sha256_of(payloads),
                                 progress=False)
    assert len(server["requests"]) == 4
    np.testing.assert_array_equal(images[:, :, 0, 0], train[0])


def test_download_fetches_only_the_missing_files(server, files, tmp_path):
    payloads, _ = files
    server["files"] = payloads
    write_files(tmp_path, {name: payloads[name] for name in mnist.FILES[:3]})
    mnist.download(tmp_path, mirrors=server["mirrors"], sha256=sha256_of(payloads), progress=False)
    assert server["requests"] == [f"/a/{mnist.FILES[3]}"]


def test_download_passes_over_an_unreachable_or_refusing_mirror(server, files, tmp_path, no_sleep):
    payloads, _ = files
    server["files"] = payloads
    server["status"] = {f"/a/{name}": 404 for name in mnist.FILES}
    mirrors = (closed_port_url(), *server["mirrors"])
    mnist.download(tmp_path, mirrors=mirrors, sha256=sha256_of(payloads), progress=False)
    assert sorted(os.listdir(tmp_path)) == sorted(mnist.FILES)
    # a 404 is not tried again, nor is an unreachable server
    assert server["requests"] == [f"/{m}/{name}" for name in mnist.FILES for m in "ab"]
    assert no_sleep == []


def test_download_tries_a_broken_transfer_again(server, files, tmp_path, no_sleep, capsys):
    payloads, _ = files
    server["files"] = payloads
    name = mnist.FILES[0]
    server["cut"] = {f"/a/{name}": 2}
    mnist.download(tmp_path, mirrors=server["mirrors"], sha256=sha256_of(payloads), progress=True)
    assert (tmp_path / name).read_bytes() == payloads[name]
    assert server["requests"][:3] == [f"/a/{name}"] * 3 and no_sleep == [1, 2]
    err = capsys.readouterr().err
    size = len(payloads[name])
    for attempt in (2, 3):
        assert (f"{name}: the download from {server['mirrors'][0]}{name} broke off (IncompleteRead("
                f"{size // 2} bytes read, {size - size // 2} more expected)); trying again (attempt "
                f"{attempt})") in err


def test_download_cut_off_every_time_leaves_nothing(server, files, tmp_path, no_sleep):
    payloads, _ = files
    server["files"] = payloads
    name = mnist.FILES[0]
    server["cut"] = {f"/{mirror}/{name}": 9 for mirror in "ab"}
    with pytest.raises(RuntimeError) as error:
        mnist.download(tmp_path, mirrors=server["mirrors"], sha256=sha256_of(payloads),
                       progress=False, retries=1)
    size = len(payloads[name])
    reason = f"IncompleteRead({size // 2} bytes read, {size - size // 2} more expected)"
    a, b = (f"{m}{name}" for m in server["mirrors"])
    assert str(error.value) == (
        f"mnist: could not download {a} ({reason}); could not download {b} ({reason}); nothing was "
        f"saved. Try again, or put MNIST's four files ({', '.join(mnist.FILES)}) in {tmp_path}")
    assert os.listdir(tmp_path) == []
    assert server["requests"] == [f"/a/{name}", f"/a/{name}", f"/b/{name}", f"/b/{name}"]


def test_download_with_a_wrong_checksum_names_the_file_and_leaves_nothing(server, files, tmp_path,
                                                                        no_sleep):
    payloads, _ = files
    server["files"] = payloads
    sha256 = sha256_of(payloads)
    name = mnist.FILES[0]
    sha256[name] = "0" * 64
    with pytest.raises(RuntimeError) as error:
        mnist.download(tmp_path, mirrors=server["mirrors"][:1], sha256=sha256, progress=False)
    actual = hashlib.sha256(payloads[name]).hexdigest()
    assert str(error.value) == (
        f"mnist: the file downloaded from {server['mirrors'][0]}{name} has SHA256 {actual}, "
        f"expected {'0' * 64} (corrupted or not MNIST's {name}); nothing was saved. Try again, or "
        f"put MNIST's four files ({', '.join(mnist.FILES)}) in {tmp_path}")
    assert os.listdir(tmp_path) == []
    assert len(server["requests"]) == 3 and no_sleep == [1, 2]  # pooch tried twice more


def test_download_offline_says_where_to_put_the_files_at_once(tmp_path, monkeypatch, no_sleep):
    lookups = []

    def offline(host, *args, **kwargs):  # what a machine without a network answers
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(RuntimeError) as error:
        mnist.download(tmp_path, progress=True)
    name = mnist.FILES[0]
    assert str(error.value) == (
        f"mnist: could not download {name} from {mnist.MIRRORS[0]}{name} or {mnist.MIRRORS[1]}{name} "
        f"([Errno {socket.EAI_NONAME}] Name or service not known); nothing was saved. To work "
        f"offline, put MNIST's four files ({', '.join(mnist.FILES)}) in {tmp_path}")
    assert lookups == ["ossci-datasets.s3.amazonaws.com", "storage.googleapis.com"]  # no retries
    assert no_sleep == [] and os.listdir(tmp_path) == []


def test_download_on_a_full_disk_is_one_error_naming_the_file(server, files, tmp_path, monkeypatch):
    payloads, _ = files
    server["files"] = payloads
    real_open = open

    class Full:
        def __init__(self, path, mode):
            self.stream = real_open(path, mode)

        def write(self, data):
            self.stream.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.stream, name)

    monkeypatch.setattr(pooch.downloaders, "open", Full, raising=False)  # pooch's HTTPDownloader
    with pytest.raises(OSError) as error:
        mnist.download(tmp_path, mirrors=server["mirrors"], sha256=sha256_of(payloads),
                       progress=False)
    assert error.value.errno == errno.ENOSPC
    assert str(error.value) == (f"[Errno 28] mnist: could not write {mnist.FILES[0]} in {tmp_path}: "
                                "No space left on device; nothing was saved")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


LENET = [  # type, filter or window, output size
    ("conv", (5, 5, 1, 20), (24, 24, 20)),
    ("pool", (2, 2), (12, 12, 20)),
    ("conv", (5, 5, 20, 50), (8, 8, 50)),
    ("pool", (2, 2), (4, 4, 50)),
    ("conv", (4, 4, 50, 500), (1, 1, 500)),
    ("relu", None, (1, 1, 500)),
    ("conv", (1, 1, 500, 10), (1, 1, 10)),
    ("softmaxloss", None, ()),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mnist_lenet_is_cnn_mnist_inits(dtype):
    net = mnist_lenet(dtype=dtype)
    assert len(net["layers"]) == len(LENET)
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((28, 28, 1, 2)).astype(dtype))
    net["layers"][-1]["class"] = np.array([3, 7], dtype=dtype)
    res = vl_simplenn(net, x, mode="test")
    for i, (layer, (kind, size, out)) in enumerate(zip(net["layers"], LENET)):
        assert layer["type"] == kind and layer["name"] == f"layer{i + 1}"
        if kind == "conv":
            filters, biases = layer["weights"]
            assert filters.shape == size and filters.dtype == dtype
            assert biases.shape == (1, size[3]) and biases.dtype == dtype and not biases.any()
            assert layer["pad"] == 0 and layer["stride"] == 1
            assert "learningRate" not in layer and "weightDecay" not in layer
            assert abs(filters.std() / 0.01 - 1) < 8 / np.sqrt(filters.size)
        elif kind == "pool":
            assert list(layer["pool"]) == [2, 2] and layer["stride"] == 2
            assert layer["method"] == "max" and layer["pad"] == 0
        if out:
            assert res[i + 1]["x"].shape == (*out, 2)
    assert net["meta"] == {"inputSize": [28, 28, 1],
                           "trainOpts": {"learningRate": 0.001, "numEpochs": 20, "batchSize": 100}}
    assert sum(w.size for layer in net["layers"] for w in layer["weights"]) == 431_080


def test_mnist_lenet_is_seeded_and_checks_its_dtype():
    first = mnist_lenet(rng=3)["layers"][0]["weights"][0]
    np.testing.assert_array_equal(first, mnist_lenet(rng=np.random.default_rng(3))["layers"][0]["weights"][0])
    assert not np.array_equal(first, mnist_lenet(rng=4)["layers"][0]["weights"][0])
    with pytest.raises(TypeError) as error:
        mnist_lenet(dtype=np.int32)
    assert str(error.value) == "mnist_lenet: dtype must be float32 or float64, got int32"


def test_mnist_dagnn_adds_top1err_and_computes_what_simplenn_does():
    net = mnist_lenet()
    dag = mnist_dagnn(net)
    layer = dag.get_layer("top1err")
    assert layer.inputs == ["prediction", "label"] and layer.outputs == ["error"]
    assert layer.block.loss == "classerror"
    assert dag.get_inputs() == ["input", "label"] and dag.get_outputs() == ["objective", "error"]
    x = np.asfortranarray(np.random.default_rng(1).standard_normal((28, 28, 1, 4), dtype=np.float32))
    labels = np.array([1, 4, 9, 10], dtype=np.float32)
    dag.mode = "test"
    dag.eval({"input": x, "label": labels})
    net["layers"][-1]["class"] = labels
    res = vl_simplenn(net, x, mode="test")
    np.testing.assert_allclose(dag.get_var("objective").value, res[-1]["x"], rtol=1e-6)
    predicted = res[-2]["x"].reshape(10, 4).argmax(axis=0) + 1
    np.testing.assert_allclose(dag.get_var("error").value, np.sum(predicted != labels))


# --------------------------------------------------------------------------------------------------
# The example
# --------------------------------------------------------------------------------------------------


def example_env(**extra):
    """The environment of the example's process: it imports the cnnx these tests import."""
    where = str(Path(cnnx.__file__).resolve().parents[1])
    paths = [where] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **extra)


def run_example(*args, cwd, env=None, code=0):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist.py"), "--threads", "1", *map(str, args)],
        capture_output=True, text=True, env=env or example_env(), timeout=120, cwd=cwd)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout, result.stderr


def final_error(output):
    found = re.findall(r"mnist: test top-1 error after epoch (\d+): ([0-9.]+)", output)
    assert found, output
    epoch, error = found[-1]
    return int(epoch), float(error)


def load_example():
    spec = importlib.util.spec_from_file_location("mnist_example", ROOT / "examples" / "mnist.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.mark.slow
@pytest.mark.parametrize("network", ["simplenn", "dagnn"])
def test_example_trains_on_the_sample_saves_and_resumes(tmp_path, network):
    common = ["--sample", "--subset", 100, "--network", network]
    out, _ = run_example(*common, "--epochs", 1, cwd=tmp_path)
    exp = tmp_path / "data" / f"mnist-lenet-{network}-sample"
    assert (f"mnist: lenet ({network}) on the shipped sample, 100 training and 20 test images, "
            f"1 thread(s), experiment folder {exp.relative_to(tmp_path)}") in out
    epoch, error = final_error(out)
    assert epoch == 1 and 0 <= error <= 1
    assert (exp / "net-epoch-1.mat").is_file() and (exp / "stats.json").is_file()
    assert not (tmp_path / "data" / "mnist").exists()  # --sample downloads nothing
    written = (exp / "net-epoch-1.mat").stat().st_mtime_ns
    out, _ = run_example(*common, "--epochs", 2, cwd=tmp_path)  # resumes: trains epoch 2 only
    assert final_error(out)[0] == 2 and "train: epoch 01" not in out
    assert (exp / "net-epoch-1.mat").stat().st_mtime_ns == written


@pytest.mark.slow
def test_example_offline_says_so_in_one_line_and_trains_on_the_sample(tmp_path):
    # A proxy nobody listens on: every download fails at once, as on a machine without a network.
    proxy = closed_port_url()
    env = example_env(HTTPS_PROXY=proxy, HTTP_PROXY=proxy, https_proxy=proxy, http_proxy=proxy,
                      NO_PROXY="", no_proxy="")
    out, err = run_example("--subset", 100, "--epochs", 1, "--exp-dir", tmp_path / "exp",
                           cwd=tmp_path, env=env)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    data_dir = tmp_path / "data" / "mnist"
    assert lines[0].startswith(f"mnist: could not download {mnist.FILES[0]} from ")
    assert lines[0].endswith(
        f"; nothing was saved. To work offline, put MNIST's four files ({', '.join(mnist.FILES)}) "
        f"in {data_dir}. Training on the 5,000-digit MNIST sample that ships with cnnx instead "
        "(4,000 training, 1,000 test digits).")
    assert "on the shipped sample, 100 training and 20 test images" in out
    assert final_error(out)[0] == 1 and (tmp_path / "exp" / "net-epoch-1.mat").is_file()
    assert os.listdir(data_dir) == []


def test_example_falls_back_to_the_sample_in_the_sample_folder(tmp_path, monkeypatch, capsys):
    example = load_example()

    def offline(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.chdir(tmp_path)
    code = example.main(["--subset", "100", "--epochs", "1", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0
    name = mnist.FILES[0]
    assert captured.err.splitlines()[0] == (
        f"mnist: could not download {name} from {mnist.MIRRORS[0]}{name} or {mnist.MIRRORS[1]}{name} "
        f"([Errno {socket.EAI_NONAME}] Name or service not known); nothing was saved. To work "
        f"offline, put MNIST's four files ({', '.join(mnist.FILES)}) in {tmp_path / 'data' / 'mnist'}. "
        "Training on the 5,000-digit MNIST sample that ships with cnnx instead (4,000 training, "
        "1,000 test digits).")
    assert (tmp_path / "data" / "mnist-lenet-simplenn-sample" / "net-epoch-1.mat").is_file()
    assert not (tmp_path / "data" / "mnist-lenet-simplenn").exists()


def test_example_trains_on_mnist_when_it_is_there(tmp_path, files, capsys, monkeypatch):
    payloads, _ = files
    write_files(tmp_path / "data" / "mnist", payloads, gunzipped=True)
    monkeypatch.chdir(tmp_path)
    code = load_example().main(["--epochs", "1", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (f"mnist: lenet (simplenn) on MNIST, {N_TRAIN} training and {N_TEST} test images, 1 thread(s), "
            f"experiment folder {os.path.join('data', 'mnist-lenet-simplenn')}") in captured.out
    assert (tmp_path / "data" / "mnist-lenet-simplenn" / "net-epoch-1.mat").is_file()
    assert "sample" not in captured.err


def test_example_with_a_damaged_file_names_it_and_stops(tmp_path, files, capsys):
    payloads, _ = files
    data = tmp_path / "mnist"
    write_files(data, payloads)
    (data / mnist.FILES[2]).write_bytes(b"\x00\x00\x08")
    code = load_example().main(["--data-dir", str(data), "--exp-dir", str(tmp_path / "exp")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == f"read_idx: cannot read {data / mnist.FILES[2]} (Not a gzipped file (b'\\x00\\x00')); " \
                          "delete it to download it again"
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("args, message", [
    (["--epochs", 0], "--epochs must be at least 1, got 0"),
    (["--subset", -5], "--subset must be at least 1, got -5"),
    (["--batch-size", 0], "--batch-size must be at least 1, got 0"),
    (["--learning-rate", 0], "--learning-rate must be positive, got 0.0"),
    (["--network", "resnet"], "invalid choice: 'resnet'"),
])
def test_example_rejects_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        load_example().parse_args([str(a) for a in args])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("network, sample, suffix, folder", [
    ("simplenn", False, "", "mnist-lenet-simplenn"),
    ("dagnn", False, "", "mnist-lenet-dagnn"),
    ("simplenn", True, "", "mnist-lenet-simplenn-sample"),
    ("dagnn", True, "-bnorm", "mnist-lenet-dagnn-bnorm-sample"),
])
def test_example_default_folder_names_wrapper_and_data(network, sample, suffix, folder):
    assert load_example().default_exp_dir(network, sample, suffix) == os.path.join("data", folder)


@pytest.mark.slow
@pytest.mark.parametrize("network", ["simplenn", "dagnn"])
def test_example_with_batch_norm_trains_cnn_mnists_bnorm_network(tmp_path, monkeypatch, capsys, restore_threads,
                                                                  network):
    monkeypatch.chdir(tmp_path)
    args = ["--sample", "--batch-norm", "--subset", "100", "--epochs", "1", "--threads", "1", "--network", network]
    assert load_example().main(args) == 0
    out = capsys.readouterr().out
    folder = os.path.join("data", f"mnist-lenet-{network}-bnorm-sample")
    assert (f"mnist: lenet-bnorm ({network}) on the shipped sample, 100 training and 20 test images, 1 thread(s), "
            f"experiment folder {folder}") in out
    assert final_error(out)[0] == 1
    net = load_matconvnet(tmp_path / folder / "net-epoch-1.mat")
    if network == "simplenn":
        moments = [layer["weights"][2] for layer in net["layers"] if layer["type"] == "bnorm"]
    else:
        moments = [param.value for param in net.params if param.train_method == "average"]
    assert [m.shape for m in moments] == [(20, 2), (50, 2), (500, 2)]
    assert all((m[:, 1] > 0).all() for m in moments)  # learned from zeros: the deviations are positive


def test_example_uses_cnn_mnists_training_options(monkeypatch, tmp_path):
    example = load_example()
    seen = {}

    def fake_train(net, imdb, get_batch, **opts):
        seen.update(opts)
        return net, {"val": [{"objective": 0.1, "top1err": 0.05}]}

    monkeypatch.setattr("cnnx.datasets._example.cnn_train", fake_train)  # the examples train through it
    assert example.main(["--sample", "--exp-dir", str(tmp_path)]) == 0
    assert seen["batch_size"] == 100 and seen["num_epochs"] == 20 and seen["learning_rate"] == 0.001
    assert "weight_decay" not in seen and seen["continue_"] is True  # cnn_train's 0.0005, resuming
    assert len(seen["train"]) == 4000 and len(seen["val"]) == 1000


def test_runs_of_the_examples_are_not_part_of_the_checkout():
    """The examples write data/ where they run: git ignores it, so the sdist test stays true."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    for path in ("data/mnist/train-images-idx3-ubyte.gz", "data/mnist-lenet-simplenn/net-epoch-1.mat",
                 "data/cifar/cifar-10-python.tar.gz"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path



def test_readmes_first_command_is_the_mnist_example_with_its_attribution():
    readme = (ROOT / "README.md").read_text()
    first = re.findall(r"```\n(.*?)\n```", readme, re.S)[0]
    assert first.strip() == "pip install . && python examples/mnist.py"
    text = " ".join(readme.split())
    assert "MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, under CC BY-SA 3.0" in text
