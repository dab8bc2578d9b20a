"""Thread-count control and keeping BLAS single-threaded inside the kernels."""
import os
import subprocess
import sys
import threading

import pytest

import cnnx
from cnnx import _threads


def test_set_and_get_num_threads():
    old = cnnx.get_num_threads()
    try:
        cnnx.set_num_threads(1)
        assert cnnx.get_num_threads() == 1
        cnnx.set_num_threads(3)
        assert cnnx.get_num_threads() == (3 if _threads.openmp_enabled() else 1)
    finally:
        cnnx.set_num_threads(old)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError),
                                        (True, TypeError)])
def test_set_num_threads_rejects_bad_values(bad, error):
    with pytest.raises(error, match="set_num_threads"):
        cnnx.set_num_threads(bad)


def _threads_in_child(value, cwd):
    """Run ``import cnnx`` in a child with CNNX_NUM_THREADS set to ``value`` (None: unset)."""
    # cwd away from the source tree, so the child imports the installed (built) cnnx, as this one does
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(cnnx.__file__))))
    env.pop("CNNX_NUM_THREADS", None)
    if value is not None:
        env["CNNX_NUM_THREADS"] = value
    return subprocess.run([sys.executable, "-c", "import cnnx; print(cnnx.get_num_threads())"],
                          env=env, capture_output=True, text=True, cwd=cwd)


def test_environment_variable(tmp_path):
    out = _threads_in_child("1", tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "1"


def test_bad_environment_variable_is_a_clear_error(tmp_path):
    out = _threads_in_child("many", tmp_path)
    assert out.returncode != 0 and "CNNX_NUM_THREADS" in out.stderr


@pytest.fixture(scope="module")
def unset(tmp_path_factory):
    """What a child without CNNX_NUM_THREADS reports (one child for every comparison)."""
    return _threads_in_child(None, tmp_path_factory.mktemp("unset"))


@pytest.mark.parametrize("value", ["", " ", "\t \n"])
def test_empty_environment_variable_means_unset(tmp_path, unset, value):
    assert unset.returncode == 0, unset.stderr
    out = _threads_in_child(value, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == unset.stdout.strip()


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", "4 threads"])
def test_bad_environment_variable_message_says_what_is_expected(tmp_path, value):
    out = _threads_in_child(value, tmp_path)
    assert out.returncode != 0
    last_line = out.stderr.strip().splitlines()[-1]
    assert last_line == f"ValueError: CNNX_NUM_THREADS must be a positive integer, got {value!r}"


def test_blas_single_threaded_restores_and_nests():
    libs = _threads._blas_libraries()
    before = [get() for get, _ in libs]
    with _threads.blas_single_threaded():
        assert all(get() == 1 for get, _ in libs)
        with _threads.blas_single_threaded():
            assert all(get() == 1 for get, _ in libs)
        assert all(get() == 1 for get, _ in libs)
    assert [get() for get, _ in libs] == before


def test_blas_single_threaded_from_several_python_threads():
    libs = _threads._blas_libraries()
    before = [get() for get, _ in libs]
    seen = []
    barrier = threading.Barrier(4)

    def work():
        with _threads.blas_single_threaded():
            barrier.wait()
            seen.append([get() for get, _ in libs])
            barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(all(n == 1 for n in row) for row in seen) and len(seen) == 4
    assert [get() for get, _ in libs] == before


def test_threads_for_work(restore_threads):
    cnnx.set_num_threads(4)
    if not _threads.openmp_enabled():
        pytest.skip("built without OpenMP")
    assert _threads.threads_for_work(0, 100) == 1
    assert _threads.threads_for_work(100, 100) == 1
    assert _threads.threads_for_work(101, 100) == 2
    assert _threads.threads_for_work(350, 100) == 4
    assert _threads.threads_for_work(10**9, 100) == 4
    assert _threads.threads_for_work(10**9, 100, most=3) == 3
    assert _threads.threads_for_work(10**9, 100, most=0) == 1
    cnnx.set_num_threads(1)
    assert _threads.threads_for_work(10**9, 100) == 1


class _Recorder:
    """Stands in for a kernel module: records the n_threads of every call (the last argument)."""

    def __init__(self, real):
        self.real, self.threads = real, []

    def __getattr__(self, name):
        func = getattr(self.real, name)

        def call(*args):
            self.threads.append(args[-1])
            return func(*args)
        return call


@pytest.mark.parametrize("size, expected", [(6 * 6 * 3, 1), (1 << 15, 1), ((1 << 15) + 1, 2), (1 << 20, 2)])
def test_elementwise_blocks_follow_the_thread_policy(size, expected, restore_threads, monkeypatch):
    import numpy as np

    import cnnx.activations
    import cnnx.dropout
    import cnnx.nnloss
    import cnnx.pdist
    import cnnx.softmaxloss

    cnnx.set_num_threads(2)
    if not _threads.openmp_enabled():
        pytest.skip("built without OpenMP")
    x = np.ones((size, 1), np.float32)
    for module, call in ((cnnx.activations, lambda: cnnx.vl_nnrelu(x)),
                         (cnnx.activations, lambda: cnnx.vl_nngelu(x, x)),
                         (cnnx.activations, lambda: cnnx.vl_nnprelu(x, np.ones(1, np.float32))),
                         (cnnx.dropout, lambda: cnnx.vl_nndropout(x, seed=1)),
                         (cnnx.softmaxloss, lambda: cnnx.vl_nnsoftmaxloss(x.reshape(1, 1, 1, size), np.ones(size))),
                         (cnnx.nnloss, lambda: cnnx.vl_nnloss(x, x, loss="l2")),
                         (cnnx.pdist, lambda: cnnx.vl_nnpdist(x, x, 2))):
        recorder = _Recorder(module._kernels)
        monkeypatch.setattr(module, "_kernels", recorder)
        call()
        monkeypatch.undo()
        assert recorder.threads == [expected]


@pytest.mark.parametrize("shape, expected", [((8, 8, 8, 1), 1), ((32, 32, 32, 2), 1), ((32, 32, 32, 3), 2),
                                             ((300, 300, 1, 1), 1)])
def test_pool_follows_the_thread_policy(shape, expected, restore_threads, monkeypatch):
    import numpy as np

    import cnnx.pool

    cnnx.set_num_threads(2)
    if not _threads.openmp_enabled():
        pytest.skip("built without OpenMP")
    recorder = _Recorder(cnnx.pool._kernel)
    monkeypatch.setattr(cnnx.pool, "_kernel", recorder)
    cnnx.vl_nnpool(np.ones(shape, np.float32), 3)
    assert recorder.threads == [expected]  # (300 x 300 x 1 x 1: one plane, one thread)


def test_blas_lookup_uses_only_public_threadpoolctl_api(monkeypatch):
    import threadpoolctl

    real = threadpoolctl.ThreadpoolController

    class PublicOnly:
        """threadpoolctl's controller with nothing but its public methods info() and select()."""

        def __init__(self):
            self._controller = real()

        def info(self):
            return self._controller.info()

        def select(self, **kwargs):
            return self._controller.select(**kwargs)

    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", PublicOnly)
    monkeypatch.setattr(_threads, "_blas_controller", None)
    libs = _threads._blas_libraries()
    assert len(libs) == len([i for i in real().info() if i["user_api"] == "blas"]) > 0
    before = [get() for get, _ in libs]
    with _threads.blas_single_threaded():
        assert all(get() == 1 for get, _ in libs)
    assert [get() for get, _ in libs] == before
