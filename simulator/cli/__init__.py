"""The ``edgesim`` command line: one dispatcher, one module per subcommand; the top layer, imported by nothing
(docs/architecture.md, "Layers").

Exit codes: 0 success (for ``plan``: the schedule fits), 3 the schedule does not fit,
2 bad input or usage, 1 an internal error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from .common import EPILOG, EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, Formatter, Terminated

# module -> it defines register(subparsers), adding its subcommands with set_defaults(func=...)
COMMAND_MODULES = (
    "simulator.cli.devices",    # devices
    "simulator.cli.workloads",  # workloads
    "simulator.cli.plan",       # plan, demo
    "simulator.cli.sweep",      # sweep
    "simulator.cli.emulate",    # emulate, calibrate
    "simulator.cli.port",       # port
    "simulator.cli.compress",   # compress
)

DESCRIPTION = """\
edgesim answers one question before you touch hardware: will on-device training (personalisation)
of this model fit this device, on this schedule?  It simulates the device (RAM, compute, power) while
real numpy training runs through it, sweeps devices x schedules, runs the ported MicroPython on a
QEMU-emulated micro:bit, and writes HTML/Markdown/PNG reports.

start here:
  edgesim demo                     a simulated day of personalisation on a Cortex-M4F board
  edgesim devices                  the bundled board profiles
  edgesim workloads                the model zoo and the spec grammar
  edgesim plan --device bbc-microbit-v1 --workload mlp:16-12-10
"""

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgesim")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


_MAIN_PID: list[int] = []


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """SIGTERM ends a command like Ctrl-C (its clean-up runs, exit 143): the process-pool workers it
    started, which SIGTERM to this process alone would orphan, are killed first (they only compute;
    every finished result is already with this process). A forked worker that inherited this handler
    just exits."""
    if _MAIN_PID and os.getpid() != _MAIN_PID[-1]:
        os._exit(143)
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
    raise Terminated


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgesim", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"edgesim {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT
    import signal
    import threading

    in_main = threading.current_thread() is threading.main_thread()
    _MAIN_PID.append(os.getpid())
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        rc = _dispatch(args)
    finally:
        _MAIN_PID.pop()
        if in_main:
            signal.signal(signal.SIGTERM, old_term)
    return rc


def _signal_behind(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM during whose handling ``e`` was raised, if any."""
    seen: set[int] = set()
    cur: BaseException | None = e.__context__
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__context__
    return None


def _dispatch(args) -> int:
    """Run the command; map what it raises to an exit code and one line on stderr."""
    try:
        rc = args.func(args)
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated)
        print(f"edgesim {args.command}: {'terminated' if term else 'interrupted'}", file=sys.stderr)
        return 143 if term else 130
    except BrokenPipeError:
        # the reader went away (`edgesim plan | head`): not an error of ours; silence the flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        # input errors: one line naming the file, the field and the value
        print(f"edgesim {args.command}: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as e:  # noqa: BLE001 - the last line of defence prints the trace and exits 1
        signal_ = _signal_behind(e)
        if signal_ is not None:
            # a clean-up step failed because a signal cut it short: the signal is what happened
            term = isinstance(signal_, Terminated)
            print(f"edgesim {args.command}: {'terminated' if term else 'interrupted'}", file=sys.stderr)
            return 143 if term else 130
        traceback.print_exc()
        print(f"edgesim {args.command}: internal error (a bug: please report it with the trace above)",
              file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK if rc is None else int(rc)


if __name__ == "__main__":
    sys.exit(main())
