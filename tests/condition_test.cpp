// Condition across processes: notify counts, timeouts, a producer/consumer with exact sums,
// recursive locks, and waiters that die.
#include "support/support.hpp"

#include <csignal>
#include <mutex>

#include <multiproc/condition.hpp>

using namespace mptest;

namespace {

// The number of processes registered as waiting on `cv` (white-box, for tests only).
std::uint32_t waiting(const mp::Condition& cv) {
  const auto* s = static_cast<const mp::detail::ConditionState*>(cv.segment().body());
  return __atomic_load_n(&s->waiters, __ATOMIC_ACQUIRE) - __atomic_load_n(&s->tickets, __ATOMIC_ACQUIRE);
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

BOOST_AUTO_TEST_CASE(waiting_without_the_lock_is_an_error_and_leaves_no_waiter, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::Condition cv;
  BOOST_CHECK_THROW(cv.wait_for(m, 10ms), mp::Error);
  BOOST_TEST(waiting(cv) == 0u);
}

BOOST_AUTO_TEST_CASE(notify_n_wakes_at_most_n_waiting_processes, *boost::unit_test::timeout(120)) {
  constexpr int kWaiters = 5;
  mp::Mutex m;
  mp::Condition cv;
  mp::SharedValue<int> woken(0);
  Gate woke;
  std::vector<mp::Process> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([&] {
      std::unique_lock lock(m);
      if (!cv.wait_for(lock, 60s)) return 1;  // no predicate: count real notifications
      woken.update([](int& w) { ++w; });
      woke.signal();
      return 0;
    });
    waiters.back().start();
  }
  BOOST_REQUIRE(eventually([&] { return waiting(cv) == kWaiters; }));
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
  for (auto& w : waiters) {
    BOOST_REQUIRE(w.join_for(30s));
    BOOST_TEST(*w.exitcode() == 0);
  }
  BOOST_TEST(woken.load() == kWaiters);
  cv.notify_all();  // nobody waiting: a no-op
  BOOST_TEST(waiting(cv) == 0u);
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
  // A notifier that hands out the tickets and dies holding the internal lock before waking
  // anyone (what notify_all does, minus its last steps).
  BOOST_TEST(run_child([=] {
               flag.store(1);
               auto* s = const_cast<mp::detail::ConditionState*>(
                   static_cast<const mp::detail::ConditionState*>(cv.segment().body()));
               mp::detail::mutex_lock(&s->lock, "test");
               const std::uint32_t g = s->seq.load() + 1;
               s->batches[(s->head + s->used) % mp::detail::kConditionBatches] = {g, 3};
               ++s->used;
               s->tickets += 3;
               s->seq.store(g);
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

BOOST_AUTO_TEST_SUITE_END()
