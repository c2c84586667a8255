// N processes step through rounds in lockstep on one Barrier, and report rounds per second.
//
//   barrier_lockstep [processes=4] [rounds=20000]
//
// Every round each process adds its index to a shared tally, then waits at the barrier; the
// barrier's action (run once per round, by the last process to arrive) checks the tally and
// counts the round. At the end the tally, the action count and every process's round count must
// agree exactly.
#include "args.hpp"

#include <multiproc/multiproc.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace mp = multiproc;

int main(int argc, char** argv) {
  const sample::Args args(argc, argv, "usage: barrier_lockstep [processes>=1] [rounds>=1]");
  const int n = args.get_int(1, 4, 1);
  const int rounds = args.get_int(2, 20000, 1);
  // Arrivals add their barrier index: every full round adds 0 + 1 + ... + (n-1).
  const long per_round = static_cast<long>(n) * (n - 1) / 2;
  mp::SharedValue<long> tally(0);
  mp::SharedValue<int> actions(0), bad_rounds(0);
  mp::Barrier step(static_cast<unsigned>(n), [=] {
    const int done = actions.update([](int& a) { return ++a; });
    if (tally.load() != per_round * (done - 1)) bad_rounds.update([](int& b) { ++b; });
  });
  mp::Barrier start(static_cast<unsigned>(n) + 1);  // the parent starts the clock with everyone

  std::vector<mp::Process> parties;
  for (int i = 0; i < n; ++i) {
    parties.emplace_back([=] {
      start.wait();
      unsigned last = 0;
      for (int r = 0; r < rounds; ++r) {
        tally.update([last](long& t) { t += last; });  // last round's index
        last = step.wait();
      }
      tally.update([last](long& t) { t += last; });
      return 0;
    });
    parties.back().start();
  }
  start.wait();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& p : parties) p.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  bool ok = actions.load() == rounds && bad_rounds.load() == 0 &&
            tally.load() == per_round * rounds;
  for (auto& p : parties) ok = ok && p.exitcode() == 0;
  std::printf("multiproc barrier lockstep: %d processes x %d rounds on %d CPUs\n", n, rounds,
              mp::cpu_count());
  std::printf("  %.3f s, %.0f rounds/s, %.2f us per round\n", seconds, rounds / seconds,
              seconds / rounds * 1e6);
  std::printf("  action ran %d times, tally %ld (expected %ld), rounds out of step: %d\n",
              actions.load(), tally.load(), per_round * rounds, bad_rounds.load());
  std::printf("%s\n", ok ? "every round was in lockstep." : "ERROR: rounds were not in lockstep.");
  return ok ? 0 : 1;
}
