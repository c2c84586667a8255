// Pool: ordering and chunking, starmap/imap/imap_unordered, async results and callbacks, remote
// errors, workers killed mid-call, terminate with a backlog, maxtasksperchild, initializers.
#include "support/support.hpp"

#include <atomic>
#include <csignal>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <unistd.h>

using namespace mptest;

namespace {

long square(long x) { return x * x; }
int add(int a, int b) { return a + b; }
std::string shout(std::string s, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += s;
  return out + "!";
}
long fail_on_three(long x) {
  if (x == 3) throw std::invalid_argument("three is not welcome");
  return x;
}
int my_pid(int) { return static_cast<int>(::getpid()); }
long kill_myself_on(long x) {
  if (x == 7) ::kill(::getpid(), SIGKILL);
  return x;
}
// Blocks until the named event is set (a task the test controls without sleeping).
bool wait_for_event(std::string name) {
  mp::Event e(mp::open_only, name);
  return e.wait_for(std::chrono::seconds(60));
}
// Sets `started`, then waits for `name` (the test knows the task is running, not just queued).
bool signal_then_wait(std::string started, std::string name) {
  mp::Event(mp::open_only, started).set();
  return wait_for_event(std::move(name));
}
long g_worker_setting = 0;
long worker_setting(long) { return g_worker_setting; }
void nothing() {}

std::vector<long> range(long n) {
  std::vector<long> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0L);
  return v;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(pool, Clean)

BOOST_AUTO_TEST_CASE(map_keeps_the_order_for_any_chunk_size, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  BOOST_TEST(pool.size() == 2u);
  const auto in = range(10000);
  std::vector<long> expected;
  for (long x : in) expected.push_back(x * x);
  for (std::size_t chunk : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{999},
                            std::size_t{20000}}) {
    BOOST_TEST((pool.map(square, in, chunk) == expected), "chunksize " << chunk);
  }
  BOOST_TEST(pool.map(square, std::vector<long>{}).empty());  // at once
  BOOST_TEST(pool.map([](long x) { return x + 1; }, std::vector<long>{1, 2}).back() == 3);
  std::vector<std::string> words{"a", "bb", "ccc"};
  BOOST_TEST((pool.map([](std::string s) { return s.size(); }, words) ==
              std::vector<std::size_t>{1, 2, 3}));
}

BOOST_AUTO_TEST_CASE(default_chunksize_follows_python, *boost::unit_test::timeout(60)) {
  BOOST_TEST(mp::detail::default_chunksize(100000, 2) == 12500u);
  BOOST_TEST(mp::detail::default_chunksize(100001, 2) == 12501u);
  BOOST_TEST(mp::detail::default_chunksize(3, 4) == 1u);
  BOOST_TEST(mp::detail::default_chunksize(0, 4) == 1u);
}

BOOST_AUTO_TEST_CASE(starmap_apply_and_apply_async, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  BOOST_TEST((pool.starmap(add, pairs) == std::vector<int>{3, 7, 11}));
  const std::vector<std::tuple<std::string, int>> tuples{{"ab", 2}, {"c", 3}};
  BOOST_TEST((pool.starmap(shout, tuples) == std::vector<std::string>{"abab!", "ccc!"}));
  BOOST_TEST(pool.apply(add, 20, 22) == 42);
  BOOST_TEST(pool.apply(shout, std::string("x"), 3) == "xxx!");
  auto r = pool.apply_async(square, 12L);
  BOOST_TEST(r.get() == 144);
  BOOST_TEST(r.ready());
  BOOST_TEST(r.successful());
  pool.apply(nothing);  // void works too
  auto v = pool.apply_async(nothing);
  v.get();
  BOOST_TEST(v.successful());
}

BOOST_AUTO_TEST_CASE(imap_in_order_and_imap_unordered_in_any, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const auto in = range(200);
  std::vector<long> got;
  for (long v : pool.imap(square, in)) got.push_back(v);
  std::vector<long> expected;
  for (long x : in) expected.push_back(x * x);
  BOOST_TEST((got == expected));
  std::multiset<long> unordered;
  auto stream = pool.imap_unordered(square, in, 7);
  BOOST_TEST(stream.total() == 200u);
  for (long v : stream) unordered.insert(v);
  BOOST_TEST((unordered == std::multiset<long>(expected.begin(), expected.end())));
  BOOST_CHECK_THROW(stream.begin(), mp::Error);  // single pass
  std::size_t n = 0;
  for (long v : pool.imap(square, std::vector<long>{})) n += static_cast<std::size_t>(v) + 1;
  BOOST_TEST(n == 0u);
}

