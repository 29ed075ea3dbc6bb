#!/usr/bin/env bash
# The wheel is the product (pip and Docker users run it, not the checkout). Build it, install it
# with the rl extra into a fresh venv outside the checkout, and from an empty folder check that it
# trades (`tradewind up --mode replay`, then fills > 0 in `tradewind status --json`) and trains
# (a tiny `tradewind train` on a local Ray). Also: `make wheel-check`.
#
#   PYTHON=python3.11  TORCH_SPEC=torch==2.13.0  TORCH_INDEX=<url>  DURATION=30
#   KEEP=1 keeps the work dir under /tmp (always kept when a check fails).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}
DURATION=${DURATION:-30}
# Under /tmp and short: Ray's unix socket paths below it are length-limited.
work=$(mktemp -d /tmp/tw-wheel.XXXXXX)
started=$SECONDS
up_pid=
passed=0

say() { echo "wheel-check [$((SECONDS - started))s]: $*" >&2; }
fail() {
    say "FAILED: $*"
    for log in "$work"/run/*.log; do
        [ -f "$log" ] && { echo "--- tail of $log" >&2; tail -n 40 "$log" >&2; }
    done
    exit 1
}
cleanup() {
    [ -n "$up_pid" ] && kill -TERM "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null
    if [ "$passed" = 1 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; else say "kept $work"; fi
}
trap cleanup EXIT

# 1. Build from a copy of what the Dockerfile copies: a build in the checkout reuses its build/,
#    whose stale files would hide a missing package-data rule.
mkdir -p "$work/src"
cp "$repo/pyproject.toml" "$repo/README.md" "$repo/LICENSE" "$work/src/"
cp -r "$repo/shared" "$repo/services" "$work/src/"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/src" || fail "pip wheel"
wheel=$(ls "$work"/dist/tradewind-*.whl)
say "built $(basename "$wheel") ($("$PYTHON" -c 'import sys, zipfile; print(len(zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel") files)"

# 2. A fresh venv outside the checkout; torch first so that the rl extra never pulls another build.
"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --quiet)
"${pip[@]}" install "$TORCH_SPEC" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} || fail "install $TORCH_SPEC"
"${pip[@]}" install "$wheel[rl]" || fail "install the wheel"
say "installed into $work/venv"

# 3. From an empty folder, with nothing of the checkout or the caller's stack in reach.
mkdir "$work/run"
cd "$work/run"
free_port() { "$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dashboard_port=$(free_port)
tw=(env -u REDIS_URL -u DATABASE_URL -u RAY_ADDRESS -u PYTHONPATH -u TRADEWIND_CONFIG -u TRADEWIND_VAR_DIR
    TRADEWIND_METRICS__PORT=0 TRADEWIND_DASHBOARD__PORT="$dashboard_port" RAY_TMPDIR="$work/ray"
    "$work/venv/bin/tradewind")
where=$("$work/venv/bin/python" -c 'import services, shared; print(shared.__file__, services.__path__[0])')
case "$where" in *"$repo"*) fail "imports come from the checkout: $where" ;; esac
mkdir -p "$work/ray"

# 3a. It trades: the whole stack on the shipped replay sample, embedded Redis and PostgreSQL.
"${tw[@]}" up --mode replay --duration "$DURATION" >up.log 2>&1 &
up_pid=$!
# While it runs, its dashboard serves its page and its API.
"$work/venv/bin/python" - "$dashboard_port" "$DURATION" "$up_pid" <<'EOF' || fail "dashboard"
import os, sys, time, urllib.request
port, deadline, pid = int(sys.argv[1]), time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
while True:
    try:
        for path in ("/", "/api/streams"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
                assert reply.status == 200 and reply.read(), path
        break
    except OSError as exc:
        os.kill(pid, 0)  # raises once `tradewind up` has exited
        if time.monotonic() > deadline:
            sys.exit(f"the dashboard never answered on 127.0.0.1:{port}: {exc}")
        time.sleep(0.5)
EOF
status=0
wait "$up_pid" || status=$?
up_pid=
[ "$status" = 0 ] || fail "tradewind up exited $status"
tail -n 1 up.log | "$work/venv/bin/python" -c 'import json, sys; assert json.loads(sys.stdin.read())["event"] == "summary"' \
    || fail "tradewind up printed no summary line"
"${tw[@]}" status --json >status.json 2>status.log || fail "tradewind status"
"$work/venv/bin/python" - status.json <<'EOF' || fail "no fills"
import json, sys
status = json.load(open(sys.argv[1]))
by_strategy = status.get("fills_by_strategy", "n/a")
print(f"wheel-check: orders {status['orders']}, fills {status['fills']}, by strategy {by_strategy}", file=sys.stderr)
assert status["fills"] > 0
EOF

# 3b. It trains: a tiny PPO run on real candles, on a Ray of its own — even with a dead cluster
#     recorded where `ray start` leaves one (a plain ray.init() would retry it for minutes).
mkdir -p "$work/ray/ray"
echo "127.0.0.1:$(free_port)" >"$work/ray/ray/ray_current_cluster"
cp "$repo/tests/data/trainer/btc-perp-20211231_1m_head3000.csv.gz" candles.csv.gz
"${tw[@]}" train --algo ppo --data candles.csv.gz --out policy --timesteps 256 \
    --set training.train_batch_size_per_learner=256 --set training.minibatch_size=64 --set training.num_epochs=1 \
    >train.json 2>train.log || fail "tradewind train"
"$work/venv/bin/python" - train.json <<'EOF' || fail "training output"
import json, sys
from pathlib import Path
metrics = json.load(open(sys.argv[1]))
print(f"wheel-check: trained {metrics['timesteps']} steps on Ray {metrics['ray_address']} ({metrics['ray_nodes']} node)", file=sys.stderr)
assert metrics["timesteps"] >= 256 and metrics["ray_nodes"] == 1
assert (Path(metrics["checkpoint"]) / "tradewind.json").is_file()
EOF
passed=1
say "passed"
