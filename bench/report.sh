#!/usr/bin/env bash
# Report benchmark: wall time of `nightshift report` on a ledger of 1,000 / 10,000 / 100,000
# commits (a demo night, then synthetic journal commits spread over a year, one machine sleep
# line every 500), for the default 24 h window and for the whole year, in JSON and HTML; and
# the number of git processes one report spawns. Results and method: docs/PERFORMANCE.md.
#
#   bash bench/report.sh                      # sizes 1000 10000 100000, 10 runs each
#   BENCH_SIZES="1000" BENCH_REPS=3 bash bench/report.sh
#
# NS_BIN=path uses that binary instead of building target/release/nightshift. Needs bash, git
# and cargo (unless NS_BIN is given). Works in a throw-away directory under $TMPDIR with a
# private HOME, removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
sizes=${BENCH_SIZES:-"1000 10000 100000"}
reps=${BENCH_REPS:-10}

if [[ -z "${NS_BIN:-}" ]]; then
    echo "bench: cargo build --release" >&2
    (cd "$root" && cargo build --release --quiet)
    NS_BIN="$root/target/release/nightshift"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/ns-report-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1 NIGHTSHIFT_CHAIN=1
mkdir -p "$HOME"
printf '[user]\n\tname = bench\n\temail = bench@example.invalid\n' > "$HOME/.gitconfig"

# Median wall time in ms of $reps runs of "$@" (output discarded).
median_ms() {
    local times=()
    for _ in $(seq "$reps"); do
        local t0 t1
        t0=$(date +%s%N)
        "$@" > /dev/null
        t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.1f", m/1000}'
}

# Appends $1 synthetic commits to the ledger of repo $2, one every year/$1 seconds, ending an
# hour ago, each with two journal lines and trailers like a tick's.
grow() {
    local n=$1 repo=$2 now head
    now=$(date +%s)
    head=$(git -C "$repo" rev-parse refs/heads/nightshift/ledger)
    awk -v n="$n" -v now="$now" -v head="$head" 'BEGIN {
        step = int(365 * 86400 / n); t = now - 3600 - n * step
        for (i = 0; i < n; i++) {
            t += step
            msg = sprintf("nightshift #%d: s%d: a1 dispatched to claude\n\ns%d: a1 dispatched to claude\nrepo: tick %d\n", 100 + i, i % 7, i % 7, i)
            if (i % 500 == 0) msg = msg sprintf("repo: slept from %s to %s\n", strftime("%Y-%m-%dT%H:%M:%SZ", t - 1800, 1), strftime("%Y-%m-%dT%H:%M:%SZ", t - 600, 1))
            msg = msg sprintf("\nNightshift-Seq: %d\nNightshift-Spent: wall=%ds tokens=%d input=0 output=0 cache_read=0 cache_write=0 usd=%.4f\nNightshift-Family: claude runs=%d tokens=%d usd=%.4f\n", 100 + i, i, i * 1000, i * 0.01, i, i * 1000, i * 0.01)
            printf "commit refs/heads/nightshift/ledger\ncommitter nightshift <nightshift@localhost> %d +0000\ndata %d\n%s\n", t, length(msg), msg
            if (i == 0) printf "from %s\n", head
            printf "\n"
        }
    }' | git -C "$repo" fast-import --quiet --force
}

printf '| ledger commits | `report --format json` (24 h) | `--format json --since 365d` | `--format html --since 365d` | git processes |\n'
printf '|---:|---:|---:|---:|---:|\n'
for n in $sizes; do
    repo="$work/demo-$n"
    "$NS_BIN" demo "$repo" > /dev/null
    have=$(git -C "$repo" rev-list --count refs/heads/nightshift/ledger)
    grow $(( n > have ? n - have : 0 )) "$repo"
    total=$(git -C "$repo" rev-list --count refs/heads/nightshift/ledger)
    git -C "$repo" gc --quiet
    day=$(median_ms "$NS_BIN" --repo "$repo" report --format json --since 24h)
    year=$(median_ms "$NS_BIN" --repo "$repo" report --format json --since 365d)
    html=$(median_ms "$NS_BIN" --repo "$repo" report --format html --since 365d)
    wrapper="$work/git-count.sh"
    printf '#!/bin/sh\necho x >> "%s/calls"\nexec "%s" "$@"\n' "$work" "$(command -v git)" > "$wrapper"
    chmod +x "$wrapper"
    rm -f "$work/calls"
    NIGHTSHIFT_GIT="$wrapper" "$NS_BIN" --repo "$repo" report --format json --since 365d > /dev/null
    calls=$(wc -l < "$work/calls")
    printf '| %s | %s ms | %s ms | %s ms | %s |\n' "$total" "$day" "$year" "$html" "$calls"
done
