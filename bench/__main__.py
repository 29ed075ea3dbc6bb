"""`make bench`: run every bench/bench_*.py module and write their figures to bench/results.json.

Each module has ``run(ctx: BenchContext) -> dict[str, float | int | str]``; keys are fixed in
DESIGN.md (add more freely, never rename). Servers are started once (embedded unless
REDIS_URL / DATABASE_URL are set) and shared by all modules.

A full run writes the file whole: a module that fails leaves its keys absent, never stale. A subset
(`python -m bench bus arb`) replaces only the keys those modules wrote last time (``_modules`` maps
each module to its keys and when they were measured). The README's table is regenerated afterwards.
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
from typing import Any

from rich.progress import Progress

from bench import table
from bench.context import BenchContext

HERE = Path(__file__).parent


def kept_results(previous: dict[str, Any], rerun: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What stays of an earlier results file when ``rerun`` modules run again: their old keys go.

    ``previous`` is empty for a full run, so nothing of an earlier run survives it."""
    results = {k: v for k, v in previous.items() if not k.startswith("_")}
    owners: dict[str, Any] = dict(previous.get("_modules", {}))
    for name in rerun:
        for key in owners.pop(name, {}).get("keys", []):
            results.pop(key, None)
    return results, owners


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="only these modules (e.g. bus arb); default: all")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.names:
        modules = [m for m in modules if m.removeprefix("bench_") in args.names]
    previous = json.loads(args.out.read_text()) if args.names and args.out.exists() else {}
    results, owners = kept_results(previous, modules)
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
                owners[name] = {"keys": sorted(figures), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                progress.console.print(f"{name} ({time.perf_counter() - started:.1f}s): {json.dumps(figures)}")
            progress.advance(task)
    results["_machine"] = f"{platform.node()} {platform.machine()} python {platform.python_version()}"
    results["_updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["_failed"] = failed
    results["_modules"] = dict(sorted(owners.items()))
    args.out.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.out == HERE / "results.json":
        table.rewrite(results_path=args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
