// The crash matrix's harness: a seeded source of random kill points, the run's trial count, a
// kill that can land inside an operation (SIGSTOP, look, SIGKILL), and shared scratch boards.
//
// - MULTIPROC_CRASH_SEED (default 20261202) seeds every case; a case mixes it with its own name,
//   so it draws the same numbers alone (--run_test=crash_matrix/<case>) as in the suite. Every
//   failure prints the seed and the trial (BOOST_TEST_CONTEXT), to be rerun with that seed.
// - MULTIPROC_CRASH_TRIALS: "N" runs N trials in every case, "xK" K times each case's default
//   (the defaults keep the whole suite near half a minute on a loaded 2-core machine).
// Timing is not reproducible (the scheduler decides where a kill lands); the seed reproduces the
// delays, the choices and the order of the trials.
#pragma once

#include "../support/support.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <thread>

#include <csignal>
#include <sys/types.h>
#include <sys/wait.h>

namespace crashmatrix {

namespace mp = multiproc;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

//! What the README's "within 100 ms" (and "a few hundred ms") bounds are checked with, on top:
//! this suite runs on a 2-core machine shared with other suites and jobs, where a woken process
//! may wait hundreds of milliseconds for a CPU. A primitive that relied on the dead process's
//! wake-up would wait forever, so a finite bound still tells the two apart; the latencies
//! measured are printed (--log_level=message) to show how far inside it they stay.
inline constexpr auto kSlack = 1900ms;
inline constexpr double kSlackMs = 1900.0;

inline std::uint64_t base_seed() {
  const char* s = std::getenv("MULTIPROC_CRASH_SEED");
  return s != nullptr && *s != '\0' ? std::strtoull(s, nullptr, 0) : 20261202u;
}

inline int trials(int by_default) {
  const char* s = std::getenv("MULTIPROC_CRASH_TRIALS");
  if (s == nullptr || *s == '\0') return by_default;
  if (*s == 'x') return by_default * std::max(1, std::atoi(s + 1));
  return std::max(1, std::atoi(s));
}

//! The random source of one case.
class Dice {
 public:
  explicit Dice(const std::string& case_name) : base_(base_seed()) {
    std::uint64_t h = 1469598103934665603u;  // FNV-1a of the name, mixed with the run's seed
    for (char c : case_name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211u;
    rng_.seed(h ^ base_);
  }
  std::uint64_t base() const noexcept { return base_; }
  //! A number in [lo, hi].
  long uniform(long lo, long hi) { return std::uniform_int_distribution<long>(lo, hi)(rng_); }
  //! True with probability pct / 100.
  bool chance(int pct) { return uniform(0, 99) < pct; }
  std::chrono::microseconds us(long lo, long hi) { return std::chrono::microseconds(uniform(lo, hi)); }
  std::uint64_t next() { return rng_(); }

 private:
  std::uint64_t base_;
  std::mt19937_64 rng_;
};

#define CRASH_TRIAL(dice, t) \
  BOOST_TEST_CONTEXT("MULTIPROC_CRASH_SEED=" << (dice).base() << ", trial " << (t))

//! A T (default-constructed, zero-filled) in an anonymous SharedMemory block: shared with the
//! children forked after it is made. Copies share it.
template <class T>
class Board {
 public:
  Board() : shm_(sizeof(T)), p_(new (shm_.data()) T{}) {}
  T* operator->() const noexcept { return p_; }
  T& operator*() const noexcept { return *p_; }

 private:
  mp::SharedMemory shm_;
  T* p_;
};

//! Waits until `pid` (our child) is stopped or has ended; true when stopped. Leaves it unreaped.
inline bool wait_stopped(pid_t pid) {
  siginfo_t info{};
  for (;;) {
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WSTOPPED | WEXITED | WNOWAIT) == 0) {
      return info.si_code == CLD_STOPPED;
    }
    if (errno != EINTR) return false;
  }
}

//! How a kill went.
struct Kill {
  bool inside = false;          // `inside()` held while the victim was stopped, just before the kill
  Clock::time_point sent{};     // when SIGKILL was sent
  Clock::time_point reaped{};   // when the victim was known dead (reaped)
};

//! Kills `p` at a random moment: after a delay drawn in [0, max_delay_us] µs, and then, when
//! `stop_tries` > 0, by SIGSTOPping it until `inside()` holds while it is stopped (at most
//! `stop_tries` times, continuing it for a few random µs in between), so that the kill lands
//! inside the operation under test. SIGKILL, then reaps it (within 10 s, or the test fails).
//! The delay is the thing under test (where the kill lands), not a synchronisation.
inline Kill kill_at_random(mp::Process& p, Dice& dice, long max_delay_us, int stop_tries = 0,
                           const std::function<bool()>& inside = {}) {
  Kill k;
  std::this_thread::sleep_for(dice.us(0, max_delay_us));
  for (int i = 0; i < stop_tries; ++i) {
    if (::kill(p.pid(), SIGSTOP) != 0 || !wait_stopped(p.pid())) break;
    if (inside && inside()) {
      k.inside = true;
      break;
    }
    ::kill(p.pid(), SIGCONT);
    std::this_thread::sleep_for(dice.us(0, 150));
  }
  k.sent = Clock::now();
  p.kill();
  BOOST_REQUIRE_MESSAGE(p.join_for(10s), "the victim did not die within 10 s of SIGKILL");
  k.reaped = Clock::now();
  return k;
}

//! Milliseconds from a to b.
inline double ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

//! Nanoseconds on the steady clock (CLOCK_MONOTONIC: the same in every process of the machine).
inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}
inline Clock::time_point from_ns(std::int64_t ns) {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

//! The largest of the latencies seen, for the report.
struct Worst {
  double ms = 0;
  void see(double v) {
    if (v > ms) ms = v;
  }
};

}  // namespace crashmatrix
