#!/usr/bin/env python3
"""A/B of two builds: old vs new multiproc_bench, interleaved with the peers, medians of --reps.
For a change that must not move the benchmark: build the old commit in another directory, then
run  bench/ab.py OLD/bench/multiproc_bench NEW/bench/multiproc_bench [--reps N] [--only a,b]"""
import json, subprocess, statistics, sys, argparse
ap = argparse.ArgumentParser(); ap.add_argument("old"); ap.add_argument("new")
ap.add_argument("--reps", type=int, default=5); ap.add_argument("--only", default="")
a = ap.parse_args()
pairs = [tuple(l.split()) for l in subprocess.run([a.new, "--list"], capture_output=True, text=True).stdout.splitlines() if l.strip()]
only = set(a.only.split(",")) if a.only else None
scen = sorted({s for s, _ in pairs if not only or s in only})
res = {}
def run(b, s, i):
    try:
        p = subprocess.run([b, s, i], capture_output=True, text=True, timeout=300)
        d = json.loads(p.stdout.strip().splitlines()[-1]); return d["value"], d["better"]
    except Exception as e:
        return None, None
for r in range(a.reps):
    for s in scen:
        for impl in [i for ss, i in pairs if ss == s]:
            bins = [("old", a.old), ("new", a.new)] if impl == "multiproc" else [("peer", a.new)]
            if r % 2: bins = bins[::-1]
            for tag, b in bins:
                v, better = run(b, s, impl)
                key = (s, impl if impl != "multiproc" else "multiproc_" + tag)
                res.setdefault(key, {"v": [], "better": better})
                if v is not None: res[key]["v"].append(v)
                if better: res[key]["better"] = better
model = [l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
print("CPU:", model, " reps:", a.reps)
for s in scen:
    o = res.get((s, "multiproc_old")); n = res.get((s, "multiproc_new"))
    mo = statistics.median(o["v"]) if o and o["v"] else None
    mn = statistics.median(n["v"]) if n and n["v"] else None
    better = (n or o)["better"]
    def sp(x, y):
        if not x or not y: return "-"
        return "%.2fx" % ((x / y) if better == "higher" else (y / x))
    g = lambda v: "-" if v is None else "%.4g" % v
    print(f"{s}: old {g(mo)} new {g(mn)} new/old {sp(mn, mo)}")
    for (ss, impl), d in sorted(res.items()):
        if ss != s or impl.startswith("multiproc") or not d["v"]: continue
        pm = statistics.median(d["v"])
        print(f"    vs {impl}: old {sp(mo, pm)}  new {sp(mn, pm)}")
