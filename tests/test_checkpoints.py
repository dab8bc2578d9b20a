"""Nothing lost, nothing silently wrong: model-file checksums, resuming, divergence, full disks."""
import errno
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.io

from cnnx.dagnn import DagNN
from cnnx.io import load_matconvnet, save_matconvnet, verify_matconvnet
from cnnx.train import cnn_train

QUIET = {"progress": False, "plot_statistics": False}


@pytest.fixture(scope="module")
def data():
    """Two Gaussian classes of 15x10x5 samples (as MatConvNet's solver test), and initial weights."""
    rng = np.random.default_rng(0)
    x = 2 * rng.standard_normal((15, 10, 5, 200), dtype=np.float32)
    x[..., 100:] += 2 * rng.standard_normal((15, 10, 5, 1), dtype=np.float32)
    imdb = {"x": x, "y": np.repeat([1.0, 2.0], 100).astype(np.float32), "images": {"set": np.ones(200)}}
    init_w = 0.01 * rng.standard_normal((15, 10, 5, 2), dtype=np.float32)
    return imdb, init_w


def net_of(init_w, name="fc"):
    return {"layers": [{"type": "conv", "name": name, "weights": [init_w.copy(), np.zeros(2, np.float32)]},
                       {"type": "softmaxloss", "name": "loss"}]}


def get_batch(imdb, batch):
    return imdb["x"][..., batch], imdb["y"][batch]


def train(data, folder, epochs, **opts):
    imdb, init_w = data
    return cnn_train(net_of(init_w), imdb, get_batch, exp_dir=folder, batch_size=50, num_epochs=epochs,
                     **{"learning_rate": 0.01, **QUIET, **opts})


def weights(net):
    return [w for layer in net["layers"] for w in layer.get("weights") or []]


def assert_same_weights(a, b):
    for x, y in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(np.ravel(x), np.ravel(y))  # biases come back 1 x K from a file


def damage(path, offset=None, count=64):
    """Overwrite ``count`` bytes in the middle of a file (the issue's corruption)."""
    size = os.path.getsize(path)
    offset = size // 2 if offset is None else offset
    with open(path, "r+b") as stream:
        stream.seek(offset)
        stream.write(bytes(range(count)))


