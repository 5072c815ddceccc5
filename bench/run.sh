#!/usr/bin/env bash
# Tick benchmark: idle and dispatch tick wall time and peak RSS at 10 / 1,000 queued cards and
# after 1,000 / 10,000 ledger commits, plus `status --json` and operator commands.
# Results and method: docs/PERFORMANCE.md.
#
#   bash bench/run.sh                  # full run (6–9 min on 2 cores, plus the build)
#   BENCH_QUICK=1 bash bench/run.sh    # smoke run with small sizes (~10 s)
#
# Overrides: BENCH_SMALL (10), BENCH_LARGE (1000), BENCH_LEDGER ("1000 10000"),
# BENCH_IDLE_REPS (50), BENCH_DISPATCH_REPS (20), BENCH_STATUS_REPS (20), BENCH_BASE_REPS (50),
# BENCH_JSON=path (write all results as JSON), BENCH_KEEP=1 (keep the temp repos),
# NS_BIN=path (use this binary instead of building target/release/nightshift).
#
# Needs bash, git, python3 and cargo (unless NS_BIN is given). No network: everything happens in
# throw-away repositories under $TMPDIR with a private HOME; the script kills every job it
# started and removes its temp dir on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

command -v git >/dev/null || { echo "bench: git is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench: python3 is required" >&2; exit 1; }

if [[ -z "${NS_BIN:-}" ]]; then
    echo "bench: cargo build --release" >&2
    (cd "$root" && cargo build --release --quiet)
    NS_BIN="$root/target/release/nightshift"
fi
[[ -x "$NS_BIN" ]] || { echo "bench: $NS_BIN is not executable" >&2; exit 1; }
export NS_BIN

start=$(date +%s)
python3 "$here/bench.py"
echo "bench/run.sh total: $(( $(date +%s) - start ))s"
