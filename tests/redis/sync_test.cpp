// multiproc::redis::Lock, Value<T>, Event and Semaphore (redis/sync.hpp) across real processes:
// mutual exclusion, leases that outlive a killed or paused holder, fencing tokens, renewals, a
// server that restarts (with and without AOF) or stops answering.
#include <multiproc/process.hpp>
#include <multiproc/redis.hpp>
#include <multiproc/redis/detail/renewal.hpp>

#include <boost/test/unit_test.hpp>

#include "redis_server.hpp"

#include <csignal>
#include <mutex>
#include <set>
#include <thread>

namespace mp = multiproc;
namespace rd = multiproc::redis;
using namespace std::chrono_literals;
using mptest::expect_errc;
using mptest::expect_error;

namespace {

rd::Options quick() { return mptest::redis_options(500ms, 3000ms); }

rd::LockOptions lease(std::chrono::milliseconds ms) {
  rd::LockOptions o;
  o.lease = ms;
  return o;
}

rd::SemaphoreOptions sem_lease(std::chrono::milliseconds ms) {
  rd::SemaphoreOptions o;
  o.lease = ms;
  return o;
}

double since(rd::Clock::time_point t) { return mptest::seconds_since(t); }

long long info_field(const rd::Client& c, const std::string& section, const std::string& field) {
  const std::string info = c.command({"INFO", section}).str();
  const auto at = info.find(field + ":");
  if (at == std::string::npos) return -1;
  return std::stoll(info.substr(at + field.size() + 1));
}

// Clients blocked in BLPOP on the server now.
long long blocked_clients(const rd::Client& c) { return info_field(c, "clients", "blocked_clients"); }

// EVALSHA calls the server has run so far (every Lock / Semaphore / Event step is one).
long long evalsha_calls(const rd::Client& c) {
  const std::string info = c.command({"INFO", "commandstats"}).str();
  const auto at = info.find("cmdstat_evalsha:calls=");
  if (at == std::string::npos) return 0;
  return std::stoll(info.substr(at + 22));
}

std::set<std::string> keys_of(const rd::Client& c, const std::string& pattern) {
  std::set<std::string> out;
  const rd::Reply r = c.command({"KEYS", pattern});
  for (const auto& k : r.elements()) out.insert(k.str());
  return out;
}

// A child that must be SIGKILLed or SIGSTOPped at a chosen point: started with mp::Process.
std::unique_ptr<mp::Process> start(std::function<int()> f) {
  auto p = std::make_unique<mp::Process>([f = std::move(f)] { return f(); });
  p->start();
  return p;
}

int join_code(mp::Process& p) {
  if (!p.join_for(30s)) {
    p.kill();
    p.join();
    BOOST_ERROR("child did not finish in time");
    return -1;
  }
  return p.exitcode().value_or(-1000);
}

}  // namespace

