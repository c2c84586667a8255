// Squares a range on a Pool, with a live progress line, then prints the total time.
//
//   pool_map [count=2000000] [workers=CPUs] [chunksize=0 (Python's default)]
//
// The progress callback runs in this process each time a chunk comes back; the squares are
// checked against the closed formula at the end.
#include "args.hpp"

#include <multiproc/multiproc.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

namespace mp = multiproc;

namespace {
long square(long x) { return x * x; }
}  // namespace

int main(int argc, char** argv) {
  const sample::Args args(argc, argv, "usage: pool_map [count>=0] [workers>=1] [chunksize>=0]");
  const long count = args.get(1, 2000000, 0);
  const int workers = args.get_int(2, mp::cpu_count(), 1);
  const auto chunksize = static_cast<std::size_t>(args.get(3, 0, 0));
  std::vector<long> inputs(static_cast<std::size_t>(count));
  std::iota(inputs.begin(), inputs.end(), 0L);

  mp::Pool pool(workers);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<long> squares =
      pool.map(square, inputs, chunksize, [&](std::size_t done, std::size_t total) {
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const int width = 40;
        const int filled = static_cast<int>(width * done / total);
        std::printf("\r  [%.*s%*s] %3zu%%  %zu/%zu chunks  %.3f s", filled,
                    "########################################", width - filled, "",
                    100 * done / total, done, total, seconds);
        std::fflush(stdout);
      });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // sum of x^2 for x < n is (n-1) n (2n-1) / 6, computed in long double to stay exact enough.
  long double sum = 0;
  for (long v : squares) sum += static_cast<long double>(v);
  const long double n = static_cast<long double>(count);
  const long double expected = (n - 1) * n * (2 * n - 1) / 6;
  const bool ok = squares.size() == inputs.size() && sum == expected;
  std::printf("\nmultiproc pool map: %ld squares on %d workers in %.3f s (%.1f M items/s)\n", count,
              workers, seconds, seconds > 0 ? count / seconds / 1e6 : 0.0);
  std::printf("%s\n", ok ? "every square is right." : "ERROR: wrong results.");
  pool.close();
  pool.join();
  return ok ? 0 : 1;
}
