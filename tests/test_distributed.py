"""cnn_train over MPI: 2 ranks on this machine (mpiexec -n 2) against one process.

Skipped when mpi4py (the extra ``cnnx[mpi]``) or mpiexec is missing.
"""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import mpi_worker
from cnnx import _distributed
from cnnx.train import cnn_train

HERE = os.path.dirname(os.path.abspath(__file__))


def mpiexec():
    pytest.importorskip("mpi4py")
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")  # pip's mpich, next to this Python
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpiexec is not installed")
    return found


def run_ranks(mode, folder, ranks=2):
    """Run mpi_worker.py MODE FOLDER on ``ranks`` ranks with this cnnx; returns the finished process."""
    import cnnx

    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnx.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, HERE]), CNNX_NUM_THREADS="1")
    return subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, os.path.join(HERE, "mpi_worker.py"),
                           mode, str(folder)], env=env, capture_output=True, text=True, timeout=120)


def reference(network_type, num_sub_batches, random=True, bnorm=False):
    net, imdb, get_batch = mpi_worker.problem(network_type, random, bnorm)
    trained, stats = cnn_train(net, imdb, get_batch, exp_dir=None, num_sub_batches=num_sub_batches,
                               **mpi_worker.OPTIONS)
    return mpi_worker.weights_of(trained), stats


@pytest.mark.parametrize("network_type", ["simplenn", "dagnn"])
def test_two_ranks_end_with_the_weights_of_one_process_with_two_sub_batches(tmp_path, one_thread, network_type):
    done = run_ranks(network_type, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    ranks = [np.load(tmp_path / f"{network_type}-rank{r}.npz") for r in (0, 1)]
    same, stats = reference(network_type, 2)
    for k, w in enumerate(same):  # bitwise: the same pieces, the same kernels, summed in the same order
        np.testing.assert_array_equal(ranks[0][f"arr_{k}"], w)
        np.testing.assert_array_equal(ranks[1][f"arr_{k}"], w)
    assert list(ranks[1]["num"]) == [45, 45, 45]  # the statistics count both ranks' images
    # ... equal up to rounding: both ranks' objectives add up in another order than one process's
    np.testing.assert_allclose(ranks[1]["objective"], [s["objective"] for s in stats["train"]], rtol=1e-12)

    # against one process without sub-batches (and without dropout and flips, which sub-batches
    # draw otherwise): only the float32 sums regrouped, after 18 steps
    plain = np.load(tmp_path / f"{network_type}-plain-rank1.npz")
    whole, _ = reference(network_type, 1, random=False)
    for k, w in enumerate(whole):
        np.testing.assert_allclose(plain[f"arr_{k}"], w, rtol=1e-5, atol=1e-6)
        assert not np.array_equal(plain[f"arr_{k}"], w) or k % 2  # the bound is not vacuous: they differ

    # only rank 0 wrote files; rank 1 resumed from the checkpoint rank 0 sent it
    assert sorted(os.listdir(tmp_path / "rank0")) == ["net-epoch-1.mat", "net-epoch-2.mat", "net-epoch-3.mat",
                                                    "stats.json"]
    assert not (tmp_path / "rank1").exists()
    assert done.stdout.count("resuming by loading epoch 2") == 0  # progress=False: nothing printed


def test_rank_zero_reports_the_bytes_a_step_exchanges_once(tmp_path):
    finished = run_ranks("report", tmp_path)
    assert finished.returncode == 0, finished.stderr
    _, stats = reference("simplenn", 1)
    sums = len(set(stats["train"][0]) - {"num", "time"})  # objective, top1err, top5err
    net, _, _ = mpi_worker.problem("simplenn")
    derivative_bytes = sum(-(-w.nbytes // 8) * 8 for layer in net["layers"] for w in layer.get("weights") or [])
    # Into each of the 2 ranks, the other's buffer: its image count, its statistic sums, its derivatives.
    expected = f"{8 + 8 * sums + derivative_bytes:,}"
    reports = [line for line in finished.stdout.splitlines() if line.startswith("cnn_train: 2 MPI ranks")]
    assert reports == [f"cnn_train: 2 MPI ranks, kernel threads per rank: 1; a training step gathers {expected} "
                       "bytes into every rank (one allgather)"]


@pytest.mark.parametrize("network_type", ["simplenn", "dagnn"])
def test_two_ranks_average_the_bnorm_moments_as_two_sub_batches(tmp_path, one_thread, network_type):
    done = run_ranks(f"bnorm-{network_type}", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    same, _ = reference(network_type, 2, bnorm=True)
    assert np.abs(same[4]).min() > 1e-3  # the moments (weights[2] of the bnorm layer) were learned
    for r in (0, 1):
        ranks = np.load(tmp_path / f"bnorm-{network_type}-rank{r}.npz")
        assert len(ranks.files) == len(same) == 7
        for k, w in enumerate(same):  # the moments too: every piece's moments x images, summed in rank order
            np.testing.assert_array_equal(ranks[f"arr_{k}"], w)


def test_a_mismatch_between_ranks_is_an_error_on_every_rank(tmp_path):
    done = run_ranks("mismatch", tmp_path)
    message = ("ValueError: cnn_train: rank 1 of 2 has another batch_size than rank 0 (9 on rank 1, 8 on rank 0); "
               "every rank must run the same training")
    assert f"rank 0: {message}" in done.stdout, done.stdout + done.stderr
    assert f"rank 1: {message}" in done.stdout


def test_a_rank_that_hangs_ends_the_job_after_the_timeout(tmp_path):
    start = time.monotonic()
    done = run_ranks("hang", tmp_path)
    assert time.monotonic() - start < 30  # rank 1 sleeps 60 s: rank 0 aborted the job after 3 s
    assert done.returncode != 0
    assert ("cnn_train: rank 0 of 2 waited 3 s for the other ranks at the exchange of derivatives: a rank died, "
            "hangs or stopped with an error (see its output); aborting the MPI job") in done.stderr, (
        done.stdout + done.stderr)


def test_one_rank_is_one_process():
    assert _distributed.communicator(None) is None
    with pytest.raises(TypeError, match="comm must be 'auto', None or an mpi4py communicator, got 3"):
        _distributed.communicator(3)
    mpi = pytest.importorskip("mpi4py.MPI")
    assert _distributed.communicator(mpi.COMM_SELF) is None  # one rank: the single-process code


def test_auto_without_mpiexec_is_one_process(monkeypatch):
    for name in _distributed._LAUNCHER_SIZES:
        monkeypatch.delenv(name, raising=False)
    assert _distributed.launched_ranks() == 1
    assert _distributed.communicator("auto") is None
    monkeypatch.setenv("PMI_SIZE", "2")
    assert _distributed.launched_ranks() == 2