def dead_pid():
    """The process id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --------------------------------------------------------------------------------------------------
# Model files carry a SHA-256 of themselves
# --------------------------------------------------------------------------------------------------


def test_a_saved_file_verifies_and_is_written_the_same_every_time(data, tmp_path):
    net = net_of(data[1])
    save_matconvnet(net, tmp_path / "a.mat", stats={"train": [{"objective": 1.0}]})
    save_matconvnet(net, tmp_path / "b.mat", stats={"train": [{"objective": 1.0}]})
    assert verify_matconvnet(tmp_path / "a.mat") is True
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
    loaded, extras = load_matconvnet(tmp_path / "a.mat", with_extra=True)
    assert sorted(extras) == ["stats"]  # the checksum is not one of the network's variables
    np.testing.assert_array_equal(loaded["layers"][0]["weights"][0], net["layers"][0]["weights"][0])


def test_matlab_readers_see_the_network_and_a_checksum_variable(data, tmp_path):
    path = tmp_path / "net.mat"
    save_matconvnet(net_of(data[1]), path)
    variables = scipy.io.loadmat(path)
    assert sorted(k for k in variables if not k.startswith("__")) == ["cnnx_sha256", "net"]
    assert re.fullmatch(r"[0-9a-f]{64}", str(variables["cnnx_sha256"][0]))
    assert scipy.io.matlab.matfile_version(str(path)) == (1, 0)  # MAT v5, MATLAB's -v7 reader


@pytest.mark.parametrize("where", ["middle", "header", "checksum", "truncated", "appended"])
def test_a_damaged_file_is_refused_by_name(data, tmp_path, where):
    path = tmp_path / "net-epoch-3.mat"
    save_matconvnet(net_of(data[1]), path)
    size = os.path.getsize(path)
    if where == "middle":
        damage(path)
    elif where == "header":
        damage(path, offset=120, count=4)
    elif where == "checksum":
        damage(path, offset=size - 10, count=4)
    elif where == "truncated":
        os.truncate(path, size - 200)
    else:
        with open(path, "ab") as stream:
            stream.write(b"\0" * 8)
    message = (f"load_matconvnet: {path} is damaged: its bytes do not match the SHA-256 checksum cnnx "
               "stored in it when it wrote the file (changed or truncated since)")
    if where == "header":  # the version field: scipy rejects the file before the checksum is read
        with pytest.raises(ValueError, match="load_matconvnet"):
            load_matconvnet(path)
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        verify_matconvnet(path)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_matconvnet(path)


def test_a_file_cnnx_did_not_write_loads_unchecked(data, tmp_path):
    path = tmp_path / "matlab.mat"  # as MATLAB (or cnnx before checksums) writes it
    layers = np.empty((1, 1), dtype=object)
    layers[0, 0] = {"type": "relu", "name": "relu1"}
    scipy.io.savemat(path, {"net": {"layers": layers, "meta": {}}})
    assert verify_matconvnet(path) is False
    assert load_matconvnet(path)["layers"][0]["name"] == "relu1"


def test_a_full_disk_names_the_model_file_and_keeps_the_old_one(data, tmp_path, monkeypatch):
    path = tmp_path / "net.mat"
    save_matconvnet(net_of(data[1]), path)
    before = path.read_bytes()

    def full(stream, *args, **kwargs):
        stream.write(b"MATLAB 5.0 MAT-file, half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scipy.io, "savemat", full)
    message = (f"[Errno {errno.ENOSPC}] save_matconvnet: could not write the model file {path}: "
               "No space left on device; the file is unchanged")
    with pytest.raises(OSError, match=re.escape(message)) as raised:
        save_matconvnet(net_of(data[1]), path)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["net.mat"]


# --------------------------------------------------------------------------------------------------
# Resuming trusts only what cnn_train wrote
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("network", ["simplenn", "dagnn"])
def test_resume_skips_a_damaged_checkpoint_and_ends_as_a_straight_run(data, tmp_path, capsys, one_thread,
                                                                      network):
    imdb, init_w = data
    net = net_of(init_w) if network == "simplenn" else DagNN.from_simplenn(net_of(init_w), canonical_names=True)
    batch = get_batch if network == "simplenn" else (lambda db, b: {"input": db["x"][..., b], "label": db["y"][b]})
    opts = dict(batch_size=50, learning_rate=0.01, **QUIET)
    straight, straight_stats = cnn_train(net, imdb, batch, exp_dir=tmp_path / "straight", num_epochs=4, **opts)
    folder = tmp_path / "run"
    cnn_train(net, imdb, batch, exp_dir=folder, num_epochs=3, **opts)
    damage(folder / "net-epoch-3.mat")
    capsys.readouterr()

    resumed, resumed_stats = cnn_train(net, imdb, batch, exp_dir=folder, num_epochs=4, **opts)
    out = capsys.readouterr().out
    damaged = folder / "net-epoch-3.mat"
    assert f"cnn_train: ignoring {damaged}: it cannot be read (load_matconvnet: {damaged} is damaged" in out
    assert "renamed it to net-epoch-3.mat.rejected" in out
    assert f"cnn_train: resuming from epoch 2 ({folder / 'net-epoch-2.mat'}), the newest checkpoint" in out
    assert (folder / "net-epoch-3.mat.rejected").is_file()
    assert all(verify_matconvnet(folder / f"net-epoch-{e}.mat") for e in range(1, 5))
    if network == "simplenn":
        assert_same_weights(straight, resumed)
    else:
        for a, b in zip(straight.params, resumed.params, strict=True):
            np.testing.assert_array_equal(np.ravel(a.value), np.ravel(b.value))
    assert [s["objective"] for s in resumed_stats["train"]] == [s["objective"] for s in straight_stats["train"]]


def test_resume_with_no_usable_checkpoint_starts_over(data, tmp_path, capsys, one_thread):
    folder = tmp_path / "run"
    train(data, folder, 1)
    damage(folder / "net-epoch-1.mat")
    capsys.readouterr()
    _, stats = train(data, folder, 1)
    assert f"cnn_train: no usable checkpoint in {folder}: starting from epoch 1" in capsys.readouterr().out
    assert len(stats["train"]) == 1 and verify_matconvnet(folder / "net-epoch-1.mat")


def test_stray_and_misnamed_checkpoints_do_not_block_resuming(data, tmp_path, capsys, one_thread):
    folder = tmp_path / "run"
    train(data, folder, 2)
    (folder / "net-epoch-99.mat").write_bytes((folder / "net-epoch-1.mat").read_bytes())  # a stray copy
    (folder / "net-epoch-03.mat").write_bytes((folder / "net-epoch-2.mat").read_bytes())
    capsys.readouterr()

    resumed, stats = train(data, folder, 3)
    out = capsys.readouterr().out
    assert (f"cnn_train: ignoring {folder / 'net-epoch-99.mat'}: its statistics cover 1 epochs, not 99, so it "
            "is not this folder's checkpoint of epoch 99; renamed it to net-epoch-99.mat.rejected") in out
    assert (f"cnn_train: ignoring {folder / 'net-epoch-03.mat'}: not a checkpoint name cnn_train writes "
            "(net-epoch-N.mat); left as it is") in out
    assert f"resuming from epoch 2 ({folder / 'net-epoch-2.mat'})" in out
    assert len(stats["train"]) == 3
    assert (folder / "net-epoch-03.mat").is_file() and not (folder / "net-epoch-99.mat").exists()
    straight, _ = train(data, tmp_path / "straight", 3)
    assert_same_weights(straight, resumed)


def test_resume_deletes_only_cnnx_temporaries_of_ended_processes(data, tmp_path, capsys, one_thread):
    folder = tmp_path / "run"
    train(data, folder, 1)
    pid = dead_pid()
    ours = [f".net-epoch-2.mat.{pid}.0123abcd.tmp", f".stats.json.{pid}.89abcdef.tmp",
            f".net-train.png.{pid}.deadbeef.tmp"]
    kept = [f".net-epoch-2.mat.{os.getpid()}.0123abcd.tmp",  # a process still writing
            ".stats.json.tmp", f".notes.txt.{pid}.0123abcd.tmp", ".net-epoch-2.mat.k2j4.tmp"]
    for name in ours + kept:
        (folder / name).write_bytes(b"half written")
    capsys.readouterr()
    train(data, folder, 1)
    out = capsys.readouterr().out
    assert f"cnn_train: deleted 3 temporary files left in {folder} by interrupted saves" in out
    assert sorted(n for n in os.listdir(folder) if n.startswith(".")) == sorted(kept)
    assert f"ignoring {folder / '.net-epoch-2.mat.k2j4.tmp'}: not a checkpoint name" in out


def test_resume_rewrites_the_statistics_the_crash_did_not_write(data, tmp_path, one_thread):
    pytest.importorskip("matplotlib")
    folder = tmp_path / "run"
    _, stats = train(data, folder, 2, plot_statistics=True)
    with open(folder / "stats.json") as stream:
        complete = json.load(stream)
    # the process died after renaming net-epoch-2.mat, before the statistics of epoch 2
    short = {phase: records[:1] for phase, records in complete.items()}
    with open(folder / "stats.json", "w") as stream:
        json.dump(short, stream)
    os.remove(folder / "net-train.png")

    _, again = train(data, folder, 2, plot_statistics=True)  # nothing left to train
    with open(folder / "stats.json") as stream:
        assert json.load(stream) == complete
    assert (folder / "net-train.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert again == stats


def test_resume_refuses_another_network(data, tmp_path):
    imdb, init_w = data
    folder = tmp_path / "run"
    train(data, folder, 1)
    other = net_of(init_w[:, :, :4])  # 4 input channels instead of 5
    with pytest.raises(ValueError, match=re.escape(
            f"cnn_train: the checkpoint {folder / 'net-epoch-1.mat'} holds another network than the one to "
            "train (the checkpoint has layers[0] ('fc'): conv with shapes 15x10x5x2, 2, net has layers[0] "
            "('fc'): conv with shapes 15x10x4x2, 2); train it in another exp_dir, or pass continue_=False "
            "to start this one over")):
        cnn_train(other, imdb, get_batch, exp_dir=folder, batch_size=50, num_epochs=2, **QUIET)
    dag = DagNN.from_simplenn(net_of(init_w), canonical_names=True)
    with pytest.raises(ValueError, match=re.escape(
            "(the checkpoint has a SimpleNN network, net has a DagNN network)")):
        cnn_train(dag, imdb, lambda db, b: {"input": db["x"][..., b], "label": db["y"][b]}, exp_dir=folder,
                  batch_size=50, num_epochs=2, **QUIET)
    # the folder is as it was
    assert sorted(os.listdir(folder)) == ["net-epoch-1.mat", "stats.json"]


def test_starting_over_replaces_the_earlier_runs_checkpoints(data, tmp_path, capsys, one_thread):
    imdb, init_w = data
    folder = tmp_path / "run"
    train(data, folder, 3)
    capsys.readouterr()

    def broken(db, b):
        raise KeyboardInterrupt

    # stopped before its first checkpoint: the earlier run is untouched
    with pytest.raises(KeyboardInterrupt):
        cnn_train(net_of(init_w), imdb, broken, exp_dir=folder, batch_size=50, num_epochs=1, continue_=False,
                  **QUIET)
    assert sorted(n for n in os.listdir(folder) if n.endswith(".mat")) == [
        "net-epoch-1.mat", "net-epoch-2.mat", "net-epoch-3.mat"]
    assert (f"cnn_train: continue_ is False: the 3 checkpoints of the earlier run in {folder} are deleted "
            "when this run saves its first") in capsys.readouterr().out

    restarted, _ = train(data, folder, 1, continue_=False, learning_rate=0.02)
    assert sorted(n for n in os.listdir(folder) if n.endswith(".mat")) == ["net-epoch-1.mat"]
    # a plain run now continues the new run, not the earlier one's epoch 3
    resumed, stats = train(data, folder, 2, learning_rate=0.02)
    straight, _ = train(data, tmp_path / "straight", 2, learning_rate=0.02)
    assert len(stats["train"]) == 2
    assert_same_weights(straight, resumed)


def test_exp_dir_that_is_a_file_is_a_clear_error(data, tmp_path):
    path = tmp_path / "exp"
    path.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=re.escape(f"cnn_train: exp_dir {path} is a file, not a folder")):
        train(data, path, 1)
    with pytest.raises(OSError, match=re.escape(f"cnn_train: cannot create exp_dir {path / 'sub'}: Not a directory")):
        train(data, path / "sub", 1)


# --------------------------------------------------------------------------------------------------
# Divergence stops the run before a NaN checkpoint
# --------------------------------------------------------------------------------------------------


def test_a_nan_objective_stops_the_run_naming_epoch_and_batch(data, tmp_path):
    imdb, init_w = data
    folder = tmp_path / "run"
    train(data, folder, 1)

    def batch_with_nan(db, b):  # the run resumes at epoch 2: its fourth batch has a NaN pixel
        images, labels = get_batch(db, b)
        batch_with_nan.calls += 1
        if batch_with_nan.calls == 4:
            images = images.copy()
            images[0, 0, 0, 0] = np.nan
        return images, labels

    batch_with_nan.calls = 0
    with pytest.raises(FloatingPointError, match=re.escape(
            "cnn_train: the objective became nan in train epoch 2, batch 4; stopped before saving this epoch, "
            "so the last checkpoint is intact (lower the learning rate, or pass check_finite=False to train "
            "on regardless)")):
        cnn_train(net_of(init_w), imdb, batch_with_nan, exp_dir=folder, batch_size=50, num_epochs=3,
                  learning_rate=0.01, **QUIET)
    assert sorted(n for n in os.listdir(folder) if n.endswith(".mat")) == ["net-epoch-1.mat"]
    assert verify_matconvnet(folder / "net-epoch-1.mat")


def test_an_infinite_parameter_stops_the_run_and_can_be_allowed(data, tmp_path):
    imdb, init_w = data
    with np.errstate(over="ignore"), pytest.raises(FloatingPointError, match=re.escape(
            "cnn_train: layers[0] ('fc') weights[0] became NaN or infinite in the update after train epoch 1, "
            "batch 1; stopped before saving")):
        cnn_train(net_of(init_w), imdb, get_batch, exp_dir=tmp_path, batch_size=50, num_epochs=1,
                  learning_rate=1e39, **QUIET)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".mat")]
    dag = DagNN.from_simplenn(net_of(init_w), canonical_names=True)
    with np.errstate(over="ignore"), pytest.raises(FloatingPointError, match=re.escape(
            "cnn_train: parameter 'fcf' became NaN")):
        cnn_train(dag, imdb, lambda db, b: {"input": db["x"][..., b], "label": db["y"][b]}, exp_dir=None,
                  batch_size=50, num_epochs=1, learning_rate=1e39, **QUIET)
    with np.errstate(all="ignore"):
        net, stats = cnn_train(net_of(init_w), imdb, get_batch, exp_dir=None, batch_size=50, num_epochs=1,
                               learning_rate=1e39, check_finite=False, **QUIET)
    assert not np.all(np.isfinite(net["layers"][0]["weights"][0]))


# --------------------------------------------------------------------------------------------------
# A full disk
# --------------------------------------------------------------------------------------------------


def test_a_full_disk_stops_training_naming_the_checkpoint(data, tmp_path, monkeypatch, one_thread):
    folder = tmp_path / "run"
    train(data, folder, 1)
    good = (folder / "net-epoch-1.mat").read_bytes()

    def full(stream, *args, **kwargs):
        stream.write(b"MATLAB 5.0 MAT-file, half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scipy.io, "savemat", full)
    path = folder / "net-epoch-2.mat"
    with pytest.raises(OSError, match=re.escape(
            f"cnn_train: could not save the checkpoint of epoch 2 (save_matconvnet: could not write the model "
            f"file {path}: No space left on device; the file is unchanged); net-epoch-1.mat is the last "
            "complete one")) as raised:
        train(data, folder, 2)
    assert raised.value.errno == errno.ENOSPC
    assert sorted(os.listdir(folder)) == ["net-epoch-1.mat", "stats.json"]
    assert (folder / "net-epoch-1.mat").read_bytes() == good


def test_a_file_size_limit_is_reported_once_with_the_file(data, tmp_path):
    """A real write failure from the kernel (RLIMIT_FSIZE: EFBIG), in a process of its own."""
    folder = tmp_path / "run"
    train(data, folder, 1)
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_checkpoints import get_batch, net_of
        from cnnx.train import cnn_train
        data = np.load({str(tmp_path / 'data.npz')!r})
        imdb = {{"x": data["x"], "y": data["y"], "images": {{"set": np.ones(200)}}}}
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        cnn_train(net_of(data["w"]), imdb, get_batch, exp_dir={str(folder)!r}, batch_size=50, num_epochs=2,
                  learning_rate=0.01, progress=False, plot_statistics=False)
    """)
    imdb, init_w = data
    np.savez(tmp_path / "data.npz", x=imdb["x"], y=imdb["y"], w=init_w)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CNNX_NUM_THREADS": "1"}, cwd=tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"OSError: [Errno {errno.EFBIG}] cnn_train: could not save the checkpoint of epoch 2 "
                    f"(save_matconvnet: could not write the model file {folder / 'net-epoch-2.mat'}: File too "
                    "large; the file is unchanged); net-epoch-1.mat is the last complete one")
    assert result.stderr.count("Traceback") == 1
    assert sorted(os.listdir(folder)) == ["net-epoch-1.mat", "stats.json"]
    assert verify_matconvnet(folder / "net-epoch-1.mat")



