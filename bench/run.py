#!/usr/bin/env python3
"""Runs multiproc's benchmark beside its peers, in one run, and reports ratios.

    bench/run.py --bench build/bench/multiproc_bench [--reps 5] [--only a,b] [--out DIR]
                 [--redis-bench build/bench/multiproc_redis_bench] [--curve-reps 3] [--no-curves]

Every (scenario, implementation) pair — multiproc, Boost.Interprocess, Python's multiprocessing
(bench/peers.py, run with this python3), and bare limits — is measured --reps times. The
repetitions are interleaved (rep 1 of everything, then rep 2, ...) so that a noisy moment on a
shared machine hits every implementation alike. The table shows each median with its spread
(min..max), and multiproc's speed relative to each peer: "5.0x" means multiproc is five times
faster, whatever the unit. Results go to DIR/results.json and, when gnuplot is available,
DIR/results.png; every result and goal row there carries the CPU model and kernel it was
measured on ("machine").

Goals are judged on paired ratios: repetition i of multiproc against repetition i of the peer
(measured moments apart), one ratio per repetition. The goal row shows their median and spread
(min..max): "met" when the whole spread is at or above the goal, "MISSED" when all of it is below,
and "inconclusive" when the spread straddles the goal (the reason is printed) — this machine's
noise, not multiproc, decides such a row, and more repetitions or a quieter machine settle it.
A goal whose scenario is not built or not selected is skipped. A goal with a bare limit in LIMITS
(the same transfer with nothing of multiproc's) that is not met also says, when that limit itself
falls short of the goal in this run, how far the limit got and how close multiproc came to it.

Curves (the multiproc_bench scenarios named curve_*, listed by --list-curves; bench/curves.cpp):
how the cost grows with the work — throughput against the number of processes and the message
size, latency percentiles, memory per object, the cost of names. Each (curve, implementation)
run prints every point of its curve; they run after the ratio scenarios, --curve-reps times
(default 3, at most --reps), interleaved the same way, and each point is the median of its
repetitions. They go to results.json ("curves") and DIR/curves.png. --no-curves leaves them out;
--only selects them by name too (--only curve_lock_procs).

A goal with a floor in FLOORS (multiproc's own work with nothing crossing cores) that is not met
also says so when that floor alone takes more than the goal leaves beyond the peer.

A run that outlives --timeout is killed with its process group, and the names it made in
/dev/shm (they contain "bench.<its pid>.") are removed.

With --redis-bench (found beside --bench when built), the multiproc::redis scenarios run too, with
their peers (bench/redis_peers.py: Python's RQ, and BaseManager serving a queue over TCP): run.py
starts one redis-server of its own (127.0.0.1, a free port, a temporary directory, no
persistence) for all of them, hands its url over in MULTIPROC_BENCH_REDIS_URL, flushes it before
each measurement, and stops it at the end.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# (scenario, peer, minimum speed-up of multiproc over the peer) — from the project's issues.
GOALS = [
    ("queue_spsc_8B", "boost_message_queue", 4.0),
    ("queue_spsc_8B", "python_queue", 100.0),
    ("queue_spsc_8B", "bare_spin_ring", 0.7),       # issue 16 (was 0.5)
    ("queue_strings_64B", "boost_message_queue", 3.0),  # issue 16
    ("queue_strings_4KiB", "boost_message_queue", 3.0),  # issue 16
    ("pipe_roundtrip_8B", "kernel_pipe", 2.0),
    ("pipe_roundtrip_8B", "python_pipe", 30.0),
    ("pipe_roundtrip_8B", "bare_spin", 1 / 1.5),     # issue 16: within 1.5x the spinning ping-pong
    ("pipe_bandwidth_1MiB", "memcpy", 0.9),          # issue 16
    ("lock_contention_2p", "boost_interprocess_mutex", 1.0),
    ("lock_contention_4p", "boost_interprocess_mutex", 1.0),
    ("lock_contention_8p", "boost_interprocess_mutex", 1.0),  # issue 16
    ("lock_uncontended", "boost_interprocess_mutex", 1.0),    # issue 16
    ("lock_contention_2p", "python_value_lock", 30.0),
    ("lock_contention_4p", "python_value_lock", 30.0),
    ("process_start_join", "bare_fork_waitpid", 1 / 1.5),
    ("pool_map_100k", "python_pool", 15.0),          # issue 16 (was 10)
    ("pool_apply_async", "python_pool", 15.0),       # issue 16
    ("manager_dict_roundtrip", "python_manager_dict", 20.0),
    ("manager_dict_1p", "python_manager_dict", 20.0),
    ("manager_dict_2p", "python_manager_dict", 20.0),
    ("manager_dict_4p", "python_manager_dict", 20.0),
    ("executor_submit_result", "python_executor", 10.0),
    ("executor_map_100k", "python_executor", 10.0),
    ("redis_pool_map_1w", "python_rq", 10.0),
    ("redis_pool_map_2w", "python_rq", 10.0),
    ("redis_pool_map_4w", "python_rq", 10.0),
    ("redis_pool_apply_async", "python_rq", 10.0),  # one job per task, as RQ: no batching
]

# Goals that no implementation may reach on some hosts, with bare limits measured beside them:
# (scenario, peer) -> the implementations that do the same work with nothing of multiproc's.
# When such a limit itself falls short of the goal against the peer, the goal row says so, with
# both ratios, so that a MISSED row tells the host's limit from multiproc's cost.
LIMITS = {
    # bare_ring: a bare two-process copy in 128 KiB chunks through a shared ring (memcpy stays
    # within one core's cache, every pipe crosses cores); one_copy_kernel: the kernel's single
    # copy (process_vm_readv) out of the sender's memory, no shared ring, one copy instead of two
    ("pipe_bandwidth_1MiB", "memcpy"): ("bare_ring", "one_copy_kernel"),
    # ten kept vectors of 100,000 squares made in-process: what any map returning a fresh result
    # costs at least (on a VM that maps each page at its first touch, most of a map's time)
    ("pool_map_100k", "python_pool"): ("fresh_result",),
}

# Goals on a time (lower is better) within a factor of a bare peer: the scenario's floor of
# multiproc's own work, measured with nothing crossing cores. multiproc's time is about the
# peer's plus that work, so a floor above (1/goal - 1) x the peer leaves the goal out of reach
# of anything but fewer instructions; a goal not met says so (floor_reason).
FLOORS = {
    # two sends and two receives by one thread: the instructions of a round trip, no crossing
    ("pipe_roundtrip_8B", "bare_spin"): "one_thread_floor",
}

ORDER = [
    "queue_spsc_8B", "queue_mpmc_2x2", "queue_strings_64B", "queue_strings_4KiB",
    "pipe_roundtrip_8B", "pipe_bandwidth_1MiB", "lock_contention_2p", "lock_contention_4p",
    "lock_contention_8p", "lock_uncontended", "process_start_join", "pool_map_100k",
    "pool_apply_async",
    "manager_dict_roundtrip", "manager_dict_1p", "manager_dict_2p", "manager_dict_4p",
    "executor_submit_result", "executor_map_100k", "executor_map_100k_default",
    "redis_queue_1p1c", "redis_queue_batched_1p1c", "redis_task_roundtrip",
    "redis_pool_apply_async", "redis_pool_map_1w", "redis_pool_map_2w", "redis_pool_map_4w",
]

# The curves (bench/curves.cpp), in the order of their tables and panels: (curve, panel title,
# whether the x axis is logarithmic, whether the y axis is logarithmic). Points whose x is not a
# number (percentiles are, but are drawn as categories; memory, operations) are drawn as
# clustered bars.
CURVES = [
    ("curve_lock_procs", "lock: increments/s vs processes (2 cores: oversubscribed from 3)",
     False, False),
    ("curve_queue_procs", "Queue<long>, N -> N: messages/s vs processes", False, False),
    ("curve_msg_size", "1 -> 1 throughput vs message size (MB/s)", True, True),
    ("curve_latency_pipe", "round trip of 8 bytes: percentiles (us)", None, True),
    ("curve_latency_lock", "lock hand-off to a waiting process: percentiles (us)", None, True),
    ("curve_memory", "memory per named object, used once (KiB)", None, True),
    ("curve_names", "10,000 named objects: us per object", None, True),
]
CURVE_NAMES = [c[0] for c in CURVES]


def is_curve(scenario):
    return scenario.startswith("curve_")


class RedisServer:
    """A redis-server of the benchmark's own: 127.0.0.1, a free port, a temporary directory."""

    def __init__(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.dir = tempfile.mkdtemp(prefix="multiproc-bench-redis.")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "redis.log")])
        self.url = "redis://127.0.0.1:%d/0" % self.port
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def flush(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
            c.sendall(b"FLUSHALL\r\n")
            c.recv(16)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def pairs(cmd, option="--list"):
    out = subprocess.run(cmd + [option], check=True, capture_output=True, text=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


def remove_names_of(pid):
    """Removes what a killed or failed run left in /dev/shm: names containing "bench.<pid>."
    (bench/harness.hpp's unique(), multiproc's "mp." prefix or not). Returns them."""
    token = "bench.%d." % pid
    left = []
    try:
        for name in os.listdir("/dev/shm"):
            if token in name:
                try:
                    os.unlink(os.path.join("/dev/shm", name))
                    left.append(name)
                except OSError:
                    pass
    except OSError:
        pass
    return left


def measure(cmd, scenario, impl, timeout):
    """One run: (its JSON, None) or (None, why not). The run has a process group of its own,
    killed whole at the timeout (children included); after a failure or a kill, the names it
    left in /dev/shm are removed."""
    p = subprocess.Popen(cmd + [scenario, impl], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        why = None if p.returncode == 0 else (
            err.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = p.communicate()
        why = "timed out after %d s (killed)" % timeout
    except BaseException:  # ^C: the run is in a session of its own, which the terminal's misses
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()
        remove_names_of(p.pid)
        raise
    if why:
        left = remove_names_of(p.pid)
        if left:
            why += "; removed %d names it left in /dev/shm" % len(left)
        try:
            os.killpg(p.pid, signal.SIGKILL)  # a child that outlived it
        except OSError:
            pass
        return None, why
    try:
        return json.loads(out.strip().splitlines()[-1]), None
    except (ValueError, IndexError):
        return None, "unreadable output: " + out[-200:]


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        mem_kb = 0
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "system": " ".join(platform.freedesktop_os_release().get("PRETTY_NAME", "").split())
        if hasattr(platform, "freedesktop_os_release") else platform.platform(),
    }


def speedup(mp_value, peer_value, better):
    """How many times faster multiproc is than the peer."""
    if not mp_value or not peer_value:
        return None
    return mp_value / peer_value if better == "higher" else peer_value / mp_value


def paired_ratios(mp_samples, peer_samples, better):
    """multiproc's speed-up over the peer, repetition by repetition: rep i against rep i (both
    lists hold one entry per repetition, None where that run failed); only complete pairs."""
    out = []
    for a, b in zip(mp_samples, peer_samples):
        r = speedup(a, b, better) if a is not None and b is not None else None
        if r is not None:
            out.append(r)
    return out


def judge(ratios, goal):
    """A goal against the paired ratios: (verdict, median, lo, hi, reason). The verdict is "met"
    when every ratio is at or above the goal, "MISSED" when every one is below it, and
    "inconclusive" when their spread lo..hi straddles it; "not measured" without ratios."""
    if not ratios:
        return "not measured", None, None, None, "no complete pair of runs"
    med, lo, hi = statistics.median(ratios), min(ratios), max(ratios)
    if lo >= goal:
        return "met", med, lo, hi, None
    if hi < goal:
        return "MISSED", med, lo, hi, None
    return ("inconclusive", med, lo, hi,
            "spread %s..%s straddles the goal %s" % (fmt(lo), fmt(hi), fmt(goal)))


def limit_reason(results, scenario, peer, goal):
    """For a goal in LIMITS: for each bare limit that itself falls short of the goal, a sentence
    naming its own ratio to the peer and multiproc's ratio to it (paired medians), joined with
    "; "; None when no limit falls short, or none was measured."""
    impls = results.get(scenario, {})
    mp_res, peer_res = impls.get("multiproc"), impls.get(peer)
    if not mp_res or not peer_res:
        return None
    better = mp_res["better"]
    said = []
    for limit in LIMITS.get((scenario, peer), ()):
        lim_res = impls.get(limit)
        if not lim_res:
            continue
        lim_vs_peer = paired_ratios(lim_res["by_repetition"], peer_res["by_repetition"], better)
        mp_vs_lim = paired_ratios(mp_res["by_repetition"], lim_res["by_repetition"], better)
        if not lim_vs_peer or not mp_vs_lim or statistics.median(lim_vs_peer) >= goal:
            continue
        said.append("the bare limit %s reaches only %sx %s here; multiproc is %sx %s" % (
            limit, fmt(statistics.median(lim_vs_peer)), peer, fmt(statistics.median(mp_vs_lim)),
            limit))
    return "; ".join(said) or None


def floor_reason(results, scenario, peer, goal):
    """For a goal in FLOORS: a sentence saying that multiproc's own work (the floor, paired
    median against the peer) already exceeds what the goal leaves beyond the peer, when it does;
    None otherwise, or when either was not measured."""
    floor = FLOORS.get((scenario, peer))
    impls = results.get(scenario, {})
    peer_res, floor_res = impls.get(peer), impls.get(floor)
    if not floor or not peer_res or not floor_res or peer_res["better"] != "lower" or goal <= 0:
        return None
    shares = [f / p for f, p in zip(floor_res["by_repetition"], peer_res["by_repetition"])
              if f is not None and p]
    allowed = 1 / goal - 1
    if not shares or statistics.median(shares) <= allowed:
        return None
    return ("multiproc's own work (%s: one thread, nothing crossing cores) is already %sx %s, "
            "more than the %sx the goal leaves beyond it" % (
                floor, fmt(statistics.median(shares)), peer, fmt(allowed)))


def fmt(v):
    if v is None:
        return "-"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def peer_family(impl):
    if impl.startswith("python_"):
        return 1  # Python's multiprocessing
    if impl.startswith("boost_"):
        return 2  # Boost.Interprocess
    return 3      # bare limits: kernel pipes, raw rings, plain pthread mutexes, memcpy, fork


def relative(rel):
    """'3.0x faster' / '2.0x slower' (multiproc against the peer)."""
    if rel is None:
        return ""
    if rel >= 1:
        return fmt(rel) + "x faster"
    return fmt(1 / rel) + "x slower"


def chart(results, path, goal_rows=()):
    """Bars: multiproc's speed-up over each peer, per scenario (log scale): the median of the
    paired ratios, with their spread (min..max) as error bars; goals as marks coloured by their
    verdict (met, MISSED, inconclusive)."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return False
    goals = {(scenario, peer): goal for scenario, peer, goal in GOALS}
    verdicts = {(g["scenario"], g["peer"]): g["verdict"] for g in goal_rows}
    codes = {"met": 1, "MISSED": 2, "inconclusive": 3}
    rows = []
    x = 0.0
    for scenario in results:
        impls = results[scenario]
        mp_res = impls.get("multiproc")
        if not mp_res or mp_res["median"] is None:
            continue
        for impl, r in sorted(impls.items(), key=lambda kv: (peer_family(kv[0]), kv[0])):
            if impl == "multiproc" or r["median"] is None:
                continue
            ratios = paired_ratios(mp_res["by_repetition"], r["by_repetition"], r["better"])
            if not ratios:
                continue
            goal = goals.get((scenario, impl))
            rows.append((x, scenario, impl, statistics.median(ratios), peer_family(impl),
                         goal if goal else "NaN", min(ratios), max(ratios),
                         codes.get(verdicts.get((scenario, impl)), 0)))
            x += 1
        x += 0.8  # a gap between scenarios
    if not rows:
        return False
    data_path = path + ".dat"
    with open(data_path, "w") as f:
        for x, scenario, impl, got, family, goal, lo, hi, verdict in rows:
            f.write('%.1f "%s / %s" %.6g %d %s %.6g %.6g %d\n' % (
                x, scenario, impl, got, family, goal, lo, hi, verdict))
    script = """
set terminal pngcairo size 1600,900 font "sans,10" noenhanced
set output '%s'
set title "multiproc's speed-up over each peer, same run: median of the paired ratios, bars min..max (above 1: multiproc is faster)"
set logscale y
set grid ytics
set ylabel "multiproc speed / peer speed (log scale)"
set style fill solid 0.85 border -1
set boxwidth 0.8
set xtics rotate by 60 right font ",8"
set key top right
set yrange [0.1:*]
set palette defined (1 "#ee7733", 2 "#0077bb", 3 "#999999")
unset colorbox
plot '%s' using 1:($4 == 1 ? $3 : 1/0):xtic(2) with boxes lc rgb "#ee7733" title "vs Python multiprocessing", \\
     '' using 1:($4 == 2 ? $3 : 1/0) with boxes lc rgb "#0077bb" title "vs Boost.Interprocess", \\
     '' using 1:($4 == 3 ? $3 : 1/0) with boxes lc rgb "#999999" title "vs bare limits (kernel, raw ring, pthread, memcpy, fork)", \\
     '' using 1:3:6:7 with yerrorbars pt 0 lc rgb "#000000" notitle, \\
     '' using 1:($8 == 1 ? $5 : 1/0) with points pt 9 ps 1.6 lc rgb "#228833" title "goal: met", \\
     '' using 1:($8 == 2 ? $5 : 1/0) with points pt 9 ps 1.6 lc rgb "#cc3311" title "goal: MISSED", \\
     '' using 1:($8 == 3 ? $5 : 1/0) with points pt 9 ps 1.6 lc rgb "#ccbb44" title "goal: inconclusive (spread straddles it)", \\
     1 with lines lc rgb "#000000" lw 1 notitle
""" % (path, data_path)
    p = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
    os.remove(data_path)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
    return p.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="the multiproc_bench binary")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated scenarios")
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--timeout", type=int, default=180, help="seconds a run may take")
    ap.add_argument("--curve-reps", type=int, default=3,
                    help="repetitions of the curves (at most --reps; default 3)")
    ap.add_argument("--no-curves", action="store_true", help="leave the curves out")
    ap.add_argument("--redis-bench", default=None,
                    help="the multiproc_redis_bench binary (default: beside --bench, if built)")
    args = ap.parse_args()

    cpp = [os.path.abspath(args.bench)]
    py = [sys.executable, os.path.join(HERE, "peers.py")]
    todo = [(s, i, cpp) for s, i in pairs(cpp)] + [(s, i, py) for s, i in pairs(py)]
    if not args.no_curves:
        todo += [(s, i, cpp) for s, i in pairs(cpp, "--list-curves")]
    redis_bench = args.redis_bench or os.path.join(os.path.dirname(cpp[0]), "multiproc_redis_bench")
    redis = None
    if os.path.exists(redis_bench) and shutil.which("redis-server"):
        rcpp = [os.path.abspath(redis_bench)]
        rpy = [rq_python(), os.path.join(HERE, "redis_peers.py")]
        todo += [(s, i, rcpp) for s, i in pairs(rcpp)] + [(s, i, rpy) for s, i in pairs(rpy)]
    if args.only:
        wanted = set(args.only.split(","))
        todo = [t for t in todo if t[0] in wanted]
    if any(t[0].startswith("redis_") for t in todo):
        redis = RedisServer()
        os.environ["MULTIPROC_BENCH_REDIS_URL"] = redis.url
    try:
        run_all(args, todo, redis)
    finally:
        if redis:
            redis.stop()


def rq_python():
    """A python3 that has RQ (Debian's python3-rq is in /usr/bin/python3's path, not
    necessarily in the python3 running this script, e.g. a pyenv one)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(exe) and subprocess.run(
                [exe, "-c", "import rq"], capture_output=True).returncode == 0:
            return exe
    return sys.executable  # redis_peers.py then says what to install


def run_all(args, todo, redis):
    started = time.monotonic()
    curves_todo = [t for t in todo if is_curve(t[0])]
    todo = [t for t in todo if not is_curve(t[0])]
    todo.sort(key=lambda t: (ORDER.index(t[0]) if t[0] in ORDER else 99, t[1] != "multiproc", t[1]))
    curves_todo.sort(key=lambda t: (CURVE_NAMES.index(t[0]) if t[0] in CURVE_NAMES else 99, t[1]))
    m = machine()
    where = {"cpu": m["cpu"], "kernel": m["kernel"]}  # beside every result and goal row

    # by_rep[key][i]: repetition i's value, None where that run failed (the pairs of the ratios).
    by_rep, units, errors, secs = {}, {}, {}, {}
    for rep in range(args.reps):
        print("repetition %d of %d" % (rep + 1, args.reps), file=sys.stderr, flush=True)
        for scenario, impl, cmd in todo:
            if redis and scenario.startswith("redis_"):
                redis.flush()  # every measurement starts from an empty server
            t0 = time.monotonic()
            r, err = measure(cmd, scenario, impl, args.timeout)
            key = (scenario, impl)
            secs[key] = secs.get(key, 0.0) + time.monotonic() - t0
            by_rep.setdefault(key, [])
            if r is None or "value" not in r:
                errors[key] = err or "no value"
                by_rep[key].append(None)
                print("  %s %s: %s" % (scenario, impl, errors[key]), file=sys.stderr, flush=True)
                continue
            by_rep[key].append(r["value"])
            units[key] = (r["unit"], r["better"])
    ratio_seconds = time.monotonic() - started

    results = {}
    for scenario, impl, _ in todo:
        key = (scenario, impl)
        reps = by_rep.get(key, [])
        vals = [v for v in reps if v is not None]
        unit, better = units.get(key, ("?", "higher"))
        results.setdefault(scenario, {})[impl] = {
            "median": statistics.median(vals) if vals else None,
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
            "samples": vals,
            "by_repetition": reps,  # None where that repetition's run failed
            "unit": unit,
            "better": better,
            "error": errors.get(key),
            "seconds": round(secs.get(key, 0.0), 2),  # wall time of all its runs
            "machine": where,
        }

    # The table.
    print()
    print("multiproc benchmark, %s" % datetime.date.today().isoformat())
    print("%s, %s CPUs, %s GiB, Linux %s, %s, Python %s; %d repetitions, medians (min..max)" % (
        m["cpu"], m["cpus"], m["memory_gib"], m["kernel"], m["system"], m["python"], args.reps))
    for scenario in results:
        impls = results[scenario]
        mp_res = impls.get("multiproc", {})
        print()
        print("%-22s %-26s %14s  %-22s %12s" % (scenario, "implementation", "median", "spread", "multiproc is"))
        for impl, r in impls.items():
            if r["median"] is None:
                print("%-22s %-26s %14s  %s" % ("", impl, "failed", r["error"]))
                continue
            rel = speedup(mp_res.get("median"), r["median"], r["better"]) if impl != "multiproc" else None
            print("%-22s %-26s %10s %-3s  %-22s %12s" % (
                "", impl, fmt(r["median"]), r["unit"], "%s..%s" % (fmt(r["min"]), fmt(r["max"])),
                relative(rel)))

    goal_rows = []
    if results:
        print()
        print("goals: multiproc's speed-up over the peer, paired by repetition (rep i against")
        print("rep i), median (min..max); inconclusive when that spread straddles the goal:")
    for scenario, peer, goal in GOALS:
        if scenario not in results:
            continue  # not selected (--only), or not built
        impls = results.get(scenario, {})
        mp_res, peer_res = impls.get("multiproc"), impls.get(peer)
        if not mp_res or not peer_res:
            print("  %-22s vs %-26s goal %5sx: not measured" % (scenario, peer, fmt(goal)))
            continue
        ratios = paired_ratios(mp_res["by_repetition"], peer_res["by_repetition"], mp_res["better"])
        verdict, got, lo, hi, reason = judge(ratios, goal)
        if verdict != "met":
            for host in (limit_reason(results, scenario, peer, goal),
                         floor_reason(results, scenario, peer, goal)):
                if host:
                    reason = reason + "; " + host if reason else host
        goal_rows.append({"scenario": scenario, "peer": peer, "goal": goal, "got": got,
                          "ratio_min": lo, "ratio_max": hi, "paired_ratios": ratios,
                          "verdict": verdict, "met": verdict == "met", "reason": reason,
                          "machine": where})
        if got is None:
            print("  %-22s vs %-26s goal %5sx: not measured" % (scenario, peer, fmt(goal)))
            continue
        print("  %-22s vs %-26s goal %5sx: %7sx (%s..%s)  %s%s" % (
            scenario, peer, fmt(goal), fmt(got), fmt(lo), fmt(hi), verdict,
            ": " + reason if reason else ""))

    curves = run_curves(args, curves_todo, where)
    total_seconds = time.monotonic() - started

    os.makedirs(args.out, exist_ok=True)
    out = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": m,
        "repetitions": args.reps,
        "curve_repetitions": min(args.reps, args.curve_reps) if curves else 0,
        "seconds": {"ratios": round(ratio_seconds, 1), "total": round(total_seconds, 1)},
        "results": results,
        "goals": goal_rows,
        "curves": curves,
    }
    json_path = os.path.join(args.out, "results.json")
    with open(json_path, "w") as f:
        json.dump(out, f, indent=2)
    wrote = [json_path]
    if results:
        png_path = os.path.join(args.out, "results.png")
        if chart(results, png_path, goal_rows):
            wrote.append(png_path)
    if curves:
        curves_path = os.path.join(args.out, "curves.png")
        if curves_chart(curves, curves_path):
            wrote.append(curves_path)
    print()
    print("wrote %s%s; %.0f s (ratio scenarios %.0f s, curves %.0f s)" % (
        " and ".join(wrote), "" if shutil.which("gnuplot") else " (no gnuplot: no chart)",
        total_seconds, ratio_seconds, total_seconds - ratio_seconds))


def number(x):
    try:
        return float(x)
    except ValueError:
        return None


def run_curves(args, todo, where):
    """Runs the curves --curve-reps times (at most --reps), interleaved; returns
    {curve: {"x": label, "unit", "better", "machine", "impls": {impl: {"points": [[x, median],
    ...], "by_repetition": [[[x, v], ...] or None, ...], "error", "seconds"}}}} and prints their
    tables."""
    if not todo:
        return {}
    reps = max(1, min(args.reps, args.curve_reps))
    started = time.monotonic()
    runs, meta, errors, secs = {}, {}, {}, {}
    for rep in range(reps):
        print("curves: repetition %d of %d" % (rep + 1, reps), file=sys.stderr, flush=True)
        for curve, impl, cmd in todo:
            t0 = time.monotonic()
            r, err = measure(cmd, curve, impl, args.timeout)
            key = (curve, impl)
            secs[key] = secs.get(key, 0.0) + time.monotonic() - t0
            runs.setdefault(key, [])
            if r is None or "points" not in r:
                errors[key] = err or "no points"
                runs[key].append(None)
                print("  %s %s: %s" % (curve, impl, errors[key]), file=sys.stderr, flush=True)
                continue
            runs[key].append(r["points"])
            meta[curve] = {"x": r["x"], "unit": r["unit"], "better": r["better"]}
    curves = {}
    for curve, impl, _ in todo:
        key = (curve, impl)
        xs, per_x = [], {}
        for points in runs.get(key, []):
            for x, v in points or []:
                if x not in per_x:
                    xs.append(x)
                per_x.setdefault(x, []).append(v)
        c = curves.setdefault(curve, dict(meta.get(curve, {"x": "?", "unit": "?", "better": "?"}),
                                          machine=where, impls={}))
        c["impls"][impl] = {
            "points": [[x, statistics.median(per_x[x])] for x in xs],
            "by_repetition": runs.get(key, []),
            "error": errors.get(key),
            "seconds": round(secs.get(key, 0.0), 2),
        }

    print()
    print("curves (%d repetitions, medians per point; %.0f s):" % (
        reps, time.monotonic() - started))
    for curve in curves:
        c = curves[curve]
        xs = []
        for r in c["impls"].values():
            xs += [x for x, _ in r["points"] if x not in xs]
        print()
        print("%s: %s by %s" % (curve, c["unit"], c["x"]))
        width = max([10] + [len(short_x(x)) + 2 for x in xs])
        print("  %-24s" % "" + "".join("%*s" % (width, short_x(x)) for x in xs))
        for impl, r in c["impls"].items():
            if r["error"] and not r["points"]:
                print("  %-24s failed: %s" % (impl, r["error"]))
                continue
            got = dict((x, v) for x, v in r["points"])
            print("  %-24s" % impl + "".join("%*s" % (width, fmt(got.get(x))) for x in xs))
    return curves


def short_x(x):
    """8388608 -> 8M, 4096 -> 4K; other labels as they are."""
    v = number(x)
    if v is None or v < 1024 or v != int(v):
        return x
    for unit, size in (("M", 2 ** 20), ("K", 2 ** 10)):
        if v >= size and v % size == 0:
            return "%d%s" % (v // size, unit)
    return x


def impl_colour(impl, seen):
    """multiproc's implementations in reds, Boost's in blues, bare limits in greys and greens
    (as in results.png: Boost blue, bare grey), the same in every panel."""
    families = {"multiproc": ["#cc3311", "#ee3377", "#aa3377", "#ee7733"],
                "boost_": ["#0077bb", "#33bbee"],
                "": ["#777777", "#009988", "#bbbbbb", "#000000"]}
    family = next(f for f in families if impl.startswith(f))
    k = seen.setdefault(family, {}).setdefault(impl, len(seen[family]))
    return families[family][k % len(families[family])]


def curves_chart(curves, path):
    """curves.png: one panel per curve; lines against a numeric x (processes, message size),
    clustered bars for categories (percentiles, memory, operations)."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return False
    panels = [c for c in CURVES if c[0] in curves] + [
        (name, name, False, False) for name in curves if name not in CURVE_NAMES]
    cols = 3 if len(panels) > 4 else max(1, min(2, len(panels)))
    rows = (len(panels) + cols - 1) // cols
    tmp = tempfile.mkdtemp(prefix="multiproc-curves.")
    where = next(iter(curves.values())).get("machine", {})
    script = ['set terminal pngcairo size %d,%d font "sans,9" noenhanced' % (620 * cols, 460 * rows),
              "set output '%s'" % path,
              'set multiplot layout %d,%d title "multiproc: how the cost grows with the work '
              '(medians per point; %s, Linux %s, %s CPUs)"' % (
                  rows, cols, where.get("cpu", "?"), where.get("kernel", "?"), os.cpu_count())]
    seen = {}
    for n, (curve, title, logx, logy) in enumerate(panels):
        c = curves[curve]
        impls = [i for i, r in c["impls"].items() if r["points"]]
        if not impls:
            continue
        xs = []
        for i in impls:
            xs += [x for x, _ in c["impls"][i]["points"] if x not in xs]
        numeric = logx is not None and all(number(x) is not None for x in xs)
        data = os.path.join(tmp, "%d.dat" % n)
        with open(data, "w") as f:
            f.write('"x" ' + " ".join('"%s"' % i for i in impls) + "\n")
            for x in xs:
                row = []
                for i in impls:
                    v = dict((px, pv) for px, pv in c["impls"][i]["points"]).get(x)
                    row.append("%.6g" % v if v is not None and (v > 0 or not logy) else "NaN")
                f.write('%s %s\n' % (x if numeric else '"%s"' % short_x(x), " ".join(row)))
        script += ["reset", 'set title "%s"' % title, "set grid ytics",
                   'set ylabel "%s"' % c["unit"], 'set xlabel "%s"' % c["x"],
                   'set key outside bottom center horizontal font ",8"',
                   "set logscale y" if logy else "unset logscale y"]
        if numeric:
            script += ["set logscale x 2" if logx else "unset logscale x",
                       "set yrange [0:*]" if not logy else "set yrange [*:*]",
                       "set offsets graph 0.03, graph 0.03, 0, 0"]
            plots = ["'%s' using 1:%d with linespoints lw 2 pt 7 lc rgb \"%s\" title columnheader(%d)"
                     % (data, k + 2, impl_colour(impls[k], seen), k + 2) for k in range(len(impls))]
            if logx:
                script.append("set xtics (%s)" % ", ".join('"%s" %s' % (short_x(x), x) for x in xs))
            else:
                script.append("set xtics 1")
        else:
            script += ["set style data histograms", "set style histogram clustered gap 1",
                       "set style fill solid 0.85 border -1", "set boxwidth 0.9",
                       "set yrange [*:*]" if logy else "set yrange [0:*]"]
            plots = ["'%s' using %d:xtic(1) lc rgb \"%s\" title columnheader(%d)"
                     % (data, k + 2, impl_colour(impls[k], seen), k + 2) for k in range(len(impls))]
        script.append("plot " + ", \\\n     ".join(plots))
    script.append("unset multiplot")
    p = subprocess.run([gnuplot], input="\n".join(script) + "\n", text=True, capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
    return p.returncode == 0


if __name__ == "__main__":
    main()
