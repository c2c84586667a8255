#!/usr/bin/env python3
"""Python multiprocessing peers for multiproc's benchmark: one measurement per run.

    peers.py <scenario> <impl>     prints {"value": ..., "unit": "...", "better": "higher"}
    peers.py --list                prints "<scenario> <impl>" lines

Each scenario does the same work as its C++ counterpart in bench/*.cpp, with the 'fork' start
method, processes started before the clock runs. Message counts are smaller (Python is slower);
the results are rates, so they compare directly.
"""
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor

ctx = mp.get_context("fork")


def result(value, unit, better):
    print(json.dumps({"value": value, "unit": unit, "better": better}))


def _start_line(n):
    return ctx.Barrier(n + 1)


def _timed_processes(start, ps):
    """Starts ps, releases them with the parent at the start line; seconds until all joined."""
    for p in ps:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for p in ps:
        p.join()
    return time.perf_counter() - t0


# ---- queues ---------------------------------------------------------------------------------

def _produce(q, start, n, item):
    start.wait()
    for i in range(n):
        q.put(item if item is not None else i)


def queue_spsc(kind, n=200000):
    q = ctx.Queue(1024) if kind == "queue" else ctx.SimpleQueue()
    start = _start_line(1)
    p = ctx.Process(target=_produce, args=(q, start, n, None))
    p.start()
    start.wait()
    t0 = time.perf_counter()
    total = 0
    for _ in range(n):
        total += q.get()
    dt = time.perf_counter() - t0
    p.join()
    assert total == n * (n - 1) // 2
    result(n / dt, "msgs/s", "higher")


def _consume(q, start, n, out):
    start.wait()
    s = 0
    for _ in range(n):
        s += q.get()
    with out.get_lock():
        out.value += s


def queue_mpmc(n=100000):
    q = ctx.Queue(1024)
    out = ctx.Value("q", 0)
    start = _start_line(4)
    ps = [ctx.Process(target=_produce, args=(q, start, n, None)) for _ in range(2)]
    ps += [ctx.Process(target=_consume, args=(q, start, n, out)) for _ in range(2)]
    dt = _timed_processes(start, ps)
    assert out.value == 2 * (n * (n - 1) // 2)
    result(2 * n / dt, "msgs/s", "higher")


def queue_bytes(size, n):
    q = ctx.Queue(256)
    start = _start_line(1)
    p = ctx.Process(target=_produce, args=(q, start, n, b"x" * size))
    p.start()
    start.wait()
    t0 = time.perf_counter()
    bad = 0
    for _ in range(n):
        bad += len(q.get()) != size
    dt = time.perf_counter() - t0
    p.join()
    assert bad == 0
    result(size * n / dt / 1e6, "MB/s", "higher")


# ---- pipes ----------------------------------------------------------------------------------

def _echo(conn, start, n, raw):
    start.wait()
    for _ in range(n):
        if raw:
            conn.send_bytes(conn.recv_bytes())
        else:
            conn.send(conn.recv())


def pipe_roundtrip(raw, n=20000):
    a, b = ctx.Pipe()
    start = _start_line(1)
    p = ctx.Process(target=_echo, args=(b, start, n, raw))
    p.start()
    start.wait()
    payload = b"12345678"
    t0 = time.perf_counter()
    for i in range(n):
        if raw:
            a.send_bytes(payload)
            a.recv_bytes()
        else:
            a.send(i)
            assert a.recv() == i
    dt = time.perf_counter() - t0
    p.join()
    result(dt / n * 1e6, "us", "lower")


def _blast(conn, start, n, size):
    start.wait()
    msg = b"x" * size
    for _ in range(n):
        conn.send_bytes(msg)


def pipe_bandwidth(n=256, size=1 << 20):
    a, b = ctx.Pipe(duplex=False)
    start = _start_line(1)
    p = ctx.Process(target=_blast, args=(b, start, n, size))
    p.start()
    start.wait()
    buf = bytearray(size)
    t0 = time.perf_counter()
    for _ in range(n):
        assert a.recv_bytes_into(buf) == size
    dt = time.perf_counter() - t0
    p.join()
    result(size * n / dt / 1e6, "MB/s", "higher")


# ---- locks ----------------------------------------------------------------------------------

def _increment(v, start, n):
    start.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def lock_contention(procs, n=50000):
    v = ctx.Value("q", 0)
    start = _start_line(procs)
    ps = [ctx.Process(target=_increment, args=(v, start, n)) for _ in range(procs)]
    dt = _timed_processes(start, ps)
    assert v.value == procs * n
    result(procs * n / dt, "increments/s", "higher")


def lock_uncontended(n=1000000):
    lock = ctx.Lock()
    t0 = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    dt = time.perf_counter() - t0
    result(dt / n * 1e9, "ns", "lower")


# ---- processes and pools ----------------------------------------------------------------------

def _nothing():
    pass


def process_start_join(n=200):
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=_nothing)
        p.start()
        p.join()
    dt = time.perf_counter() - t0
    result(dt / n * 1e6, "us", "lower")


