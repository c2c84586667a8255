// ProcessPoolExecutor scenarios, beside Python's concurrent.futures.ProcessPoolExecutor
// (bench/peers.py, the same work): a submit(square, i).result() round trip, one task at a time
// (us per task), and a map of square over 100,000 longs (ms per map). Two workers on both sides.
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

Result map_multiproc() {
  // The mean of `maps` consecutive maps on one warm executor, every result read in order (as
  // peers.py, which takes list(ex.map(...))), with map's default chunk size.
  const int maps = 10;
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
    for (long v : ex.map(square, in)) out.push_back(v);
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
  s["executor_map_100k"] = {{"multiproc", map_multiproc}};
}

}  // namespace bench
