#!/usr/bin/env bash
# `tick --all` benchmark: wall time of one host-wide pass over N subscribed idle repositories,
# against N plain `tick` processes one after another (the cost of the per-repository child
# process and the host lock and record). Results: docs/PERFORMANCE.md ("tick --all").
#
#   bash bench/tick_all.sh              # N = 1, 10, 50; 20 passes each
#   BENCH_REPOS="1 5" BENCH_REPS=5 bash bench/tick_all.sh
#   NS_BIN=path bash bench/tick_all.sh  # use this binary instead of target/release/nightshift
#
# Everything happens under a temp dir with a private HOME, NIGHTSHIFT_HOME and
# NIGHTSHIFT_HOST_DIR; it is removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
if [[ -z "${NS_BIN:-}" ]]; then
    (cd "$root" && cargo build --release --quiet)
    NS_BIN="$root/target/release/nightshift"
fi
reps=${BENCH_REPS:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" NIGHTSHIFT_HOME="$tmp/config" NIGHTSHIFT_HOST_DIR="$tmp/state"
export GIT_CONFIG_NOSYSTEM=1 NIGHTSHIFT_CHAIN=0
mkdir -p "$HOME"
printf '[user]\n\tname = Bench\n\temail = bench@example.invalid\n[init]\n\tdefaultBranch = main\n' > "$HOME/.gitconfig"

# Median wall time in ms of running "$@" $reps times.
median_ms() {
    python3 - "$reps" "$@" <<'PY'
import subprocess, sys, time
reps, cmd = int(sys.argv[1]), sys.argv[2:]
times = []
for _ in range(reps):
    t = time.perf_counter()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"{times[len(times) // 2]:.1f}")
PY
}

echo "| repositories | tick --all pass (median) | per repository | N plain ticks in a row (median) |"
echo "|---|---|---|---|"
for n in ${BENCH_REPOS:-1 10 50}; do
    rm -rf "$tmp/repos" "$NIGHTSHIFT_HOME" "$NIGHTSHIFT_HOST_DIR"
    for i in $(seq "$n"); do
        r="$tmp/repos/r$i"
        mkdir -p "$r"
        (cd "$r" && git init -q && git commit -q --allow-empty -m init \
            && "$NS_BIN" init >/dev/null && git add -A && git commit -q -m ns \
            && "$NS_BIN" subscribe >/dev/null)
    done
    all=$(median_ms "$NS_BIN" tick --all)
    plain=$(median_ms bash -c "for r in $tmp/repos/*; do \"$NS_BIN\" --repo \"\$r\" tick; done")
    per=$(python3 -c "print(f'{$all / $n:.1f}')")
    echo "| $n | $all ms | $per ms | $plain ms |"
done
