// The classic demonstration: N processes add to one shared counter, first without the lock
// (read-modify-write races lose updates), then with it (the total is exact).
//
//   lock_contention [processes=4] [iterations=1000000]
//
// Process i adds i+1 each iteration, so the expected total is iterations * N(N+1)/2.
#include "args.hpp"

#include <multiproc/multiproc.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace mp = multiproc;

namespace {

struct Result {
  long got;
  double seconds;
};

// Starts n children running body(i), releases them together, joins them, and times the run.
template <class Body>
double run_children(int n, Body body) {
  mp::Barrier start_line(static_cast<unsigned>(n) + 1);  // so that the processes really contend
  std::vector<mp::Process> children;
  for (int i = 0; i < n; ++i) {
    children.emplace_back([=] {
      start_line.wait();
      body(i);
    });
    children.back().start();
  }
  start_line.wait();
  const auto start = std::chrono::steady_clock::now();
  for (auto& c : children) c.join();
  for (auto& c : children) {
    if (c.exitcode() != 0) {
      std::fprintf(stderr, "lock_contention: %s exited with %d\n", c.name().c_str(), *c.exitcode());
      std::exit(2);
    }
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void report(const char* label, long expected, const Result& r, long increments) {
  std::printf("  %-18s %14ld %14ld %12ld %8.2f ms %9.2f M/s\n", label, expected, r.got,
              expected - r.got, r.seconds * 1e3, increments / r.seconds / 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  const sample::Args args(argc, argv, "usage: lock_contention [processes>=1] [iterations>=1]");
  const int n = args.get_int(1, 4, 1);
  const long iterations = args.get(2, 1000000, 1);
  const long expected = iterations * n * (n + 1) / 2;
  const long increments = iterations * n;

  // Without the lock: load() and store() are each atomic, but the pair is not.
  mp::RawValue<long> raw(0);
  const double unlocked = run_children(n, [=](int i) {
    for (long k = 0; k < iterations; ++k) raw.store(raw.load() + (i + 1));
  });

  // With the lock: update() runs the addition under the value's robust mutex.
  mp::SharedValue<long> locked(0);
  const double with_lock = run_children(n, [=](int i) {
    for (long k = 0; k < iterations; ++k) locked.update([i](long& v) { v += i + 1; });
  });

  std::printf("multiproc lock contention: %d processes x %ld iterations (process i adds i+1), "
              "%d CPUs\n",
              n, iterations, mp::cpu_count());
  std::printf("  %-18s %14s %14s %12s %11s %13s\n", "", "expected", "got", "lost", "time",
              "increments/s");
  report("without the lock", expected, {raw.load(), unlocked}, increments);
  report("with the lock", expected, {locked.load(), with_lock}, increments);
  const bool exact = locked.load() == expected;
  std::printf("%s\n", exact ? "with the lock the total is exact."
                            : "ERROR: the locked total is wrong.");
  return exact ? 0 : 1;
}
