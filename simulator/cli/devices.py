"""``edgesim devices``: the bundled board profiles as a table, or in full as JSON."""
from __future__ import annotations

from device_profiles.loader import list_profiles, load_profile
from simulator.files import emit_json
from simulator.units import human_bytes

from .common import add_command, exit_codes, format_table


def _short(summary: str) -> str:
    """The emulator cell: a no-twin reason up to its first colon (--json has the whole reason)."""
    head, sep, reason = summary.partition(": ")
    return f"{head}: {reason.split(':')[0]}" if sep else summary


def register(sub) -> None:
    p = add_command(
        sub, "devices", help="list the device profiles (boards) edgesim knows",
        description="List the bundled device profiles: core, clock, RAM, flash, active power and how many\n"
                    "of their figures are estimates rather than datasheet values.\n"
                    "Give a path to a .toml file to check and show your own profile: a bad one exits 2 with\n"
                    "one line naming the file, the field and the value.",
        example="edgesim devices --json | jq '.devices[].name'",
        exits=exit_codes("0 listed"),
    )
    p.add_argument("profiles", nargs="*", metavar="DEVICE",
                   help="names or .toml paths to show (default: every bundled profile)")
    p.add_argument("--json", action="store_true", help="print the full profiles as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    profiles = [load_profile(x) for x in args.profiles] if args.profiles else list_profiles()
    if args.json:
        emit_json({"devices": [p.to_dict() for p in profiles]})
        return 0
    rows = [[p.name, p.core.cpu + ("" if p.core.fpu == "none" else f" ({p.core.fpu} FPU)"),
             f"{p.core.clock_hz / 1e6:g} MHz", human_bytes(p.memory.ram_bytes), human_bytes(p.memory.flash_bytes),
             f"{p.active_power_w * 1e3:.1f} mW", f"{len(p.sources)} ({len(p.estimates)} est.)",
             _short(p.emulator_summary)] for p in profiles]
    print(format_table(["name", "core", "clock", "RAM", "flash", "active power", "figures", "emulator"], rows))
    print(f"\n{len(profiles)} profile(s). Every figure carries a source; 'est.' counts those marked estimate "
          "(edgesim devices NAME --json shows each source).")
    return 0
