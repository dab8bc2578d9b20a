"""The package is clean under the ruff configuration in pyproject.toml."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_the_package():
    ruff = shutil.which("ruff")
    if ruff is None or not (ROOT / "pyproject.toml").is_file():
        pytest.skip("ruff is not installed (it is in the 'test' extra)")
    result = subprocess.run([ruff, "check", "--no-cache", "cnnx", "examples", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
