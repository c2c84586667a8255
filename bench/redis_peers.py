#!/usr/bin/python3
"""Python peers of multiproc::redis for the benchmark (issue 15, item 9): what Python users
reach for when they outgrow one machine, measured on the same redis-server as the C++ side.

    /usr/bin/python3 bench/redis_peers.py redis://127.0.0.1:PORT/0 [options]

prints one JSON object:

  "rq": Python RQ (Debian's python3-rq), the task queue on Redis.
     "throughput": for 1, 2 and 4 worker processes: `tasks` jobs of a trivial function
        (square(x) = x * x) are enqueued first (not timed), then the workers start at one start
        line in burst mode (they exit when the queue is empty) and the clock runs until the last
        one exits: tasks/s. Every job's result is checked afterwards (not timed).
     "enqueue": jobs/s that one client enqueues with Queue.enqueue (one job per call).
     "round_trip": one worker waiting for jobs; a client enqueues one job and waits for its
        result, `round_trips` times: median, p90 and mean milliseconds from enqueue to result.
        RQ 1.13 has no blocking wait for a result, so the client polls the job's status every
        0.2 ms (as user code does with job.get_status()/job.result); the figure includes up to
        that much polling granularity.
     Workers are rq.SimpleWorker (runs jobs in the worker process: RQ's fastest mode) by
     default; --worker-class forking uses rq.Worker, RQ's default, which forks a work horse per
     job (much slower; use fewer --tasks).
  "basemanager_queue": multiprocessing.managers.BaseManager serving a queue.Queue over TCP on
     127.0.0.1 (Python's "managers over TCP"): one producer process puts `messages` ints, one
     consumer process gets them, both connected before a start line; messages/s from the start
     line until both have finished (the consumer checks the sum).

Processes are forked (multiprocessing's 'fork' start method); the task is redis_peers.square
(this file, imported as a module). The redis server is the caller's (start one yourself, e.g.
`redis-server --port 6400 --save '' --appendonly no`); the script uses RQ's keys (rq:...) for
queues named mp_bench_<pid>..., and deletes its jobs, results and queues at the end (RQ's
worker records expire by themselves). Needs python3-rq
(Debian: apt-get install python3-rq; it brings python3-redis). Run it with Debian's
/usr/bin/python3, where python3-rq is installed.

Options: --tasks N (2000) --workers 1,2,4 --round-trips N (300) --messages N (20000)
         --worker-class simple|forking --only rq|basemanager

bench/run.py uses it as it uses peers.py, one measurement per run, on the server whose url is in
MULTIPROC_BENCH_REDIS_URL (run.py starts it):

    redis_peers.py --list                prints "<scenario> <impl>" lines
    redis_peers.py <scenario> <impl>     prints {"value": ..., "unit": "...", "better": "..."}

with the scenarios of bench/redis.cpp: redis_pool_map_{1,2,4}w and redis_pool_apply_async
(python_rq: throughput with 1, 2, 4 and 2 SimpleWorkers), redis_task_roundtrip (python_rq: the
median round trip, in us), redis_queue_1p1c and redis_queue_batched_1p1c
(python_basemanager_queue: messages/s; python_rq_enqueue: RQ jobs enqueued/s, one client).
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import statistics
import sys
import time
from multiprocessing.managers import BaseManager

from peers import _timed_processes  # bench/peers.py: start, release at the start line, join

ctx = mp.get_context("fork")


def square(x):
    """The trivial task."""
    return x * x


# ---- RQ ---------------------------------------------------------------------------------------

def _rq_modules():
    try:
        import redis
        import rq
    except ImportError as e:
        sys.exit("redis_peers.py: %s (Debian: apt-get install python3-rq; run /usr/bin/python3)" % e)
    return redis, rq


def _worker_class(rq, name):
    return rq.SimpleWorker if name == "simple" else rq.Worker


def _burst_worker(url, qname, worker_class, start):
    redis, rq = _rq_modules()
    conn = redis.Redis.from_url(url)
    w = _worker_class(rq, worker_class)([rq.Queue(qname, connection=conn)], connection=conn)
    start.wait()
    w.work(burst=True, logging_level="WARNING")


def _serving_worker(url, qname, worker_class):
    redis, rq = _rq_modules()
    conn = redis.Redis.from_url(url)
    w = _worker_class(rq, worker_class)([rq.Queue(qname, connection=conn)], connection=conn)
    w.work(burst=False, logging_level="WARNING")


def _forget(conn, ids):
    """Deletes jobs and their results (RQ keeps results in rq:results:<id> streams)."""
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        conn.delete(*["rq:job:" + j for j in chunk], *["rq:results:" + j for j in chunk])


def _cleanup(conn, qname):
    """Deletes this run's queues and their registries (rq:*<qname>*)."""
    for key in conn.scan_iter(match="rq:*%s*" % qname):
        conn.delete(key)
    for q in ("", "_rt", "_enqueue"):
        conn.srem("rq:queues", "rq:queue:" + qname + q)