def square(x):
    return x * x


def pool_map(n=100000, maps=10):
    # As processes.cpp: the mean of `maps` consecutive maps on one warm pool.
    with ctx.Pool(2) as pool:
        pool.map(square, range(10))  # workers up and warm
        t0 = time.perf_counter()
        outs = [pool.map(square, range(n)) for _ in range(maps)]
        dt = time.perf_counter() - t0
    expect = sum(i * i for i in range(n))
    assert all(sum(out) == expect for out in outs)
    result(dt / maps * 1e3, "ms", "lower")


def pool_map_small(items, n=1000):
    # As processes.cpp: the mean of n maps of `items` tiny tasks on one warm pool.
    with ctx.Pool(2) as pool:
        pool.map(square, range(3))
        expect = sum(i * i for i in range(items))
        t0 = time.perf_counter()
        for _ in range(n):
            assert sum(pool.map(square, range(items))) == expect
        dt = time.perf_counter() - t0
    result(dt / n * 1e6, "us", "lower")


def pool_apply_async(n=5000):
    with ctx.Pool(2) as pool:
        pool.apply_async(square, (1,)).get()
        t0 = time.perf_counter()
        for i in range(n):
            assert pool.apply_async(square, (i,)).get() == i * i
        dt = time.perf_counter() - t0
    result(dt / n * 1e6, "us", "lower")


# ---- manager dict ---------------------------------------------------------------------------
# As bench/manager.cpp: a Manager's dict of int -> int; a client sets key k then gets it back,
# over 1024 keys of its own. Timed: only the set/get calls (the manager and the client processes
# are started, and the proxy connected, before the clock runs). One operation is one set or one
# get, so a pair is two operations.

DICT_KEYS = 1024


def _dict_pairs(d, base, n):
    """n set(k, v) + get(k) pairs on keys base .. base + DICT_KEYS - 1; the number of bad gets."""
    bad = 0
    for i in range(n):
        k = base + i % DICT_KEYS
        d[k] = i
        bad += d[k] != i
    return bad


def manager_dict_roundtrip(n=20000):
    # One client, the main process itself: microseconds per operation (a pair is two).
    with ctx.Manager() as m:
        d = m.dict()
        _dict_pairs(d, 0, 100)  # connected and warm
        t0 = time.perf_counter()
        bad = _dict_pairs(d, 0, n)
        dt = time.perf_counter() - t0
    assert bad == 0
    result(dt / (2 * n) * 1e6, "us", "lower")


def _dict_client(d, start, k, n, bad):
    _dict_pairs(d, k * 1000000, 10)  # this process's own connection, made before the clock
    start.wait()
    b = _dict_pairs(d, k * 1000000, n)
    with bad.get_lock():
        bad.value += b


def manager_dict_clients(procs, n=10000):
    # procs forked client processes, each with its own keys, released together: operations per
    # second over all of them, from the release until the last has exited.
    with ctx.Manager() as m:
        d = m.dict()
        bad = ctx.Value("q", 0)
        start = _start_line(procs)
        ps = [ctx.Process(target=_dict_client, args=(d, start, k, n, bad)) for k in range(procs)]
        dt = _timed_processes(start, ps)
        assert bad.value == 0 and len(d) == procs * min(n, DICT_KEYS)
    result(procs * 2 * n / dt, "ops/s", "higher")


