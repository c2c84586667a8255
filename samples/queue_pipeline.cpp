// A three-stage pipeline across processes: producers -> workers -> collector, on two Queues.
//
//   queue_pipeline [producers=2] [workers=3] [jobs_per_producer=200000]
//
// Producers put job numbers; workers turn each into a result (the job's digit sum, as a stand-in
// for real work) and put it on the results queue; the collector adds the results up. Closing a
// queue ends the stage that reads it once it is drained — no sentinels — and the totals are
// checked exactly at the end.
#include "args.hpp"

#include <multiproc/multiproc.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace mp = multiproc;

namespace {
long digit_sum(long x) {
  long s = 0;
  for (; x > 0; x /= 10) s += x % 10;
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  const sample::Args args(argc, argv, "usage: queue_pipeline [producers>=1] [workers>=1] [jobs>=1]");
  const int producers = args.get_int(1, 2, 1);
  const int workers = args.get_int(2, 3, 1);
  const long jobs = args.get(3, 200000, 1);

  mp::Queue<long> tasks(4096);
  mp::Queue<std::pair<long, long>> results(4096);  // (job, result)
  mp::SharedValue<long> collected(0), count(0);

  const auto start = std::chrono::steady_clock::now();
  mp::Process collector([results, collected, count] {
    long sum = 0, n = 0;
    try {
      for (;;) {
        sum += results.get().second;
        ++n;
      }
    } catch (const mp::Closed&) {  // closed and drained: every worker is done
    }
    collected.store(sum);
    count.store(n);
  });
  collector.start();

  std::vector<mp::Process> stage;
  for (int w = 0; w < workers; ++w) {
    stage.emplace_back([tasks, results] {
      try {
        for (;;) {
          const long job = tasks.get();
          results.put({job, digit_sum(job)});
        }
      } catch (const mp::Closed&) {
      }
    });
    stage.back().start();
  }
  std::vector<mp::Process> feeders;
  for (int p = 0; p < producers; ++p) {
    feeders.emplace_back([tasks, jobs](long first) {
      for (long j = first; j < first + jobs; ++j) tasks.put(j);
    }, p * jobs);
    feeders.back().start();
  }

  for (auto& f : feeders) f.join();
  tasks.close();    // workers drain the tasks, then stop
  for (auto& w : stage) w.join();
  results.close();  // the collector drains the results, then stops
  collector.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  long expected = 0;
  for (long j = 0; j < producers * jobs; ++j) expected += digit_sum(j);
  const long total_jobs = producers * jobs;
  std::printf("multiproc queue pipeline: %d producers -> %d workers -> 1 collector, %ld jobs\n",
              producers, workers, total_jobs);
  std::printf("  collected %ld results, sum %ld (expected %ld)\n", count.load(), collected.load(),
              expected);
  std::printf("  %.3f s, %.0f jobs/s through two queues\n", seconds, total_jobs / seconds);
  const bool ok = count.load() == total_jobs && collected.load() == expected;
  std::printf("%s\n", ok ? "every job was handled exactly once." : "ERROR: results are missing or wrong.");
  return ok ? 0 : 1;
}
