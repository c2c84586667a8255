#!/usr/bin/env python3
"""Requests per second of the pre-fork server sample, beside the same server in Python, with ab.

    bench/prefork_ab.py --server build/samples/prefork_server/prefork_server
                        [--workers 4] [--requests 20000] [--concurrency 16] [--reps 3]

Both servers do the same work per request: accept on one listening socket shared by forked
workers, count the hit in a shared locked counter (mp::SharedValue<long> / multiprocessing.Value),
answer a fixed-length body, and put a log line on a queue drained by a logger process
(mp::Queue / multiprocessing.Queue). ab (Debian's apache2-utils) drives each with HTTP/1.0
requests, one connection per request. Repetitions alternate between the two servers so that a
noisy moment hits both; the table gives medians with min..max and multiproc's speed-up. The
CPU model is printed with the figures: ratios move between machines.
"""
import argparse
import multiprocessing as pymp
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time


def python_server(port_out, workers):
    """The Python peer: prints its port to port_out (a pipe fd), serves until SIGTERM."""
    hits = pymp.Value("l", 0)
    log = pymp.Queue(4096)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)

    def serve():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        me = os.getpid()
        while True:
            c, _ = sock.accept()
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                part = c.recv(2048)
                if not part:
                    break
                head += part
            with hits.get_lock():
                hits.value += 1
                n = hits.value
            body = b"hit %012d by %8d\n" % (n, me)
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n" % len(body) + body)
            c.close()
            try:
                log.put_nowait("%d GET / hit %d" % (me, n))
            except Exception:
                pass

    def drain():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with open(os.devnull, "w") as out:
            while True:
                line = log.get()
                if line is None:
                    return
                out.write(line + "\n")

    procs = [pymp.Process(target=serve, daemon=True) for _ in range(workers)]
    logger = pymp.Process(target=drain, daemon=True)
    logger.start()
    for p in procs:
        p.start()
    os.write(port_out, b"%d\n" % sock.getsockname()[1])
    os.close(port_out)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.1)
    for p in procs:
        p.terminate()
        p.join()
    log.put(None)
    logger.join(10)


def start_multiproc(server, workers):
    # The sample runs N forked workers and one exec'd: N = workers - 1, the same total as Python.
    p = subprocess.Popen([server, "0", str(max(1, workers - 1))], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    m = re.search(r"127\.0\.0\.1:(\d+)", p.stdout.readline())
    return p, int(m.group(1))


def start_python(workers):
    r, w = os.pipe()
    p = pymp.get_context("fork").Process(target=python_server, args=(w, workers))
    p.start()
    os.close(w)
    port = int(os.read(r, 64).decode())
    os.close(r)
    return p, port


def stop(p):
    if isinstance(p, subprocess.Popen):
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    else:
        p.terminate()
        p.join(30)


def ab(port, requests, concurrency):
    out = subprocess.run(["ab", "-q", "-n", str(requests), "-c", str(concurrency),
                          "http://127.0.0.1:%d/" % port], capture_output=True, text=True,
                         check=True).stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    return rps, failed


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--server", default="build/samples/prefork_server/prefork_server")
    a.add_argument("--workers", type=int, default=4)
    a.add_argument("--requests", type=int, default=20000)
    a.add_argument("--concurrency", type=int, default=16)
    a.add_argument("--reps", type=int, default=3)
    args = a.parse_args()
    if shutil.which("ab") is None:
        sys.exit("prefork_ab.py: needs ab (apt-get install apache2-utils)")
    results = {"multiproc": [], "python": []}
    for _ in range(args.reps):
        for name, start in (("multiproc", lambda: start_multiproc(args.server, args.workers)),
                            ("python", lambda: start_python(args.workers))):
            proc, port = start()
            try:
                ab(port, min(1000, args.requests), args.concurrency)  # warm-up
                rps, failed = ab(port, args.requests, args.concurrency)
            finally:
                stop(proc)
            if failed:
                sys.exit("prefork_ab.py: %s answered %d requests wrongly" % (name, failed))
            results[name].append(rps)
    print("prefork server, %d workers, ab -n %d -c %d, %d reps, %s, %d CPUs" %
          (args.workers, args.requests, args.concurrency, args.reps, cpu_model(), os.cpu_count()))
    for name, v in results.items():
        print("  %-10s %9.0f req/s  (%.0f..%.0f)" % (name, statistics.median(v), min(v), max(v)))
    print("  multiproc / python: %.2fx" %
          (statistics.median(results["multiproc"]) / statistics.median(results["python"])))


if __name__ == "__main__":
    main()