def _result(job):
    return job.return_value() if hasattr(job, "return_value") else job.result


def rq_throughput(url, qname, tasks, workers, worker_class):
    redis, rq = _rq_modules()
    conn = redis.Redis.from_url(url)
    q = rq.Queue(qname, connection=conn)
    jobs = q.enqueue_many([rq.Queue.prepare_data(square, (i,)) for i in range(tasks)])
    start = ctx.Barrier(workers + 1)
    ps = [ctx.Process(target=_burst_worker, args=(url, qname, worker_class, start))
          for _ in range(workers)]
    dt = _timed_processes(start, ps)
    fetched = rq.job.Job.fetch_many([j.id for j in jobs], connection=conn)
    done = [j for j in fetched if j is not None and j.get_status() == "finished"]
    total = sum(_result(j) for j in done)
    want = sum(i * i for i in range(tasks))
    if len(done) != tasks or total != want:
        sys.exit("redis_peers.py: RQ finished %d of %d jobs (sum %d, want %d)"
                 % (len(done), tasks, total, want))
    _forget(conn, [j.id for j in jobs])
    return {"workers": workers, "tasks": tasks, "seconds": round(dt, 4),
            "tasks_per_s": round(tasks / dt, 1)}


def rq_enqueue_rate(url, qname, n):
    redis, rq = _rq_modules()
    conn = redis.Redis.from_url(url)
    q = rq.Queue(qname + "_enqueue", connection=conn)
    t0 = time.perf_counter()
    jobs = [q.enqueue(square, i) for i in range(n)]
    dt = time.perf_counter() - t0
    _forget(conn, [j.id for j in jobs])
    return {"jobs": len(jobs), "jobs_per_s": round(n / dt, 1)}


def rq_round_trip(url, qname, n, worker_class):
    redis, rq = _rq_modules()
    conn = redis.Redis.from_url(url)
    q = rq.Queue(qname + "_rt", connection=conn)
    w = ctx.Process(target=_serving_worker, args=(url, qname + "_rt", worker_class))
    w.start()
    samples = []
    try:
        for i in range(n + 20):  # the first 20 warm up
            t0 = time.perf_counter()
            job = q.enqueue(square, i)
            deadline = t0 + 30
            while job.get_status(refresh=True) != "finished":
                if job.is_failed or time.perf_counter() > deadline:
                    sys.exit("redis_peers.py: an RQ round trip failed or took over 30 s")
                time.sleep(0.0002)
            if _result(job) != i * i:
                sys.exit("redis_peers.py: wrong RQ result")
            if i >= 20:
                samples.append((time.perf_counter() - t0) * 1000)
            _forget(conn, [job.id])
    finally:
        w.terminate()
        w.join(10)
        if w.is_alive():
            w.kill()
            w.join()
        q.delete(delete_jobs=True)
    samples.sort()
    return {"samples": len(samples), "median_ms": round(statistics.median(samples), 3),
            "p90_ms": round(samples[int(len(samples) * 0.9)], 3),
            "mean_ms": round(statistics.fmean(samples), 3),
            "polled_every_ms": 0.2}


# ---- BaseManager serving a queue.Queue over TCP ----------------------------------------------

class QueueManager(BaseManager):
    pass


_served = queue.Queue()
QueueManager.register("get_queue", callable=lambda: _served)
AUTHKEY = b"redis_peers"


def _producer(address, n, start):
    m = QueueManager(address=address, authkey=AUTHKEY)
    m.connect()
    q = m.get_queue()
    start.wait()
    for i in range(n):
        q.put(i)


def _consumer(address, n, start, ok):
    m = QueueManager(address=address, authkey=AUTHKEY)
    m.connect()
    q = m.get_queue()
    start.wait()
    total = 0
    for _ in range(n):
        total += q.get()
    ok.value = 1 if total == n * (n - 1) // 2 else 0


