// multiproc::redis::Queue scenarios (declared in redis.cpp): one producer process and one
// consumer process, 20000 longs, exact sum checked; put/get one round trip each, or
// put_many/get_many in batches of 100.
#include "harness.hpp"

#include <multiproc/redis.hpp>

#include <cstdlib>

namespace rd = multiproc::redis;

namespace bench {

Result redis_queue_1p1c(bool batched) {
  const char* u = std::getenv("MULTIPROC_BENCH_REDIS_URL");
  if (!u) die("MULTIPROC_BENCH_REDIS_URL");
  constexpr long n = 20000, batch = 100;
  rd::Queue<long> q(u, "bench", 0);
  auto* sum = shared_new<std::atomic<long>>();
  const double s = timed_prepared_children(
      "redis queue", 2, [&](int) { (void)q.size(); },  // connected before the clock
      [&](int k) {
        if (k == 0) {
          if (batched) {
            std::vector<long> v(batch);
            for (long i = 0; i < n; i += batch) {
              for (long j = 0; j < batch; ++j) v[j] = i + j;
              q.put_many(v);
            }
          } else {
            for (long i = 0; i < n; ++i) q.put(i);
          }
        } else {
          long total = 0, got = 0;
          while (got < n) {
            if (batched) {
              for (long x : q.get_many(batch, std::chrono::seconds(10))) {
                total += x;
                ++got;
              }
            } else {
              total += q.get();
              ++got;
            }
          }
          q.ack();
          sum->store(total);
        }
      });
  const bool ok = sum->load() == n * (n - 1) / 2;
  shared_delete(sum);
  if (!ok) die("redis queue: wrong sum");
  return {n / s, "msgs/s", true};
}

}  // namespace bench