def test_extra_variables_cannot_take_the_checksums_name(data, tmp_path):
    with pytest.raises(ValueError, match=re.escape(
            "save_matconvnet: the variable name 'cnnx_sha256' is cnnx's own; use another")):
        save_matconvnet(net_of(data[1]), tmp_path / "net.mat", cnnx_sha256="0" * 64)


def test_octave_reads_a_sealed_checkpoint_as_matlab_does(tmp_path):
    """GNU Octave's MAT reader (MATLAB's format): the network, the statistics and the checksum load."""
    import shutil

    octave = shutil.which("octave-cli")
    if octave is None:
        pytest.skip("octave-cli is not installed (.ci/run installs it)")
    from cnnx.models import cifar_lenet

    net = cifar_lenet()
    path = tmp_path / "net-epoch-1.mat"
    save_matconvnet(net, path, state={"solverState": None}, stats={"train": [{"objective": 1.5, "num": 100}]})
    script = (f"s = load('{path}', 'net', 'stats'); w = s.net.layers{{1}}.weights{{1}}; "
              "printf('%d %s %s %.6f %g\\n', numel(s.net.layers), s.net.layers{1}.type, "
              "mat2str(size(w)), sum(w(:)), s.stats.train{1}.objective); "
              f"c = load('{path}', 'cnnx_sha256'); printf('%s\\n', c.cnnx_sha256);")
    result = subprocess.run([octave, "--no-gui", "--quiet", "--eval", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    summary, digest = result.stdout.splitlines()[:2]
    layers, kind, size, total, objective = re.fullmatch(r"(\d+) (\w+) (\[.*\]) (\S+) (\S+)", summary).groups()
    w = net["layers"][0]["weights"][0]
    assert (int(layers), kind, size) == (len(net["layers"]), "conv", "[5 5 3 32]")
    assert float(total) == pytest.approx(float(np.sum(w, dtype=np.float64)), abs=1e-5)
    assert float(objective) == 1.5
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
