// multiproc::redis::Queue and JoinableQueue: the local queue's interface across processes, and
// what happens when consumers die or stop while holding messages, when the server restarts (AOF)
// or stops answering (SIGSTOP), and when another program writes garbage into the queue.
#include <multiproc/process.hpp>
#include <multiproc/redis.hpp>

#include <boost/test/unit_test.hpp>

#include "redis_server.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <thread>

namespace mp = multiproc;
namespace rd = multiproc::redis;
using namespace std::chrono_literals;
using mptest::expect_error;

namespace {

rd::QueueOptions opts(std::chrono::milliseconds lease = 10s, unsigned max_deliveries = 0) {
  rd::QueueOptions o;
  o.lease = lease;
  o.max_deliveries = max_deliveries;
  o.client.connect_timeout = 500ms;
  o.client.command_timeout = 1000ms;
  o.client.reconnect_for = 10s;
  return o;
}

double since(rd::Clock::time_point t) {
  return std::chrono::duration<double>(rd::Clock::now() - t).count();
}

// Appends values to a list on the server in one command (children report what they received).
void report(const rd::Client& c, const std::string& key, const std::vector<long>& values) {
  for (std::size_t i = 0; i < values.size(); i += 1000) {
    rd::Argv argv{"RPUSH", key};
    for (std::size_t j = i; j < std::min(values.size(), i + 1000); ++j) {
      argv.push_back(std::to_string(values[j]));
    }
    c.command(argv);
  }
}

std::vector<long> reported(const rd::Client& c, const std::string& key) {
  std::vector<long> out;
  const rd::Reply list = c.command({"LRANGE", key, "0", "-1"});
  for (const auto& r : list.elements()) {
    out.push_back(std::stol(r.str()));
  }
  return out;
}

// Calls clients made (scripts and blocking pops; not the commands inside scripts, nor INFO).
long long client_calls(const rd::Client& c) {
  const std::string info = c.command({"INFO", "commandstats"}).str();
  long long n = 0;
  for (const char* cmd : {"cmdstat_evalsha:calls=", "cmdstat_blpop:calls="}) {
    const auto at = info.find(cmd);
    if (at != std::string::npos) n += std::stoll(info.substr(at + std::strlen(cmd)));
  }
  return n;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(redis_queue, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(fifo_capacity_and_timeouts, *boost::unit_test::timeout(30)) {
  rd::Queue<int> q(redis.url(), "basic", 3, opts());
  BOOST_TEST(q.name() == "basic");
  BOOST_TEST(q.capacity() == 3u);
  BOOST_TEST(q.empty());
  BOOST_TEST(!q.try_get().has_value());
  q.put(1);
  BOOST_TEST(q.try_put(2));
  BOOST_TEST(q.put_for(3, 100ms));
  BOOST_TEST(q.size() == 3u);
  BOOST_TEST(q.full());
  BOOST_TEST(!q.try_put(4));
  auto t0 = rd::Clock::now();
  BOOST_TEST(!q.put_for(4, 200ms));
  BOOST_TEST(since(t0) >= 0.19);
  BOOST_TEST(since(t0) < 2.0);
  auto d1 = q.get_delivery();
  BOOST_TEST(d1.value == 1);
  BOOST_TEST(d1.deliveries == 1u);
  BOOST_TEST(q.get() == 2);
  auto d3 = q.get_delivery_for(1s);
  BOOST_REQUIRE(d3.has_value());
  BOOST_TEST(d3->value == 3);
  BOOST_TEST(d3->id > d1.id);
  BOOST_TEST(q.held() == 1u);  // 3, until the next get or ack()
  t0 = rd::Clock::now();
  BOOST_TEST(!q.get_for(200ms).has_value());
  BOOST_TEST(since(t0) >= 0.19);
  BOOST_TEST(since(t0) < 2.0);
  BOOST_TEST(q.held() == 0u);
  BOOST_TEST(q.ack() == 0u);
  // Another handle on the same name is the same queue; strings keep every byte.
  rd::Queue<std::string> s(redis.url(), "strings", 0, opts());
  const std::string binary("a\0b\r\n\xff:", 7);
  s.put(binary);
  s.put_many({"x", "", "zz"});
  rd::Queue<std::string> s2(rd::Client(redis.url()), "strings", 0, opts());
  BOOST_TEST(s2.size() == 4u);
  BOOST_TEST(s2.get() == binary);
  auto rest = s2.get_many(10, 1s);
  BOOST_TEST((rest == std::vector<std::string>{"x", "", "zz"}));
  BOOST_TEST(s.empty());
}

// An outside probe: get_for(300 years) computed now() + timeout, which overflowed into the past
// (UBSan: signed integer overflow), and returned nullopt at once.
BOOST_AUTO_TEST_CASE(timeouts_of_centuries_wait_instead_of_overflowing, *boost::unit_test::timeout(30)) {
  rd::Queue<int> q(redis.url(), "centuries", 0, opts());
  rd::JoinableQueue<int> j(redis.url(), "centuries_joinable", 0, opts());
  std::thread producer([&] {
    std::this_thread::sleep_for(300ms);  // a put after the get begins to wait
    rd::Queue<int>(redis.url(), "centuries", 0, opts()).put(42);
  });
  const auto t0 = rd::Clock::now();
  const auto got = q.get_for(std::chrono::hours(24 * 365 * 300));
  producer.join();
  BOOST_TEST((got == std::optional<int>(42)));
  BOOST_TEST(since(t0) < 20.0);
  BOOST_TEST(q.put_for(7, std::chrono::seconds::max()));
  BOOST_TEST((q.get_for(std::chrono::duration<double>(1e12)) == std::optional<int>(7)));
  BOOST_TEST(j.join_for(std::chrono::hours::max()));  // nothing unfinished: at once
}

BOOST_AUTO_TEST_CASE(another_type_capacity_or_kind_on_open_is_an_error, *boost::unit_test::timeout(30)) {
  rd::Queue<int> q(redis.url(), "m", 10, opts());
  rd::Queue<int> same(redis.url(), "m", 10, opts(1s));  // the lease is the handle's own
  expect_error([&] { rd::Queue<long> x(redis.url(), "m", 10, opts()); }, mp::errc::type_mismatch,
               {"'m'", "type"});
  expect_error([&] { rd::Queue<int> x(redis.url(), "m", 5, opts()); }, mp::errc::type_mismatch,
               {"'m'", "capacity '10'", "capacity '5'"});
  expect_error([&] { rd::JoinableQueue<int> x(redis.url(), "m", 10, opts()); },
               mp::errc::wrong_kind, {"'m'", "kind"});
  expect_error([&] { rd::Queue<int> x(redis.url(), "m", 10, opts(10s, 3)); },
               mp::errc::type_mismatch, {"'m'", "max_deliveries"});
  expect_error([&] { rd::Queue<int> x(redis.url(), "", 10, opts()); }, mp::errc::invalid_argument,
               {"name"});
}

BOOST_AUTO_TEST_CASE(producers_and_consumers_in_processes_every_item_once, *boost::unit_test::timeout(90)) {
  constexpr int kProducers = 3, kConsumers = 3, kEach = 2000;
  rd::Queue<long> q(redis.url(), "work", 100, opts());
  rd::Client c(redis.url());
  auto consumers = mptest::start_all(kConsumers, [q, c](int i) {
    std::vector<long> got;
    std::map<long, long> last;  // producer -> last item seen: each producer's order is kept
    try {
      for (;;) {
        const long v = q.get();
        const long p = v / kEach;
        if (last.count(p) && last[p] >= v) return 3;
        last[p] = v;
        got.push_back(v);
      }
    } catch (const mp::Closed&) {
    }
    report(c, "got" + std::to_string(i), got);
    return 0;
  });
  auto producers = mptest::start_all(kProducers, [q](int p) {
    for (long i = 0; i < kEach; ++i) q.put(p * kEach + i);
    return 0;
  });
  mptest::join_all_ok(producers);
  q.close();
  mptest::join_all_ok(consumers);
  std::vector<long> all;
  for (int i = 0; i < kConsumers; ++i) {
    auto part = reported(c, "got" + std::to_string(i));
    all.insert(all.end(), part.begin(), part.end());
  }
  std::sort(all.begin(), all.end());
  std::vector<long> expected(kProducers * kEach);
  std::iota(expected.begin(), expected.end(), 0L);
  BOOST_TEST(all.size() == expected.size());
  BOOST_TEST((all == expected));
  BOOST_TEST(std::accumulate(all.begin(), all.end(), 0L) ==
             static_cast<long>(kProducers * kEach) * (kProducers * kEach - 1) / 2);
  BOOST_TEST(q.size() == 0u);
  BOOST_TEST(q.dead_size() == 0u);
}

BOOST_AUTO_TEST_CASE(racing_producers_never_exceed_the_capacity, *boost::unit_test::timeout(60)) {
  constexpr int kProducers = 4, kEach = 150;
  constexpr std::size_t kCap = 4;
  rd::Queue<int> q(redis.url(), "bounded", kCap, opts());
  rd::Client c(redis.url());
  auto producers = mptest::start_all(kProducers, [q](int p) {
    for (int i = 0; i < kEach; ++i) {
      const int v = p * kEach + i + 1;
      if (i % 2 == 0) {
        while (!q.try_put(v)) {
        }  // racing at full
      } else {
        q.put(v);
      }
    }
    return 0;
  });
  long long sum = 0, n = 0;
  long long most = 0;
  while (n < kProducers * kEach) {
    most = std::max(most, c.command({"LLEN", "mp:queue:bounded:items"}).integer());
    if (auto v = q.get_for(5s)) {
      sum += *v;
      ++n;
    } else {
      break;
    }
  }
  mptest::join_all_ok(producers);
  BOOST_TEST(n == kProducers * kEach);
  BOOST_TEST(sum == static_cast<long long>(kProducers * kEach) * (kProducers * kEach + 1) / 2);
  BOOST_TEST(most <= static_cast<long long>(kCap));
  BOOST_TEST(most == static_cast<long long>(kCap));  // it did fill up
}

BOOST_AUTO_TEST_CASE(close_wakes_blocked_getters_in_other_processes_after_draining, *boost::unit_test::timeout(60)) {
  rd::Queue<int> q(redis.url(), "closing", 0, opts());
  rd::Client c(redis.url());
  auto getters = mptest::start_all(2, [q, c](int i) {
    long got = 0;
    try {
      for (;;) got += q.get();
    } catch (const mp::Closed& e) {
      if (std::string(e.what()).find("'closing'") == std::string::npos) return 4;
    }
    c.command({"INCRBY", "sum", std::to_string(got)});
    c.command({"INCRBY", "who" + std::to_string(i), "1"});
    return 0;
  });
  for (auto& g : getters) BOOST_TEST(mptest::wait_until_sleeping(g->pid()));
  q.put(10);
  q.put(20);
  q.put(30);
  q.close();
  const auto t0 = rd::Clock::now();
  mptest::join_all_ok(getters);
  BOOST_TEST(since(t0) < 3.0);
  BOOST_TEST(c.command({"GET", "sum"}).str() == "60");
  BOOST_TEST(q.closed());
  // From anywhere: puts throw, gets throw once drained.
  CHECK_CHILD([q] { return mptest::child_expect_errc([&] { q.put(1); }, mp::errc::closed); });
  rd::Queue<int> other(redis.url(), "closing", 0, opts());
  expect_error([&] { other.get(); }, mp::errc::closed, {"'closing'", "closed"});
  expect_error([&] { other.put(1); }, mp::errc::closed, {"'closing'"});
  expect_error([&] { other.try_put(1); }, mp::errc::closed, {"'closing'"});
}

BOOST_AUTO_TEST_CASE(blocked_getters_and_putters_do_not_poll, *boost::unit_test::timeout(60)) {
  rd::Queue<int> q(redis.url(), "idle", 1, opts());
  rd::Client c(redis.url());
  mp::Process getter([q] { return q.get() == 5 ? 0 : 1; });
  getter.start();
  BOOST_TEST(mptest::wait_until_sleeping(getter.pid()));
  long long before = client_calls(c);
  std::this_thread::sleep_for(1500ms);  // the quiet time being measured, not synchronisation
  long long during = client_calls(c) - before;
  BOOST_TEST(during <= 6);  // a slice (1 s) or two: BLPOP + take each, not a poll loop
  auto t0 = rd::Clock::now();
  q.put(5);
  BOOST_REQUIRE(getter.join_for(10s));
  BOOST_TEST(getter.exitcode().value() == 0);
  BOOST_TEST(since(t0) < 0.8);  // woken by the put, not by the end of a slice (1 s)
  // A putter blocked on a full queue.
  q.put(1);
  mp::Process putter([q] {
    q.put(2);
    return 0;
  });
  putter.start();
  BOOST_TEST(mptest::wait_until_sleeping(putter.pid()));
  before = client_calls(c);
  std::this_thread::sleep_for(1500ms);
  during = client_calls(c) - before;
  BOOST_TEST(during <= 6);
  t0 = rd::Clock::now();
  BOOST_TEST(q.get() == 1);
  BOOST_REQUIRE(putter.join_for(10s));
  BOOST_TEST(putter.exitcode().value() == 0);
  BOOST_TEST(since(t0) < 0.8);
  BOOST_TEST(q.get() == 2);
}

BOOST_AUTO_TEST_CASE(joinable_task_done_and_join_across_processes, *boost::unit_test::timeout(60)) {
  rd::JoinableQueue<int> q(redis.url(), "jobs", 0, opts());
  expect_error([&] { q.task_done(); }, mp::errc::bad_state, {"'jobs'", "task_done"});
  for (int i = 1; i <= 60; ++i) q.put(i);
  BOOST_TEST(q.unfinished() == 60u);
  BOOST_TEST(!q.join_for(100ms));
  rd::Client c(redis.url());
  auto workers = mptest::start_all(2, [q, c](int) {
    long sum = 0;
    try {
      for (;;) {
        sum += q.get();
        if (!q.task_done()) return 5;
      }
    } catch (const mp::Closed&) {
    }
    c.command({"INCRBY", "sum", std::to_string(sum)});
    return 0;
  });
  // Another process waits for them too.
  mp::Process joiner([q] { return q.join_for(30s) ? 0 : 1; });
  joiner.start();
  BOOST_TEST(q.join_for(30s));
  BOOST_TEST(q.unfinished() == 0u);
  BOOST_REQUIRE(joiner.join_for(30s));
  BOOST_TEST(joiner.exitcode().value() == 0);
  q.close();
  mptest::join_all_ok(workers);
  BOOST_TEST(c.command({"GET", "sum"}).str() == std::to_string(60 * 61 / 2));
  BOOST_TEST(q.join_for(0ms));
}

BOOST_AUTO_TEST_CASE(each_handle_and_each_forked_child_is_its_own_consumer, *boost::unit_test::timeout(30)) {
  rd::Queue<int> q(redis.url(), "own", 0, opts());
  q.put_many({1, 2, 3});
  BOOST_TEST(q.get() == 1);
  BOOST_TEST(q.held() == 1u);
  // The child's get (on the inherited handle) acknowledges nothing of the parent's.
  CHECK_CHILD([q] {
    CHILD_REQUIRE(q.held() == 0u);
    CHILD_REQUIRE(q.get() == 2);
    CHILD_REQUIRE(q.ack() == 1u);
    return 0;
  });
  rd::Queue<int> copy = q;  // a copy is another consumer too
  BOOST_TEST(copy.held() == 0u);
  BOOST_TEST(copy.get() == 3);
  BOOST_TEST(q.ack() == 1u);  // 1 was still this handle's
  BOOST_TEST(copy.ack() == 1u);
  // A JoinableQueue handle destroyed before task_done gives its message back at once.
  rd::JoinableQueue<int> j(redis.url(), "own.j", 0, opts());
  j.put(5);
  CHECK_CHILD([url = redis.url()] {
    rd::JoinableQueue<int> mine(url, "own.j", 0, opts());
    CHILD_REQUIRE(mine.get() == 5);
    return 0;  // destroyed holding 5, not done
  });
  auto d = j.get_delivery_for(2s);  // long before any lease (10 s) could lapse
  BOOST_REQUIRE(d.has_value());
  BOOST_TEST(d->value == 5);
  BOOST_TEST(d->deliveries == 2u);
  BOOST_TEST(j.task_done());
  BOOST_TEST(j.join_for(1s));
}

BOOST_AUTO_TEST_CASE(threads_sharing_a_handle_get_every_item_once, *boost::unit_test::timeout(60)) {
  rd::Queue<int> q(redis.url(), "threads", 0, opts());
  std::vector<int> items(400);
  std::iota(items.begin(), items.end(), 1);
  q.put_many(items);
  std::vector<std::vector<int>> got(4);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&q, &got, t] {
      while (auto v = q.get_for(300ms)) got[static_cast<std::size_t>(t)].push_back(*v);
    });
  }
  for (auto& t : ts) t.join();
  std::vector<int> all;
  for (auto& g : got) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  BOOST_TEST((all == items));
  BOOST_TEST(q.size() == 0u);
  BOOST_TEST(q.held() == 0u);
}

