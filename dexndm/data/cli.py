"""``dexndm data info|validate|merge``: inspect, check and join trajectory datasets.

The schema is DESIGN.md's "Trajectory datasets (HDF5)" (``dexndm.data.schema``).

    dexndm data info FILE [--json] [--no-lock]
    dexndm data validate FILE [--no-lock]     exit 1 and one line per problem if invalid
    dexndm data merge OUT IN1 IN2 ...          a new file with every complete trajectory
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from dexndm.data.reader import TrajectoryFile
from dexndm.data.schema import SchemaError
from dexndm.data.validate import info, merge, validate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dexndm data", description="inspect, check and merge trajectory datasets")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("info", help="summary of a trajectory file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--no-lock", action="store_true", help="read a file another process is still writing")
    p = sub.add_parser("validate", help="check a file against the schema")
    p.add_argument("file")
    p.add_argument("--no-lock", action="store_true", help="read a file another process is still writing")
    p = sub.add_parser("merge", help="copy the trajectories of compatible files into a new file")
    p.add_argument("out")
    p.add_argument("inputs", nargs="+")
    return parser


def _fmt_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_info(summary: dict) -> None:
    table = Table(title=f"dexndm data info {summary['path']}")
    table.add_column("")
    table.add_column("value", justify="right")
    length = summary["length"]
    ratio = summary["success_ratio"]
    rows = [
        ("trajectories", f"{summary['trajectories']:,}"),
        ("incomplete groups (ignored)", str(summary["incomplete_groups"])),
        ("transitions", f"{summary['transitions']:,} ({summary['duration_s']:,.1f} s at {summary['control_rate_hz']:g} Hz)"),
        ("length min / mean / max", f"{length['min']} / {length['mean']:.1f} / {length['max']}"),
        ("success ratio", "-" if ratio is None else f"{ratio:.3f}"),
        ("objects", str(summary["objects"])),
        *((f"category {name}", str(count)) for name, count in summary["categories"].items()),
        *((f"domain {name}", str(count)) for name, count in summary["domains"].items()),
        ("source", summary["source"].get("kind", "?") + "".join(
            f", {k}={v}" for k, v in summary["source"].items() if k not in ("kind", "inputs"))),
        ("optional fields", ", ".join(f"{k} ({v})" for k, v in summary["optional_fields"].items()) or "-"),
        ("schema version", str(summary["schema_version"])),
        ("file size", _fmt_size(summary["file_size_bytes"])),
    ]
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns the exit code (0 ok, 1 invalid file, 2 error)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.what == "info":
            summary = info(args.file, locking=not args.no_lock)
            if args.json:
                print(json.dumps(summary))
            else:
                _print_info(summary)
            return 0
        if args.what == "validate":
            problems = validate(args.file, locking=not args.no_lock)
            if problems:
                for problem in problems:
                    print(problem)
                print(f"invalid: {len(problems)} problem(s) in {args.file}")
                return 1
            with TrajectoryFile(args.file, locking=not args.no_lock) as tf:
                print(f"valid: {len(tf)} trajectories")
            return 0
        count = merge(args.inputs, args.out)
        print(f"merged {count} trajectories from {len(args.inputs)} files into {args.out}")
        return 0
    except (OSError, SchemaError, ValueError, KeyError) as exc:
        print(f"dexndm data {args.what}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