// =============================================================================================
BOOST_FIXTURE_TEST_SUITE(redis_lock, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(mutual_exclusion_across_processes_exact_total, *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock lock(c, "counter", lease(2000ms));
  constexpr int kProcs = 4, kEach = 60;
  auto ps = mptest::start_all(kProcs, [&](int) {
    for (int i = 0; i < kEach; ++i) {
      std::lock_guard<rd::Lock> g(lock);
      // Not atomic on the server: GET, then SET. Only the lock keeps the total exact.
      const auto v = c.command({"GET", "n"});
      const long n = v.is_nil() ? 0 : std::stol(v.str());
      std::this_thread::yield();
      c.command({"SET", "n", std::to_string(n + 1)});
    }
    return 0;
  });
  mptest::join_all_ok(ps);
  BOOST_TEST(c.command({"GET", "n"}).str() == std::to_string(kProcs * kEach));
  BOOST_TEST(!lock.locked());
}

BOOST_AUTO_TEST_CASE(lockable_guards_ownership_and_errors_naming_the_lock,
                     *boost::unit_test::timeout(30)) {
  rd::Client c(redis.url());
  rd::Lock a(c, "a"), b(redis.url(), "b");
  {
    std::scoped_lock both(a, b);
    BOOST_TEST(a.locked());
    BOOST_TEST(b.locked());
    BOOST_TEST(!a.previous_owner_died());
    BOOST_TEST(a.fencing_token() == 1u);
    // Relocking through the same handle: an error, not a deadlock; try_lock says false.
    expect_error([&] { a.lock(); }, mp::errc::would_deadlock, {"redis::Lock 'a'", "redis 127.0.0.1:"});
    expect_errc([&] { a.try_lock_for(10ms); }, mp::errc::would_deadlock);
    BOOST_TEST(!a.try_lock());
    // Another thread of this process through the same handle is another holder: it waits.
    std::thread t([&] {
      BOOST_TEST(!a.try_lock());
      BOOST_TEST(!a.try_lock_for(50ms));
      expect_error([&] { a.unlock(); }, mp::errc::not_owner, {"redis::Lock 'a'", "does not hold"});
      expect_errc([&] { a.fencing_token(); }, mp::errc::not_owner);
    });
    t.join();
    // Another process: cannot take it, and cannot unlock it.
    CHECK_CHILD([&] {
      CHILD_REQUIRE(!a.try_lock());
      CHILD_REQUIRE(mptest::child_expect_errc([&] { a.unlock(); }, mp::errc::not_owner) == 0);
      rd::Lock other(redis.url(), "a");
      CHILD_REQUIRE(other.locked());
      CHILD_REQUIRE(!other.try_lock_for(100ms));
      return 0;
    });
  }
  BOOST_TEST(!a.locked());
  {
    std::unique_lock<rd::Lock> g(a, std::defer_lock);
    BOOST_TEST(g.try_lock_for(100ms));
    BOOST_TEST(a.fencing_token() == 2u);
    BOOST_TEST(g.owns_lock());
  }
  BOOST_TEST(a.try_lock_until(std::chrono::system_clock::now() + 100ms));
  a.unlock();
  expect_error([&] { a.unlock(); }, mp::errc::not_owner, {"redis::Lock 'a'"});
  // Bad arguments and kinds.
  expect_error([&] { rd::Lock(c, "x", lease(5ms)); }, mp::errc::invalid_argument, {"lease", "30 ms"});
  expect_errc([&] { rd::Lock(c, ""); }, mp::errc::invalid_argument);
  c.command({"HSET", "mp:lock:wrong:meta", "kind", "queue"});
  expect_error([&] { rd::Lock(c, "wrong"); }, mp::errc::wrong_kind, {"redis::Lock 'wrong'", "kind"});
}

BOOST_AUTO_TEST_CASE(try_lock_for_times_out_and_unlock_wakes_a_waiter_without_polling,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock lock(c, "l", lease(10000ms));  // a waiter's slice is the holder's lease: 10 s
  mptest::Gate held, release;
  auto holder = start([&] {
    lock.lock();
    held.signal();
    release.wait();
    lock.unlock();
    return 0;
  });
  BOOST_REQUIRE(held.wait());
  auto t0 = rd::Clock::now();
  BOOST_TEST(!lock.try_lock_for(300ms));
  BOOST_TEST(since(t0) >= 0.29);
  BOOST_TEST(since(t0) < 2.0);
  // A blocked lock() sits in BLPOP on the server: a handful of script runs in a second, not a
  // poll loop.
  const long long calls_before = evalsha_calls(c);
  std::thread releaser([&] {
    mptest::eventually([&] { return blocked_clients(c) == 1; });
    std::this_thread::sleep_for(1s);  // the waiter stays blocked for a while (the subject here)
    release.signal();
  });
  t0 = rd::Clock::now();
  lock.lock();
  const double waited = since(t0);
  releaser.join();
  BOOST_TEST(waited >= 0.9);
  BOOST_TEST(waited < 5.0);  // woken by the unlock, long before the 10 s slice ends
  BOOST_TEST(evalsha_calls(c) - calls_before < 12);
  BOOST_TEST(!lock.previous_owner_died());
  BOOST_TEST(lock.fencing_token() == 2u);
  lock.unlock();
  BOOST_TEST(join_code(*holder) == 0);
}

BOOST_AUTO_TEST_CASE(fencing_tokens_strictly_increase_across_processes,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock lock(c, "fenced", lease(2000ms));
  constexpr int kProcs = 4, kEach = 40;
  auto ps = mptest::start_all(kProcs, [&](int) {
    std::uint64_t last = 0;
    for (int i = 0; i < kEach; ++i) {
      std::lock_guard<rd::Lock> g(lock);
      const std::uint64_t t = lock.fencing_token();
      CHILD_REQUIRE(t > last);
      last = t;
      c.command({"RPUSH", "tokens", std::to_string(t)});  // in acquisition order: under the lock
    }
    return 0;
  });
  mptest::join_all_ok(ps);
  const auto tokens = c.command({"LRANGE", "tokens", "0", "-1"}).elements();
  BOOST_REQUIRE(tokens.size() == std::size_t(kProcs * kEach));
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    BOOST_TEST(std::stoull(tokens[i].str()) == i + 1);  // 1, 2, 3, ...: none skipped or repeated
  }
}

