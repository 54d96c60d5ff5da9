"""A signal can land anywhere: also while the plan's variant pool is still starting (CI saw a SIGTERM
inside ``ProcessPoolExecutor.submit`` turn into "cannot join thread before it is started" and exit 1).
These tests put the interrupt exactly there, in-process, so the race is hit every time."""
from __future__ import annotations

import multiprocessing
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import process as cf_process

import pytest

from simulator.cli import _dispatch
from simulator.cli.common import Terminated
from simulator.pools import stop_pool
from simulator.run import run_scenario

PICO_SMALL = {"name": "small", "device": "stm32f405-pyboard", "runtime": "native", "duration_s": 600.0,
              "workload": {"model": "mlp-digits", "lr": 0.005},
              "pipeline": {"sensor_rate_hz": 8.0, "window": 8, "label_every": 2},
              "schedule": {"every_n": 8, "batch": 8, "steps": 2},
              "compare": {"variants": [{"label": "plain", "techniques": {}},
                                       {"label": "fused", "techniques": {"fused_update": True}}]}}


def _no_children_left(timeout_s: float = 10.0) -> list:
    deadline = time.monotonic() + timeout_s
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return multiprocessing.active_children()


@pytest.mark.parametrize("signal_exc", [KeyboardInterrupt, Terminated])
def test_a_signal_while_the_variant_pool_starts_ends_the_pool_and_is_reported_as_the_signal(monkeypatch,
                                                                                          signal_exc):
    def interrupted_start(self):
        raise signal_exc

    # the manager thread exists but never starts: what a signal inside Thread.start() leaves behind
    monkeypatch.setattr(cf_process._ExecutorManagerThread, "start", interrupted_start)
    with pytest.raises(signal_exc):
        run_scenario(PICO_SMALL, workers=2)
    assert _no_children_left() == [], "a pool worker outlived the interrupted plan"


class _Args:
    command = "plan"

    def __init__(self, func):
        self.func = func


@pytest.mark.parametrize("signal_exc, code, word", [(KeyboardInterrupt, 130, "interrupted"),
                                                   (Terminated, 143, "terminated")])
def test_a_clean_up_that_fails_because_of_a_signal_exits_with_the_signals_code(capsys, signal_exc, code, word):
    def command(args):
        try:
            raise signal_exc
        finally:
            raise RuntimeError("cannot join thread before it is started")   # noqa: B012 - the point

    assert _dispatch(_Args(command)) == code
    err = capsys.readouterr().err
    assert err.strip() == f"edgesim plan: {word}"


def test_a_real_bug_still_exits_1_with_its_trace(capsys):
    def command(args):
        raise RuntimeError("a real bug")

    assert _dispatch(_Args(command)) == 1
    assert "a real bug" in capsys.readouterr().err


def _ignore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _busy(marker: str) -> None:
    open(marker, "w").close()
    time.sleep(60)


def test_stop_pool_ends_a_worker_that_sigterm_cannot_end(tmp_path):
    """Under load, a forked pool worker outlived stop_pool: its inherited Python SIGTERM handler never ran
    (a child forked from a threaded parent can hang in C). A busy worker that ignores SIGTERM stands in."""
    pool = ProcessPoolExecutor(max_workers=1, initializer=_ignore_sigterm)
    marker = tmp_path / "running"
    pool.submit(_busy, str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:   # the worker is busy and ignores SIGTERM
        time.sleep(0.02)
    assert marker.exists()
    procs = list(pool._processes.values())
    stop_pool(pool)
    assert not any(p.is_alive() for p in procs), "a worker that ignores SIGTERM outlived stop_pool"
