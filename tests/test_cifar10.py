"""CIFAR-10 loading, preprocessing, download and the cifar10 example, on a miniature archive."""
import hashlib
import importlib.util
import http.server
import io
import os
import pickle
import re
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pooch
import pytest

import cnnx
from cnnx.datasets import cifar10
from cnnx.io import load_matconvnet

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_BATCH = 12  # images in each of the 6 batches: 60 training and 12 test images


def _batch_pickle(rows, labels):
    """A batch as Python 3 pickles it (protocol 2)."""
    batch = {b"batch_label": b"mini", b"labels": [int(v) for v in labels], b"data": rows,
             b"filenames": [b"img%d.png" % i for i in range(len(labels))]}
    return pickle.dumps(batch, protocol=2)


def _python2_batch_pickle(rows, labels):
    """A batch as the real archive has it: a Python 2 cPickle (protocol 2) of a uint8 array."""
    raw = rows.tobytes()
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
             b"(K\x01M" + len(rows).to_bytes(2, "little") + b"M\x00\x0c\x86"
             b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
             b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
             b"\x89T" + len(raw).to_bytes(4, "little") + raw + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"e"
    return b"\x80\x02}(U\x04data" + array + b"U\x06labels" + label_list + b"u."


def make_archive(path, seed=0):
    """Write a CIFAR-10 python archive with PER_BATCH images per batch; return (rows, labels)."""
    rng = np.random.default_rng(seed)
    n = 6 * PER_BATCH
    rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    rows[1::3] = rng.integers(100, 116, (len(rows[1::3]), 3072), dtype=np.uint8)  # low contrast
    labels = rng.integers(0, 10, n)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    # The training batches are pickled as Python 2 did (the real archive), the test batch as
    # Python 3 does.
    files = {name: (_python2_batch_pickle if k < 5 else _batch_pickle)(
                 rows[k * PER_BATCH:(k + 1) * PER_BATCH], labels[k * PER_BATCH:(k + 1) * PER_BATCH])
             for k, name in enumerate(names)}
    files["batches.meta"] = pickle.dumps(
        {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return rows, labels


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar")
    rows, labels = make_archive(folder / cifar10.ARCHIVE)
    return folder, rows, labels


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def test_rows_to_images_keeps_images_upright():
    rows = np.zeros((2, 3072), dtype=np.uint8)
    # image 1: red pixel at row 2, column 7; green at row 10, column 0; blue along row 31
    rows[1, 0 * 1024 + 32 * 2 + 7] = 255
    rows[1, 1 * 1024 + 32 * 10 + 0] = 200
    rows[1, 2 * 1024 + 32 * 31: 2 * 1024 + 32 * 32] = 100
    images = cifar10.rows_to_images(rows)
    assert images.shape == (32, 32, 3, 2) and images.flags.f_contiguous
    expected = np.zeros((32, 32, 3), dtype=np.uint8)
    expected[2, 7, 0] = 255
    expected[10, 0, 1] = 200
    expected[31, :, 2] = 100
    np.testing.assert_array_equal(images[:, :, :, 1], expected)
    assert not images[:, :, :, 0].any()


def test_load_reads_batches_in_order(mini):
    folder, rows, labels = mini
    images, got_labels, sets, classes = cifar10.load(folder)
    n = 6 * PER_BATCH
    assert images.shape == (32, 32, 3, n) and images.dtype == np.uint8
    assert images.flags.f_contiguous
    np.testing.assert_array_equal(images, rows.reshape(n, 3, 32, 32).transpose(2, 3, 1, 0))
    assert got_labels.dtype == np.float32
    np.testing.assert_array_equal(got_labels, labels + 1)
    assert got_labels.min() >= 1 and got_labels.max() <= 10
    assert sets.dtype == np.uint8
    np.testing.assert_array_equal(sets, [1] * (5 * PER_BATCH) + [3] * PER_BATCH)
    assert classes == CLASSES


def test_load_rejects_an_archive_without_the_batches(tmp_path):
    with tarfile.open(tmp_path / cifar10.ARCHIVE, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        tar.addfile(info, io.BytesIO())
    with pytest.raises(ValueError, match="data_batch_1.*python version"):
        cifar10.load(tmp_path)


def test_load_rejects_a_damaged_archive(mini, tmp_path):
    payload = (mini[0] / cifar10.ARCHIVE).read_bytes()
    (tmp_path / cifar10.ARCHIVE).write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match="cannot read .*delete it to download it again"):
        cifar10.load(tmp_path)


@pytest.mark.parametrize("shape", [(3072,), (2, 3071), (2, 3, 1024)])
def test_rows_to_images_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match=r"rows must have shape \(N, 3072\)"):
        cifar10.rows_to_images(np.zeros(shape, dtype=np.uint8))


def test_load_refuses_pickles_that_are_not_arrays(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    payload = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
    with tarfile.open(tmp_path / cifar10.ARCHIVE, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(pickle.UnpicklingError, match="only hold arrays.*getcwd"):
        cifar10.load(tmp_path)


# --------------------------------------------------------------------------------------------------
# Preprocessing against the formulas of getCifarImdb, in float64
# --------------------------------------------------------------------------------------------------


def reference_preprocess(images, sets, whiten, contrast_normalization):
    n = images.shape[3]
    z = images.astype(np.float64).reshape(-1, n, order="F")  # one column per image, as MATLAB
    train = sets == 1
    z = z - z[:, train].mean(axis=1, keepdims=True)
    if contrast_normalization:
        z = z - z.mean(axis=0, keepdims=True)
        s = z.std(axis=0, ddof=1)
        z = z * (s.mean() / np.maximum(s, 40))
    if whiten:
        w = z[:, train] @ z[:, train].T / n
        d2, v = np.linalg.eigh(w)
        d2 = np.maximum(d2, 0)
        en = np.sqrt(d2.mean())
        z = v @ np.diag(en / np.maximum(np.sqrt(d2), 10)) @ v.T @ z
    return z.reshape(images.shape, order="F")


def small_images(n, seed):
    """Images on the 0..255 scale whose statistics straddle both floors (40 and 10)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (4, 4, 3, n)).astype(np.uint8)
    images[..., ::3] = rng.integers(120, 150, (4, 4, 3, len(range(0, n, 3))))  # std below 40
    return images


@pytest.mark.parametrize("n_train", [20, 90])  # fewer, then more training images than 48 pixels
@pytest.mark.parametrize("whiten", [True, False])
@pytest.mark.parametrize("contrast", [True, False])
def test_preprocess_matches_formulas(n_train, whiten, contrast):
    n = n_train + 10
    images = small_images(n, seed=n_train)
    sets = np.array([1] * n_train + [3] * 10, dtype=np.uint8)
    got = cifar10.preprocess(images, sets, whiten=whiten, contrast_normalization=contrast)
    want = reference_preprocess(images, sets, whiten, contrast)
    assert got.dtype == np.float32 and got.shape == images.shape and got.flags.f_contiguous
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)


def test_preprocess_floors_are_active_in_the_test_data():
    # The test above only checks the floors if some statistics fall below them and some above.
    images = small_images(100, seed=90)
    z = images.astype(np.float64).reshape(-1, 100, order="F")
    z = z - z[:, :90].mean(axis=1, keepdims=True)
    z = z - z.mean(axis=0)
    s = z.std(axis=0, ddof=1)
    assert (s < 40).any() and (s > 40).any()
    z = z * (s.mean() / np.maximum(s, 40))
    d = np.sqrt(np.maximum(np.linalg.eigvalsh(z[:, :90] @ z[:, :90].T / 100), 0))
    assert (d < 10).any() and (d > 10).any()


def test_preprocess_uses_training_statistics_only():
    images = small_images(40, seed=3)
    sets = np.array([1] * 30 + [3] * 10)
    changed = images.copy()
    changed[..., 30:] = 255 - changed[..., 30:]
    a = cifar10.preprocess(images, sets, whiten=False, contrast_normalization=False)
    b = cifar10.preprocess(changed, sets, whiten=False, contrast_normalization=False)
    np.testing.assert_array_equal(a[..., :30], b[..., :30])


@pytest.mark.parametrize("images, sets, message", [
    (np.zeros((4, 4, 3)), np.ones(3), "4-D"),
    (np.zeros((4, 4, 3, 5)), np.ones(4), "sets has 4 entries for 5 images"),
    (np.zeros((4, 4, 3, 5)), np.full(5, 3), "no training image"),
])
def test_preprocess_rejects_bad_arguments(images, sets, message):
    with pytest.raises(ValueError, match=message):
        cifar10.preprocess(images, sets)


@pytest.mark.parametrize("whiten, contrast", [(True, True), (False, True), (True, False)])
def test_get_imdb_preprocesses_and_caches(mini, tmp_path, monkeypatch, whiten, contrast):
    folder, _, _ = mini
    imdb = cifar10.get_imdb(folder, whiten=whiten, contrast_normalization=contrast,
                            cache_dir=tmp_path)
    images, labels, sets, classes = cifar10.load(folder)
    want = cifar10.preprocess(images, sets, whiten=whiten, contrast_normalization=contrast)
    np.testing.assert_array_equal(imdb["images"]["data"], want)
    np.testing.assert_array_equal(imdb["images"]["labels"], labels)
    np.testing.assert_array_equal(imdb["images"]["set"], sets)
    assert imdb["meta"] == {"sets": ["train", "val", "test"], "classes": CLASSES}
    cached = list(tmp_path.iterdir())
    assert [p.name for p in cached] == [
        f"imdb-v1-whiten{int(whiten)}-contrast{int(contrast)}.npz"]

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(cifar10, "load", no_reading)
    again = cifar10.get_imdb(folder, whiten=whiten, contrast_normalization=contrast,
                             cache_dir=tmp_path)
    np.testing.assert_array_equal(again["images"]["data"], want)
    assert again["images"]["data"].flags.f_contiguous
    assert again["meta"] == imdb["meta"]
    with pytest.raises(AssertionError, match="cache was not used"):
        cifar10.get_imdb(folder, whiten=not whiten, contrast_normalization=contrast,
                         cache_dir=tmp_path)


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


class FixedDraw:
    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


@pytest.mark.parametrize("draw, flipped", [(0.7, True), (0.5, False), (0.2, False)])
def test_get_batch_flips_the_whole_batch_left_right(draw, flipped):
    data = np.asfortranarray(np.random.default_rng(0).standard_normal((32, 32, 3, 10),
                                                                       dtype=np.float32))
    imdb = {"images": {"data": data, "labels": np.arange(1, 11, dtype=np.float32)}}
    batch = np.array([7, 2, 5])
    images, labels = cifar10.get_batch(imdb, batch, rng=FixedDraw(draw))
    want = data[:, :, :, batch]
    if flipped:
        want = want[:, ::-1]
    np.testing.assert_array_equal(images, want)
    assert images.flags.f_contiguous and images.dtype == np.float32
    np.testing.assert_array_equal(labels, [8, 3, 6])


def test_get_batch_draws_from_numpys_global_generator():
    data = np.asfortranarray(np.arange(2 * 2 * 1 * 3, dtype=np.float32).reshape(2, 2, 1, 3))
    imdb = {"images": {"data": data, "labels": np.ones(3, dtype=np.float32)}}
    flips = []
    for seed in range(20):
        np.random.seed(seed)
        draw = np.random.random()
        np.random.seed(seed)
        images, _ = cifar10.get_batch(imdb, [0, 1, 2])
        flips.append(bool(images[0, 0, 0, 0] == data[0, 1, 0, 0]))
        assert flips[-1] == (draw > 0.5)
    assert any(flips) and not all(flips)


# --------------------------------------------------------------------------------------------------
# Downloading from a local server
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def server(monkeypatch):
    """A bounded HTTP server on 127.0.0.1: serves `payload`, or dies after `cut` bytes (in the
    first `cuts` answers only, when that is set); counts the `requests`. pooch's waits between
    retries (1 s, 2 s, ...) are recorded in `waits` instead of slept."""
    behaviour = {"payload": b"", "cut": None, "cuts": None, "requests": 0, "waits": []}
    monkeypatch.setattr(pooch.core.time, "sleep", behaviour["waits"].append)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            behaviour["requests"] += 1
            payload = behaviour["payload"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            cut = behaviour["cut"]
            if behaviour["cuts"] is not None:
                cut = cut if behaviour["cuts"] > 0 else None
                behaviour["cuts"] -= 1
            self.wfile.write(payload if cut is None else payload[:cut])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    deadline = threading.Timer(60, httpd.shutdown)  # stops by itself even if a test hangs
    deadline.daemon = True
    deadline.start()
    behaviour["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/{cifar10.ARCHIVE}"
    try:
        yield behaviour
    finally:
        deadline.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def archive_bytes(mini):
    payload = (mini[0] / cifar10.ARCHIVE).read_bytes()
    return payload, hashlib.md5(payload).hexdigest()


def test_download_verifies_and_saves_the_archive(server, archive_bytes, tmp_path):
    payload, md5 = archive_bytes
    server["payload"] = payload
    folder = tmp_path / "new"
    path = cifar10.download(folder, url=server["url"], md5=md5, timeout=10, progress=False)
    assert Path(path) == folder / cifar10.ARCHIVE
    assert Path(path).read_bytes() == payload
    assert os.listdir(folder) == [cifar10.ARCHIVE]


def test_load_downloads_a_missing_archive(server, archive_bytes, mini, tmp_path):
    payload, md5 = archive_bytes
    server["payload"] = payload
    images, labels, _, _ = cifar10.load(tmp_path, url=server["url"], md5=md5, progress=False)
    np.testing.assert_array_equal(labels, mini[2] + 1)
    assert os.listdir(tmp_path) == [cifar10.ARCHIVE]


def test_download_with_a_wrong_checksum_leaves_nothing(server, archive_bytes, tmp_path):
    server["payload"] = archive_bytes[0]
    with pytest.raises(RuntimeError) as error:
        cifar10.download(tmp_path, url=server["url"], md5="0" * 32, timeout=10, progress=False)
    message = str(error.value)
    assert "MD5" in message and archive_bytes[1] in message and "0" * 32 in message
    assert str(tmp_path) in message and cifar10.ARCHIVE in message
    assert os.listdir(tmp_path) == []


def test_download_cut_off_mid_transfer_leaves_nothing(server, archive_bytes, tmp_path):
    payload, md5 = archive_bytes
    server["payload"], server["cut"] = payload, len(payload) // 2
    with pytest.raises(RuntimeError, match="nothing was saved") as error:
        cifar10.download(tmp_path, url=server["url"], md5=md5, timeout=10, progress=False)
    assert str(tmp_path) in str(error.value)
    assert os.listdir(tmp_path) == []


def test_download_tries_a_broken_transfer_again(server, archive_bytes, tmp_path):
    payload, md5 = archive_bytes
    server["payload"], server["cut"], server["cuts"] = payload, len(payload) // 2, 2
    path = cifar10.download(tmp_path, url=server["url"], md5=md5, timeout=10, progress=False)
    assert Path(path).read_bytes() == payload and os.listdir(tmp_path) == [cifar10.ARCHIVE]
    assert server["requests"] == 3 and server["waits"] == [1, 2]


def test_download_keeps_an_archive_that_is_already_there(server, archive_bytes, tmp_path):
    payload, md5 = archive_bytes
    (tmp_path / cifar10.ARCHIVE).write_bytes(payload)
    assert cifar10.download(tmp_path, url=server["url"], md5=md5, progress=False) == str(
        tmp_path / cifar10.ARCHIVE)
    assert server["requests"] == 0


def test_download_offline_says_where_to_put_the_file(tmp_path):
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/{cifar10.ARCHIVE}"
    with pytest.raises(RuntimeError, match="could not download") as error:
        cifar10.load(tmp_path, url=url, progress=False)
    message = str(error.value)
    assert str(tmp_path) in message and cifar10.ARCHIVE in message
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# The example, end to end
# --------------------------------------------------------------------------------------------------


def example_env():
    """The environment of the example's process: it imports the cnnx these tests import."""
    where = str(Path(cnnx.__file__).resolve().parents[1])
    paths = [where] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def run_example(*args):
    env = example_env()
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "cifar10.py"), "--threads", "1", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def final_error(output):
    found = re.findall(r"test top-1 error after epoch (\d+): ([0-9.]+)", output)
    assert found, output
    epoch, error = found[-1]
    return int(epoch), float(error)


@pytest.mark.slow
@pytest.mark.parametrize("network", ["simplenn", "dagnn"])
def test_example_trains_saves_and_resumes(mini, tmp_path, network):
    folder = mini[0]
    exp = tmp_path / "exp"
    common = ["--data-dir", folder, "--exp-dir", exp, "--subset", 40, "--batch-size", 20,
              "--network", network]
    epoch, error = final_error(run_example(*common, "--epochs", 2))
    assert epoch == 2 and 0 <= error <= 1
    for name in ("net-epoch-1.mat", "net-epoch-2.mat", "stats.json"):
        assert (exp / name).is_file(), name
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        assert (exp / "net-train.png").is_file()
    written = {p.name: p.stat().st_mtime_ns for p in exp.glob("net-epoch-*.mat")}

    # A second run resumes after epoch 2: it trains epoch 3 only.
    epoch, _ = final_error(run_example(*common, "--epochs", 3))
    assert epoch == 3 and (exp / "net-epoch-3.mat").is_file()
    for name, mtime in written.items():
        assert (exp / name).stat().st_mtime_ns == mtime, f"{name} was rewritten"

    # --restart trains from epoch 1 again.
    epoch, _ = final_error(run_example(*common, "--epochs", 1, "--restart"))
    assert epoch == 1
    assert (exp / "net-epoch-1.mat").stat().st_mtime_ns != written["net-epoch-1.mat"]


@pytest.mark.slow
def test_example_trains_nin_without_whitening(mini, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / cifar10.ARCHIVE).write_bytes((mini[0] / cifar10.ARCHIVE).read_bytes())
    output = run_example("--model", "nin", "--data-dir", data, "--exp-dir", tmp_path / "exp",
                         "--subset", 10, "--batch-size", 10, "--epochs", 1, "--no-whiten",
                         "--no-contrast-normalization", "--learning-rate", 0.001)
    assert "nin (simplenn)" in output
    assert final_error(output)[0] == 1
    assert (tmp_path / "exp" / "net-epoch-1.mat").is_file()
    assert (data / "imdb-v1-whiten0-contrast0.npz").is_file()


def load_example():
    spec = importlib.util.spec_from_file_location("cifar10_example", ROOT / "examples" / "cifar10.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.mark.parametrize("args, message", [
    (["--epochs", 0], "--epochs must be at least 1"),
    (["--subset", -5], "--subset must be at least 1"),
    (["--learning-rate", 0], "--learning-rate must be positive"),
    (["--model", "vgg"], "invalid choice"),
])
def test_example_rejects_bad_arguments(args, message, capsys):
    example = load_example()
    with pytest.raises(SystemExit) as stop:
        example.parse_args([str(a) for a in args])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_example_offline_says_where_to_put_the_archive(tmp_path, monkeypatch, capsys):
    example = load_example()

    def offline(host, *args, **kwargs):  # what a machine without a network answers
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    data_dir = tmp_path / "cifar"
    code = example.main(["--data-dir", str(data_dir), "--exp-dir", str(tmp_path / "exp")])
    err = capsys.readouterr().err
    assert code == 1
    assert "could not download" in err and str(data_dir) in err and "Traceback" not in err
    assert os.listdir(data_dir) == []


@pytest.mark.parametrize("args, folder", [
    ([], "cifar-lenet-simplenn"),
    (["--model", "nin", "--network", "dagnn"], "cifar-nin-dagnn"),
    (["--batch-norm", "--network", "dagnn"], "cifar-lenet-dagnn-bnorm"),
])
def test_example_default_folder_names_model_and_wrapper(args, folder):
    assert load_example().parse_args(args).exp_dir == os.path.join("data", folder)


def run_in_process(capsys, *args, code=0):
    """The example's main() in this process (its script runs as a process in the tests above):
    its exit code must be ``code``; returns what it printed (stdout, then stderr)."""
    assert load_example().main(["--threads", "1", *map(str, args)]) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.mark.slow
def test_example_refuses_a_folder_of_another_network_and_restart_clears_it(mini, tmp_path, capsys, restore_threads):
    exp = tmp_path / "exp"
    common = ["--data-dir", mini[0], "--exp-dir", exp, "--subset", 20, "--batch-size", 20]
    run_in_process(capsys, *common, "--epochs", 2)
    checkpoint = exp / "net-epoch-2.mat"
    _, err = run_in_process(capsys, *common, "--epochs", 3, "--model", "nin", code=1)
    assert err.strip() == (
        f"cnn_train: the checkpoint {checkpoint} holds another network than the one to train (the checkpoint "
        "has layers[0] ('layer1'): conv with shapes 5x5x3x32, 32, net has layers[0] ('conv1'): conv with "
        "shapes 5x5x3x192, 192); train it in another exp_dir, or pass continue_=False to start this one over")
    _, err = run_in_process(capsys, *common, "--epochs", 3, "--network", "dagnn", code=1)
    assert "(the checkpoint has a SimpleNN network, net has a DagNN network)" in err
    assert sorted(p.name for p in exp.glob("*.mat")) == ["net-epoch-1.mat", "net-epoch-2.mat"]

    # --restart with another model replaces the old run, so the next plain run continues the new one
    output, _ = run_in_process(capsys, *common, "--epochs", 1, "--model", "nin", "--restart")
    assert "nin (simplenn)" in output
    assert sorted(p.name for p in exp.glob("*.mat")) == ["net-epoch-1.mat"]
    assert final_error("".join(run_in_process(capsys, *common, "--epochs", 2, "--model", "nin")))[0] == 2


@pytest.mark.slow
def test_example_with_batch_norm_trains_lenet_with_bnorm_layers(mini, tmp_path, capsys, restore_threads):
    exp = tmp_path / "exp"
    output, _ = run_in_process(capsys, "--data-dir", mini[0], "--exp-dir", exp, "--subset", 20, "--batch-size", 10,
                               "--epochs", 1, "--batch-norm")
    assert "cifar10: lenet-bnorm (simplenn), 20 training and 4 test images" in output
    net = load_matconvnet(exp / "net-epoch-1.mat")
    bnorms = [layer for layer in net["layers"] if layer["type"] == "bnorm"]
    assert [layer["weights"][2].shape for layer in bnorms] == [(32, 2), (32, 2), (64, 2), (64, 2)]
    assert all((layer["weights"][2][:, 1] > 0).all() for layer in bnorms)


def test_example_with_a_full_disk_names_the_cache_in_one_line(mini, tmp_path, monkeypatch, capsys):
    example = load_example()
    data = tmp_path / "data"
    data.mkdir()
    (data / cifar10.ARCHIVE).write_bytes((mini[0] / cifar10.ARCHIVE).read_bytes())

    def full(stream, **arrays):
        stream.write(b"PK half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cifar10.np, "savez", full)
    code = example.main(["--data-dir", str(data), "--exp-dir", str(tmp_path / "exp"), "--no-whiten"])
    err = capsys.readouterr().err
    cache = data / "imdb-v1-whiten0-contrast1.npz"
    assert code == 1
    assert err.strip() == (f"[Errno 28] cifar10.get_imdb: could not write the preprocessed-data cache {cache}: "
                           "No space left on device; the file is unchanged")
    assert sorted(os.listdir(data)) == [cifar10.ARCHIVE]
