#!/usr/bin/env bash
# The goals of issue 12 as ratios: every row of docs/PERFORMANCE.md's goal table, each subject
# timed alternately with its yardstick (median of the per-pair ratios), plus peak RSS of a tick
# and of `status --json` at N and BIG stages. Prints; asserts nothing.
#
#   bash bench/goals.sh                  # N=1000, BIG=10000, 15 pairs a row (~5-10 min on 2 cores)
#   BENCH_QUICK=1 bash bench/goals.sh    # N=100, BIG=1000, 5 pairs (~1 min)
#
# Overrides: BENCH_N, BENCH_BIG, BENCH_PAIRS, BENCH_BATCH_PAIRS, BENCH_JSON=path,
# BENCH_KEEP=1, NS_BIN=path (a built binary instead of `cargo build --release`).
# Same sandbox as bench/run.sh: throw-away repos under $TMPDIR, private HOME, no network.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

command -v git >/dev/null || { echo "bench: git is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench: python3 is required" >&2; exit 1; }

if [[ -z "${NS_BIN:-}" ]]; then
    echo "bench: cargo build --release" >&2
    (cd "$root" && cargo build --release --quiet)
    NS_BIN="${CARGO_TARGET_DIR:-$root/target}/release/nightshift"
fi
[[ -x "$NS_BIN" ]] || { echo "bench: $NS_BIN is not executable" >&2; exit 1; }
export NS_BIN

python3 "$here/goals.py"
