#!/usr/bin/env python3
"""Tick benchmark for nightshift. Run it through `bash bench/run.sh` (which builds the binary).

Measures, in throw-away git repositories under a temp dir:
  * idle tick     - one stage in flight (a scripted worker that hangs), lanes full, N queued:
                    nothing can change, the tick must only look;
  * dispatch tick - the next queued stage is dispatched: state write, ledger commit, spawn of
                    the detached job (the job runs after the tick exits; the time from the
                    tick's exit until its agent runs is reported separately as job_start);
at 10 and 1,000 queued cards, and with 10 cards after 1,000 and 10,000 ledger commits. Every
number is the wall time of a whole `nightshift` process (fork/exec to exit) and its peak RSS
(GNU time's %M in separate runs: the max of nightshift and the git children it waited for).

Only loopback/no network; HOME and git config are private to the temp dir; every process this
script starts is killed and the temp dir removed at the end (BENCH_KEEP=1 keeps the dir).
Sizes are overridable, see `env_int` calls below and docs/PERFORMANCE.md.
"""

import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def env_int(name, default):
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SMALL = env_int("BENCH_SMALL", 10)
LARGE = env_int("BENCH_LARGE", 100 if QUICK else 1000)
LEDGER = [int(x) for x in os.environ.get(
    "BENCH_LEDGER", "200 500" if QUICK else "1000 10000").split()]
IDLE_REPS = env_int("BENCH_IDLE_REPS", 10 if QUICK else 50)
DISPATCH_REPS = env_int("BENCH_DISPATCH_REPS", 5 if QUICK else 20)
STATUS_REPS = env_int("BENCH_STATUS_REPS", 5 if QUICK else 20)
BASE_REPS = env_int("BENCH_BASE_REPS", 10 if QUICK else 50)
# Extra runs under GNU time for the peak RSS (see Bench.timed for why not from the timed runs).
RSS_REPS = env_int("BENCH_RSS_REPS", 2 if QUICK else 5)
KEEP = os.environ.get("BENCH_KEEP", "") not in ("", "0")
BIN = os.path.abspath(os.environ["NS_BIN"])
GIT = shutil.which("git")


def find_gnu_time():
    t = os.environ.get("BENCH_TIME", "/usr/bin/time")
    if not (os.path.isfile(t) and os.access(t, os.X_OK)):
        return None
    r = subprocess.run([t, "-f", "%M", "true"], capture_output=True, text=True)
    return t if r.returncode == 0 and r.stderr.strip().isdigit() else None


GNU_TIME = find_gnu_time()

CONFIG = """\
version: 1
lanes: 1
base: main
integration:
  branch: nightshift/integration
  policy: none
agents:
  scripted-claude:
    kind: script
    family: claude
  scripted-codex:
    kind: script
    family: codex
defaults:
  worker: scripted-claude
  verifier: scripted-codex
  max_attempts: 3
  timeouts: { worker: 24h, verifier: 1h, acceptance: 1h }
budget:
  max_wall_time: 100000h
  max_consecutive_failures: 100000
"""

# The worker hangs until killed: once dispatched, the stage stays in flight and the lane full.
CARD = """\
---
id: {id}
title: Bench card {n}
acceptance:
  - "true"
script:
  worker:
    - steps:
        - hang
  verifier:
    - steps:
        - verdict: {{ verdict: pass }}
---
# Objective
Benchmark card {n}: its scripted worker hangs until the stage is cancelled.
"""