BOOST_AUTO_TEST_CASE(async_result_waits_times_out_and_reports, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const std::string name = unique_name("go");
  mp::Event go(mp::create_only, name);
  auto r = pool.apply_async(wait_for_event, name);
  BOOST_TEST(!r.ready());
  BOOST_CHECK_THROW(r.successful(), mp::Error);  // not ready yet
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!r.wait_for(50ms));
  BOOST_TEST(seconds_since(start) >= 0.049);
  go.set();
  BOOST_TEST(r.wait_for(30s));
  BOOST_TEST(r.get());
  BOOST_TEST(r.successful());
}

BOOST_AUTO_TEST_CASE(callbacks_run_in_the_parent_before_the_result_is_ready, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const pid_t me = ::getpid();
  std::atomic<long> seen{0};
  std::atomic<pid_t> where{0};
  auto r = pool.apply_async(square, 9L);
  r.on_success([&](const long& v) {
    seen = v;
    where = ::getpid();
  });
  BOOST_TEST(r.get() == 81);
  BOOST_TEST(seen.load() == 81);  // ran before get() returned (or at registration, if later)
  BOOST_TEST(where.load() == me);
  std::string error;
  auto bad = pool.map_async(fail_on_three, range(5), 1);
  bad.on_error([&](const mp::Error& e) { error = e.what(); });
  bad.wait();
  BOOST_TEST(!bad.successful());
  BOOST_TEST(error.find("three is not welcome") != std::string::npos, error);
  int late = 0;
  r.on_success([&](const long&) { ++late; });  // already done: runs at once, here
  BOOST_TEST(late == 1);
}

BOOST_AUTO_TEST_CASE(progress_is_reported_chunk_by_chunk, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  const auto out = pool.map(square, range(1000), 100,
                            [&](std::size_t done, std::size_t total) { calls.emplace_back(done, total); });
  BOOST_TEST(out.size() == 1000u);
  BOOST_REQUIRE(calls.size() == 10u);
  for (std::size_t i = 0; i < calls.size(); ++i) {
    BOOST_TEST(calls[i].first == i + 1);
    BOOST_TEST(calls[i].second == 10u);
  }
}

BOOST_AUTO_TEST_CASE(task_exceptions_become_remote_errors_and_the_worker_survives, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const auto before = pool.worker_pids();
  try {
    pool.map(fail_on_three, range(10), 1);
    BOOST_FAIL("no error");
  } catch (const mp::RemoteError& e) {
    BOOST_TEST(e.type() == "std::invalid_argument");
    BOOST_TEST(e.remote_message() == "three is not welcome");
    BOOST_TEST(std::string(e.what()).find("std::invalid_argument: three is not welcome") !=
               std::string::npos);
    BOOST_TEST((e.code() == mp::errc::remote_error));
  }
  BOOST_TEST(pool.apply(square, 5L) == 25);
  BOOST_TEST((pool.worker_pids() == before));  // nobody died
}

BOOST_AUTO_TEST_CASE(worker_killed_mid_map_fails_that_call_fast_and_is_replaced, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  const auto before = pool.worker_pids();
  const auto start = std::chrono::steady_clock::now();
  try {
    pool.map(kill_myself_on, range(20), 1);
    BOOST_FAIL("no error");
  } catch (const mp::BrokenPool& e) {
    BOOST_TEST(std::string(e.what()).find("signal 9") != std::string::npos, e.what());
  }
  const double took = seconds_since(start);
  BOOST_TEST_MESSAGE("BrokenPool after " << took << " s");
  BOOST_TEST(took < 5.0);  // generous: it is a fraction of a second
  // The pool carries on with a replacement worker.
  BOOST_TEST((pool.map(square, range(100)) == pool.map(square, range(100))));
  BOOST_TEST(pool.apply(square, 4L) == 16);
  const auto after = pool.worker_pids();
  BOOST_TEST(after.size() == 2u);
  BOOST_TEST((after != before));
}

