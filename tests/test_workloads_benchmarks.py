"""The two workload benchmarks run end to end and print their ratios (tiny settings; no timing asserted)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.slow
def test_train_step_benchmark_prints_a_row_per_model_and_batch():
    out = _run("train_step.py", "--reps", "2")
    for name in ("mlp-digits", "lenet-digits", "dscnn-digits", "cnn1d-accel", "mlp-microbit"):
        assert sum(line.startswith(name) for line in out.splitlines()) == 3, out
    assert "ratio" in out
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "torch is not installed" in out
    else:
        assert "geometric-mean ratio" in out and "warning: first-step losses differ" not in out


@pytest.mark.slow
def test_techniques_benchmark_prints_savings_and_accuracy():
    out = _run("techniques.py", "--seeds", "1", "--epochs", "1")
    assert "IF + EMP (0.2, 0.2)" in out and "saved" in out and "headline" in out
    assert "Part 2: personalisation" in out
    base = next(line for line in out.splitlines() if line.startswith("baseline"))
    assert " 0.0%" in base
