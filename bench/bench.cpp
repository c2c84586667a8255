// multiproc_bench — one measurement of one scenario with one implementation per run.
//
//   multiproc_bench <scenario> <impl>      prints {"value": ..., "unit": "...", "better": "higher"}
//   multiproc_bench <curve_...> <impl>     prints {"points": [["x", value], ...], "x": "<x label>",
//                                          "unit": "...", "better": "higher"} (curves.cpp)
//   multiproc_bench --list                 prints "<scenario> <impl>" lines (not the curves)
//   multiproc_bench --list-curves          prints "<curve_...> <impl>" lines
//
// bench/run.py runs every (scenario, impl) pair several times, interleaved, together with the
// Python peers in bench/peers.py, and reports medians and ratios. Every implementation of a
// scenario does the same work between processes created the same way (fork), timed the same way:
// processes are started and synchronised first, the clock runs only over the work.
//
// The scenarios live by family, each with all its implementations side by side: queues.cpp,
// pipes.cpp, locks.cpp, processes.cpp, manager.cpp and executor.cpp (built once the Manager and
// the executor are in the tree: bench/CMakeLists.txt); harness.hpp starts, releases and times
// the processes. curves.cpp measures how the cost grows with the work (processes, message size),
// latency percentiles, memory per object and the cost of names, one curve per run. The same
// main() is multiproc_redis_bench, built with MULTIPROC_BENCH_REDIS_ONLY over the
// multiproc::redis scenarios (redis.cpp), which need a server (bench/run.py starts one).
#include "harness.hpp"

#include <cstdio>
#include <string>

namespace {

const bench::Scenarios& scenarios() {
  static const bench::Scenarios s = [] {
    bench::Scenarios all;
#ifdef MULTIPROC_BENCH_REDIS_ONLY  // multiproc_redis_bench: bench/redis*.cpp only
    bench::add_redis_scenarios(all);
#else
    bench::add_queue_scenarios(all);
    bench::add_pipe_scenarios(all);
    bench::add_lock_scenarios(all);
    bench::add_process_scenarios(all);
#ifdef MULTIPROC_BENCH_MANAGER
    bench::add_manager_scenarios(all);
#endif
#ifdef MULTIPROC_BENCH_EXECUTOR
    bench::add_executor_scenarios(all);
#endif
#endif
    return all;
  }();
  return s;
}

const bench::Curves& curves() {
  static const bench::Curves c = [] {
    bench::Curves all;
#ifndef MULTIPROC_BENCH_REDIS_ONLY
    bench::add_curve_scenarios(all);
#endif
    return all;
  }();
  return c;
}

// A curve's JSON line; x values are strings (run.py reads numbers where they are numbers).
void print_curve(const bench::Curve& c) {
  std::printf("{\"points\": [");
  for (std::size_t i = 0; i < c.points.size(); ++i) {
    std::printf("%s[\"%s\", %.6g]", i ? ", " : "", c.points[i].first.c_str(), c.points[i].second);
  }
  std::printf("], \"x\": \"%s\", \"unit\": \"%s\", \"better\": \"%s\"}\n", c.x_label, c.unit,
              c.higher_is_better ? "higher" : "lower");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (const auto& [scenario, impls] : scenarios()) {
      for (const auto& [impl, fn] : impls) std::printf("%s %s\n", scenario.c_str(), impl.c_str());
    }
    return 0;
  }
  if (argc == 2 && std::string(argv[1]) == "--list-curves") {  // apart: bench/ab.py reads --list
    for (const auto& [curve, impls] : curves()) {
      for (const auto& [impl, fn] : impls) std::printf("%s %s\n", curve.c_str(), impl.c_str());
    }
    return 0;
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: multiproc_bench <scenario> <impl> | --list | --list-curves\n");
    return 2;
  }
  if (const auto c = curves().find(argv[1]); c != curves().end()) {
    const auto i = c->second.find(argv[2]);
    if (i == c->second.end()) {
      std::fprintf(stderr, "unknown implementation %s for %s\n", argv[2], argv[1]);
      return 2;
    }
    print_curve(i->second());
    return 0;
  }
  const auto s = scenarios().find(argv[1]);
  if (s == scenarios().end()) {
    std::fprintf(stderr, "unknown scenario %s\n", argv[1]);
    return 2;
  }
  const auto i = s->second.find(argv[2]);
  if (i == s->second.end()) {
    std::fprintf(stderr, "unknown implementation %s for %s\n", argv[2], argv[1]);
    return 2;
  }
  const bench::Result r = i->second();
  std::printf("{\"value\": %.6g, \"unit\": \"%s\", \"better\": \"%s\"}\n", r.value, r.unit,
              r.higher_is_better ? "higher" : "lower");
  return 0;
}
