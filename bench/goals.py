#!/usr/bin/env python3
"""The cost goals of a tick, each as a ratio to a yardstick. Run it through
`bash bench/goals.sh` (which builds the release binary).

Every row times a subject (a whole `nightshift` process) and its yardstick (`nightshift
--version`, alone or followed by `git commit-tree` + `git update-ref`, the floor of any ledger
commit) alternately in the same loop, and reports the median of the per-pair ratios, so that
load from other processes moves both sides. Nothing here asserts a time: it prints.

Rows (N = BENCH_N, default 1,000; BIG = BENCH_BIG, default 10,000):
  idle tick at N and at BIG queued (lane full, its job running)   / --version
  dispatch tick at N (state write, ledger commit, job spawn)      / --version + commit-tree + update-ref
  status --json at N                                              / --version
  add-stage of N cards in one call                                / --version
  add-stage of one more card into 10, N and BIG queued            / --version + commit-tree + update-ref
  ledger growth per dispatch commit (bytes of .git/objects)
  peak RSS of an idle tick and of status --json at N and BIG (GNU time)

A row whose subject fails (a non-zero exit) prints `fails` with the error's first line.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as nb  # noqa: E402  (the shared harness: repos, processes, cleanup)

QUICK = nb.QUICK
N = nb.env_int("BENCH_N", 100 if QUICK else 1000)
BIG = nb.env_int("BENCH_BIG", 1000 if QUICK else 10000)
PAIRS = nb.env_int("BENCH_PAIRS", 5 if QUICK else 15)
BATCH_PAIRS = nb.env_int("BENCH_BATCH_PAIRS", 2 if QUICK else 3)


def ratio_row(name, subject, yardstick, pairs):
    """Alternates subject() and yardstick() `pairs` times (both return seconds); returns the
    row: medians of each side and the median of the per-pair ratios."""
    s_t, y_t, ratios = [], [], []
    for i in range(pairs):
        # Alternate which side goes first, so neither always runs on a warmer cache.
        if i % 2 == 0:
            s = subject()
            y = yardstick()
        else:
            y = yardstick()
            s = subject()
        s_t.append(s)
        y_t.append(y)
        ratios.append(s / y)
    row = {"name": name, "subject_ms": 1000 * statistics.median(s_t),
           "yardstick_ms": 1000 * statistics.median(y_t),
           "ratio": statistics.median(ratios), "pairs": pairs}
    print_row(row)
    return row


def failed_row(name, err):
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error", "caused by", "hint"))]
    msg = " / ".join(errors or lines[-3:])[:300]
    row = {"name": name, "fails": msg}
    print_row(row)
    return row


def print_row(r):
    if "fails" in r:
        print(f"  {r['name']:<58} fails: {r['fails']}", flush=True)
    elif "bytes" in r:
        print(f"  {r['name']:<58} {r['bytes'] / 1024:8.1f} KiB", flush=True)
    else:
        print(f"  {r['name']:<58} {r['subject_ms']:8.1f} ms / {r['yardstick_ms']:6.1f} ms "
              f"= {r['ratio']:6.1f}x  (median of {r['pairs']} pairs)", flush=True)


class Goals(nb.Bench):
    def __init__(self):
        super().__init__()
        self.rows = []
        self.rss = []
        self.card_no = 100000

    def version(self):
        return self.timed([nb.BIN, "--version"])[0]

    def commit_floor(self, repo):
        """`--version` + `git commit-tree` + `git update-ref` on a scratch ref: the least any
        process that makes one commit pays."""
        tree = self.git(repo, "rev-parse", "HEAD^{tree}")
        head = self.git(repo, "rev-parse", "HEAD")

        def run():
            t = self.version()
            dt, _, _, out = self.timed([nb.GIT, "commit-tree", tree, "-p", head, "-m", "bench"],
                                       cwd=repo)
            t += dt
            t += self.timed([nb.GIT, "update-ref", "refs/bench/floor", out.strip()], cwd=repo)[0]
            return t
        return run

    def one_card(self, repo):
        """Writes a fresh card file into `repo` and returns its path."""
        self.card_no += 1
        cid = f"x{self.card_no}"
        rel = os.path.join(repo, "stage-cards", f"{cid}.md")
        with open(rel, "w") as f:
            f.write(nb.CARD.format(id=cid, n=self.card_no))
        return rel

    def objects_bytes(self, repo):
        total = 0
        for d, _, files in os.walk(os.path.join(repo, ".git", "objects")):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(d, name))
                except OSError:
                    pass
        return total

    def hang_one(self, repo):
        """Dispatches one stage (its worker hangs): the lane is full from now on."""
        _, _, result = self.tick(repo)
        if result != "advanced":
            raise RuntimeError(f"expected a dispatch, the tick was {result}")
        stage, attempt = self.in_flight(repo)
        self.wait_running(repo, stage, attempt)
        return stage

    def release(self, repo, stage):
        self.ns(repo, "cancel", stage)
        self.ns(repo, "requeue", stage)

    def add(self, name, fn):
        try:
            self.rows.append(fn())
        except Exception as e:  # noqa: BLE001  (a failing subject is a result)
            self.rows.append(failed_row(name, e))

    def scenario(self, repo, n):
        """Rows on a repo with n queued cards."""
        floor = self.commit_floor(repo)
        stage = None

        def idle_rows():
            nonlocal stage
            stage = self.hang_one(repo)

            def idle():
                dt, _, result = self.tick(repo)
                if result != "idle":
                    raise RuntimeError(f"expected an idle tick, it was {result}")
                return dt
            row = ratio_row(f"idle tick, {n} queued / --version", idle, self.version, PAIRS)
            _, peak, _ = self.tick(repo, rss=True)
            self.rss.append({"what": f"idle tick, {n} stages", "kib": peak})
            return row
        self.add(f"idle tick, {n} queued / --version", idle_rows)

        def status():
            return self.ns(repo, "status", "--json")[0]
        self.add(f"status --json, {n} stages / --version",
                 lambda: ratio_row(f"status --json, {n} stages / --version", status,
                                   self.version, PAIRS))
        try:
            peak = self.ns(repo, "status", "--json", rss=True)[1]
        except Exception:  # noqa: BLE001
            peak = None
        self.rss.append({"what": f"status --json, {n} stages", "kib": peak})
        if stage:
            self.release(repo, stage)

        growth = []

        def dispatch():
            before = self.registrations(repo)
            size = self.objects_bytes(repo)
            dt, _, result = self.tick(repo)
            growth.append(self.objects_bytes(repo) - size)
            if result != "advanced":
                raise RuntimeError(f"expected a dispatch, the tick was {result}")
            st, _ = self.wait_new_job(repo, before)
            self.release(repo, st)
            return dt
        self.add(f"dispatch tick, {n} queued / --version + commit-tree + update-ref",
                 lambda: ratio_row(f"dispatch tick, {n} queued / --version + commit-tree + "
                                   "update-ref", dispatch, floor, PAIRS))
        if growth:
            row = {"name": f"ledger growth per dispatch commit, {n} queued",
                   "bytes": statistics.median(growth)}
            print_row(row)
            self.rows.append(row)

        def add_one():
            return self.timed([nb.BIN, "--repo", repo, "add-stage", self.one_card(repo)])[0]
        self.add(f"add-stage of one card into {n} / --version + commit-tree + update-ref",
                 lambda: ratio_row(f"add-stage of one card into {n} / --version + commit-tree "
                                   "+ update-ref", add_one, floor, PAIRS))

    def batch(self, n):
        """add-stage of n cards in one call, each pair on a fresh repo. The repos stay until
        the end: on ext4, creating files right after thousands were deleted makes the inode
        allocator skip every recently freed inode (`recently_deleted` in the kernel's
        profile), which would time the previous pair's clean-up, not add-stage."""
        k = [0]

        def subject():
            k[0] += 1
            _, t = self.make_repo(f"batch{k[0]}", n)
            return t
        self.add(f"add-stage of {n} cards, one call / --version",
                 lambda: ratio_row(f"add-stage of {n} cards, one call / --version", subject,
                                   self.version, BATCH_PAIRS))


