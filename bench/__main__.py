"""`make bench`: run every bench/bench_*.py module and merge their figures into bench/results.json.

Each module has ``run(ctx: BenchContext) -> dict[str, float | int | str]``; keys are fixed in
DESIGN.md (add more freely, never rename). Servers are started once (embedded unless
REDIS_URL / DATABASE_URL are set) and shared by all modules.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from rich.progress import Progress

from bench.context import BenchContext

HERE = Path(__file__).parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="only these modules (e.g. bus arb); default: all")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.names:
        modules = [m for m in modules if m.removeprefix("bench_") in args.names]
    results: dict[str, object] = json.loads(args.out.read_text()) if args.out.exists() else {}
    failed = []
    with BenchContext.start() as ctx, Progress() as progress:
        task = progress.add_task("benchmarks", total=len(modules))
        for name in modules:
            progress.update(task, description=name)
            started = time.perf_counter()
            try:
                figures = importlib.import_module(f"bench.{name}").run(ctx)
            except Exception:
                failed.append(name)
                progress.console.print(f"[red]{name} failed[/red]\n{traceback.format_exc()}")
            else:
                results.update(figures)
                progress.console.print(f"{name} ({time.perf_counter() - started:.1f}s): {json.dumps(figures)}")
            progress.advance(task)
    results["_machine"] = f"{platform.node()} {platform.machine()} python {platform.python_version()}"
    results["_updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