# ---- ProcessPoolExecutor ----------------------------------------------------------------------
# As bench/executor.cpp: two workers, forked, up and warm before the clock runs.

def executor_submit(n=5000):
    # submit(square, i).result(), one task at a time: microseconds per task.
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        list(ex.map(square, range(10)))  # both workers up and warm
        t0 = time.perf_counter()
        for i in range(n):
            assert ex.submit(square, i).result() == i * i
        dt = time.perf_counter() - t0
    result(dt / n * 1e6, "us", "lower")


def executor_map(chunksize, n=100000, maps=5):
    # list(ex.map(square, range(n), chunksize=...)): milliseconds per map, the mean of `maps`
    # consecutive maps on one warm executor (as pool_map). executor_map_100k: chunksize=12500,
    # what Pool.map picks for 100,000 items and 2 workers (n / (4 * workers)), the sensible
    # setting and the goal's peer; executor_map_100k_default: ProcessPoolExecutor.map's own
    # default, chunksize=1 (one map: it takes seconds).
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        list(ex.map(square, range(10)))  # both workers up and warm
        t0 = time.perf_counter()
        outs = [list(ex.map(square, range(n), chunksize=chunksize)) for _ in range(maps)]
        dt = time.perf_counter() - t0
    expect = sum(i * i for i in range(n))
    assert all(len(out) == n and sum(out) == expect for out in outs)
    result(dt / maps * 1e3, "ms", "lower")


SCENARIOS = {
    ("queue_spsc_8B", "python_queue"): lambda: queue_spsc("queue"),
    ("queue_spsc_8B", "python_simplequeue"): lambda: queue_spsc("simple"),
    ("queue_mpmc_2x2", "python_queue"): queue_mpmc,
    ("queue_strings_64B", "python_queue"): lambda: queue_bytes(64, 100000),
    ("queue_strings_4KiB", "python_queue"): lambda: queue_bytes(4096, 50000),
    ("pipe_roundtrip_8B", "python_pipe"): lambda: pipe_roundtrip(False),
    ("pipe_roundtrip_8B", "python_pipe_bytes"): lambda: pipe_roundtrip(True),
    ("pipe_bandwidth_1MiB", "python_pipe_bytes"): pipe_bandwidth,
    ("lock_contention_2p", "python_value_lock"): lambda: lock_contention(2),
    ("lock_contention_4p", "python_value_lock"): lambda: lock_contention(4),
    ("lock_uncontended", "python_lock"): lock_uncontended,
    ("process_start_join", "python_process"): process_start_join,
    ("pool_map_100k", "python_pool"): pool_map,
    ("pool_apply_async", "python_pool"): pool_apply_async,
    ("pool_map_3", "python_pool"): lambda: pool_map_small(3),
    ("pool_map_32", "python_pool"): lambda: pool_map_small(32),
    ("manager_dict_roundtrip", "python_manager_dict"): manager_dict_roundtrip,
    ("manager_dict_1p", "python_manager_dict"): lambda: manager_dict_clients(1),
    ("manager_dict_2p", "python_manager_dict"): lambda: manager_dict_clients(2),
    ("manager_dict_4p", "python_manager_dict"): lambda: manager_dict_clients(4),
    ("executor_submit_result", "python_executor"): executor_submit,
    ("executor_map_100k", "python_executor"): lambda: executor_map(12500),
    ("executor_map_100k_default", "python_executor"): lambda: executor_map(1, maps=1),
}

if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        for scenario, impl in SCENARIOS:
            print(scenario, impl)
        sys.exit(0)
    if len(sys.argv) != 3 or tuple(sys.argv[1:]) not in SCENARIOS:
        sys.exit("usage: peers.py <scenario> <impl> | --list")
    SCENARIOS[tuple(sys.argv[1:])]()
