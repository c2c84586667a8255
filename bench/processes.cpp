// Process and Pool scenarios: start + join of a child (us) beside a bare fork + waitpid; a Pool
// map of 100,000 tiny tasks (ms), maps of 3 and 32 (us) and an apply_async round trip (us), whose
// peers are Python's
// (bench/peers.py), the map beside its bare limit (fresh_result: its result made in-process).
#include "harness.hpp"

#include <multiproc/multiproc.hpp>

#include <numeric>
#include <vector>

namespace mp = multiproc;

namespace bench {
namespace {

// ---- process start + join, microseconds ---------------------------------------------------------

//! The mean time of n calls of start_and_join(), which returns whether the child exited with 0.
template <class StartAndJoin>
Result per_child(const char* what, StartAndJoin start_and_join) {
  const long n = 2000;
  long bad = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) bad += !start_and_join();
  const double s = seconds(t0);
  if (bad != 0) die(what);
  return {s / n * 1e6, "us", false};
}

Result process_multiproc() {
  return per_child("process: a child failed", [] {
    mp::Process p([] {});
    p.start();
    p.join();
    return p.exitcode() == 0;
  });
}

Result process_bare() {
  return per_child("fork: a child failed", [] {
    const pid_t pid = ::fork();
    if (pid < 0) die("fork");
    if (pid == 0) ::_exit(0);
    return reap(pid);
  });
}

// ---- pool: map of 100,000 tiny tasks (ms), apply_async round trip (us) --------------------------

long square(long x) { return x * x; }

Result pool_map_multiproc() {
  // The mean of `maps` consecutive maps on one warm pool (as peers.py): the first map of a
  // process also pays for growing its heap, which says little about a pool in use.
  const int maps = 10;
  mp::Pool pool(2);
  pool.map(square, std::vector<long>{1, 2, 3});  // workers up and warm, as in the Python peer
  std::vector<long> in(100000);
  long expect = 0;
  for (long i = 0; i < 100000; ++i) {
    in[i] = i;
    expect += i * i;
  }
  std::vector<std::vector<long>> outs;  // kept, as the Python peer keeps its lists
  const auto t0 = Clock::now();
  for (int m = 0; m < maps; ++m) outs.push_back(pool.map(square, in));
  const double s = seconds(t0) / maps;
  long bad = 0;
  for (const auto& out : outs) {
    long sum = 0;
    for (long v : out) sum += v;
    bad += out.size() != in.size() || sum != expect;
  }
  pool.close();
  pool.join();
  if (bad != 0) die("pool_map: wrong sum");
  return {s * 1e3, "ms", false};
}

// pool_map_100k's bare limit: what any map returning a fresh result costs at least — the same
// ten kept vectors of 100,000 squares, computed in this process (no workers, no transfer). On a
// host where a page costs microseconds at its first touch (a VM whose hypervisor maps each page
// then), this alone is a large part of a map's time.
Result pool_map_fresh_result() {
  const int maps = 10;
  std::vector<long> in(100000);
  long expect = 0;
  for (long i = 0; i < 100000; ++i) {
    in[i] = i;
    expect += i * i;
  }
  std::vector<std::vector<long>> outs;
  const auto t0 = Clock::now();
  for (int m = 0; m < maps; ++m) {
    std::vector<long> out;
    out.reserve(in.size());
    mp::detail::populate(out.data(), in.size() * sizeof(long));  // as the Pool pre-maps a result
    out.resize(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = square(in[i]);
    outs.push_back(std::move(out));
  }
  const double s = seconds(t0) / maps;
  long bad = 0;
  for (const auto& out : outs) bad += std::accumulate(out.begin(), out.end(), 0L) != expect;
  if (bad != 0) die("pool_map fresh_result: wrong sum");
  return {s * 1e3, "ms", false};
}

// A small map's latency: `items` tiny tasks (default chunksize: one item each), us per map. Three
// fit the idle workers of Pool(2) (at most two tasks each: the caller deals them out itself);
// thirty-two are the manager's to deal out.
Result pool_map_small(long items) {
  mp::Pool pool(2);
  pool.map(square, std::vector<long>{1, 2, 3});
  std::vector<long> in(static_cast<std::size_t>(items));
  std::iota(in.begin(), in.end(), 0L);
  const long expect = std::accumulate(in.begin(), in.end(), 0L, [](long a, long x) { return a + x * x; });
  const long n = 2000;
  long bad = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    const std::vector<long> out = pool.map(square, in);
    bad += std::accumulate(out.begin(), out.end(), 0L) != expect;
  }
  const double s = seconds(t0);
  pool.close();
  pool.join();
  if (bad != 0) die("pool_map_small: wrong sum");
  return {s / n * 1e6, "us", false};
}

Result pool_apply_multiproc() {
  mp::Pool pool(2);
  pool.apply(square, 1L);
  const long n = 50000;
  long bad = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) bad += pool.apply_async(square, i).get() != i * i;
  const double s = seconds(t0);
  pool.close();
  pool.join();
  if (bad != 0) die("pool_apply_async: wrong result");
  return {s / n * 1e6, "us", false};
}

}  // namespace

void add_process_scenarios(Scenarios& s) {
  s["process_start_join"] = {{"multiproc", process_multiproc}, {"bare_fork_waitpid", process_bare}};
  s["pool_map_100k"] = {{"multiproc", pool_map_multiproc}, {"fresh_result", pool_map_fresh_result}};
  s["pool_apply_async"] = {{"multiproc", pool_apply_multiproc}};
  s["pool_map_3"] = {{"multiproc", [] { return pool_map_small(3); }}};
  s["pool_map_32"] = {{"multiproc", [] { return pool_map_small(32); }}};
}

}  // namespace bench
