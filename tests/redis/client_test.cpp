// multiproc::redis::Client: urls, commands, scripts, pipelines, and what happens when the server
// restarts, stops answering (SIGSTOP) or is gone — across threads and forked processes.
#include <multiproc/process.hpp>
#include <multiproc/redis.hpp>

#include <boost/test/unit_test.hpp>

#include "redis_server.hpp"

#include <atomic>
#include <cstdlib>
#include <set>
#include <thread>

namespace mp = multiproc;
namespace rd = multiproc::redis;
using namespace std::chrono_literals;
using mptest::expect_error;

namespace {
rd::Options quick() { return mptest::redis_options(500ms, 1500ms); }
}  // namespace

BOOST_FIXTURE_TEST_SUITE(redis_client, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(urls_parse_and_bad_ones_are_errors_naming_them, *boost::unit_test::timeout(30)) {
  auto u = rd::Url::parse("redis://:pw@example.org:6380/3");
  BOOST_TEST(u.host == "example.org");
  BOOST_TEST(u.port == 6380);
  BOOST_TEST(u.password == "pw");
  BOOST_TEST(u.user.empty());
  BOOST_TEST(u.db == 3);
  BOOST_TEST(u.describe() == "example.org:6380/3");
  auto v = rd::Url::parse("redis://alice:s3@h");
  BOOST_TEST(v.user == "alice");
  BOOST_TEST(v.password == "s3");
  BOOST_TEST(v.port == 6379);
  auto w = rd::Url::parse("10.1.2.3:7000");
  BOOST_TEST(w.host == "10.1.2.3");
  BOOST_TEST(w.port == 7000);
  auto x = rd::Url::parse("redis://[::1]:7001/1");
  BOOST_TEST(x.host == "::1");
  BOOST_TEST(x.describe() == "[::1]:7001/1");
  expect_error([] { rd::Url::parse("redis://h:99999"); }, mp::errc::invalid_argument,
               {"redis://h:99999", "port"});
  expect_error([] { rd::Url::parse("http://h:1"); }, mp::errc::invalid_argument, {"redis://"});
  expect_error([] { rd::Url::parse("redis://h/x"); }, mp::errc::invalid_argument, {"database"});
  // The password never appears in a message.
  try {
    rd::Url::parse("redis://:topsecret@h:0");
    BOOST_FAIL("no error");
  } catch (const mp::Error& e) {
    BOOST_TEST(std::string(e.what()).find("topsecret") == std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(commands_pipelines_and_binary_values, *boost::unit_test::timeout(30)) {
  rd::Client c(redis.url());
  std::string binary("a\0b\r\n\xff", 6);
  BOOST_TEST(c.command({"SET", "k", binary}).str() == "OK");
  BOOST_TEST(c.command({"GET", "k"}).str() == binary);
  BOOST_TEST(c.command({"GET", "missing"}).is_nil());
  auto r = c.pipeline({{"INCR", "n"}, {"INCRBY", "n", "41"}, {"LPUSH", "l", "x", "y"},
                       {"LRANGE", "l", "0", "-1"}});
  BOOST_REQUIRE(r.size() == 4u);
  BOOST_TEST(r[1].integer() == 42);
  BOOST_TEST(r[3].size() == 2u);
  BOOST_TEST(r[3][0].str() == "y");
  // An error reply names the server and the command, and leaves the connection usable.
  expect_error([&] { c.command({"INCR", "k"}); }, mp::errc::server_error,
               {"redis 127.0.0.1:", "INCR", "not an integer"});
  expect_error([&] { c.pipeline({{"PING"}, {"INCR", "k"}, {"PING"}}); }, mp::errc::server_error,
               {"command 2 of 3", "INCR"});
  BOOST_TEST(c.command({"PING"}).str() == "PONG");
  // A reply read as the wrong type is an error too.
  expect_error([&] { c.command({"PING"}).integer(); }, mp::errc::server_error, {"integer"});
}

BOOST_AUTO_TEST_CASE(scripts_load_once_and_again_after_a_flush, *boost::unit_test::timeout(30)) {
  static const rd::Script add("return redis.call('INCRBY', KEYS[1], ARGV[1])", "add");
  BOOST_TEST(add.sha1().size() == 40u);
  rd::Client c(redis.url());
  BOOST_TEST(c.eval(add, {"x"}, {"5"}).integer() == 5);
  // The server's own SHA1 matches ours.
  BOOST_TEST(c.command({"SCRIPT", "LOAD", add.source()}).str() == add.sha1());
  c.command({"SCRIPT", "FLUSH"});
  BOOST_TEST(c.eval(add, {"x"}, {"2"}).integer() == 7);  // NOSCRIPT -> load -> run, once
  BOOST_TEST(c.eval_once(add, {"x"}, {"1"}).integer() == 8);
  static const rd::Script bad("return redis.call('NOPE')", "bad");
  expect_error([&] { c.eval(bad, {}, {}); }, mp::errc::server_error, {"EVALSHA bad"});
}

BOOST_AUTO_TEST_CASE(threads_and_forked_children_share_a_client, *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  c.command({"PING"});  // the parent has a connection before the fork
  constexpr int kThreads = 4, kProcs = 3, kEach = 300;
  std::vector<std::thread> ts;
  auto start_threads = [&] {
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([c] {
        for (int i = 0; i < kEach; ++i) c.command({"INCR", "total"});
      });
    }
  };
  // The children are forked while the threads are sending (their connections are not the
  // children's) — except under ASan, whose allocator (clang 14) deadlocks a child forked while
  // another thread allocates: there the threads start after the forks.
  if (!mptest::kAddressSanitizer) start_threads();
  auto ps = mptest::start_all(kProcs, [c](int) {
    for (int i = 0; i < kEach; ++i) c.command({"INCR", "total"});
    return 0;
  });
  if (mptest::kAddressSanitizer) start_threads();
  for (auto& t : ts) t.join();
  mptest::join_all_ok(ps);
  BOOST_TEST(c.command({"GET", "total"}).str() == std::to_string((kThreads + kProcs) * kEach));
}

BOOST_AUTO_TEST_CASE(a_restarted_server_is_reconnected_to, *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url(), quick());
  BOOST_TEST(c.command({"SET", "a", "1"}).str() == "OK");
  redis.kill();
  // Down: a call retries for reconnect_for, then says which server and command failed.
  auto t0 = rd::Clock::now();
  expect_error([&] { c.command({"GET", "a"}); }, mp::errc::disconnected,
               {"redis 127.0.0.1:", "GET", "retried for 1500 ms"});
  BOOST_TEST(mptest::seconds_since(t0) >= 1.0);
  BOOST_TEST(mptest::seconds_since(t0) < 10.0);
  redis.start();
  BOOST_TEST(c.command({"PING"}).str() == "PONG");
  // Restarted while another thread sends commands: the retry loop carries them over the gap.
  // (The restart runs on this thread: the server lives as long as the thread that started it.)
  std::atomic<int> done{0};
  std::thread sender([&] {
    for (int i = 0; i < 200; ++i, ++done) c.command({"INCR", "b"});
  });
  BOOST_TEST(mptest::eventually([&] { return done.load() >= 10; }));
  redis.kill();
  redis.start();
  sender.join();
  BOOST_TEST(done.load() == 200);
  BOOST_TEST(c.command({"EXISTS", "b"}).integer() == 1);
}

BOOST_AUTO_TEST_CASE(a_stopped_server_honours_every_deadline, *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url(), quick());
  c.command({"PING"});
  redis.pause();
  // The caller's deadline: an outcome, returned on time.
  auto t0 = rd::Clock::now();
  auto r = c.call({"GET", "a"}, rd::Clock::now() + 200ms);
  BOOST_TEST(!r.has_value());
  BOOST_TEST(mptest::seconds_since(t0) >= 0.19);
  BOOST_TEST(mptest::seconds_since(t0) < 1.5);
  // A blocking command with its own deadline.
  t0 = rd::Clock::now();
  auto b = c.call({"BLPOP", "nothing", "0.3"}, rd::Clock::now() + 300ms, 300ms);
  BOOST_TEST(!b.has_value());
  BOOST_TEST(mptest::seconds_since(t0) < 2.0);
  // No deadline: command_timeout per try, reconnect_for in all, then an error.
  t0 = rd::Clock::now();
  expect_error([&] { c.command({"GET", "a"}); }, mp::errc::disconnected, {"GET"});
  BOOST_TEST(mptest::seconds_since(t0) < 6.0);
  // command_once never repeats: it reports the unknown outcome at once.
  t0 = rd::Clock::now();
  expect_error([&] { c.command_once({"INCR", "n"}); }, mp::errc::disconnected, {"outcome unknown"});
  BOOST_TEST(mptest::seconds_since(t0) < 2.0);
  redis.resume();
  BOOST_TEST(c.command({"PING"}).str() == "PONG");
}

BOOST_AUTO_TEST_CASE(server_time_is_the_servers, *boost::unit_test::timeout(30)) {
  rd::Client c(redis.url());
  auto ms = c.server_time_ms();
  auto mine = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  BOOST_TEST(std::llabs(ms - mine) < 5000);
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(rd::unique_id());
  BOOST_TEST(ids.size() == 1000u);
  BOOST_TEST(rd::key("mp:q", {"jobs", "items"}) == "mp:q:jobs:items");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(redis_client_auth)
BOOST_AUTO_TEST_CASE(passwords_are_used_and_a_wrong_one_is_reported, *boost::unit_test::timeout(30)) {
  mptest::RedisServer server(mptest::RedisServer::Config{false, "hunter2"});
  rd::Client good(server.url());
  BOOST_TEST(good.command({"PING"}).str() == "PONG");
  rd::Client bad("redis://:wrong@127.0.0.1:" + std::to_string(server.port()));
  expect_error([&] { bad.command({"PING"}); }, mp::errc::server_error, {"AUTH"});
  rd::Client none("redis://127.0.0.1:" + std::to_string(server.port()));
  expect_error([&] { none.command({"PING"}); }, mp::errc::server_error, {"NOAUTH"});
  // db selection: separate keyspaces.
  rd::Client db1("redis://:hunter2@127.0.0.1:" + std::to_string(server.port()) + "/1");
  good.command({"SET", "where", "db0"});
  BOOST_TEST(db1.command({"GET", "where"}).is_nil());
}
BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(redis_client_meta, mptest::RedisClean)
BOOST_AUTO_TEST_CASE(meta_is_recorded_once_and_checked_after, *boost::unit_test::timeout(30)) {
  rd::Client c(redis.url());
  rd::ensure_meta(c, "mp:q:jobs:meta", "redis::Queue<int> 'jobs'", {{"type", "i"}, {"capacity", "10"}});
  rd::ensure_meta(c, "mp:q:jobs:meta", "redis::Queue<int> 'jobs'", {{"type", "i"}, {"capacity", "10"}});
  expect_error(
      [&] { rd::ensure_meta(c, "mp:q:jobs:meta", "redis::Queue<long> 'jobs'", {{"type", "l"}}); },
      mp::errc::type_mismatch, {"redis::Queue<long> 'jobs'", "type 'i'", "type 'l'"});
  BOOST_TEST(rd::from_bytes<std::string>(rd::to_bytes(std::string("x\0y", 3))) == std::string("x\0y", 3));
  expect_error([] { rd::from_bytes<int>("abc"); }, mp::errc::corrupt, {});
}
BOOST_AUTO_TEST_SUITE_END()

#include <multiproc/redis/detail/renewal.hpp>

BOOST_FIXTURE_TEST_SUITE(redis_renewal, mptest::Clean)
BOOST_AUTO_TEST_CASE(renewals_run_at_their_period_until_reset, *boost::unit_test::timeout(30)) {
  std::atomic<int> a{0}, b{0};
  rd::detail::Renewal ra(5ms, [&] { return ++a < 1000; });
  {
    rd::detail::Renewal rb(5ms, [&] {
      ++b;
      return true;
    });
    BOOST_TEST(mptest::eventually([&] { return b.load() >= 3; }));
    rb.reset();
    const int after = b.load();
    BOOST_TEST(mptest::eventually([&] { return a.load() >= after + 5; }));  // a runs on...
    BOOST_TEST(b.load() == after);                                           // ...b does not
  }
  // A renewal that returns false ends; one that throws goes on.
  std::atomic<int> once{0}, throws{0};
  rd::detail::Renewal r1(2ms, [&] {
    ++once;
    return false;
  });
  rd::detail::Renewal r2(2ms, [&]() -> bool {
    ++throws;
    throw std::runtime_error("server down");
  });
  BOOST_TEST(mptest::eventually([&] { return throws.load() >= 5; }));
  BOOST_TEST(once.load() == 1);
  // poke: now, not at the period.
  std::atomic<int> slow{0};
  rd::detail::Renewal r3(std::chrono::hours(1), [&] {
    ++slow;
    return true;
  });
  r3.poke();
  BOOST_TEST(mptest::eventually([&] { return slow.load() == 1; }));
  // A forked child does not run its parent's renewals, and runs its own.
  const int rc = mptest::run_child([&] {
    const int before = a.load();
    std::atomic<int> mine{0};
    rd::detail::Renewal rc(2ms, [&] {
      ++mine;
      return true;
    });
    if (!mptest::eventually([&] { return mine.load() >= 3; })) return 1;
    return a.load() == before ? 0 : 2;
  });
  BOOST_TEST(rc == 0);
}
BOOST_AUTO_TEST_SUITE_END()
