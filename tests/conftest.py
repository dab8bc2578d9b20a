"""Fixtures shared by the test files."""
import pytest

import cnnx


@pytest.fixture
def restore_threads():
    """Let a test change cnnx's thread count; put it back afterwards."""
    saved = cnnx.get_num_threads()
    yield
    cnnx.set_num_threads(saved)


@pytest.fixture
def one_thread(restore_threads):
    """Run a test on one kernel thread (tiny networks; results do not depend on it)."""
    cnnx.set_num_threads(1)
