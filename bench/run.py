#!/usr/bin/env python3
"""Runs multiproc's benchmark beside its peers, in one run, and reports ratios.

    bench/run.py --bench build/bench/multiproc_bench [--reps 5] [--only a,b] [--out DIR]
                 [--redis-bench build/bench/multiproc_redis_bench]

Every (scenario, implementation) pair — multiproc, Boost.Interprocess, Python's multiprocessing
(bench/peers.py, run with this python3), and bare limits — is measured --reps times. The
repetitions are interleaved (rep 1 of everything, then rep 2, ...) so that a noisy moment on a
shared machine hits every implementation alike. The table shows each median with its spread
(min..max), and multiproc's speed relative to each peer: "5.0x" means multiproc is five times
faster, whatever the unit. The goals of the project are checked against those ratios. Results go
to DIR/results.json and, when gnuplot is available, DIR/results.png.

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
    ("queue_spsc_8B", "bare_spin_ring", 0.5),
    ("pipe_roundtrip_8B", "kernel_pipe", 2.0),
    ("pipe_roundtrip_8B", "python_pipe", 30.0),
    ("lock_contention_2p", "boost_interprocess_mutex", 1.0),
    ("lock_contention_4p", "boost_interprocess_mutex", 1.0),
    ("lock_contention_2p", "python_value_lock", 30.0),
    ("lock_contention_4p", "python_value_lock", 30.0),
    ("process_start_join", "bare_fork_waitpid", 1 / 1.5),
    ("pool_map_100k", "python_pool", 10.0),
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

ORDER = [
    "queue_spsc_8B", "queue_mpmc_2x2", "queue_strings_64B", "queue_strings_4KiB",
    "pipe_roundtrip_8B", "pipe_bandwidth_1MiB", "lock_contention_2p", "lock_contention_4p",
    "lock_uncontended", "process_start_join", "pool_map_100k", "pool_apply_async",
    "manager_dict_roundtrip", "manager_dict_1p", "manager_dict_2p", "manager_dict_4p",
    "executor_submit_result", "executor_map_100k", "executor_map_100k_default",
    "redis_queue_1p1c", "redis_queue_batched_1p1c", "redis_task_roundtrip",
    "redis_pool_apply_async", "redis_pool_map_1w", "redis_pool_map_2w", "redis_pool_map_4w",
]


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


def pairs(cmd):
    out = subprocess.run(cmd + ["--list"], check=True, capture_output=True, text=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


def measure(cmd, scenario, impl, timeout):
    try:
        p = subprocess.run(cmd + [scenario, impl], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    try:
        return json.loads(p.stdout.strip().splitlines()[-1]), None
    except (ValueError, IndexError):
        return None, "unreadable output: " + p.stdout[-200:]


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


def chart(results, path):
    """Bars: multiproc's speed-up over each peer, per scenario (log scale), goals as marks."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return False
    goals = {(scenario, peer): goal for scenario, peer, goal in GOALS}
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
            got = speedup(mp_res["median"], r["median"], r["better"])
            goal = goals.get((scenario, impl))
            rows.append((x, scenario, impl, got, peer_family(impl), goal if goal else "NaN"))
            x += 1
        x += 0.8  # a gap between scenarios
    if not rows:
        return False
    data_path = path + ".dat"
    with open(data_path, "w") as f:
        for x, scenario, impl, got, family, goal in rows:
            f.write('%.1f "%s / %s" %.6g %d %s\n' % (x, scenario, impl, got, family, goal))
    script = """
set terminal pngcairo size 1600,900 font "sans,10" noenhanced
set output '%s'
set title "multiproc's speed-up over each peer, same run, medians (above 1: multiproc is faster)"
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
     '' using 1:5 with points pt 9 ps 1.6 lc rgb "#cc3311" title "goal", \\
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
    ap.add_argument("--timeout", type=int, default=180)
    ap.add_argument("--redis-bench", default=None,
                    help="the multiproc_redis_bench binary (default: beside --bench, if built)")
    args = ap.parse_args()

    cpp = [os.path.abspath(args.bench)]
    py = [sys.executable, os.path.join(HERE, "peers.py")]
    todo = [(s, i, cpp) for s, i in pairs(cpp)] + [(s, i, py) for s, i in pairs(py)]
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
    todo.sort(key=lambda t: (ORDER.index(t[0]) if t[0] in ORDER else 99, t[1] != "multiproc", t[1]))

    samples, units, errors = {}, {}, {}
    for rep in range(args.reps):
        print("repetition %d of %d" % (rep + 1, args.reps), file=sys.stderr, flush=True)
        for scenario, impl, cmd in todo:
            if redis and scenario.startswith("redis_"):
                redis.flush()  # every measurement starts from an empty server
            r, err = measure(cmd, scenario, impl, args.timeout)
            key = (scenario, impl)
            if r is None:
                errors[key] = err
                print("  %s %s: %s" % (scenario, impl, err), file=sys.stderr, flush=True)
                continue
            samples.setdefault(key, []).append(r["value"])
            units[key] = (r["unit"], r["better"])

    results = {}
    for scenario, impl, _ in todo:
        key = (scenario, impl)
        vals = samples.get(key, [])
        unit, better = units.get(key, ("?", "higher"))
        results.setdefault(scenario, {})[impl] = {
            "median": statistics.median(vals) if vals else None,
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
            "samples": vals,
            "unit": unit,
            "better": better,
            "error": errors.get(key),
        }

    # The table.
    print()
    print("multiproc benchmark, %s" % datetime.date.today().isoformat())
    m = machine()
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

    print()
    print("goals (multiproc's speed-up over the peer, from one run):")
    goal_rows = []
    for scenario, peer, goal in GOALS:
        if scenario not in results:
            continue  # not selected (--only), or not built
        impls = results.get(scenario, {})
        mp_res, peer_res = impls.get("multiproc"), impls.get(peer)
        if not mp_res or not peer_res or mp_res["median"] is None or peer_res["median"] is None:
            print("  %-22s vs %-26s goal %5sx: not measured" % (scenario, peer, fmt(goal)))
            continue
        got = speedup(mp_res["median"], peer_res["median"], mp_res["better"])
        ok = got >= goal
        goal_rows.append({"scenario": scenario, "peer": peer, "goal": goal, "got": got, "met": ok})
        print("  %-22s vs %-26s goal %5sx: %7sx  %s" % (scenario, peer, fmt(goal), fmt(got),
                                                         "met" if ok else "MISSED"))

    os.makedirs(args.out, exist_ok=True)
    out = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": m,
        "repetitions": args.reps,
        "results": results,
        "goals": goal_rows,
    }
    json_path = os.path.join(args.out, "results.json")
    with open(json_path, "w") as f:
        json.dump(out, f, indent=2)
    png_path = os.path.join(args.out, "results.png")
    drew = chart(results, png_path)
    print()
    print("wrote %s%s" % (json_path, (" and " + png_path) if drew else " (no gnuplot: no chart)"))


if __name__ == "__main__":
    main()