// Regression: a child forked while the parent's renewal thread waited on its condition variable
// inherited a waiter it does not have; its second notify_all() (a second lock()) waited for that
// waiter forever (glibc). The parent's renewal thread is kept busy, renewing every millisecond.
BOOST_AUTO_TEST_CASE(children_forked_while_renewals_run_can_lock, *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock outer(c, "outer", lease(9000ms));
  rd::Lock inner(c, "inner", lease(9000ms));
  outer.lock();
  rd::detail::Renewal busy(1ms, [] { return true; });
  for (int i = 0; i < 10; ++i) {
    const int rc = mptest::run_child(
        [&] {
          CHILD_REQUIRE(!outer.try_lock());  // the parent's, not the child's
          for (int k = 0; k < 3; ++k) {  // each lock() registers a renewal: a notify_all()
            inner.lock();
            inner.unlock();
          }
          return 0;
        },
        5s);
    BOOST_TEST_REQUIRE(rc == 0, "child " << i << " exited with " << rc);
  }
  busy.reset();
  outer.unlock();
}

BOOST_AUTO_TEST_SUITE_END()

// =============================================================================================
BOOST_FIXTURE_TEST_SUITE(redis_lock_faults, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(a_holder_killed_holding_is_replaced_after_its_lease,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock lock(c, "k", lease(400ms));
  mptest::Gate held;
  auto holder = start([&] {
    lock.lock();
    c.command({"SET", "holder_token", std::to_string(lock.fencing_token())});
    held.signal();
    ::pause();  // until SIGKILL
    return 1;
  });
  BOOST_REQUIRE(held.wait());
  const auto dead_token = std::stoull(c.command({"GET", "holder_token"}).str());
  holder->kill();
  holder->join();
  auto t0 = rd::Clock::now();
  lock.lock();
  BOOST_TEST(since(t0) < 3.0);
  BOOST_TEST(lock.previous_owner_died());
  BOOST_TEST(lock.fencing_token() > dead_token);
  lock.unlock();
  BOOST_TEST(!lock.previous_owner_died());
  lock.lock();  // released properly this time
  BOOST_TEST(!lock.previous_owner_died());
  lock.unlock();
}

BOOST_AUTO_TEST_CASE(a_waiter_killed_while_waiting_leaves_nothing_behind,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock lock(c, "w", lease(5000ms));
  lock.lock();
  std::vector<std::unique_ptr<mp::Process>> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.push_back(start([&] {
      lock.lock();  // blocks until killed
      return 1;
    }));
  }
  BOOST_REQUIRE(mptest::eventually([&] { return blocked_clients(c) == 3; }));
  for (auto& w : waiters) {
    w->kill();
    w->join();
  }
  BOOST_TEST(mptest::eventually([&] { return blocked_clients(c) == 0; }));
  lock.unlock();
  // Only the lock's own keys: no waiter registered anything.
  const auto keys = keys_of(c, "mp:lock:w:*");
  for (const auto& k : keys) {
    BOOST_TEST((k == "mp:lock:w:meta" || k == "mp:lock:w:fence" || k == "mp:lock:w:wake" ||
                k == "mp:lock:w:released"),
               "unexpected key " << k);
  }
  BOOST_TEST(!keys.count("mp:lock:w:state"));
  // The next process takes it at once, and nobody died holding it.
  CHECK_CHILD([&] {
    CHILD_REQUIRE(lock.try_lock());
    CHILD_REQUIRE(!lock.previous_owner_died());
    lock.unlock();
    return 0;
  });
}

