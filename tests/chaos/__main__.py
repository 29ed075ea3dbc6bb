"""``python -m tests.chaos [--out FILE] [--workdir DIR]``: one chaos run, its JSON summary on stdout."""

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.chaos.run import main

parser = argparse.ArgumentParser(prog="python -m tests.chaos")
parser.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
parser.add_argument("--workdir", type=Path, default=None, help="servers' data and logs (default: a temp dir)")
args = parser.parse_args()
workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tw-chaos-"))
workdir.mkdir(parents=True, exist_ok=True)
summary = asyncio.run(main(args.out, workdir))
sys.exit(0 if summary["duplicates"] == summary["lost_fills"] == summary["orders_while_halted"] == 0 else 1)
