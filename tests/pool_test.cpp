// Pool: ordering and chunking, starmap/imap/imap_unordered (lazy, endless and failing inputs),
// async results (get_for) and callbacks (given with the call too), remote errors, workers killed
// idle / mid-call / with a task queued behind, terminate with running calls and a backlog,
// close+join while workers die, maxtasksperchild, initializers, a pool that cannot replace a worker.
#include "support/support.hpp"

#include <atomic>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <sys/resource.h>
#include <thread>
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
// Stores this worker's pid in the named RawValue, sets `started`, then waits for `name`.
bool report_pid_then_wait(std::string pid_name, std::string started, std::string name) {
  mp::RawValue<int>(mp::open_only, pid_name).store(static_cast<int>(::getpid()));
  return signal_then_wait(std::move(started), std::move(name));
}
long exit_quietly(long x) {
  if (x == 2) std::_Exit(0);  // a "clean" exit in the middle of a task
  return x;
}
long g_worker_setting = 0;
long worker_setting(long) { return g_worker_setting; }
void nothing() {}

std::vector<long> range(long n) {
  std::vector<long> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0L);
  return v;
}

// An input-only range 0, 1, 2, ... below `limit` (LONG_MAX: endless in practice) whose items are
// made as they are read; reading item `throw_at` throws. `read` counts the items read.
struct Numbers {
  long limit = LONG_MAX;
  long throw_at = -1;
  std::atomic<long>* read = nullptr;
  struct iterator {
    using iterator_category = std::input_iterator_tag;
    using value_type = long;
    using difference_type = std::ptrdiff_t;
    using pointer = const long*;
    using reference = long;
    long i;
    const Numbers* n;
    long operator*() const {
      if (i == n->throw_at) throw std::runtime_error("no item " + std::to_string(i));
      if (n->read != nullptr) ++*n->read;
      return i;
    }
    iterator& operator++() {
      ++i;
      return *this;
    }
    bool operator==(const iterator& o) const { return i == o.i; }
    bool operator!=(const iterator& o) const { return i != o.i; }
  };
  iterator begin() const { return {0, this}; }
  iterator end() const { return {limit, this}; }
};

// Resident memory of this process, in bytes.
long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

// 0² + 1² + ... + (n-1)², dividing before multiplying so that it does not overflow.
long sum_of_squares(long n) {
  long a = n - 1, b = n, c = 2 * n - 1;
  (a % 2 == 0 ? a : b) /= 2;
  (a % 3 == 0 ? a : b % 3 == 0 ? b : c) /= 3;
  return a * b * c;
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
  BOOST_TEST(stream.total() == 0u);  // nothing taken yet
  for (long v : stream) unordered.insert(v);
  BOOST_TEST(stream.total() == 200u);  // all taken
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


// ---- every call ends (issue 10, item 1) --------------------------------------------------------

BOOST_AUTO_TEST_CASE(terminate_fails_a_running_call_with_bad_state, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const std::string never_name = unique_name("never");
  mp::Event never(mp::create_only, never_name);
  const std::string started_name = unique_name("started");
  mp::Event started(mp::create_only, started_name);
  auto running = pool.apply_async(signal_then_wait, started_name, never_name);
  auto queued = pool.map_async(wait_for_event, std::vector<std::string>(50, never_name), 1);
  BOOST_REQUIRE(started.wait_for(30s));  // running in a worker, not just queued
  pool.terminate();
  pool.join();
  for (auto* r : {&running}) {
    BOOST_REQUIRE(r->wait_for(10s));  // before the fix: never ready, get() blocked forever
    BOOST_TEST(r->ready());
    BOOST_TEST(!r->successful());
    try {
      r->get();
      BOOST_FAIL("a terminated call returned");
    } catch (const mp::Error& e) {
      BOOST_TEST((e.code() == mp::errc::bad_state));
    }
  }
  BOOST_REQUIRE(queued.wait_for(10s));
  BOOST_CHECK_THROW(queued.get(), mp::Error);
}

BOOST_AUTO_TEST_CASE(terminate_ends_a_stream_with_chunks_in_flight, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const std::string never_name = unique_name("never");
  mp::Event never(mp::create_only, never_name);
  std::vector<std::string> names(100, never_name);
  auto stream = pool.imap(wait_for_event, names);
  pool.terminate();
  pool.join();
  BOOST_CHECK_THROW(for (bool b : stream) BOOST_TEST(!b), mp::Error);
}

BOOST_AUTO_TEST_CASE(close_and_join_while_workers_die_end_every_call, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  auto dying = pool.map_async(kill_myself_on, range(20), 1);
  auto failing = pool.map_async(fail_on_three, range(1000), 1);  // fails fast; join must not wait on it
  auto fine = pool.map_async(square, range(5000), 10);
  pool.close();
  pool.join();
  BOOST_REQUIRE(dying.ready());
  BOOST_CHECK_THROW(dying.get(), mp::BrokenPool);
  BOOST_CHECK_THROW(failing.get(), mp::RemoteError);
  const auto squares = fine.get();
  BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(5000));
  BOOST_TEST(pool.worker_pids().empty());
}

