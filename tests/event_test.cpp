// Event across processes: set wakes every waiter everywhere, timeouts, set-then-clear.
#include "support/support.hpp"

#include <multiproc/event.hpp>

#include <csignal>

using namespace mptest;

namespace {
std::uint32_t waiting(const mp::Event& e) {
  return static_cast<const mp::detail::EventState*>(e.segment().body())->waiters.load();
}
}  // namespace

BOOST_FIXTURE_TEST_SUITE(event, Clean)

BOOST_AUTO_TEST_CASE(set_clear_and_is_set, *boost::unit_test::timeout(60)) {
  mp::Event e;
  BOOST_TEST(!e.is_set());
  e.set();
  BOOST_TEST(e.is_set());
  e.set();  // idempotent
  BOOST_TEST(e.wait_for(0ms));
  e.wait();
  e.clear();
  BOOST_TEST(!e.is_set());
}

BOOST_AUTO_TEST_CASE(wait_for_returns_false_after_the_timeout, *boost::unit_test::timeout(60)) {
  mp::Event e;
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!e.wait_for(50ms));
  const double waited = seconds_since(start);
  BOOST_TEST(waited >= 0.049);
  BOOST_TEST(waited < 2.0);
  BOOST_TEST(!e.wait_until(std::chrono::system_clock::now() + 10ms));
}

BOOST_AUTO_TEST_CASE(set_wakes_waiters_in_every_process, *boost::unit_test::timeout(60)) {
  mp::Event e;
  std::vector<mp::Process> waiters;
  for (int i = 0; i < 6; ++i) {
    waiters.emplace_back([e] { return e.wait_for(30s) ? 0 : 1; });
    waiters.back().start();
  }
  BOOST_REQUIRE(eventually([&] { return waiting(e) == 6u; }));
  e.set();
  for (auto& w : waiters) {
    BOOST_REQUIRE(w.join_for(30s));
    BOOST_TEST(*w.exitcode() == 0);
  }
}

BOOST_AUTO_TEST_CASE(set_then_clear_still_releases_the_waiters, *boost::unit_test::timeout(60)) {
  mp::Event e;
  std::vector<mp::Process> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([e] { return e.wait_for(30s) ? 0 : 1; });
    waiters.back().start();
  }
  BOOST_REQUIRE(eventually([&] { return waiting(e) == 3u; }));
  for (auto& w : waiters) BOOST_REQUIRE(wait_until_in_futex(w.pid()));
  e.set();
  e.clear();  // at once: the waiters were released by the set all the same
  for (auto& w : waiters) {
    BOOST_REQUIRE(w.join_for(30s));
    BOOST_TEST(*w.exitcode() == 0);
  }
  BOOST_TEST(!e.is_set());
}

MPTEST_SCENARIO(set_named_event) {
  mp::Event e(mp::open_only, args.at(0));
  e.set();
  return 0;
}

BOOST_AUTO_TEST_CASE(named_event_set_by_an_unrelated_process, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("ready");
  mp::Event e(mp::create_only, name);
  Spawned setter("set_named_event", {name});
  BOOST_TEST(e.wait_for(30s));
  BOOST_TEST(setter.wait() == 0);
  BOOST_TEST(mp::Event(mp::open_or_create, name).is_set());
}

BOOST_AUTO_TEST_CASE(setter_killed_before_waking_delays_waiters_only_briefly, *boost::unit_test::timeout(60)) {
  mp::Event e;
  mp::Process waiter([e] {
    const auto start = std::chrono::steady_clock::now();
    const bool ok = e.wait_for(20s);
    return ok && seconds_since(start) < 10 ? 0 : 1;
  });
  waiter.start();
  BOOST_REQUIRE(eventually([&] { return waiting(e) == 1u; }));
  BOOST_REQUIRE(wait_until_in_futex(waiter.pid()));
  // set() up to raising the flag, then death before the wake-up.
  BOOST_TEST(run_child([e] {
               auto* st = const_cast<mp::detail::EventState*>(
                   static_cast<const mp::detail::EventState*>(e.segment().body()));
               st->word.fetch_or(3);  // the flag, and a new generation
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  BOOST_REQUIRE(waiter.join_for(30s));
  BOOST_TEST(*waiter.exitcode() == 0);
  BOOST_TEST(e.is_set());
}

BOOST_AUTO_TEST_CASE(setter_that_died_before_setting_leaves_waiters_a_timeout, *boost::unit_test::timeout(60)) {
  mp::Event e;
  Gate never;
  mp::Process setter([&] { never.wait(60s); e.set(); });
  setter.start();
  setter.kill();
  setter.join();
  BOOST_TEST(!e.wait_for(100ms));  // the survivor gets its answer at the deadline
}

// Waiters killed asleep stayed counted for good, and every later set() made a futex system call.
// Sets that wake nobody for two liveness slices take them off.
BOOST_AUTO_TEST_CASE(waiters_killed_asleep_leave_no_count_behind, *boost::unit_test::timeout(60)) {
  mp::Event e;
  std::vector<std::unique_ptr<mp::Process>> victims;
  for (int i = 0; i < 3; ++i) {
    victims.push_back(std::make_unique<mp::Process>([e] { e.wait(); }));
    victims.back()->start();
  }
  for (auto& v : victims) BOOST_REQUIRE(wait_until_in_futex(v->pid()));
  BOOST_REQUIRE(waiting(e) == 3u);
  for (auto& v : victims) {
    v->kill();
    v->join();
  }
  long rounds = 0;
  BOOST_TEST(eventually([&] {
    e.set();
    e.clear();
    ++rounds;
    return waiting(e) == 0u;
  }, 10s));
  BOOST_TEST(rounds >= 64);
  mp::Process live([e] { e.wait(); });  // a live waiter is still woken at once
  live.start();
  BOOST_REQUIRE(wait_until_in_futex(live.pid()));
  e.set();
  BOOST_REQUIRE(live.join_for(5s));
}

BOOST_AUTO_TEST_CASE(blocked_waiter_uses_no_cpu, *boost::unit_test::timeout(60)) {
  mp::Event e;
  CHECK_CHILD([e] {
    const double cpu0 = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    if (e.wait_for(400ms)) return 2;
    const double wall = seconds_since(start), cpu = cpu_seconds() - cpu0;
    return cpu < 0.1 * wall ? 0 : 1;
  });
}

BOOST_AUTO_TEST_SUITE_END()