def main():
    info = nb.machine()
    print("nightshift goals benchmark (ratios to a yardstick, median of alternating pairs)")
    for key in ("date", "nproc", "cpu", "git", "loadavg", "nightshift", "source"):
        print(f"  {key}: {info[key]}")
    print(f"  sizes: N={N} BIG={BIG} pairs={PAIRS} batch pairs={BATCH_PAIRS}", flush=True)
    g = Goals()
    try:
        small, _ = g.make_repo("small", 10)
        g.scenario(small, 10)
        g.batch(N)
        large, _ = g.make_repo("large", N)
        g.scenario(large, N)
        try:
            big, t = g.make_repo("big", BIG)
            print(f"  (set-up: add-stage of {BIG} cards in batches of 2,000: {t:.1f} s)")
            g.scenario(big, BIG)
        except Exception as e:  # noqa: BLE001
            g.rows.append(failed_row(f"any tick at {BIG} queued", e))
        print("\npeak RSS (GNU time %M: the process and the git children it waited for)")
        for r in g.rss:
            kib = r["kib"]
            print(f"  {r['what']:<40} {'n/a' if kib is None else f'{kib / 1024:.1f} MiB'}")
        print(f"\nload average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")
        out = os.environ.get("BENCH_JSON")
        if out:
            import json
            with open(out, "w") as f:
                json.dump({"machine": info, "rows": g.rows, "rss": g.rss}, f, indent=2)
            print(f"results written to {out}")
    finally:
        g.cleanup()


if __name__ == "__main__":
    t0 = time.monotonic()
    try:
        main()
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        sys.exit(130)
    print(f"goals benchmark wall time: {time.monotonic() - t0:.0f}s")