BOOST_AUTO_TEST_CASE(calls_pending_on_a_pool_that_breaks_fail, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2, [] { throw std::runtime_error("cannot set up"); });
  auto a = pool.apply_async(square, 2L);
  std::optional<mp::AsyncResult<std::vector<long>>> b;
  try {
    b.emplace(pool.map_async(square, range(100), 1));
  } catch (const mp::BrokenPool&) {  // already broken: refused at once
  }
  BOOST_REQUIRE(a.wait_for(60s));
  BOOST_CHECK_THROW(a.get(), mp::BrokenPool);
  if (b) {
    BOOST_REQUIRE(b->wait_for(60s));
    BOOST_CHECK_THROW(b->get(), mp::BrokenPool);
  }
  BOOST_CHECK_THROW(pool.imap(square, range(3)), mp::BrokenPool);
}

// A worker that cannot be replaced (here: no address space left for its pipe) makes the manager
// fail; every pending call fails with BrokenPool, later calls too, and nothing hangs. In a child,
// since it lowers the child's address-space limit.
BOOST_AUTO_TEST_CASE(a_worker_that_cannot_be_replaced_breaks_the_pool, *boost::unit_test::timeout(120)) {
  const std::string never_name = unique_name("never");
  mp::Event never(mp::create_only, never_name);
  const std::string started_name = unique_name("started");
  mp::Event started(mp::create_only, started_name);
  const std::string pid_name = unique_name("pid");
  mp::RawValue<int> pid(mp::create_only, pid_name, 0);
  CHECK_CHILD([&] {
    std::setvbuf(stderr, nullptr, _IONBF, 0);
    mp::Pool pool(1);
    auto running = pool.apply_async(report_pid_then_wait, pid_name, started_name, never_name);
    auto queued = pool.apply_async(square, 3L);
    CHILD_REQUIRE(started.wait_for(30s));
    // Address space for what is mapped now, and not for another worker's 2 MiB pipe
    rlimit limit{};
    CHILD_REQUIRE(::getrlimit(RLIMIT_AS, &limit) == 0);
    std::ifstream statm("/proc/self/statm");
    long pages = 0;
    statm >> pages;
    // (1 MiB less than now: the dead worker's 2 MiB pipe is unmapped before its replacement's.)
    limit.rlim_cur = static_cast<rlim_t>(pages * ::sysconf(_SC_PAGESIZE) - (1 << 20));
    CHILD_REQUIRE(::setrlimit(RLIMIT_AS, &limit) == 0);
    ::kill(pid.load(), SIGKILL);
    CHILD_REQUIRE(running.wait_for(30s));
    CHILD_REQUIRE(queued.wait_for(30s));
    try {
      running.get();
      return 10;
    } catch (const mp::BrokenPool&) {
    }
    try {
      queued.get();
      return 11;
    } catch (const mp::BrokenPool&) {
    }
    try {
      pool.apply(square, 1L);
      return 12;
    } catch (const mp::BrokenPool&) {
    }
    return 0;
  });
}

