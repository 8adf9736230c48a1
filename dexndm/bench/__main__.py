"""``dexndm bench <what> [--json]``: run a benchmark and print a table or one JSON object."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

BENCHMARKS = {"sim": "dexndm.bench.sim", "ppo": "dexndm.bench.ppo", "models": "dexndm.bench.models",
              "deploy": "dexndm.bench.deploy"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="dexndm bench", description=__doc__)
    parser.add_argument("what", choices=sorted(BENCHMARKS))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                        help="ppo only: ppo.precision of the timed training (default auto, as training: bf16 "
                             "where the device computes it natively)")
    args = parser.parse_args(sys.argv[1:])
    if args.precision is not None and args.what != "ppo":
        parser.error("--precision applies to `dexndm bench ppo` only")
    import importlib

    extra = {"precision": args.precision} if args.precision else {}
    result = importlib.import_module(BENCHMARKS[args.what]).run(quick=args.quick, **extra)
    if args.json:
        print(json.dumps(result))
        return 0
    table = Table(title=f"dexndm bench {args.what}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
