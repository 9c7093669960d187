"""The worked example trains a network to the accuracy the README promises."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")  # in the test extra: this runs in CI

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


def _run(*args):
    r = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_trains_to_95_percent_and_compares():
    out = _run("--epochs", "15", "--check", "0.95", "--compare")
    lines = [line for line in out.splitlines() if "test accuracy" in line]
    assert [line.split(":")[0].strip() for line in lines] == ["fastact", "NumPy (textbook)"]
    for line in lines:
        assert "activation and loss layers" in line and "% of the time" in line


@pytest.mark.parametrize("activation", ["leaky_relu", "elu", "sigmoid"])
def test_other_activations_and_float32(activation):
    _run("--activation", activation, "--epochs", "8", "--dtype", "float32", "--lr", "0.05", "--check", "0.9")


def test_check_fails_below_the_threshold():
    r = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "1", "--lr", "0", "--check", "0.99"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "is below 99.0%" in r.stderr