// ---- lazy imap (item 2) ------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(imap_takes_an_endless_input_and_stops_early, *boost::unit_test::timeout(60)) {
  std::atomic<long> read{0};
  Numbers endless;
  endless.read = &read;
  std::vector<long> got;
  {
    mp::Pool pool(2);
    {
      auto stream = pool.imap(square, endless);
      for (long v : stream) {
        got.push_back(v);
        if (got.size() == 100) break;  // take(100)
      }
    }  // destroys the stream with chunks in flight
    BOOST_TEST(pool.apply(square, 9L) == 81);
    // imap_unordered, with chunks of 5
    std::multiset<long> some;
    for (long v : pool.imap_unordered(square, endless, 5)) {
      some.insert(v);
      if (some.size() == 50) break;
    }
    BOOST_TEST(some.size() == 50u);
    for (long v : some) BOOST_TEST(v >= 0);
  }  // the pool goes while nothing is pending
  BOOST_REQUIRE(got.size() == 100u);
  for (long i = 0; i < 100; ++i) BOOST_TEST(got[static_cast<std::size_t>(i)] == i * i);
  BOOST_TEST(read.load() < 100 + 50 + 2 * 4 * 5 + 5 + 2 * 4 + 1);  // read only about what it used
}

BOOST_AUTO_TEST_CASE(imap_keeps_a_bounded_number_of_chunks_in_flight, *boost::unit_test::timeout(60)) {
  for (bool ordered : {true, false}) {
    mp::Pool pool(2);
    std::atomic<long> read{0};
    Numbers endless;
    endless.read = &read;
    const std::size_t chunksize = 3;
    const long bound = 4 * 2 * static_cast<long>(chunksize);  // a few chunks per worker
    long taken = 0, worst = 0, sum = 0;
    auto stream = ordered ? pool.imap(square, endless, chunksize)
                          : pool.imap_unordered(square, endless, chunksize);
    for (long v : stream) {
      sum += v;
      ++taken;
      // Items read but not yet taken: those in flight (a few chunks) and the rest of this chunk.
      worst = std::max(worst, read.load() - taken);
      if (taken == 10000) break;
    }
    BOOST_TEST_MESSAGE("ordered " << ordered << ": at most " << worst << " items read ahead");
    BOOST_TEST(worst <= bound);
    BOOST_TEST(stream.total() >= 10000u);
    if (ordered) BOOST_TEST(sum == sum_of_squares(10000));
  }
}

BOOST_AUTO_TEST_CASE(imap_memory_stays_flat_over_a_long_run, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  Numbers numbers;
  numbers.limit = 2500000;  // 20 MB of input and 20 MB of results, had they been kept
  long warm = 0;
  for (long v : pool.imap(square, Numbers{20000, -1, nullptr}, 1000)) warm += v;
  BOOST_TEST(warm == sum_of_squares(20000));
  const long before = resident_bytes();
  long sum = 0, count = 0;
  for (long v : pool.imap(square, numbers, 1000)) {
    sum += v;
    ++count;
  }
  const long grown = resident_bytes() - before;
  BOOST_TEST_MESSAGE("resident memory grew by " << grown / 1024 << " KiB over 2.5 M items");
  BOOST_TEST(count == 2500000);
  BOOST_TEST(sum == sum_of_squares(2500000));
  BOOST_TEST(grown < 12L * 1024 * 1024);  // generous: eager reading would need 40 MB
}

BOOST_AUTO_TEST_CASE(imap_yields_the_items_before_an_input_error_then_rethrows_it, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{2}, std::size_t{4}}) {
    for (bool ordered : {true, false}) {
      Numbers failing{20, 7, nullptr};
      std::vector<long> got;
      try {
        auto stream = ordered ? pool.imap(square, failing, chunksize)
                              : pool.imap_unordered(square, failing, chunksize);
        for (long v : stream) got.push_back(v);
        BOOST_FAIL("the input's error was lost");
      } catch (const std::runtime_error& e) {
        BOOST_TEST(std::string(e.what()) == "no item 7");
      }
      std::sort(got.begin(), got.end());
      BOOST_TEST((got == std::vector<long>{0, 1, 4, 9, 16, 25, 36}), "chunksize " << chunksize);
    }
  }
  // An input that fails at once: no result, then the error.
  std::size_t n = 0;
  BOOST_CHECK_THROW(for (long v : pool.imap(square, Numbers{20, 0, nullptr})) n += v != 0, std::runtime_error);
  BOOST_TEST(n == 0u);
  // map reads everything first: the error leaves map cleanly and the pool carries on.
  BOOST_CHECK_THROW(pool.map(square, Numbers{1000, 500, nullptr}), std::runtime_error);
  BOOST_TEST((pool.map(square, Numbers{4, -1, nullptr}) == std::vector<long>{0, 1, 4, 9}));
}