BOOST_AUTO_TEST_CASE(a_live_holder_keeps_the_lock_for_three_leases,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock lock(c, "live", lease(300ms));
  lock.lock();
  const auto t0 = rd::Clock::now();
  // Another process tries for 3 leases: the renewals keep the lock held all along.
  CHECK_CHILD([&] {
    rd::Lock other(redis.url(), "live", lease(300ms));
    CHILD_REQUIRE(!other.try_lock_for(900ms));
    return 0;
  });
  BOOST_TEST(since(t0) >= 0.85);
  BOOST_TEST(lock.locked());
  BOOST_TEST(!lock.previous_owner_died());
  lock.unlock();  // still ours: no error
}

BOOST_AUTO_TEST_CASE(a_holder_stopped_beyond_its_lease_loses_it_and_its_unlock_says_so,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock lock(c, "stopped", lease(300ms));
  mptest::Gate held, resumed;
  auto holder = start([&] {
    lock.lock();
    const auto mine = lock.fencing_token();
    held.signal();
    if (!resumed.wait()) return 3;
    // SIGSTOPped meanwhile for longer than its lease, and the parent took the lock over.
    try {
      lock.unlock();
      return 1;
    } catch (const mp::Error& e) {
      if (e.code() != mp::errc::not_owner) return 2;
      const std::string m = e.what();
      if (m.find("redis::Lock 'stopped'") == std::string::npos) return 4;
      if (m.find("lease") == std::string::npos || m.find("expired") == std::string::npos) return 5;
      if (m.find("another holder") == std::string::npos) return 6;
      (void)mine;
    }
    return 0;
  });
  BOOST_REQUIRE(held.wait());
  ::kill(holder->pid(), SIGSTOP);
  auto t0 = rd::Clock::now();
  BOOST_REQUIRE(lock.try_lock_for(5s));
  BOOST_TEST(since(t0) >= 0.1);  // not before its lease ran out
  BOOST_TEST(lock.previous_owner_died());
  resumed.signal();
  ::kill(holder->pid(), SIGCONT);
  BOOST_TEST(join_code(*holder) == 0);
  BOOST_TEST(lock.locked());  // the resumed holder's unlock changed nothing
  lock.unlock();
}

BOOST_AUTO_TEST_CASE(a_stopped_server_makes_timed_calls_return_on_time,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url(), quick());
  rd::Lock lock(c, "p", lease(500ms));
  rd::Event ev(c, "p");
  rd::Semaphore sem(c, "p", 1, sem_lease(500ms));
  redis.pause();
  auto t0 = rd::Clock::now();
  BOOST_TEST(!lock.try_lock_for(200ms));
  BOOST_TEST(since(t0) < 1.0);
  t0 = rd::Clock::now();
  BOOST_TEST(!ev.wait_for(200ms));
  BOOST_TEST(since(t0) < 1.0);
  t0 = rd::Clock::now();
  BOOST_TEST(!sem.try_acquire_for(200ms));
  BOOST_TEST(since(t0) < 1.0);
  // Untimed calls give up after reconnect_for with an error naming the object and the server.
  expect_error([&] { lock.lock(); }, mp::errc::disconnected, {"redis::Lock 'p'", "redis 127.0.0.1:"});
  redis.resume();
  // A timed-out acquisition may have reached the server: the lock is free again after a lease
  // at most.
  BOOST_TEST(lock.try_lock_for(3s));
  lock.unlock();
}

BOOST_AUTO_TEST_CASE(an_aof_server_restarted_keeps_the_holder_holding,
                     *boost::unit_test::timeout(60)) {
  mptest::RedisServer srv(mptest::RedisServer::Config{true, ""});
  rd::Client c(srv.url());
  rd::Lock lock(c, "durable", lease(1500ms));
  lock.lock();
  const auto token = lock.fencing_token();
  srv.restart();
  BOOST_TEST(lock.locked());
  // Held through the restart and renewed after it: another process cannot take it for longer
  // than a lease.
  CHECK_CHILD([&] {
    rd::Lock other(srv.url(), "durable", lease(1500ms));
    CHILD_REQUIRE(!other.try_lock_for(2000ms));
    return 0;
  });
  BOOST_TEST(!lock.previous_owner_died());
  lock.unlock();  // still ours
  CHECK_CHILD([&] {
    rd::Lock other(srv.url(), "durable");
    CHILD_REQUIRE(other.try_lock());
    CHILD_REQUIRE(!other.previous_owner_died());
    CHILD_REQUIRE(other.fencing_token() == token + 1);  // the counter survived too
    other.unlock();
    return 0;
  });
}