BOOST_AUTO_TEST_CASE(corrupt_entries_are_errors_and_dead_letters, *boost::unit_test::timeout(30)) {
  rd::Queue<int> q(redis.url(), "c", 0, opts());
  rd::Client c(redis.url());
  q.put(1);
  c.command({"LPUSH", "mp:queue:c:items", "garbage"});                        // not an entry
  c.command({"LPUSH", "mp:queue:c:items", std::string("0:99:abc")});          // not an int
  q.put(2);
  BOOST_TEST(q.get() == 1);
  expect_error([&] { q.get(); }, mp::errc::corrupt, {"'c'", "garbage", "mp:queue:c:dead"});
  expect_error([&] { q.get(); }, mp::errc::corrupt, {"'c'", "message 99", "mp:queue:c:dead"});
  BOOST_TEST(q.dead_size() == 2u);
  BOOST_TEST(q.get() == 2);  // usable
  q.put(3);
  BOOST_TEST(q.get() == 3);
  BOOST_TEST(q.size() == 0u);
  BOOST_TEST(c.command({"LLEN", "mp:queue:c:inflight"}).integer() == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(redis_queue_faults, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(a_killed_consumers_messages_come_back_counted, *boost::unit_test::timeout(60)) {
  rd::JoinableQueue<int> q(redis.url(), "k", 0, opts(300ms));
  for (int i = 1; i <= 10; ++i) q.put(i);
  mptest::Gate took;
  mp::Process victim([&took, q] {
    for (int i = 0; i < 4; ++i) q.get();  // 1..4, never marked done
    took.signal();
    std::this_thread::sleep_for(60s);  // until killed
    return 0;
  });
  victim.start();
  BOOST_REQUIRE(took.wait(10s));
  victim.kill();
  BOOST_REQUIRE(victim.join_for(10s));
  std::map<int, unsigned> deliveries;
  long sum = 0;
  while (deliveries.size() < 10) {
    auto d = q.get_delivery_for(5s);
    BOOST_REQUIRE(d.has_value());
    BOOST_TEST(deliveries.count(d->value) == 0u);
    deliveries[d->value] = d->deliveries;
    sum += d->value;
    BOOST_TEST(q.task_done());
  }
  BOOST_TEST(sum == 55);
  for (int i = 1; i <= 10; ++i) BOOST_TEST(deliveries[i] == (i <= 4 ? 2u : 1u), "item " << i);
  BOOST_TEST(q.join_for(1s));
  BOOST_TEST(q.unfinished() == 0u);
  // A plain Queue: the message taken by a consumer killed before its next get comes back too.
  rd::Queue<int> p(redis.url(), "kp", 0, opts(300ms));
  p.put(7);
  p.put(8);
  mptest::Gate took2;
  mp::Process victim2([&took2, p] {
    p.get();
    took2.signal();
    std::this_thread::sleep_for(60s);
    return 0;
  });
  victim2.start();
  BOOST_REQUIRE(took2.wait(10s));
  victim2.kill();
  BOOST_REQUIRE(victim2.join_for(10s));
  auto a = p.get_delivery_for(5s);  // 8 first: 7 is leased to the victim until its lease lapses
  auto b = p.get_delivery_for(5s);
  BOOST_REQUIRE((a && b));
  BOOST_TEST(a->value == 8);
  BOOST_TEST(a->deliveries == 1u);
  BOOST_TEST(b->value == 7);
  BOOST_TEST(b->deliveries == 2u);
  BOOST_TEST(p.empty());
}

BOOST_AUTO_TEST_CASE(a_consumer_stopped_beyond_its_lease_is_redelivered, *boost::unit_test::timeout(60)) {
  rd::Queue<int> q(redis.url(), "s", 0, opts(300ms));
  q.put(42);
  mptest::Gate took, resumed;
  mp::Process stopped([&took, &resumed, q] {
    if (q.get() != 42) return 1;
    took.signal();
    if (!resumed.wait(30s)) return 2;
    return q.ack() == 0 ? 0 : 3;  // its lease lapsed: no longer its own
  });
  stopped.start();
  BOOST_REQUIRE(took.wait(10s));
  ::kill(stopped.pid(), SIGSTOP);
  auto d = q.get_delivery_for(5s);  // at-least-once: delivered again
  ::kill(stopped.pid(), SIGCONT);
  resumed.signal();
  BOOST_REQUIRE(d.has_value());
  BOOST_TEST(d->value == 42);
  BOOST_TEST(d->deliveries == 2u);
  BOOST_REQUIRE(stopped.join_for(20s));
  BOOST_TEST(stopped.exitcode().value() == 0);
  BOOST_TEST(q.ack() == 1u);
}

BOOST_AUTO_TEST_CASE(a_slow_live_consumer_keeps_its_message, *boost::unit_test::timeout(60)) {
  rd::JoinableQueue<int> q(redis.url(), "slow", 0, opts(300ms));
  q.put(9);
  mptest::Gate took;
  mp::Process slow([&took, q] {
    if (q.get() != 9) return 1;
    took.signal();
    std::this_thread::sleep_for(1s);  // the work: 3 leases long
    return q.task_done() ? 0 : 2;
  });
  slow.start();
  BOOST_REQUIRE(took.wait(10s));
  BOOST_TEST(!q.get_for(1200ms).has_value());  // never redelivered while it lives
  BOOST_REQUIRE(slow.join_for(20s));
  BOOST_TEST(slow.exitcode().value() == 0);
  BOOST_TEST(q.join_for(1s));
  BOOST_TEST(!q.try_get().has_value());
}

BOOST_AUTO_TEST_CASE(a_closed_queue_drains_what_a_dead_consumer_held, *boost::unit_test::timeout(60)) {
  rd::JoinableQueue<int> q(redis.url(), "held", 0, opts(300ms));
  q.put(1);
  q.put(2);
  mptest::Gate took, go;
  mp::Process holder([&took, &go, q] {
    if (q.get() != 1 || q.get() != 2) return 1;
    took.signal();
    if (!go.wait(30s)) return 2;
    return q.task_done() ? 0 : 3;  // 1 is done; it exits holding 2 (no destructor runs)
  });
  holder.start();
  BOOST_REQUIRE(took.wait(10s));
  q.close();
  BOOST_TEST(!q.try_get().has_value());  // not Closed: another consumer holds messages
  go.signal();
  BOOST_REQUIRE(holder.join_for(20s));
  BOOST_TEST(holder.exitcode().value() == 0);
  auto d = q.get_delivery_for(5s);  // 2 comes back after the holder's lease
  BOOST_REQUIRE(d.has_value());
  BOOST_TEST(d->value == 2);
  BOOST_TEST(d->deliveries == 2u);
  BOOST_TEST(q.task_done());
  expect_error([&] { q.get(); }, mp::errc::closed, {"'held'"});
  BOOST_TEST(q.join_for(1s));
}

BOOST_AUTO_TEST_CASE(a_poison_message_goes_to_the_dead_letters, *boost::unit_test::timeout(60)) {
  rd::JoinableQueue<int> q(redis.url(), "poison", 0, opts(200ms, 2));
  rd::Client c(redis.url());
  q.put(13);
  for (int round = 1; round <= 2; ++round) {
    mptest::Gate took;
    mp::Process victim([&took, q, round] {
      auto d = q.get_delivery_for(10s);
      if (!d || d->deliveries != static_cast<unsigned>(round)) return 1;
      took.signal();
      std::this_thread::sleep_for(60s);
      return 0;
    });
    victim.start();
    BOOST_REQUIRE(took.wait(15s));
    victim.kill();
    BOOST_REQUIRE(victim.join_for(10s));
  }
  BOOST_TEST(!q.get_for(1s).has_value());  // not a third time
  BOOST_TEST(q.dead_size() == 1u);
  const std::string dead = c.command({"LINDEX", "mp:queue:poison:dead", "0"}).str();
  BOOST_TEST(dead.substr(0, 2) == "2:");  // delivered twice
  BOOST_TEST(q.join_for(1s));             // a dead message counts as done
}

BOOST_AUTO_TEST_CASE(a_server_restart_loses_nothing_acknowledged, *boost::unit_test::timeout(120)) {
  mptest::RedisServer srv(mptest::RedisServer::Config{true, ""});
  constexpr int kProducers = 2, kEach = 1500;
  rd::Queue<long> q(srv.url(), "r", 50, opts(1s));
  rd::Client c(srv.url());
  auto consumers = mptest::start_all(2, [q, c](int i) {
    std::vector<long> got;
    try {
      for (;;) got.push_back(q.get());
    } catch (const mp::Closed&) {
    }
    report(c, "got" + std::to_string(i), got);
    return 0;
  });
  auto producers = mptest::start_all(kProducers, [q](int p) {
    for (long i = 0; i < kEach; ++i) q.put(p * kEach + i);  // each returned: acknowledged
    return 0;
  });
  BOOST_REQUIRE(mptest::eventually([&] {
    auto r = c.command({"HGET", "mp:queue:r:state", "seq"});
    return !r.is_nil() && std::stol(r.str()) >= 300;
  }));
  srv.kill();
  srv.start();
  mptest::join_all_ok(producers);
  q.close();
  mptest::join_all_ok(consumers);
  std::vector<long> all;
  for (int i = 0; i < 2; ++i) {
    auto part = reported(c, "got" + std::to_string(i));
    all.insert(all.end(), part.begin(), part.end());
  }
  std::set<long> seen(all.begin(), all.end());
  BOOST_REQUIRE(seen.size() == static_cast<std::size_t>(kProducers * kEach));  // none lost
  BOOST_TEST(*seen.begin() == 0);
  BOOST_TEST(*seen.rbegin() == kProducers * kEach - 1);
  BOOST_TEST_MESSAGE("delivered twice across the restart: " << all.size() - seen.size());
  BOOST_TEST(all.size() - seen.size() <= 10u);
}

BOOST_AUTO_TEST_CASE(a_stopped_server_honours_every_deadline, *boost::unit_test::timeout(60)) {
  rd::Queue<int> q(redis.url(), "p", 2, opts());
  q.put(1);
  redis.pause();
  auto t0 = rd::Clock::now();
  BOOST_TEST(!q.get_for(200ms).has_value());
  BOOST_TEST(since(t0) >= 0.19);
  BOOST_TEST(since(t0) < 1.0);
  t0 = rd::Clock::now();
  BOOST_TEST(!q.put_for(2, 200ms));
  BOOST_TEST(since(t0) < 1.0);
  redis.resume();
  // What the stopped server read late did not run: the message is still there, delivered once,
  // and the put that returned false did not happen.
  auto d = q.get_delivery_for(2s);
  BOOST_REQUIRE(d.has_value());
  BOOST_TEST(d->value == 1);
  BOOST_TEST(d->deliveries == 1u);
  BOOST_TEST(q.size() == 0u);
  BOOST_TEST(!q.get_for(300ms).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