BOOST_AUTO_TEST_CASE(imap_delivers_a_task_error_at_its_place, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  std::vector<long> got;
  try {
    for (long v : pool.imap(fail_on_three, range(10))) got.push_back(v);
    BOOST_FAIL("no error");
  } catch (const mp::RemoteError& e) {
    BOOST_TEST(e.remote_message() == "three is not welcome");
  }
  BOOST_TEST((got == std::vector<long>{0, 1, 2}));
  // A worker killed running item 7: the results before it, then BrokenPool.
  got.clear();
  try {
    for (long v : pool.imap(kill_myself_on, range(20))) got.push_back(v);
    BOOST_FAIL("no error");
  } catch (const mp::BrokenPool& e) {
    BOOST_TEST(std::string(e.what()).find("signal 9") != std::string::npos, e.what());
  }
  BOOST_TEST((got == std::vector<long>{0, 1, 2, 3, 4, 5, 6}));
  BOOST_TEST(pool.apply(square, 7L) == 49);
}

BOOST_AUTO_TEST_CASE(imap_over_a_large_input_gives_exact_sums, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  const long n = 300000;
  const auto in = range(n);
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{64}, std::size_t{5000}}) {
    const long items = chunksize == 1 ? 5000 : n;
    long sum = 0, count = 0, next = 0;
    bool in_order = true;
    for (long v : pool.imap(square, Numbers{items, -1, nullptr}, chunksize)) {
      in_order = in_order && v == next * next;
      ++next;
      sum += v;
      ++count;
    }
    BOOST_TEST(in_order);
    BOOST_TEST(count == items);
    BOOST_TEST(sum == sum_of_squares(items));
    std::set<long> seen;
    sum = 0;
    for (long v : pool.imap_unordered(square, in, chunksize)) {
      if (seen.size() < static_cast<std::size_t>(items)) seen.insert(v);
      sum += v;
      if (static_cast<long>(seen.size()) == items && chunksize == 1) break;
    }
    if (chunksize != 1) BOOST_TEST(sum == sum_of_squares(n));
    BOOST_TEST(static_cast<long>(seen.size()) == items);  // squares of distinct naturals are distinct
  }
  // A temporary input is kept by the stream.
  long total = 0;
  for (long v : pool.imap(square, range(1000), 7)) total += v;
  BOOST_TEST(total == sum_of_squares(1000));
}

BOOST_AUTO_TEST_CASE(destroying_a_stream_midway_leaves_the_pool_usable, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const std::string go_name = unique_name("go");
  mp::Event go(mp::create_only, go_name);
  for (int round = 0; round < 3; ++round) {
    auto stream = pool.imap(square, Numbers{}, 2);
    auto it = stream.begin();
    for (int k = 0; k < 10; ++k, ++it) BOOST_TEST(*it == static_cast<long>(k) * k);
  }  // each destroyed with chunks queued and running
  {
    // Destroyed while its tasks are blocked in the workers.
    auto blocked = pool.imap(wait_for_event, std::vector<std::string>(100, go_name));
  }
  go.set();
  const auto squares = pool.map(square, range(10000));
  BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(10000));
  BOOST_TEST(pool.apply(add, 2, 3) == 5);
  long sum = 0;
  for (long v : pool.imap_unordered(square, range(500), 3)) sum += v;
  BOOST_TEST(sum == sum_of_squares(500));
}

BOOST_AUTO_TEST_CASE(a_stream_outlives_close_until_join, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  auto stream = pool.imap(square, Numbers{300, -1, nullptr});
  pool.close();
  BOOST_CHECK_THROW(pool.imap(square, range(3)), mp::Error);  // no new call
  long sum = 0;
  for (long v : stream) sum += v;  // but the open stream reads all its input
  BOOST_TEST(sum == sum_of_squares(300));
  pool.join();
  // join() cuts a stream that is not done: what was submitted arrives, then bad_state.
  mp::Pool other(2);
  auto cut = other.imap(square, Numbers{});
  other.close();
  other.join();
  long taken = 0;
  try {
    for (long v : cut) taken += v >= 0;
    BOOST_FAIL("an endless stream ended");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
  }
  BOOST_TEST(taken <= 4 * 2);
  // The pool destroyed under a stream: the stream ends with an error, no hang.
  std::optional<mp::ResultStream<long>> orphan;
  {
    mp::Pool gone(1);
    orphan.emplace(gone.imap(square, Numbers{}));
  }
  BOOST_CHECK_THROW(for (long v : *orphan) taken += v, mp::Error);
}