class Bench:
    def __init__(self):
        self.tmp = os.path.realpath(tempfile.mkdtemp(prefix="nightshift-bench-"))
        home = os.path.join(self.tmp, "home")
        os.makedirs(home)
        with open(os.path.join(home, ".gitconfig"), "w") as f:
            f.write("[user]\n\tname = bench\n\temail = bench@localhost\n"
                    "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "USER": os.environ.get("USER", "bench"),
            "TMPDIR": self.tmp,
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            # Finished jobs must not run chained ticks while we measure.
            "NIGHTSHIFT_CHAIN": "0",
        }
        self.repos = []
        self.results = {}
        self.start = time.monotonic()

    # ---------------------------------------------------------------- processes

    def timed(self, argv, cwd=None, env=None, rss=False):
        """Runs argv to its end: (wall seconds, peak RSS KiB or None, exit code, stdout text).

        Wall time is fork/exec to exit, measured here. Peak RSS cannot come from these runs:
        posix_spawn (vfork) makes the child inherit this Python process's high-water mark at
        exec, so ru_maxrss would read ~15 MiB for `true`. With rss=True the command runs under
        GNU time (a small C parent), whose %M is the child's own peak (and of the git children
        it waited for); the wall time of such a run includes GNU time's extra exec and is not
        used in the timing statistics.
        """
        out = os.path.join(self.tmp, "out.txt")
        rss_file = os.path.join(self.tmp, "rss.txt")
        if rss:
            if not GNU_TIME:
                return None, None, 0, ""
            argv = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv]
        fa = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
              (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              (os.POSIX_SPAWN_OPEN, 2, out + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
        old = os.getcwd()
        if cwd:
            os.chdir(cwd)
        try:
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, env or self.env, file_actions=fa)
            _, status, _ = os.wait4(pid, 0)
            dt = time.perf_counter() - t0
        finally:
            os.chdir(old)
        with open(out, errors="replace") as f:
            text = f.read()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            with open(out + ".err", errors="replace") as f:
                err = f.read()
            raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{text}\n{err}")
        peak = None
        if rss:
            with open(rss_file) as f:
                peak = int(f.read().split()[-1])
        return dt, peak, code, text

    def ns(self, repo, *args, rss=False):
        return self.timed([BIN, "--repo", repo, *args], rss=rss)

    def git(self, repo, *args):
        r = subprocess.run([GIT, *args], cwd=repo, env=self.env, check=True,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        return r.stdout.strip()

    # ---------------------------------------------------------------- setup

    def make_repo(self, name, ncards):
        repo = os.path.join(self.tmp, name)
        os.makedirs(os.path.join(repo, "stage-cards"))
        self.repos.append(repo)
        self.git(repo, "init", "-q", "-b", "main")
        with open(os.path.join(repo, "README.md"), "w") as f:
            f.write("# bench\n")
        with open(os.path.join(repo, "nightshift.yaml"), "w") as f:
            f.write(CONFIG)
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", "bench: seed")
        self.ns(repo, "init")
        cards = []
        for n in range(1, ncards + 1):
            cid = f"c{n:04d}"
            rel = f"stage-cards/{cid}.md"
            with open(os.path.join(repo, rel), "w") as f:
                f.write(CARD.format(id=cid, n=n))
            cards.append(rel)
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", "bench: nightshift init and cards")
        # One add-stage call (one ledger commit); argv stays far below ARG_MAX at 1,000 cards
        # (~21 bytes a card). Larger N goes in batches of 2,000. The set-up's own writes (the
        # cards, git's objects) are flushed first: add-stage's one `syncfs` would otherwise
        # write them out too, and time the set-up.
        os.sync()
        t = 0.0
        for i in range(0, len(cards), 2000):
            dt, _, _, _ = self.timed([BIN, "--repo", repo, "add-stage", *cards[i:i + 2000]], cwd=repo)
            t += dt
        return repo, t

    # ---------------------------------------------------------------- helpers

    def status(self, repo):
        _, _, _, text = self.ns(repo, "status", "--json")
        return json.loads(text)

    def ledger_commits(self, repo):
        return int(self.git(repo, "rev-list", "--count", "nightshift/ledger"))

    def registration(self, repo, stage, attempt):
        p = os.path.join(repo, "state", "active-agents", f"{stage}@a{attempt}-worker.json")
        try:
            with open(p) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def wait_running(self, repo, stage, attempt, timeout=60.0):
        """Waits until the dispatched job registered and its agent runs (the hang step)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reg = self.registration(repo, stage, attempt)
            if reg and reg.get("child_pid") and os.path.exists(f"/proc/{reg['child_pid']}"):
                # The agent is up once its log shows the init line; give it a moment to flush.
                log = os.path.join(repo, reg.get("log", ""))
                if os.path.exists(log) and os.path.getsize(log) > 0:
                    return reg
            time.sleep(0.02)
        raise RuntimeError(f"{stage} a{attempt} did not start within {timeout}s in {repo}")

    def registrations(self, repo):
        d = os.path.join(repo, "state", "active-agents")
        return set(os.listdir(d)) if os.path.isdir(d) else set()

    def wait_new_job(self, repo, before, timeout=60.0):
        """Waits for a registration not in `before` whose agent runs; returns (stage, attempt).
        Reads files only, so it does not compete with the starting job for the CPU."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in self.registrations(repo) - before:
                m = re.fullmatch(r"(.+)@a(\d+)-worker\.json", name)
                if m and self.registration(repo, m.group(1), int(m.group(2))):
                    reg = self.registration(repo, m.group(1), int(m.group(2)))
                    log = os.path.join(repo, reg.get("log", ""))
                    if (reg.get("child_pid") and os.path.exists(f"/proc/{reg['child_pid']}")
                            and os.path.exists(log) and os.path.getsize(log) > 0):
                        return m.group(1), int(m.group(2))
            time.sleep(0.005)
        raise RuntimeError(f"no job started within {timeout}s in {repo}")

    def in_flight(self, repo):
        for s in self.status(repo)["stages"]:
            if s["status"] == "working":
                return s["id"], s["attempt"]
        return None

    def tick(self, repo, rss=False):
        if rss and not GNU_TIME:
            return None, None, None
        dt, peak, _, text = self.ns(repo, "tick", "--json", rss=rss)
        return dt, peak, json.loads(text)["result"]

    # ---------------------------------------------------------------- scenarios

    def measure(self, repo, label):
        """Dispatch ticks (tick / wait for the job / cancel / requeue, repeated), then idle
        ticks with one stage hanging in flight, then status --json. Timed runs first, then
        RSS_REPS runs of each under GNU time. Leaves every stage queued."""
        res = {"label": label}
        st = self.status(repo)
        queued = sum(1 for s in st["stages"] if s["status"] == "queued")
        res["queued_cards"] = queued
        res["ledger_commits_before"] = self.ledger_commits(repo)
        disp, disp_rss, cancel, requeue, start_lat = [], [], [], [], []
        for i in range(DISPATCH_REPS + RSS_REPS):
            under_time = i >= DISPATCH_REPS
            before = self.registrations(repo)
            dt, rss, result = self.tick(repo, rss=under_time)
            if result is None:
                break
            if result != "advanced":
                raise RuntimeError(f"{label}: expected a dispatch, the tick was {result}")
            if under_time:
                disp_rss.append(rss)
            else:
                disp.append(dt)
            t_exit = time.perf_counter()
            stage, attempt = self.wait_new_job(repo, before)
            start_lat.append(time.perf_counter() - t_exit)
            dt, _, _, _ = self.ns(repo, "cancel", stage)
            cancel.append(dt)
            dt, _, _, _ = self.ns(repo, "requeue", stage)
            requeue.append(dt)
        # One more dispatch leaves a hanging worker in the only lane: every later tick is idle.
        _, _, result = self.tick(repo)
        stage, attempt = self.in_flight(repo)
        self.wait_running(repo, stage, attempt)
        idle, idle_rss = [], []
        for i in range(IDLE_REPS + RSS_REPS):
            under_time = i >= IDLE_REPS
            dt, rss, result = self.tick(repo, rss=under_time)
            if result is None:
                break
            if result != "idle":
                raise RuntimeError(f"{label}: expected an idle tick, it was {result}")
            if under_time:
                idle_rss.append(rss)
            else:
                idle.append(dt)
        stat = [self.ns(repo, "status", "--json")[0] for _ in range(STATUS_REPS)]
        stat_rss = [self.ns(repo, "status", "--json", rss=True)[1] for _ in range(RSS_REPS)]
        # Back to all queued for the next scenario on this repo.
        self.ns(repo, "cancel", stage)
        self.ns(repo, "requeue", stage)
        res["idle"] = summary(idle, idle_rss)
        res["dispatch"] = summary(disp, disp_rss)
        res["cancel"] = summary(cancel)
        res["requeue"] = summary(requeue)
        res["job_start"] = summary(start_lat)
        res["status_json"] = summary(stat, stat_rss)
        res["state_yaml_bytes"] = os.path.getsize(os.path.join(repo, "state", "state.yaml"))
        res["ledger_commits_after"] = self.ledger_commits(repo)
        self.results[label] = res
        print_scenario(res)
        return res

    def grow_ledger(self, repo, target, stage):
        """Operator cancel/requeue of a queued stage until the ledger has `target` commits:
        one real nightshift ledger commit per command."""
        have = self.ledger_commits(repo)
        n = 0
        times = []
        t0 = time.monotonic()
        while have + n < target:
            dt, _, _, _ = self.ns(repo, "cancel", stage)
            times.append(dt)
            n += 1
            if have + n >= target:
                # Leave the stage queued.
                dt, _, _, _ = self.ns(repo, "requeue", stage)
                times.append(dt)
                n += 1
                break
            dt, _, _, _ = self.ns(repo, "requeue", stage)
            times.append(dt)
            n += 1
        wall = time.monotonic() - t0
        got = self.ledger_commits(repo)
        if times:
            k = max(1, len(times) // 10)
            print(f"  grew the ledger {have} -> {got} commits with {len(times)} cancel/requeue "
                  f"commands in {wall:.0f}s (mean {1000 * statistics.mean(times):.1f} ms each; "
                  f"first 10%: {1000 * statistics.mean(times[:k]):.1f} ms, "
                  f"last 10%: {1000 * statistics.mean(times[-k:]):.1f} ms)", flush=True)
        return {"from": have, "to": got, "commands": len(times), "wall_s": wall,
                "op_ms_mean": 1000 * statistics.mean(times) if times else None,
                "op_ms_first10": 1000 * statistics.mean(times[:max(1, len(times) // 10)]) if times else None,
                "op_ms_last10": 1000 * statistics.mean(times[-max(1, len(times) // 10):]) if times else None}

    def git_profile(self, repo, label):
        """What one dispatch tick and one idle tick do besides computing: the git processes
        they run, each timed (NIGHTSHIFT_GIT points at a Python wrapper that times the real
        git; the wrapper's own start-up is not counted), and, if strace is installed, the
        fsync calls of the nightshift process itself. These runs are not in the timings."""
        log = os.path.join(self.tmp, "git-calls.log")
        wrapper = os.path.join(self.tmp, "git-wrapper")
        with open(wrapper, "w") as f:
            f.write(f"""#!{sys.executable}
import os, subprocess, sys, time
t = time.perf_counter()
code = subprocess.call([{GIT!r}] + sys.argv[1:])
dt = time.perf_counter() - t
with open({log!r}, "a") as f:
    f.write(f"{{os.getppid()}} {{dt * 1000:.2f}} {{' '.join(sys.argv[1:])}}\\n")
sys.exit(code)
""")
        os.chmod(wrapper, 0o755)
        env = dict(self.env, NIGHTSHIFT_GIT=wrapper)

        def calls(argv):
            open(log, "w").close()
            p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p.wait()
            mine = []
            with open(log) as f:
                for line in f:
                    ppid, ms, rest = line.rstrip("\n").split(" ", 2)
                    if ppid == str(p.pid):
                        rest = re.sub(r"^(-c \S+ )+", "", rest)
                        mine.append((float(ms), re.sub(r"\b[0-9a-f]{40}\b", "<id>", rest)))
            return mine

        def fsyncs(argv):
            strace = shutil.which("strace")
            if not strace:
                return None
            out = os.path.join(self.tmp, "strace.txt")
            # No -f: only the nightshift process (git children and the detached job untraced).
            subprocess.run([strace, "-c", "-e", "trace=fsync,fdatasync", "-o", out, *argv],
                           env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            n = 0
            with open(out) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[-1] in ("fsync", "fdatasync"):
                        n += int(parts[3]) if len(parts) >= 5 else 0
            return n

        def settle():
            stage, attempt = self.in_flight(repo)
            self.wait_running(repo, stage, attempt)
            return stage

        tick = [BIN, "--repo", repo, "tick"]
        disp = calls(tick)
        stage = settle()
        idle = calls(tick)
        self.ns(repo, "cancel", stage)
        self.ns(repo, "requeue", stage)
        disp_fs = fsyncs(tick)
        stage = settle()
        idle_fs = fsyncs(tick)
        self.ns(repo, "cancel", stage)
        self.ns(repo, "requeue", stage)
        prof = {"dispatch_git": disp, "idle_git": idle,
                "dispatch_git_ms": sum(ms for ms, _ in disp),
                "idle_git_ms": sum(ms for ms, _ in idle),
                "dispatch_fsyncs": disp_fs, "idle_fsyncs": idle_fs}
        self.results.setdefault("profile", {})[label] = prof
        print(f"  one dispatch tick ({label}): {len(disp)} git processes, "
              f"{prof['dispatch_git_ms']:.1f} ms inside git; fsync calls: {disp_fs}")
        for ms, c in disp:
            print(f"    {ms:6.2f} ms  git {c}")
        print(f"  one idle tick ({label}): {len(idle)} git processes, "
              f"{prof['idle_git_ms']:.1f} ms inside git; fsync calls: {idle_fs}")
        for ms, c in idle:
            print(f"    {ms:6.2f} ms  git {c}")

    # ---------------------------------------------------------------- cleanup

    def kill_leftovers(self):
        """Kills the process groups of every job registered in our repos (only groups whose
        leader runs in, or names, our temp dir)."""
        for repo in self.repos:
            d = os.path.join(repo, "state", "active-agents")
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                if not name.endswith(".json"):
                    continue
                try:
                    with open(os.path.join(d, name)) as f:
                        reg = json.load(f)
                except (OSError, ValueError):
                    continue
                for pgid in (reg.get("pgid"), reg.get("child_pgid")):
                    if pgid and self.ours(pgid):
                        try:
                            os.killpg(pgid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass

    def ours(self, pid):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            return False
        return cwd.startswith(self.tmp) or self.tmp in cmd

    def cleanup(self):
        self.kill_leftovers()
        if KEEP:
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# -------------------------------------------------------------------- stats and printing

def pct(xs, p):
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summary(times, rss=None):
    d = {"n": len(times),
         "median_ms": 1000 * statistics.median(times),
         "p95_ms": 1000 * pct(times, 95),
         "min_ms": 1000 * min(times),
         "max_ms": 1000 * max(times)}
    if rss is not None:
        rss = [r for r in rss if r is not None]
        d["peak_rss_mib"] = max(rss) / 1024 if rss else None
    return d


def fmt(s):
    line = (f"median {s['median_ms']:7.1f} ms  p95 {s['p95_ms']:7.1f} ms  "
            f"min {s['min_ms']:6.1f}  max {s['max_ms']:7.1f}  (n={s['n']})")
    if "peak_rss_mib" in s:
        line += f"  peak RSS {mib(s['peak_rss_mib'])}"
    return line


def mib(x):
    return "n/a" if x is None else f"{x:.1f} MiB"


def print_scenario(r):
    print(f"\n== {r['label']}: {r['queued_cards']} queued cards, ledger "
          f"{r['ledger_commits_before']} -> {r['ledger_commits_after']} commits, "
          f"state.yaml {r['state_yaml_bytes']} bytes", flush=True)
    for k in ("idle", "dispatch", "job_start", "cancel", "requeue", "status_json"):
        print(f"  {k:<12} {fmt(r[k])}", flush=True)


def cmd_out(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    tmp = tempfile.gettempdir()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "git": cmd_out([GIT, "--version"]),
        "rustc": cmd_out(["rustc", "--version"]),
        "python": platform.python_version(),
        "tmp_fs": cmd_out(["df", "--output=fstype", tmp]).splitlines()[-1:] or ["unknown"],
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "nightshift": cmd_out([BIN, "--version"]),
        "source": cmd_out([GIT, "-C", os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "describe", "--always", "--dirty"]),
    }


def main():
    info = machine()
    print("nightshift tick benchmark")
    for k, v in info.items():
        print(f"  {k}: {v}")
    print(f"  sizes: small={SMALL} large={LARGE} ledger={LEDGER} reps: idle={IDLE_REPS} "
          f"dispatch={DISPATCH_REPS} status={STATUS_REPS} rss={RSS_REPS} (GNU time: {GNU_TIME})"
          f"{' (BENCH_QUICK)' if QUICK else ''}",
          flush=True)
    b = Bench()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        b.results["machine"] = info
        if not GNU_TIME:
            print("  GNU time not found: peak RSS is reported as n/a "
                  "(install it: apt-get install time, or set BENCH_TIME)")
        small, t = b.make_repo("small", SMALL)
        print(f"\nadd-stage of {SMALL} cards: {1000 * t:.0f} ms")
        b.results["add_stage_small"] = {"ms": 1000 * t}

        # Baselines: what any tick pays before doing anything.
        def base(argv, cwd=None):
            t = [b.timed(argv, cwd=cwd)[0] for _ in range(BASE_REPS)]
            r = [b.timed(argv, cwd=cwd, rss=True)[1] for _ in range(RSS_REPS)]
            return summary(t, r)

        b.results["baseline_nightshift_version"] = base([BIN, "--version"])
        b.results["baseline_git_rev_parse"] = base([GIT, "rev-parse", "--show-toplevel"], small)
        print(f"  baseline `nightshift --version`    {fmt(b.results['baseline_nightshift_version'])}")
        print(f"  baseline `git rev-parse` (1 spawn)  {fmt(b.results['baseline_git_rev_parse'])}")
        b.git_profile(small, f"{SMALL} cards")

        b.measure(small, f"{SMALL} cards")

        large, t = b.make_repo("large", LARGE)
        print(f"\nadd-stage of {LARGE} cards (one call): {1000 * t:.0f} ms", flush=True)
        b.results["add_stage_large"] = {"ms": 1000 * t}
        b.git_profile(large, f"{LARGE} cards")
        b.measure(large, f"{LARGE} cards")

        last = f"c{SMALL:04d}"
        for target in LEDGER:
            print(f"\ngrowing the ledger of the {SMALL}-card repo to {target} commits ...", flush=True)
            b.results[f"grow_{target}"] = b.grow_ledger(small, target, last)
            b.measure(small, f"{SMALL} cards, {target} ledger commits")
            dt = [b.ns(small, "log", "-n", "20")[0] for _ in range(5)]
            b.results[f"log20_{target}"] = summary(dt)
            objs = b.git(small, "count-objects", "-v")
            b.results[f"objects_{target}"] = objs.replace("\n", ", ")
            print(f"  log -n 20     {fmt(b.results[f'log20_{target}'])}")
            print(f"  git count-objects: {b.results[f'objects_{target}']}", flush=True)

        wall = time.monotonic() - b.start
        b.results["bench_wall_s"] = wall
        b.results["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        print(f"\nbenchmark wall time: {wall:.0f}s (load average at the end: "
              f"{' '.join(b.results['loadavg_end'])})")
        out = os.environ.get("BENCH_JSON")
        if out:
            with open(out, "w") as f:
                json.dump(b.results, f, indent=2)
            print(f"results written to {out}")
        print_table(b.results)
    finally:
        b.cleanup()


def print_table(res):
    print("\n| scenario | queued | ledger commits | idle tick median / p95 | idle peak RSS "
          "| dispatch tick median / p95 | dispatch peak RSS | status --json median | state.yaml |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, r in res.items():
        if not isinstance(r, dict) or "idle" not in r:
            continue
        i, d = r["idle"], r["dispatch"]
        print(f"| {r['label']} | {r['queued_cards']} | {r['ledger_commits_before']} "
              f"| {i['median_ms']:.1f} / {i['p95_ms']:.1f} ms | {mib(i['peak_rss_mib'])} "
              f"| {d['median_ms']:.1f} / {d['p95_ms']:.1f} ms | {mib(d['peak_rss_mib'])} "
              f"| {r['status_json']['median_ms']:.1f} ms | {r['state_yaml_bytes'] / 1024:.1f} KiB |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        sys.exit(130)
