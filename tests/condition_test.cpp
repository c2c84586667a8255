// Condition across processes: notify counts (hundreds of stopped waiters, one CPU), timeouts,
// late arrivals, a producer/consumer and round robins with exact sums,
// recursive locks, and waiters that die.
// (Longer than our ~500-line mark on purpose: the crash and many-waiter cases share the waiter
// scenarios and counters defined at the top; each case runs alone with --run_test=condition/<case>.)
#include "support/support.hpp"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <limits>
#include <mutex>

#include <multiproc/condition.hpp>

using namespace mptest;

namespace {

// The number of processes registered as waiting on `cv` (white-box, for tests only).
std::uint64_t waiting(const mp::Condition& cv) {
  auto* s = static_cast<mp::detail::ConditionState*>(cv.segment().body());
  return mp::detail::condition_waiting(s, "test", s->departed);
}

mp::detail::ConditionState* state_of(const mp::Condition& cv) {
  return static_cast<mp::detail::ConditionState*>(cv.segment().body());
}


// Stops every process in `pids` (all waiting on cv) at a point where none of them holds the
// Condition's internal lock — a stopped holder would block every notify. Continues them all and
// retries when one was caught holding it. Returns false if that never works out.
bool stop_outside_the_lock(const mp::Condition& cv, const std::vector<pid_t>& pids) {
  const auto* s = static_cast<const mp::detail::ConditionState*>(cv.segment().body());
  for (int attempt = 0; attempt < 50; ++attempt) {
    for (pid_t pid : pids) ::kill(pid, SIGSTOP);
    bool all = true;
    for (pid_t pid : pids) all = all && eventually([&] { return is_stopped(pid); });
    if (!all) return false;
    // The lock word, not `owner`: a holder stopped right after taking it has not set owner yet.
    if ((s->lock.word.load() & FUTEX_TID_MASK) == 0) return true;  // no stopped process can take it now
    for (pid_t pid : pids) ::kill(pid, SIGCONT);
    for (pid_t pid : pids) {
      if (!wait_until_in_futex(pid)) return false;
    }
  }
  return false;
}

// Starts k waiting processes on (m, cv), each running wait_for(timeout) without a predicate and
// exiting with 0 if it returned true (a notification), 1 if false. Returns once every one of them
// is registered: each releases `ready` under the lock before waiting, and the caller then takes
// the lock itself, which a waiter gives up only inside wait.
std::vector<mp::Process> start_waiters(int k, const mp::Mutex& m, const mp::Condition& cv,
                                       std::chrono::milliseconds timeout) {
  mp::Semaphore ready(0);
  std::vector<mp::Process> ws;
  ws.reserve(static_cast<std::size_t>(k));
  for (int i = 0; i < k; ++i) {
    ws.emplace_back([&m, &cv, ready, timeout] {
      std::unique_lock lock(m);
      ready.release();
      return cv.wait_for(lock, timeout) ? 0 : 1;
    });
    ws.back().start();
  }
  for (int i = 0; i < k; ++i) BOOST_REQUIRE(ready.try_acquire_for(30s));
  { std::lock_guard lock(m); }
  return ws;
}

// Joins them all; returns how many exited with 0 (their wait returned true).
int notified_count(std::vector<mp::Process>& ws) {
  int ok = 0;
  for (auto& w : ws) {
    BOOST_REQUIRE(w.join_for(60s));
    const int code = *w.exitcode();
    BOOST_TEST((code == 0 || code == 1), "waiter exit code " << code);
    ok += code == 0 ? 1 : 0;
  }
  return ok;
}

std::vector<pid_t> pids_of(const std::vector<mp::Process>& ws) {
  std::vector<pid_t> pids;
  for (const auto& w : ws) pids.push_back(w.pid());
  return pids;
}

// k waiters asleep and stopped while k notify_one() calls run: all k must return true.
void stopped_waiters_each_get_a_notify_one(int k) {
  mp::Mutex m;
  mp::Condition cv;
  auto ws = start_waiters(k, m, cv, 20s);
  ContinueAtExit cont{pids_of(ws)};
  for (const auto& w : ws) BOOST_REQUIRE(wait_until_in_futex(w.pid()));
  BOOST_REQUIRE(stop_outside_the_lock(cv, cont.pids));
  for (int i = 0; i < k; ++i) cv.notify_one();
  for (pid_t pid : cont.pids) ::kill(pid, SIGCONT);
  BOOST_TEST(notified_count(ws) == k);
  BOOST_TEST(waiting(cv) == 0u);
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(condition, Clean)

BOOST_AUTO_TEST_CASE(wait_for_times_out_and_relocks, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::Condition cv;
  std::unique_lock lock(m);
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!cv.wait_for(lock, 50ms));
  BOOST_TEST(seconds_since(start) >= 0.049);
  BOOST_TEST(lock.owns_lock());
  BOOST_TEST(!m.try_lock());  // relocked
  BOOST_TEST(!cv.wait_until(lock, std::chrono::system_clock::now() + 20ms));
  int calls = 0;
  BOOST_TEST(!cv.wait_for(lock, 30ms, [&] { ++calls; return false; }));
  BOOST_TEST(calls >= 2);
  BOOST_TEST(cv.wait_for(lock, 1s, [] { return true; }));
  // A Mutex passed directly works too.
  lock.unlock();
  m.lock();
  BOOST_TEST(!cv.wait_for(m, 10ms));
  m.unlock();
}

BOOST_AUTO_TEST_CASE(a_process_stopped_holding_the_internal_lock_holds_no_timed_wait_past_its_deadline,
                     *boost::unit_test::timeout(120)) {
  // An outside probe stopped a process inside notify() (it holds the Condition's internal lock for
  // a few instructions): every other process's wait_for(100 ms) then waited until SIGCONT.
  mp::Mutex m;
  mp::Condition cv;
  auto ws = start_waiters(1, m, cv, 2s);  // registered before the stop: leaves by a departure
  BOOST_REQUIRE(wait_until_in_futex(ws[0].pid()));
  mp::RawValue<int> stop(0);
  // A process that takes the internal lock over and over without notifying anyone.
  mp::Process spinner([&cv, stop] {
    mp::Mutex own;
    std::unique_lock lock(own);
    while (stop.load() == 0) (void)cv.wait_for(lock, 0ms);
  });
  spinner.start();
  ContinueAtExit cont{{spinner.pid()}};
  const auto* st = state_of(cv);
  bool inside = false;
  for (int attempt = 0; attempt < 2000 && !inside; ++attempt) {
    ::kill(spinner.pid(), SIGSTOP);
    BOOST_REQUIRE(eventually([&] { return is_stopped(spinner.pid()); }));
    inside = static_cast<pid_t>(st->lock.word.load() & FUTEX_TID_MASK) == spinner.pid();
    if (!inside) ::kill(spinner.pid(), SIGCONT);
  }
  BOOST_REQUIRE_MESSAGE(inside, "never stopped the spinner inside the internal lock");
  // Not registered yet: gives up at the deadline, registering nothing, with the lock held.
  {
    std::unique_lock lock(m);
    const auto start = std::chrono::steady_clock::now();
    BOOST_TEST(!cv.wait_for(lock, 200ms));
    BOOST_TEST(seconds_since(start) < 10.0);
    BOOST_TEST(lock.owns_lock());
  }
  // Registered: leaves at its deadline (2 s) while the spinner is still stopped.
  BOOST_REQUIRE(ws[0].join_for(20s));
  BOOST_TEST(ws[0].exitcode().value_or(-1) == 1);  // timed out, not notified
  BOOST_REQUIRE(is_stopped(spinner.pid()));
  stop.store(1);
  ::kill(spinner.pid(), SIGCONT);
  BOOST_REQUIRE(spinner.join_for(30s));
  BOOST_TEST(spinner.exitcode().value_or(-1) == 0);
  // The departure was settled: nobody counted, and a notify reaches the next waiter.
  BOOST_TEST(waiting(cv) == 0u);
  auto next = start_waiters(1, m, cv, 20s);
  cv.notify_one();
  BOOST_TEST(notified_count(next) == 1);
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(a_notification_that_reaches_a_departed_waiter_is_passed_on,
                     *boost::unit_test::timeout(60)) {
  // A review's finding, step by step on a Condition's state: W waits alone in the serving group
  // and Z after it; a notifier takes the internal lock (and is stopped there); W gives up at its
  // deadline through a departure slot; the notifier goes on and folds W's number: notified, but
  // W has returned false. The next holder of the lock must pass that notification on to Z.
  mp::Condition cv;
  auto* s = state_of(cv);
  namespace d = mp::detail;
  std::uint64_t a = 0, w = 0, z = 0;
  BOOST_REQUIRE(d::condition_enter(s, "test", nullptr, a, s->departed));
  BOOST_REQUIRE(d::condition_enter(s, "test", nullptr, w, s->departed));
  d::condition_notify(s, 1, "test", s->departed);  // the serving group {a, w}, one ticket
  const auto now = std::chrono::steady_clock::now();
  BOOST_REQUIRE(d::condition_sleep(s, a, &now, "test", s->departed));  // a takes it
  BOOST_REQUIRE(d::condition_enter(s, "test", nullptr, z, s->departed));  // a newcomer
  BOOST_REQUIRE(waiting(cv) == 2u);
  s->departed[0].store(w + 1);  // w gives up while the notifier holds the lock
  d::condition_notify(s, 1, "test", nullptr);  // the notifier, which looked at the slots before
  BOOST_TEST(s->notified_below.load() > w);  // w's number is folded: notified after it left
  BOOST_TEST(waiting(cv) == 0u);             // settled: passed on to z (1 before the fix)
  BOOST_TEST(s->departed[0].load() == 0u);
  BOOST_TEST(d::condition_sleep(s, z, &now, "test", s->departed));  // z holds a notification
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(waiting_without_the_lock_is_an_error_and_leaves_no_waiter, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::Condition cv;
  BOOST_CHECK_THROW(cv.wait_for(m, 10ms), mp::Error);
  std::unique_lock<mp::Mutex> none;
  BOOST_CHECK_THROW(cv.wait_for(none, 10ms), mp::Error);
  std::unique_lock<mp::Mutex> unowned(m, std::defer_lock);
  BOOST_CHECK_THROW(cv.wait(unowned), mp::Error);
  BOOST_TEST(waiting(cv) == 0u);
  BOOST_TEST(state_of(cv)->arrived == 0u);  // nothing was even registered
}

namespace {
// Processes that each wait once on cv (no predicate: they count real notifications), adding
// themselves to `woken` and signalling `woke` when notified. Returns once all of them wait.
struct NotifiedProcesses {
  mp::Mutex m;
  mp::Condition cv;
  mp::SharedValue<int> woken{0};
  Gate woke;
  std::vector<mp::Process> waiters;
  explicit NotifiedProcesses(int n) {
    for (int i = 0; i < n; ++i) {
      waiters.emplace_back([this] {
        std::unique_lock lock(m);
        if (!cv.wait_for(lock, 60s)) return 1;
        woken.update([](int& w) { ++w; });
        woke.signal();
        return 0;
      });
      waiters.back().start();
    }
    BOOST_REQUIRE(eventually([&] { return waiting(cv) == static_cast<std::uint64_t>(n); }));
  }
  void join_all() {
    for (auto& w : waiters) {
      BOOST_REQUIRE(w.join_for(30s));
      BOOST_TEST(*w.exitcode() == 0);
    }
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(notify_n_wakes_at_most_n_waiting_processes, *boost::unit_test::timeout(120)) {
  constexpr int kWaiters = 5;
  NotifiedProcesses p(kWaiters);
  mp::Condition& cv = p.cv;
  mp::SharedValue<int>& woken = p.woken;
  Gate& woke = p.woke;
  cv.notify_one();
  BOOST_REQUIRE(woke.wait());
  BOOST_TEST(!woke.wait(200ms));
  BOOST_TEST(woken.load() == 1);
  cv.notify(2);
  BOOST_REQUIRE(woke.wait());
  BOOST_REQUIRE(woke.wait());
  BOOST_TEST(!woke.wait(200ms));
  BOOST_TEST(woken.load() == 3);
  cv.notify_all();
  BOOST_REQUIRE(woke.wait());
  BOOST_REQUIRE(woke.wait());
  p.join_all();
  BOOST_TEST(woken.load() == kWaiters);
  cv.notify_all();  // nobody waiting: a no-op
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(notify_takes_any_integer_without_narrowing_it, *boost::unit_test::timeout(120)) {
  // An outside probe: notify(std::uint64_t{1} << 32) woke nobody (the count was cut to 32 bits:
  // notify(0)), and notify(-1) woke everyone. Now n <= 0 wakes nobody, as Python's notify does,
  // and a count of 2^32 - 1 or more wakes all.
  constexpr int kWaiters = 3;
  NotifiedProcesses p(kWaiters);
  mp::Condition& cv = p.cv;
  Gate& woke = p.woke;
  cv.notify(-1);
  cv.notify(std::numeric_limits<long long>::min());
  cv.notify(0u);
  cv.notify(std::int8_t{-3});
  BOOST_TEST(!woke.wait(200ms));
  BOOST_TEST(p.woken.load() == 0);
  BOOST_TEST(waiting(cv) == kWaiters);
  cv.notify(std::uint8_t{1});
  BOOST_REQUIRE(woke.wait());
  BOOST_TEST(!woke.wait(200ms));
  cv.notify(std::uint64_t{1} << 32);
  for (int i = 1; i < kWaiters; ++i) BOOST_REQUIRE(woke.wait());
  p.join_all();
  BOOST_TEST(p.woken.load() == kWaiters);
}

BOOST_AUTO_TEST_CASE(bounded_buffer_between_processes_gives_exact_sums, *boost::unit_test::timeout(120)) {
  constexpr int kSlots = 8, kProducers = 2, kConsumers = 2, kItems = 5000;
  mp::Mutex m;
  mp::Condition not_empty, not_full;
  mp::RawArray<long> ring(kSlots);
  mp::RawValue<long> head(0), tail(0), consumed_sum(0), consumed_count(0);
  std::vector<mp::Process> ps;
  for (int p = 0; p < kProducers; ++p) {
    ps.emplace_back([=](int id) {
      for (long i = 1; i <= kItems; ++i) {
        std::unique_lock lock(m);
        not_full.wait(lock, [&] { return tail.load() - head.load() < kSlots; });
        ring[static_cast<std::size_t>(tail.load() % kSlots)] = i * (id + 1);
        tail.store(tail.load() + 1);
        not_empty.notify_one();
      }
    }, p);
  }
  for (int c = 0; c < kConsumers; ++c) {
    ps.emplace_back([=] {
      for (;;) {
        std::unique_lock lock(m);
        not_empty.wait(lock, [&] {
          return head.load() < tail.load() || consumed_count.load() == kProducers * kItems;
        });
        if (consumed_count.load() == kProducers * kItems) {
          not_empty.notify_all();  // let the other consumer finish too
          return;
        }
        consumed_sum.store(consumed_sum.load() + ring[static_cast<std::size_t>(head.load() % kSlots)]);
        head.store(head.load() + 1);
        consumed_count.store(consumed_count.load() + 1);
        if (consumed_count.load() == kProducers * kItems) not_empty.notify_all();
        not_full.notify_one();
      }
    });
  }
  for (auto& p : ps) p.start();
  for (auto& p : ps) {
    BOOST_REQUIRE(p.join_for(90s));
    BOOST_TEST(*p.exitcode() == 0);
  }
  const long per = static_cast<long>(kItems) * (kItems + 1) / 2;
  BOOST_TEST(consumed_count.load() == kProducers * kItems);
  BOOST_TEST(consumed_sum.load() == per * 1 + per * 2);
}

BOOST_AUTO_TEST_CASE(recursive_mutex_is_fully_released_while_waiting, *boost::unit_test::timeout(60)) {
  mp::RecursiveMutex m;
  mp::Condition cv;
  mp::SharedValue<int> flag(0);
  mp::Process setter([&] {
    std::lock_guard lock(m);  // possible only if the waiter released every level
    flag.store(1);
    cv.notify_all();
  });
  std::unique_lock outer(m);
  m.lock();  // depth 2
  setter.start();
  BOOST_TEST(cv.wait_for(outer, 30s, [&] { return flag.load() == 1; }));
  BOOST_TEST(m.depth() == 2u);  // restored
  m.unlock();
  outer.unlock();
  BOOST_REQUIRE(setter.join_for(30s));
  BOOST_TEST(*setter.exitcode() == 0);
}

BOOST_AUTO_TEST_CASE(dead_waiter_never_swallows_a_notification, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::Condition cv;
  mp::Process victim([&] {
    std::unique_lock lock(m);
    cv.wait(lock);
  });
  victim.start();
  BOOST_REQUIRE(eventually([&] { return waiting(cv) == 1u; }));
  victim.kill();
  victim.join();
  mp::Process live([&] {
    std::unique_lock lock(m);
    return cv.wait_for(lock, 30s) ? 0 : 1;
  });
  live.start();
  BOOST_REQUIRE(eventually([&] { return waiting(cv) == 2u; }));  // the dead one is still counted
  BOOST_REQUIRE(wait_until_in_futex(live.pid()));
  cv.notify_one();  // must reach the live waiter
  BOOST_REQUIRE(live.join_for(10s));
  BOOST_TEST(*live.exitcode() == 0);
}

BOOST_AUTO_TEST_CASE(holder_killed_after_waking_leaves_the_lock_recoverable, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::Condition cv;
  mp::Process victim([&] {
    std::unique_lock lock(m);
    cv.wait(lock);
    ::kill(::getpid(), SIGKILL);  // dies holding the relocked mutex
  });
  victim.start();
  BOOST_REQUIRE(eventually([&] { return waiting(cv) == 1u; }));
  cv.notify_one();
  victim.join();
  BOOST_REQUIRE(m.try_lock_for(5s));
  BOOST_TEST(m.previous_owner_died());
  m.unlock();
}

BOOST_AUTO_TEST_CASE(notifier_that_then_waits_never_takes_its_own_notification, *boost::unit_test::timeout(60)) {
  // Two processes take turns on one Condition: each notifies, then waits for its next turn. A
  // notifier must never consume the wake-up meant for the other (that deadlocks plain wait()).
  constexpr int kRounds = 2000;
  mp::Mutex m;
  mp::Condition cv;
  mp::RawValue<int> turn(0);
  auto player = [=](int me) {
    std::unique_lock lock(m);
    for (int r = 0; r < kRounds; ++r) {
      while (turn.load() != me) cv.wait(lock);  // plain wait: no timeout to hide a lost wake-up
      turn.store(1 - me);
      cv.notify_one();
    }
    return 0;
  };
  mp::Process other(player, 1);
  other.start();
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(player(0) == 0);
  BOOST_REQUIRE(other.join_for(30s));
  BOOST_TEST(*other.exitcode() == 0);
  BOOST_TEST_MESSAGE(kRounds << " turns in " << seconds_since(start) << " s");
}

BOOST_AUTO_TEST_CASE(notifier_killed_before_waking_delays_waiters_only_briefly, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::Condition cv;
  mp::RawValue<int> flag(0);
  std::vector<mp::Process> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([=] {
      std::unique_lock lock(m);
      const auto start = std::chrono::steady_clock::now();
      const bool ok = cv.wait_for(lock, 20s, [&] { return flag.load() == 1; });
      return ok && seconds_since(start) < 10 ? 0 : 1;
    });
    waiters.back().start();
  }
  BOOST_REQUIRE(eventually([&] { return waiting(cv) == 3u; }));
  for (auto& w : waiters) BOOST_REQUIRE(wait_until_in_futex(w.pid()));
  // A notifier that notifies all three and dies holding the internal lock before waking anyone
  // (what notify_all does, minus its last steps).
  BOOST_TEST(run_child([=] {
               flag.store(1);
               auto* s = state_of(cv);
               mp::detail::mutex_lock(&s->lock, "test");
               s->serving = s->newcomers;
               s->serving_end = s->arrived;
               s->newcomers = 0;
               s->notified_below.store(s->arrived);
               s->serving = 0;
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  for (auto& w : waiters) {
    BOOST_REQUIRE(w.join_for(30s));
    BOOST_TEST(*w.exitcode() == 0);
  }
  cv.notify_all();  // still usable
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(a_notifier_killed_in_the_middle_of_its_update_is_repaired, *boost::unit_test::timeout(60)) {
  // The newcomers become the serving group in three stores; a notifier may die after any one
  // of them holding the internal lock. The next user repairs the counts: both waiters are
  // still counted and one notify each reaches them.
  for (int cut = 1; cut <= 3; ++cut) {
    mp::Mutex m;
    mp::Condition cv;
    auto ws = start_waiters(2, m, cv, 20s);
    BOOST_TEST(run_child([=] {
                 auto* s = state_of(cv);
                 mp::detail::mutex_lock(&s->lock, "test");
                 s->serving = s->newcomers;
                 if (cut > 1) s->serving_end = s->arrived;
                 if (cut > 2) s->newcomers = 0;
                 ::kill(::getpid(), SIGKILL);
                 return 1;
               }) == -SIGKILL);
    BOOST_TEST(waiting(cv) == 2u, "cut after store " << cut);
    cv.notify_one();
    cv.notify_one();
    BOOST_TEST(notified_count(ws) == 2, "cut after store " << cut);
    BOOST_TEST(waiting(cv) == 0u);
  }
}

BOOST_AUTO_TEST_CASE(waiters_killed_while_asleep_among_many_leave_it_usable, *boost::unit_test::timeout(60)) {
  // Twelve waiters, every third one SIGKILLed asleep: notify_all still reaches every live one,
  // and afterwards the Condition serves new waiters exactly.
  mp::Mutex m;
  mp::Condition cv;
  auto ws = start_waiters(12, m, cv, 20s);
  std::vector<mp::Process> live;
  for (std::size_t i = 0; i < ws.size(); ++i) {
    if (i % 3 == 0) {
      BOOST_REQUIRE(wait_until_in_futex(ws[i].pid()));
      ws[i].kill();
      ws[i].join();
      BOOST_TEST(*ws[i].exitcode() == -SIGKILL);
    } else {
      live.push_back(std::move(ws[i]));
    }
  }
  cv.notify_all();
  BOOST_TEST(notified_count(live) == 8);
  auto more = start_waiters(3, m, cv, 20s);
  BOOST_TEST(waiting(cv) == 3u);
  cv.notify(3);
  BOOST_TEST(notified_count(more) == 3);
  BOOST_TEST(waiting(cv) == 0u);
}

MPTEST_SCENARIO(notify_named_condition) {
  mp::Mutex m(mp::open_only, args.at(0));
  mp::Condition cv(mp::open_only, args.at(1));
  mp::SharedValue<int> flag(mp::open_only, args.at(2));
  std::lock_guard lock(m);
  flag.store(1);
  cv.notify_all();
  return 0;
}

BOOST_AUTO_TEST_CASE(named_condition_with_an_unrelated_notifier, *boost::unit_test::timeout(60)) {
  const std::string mn = unique_name("m"), cn = unique_name("cv"), fn = unique_name("flag");
  mp::Mutex m(mp::create_only, mn);
  mp::Condition cv(mp::create_only, cn);
  mp::SharedValue<int> flag(mp::create_only, fn, 0);
  std::unique_lock lock(m);
  Spawned notifier("notify_named_condition", {mn, cn, fn});
  BOOST_TEST(cv.wait_for(lock, 30s, [&] { return flag.load() == 1; }));
  lock.unlock();
  BOOST_TEST(notifier.wait() == 0);
}

BOOST_AUTO_TEST_CASE(blocked_waiter_uses_no_cpu, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::Condition cv;
  CHECK_CHILD([&] {
    std::unique_lock lock(m);
    const double cpu0 = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    if (cv.wait_for(lock, 400ms)) return 2;
    const double wall = seconds_since(start), cpu = cpu_seconds() - cpu0;
    return cpu < 0.1 * wall ? 0 : 1;
  });
}

BOOST_AUTO_TEST_CASE(waiting_keeps_a_recovery_the_holder_has_not_finished_with,
                     *boost::unit_test::timeout(60)) {
  // A lock recovered from a dead holder reports previous_owner_died() until it is unlocked; a
  // Condition wait releases and retakes it, and must not make the holder forget.
  mp::Mutex m;
  mp::Condition cv;
  BOOST_TEST(run_child([&] {
               m.lock();
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  m.lock();
  BOOST_TEST(m.previous_owner_died());
  BOOST_TEST(!cv.wait_for(m, std::chrono::milliseconds(20)));
  BOOST_TEST(m.previous_owner_died());
  m.unlock();
  m.lock();
  BOOST_TEST(!m.previous_owner_died());
  m.unlock();
}

// Issue 10: more than 32 notifications outstanding at once were lost (a ring of 32 batches).
BOOST_AUTO_TEST_CASE(thirty_three_stopped_waiters_all_get_their_notify_one, *boost::unit_test::timeout(90)) {
  stopped_waiters_each_get_a_notify_one(33);
}

BOOST_AUTO_TEST_CASE(sixty_four_stopped_waiters_all_get_their_notify_one, *boost::unit_test::timeout(90)) {
  stopped_waiters_each_get_a_notify_one(64);
}

BOOST_AUTO_TEST_CASE(two_hundred_stopped_waiters_all_get_their_notify_one, *boost::unit_test::timeout(120)) {
  stopped_waiters_each_get_a_notify_one(200);
}

BOOST_AUTO_TEST_CASE(waiters_on_one_cpu_all_get_their_notify_one, *boost::unit_test::timeout(90)) {
  // What `taskset -c 0` shows: the notifier runs its notifies before the woken get the CPU.
  constexpr int kWaiters = 64;
  PinnedToOneCpu pin;
  BOOST_REQUIRE(pin.ok());
  mp::Mutex m;
  mp::Condition cv;
  auto ws = start_waiters(kWaiters, m, cv, 20s);
  for (int i = 0; i < kWaiters; ++i) cv.notify_one();
  BOOST_TEST(notified_count(ws) == kWaiters);
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(notify_n_wakes_exactly_n_and_the_rest_time_out, *boost::unit_test::timeout(60)) {
  constexpr int kWaiters = 10, kNotified = 4;
  mp::Mutex m;
  mp::Condition cv;
  auto ws = start_waiters(kWaiters, m, cv, 2500ms);
  cv.notify(kNotified);
  BOOST_TEST(waiting(cv) == static_cast<std::uint64_t>(kWaiters - kNotified));
  BOOST_TEST(notified_count(ws) == kNotified);  // the others return false at their timeout
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(a_waiter_arriving_after_a_notify_is_not_woken_by_it, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::Condition cv;
  cv.notify_one();  // nobody waiting: nothing to keep for later
  {
    std::unique_lock lock(m);
    BOOST_TEST(!cv.wait_for(lock, 50ms));
  }
  // The first waiter is notified while stopped; a second one arriving afterwards must not take it.
  auto first = start_waiters(1, m, cv, 20s);
  ContinueAtExit cont{pids_of(first)};
  BOOST_REQUIRE(wait_until_in_futex(first[0].pid()));
  BOOST_REQUIRE(stop_outside_the_lock(cv, cont.pids));
  cv.notify_one();
  auto second = start_waiters(1, m, cv, 300ms);
  BOOST_TEST(notified_count(second) == 0);
  ::kill(first[0].pid(), SIGCONT);
  BOOST_TEST(notified_count(first) == 1);
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(timed_out_waiters_do_not_eat_notifications, *boost::unit_test::timeout(60)) {
  // Waiters alternate in arrival order between short and long timeouts. One notify_one while all
  // are present (any of them may take it); once the short ones have timed out, one notify_one
  // per long waiter still waiting must reach every one of them.
  constexpr int kPairs = 5;
  mp::Mutex m;
  mp::Condition cv;
  std::vector<mp::Process> brief, patient;
  for (int i = 0; i < kPairs; ++i) {
    auto b = start_waiters(1, m, cv, 400ms);
    auto p = start_waiters(1, m, cv, 20s);
    brief.push_back(std::move(b[0]));
    patient.push_back(std::move(p[0]));
  }
  cv.notify_one();
  const int brief_notified = notified_count(brief);  // the others time out
  BOOST_TEST(brief_notified <= 1);
  const int patient_left = kPairs - (1 - brief_notified);
  BOOST_TEST(waiting(cv) == static_cast<std::uint64_t>(patient_left));
  for (int i = 0; i < patient_left; ++i) cv.notify_one();
  BOOST_TEST(notified_count(patient) == kPairs);
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(a_waiter_stopped_through_many_rounds_is_still_served, *boost::unit_test::timeout(90)) {
  // One waiter stays asleep (stopped) while others come and are notified one by one; then every
  // waiter gets exactly one notification. 31 rounds: in the former design the last notify opened
  // the generation whose wake-up bit the old waiter shared, so it woke only after a 100 ms slice.
  constexpr int kRounds = 31;
  mp::Mutex m;
  mp::Condition cv;
  auto old = start_waiters(1, m, cv, 30s);
  const pid_t old_pid = old[0].pid();
  ContinueAtExit cont{{old_pid}};
  BOOST_REQUIRE(wait_until_in_futex(old_pid));
  BOOST_REQUIRE(stop_outside_the_lock(cv, cont.pids));
  std::vector<mp::Process> others;
  for (int i = 0; i < kRounds; ++i) {
    auto w = start_waiters(1, m, cv, 30s);
    others.push_back(std::move(w[0]));
    cv.notify_one();
  }
  ::kill(old_pid, SIGCONT);
  BOOST_TEST(waiting(cv) == 1u);  // kRounds + 1 waiters, kRounds notifications
  // The old waiter either took a notification while stopped (and exits) or sleeps again.
  BOOST_REQUIRE(eventually([&] {
    if (!pid_running(old_pid)) return true;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/syscall", static_cast<int>(old_pid));
    FILE* f = std::fopen(path, "r");
    long number = -1;
    if (f != nullptr) {
      if (std::fscanf(f, "%ld", &number) != 1) number = -1;
      std::fclose(f);
    }
    return number == SYS_futex;
  }));
  const auto start = std::chrono::steady_clock::now();
  cv.notify_one();
  BOOST_TEST(notified_count(old) == 1);
  BOOST_TEST_MESSAGE("the old waiter returned " << seconds_since(start) * 1000
                                                << " ms after the last notify");
  BOOST_TEST(notified_count(others) == kRounds);
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(round_robin_with_notify_all_between_processes, *boost::unit_test::timeout(90)) {
  // Four processes take turns with plain waits (no timeout hides a lost wake-up); each turn
  // adds to a shared counter. A lost or extra notification shows as a hang or a wrong sum.
  constexpr int kPlayers = 4, kTurns = 300;
  mp::Mutex m;
  mp::Condition cv;
  mp::RawValue<long> turn(0), sum(0);
  std::vector<mp::Process> ps;
  for (int me = 0; me < kPlayers; ++me) {
    ps.emplace_back([=] {
      std::unique_lock lock(m);
      for (int t = 0; t < kTurns; ++t) {
        cv.wait(lock, [&] { return turn.load() % kPlayers == me; });
        sum.store(sum.load() + me + 1);
        turn.store(turn.load() + 1);
        cv.notify_all();
      }
      return 0;
    });
    ps.back().start();
  }
  for (auto& p : ps) {
    BOOST_REQUIRE(p.join_for(60s));
    BOOST_TEST(*p.exitcode() == 0);
  }
  BOOST_TEST(turn.load() == long{kPlayers} * kTurns);
  BOOST_TEST(sum.load() == long{kTurns} * (kPlayers * (kPlayers + 1) / 2));
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(tokens_handed_out_with_notify_n_are_counted_exactly, *boost::unit_test::timeout(90)) {
  // A counting semaphore built from Mutex + Condition: producers add k tokens and notify(k),
  // consumers take one each with plain waits (single CPU, so notifications pile up).
  constexpr int kConsumers = 6, kPerConsumer = 200, kBatch = 3;
  PinnedToOneCpu pin;
  BOOST_REQUIRE(pin.ok());
  mp::Mutex m;
  mp::Condition cv;
  mp::RawValue<long> tokens(0), taken(0), taken_sum(0);
  std::vector<mp::Process> ps;
  for (int c = 0; c < kConsumers; ++c) {
    ps.emplace_back([=] {
      for (int i = 0; i < kPerConsumer; ++i) {
        std::unique_lock lock(m);
        while (tokens.load() == 0) cv.wait(lock);
        tokens.store(tokens.load() - 1);
        taken.store(taken.load() + 1);
        taken_sum.store(taken_sum.load() + c + 1);
      }
      return 0;
    });
    ps.back().start();
  }
  ps.emplace_back([=] {
    for (int i = 0; i < kConsumers * kPerConsumer / kBatch; ++i) {
      std::lock_guard lock(m);
      tokens.store(tokens.load() + kBatch);
      cv.notify(kBatch);
    }
    return 0;
  });
  ps.back().start();
  for (auto& p : ps) {
    BOOST_REQUIRE(p.join_for(60s));
    BOOST_TEST(*p.exitcode() == 0);
  }
  BOOST_TEST(tokens.load() == 0);
  BOOST_TEST(taken.load() == long{kConsumers} * kPerConsumer);
  BOOST_TEST(taken_sum.load() == long{kPerConsumer} * (kConsumers * (kConsumers + 1) / 2));
}

BOOST_AUTO_TEST_SUITE_END()