BOOST_AUTO_TEST_CASE(a_stream_cut_by_join_hands_out_what_was_submitted_first, *boost::unit_test::timeout(60)) {
  // The stream has chunks in flight when the pool is closed and joined: join() lets them run,
  // and the stream delivers every one of them, in order, before its bad_state. (It once threw
  // at the next refill, dropping the results already computed.)
  mp::Pool pool(2);
  auto stream = pool.imap(square, Numbers{});
  auto it = stream.begin();
  BOOST_REQUIRE(it != stream.end());
  BOOST_TEST(*it == 0);
  pool.close();
  pool.join();
  long next = 1, more = 0;
  try {
    for (++it; it != stream.end(); ++it, ++next, ++more) BOOST_TEST(*it == next * next);
    BOOST_FAIL("an endless stream ended");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
  }
  BOOST_TEST(more >= 1);  // the window held more than the one taken
}

// ---- a dead worker fails exactly its running call (item 3) -------------------------------------

BOOST_AUTO_TEST_CASE(a_worker_killed_idle_with_tasks_in_its_pipe_fails_nothing, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  const pid_t victim = pool.apply(my_pid, 0);  // a worker that is up and idle
  BOOST_REQUIRE(::kill(victim, SIGSTOP) == 0);
  std::vector<mp::AsyncResult<long>> results;
  for (long i = 0; i < 20; ++i) results.push_back(pool.apply_async(square, i));
  // The other worker runs everything but what was sent to the stopped one (at most two tasks).
  BOOST_REQUIRE(eventually([&] {
    std::size_t ready = 0;
    for (auto& r : results) ready += r.ready();
    return ready >= 18;
  }, 30s));
  BOOST_REQUIRE(::kill(victim, SIGKILL) == 0);  // it never started what it was sent
  for (long i = 0; i < 20; ++i) {
    BOOST_REQUIRE(results[static_cast<std::size_t>(i)].wait_for(30s));
    BOOST_TEST(results[static_cast<std::size_t>(i)].get() == i * i);  // before the fix: BrokenPool
  }
  const auto squares = pool.map(square, range(1000), 1);
  BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(1000));
  const auto pids = pool.worker_pids();
  BOOST_TEST(pids.size() == 2u);
  BOOST_TEST((std::find(pids.begin(), pids.end(), victim) == pids.end()));
}

BOOST_AUTO_TEST_CASE(a_worker_killed_busy_fails_only_its_call, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  const std::string pid_name = unique_name("pid");
  mp::RawValue<int> pid(mp::create_only, pid_name, 0);
  const std::string hold_name = unique_name("hold");
  mp::Event hold(mp::create_only, hold_name);
  const std::string started_name = unique_name("started");
  mp::Event started(mp::create_only, started_name);
  const std::string other_pid_name = unique_name("otherpid");
  mp::RawValue<int> other_pid(mp::create_only, other_pid_name, 0);
  const std::string other_hold_name = unique_name("otherhold");
  mp::Event other_hold(mp::create_only, other_hold_name);
  const std::string other_started_name = unique_name("otherstarted");
  mp::Event other_started(mp::create_only, other_started_name);
  auto victim_call = pool.apply_async(report_pid_then_wait, pid_name, started_name, hold_name);
  auto other_call =
      pool.apply_async(report_pid_then_wait, other_pid_name, other_started_name, other_hold_name);
  BOOST_REQUIRE(started.wait_for(30s));
  BOOST_REQUIRE(other_started.wait_for(30s));
  BOOST_REQUIRE(pid.load() != other_pid.load());  // one on each worker
  // Both workers busy: these wait in a worker's pipe or in the pool's queue.
  auto queued = pool.apply_async(square, 6L);
  auto big = pool.map_async(square, range(50000), 100);
  ::kill(pid.load(), SIGKILL);
  try {
    victim_call.get();
    BOOST_FAIL("a killed call returned");
  } catch (const mp::BrokenPool& e) {
    BOOST_TEST(std::string(e.what()).find("signal 9") != std::string::npos, e.what());
  }
  BOOST_TEST(!other_call.ready());  // still running, untouched
  other_hold.set();
  BOOST_TEST(other_call.get());
  BOOST_TEST(queued.get() == 36);  // not started when its worker died, if it was sent there
  const auto squares = big.get();
  BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(50000));
  hold.set();
}

