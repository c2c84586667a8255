// A Pool and a ProcessPoolExecutor at namespace scope, as a Python module keeps one: they are
// built during static initialisation, and their workers are forked then. This file includes no
// <iostream> on purpose: the program's own standard streams may not exist yet when the pools
// start. (An outside probe: the manager thread flushed std::cout before each fork and crashed the
// program with SIGSEGV before main; ctest runs this as global_pools.start_before_main.)
#include <multiproc/executor.hpp>
#include <multiproc/pool.hpp>

#include <cstdio>

namespace mp = multiproc;

namespace {
long square(long x) { return x * x; }
}  // namespace

mp::Pool global_pool(2);
mp::ProcessPoolExecutor global_executor(1);

int main() {
  long sum = 0;
  for (long i = 0; i < 100; ++i) sum += global_pool.apply(square, i);
  const long via_executor = global_executor.submit(square, 12L).result();
  std::printf("sum %ld, executor %ld\n", sum, via_executor);
  return sum == 328350 && via_executor == 144 ? 0 : 1;
}
