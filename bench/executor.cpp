// ProcessPoolExecutor scenarios, beside Python's concurrent.futures.ProcessPoolExecutor
// (bench/peers.py, the same work): a submit(square, i).result() round trip, one task at a time
// (us per task), and a map of square over 100,000 longs (ms per map) with chunksize 12500 (what
// Pool.map picks for 100,000 items and 2 workers) and with the default chunksize (1, as Python's).
// Two workers on both sides.
//
// Timed: only the submits/results and the maps; the executor is constructed and its workers up
// and warm (a small map first) before the clock runs.
#include "harness.hpp"

#include <multiproc/executor.hpp>

#include <vector>

namespace mp = multiproc;

namespace bench {
namespace {

long square(long x) { return x * x; }

//! An executor of two workers, both up and warm.
void warm(mp::ProcessPoolExecutor& ex) {
  for (long v : ex.map(square, std::vector<long>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})) (void)v;
}

Result submit_multiproc() {
  mp::ProcessPoolExecutor ex(2);
  warm(ex);
  const long n = 50000;
  long bad = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) bad += ex.submit(square, i).result() != i * i;
  const double s = seconds(t0);
  if (bad != 0) die("executor_submit_result: wrong result");
  return {s / n * 1e6, "us", false};
}

//! The mean of `maps` consecutive maps of square over 0 .. 99,999 on one warm executor, every
//! result read in order (as peers.py, which takes list(ex.map(...))); map(f, inputs) with
//! `chunksize`, or with map's default when it is 0.
Result map_multiproc(std::size_t chunksize, int maps) {
  mp::ProcessPoolExecutor ex(2);
  warm(ex);
  std::vector<long> in(100000);
  long expect = 0;
  for (long i = 0; i < 100000; ++i) {
    in[i] = i;
    expect += i * i;
  }
  std::vector<std::vector<long>> outs(maps);  // kept, as the Python peer keeps its lists
  const auto t0 = Clock::now();
  for (auto& out : outs) {
    out.reserve(in.size());
    if (chunksize == 0) {
      for (long v : ex.map(square, in)) out.push_back(v);
    } else {
      for (long v : ex.map(square, in, chunksize)) out.push_back(v);
    }
  }
  const double s = seconds(t0) / maps;
  long bad = 0;
  for (const auto& out : outs) {
    long sum = 0;
    for (long v : out) sum += v;
    bad += out.size() != in.size() || sum != expect;
  }
  if (bad != 0) die("executor_map: wrong sum");
  return {s * 1e3, "ms", false};
}

}  // namespace

void add_executor_scenarios(Scenarios& s) {
  s["executor_submit_result"] = {{"multiproc", submit_multiproc}};
  // chunksize 12500 on both sides: what Pool.map picks for 100,000 items and 2 workers.
  s["executor_map_100k"] = {{"multiproc", [] { return map_multiproc(12500, 10); }}};
  // Each side's default chunksize (1 on both: one task per item); one map, it takes seconds.
  s["executor_map_100k_default"] = {{"multiproc", [] { return map_multiproc(0, 1); }}};
}

}  // namespace bench
