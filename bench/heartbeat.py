#!/usr/bin/env python3
"""Heartbeat benchmark for nightshift: the cost of `nightshift heartbeat` with N registered
attempts (default 100) that are alive and within their limits, so every run only looks.

A throw-away repository under a temp dir gets `lanes: N` and N cards whose scripted worker
hangs; one tick dispatches them all (N detached wrappers + N agents). Then `heartbeat --json`
runs REPS times (wall time of the whole process, fork/exec to exit; median and p95), and once
under GNU time for the peak RSS. NIGHTSHIFT_CHAIN=0 and a fixed NIGHTSHIFT_NOW, so nothing is
killed. HOME, the host state dir and git config are private to the temp dir; every process
started is killed and the temp dir removed at the end. Run through `bash bench/heartbeat.sh`.
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("BENCH_ATTEMPTS", "100"))
REPS = int(os.environ.get("BENCH_REPS", "20"))
BIN = os.path.abspath(os.environ["NS_BIN"])
NOW = "2027-01-01T01:00:00Z"

CONFIG = f"""version: 1
lanes: {N}
agents:
  wclaude: {{ kind: script, family: claude }}
  vcodex: {{ kind: script, family: codex }}
defaults:
  worker: wclaude
  verifier: vcodex
  timeouts: {{ worker: 5h, verifier: 5m, acceptance: 2m }}
budget:
  max_consecutive_failures: 1000
"""

CARD = """---
id: s{n}
title: Benchmark card {n}
script:
  worker:
    - steps:
        - hang
---
Hangs until killed.
"""


def main():
    tmp = tempfile.mkdtemp(prefix="ns-hb-bench-")
    home = os.path.join(tmp, "home")
    repo = os.path.join(tmp, "repo")
    os.makedirs(home)
    os.makedirs(repo)
    with open(os.path.join(home, ".gitconfig"), "w") as f:
        f.write("[user]\n\tname = Bench\n\temail = bench@example.invalid\n[init]\n\tdefaultBranch = main\n")
    env = {"PATH": os.environ["PATH"], "HOME": home, "TMPDIR": tmp, "LC_ALL": "C",
           "GIT_CONFIG_NOSYSTEM": "1", "NIGHTSHIFT_NOW": NOW, "NIGHTSHIFT_CHAIN": "0"}

    def run(*argv, check=True):
        return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=check)

    try:
        run("git", "init", "-q", "-b", "main")
        with open(os.path.join(repo, "nightshift.yaml"), "w") as f:
            f.write(CONFIG)
        os.makedirs(os.path.join(repo, "cards"))
        for n in range(N):
            with open(os.path.join(repo, "cards", f"s{n}.md"), "w") as f:
                f.write(CARD.format(n=n))
        run("git", "add", "-A")
        run("git", "commit", "-qm", "init")
        run(BIN, "init")
        run("git", "add", "-A")
        run("git", "commit", "-qm", "nightshift init")
        run(BIN, "add-stage", *[f"cards/s{n}.md" for n in range(N)])
        run(BIN, "tick")
        # Parallel `git worktree add` can fail a few attempts' setup; they are retried by the
        # next ticks (the bench needs N live attempts, not a perfect first dispatch).
        deadline = time.time() + 600
        last_tick = time.time()
        while True:
            agents = json.loads(run(BIN, "agents", "--json").stdout)["agents"]
            alive = [a for a in agents if a["alive"] and a["child_pid"]]
            if len(alive) == N:
                break
            if time.time() > deadline:
                sys.exit(f"only {len(alive)} of {N} attempts came up")
            if time.time() - last_tick > 10:
                run(BIN, "tick")
                last_tick = time.time()
            time.sleep(0.5)
        run(BIN, "heartbeat", "--json")  # warm: the first run records the progress marks
        times = []
        for _ in range(REPS):
            t0 = time.perf_counter()
            out = run(BIN, "heartbeat", "--json")
            times.append(time.perf_counter() - t0)
        doc = json.loads(out.stdout)
        verdicts = {a["verdict"] for a in doc["attempts"]}
        assert len(doc["attempts"]) == N and verdicts == {"ok"}, verdicts
        rss = "n/a"
        gnu_time = shutil.which("time") or "/usr/bin/time"
        if os.path.exists(gnu_time):
            r = subprocess.run([gnu_time, "-f", "%M", BIN, "heartbeat", "--json"], cwd=repo,
                               env=env, capture_output=True, text=True)
            last = r.stderr.strip().splitlines()[-1:] or [""]
            if last[0].isdigit():
                rss = f"{int(last[0]) / 1024:.1f} MiB"
        times.sort()
        p95 = times[min(len(times) - 1, int(0.95 * len(times) + 0.5) - 1)]
        print(f"heartbeat with {N} registered attempts, {REPS} runs: "
              f"median {statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
              f"min {times[0] * 1000:.0f} ms, peak RSS {rss}")
    finally:
        for f in os.listdir(os.path.join(repo, "state", "active-agents")) if os.path.isdir(os.path.join(repo, "state", "active-agents")) else []:
            if not f.endswith(".json"):
                continue
            try:
                reg = json.load(open(os.path.join(repo, "state", "active-agents", f)))
            except (OSError, ValueError):
                continue
            for g in (reg.get("pgid"), reg.get("child_pgid")):
                if isinstance(g, int) and g > 1:
                    try:
                        os.killpg(g, signal.SIGKILL)
                    except OSError:
                        pass
        if os.environ.get("BENCH_KEEP", "") in ("", "0"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
