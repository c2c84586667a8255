// multiproc::redis scenarios, beside Python's RQ and BaseManager (bench/redis_peers.py) on the
// same redis-server (bench/run.py starts it, passes its url in MULTIPROC_BENCH_REDIS_URL, and
// flushes it before each measurement):
//   redis_task_roundtrip     one apply<long>("inc", i) at a time, one worker: us per call
//   redis_pool_apply_async   20000 apply_async then every get, 2 workers: tasks/s (one job each,
//                            as RQ's enqueue)
//   redis_pool_map_{1,2,4}w  map<long>("inc", 100000 inputs) over 1, 2, 4 worker processes:
//                            tasks/s (chunks sent in one pipeline, several jobs per round trip)
//   redis_queue_1p1c         a producer process put()s 20000 longs, a consumer process get()s
//                            them: messages/s (one round trip each)
//   redis_queue_batched_1p1c the same with put_many / get_many (batches of 100)
// with, as the bare limit, LPUSH / BRPOP of the same values through redis::Client (no lease, no
// capacity, no delivery count: what a queue costs without its guarantees).
//
// Timed: the work only. Workers are started and have served a first call, the queue exists and
// both processes are connected before the clock runs.
#include "harness.hpp"

#include <multiproc/redis.hpp>

#include <csignal>
#include <cstdlib>
#include <numeric>
#include <thread>

namespace rd = multiproc::redis;

namespace bench {
namespace {

std::string url() {
  const char* u = std::getenv("MULTIPROC_BENCH_REDIS_URL");
  if (!u || !*u) {
    std::fprintf(stderr, "multiproc_redis_bench: set MULTIPROC_BENCH_REDIS_URL (bench/run.py does)\n");
    std::exit(2);
  }
  return u;
}

long inc(long x) { return x + 1; }

// n worker processes serving "inc" until shutdown_workers(); ready once a call has been served
// by the pool and n workers hold leases.
class Workers {
 public:
  Workers(rd::Pool& pool, int n) : pool_(pool) {
    for (int i = 0; i < n; ++i) {
      const pid_t pid = ::fork();
      if (pid < 0) die("fork");
      if (pid == 0) {
        rd::ServeOptions o;
        o.idle_wait = std::chrono::milliseconds(100);
        rd::serve(url(), {{"inc", &inc}}, o);
        ::_exit(0);
      }
      pids_.push_back(pid);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (pool_.workers() < static_cast<std::size_t>(n)) {
      if (Clock::now() > deadline) die("workers did not start");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // waiting for their leases
    }
    if (pool_.apply<long>("inc", 1L) != 2) die("inc(1) != 2");
  }
  ~Workers() {
    pool_.shutdown_workers();
    for (pid_t p : pids_) {
      int status = 0;
      ::waitpid(p, &status, 0);
    }
  }

 private:
  rd::Pool& pool_;
  std::vector<pid_t> pids_;
};

Result task_roundtrip() {
  rd::Pool pool(url());
  Workers w(pool, 1);
  const long n = 2000;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    if (pool.apply<long>("inc", i) != i + 1) die("apply: wrong result");
  }
  return {seconds(t0) / n * 1e6, "us", false};
}

Result apply_async_tasks() {
  rd::Pool pool(url());
  Workers w(pool, 2);
  const long n = 20000;
  std::vector<rd::AsyncResult<long>> rs;
  rs.reserve(n);
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) rs.push_back(pool.apply_async<long>("inc", i));
  long sum = 0;
  for (auto& r : rs) sum += r.get();
  const double s = seconds(t0);
  if (sum != n * (n - 1) / 2 + n) die("apply_async: wrong sum");
  return {n / s, "tasks/s", true};
}

Result map_tasks(int workers) {
  rd::Pool pool(url());
  Workers w(pool, workers);
  std::vector<long> in(100000);
  std::iota(in.begin(), in.end(), 0L);
  const auto t0 = Clock::now();
  const auto out = pool.map<long>("inc", in);
  const double s = seconds(t0);
  const long sum = std::accumulate(out.begin(), out.end(), 0L);
  const long n = static_cast<long>(in.size());
  if (sum != n * (n - 1) / 2 + n) die("map: wrong sum");
  return {n / s, "tasks/s", true};
}

// ---- queues ---------------------------------------------------------------------------------

constexpr long kMessages = 20000;

Result bare_lpush_brpop() {
  rd::Client c(url());
  c.command({"DEL", "bench:bare"});
  auto* sum = shared_new<std::atomic<long>>();
  const double s = timed_prepared_children(
      "bare lpush/brpop", 2,
      [&](int) { c.command({"PING"}); },
      [&](int k) {
        if (k == 0) {
          for (long i = 0; i < kMessages; ++i) {
            c.command({"LPUSH", "bench:bare", std::string_view(reinterpret_cast<const char*>(&i), sizeof i)});
          }
        } else {
          long total = 0;
          for (long i = 0; i < kMessages; ++i) {
            auto r = c.command({"BRPOP", "bench:bare", "5"});
            long v = 0;
            std::memcpy(&v, r[1].str().data(), sizeof v);
            total += v;
          }
          sum->store(total);
        }
      });
  const bool ok = sum->load() == kMessages * (kMessages - 1) / 2;
  shared_delete(sum);
  if (!ok) die("bare: wrong sum");
  return {kMessages / s, "msgs/s", true};
}

}  // namespace

Result redis_queue_1p1c(bool batched);  // redis_queue.cpp

void add_redis_scenarios(Scenarios& s) {
  s["redis_task_roundtrip"] = {{"multiproc", task_roundtrip}};
  s["redis_pool_apply_async"] = {{"multiproc", apply_async_tasks}};
  s["redis_pool_map_1w"] = {{"multiproc", [] { return map_tasks(1); }}};
  s["redis_pool_map_2w"] = {{"multiproc", [] { return map_tasks(2); }}};
  s["redis_pool_map_4w"] = {{"multiproc", [] { return map_tasks(4); }}};
  s["redis_queue_1p1c"]["bare_redis_lpush_brpop"] = bare_lpush_brpop;
  s["redis_queue_batched_1p1c"]["bare_redis_lpush_brpop"] = bare_lpush_brpop;
  s["redis_queue_1p1c"]["multiproc"] = [] { return redis_queue_1p1c(false); };
  s["redis_queue_batched_1p1c"]["multiproc"] = [] { return redis_queue_1p1c(true); };
}

}  // namespace bench
