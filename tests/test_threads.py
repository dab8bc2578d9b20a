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


@pytest.mark.parametrize("value", ["", " ", "\t \n"])
def test_empty_environment_variable_means_unset(tmp_path, value):
    unset = _threads_in_child(None, tmp_path)
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