BOOST_AUTO_TEST_CASE(worker_killed_from_outside_while_busy, *boost::unit_test::timeout(120)) {
  mp::Pool pool(1);
  const std::string name = unique_name("never");
  mp::Event never(mp::create_only, name);
  const std::string started_name = unique_name("started");
  mp::Event started(mp::create_only, started_name);
  auto stuck = pool.apply_async(signal_then_wait, started_name, name);
  auto queued = pool.apply_async(square, 6L);  // waits behind it
  BOOST_REQUIRE(pool.worker_pids().size() == 1u);
  BOOST_REQUIRE(started.wait_for(std::chrono::seconds(30)));  // the task is running
  ::kill(pool.worker_pids()[0], SIGKILL);
  BOOST_CHECK_THROW(stuck.get(), mp::BrokenPool);
  BOOST_TEST(queued.get() == 36);  // not started: given to the replacement
}

BOOST_AUTO_TEST_CASE(terminate_returns_promptly_with_a_long_backlog, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const std::string name = unique_name("blocked");
  mp::Event never(mp::create_only, name);
  std::vector<std::string> names(5000, name);
  auto backlog = pool.map_async(wait_for_event, names, 1);
  BOOST_REQUIRE(pool.worker_pids().size() == 2u);
  const auto start = std::chrono::steady_clock::now();
  pool.terminate();
  pool.join();
  BOOST_TEST(seconds_since(start) < 5.0);
  try {
    backlog.get();
    BOOST_FAIL("a terminated call returned");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
  }
  BOOST_CHECK_THROW(pool.apply(square, 1L), mp::Error);
}

BOOST_AUTO_TEST_CASE(maxtasksperchild_replaces_workers, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2, {}, 3);
  std::set<int> pids;
  for (int v : pool.map(my_pid, std::vector<int>(30, 0), 1)) pids.insert(v);
  BOOST_TEST(pids.size() >= 10u);  // 30 tasks, at most 3 per worker
  BOOST_TEST(pool.apply(square, 3L) == 9);
}

BOOST_AUTO_TEST_CASE(initializer_runs_in_each_worker, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2, [] { g_worker_setting = 1234; });
  for (long v : pool.map(worker_setting, range(20), 1)) BOOST_TEST(v == 1234);
  BOOST_TEST(g_worker_setting == 0);  // not in this process
}

BOOST_AUTO_TEST_CASE(failing_initializer_breaks_the_pool_instead_of_hanging, *boost::unit_test::timeout(120)) {
  mp::Pool pool(1, [] { throw std::runtime_error("cannot set up"); });
  try {
    pool.apply(square, 2L);
    BOOST_FAIL("a broken pool answered");
  } catch (const mp::BrokenPool& e) {
    BOOST_TEST(std::string(e.what()).find("initializer") != std::string::npos, e.what());
  }
  BOOST_CHECK_THROW(pool.apply(square, 2L), mp::BrokenPool);
}

BOOST_AUTO_TEST_CASE(close_and_join, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  auto r = pool.map_async(square, range(1000));
  BOOST_CHECK_THROW(pool.join(), mp::Error);  // before close or terminate
  pool.close();
  BOOST_CHECK_THROW(pool.apply(square, 1L), mp::Error);
  pool.join();  // the queued work finished first
  BOOST_TEST(r.get().size() == 1000u);
  BOOST_TEST(pool.worker_pids().empty());
  BOOST_CHECK_THROW(mp::Pool(0), mp::Error);
  BOOST_CHECK_THROW(mp::Pool(-2), mp::Error);
}

BOOST_AUTO_TEST_CASE(large_arguments_and_results_stream_through, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  std::vector<std::string> big(8, std::string(3 << 20, 'x'));  // larger than a worker's ring
  const auto sizes = pool.map([](std::string s) { return s.size() + 1; }, big, 1);
  for (std::size_t n : sizes) BOOST_TEST(n == (3u << 20) + 1);
  const auto echoed = pool.apply([](std::string s) { return s + s; }, std::string(2 << 20, 'y'));
  BOOST_TEST(echoed.size() == (4u << 20));
}

BOOST_AUTO_TEST_CASE(destroying_a_busy_pool_reaps_everything, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("stuck");
  mp::Event never(mp::create_only, name);
  std::optional<mp::AsyncResult<bool>> r;
  {
    mp::Pool pool(3);
    r.emplace(pool.apply_async(wait_for_event, name));
  }  // terminates and joins (the fixture checks for zombies and /dev/shm leftovers)
  BOOST_TEST(r->ready());
  BOOST_CHECK_THROW(r->get(), mp::Error);  // the call was cut short, not left hanging
}

BOOST_AUTO_TEST_SUITE_END()