BOOST_AUTO_TEST_CASE(a_task_that_exits_cleanly_fails_its_call, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  try {
    pool.map(exit_quietly, range(10), 1);
    BOOST_FAIL("no error");
  } catch (const mp::BrokenPool& e) {  // before the fix: requeued, and so again and again
    BOOST_TEST(std::string(e.what()).find("exited with code 0") != std::string::npos, e.what());
  }
  BOOST_TEST(pool.apply(square, 5L) == 25);
}

// ---- get_for (item 4) --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(get_for_returns_empty_at_the_deadline_and_the_result_after, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const std::string name = unique_name("go");
  mp::Event go(mp::create_only, name);
  auto r = pool.apply_async(wait_for_event, name);
  const auto start = std::chrono::steady_clock::now();
  const std::optional<bool> early = r.get_for(50ms);  // no exception for the timeout
  BOOST_TEST(!early.has_value());
  BOOST_TEST(seconds_since(start) >= 0.049);
  BOOST_TEST(!r.get_for(0ms).has_value());
  go.set();
  const auto late = r.get_for(30s);
  BOOST_REQUIRE(late.has_value());
  BOOST_TEST(*late);
  BOOST_TEST(r.get_for(0s).value());  // ready: at once
  // void: a bool
  auto v = pool.apply_async(nothing);
  BOOST_TEST(v.get_for(30s));
  // A failed call throws its error, not a timeout.
  auto bad = pool.map_async(fail_on_three, range(5), 1);
  BOOST_CHECK_THROW(bad.get_for(30s), mp::RemoteError);
  const auto squares = pool.map_async(square, range(100)).get_for(30s);
  BOOST_REQUIRE(squares.has_value());
  BOOST_TEST(squares->size() == 100u);
  // A call cut by terminate throws bad_state.
  const std::string never_name = unique_name("never");
  mp::Event never(mp::create_only, never_name);
  auto cut = pool.apply_async(wait_for_event, never_name);
  BOOST_TEST(!cut.get_for(10ms).has_value());
  pool.terminate();
  try {
    (void)cut.get_for(30s);
    BOOST_FAIL("no error");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
  }
}

BOOST_AUTO_TEST_CASE(many_threads_wait_on_one_result_and_stream_at_once, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  const std::string name = unique_name("go");
  mp::Event go(mp::create_only, name);
  auto shared = pool.apply_async(wait_for_event, name);
  std::atomic<int> timed_out{0}, got{0};
  std::vector<std::thread> waiters;
  for (int t = 0; t < 6; ++t) {
    waiters.emplace_back([&] {
      timed_out += !shared.get_for(10ms).has_value();
      got += shared.get_for(60s).value_or(false);
    });
  }
  // Meanwhile, other threads run their own streams and maps on the same pool.
  std::atomic<long> bad{0};
  std::vector<std::thread> users;
  for (int t = 0; t < 3; ++t) {
    users.emplace_back([&, t] {
      long sum = 0;
      for (long v : pool.imap(square, Numbers{3000 + t, -1, nullptr}, 1 + t)) sum += v;
      bad += sum != sum_of_squares(3000 + t);
      long unordered = 0;
      for (long v : pool.imap_unordered(square, range(2000), 7)) unordered += v;
      bad += unordered != sum_of_squares(2000);
      const auto m = pool.map(square, range(1000 * (t + 1)));
      bad += std::accumulate(m.begin(), m.end(), 0L) != sum_of_squares(1000 * (t + 1));
    });
  }
  for (auto& u : users) u.join();
  BOOST_TEST(bad.load() == 0);
  go.set();
  for (auto& w : waiters) w.join();
  BOOST_TEST(timed_out.load() == 6);
  BOOST_TEST(got.load() == 6);
}