def basemanager_queue(n):
    server = QueueManager(address=("127.0.0.1", 0), authkey=AUTHKEY, ctx=ctx)
    server.start()
    try:
        start = ctx.Barrier(3)
        ok = ctx.Value("i", 0)
        ps = [ctx.Process(target=_producer, args=(server.address, n, start)),
              ctx.Process(target=_consumer, args=(server.address, n, start, ok))]
        dt = _timed_processes(start, ps)
        if ok.value != 1 or any(p.exitcode != 0 for p in ps):
            sys.exit("redis_peers.py: the BaseManager queue lost or changed messages")
    finally:
        server.shutdown()
    return {"messages": n, "seconds": round(dt, 4), "msgs_per_s": round(n / dt, 1),
            "producers": 1, "consumers": 1}


# ---- bench/run.py's protocol --------------------------------------------------------------------

def _scenarios():
    def rq(fn):
        def run():
            url = os.environ.get("MULTIPROC_BENCH_REDIS_URL")
            if not url:
                sys.exit("redis_peers.py: set MULTIPROC_BENCH_REDIS_URL (bench/run.py does)")
            qname = "mp_bench_%d" % os.getpid()
            try:
                return fn(url, qname)
            finally:
                redis, _ = _rq_modules()
                _cleanup(redis.Redis.from_url(url), qname)
        return run

    def throughput(w):
        return rq(lambda url, q: (rq_throughput(url, q, 2000, w, "simple")["tasks_per_s"],
                                  "tasks/s", "higher"))

    rt = rq(lambda url, q: (rq_round_trip(url, q, 200, "simple")["median_ms"] * 1000, "us", "lower"))
    enq = rq(lambda url, q: (rq_enqueue_rate(url, q, 2000)["jobs_per_s"], "msgs/s", "higher"))

    def bm():
        return basemanager_queue(20000)["msgs_per_s"], "msgs/s", "higher"

    return {
        ("redis_pool_map_1w", "python_rq"): throughput(1),
        ("redis_pool_map_2w", "python_rq"): throughput(2),
        ("redis_pool_map_4w", "python_rq"): throughput(4),
        ("redis_pool_apply_async", "python_rq"): throughput(2),
        ("redis_task_roundtrip", "python_rq"): rt,
        ("redis_queue_1p1c", "python_basemanager_queue"): bm,
        ("redis_queue_1p1c", "python_rq_enqueue"): enq,
        ("redis_queue_batched_1p1c", "python_basemanager_queue"): bm,
    }


def run_py_protocol(argv):
    """bench/run.py's calls: --list, or <scenario> <impl>."""
    table = _scenarios()
    if argv == ["--list"]:
        for scenario, impl in table:
            print(scenario, impl)
        return
    value, unit, better = table[tuple(argv)]()
    print(json.dumps({"value": value, "unit": unit, "better": better}))


# ---- main --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="redis://host:port/db of a server you started")
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--round-trips", type=int, default=300)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--worker-class", choices=["simple", "forking"], default="simple")
    ap.add_argument("--only", choices=["rq", "basemanager"])
    a = ap.parse_args()

    out = {"python": platform.python_version(), "cpus": os.cpu_count()}
    if a.only in (None, "rq"):
        redis, rq = _rq_modules()
        qname = "mp_bench_%d" % os.getpid()
        conn = redis.Redis.from_url(a.url)
        conn.ping()
        out["rq"] = {
            "version": rq.__version__,
            "redis_py": redis.__version__,
            "worker_class": "rq.SimpleWorker" if a.worker_class == "simple" else "rq.Worker",
            "function": "square(x) = x * x",
            "throughput": [rq_throughput(a.url, qname, a.tasks, int(w), a.worker_class)
                           for w in a.workers.split(",")],
            "enqueue": rq_enqueue_rate(a.url, qname, a.tasks),
            "round_trip": rq_round_trip(a.url, qname, a.round_trips, a.worker_class),
        }
        _cleanup(conn, qname)
    if a.only in (None, "basemanager"):
        out["basemanager_queue"] = basemanager_queue(a.messages)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    # RQ refuses functions of __main__ (a worker could not import them): run everything from
    # this file imported as the module redis_peers, so that the task is redis_peers.square.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import redis_peers
    if sys.argv[1:] == ["--list"] or (len(sys.argv) == 3 and sys.argv[1].startswith("redis_")):
        redis_peers.run_py_protocol(sys.argv[1:])
    else:
        redis_peers.main()