BOOST_AUTO_TEST_CASE(mutual_exclusion_holds_across_an_aof_restart_mid_run,
                     *boost::unit_test::timeout(90)) {
  mptest::RedisServer srv(mptest::RedisServer::Config{true, ""});
  rd::Client c(srv.url());
  rd::Lock lock(c, "busy", lease(3000ms));
  constexpr int kProcs = 3, kEach = 300;
  auto ps = mptest::start_all(kProcs, [&](int) {
    for (int i = 0; i < kEach; ++i) {
      std::lock_guard<rd::Lock> g(lock);
      // GET then SET: a resent SET is harmless; a resent acquisition or unlock must be too.
      const auto v = c.command({"GET", "n"});
      const long n = v.is_nil() ? 0 : std::stol(v.str());
      c.command({"SET", "n", std::to_string(n + 1)});
    }
    return 0;
  });
  long before = 0;
  BOOST_REQUIRE(mptest::eventually([&] {
    const auto v = c.command({"GET", "n"});
    before = v.is_nil() ? 0 : std::stol(v.str());
    return before >= 20;
  }));
  srv.restart();  // while the processes lock, count and unlock
  BOOST_TEST_MESSAGE("restarted at " << before << ", after it " << c.command({"GET", "n"}).str());
  BOOST_TEST(before < kProcs * kEach);  // the restart came mid-run
  mptest::join_all_ok(ps);
  BOOST_TEST(c.command({"GET", "n"}).str() == std::to_string(kProcs * kEach));
  BOOST_TEST(!lock.locked());
}

BOOST_AUTO_TEST_CASE(a_server_restarted_without_persistence_frees_the_lock,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Lock lock(c, "volatile", lease(5000ms));
  lock.lock();
  redis.restart();
  CHECK_CHILD([&] {
    rd::Lock other(redis.url(), "volatile");
    CHILD_REQUIRE(other.try_lock());
    CHILD_REQUIRE(!other.previous_owner_died());  // as documented: the server forgot the holder
    other.unlock();
    return 0;
  });
  expect_error([&] { lock.unlock(); }, mp::errc::not_owner, {"redis::Lock 'volatile'", "free now"});
}

BOOST_AUTO_TEST_SUITE_END()