// ---- callbacks given with the call (item 5) ----------------------------------------------------

BOOST_AUTO_TEST_CASE(callbacks_given_with_the_call_run_in_the_parent, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const pid_t me = ::getpid();
  std::atomic<long> value{0};
  std::atomic<pid_t> where{0};
  std::atomic<int> errors{0};
  auto r = pool.apply_async(
      square,
      mp::callbacks([&](const long& v) { value = v, where = ::getpid(); },
                    [&](const mp::Error&) { ++errors; }),
      9L);
  BOOST_TEST(r.get() == 81);
  BOOST_TEST(value.load() == 81);  // ran before get() returned
  BOOST_TEST(where.load() == me);
  BOOST_TEST(errors.load() == 0);

  std::string error;
  std::atomic<int> successes{0};
  auto bad = pool.map_async(fail_on_three, mp::callbacks([&](const std::vector<long>&) { ++successes; },
                                                         [&](const mp::Error& e) { error = e.what(); }),
                            range(5), 1);
  BOOST_TEST(bad.wait_for(30s));
  BOOST_TEST(error.find("three is not welcome") != std::string::npos, error);
  BOOST_TEST(successes.load() == 0);

  std::vector<int> sums;
  auto star = pool.starmap_async(add, mp::callbacks([&](const std::vector<int>& v) { sums = v; }),
                                 std::vector<std::pair<int, int>>{{1, 2}, {3, 4}});
  star.wait();
  BOOST_TEST((sums == std::vector<int>{3, 7}));

  // Only an error callback; a void task with a no-argument success callback.
  std::atomic<int> failed{0};
  auto only_error = pool.apply_async(fail_on_three, mp::callbacks(nullptr, [&](const mp::Error& e) {
                                       failed += dynamic_cast<const mp::RemoteError*>(&e) != nullptr;
                                     }),
                                     3L);
  only_error.wait();
  BOOST_TEST(failed.load() == 1);
  std::atomic<int> voids{0};
  pool.apply_async(nothing, mp::callbacks([&] { ++voids; })).wait();
  BOOST_TEST(voids.load() == 1);
  // A worker's death reaches the error callback as BrokenPool.
  std::atomic<int> broken{0};
  auto dead = pool.map_async(kill_myself_on, mp::callbacks(nullptr, [&](const mp::Error& e) {
                               broken += dynamic_cast<const mp::BrokenPool*>(&e) != nullptr;
                             }),
                             range(10), 1);
  dead.wait();
  BOOST_TEST(broken.load() == 1);
  // An empty map succeeds at once, callbacks included.
  std::atomic<int> empty{0};
  pool.map_async(square, mp::callbacks([&](const std::vector<long>& v) { empty += v.empty(); }),
                 std::vector<long>{}).wait();
  BOOST_TEST(empty.load() == 1);
}

BOOST_AUTO_TEST_CASE(callbacks_given_with_the_call_never_miss_a_fast_call, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  std::atomic<int> ok{0}, failed{0};
  std::vector<mp::AsyncResult<long>> results;
  for (long i = 0; i < 300; ++i) {
    results.push_back(pool.apply_async(fail_on_three,
                                       mp::callbacks([&](const long&) { ++ok; },
                                                     [&](const mp::Error&) { ++failed; }),
                                       i % 10));
  }
  for (auto& r : results) r.wait();
  BOOST_TEST(ok.load() == 270);  // every callback ran before its call was ready
  BOOST_TEST(failed.load() == 30);
  // Attached after the call finished: runs at once, on this thread.
  const auto me = std::this_thread::get_id();
  std::thread::id ran_on;
  int late = 0;
  results[3].on_error([&](const mp::Error&) { ++late, ran_on = std::this_thread::get_id(); });
  BOOST_TEST(late == 1);
  BOOST_TEST((ran_on == me));
  results[4].on_success([&](const long& v) { late += static_cast<int>(v); });
  BOOST_TEST(late == 5);
  // A refused call runs no callback.
  pool.close();
  BOOST_CHECK_THROW(pool.apply_async(square, mp::callbacks([&](const long&) { ++late; }), 1L), mp::Error);
  pool.join();
  BOOST_TEST(late == 5);
}

BOOST_AUTO_TEST_SUITE_END()
