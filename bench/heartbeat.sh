#!/usr/bin/env bash
# Heartbeat benchmark: `nightshift heartbeat` with 100 registered, live attempts.
# Results and method: docs/PERFORMANCE.md ("Heartbeat").
#
#   bash bench/heartbeat.sh                     # 100 attempts, 20 runs
#   BENCH_ATTEMPTS=10 BENCH_REPS=5 bash bench/heartbeat.sh
#
# NS_BIN=path uses that binary instead of building target/release/nightshift. No network.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
if [[ -z "${NS_BIN:-}" ]]; then
    (cd "$root" && cargo build --release --quiet)
    NS_BIN="$root/target/release/nightshift"
fi
export NS_BIN
python3 "$here/heartbeat.py"