// =============================================================================================
BOOST_FIXTURE_TEST_SUITE(redis_value, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(counters_across_processes_are_exact, *boost::unit_test::timeout(60)) {
  rd::Value<long> hits(redis.url(), "hits");
  BOOST_TEST(hits.load() == 0);
  BOOST_TEST(hits.name() == "hits");
  constexpr int kProcs = 4, kEach = 250;
  auto ps = mptest::start_all(kProcs, [&](int) {
    for (int i = 0; i < kEach; ++i) hits.add(1);
    return 0;
  });
  mptest::join_all_ok(ps);
  BOOST_TEST(hits.load() == kProcs * kEach);
  BOOST_TEST(hits.add(5) == kProcs * kEach + 5);        // add: the value after
  BOOST_TEST(hits.fetch_add(5) == kProcs * kEach + 5);  // fetch_add: the value before
  hits.store(-7);
  BOOST_TEST(hits.load() == -7);
  // Opening again keeps the value; the initial value only counts for a new one.
  rd::Value<long> again(redis.url(), "hits", 100);
  BOOST_TEST(again.load() == -7);
  rd::Value<long> fresh(redis.url(), "fresh", 100);
  BOOST_TEST(fresh.load() == 100);
}

BOOST_AUTO_TEST_CASE(compare_exchange_and_transform_race_exactly, *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Value<int> v(c, "cas");
  rd::Value<long> successes(c, "successes");
  constexpr int kProcs = 4, kEach = 60;
  auto ps = mptest::start_all(kProcs, [&](int) {
    for (int i = 0; i < kEach; ++i) {
      for (;;) {
        const int cur = v.load();
        if (v.compare_exchange(cur, cur + 1)) break;
      }
      successes.add(1);
      v.transform([](int x) { return x + 2; });
    }
    return 0;
  });
  mptest::join_all_ok(ps);
  BOOST_TEST(v.load() == kProcs * kEach * 3);
  BOOST_TEST(successes.load() == kProcs * kEach);
  BOOST_TEST(!v.compare_exchange(0, 5));
  BOOST_TEST(v.load() == kProcs * kEach * 3);
  BOOST_TEST(v.transform([](int x) { return x * 2; }) == kProcs * kEach * 6);
}

BOOST_AUTO_TEST_CASE(ranges_types_and_foreign_data_are_errors, *boost::unit_test::timeout(30)) {
  rd::Client c(redis.url());
  rd::Value<std::int8_t> small(c, "small", 120);
  expect_error([&] { small.add(10); }, mp::errc::invalid_argument,
               {"redis::Value<", "'small'", "outside", "nothing was changed"});
  BOOST_TEST(small.load() == 120);
  BOOST_TEST(small.add(-120) == 0);
  rd::Value<long> big(c, "big", std::numeric_limits<long>::max() - 1);
  BOOST_TEST(big.add(1) == std::numeric_limits<long>::max());
  expect_error([&] { big.add(1); }, mp::errc::invalid_argument, {"'big'", "64 bits"});
  BOOST_TEST(big.load() == std::numeric_limits<long>::max());
  expect_error([&] { rd::Value<int>(c, "big"); }, mp::errc::type_mismatch, {"'big'", "type"});
  c.command({"SET", "mp:value:big", "not a number"});
  expect_error([&] { big.load(); }, mp::errc::corrupt, {"'big'", "not a number"});
  expect_errc([&] { big.add(1); }, mp::errc::server_error);
}

BOOST_AUTO_TEST_SUITE_END()

// =============================================================================================
BOOST_FIXTURE_TEST_SUITE(redis_event, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(set_wakes_every_waiting_process_at_once, *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Event ev(c, "go");
  BOOST_TEST(!ev.is_set());
  constexpr int kWaiters = 5;
  auto ps = mptest::start_all(kWaiters, [&](int i) {
    CHILD_REQUIRE(ev.wait_for(20s));
    c.command({"RPUSH", "woken", std::to_string(i)});
    return 0;
  });
  BOOST_REQUIRE(mptest::eventually([&] { return blocked_clients(c) == kWaiters; }));
  const auto t0 = rd::Clock::now();
  ev.set();
  mptest::join_all_ok(ps);
  BOOST_TEST(since(t0) < 3.0);  // at once, not at the end of a waiter's 5 s slice
  BOOST_TEST(c.command({"LLEN", "woken"}).integer() == kWaiters);
  BOOST_TEST(ev.is_set());
  BOOST_TEST(ev.wait_for(0ms));  // set: returns at once
  ev.wait();
}

BOOST_AUTO_TEST_CASE(wait_for_times_out_clear_lowers_and_a_pulse_releases_waiters,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Event ev(redis.url(), "pulse");
  auto t0 = rd::Clock::now();
  BOOST_TEST(!ev.wait_for(300ms));
  BOOST_TEST(since(t0) >= 0.29);
  BOOST_TEST(since(t0) < 2.0);
  ev.set();
  BOOST_TEST(ev.is_set());
  ev.clear();
  BOOST_TEST(!ev.is_set());
  BOOST_TEST(!ev.wait_for(50ms));
  // set() then clear() at once still releases the waiters that were waiting.
  auto ps = mptest::start_all(3, [&](int) { return ev.wait_for(20s) ? 0 : 1; });
  BOOST_REQUIRE(mptest::eventually([&] { return blocked_clients(c) == 3; }));
  ev.set();
  ev.clear();
  mptest::join_all_ok(ps);
  BOOST_TEST(!ev.is_set());
  // A waiter killed while waiting: its registration and list expire; nothing else stays.
  auto w = start([&] { return ev.wait_for(20s) ? 0 : 1; });
  BOOST_REQUIRE(mptest::eventually([&] { return blocked_clients(c) == 1; }));
  w->kill();
  w->join();
  ev.set();
  for (const auto& k : keys_of(c, "mp:event:pulse:*")) {
    if (k == "mp:event:pulse:meta" || k == "mp:event:pulse:flag") continue;
    BOOST_TEST(c.command({"PTTL", k}).integer() > 0, k << " never expires");
  }
  expect_errc([&] { rd::Event(c, "bad name"); }, mp::errc::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()

// =============================================================================================
BOOST_FIXTURE_TEST_SUITE(redis_semaphore, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(never_more_than_n_holders_across_processes, *boost::unit_test::timeout(60)) {
  static const rd::Script enter(R"lua(
local v = redis.call('INCR', KEYS[1])
if v > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], v) end
return v
)lua",
                                "enter");
  rd::Client c(redis.url());
  constexpr long kBound = 2;
  rd::Semaphore sem(c, "slots", kBound, sem_lease(2000ms));
  BOOST_TEST(sem.value() == kBound);
  BOOST_TEST(sem.bound() == kBound);
  constexpr int kProcs = 5, kEach = 15;
  auto ps = mptest::start_all(kProcs, [&](int) {
    for (int i = 0; i < kEach; ++i) {
      sem.acquire();
      c.eval(enter, {"inside", "max"}, {});
      std::this_thread::sleep_for(1ms);  // stay inside a little (the overlap is the subject)
      c.command({"DECR", "inside"});
      c.command({"INCR", "done"});
      sem.release();
    }
    return 0;
  });
  mptest::join_all_ok(ps);
  BOOST_TEST(c.command({"GET", "done"}).str() == std::to_string(kProcs * kEach));
  const long max = std::stol(c.command({"GET", "max"}).str());
  BOOST_TEST(max >= 1);
  BOOST_TEST(max <= kBound);
  BOOST_TEST(sem.value() == kBound);
}

BOOST_AUTO_TEST_CASE(a_dead_holders_permit_returns_after_its_lease,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Semaphore sem(c, "one", 1, sem_lease(400ms));
  mptest::Gate held;
  auto holder = start([&] {
    sem.acquire();
    held.signal();
    ::pause();
    return 1;
  });
  BOOST_REQUIRE(held.wait());
  BOOST_TEST(sem.value() == 0);
  BOOST_TEST(!sem.try_acquire());
  holder->kill();
  holder->join();
  const auto t0 = rd::Clock::now();
  BOOST_REQUIRE(sem.try_acquire_for(5s));
  BOOST_TEST(since(t0) < 3.0);
  BOOST_TEST(sem.held() == 1);
  // A live holder keeps its permit for three leases (renewed).
  CHECK_CHILD([&] {
    rd::Semaphore other(redis.url(), "one", 1, sem_lease(400ms));
    CHILD_REQUIRE(other.held() == 0);
    CHILD_REQUIRE(!other.try_acquire_for(1200ms));
    return 0;
  });
  sem.release();
  BOOST_TEST(sem.value() == 1);
}

BOOST_AUTO_TEST_CASE(over_release_a_lost_permit_and_bad_bounds_are_errors,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  rd::Semaphore sem(c, "b", 3, sem_lease(300ms));
  expect_error([&] { sem.release(); }, mp::errc::bad_state, {"redis::Semaphore 'b'", "holds no permit"});
  BOOST_TEST(sem.try_acquire());
  BOOST_TEST(sem.try_acquire());
  BOOST_TEST(sem.value() == 1);
  sem.release();
  sem.release();
  expect_errc([&] { sem.release(); }, mp::errc::bad_state);
  BOOST_TEST(sem.value() == 3);
  expect_error([&] { rd::Semaphore(c, "b", 4); }, mp::errc::type_mismatch, {"'b'", "bound"});
  expect_errc([&] { rd::Semaphore(c, "z", 0); }, mp::errc::invalid_argument);
  // A holder stopped beyond its lease loses its permit to another; its release says so.
  mptest::Gate held, resumed;
  auto holder = start([&] {
    rd::Semaphore one(redis.url(), "single", 1, sem_lease(300ms));
    one.acquire();
    held.signal();
    if (!resumed.wait()) return 3;
    try {
      one.release();
      return 1;
    } catch (const mp::Error& e) {
      return e.code() == mp::errc::not_owner ? 0 : 2;
    }
  });
  BOOST_REQUIRE(held.wait());
  ::kill(holder->pid(), SIGSTOP);
  rd::Semaphore one(c, "single", 1, sem_lease(300ms));
  BOOST_REQUIRE(one.try_acquire_for(5s));
  resumed.signal();
  ::kill(holder->pid(), SIGCONT);
  BOOST_TEST(join_code(*holder) == 0);
  BOOST_TEST(one.value() == 0);  // the resumed holder's release gave nothing back
  one.release();
  BOOST_TEST(one.value() == 1);
}

BOOST_AUTO_TEST_SUITE_END()
