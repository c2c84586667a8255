// multiproc::redis::Pool and serve(): results across worker processes, errors, workers killed
// idle and mid-task, a killed client, a restarted (AOF) and a stopped server — never a hang.
#include <multiproc/process.hpp>
#include <multiproc/redis.hpp>

#include <boost/test/unit_test.hpp>

#include "redis_server.hpp"

#include <atomic>
#include <csignal>
#include <numeric>
#include <stdexcept>
#include <thread>

#include <unistd.h>

namespace mp = multiproc;
namespace rd = multiproc::redis;
using namespace std::chrono_literals;
using mptest::expect_error;

namespace {

std::string g_url;  // the server of the running test, for tasks that talk to it themselves

long square(long x) { return x * x; }
long slow_square(long x) {
  std::this_thread::sleep_for(1ms);
  return x * x;
}
long add(long a, long b) { return a + b; }
int fails(std::string why) { throw std::invalid_argument("bad input: " + why); }
void nothing() {}

// Runs once per call of the test: the first try blocks (the test SIGKILLs its worker), later
// tries return x * x. Each try counts itself in "attempts:<x>" on the server.
long dies_first(long x) {
  rd::Client c(g_url);
  const long n = c.command({"INCR", "attempts:" + std::to_string(x)}).integer();
  if (n == 1) {
    c.command({"SET", "victim", std::to_string(::getpid())});
    for (;;) ::pause();
  }
  return x * x;
}

// Counts its runs on the server.
long counted(long x) {
  rd::Client(g_url).command({"INCR", "runs"});
  return x;
}

std::vector<rd::Task> tasks() {
  return {{"square", &square},
          {"slow_square", &slow_square},
          {"add", &add},
          {"fails", &fails},
          {"nothing", &nothing},
          {"dies_first", &dies_first},
          {"counted", &counted},
          {"lambda", [](const std::string& s) { return s + "!"; }},
          {"function", std::function<std::vector<int>(int)>([](int n) { return std::vector<int>(n, n); })}};
}

rd::ServeOptions quick_serve() {
  rd::ServeOptions o;
  o.lease = 400ms;
  o.idle_wait = 100ms;
  return o;
}

rd::PoolOptions quick_pool(int max_retries = 2) {
  rd::PoolOptions o;
  o.max_retries = max_retries;
  o.reap_interval = 100ms;
  o.connection.command_timeout = 1000ms;
  o.connection.reconnect_for = 5000ms;
  return o;
}

// n worker processes serving tasks() on `url` until shutdown_workers().
std::vector<std::unique_ptr<mp::Process>> start_workers(int n, const std::string& url,
                                                        rd::ServeOptions o = quick_serve()) {
  g_url = url;
  return mptest::start_all(n, [url, o](int) {
    rd::serve(url, tasks(), o);
    return 0;
  });
}

// Waits until n workers hold a lease (so that shutdown_workers() reaches them).
void wait_for_workers(rd::Pool& pool, std::size_t n) {
  BOOST_REQUIRE(mptest::eventually([&] { return pool.workers() == n; }, 20s));
}

void stop_workers(rd::Pool& pool, std::vector<std::unique_ptr<mp::Process>>& ps) {
  pool.shutdown_workers();
  for (auto& p : ps) {
    if (!p->is_alive() && p->exitcode()) continue;
    BOOST_REQUIRE(p->join_for(20s));
    BOOST_TEST(p->exitcode().value() == 0);
  }
}

double since(rd::Clock::time_point t) {
  return std::chrono::duration<double>(rd::Clock::now() - t).count();
}

long sum_of_squares(long n) { return (n - 1) * n * (2 * n - 1) / 6; }

// XREADs the server has answered (INFO commandstats).
long xreads(rd::Client& c) {
  const std::string info = c.command({"INFO", "commandstats"}).str();
  const std::string key = "cmdstat_xread:calls=";
  const auto at = info.find(key);
  return at == std::string::npos ? 0 : std::stol(info.substr(at + key.size()));
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(redis_pool, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(apply_and_map_are_exact_across_three_workers, *boost::unit_test::timeout(60)) {
  auto ps = start_workers(3, redis.url());
  rd::Pool pool(redis.url(), quick_pool());
  wait_for_workers(pool, 3);
  BOOST_TEST(pool.apply<long>("square", 12L) == 144);
  BOOST_TEST(pool.apply<long>("add", 40L, 2L) == 42);
  BOOST_TEST(pool.apply<std::string>("lambda", std::string("hi")) == "hi!");
  BOOST_TEST((pool.apply<std::vector<int>>("function", 3) == std::vector<int>{3, 3, 3}));
  pool.apply<void>("nothing");
  // Untyped: the worker reports the type.
  rd::Result r = pool.apply_async("square", 5L).get();
  BOOST_TEST(r.as<long>() == 25);
  BOOST_TEST(r.type_name() == "long");

  std::vector<long> in(10000);
  std::iota(in.begin(), in.end(), 0L);
  auto out = pool.map<long>("square", in);
  BOOST_REQUIRE(out.size() == in.size());
  for (std::size_t i = 0; i < in.size(); ++i) BOOST_REQUIRE(out[i] == in[i] * in[i]);
  BOOST_TEST(std::accumulate(out.begin(), out.end(), 0L) == sum_of_squares(10000));

  // Progress: one call per chunk, done reaching exactly the number of items.
  std::size_t calls = 0, last = 0, total_seen = 0;
  bool monotonic = true;
  auto m = pool.map_async<long>("square", in, 97, [&](std::size_t done, std::size_t total) {
    ++calls;
    monotonic = monotonic && done > last;
    last = done;
    total_seen = total;
  });
  auto got = m.get_for(30s);
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(std::accumulate(got->begin(), got->end(), 0L) == sum_of_squares(10000));
  BOOST_TEST(last == in.size());
  BOOST_TEST(total_seen == in.size());
  BOOST_TEST(monotonic);
  BOOST_TEST(calls >= 1u);
  BOOST_TEST(calls <= (in.size() + 96) / 97);
  BOOST_TEST((m.progress() == std::pair<std::size_t, std::size_t>(in.size(), in.size())));
  BOOST_TEST(m.ready());
  BOOST_TEST(m.successful());
  // Many apply_async in flight at once, waited on from several threads.
  std::vector<rd::AsyncResult<long>> rs;
  for (long i = 0; i < 500; ++i) rs.push_back(pool.apply_async<long>("square", i));
  std::atomic<long> total{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < rs.size(); i += 2) {  // overlapping
        if (i % 4 == static_cast<std::size_t>(t)) total += rs[i].get();
        else rs[i].wait();
      }
    });
  }
  for (auto& t : ts) t.join();
  BOOST_TEST(total.load() == sum_of_squares(500));
  BOOST_TEST(pool.map<long>("square", std::vector<long>{}).empty());
  stop_workers(pool, ps);
}

BOOST_AUTO_TEST_CASE(waiting_for_one_result_reads_the_others_that_are_in, *boost::unit_test::timeout(60)) {
  rd::Pool pool(redis.url(), quick_pool());
  rd::Client c(redis.url());
  // No worker yet: a wait that times out has read the others' (empty) results along with its
  // own, and gives them back: each is read to its end later.
  std::vector<rd::AsyncResult<long>> rs;
  for (long i = 0; i < 300; ++i) rs.push_back(pool.apply_async<long>("square", i));
  BOOST_TEST(!rs[7].get_for(50ms).has_value());
  BOOST_TEST(!rs[0].ready());
  auto ps = start_workers(2, redis.url());
  // Every result in: waiting for each in turn reads them some 64 at a time, all exact.
  BOOST_REQUIRE(mptest::eventually(
      [&] { return c.command({"KEYS", "mp:pool:default:result:*"}).size() == rs.size(); }, 30s));
  const long before = xreads(c);
  long sum = 0;
  for (auto& r : rs) sum += r.get();
  BOOST_TEST(sum == sum_of_squares(300));
  const long reads = xreads(c) - before;
  BOOST_TEST(reads >= 1);
  BOOST_TEST(reads <= 10);  // 300 results; one read per result before
  stop_workers(pool, ps);
}

BOOST_AUTO_TEST_CASE(a_forked_child_waiting_for_its_own_calls_leaves_the_parents_alone,
                     *boost::unit_test::timeout(60)) {
  auto ps = start_workers(1, redis.url());
  rd::Pool pool(redis.url(), quick_pool());
  wait_for_workers(pool, 1);
  rd::Client c(redis.url());
  std::vector<rd::AsyncResult<long>> rs;
  for (long i = 0; i < 20; ++i) rs.push_back(pool.apply_async<long>("square", i));
  BOOST_REQUIRE(mptest::eventually(
      [&] { return c.command({"KEYS", "mp:pool:default:result:*"}).size() == rs.size(); }, 30s));
  // The child's copies of these 20 calls are not its to read: it read them with its own before,
  // finished them there and deleted their keys, and the parent's get() said "expired" (a review).
  CHECK_CHILD([&] {
    for (long i = 0; i < 3; ++i) CHILD_REQUIRE(pool.apply<long>("square", i + 100) == (i + 100) * (i + 100));
    return 0;
  });
  long sum = 0;
  for (auto& r : rs) sum += r.get();
  BOOST_TEST(sum == sum_of_squares(20));
  stop_workers(pool, ps);
}

BOOST_AUTO_TEST_CASE(wrong_types_unknown_tasks_and_throwing_tasks_are_clear_errors,
                     *boost::unit_test::timeout(60)) {
  auto ps = start_workers(1, redis.url());
  rd::Pool pool(redis.url(), quick_pool());
  // An int where the task takes a long: the worker refuses, naming both signatures.
  expect_error([&] { pool.apply<long>("square", 3); }, mp::errc::type_mismatch,
               {"task 'square'", "(long) -> long", "(int) -> long"});
  expect_error([&] { pool.apply<int>("square", 3L); }, mp::errc::type_mismatch,
               {"(long) -> long", "(long) -> int"});
  expect_error([&] { pool.map<long>("add", std::vector<long>{1, 2}); }, mp::errc::type_mismatch,
               {"task 'add'", "(long, long) -> long"});
  expect_error([&] { pool.apply("cube", 3L); }, mp::errc::not_found, {"no task 'cube'", "square"});
  try {
    pool.apply<int>("fails", std::string("x"));
    BOOST_FAIL("no error");
  } catch (const mp::RemoteError& e) {
    BOOST_TEST(e.type() == "std::invalid_argument");
    BOOST_TEST(e.remote_message() == "bad input: x");
  }
  // A map fails as a whole with the first error it meets.
  BOOST_CHECK_THROW(pool.map<int>("fails", std::vector<std::string>{"a", "b"}, 1), mp::RemoteError);
  // Reading an untyped result as another type.
  rd::Result r = pool.apply("square", 4L);
  expect_error([&] { r.as<int>(); }, mp::errc::type_mismatch, {"long", "int"});
  // Bad names never reach the server.
  expect_error([&] { pool.apply_async("two words", 1L); }, mp::errc::invalid_argument, {"two words"});
  expect_error([&] { rd::Pool("redis://127.0.0.1:1", [] { rd::PoolOptions o; o.name = ""; return o; }()); },
               mp::errc::invalid_argument, {"Pool name"});
  expect_error([&] { rd::serve(redis.url(), {{"a b", &square}}); }, mp::errc::invalid_argument, {"a b"});
  expect_error([&] { rd::serve(redis.url(), {{"sq", &square}, {"sq", &add}}); },
               mp::errc::invalid_argument, {"'sq' given twice"});
  // The worker carried on through all of that.
  BOOST_TEST(pool.apply<long>("square", 9L) == 81);
  auto failed = pool.apply_async<int>("fails", std::string("y"));
  BOOST_TEST(failed.wait_for(10s));
  BOOST_TEST(!failed.successful());
  stop_workers(pool, ps);
}

// Outside probes: a job whose header the worker could not read but the take script could (it
// begins "<cid> <jobno> " of a live call) came back at every take: the worker looped on it for
// ever and never heard shutdown_workers(). Now it fails its call as corrupt.
BOOST_AUTO_TEST_CASE(a_malformed_job_of_a_live_call_fails_it_and_the_worker_serves_on,
                     *boost::unit_test::timeout(60)) {
  auto ps = start_workers(1, redis.url());
  rd::Pool pool(redis.url(), quick_pool());
  wait_for_workers(pool, 1);
  rd::Client c(redis.url());
  c.command({"SET", "mp:pool:default:call:deadbeef", "1", "PX", "60000"});
  c.command({"LPUSH", "mp:pool:default:queue", "deadbeef 0 0 2 square"});  // no body
  BOOST_TEST(pool.apply<long>("square", 9L) == 81);
  BOOST_REQUIRE(mptest::eventually([&] { return pool.queued() == 0u; }, 20s));
  stop_workers(pool, ps);  // joins within 20 s: the worker is not stuck on the job
}

// ...and a result the server refuses to store (past its proto-max-bulk-len) made serve() throw:
// every worker the job was retried on died, and the caller heard of dead workers.
BOOST_AUTO_TEST_CASE(a_result_the_server_refuses_fails_its_call_and_the_worker_serves_on,
                     *boost::unit_test::timeout(60)) {
  rd::Client c(redis.url());
  c.command({"CONFIG", "SET", "proto-max-bulk-len", "1mb"});
  auto ps = start_workers(1, redis.url());
  rd::Pool pool(redis.url(), quick_pool());
  expect_error([&] { pool.apply<std::vector<int>>("function", 600000); },  // 2.4 MB
               mp::errc::server_error, {"task 'function'", "refused the result"});
  BOOST_TEST(pool.apply<long>("square", 9L) == 81);  // the same worker, still serving
  BOOST_TEST(ps.at(0)->is_alive());
  stop_workers(pool, ps);
}

// An outside probe: a damaged entry in a call's result stream failed the call with only the
// codec's words ("cannot decode a std::tuple<...> from 0 bytes"), naming neither pool nor task.
BOOST_AUTO_TEST_CASE(a_damaged_result_entry_fails_its_call_naming_pool_and_task,
                     *boost::unit_test::timeout(60)) {
  rd::Pool pool(redis.url(), quick_pool());
  auto r = pool.apply_async<long>("square", 5L);  // no worker: only the damaged entry answers
  rd::Client c(redis.url());
  const rd::Reply calls = c.command({"KEYS", "mp:pool:default:call:*"});
  BOOST_REQUIRE(calls.elements().size() == 1u);
  const std::string cid = calls.elements()[0].str().substr(std::string("mp:pool:default:call:").size());
  c.command({"XADD", "mp:pool:default:result:" + cid, "*", "r", "0 ok\n"});
  expect_error([&] { (void)r.get_for(20s); }, mp::errc::corrupt,
               {"Pool 'default'", "task 'square'", "cannot be read"});
}

BOOST_AUTO_TEST_CASE(a_worker_killed_mid_task_has_it_retried, *boost::unit_test::timeout(60)) {
  auto ps = start_workers(3, redis.url());
  rd::Pool pool(redis.url(), quick_pool(1));
  rd::Client c(redis.url());
  wait_for_workers(pool, 3);
  std::vector<long> in(300);
  std::iota(in.begin(), in.end(), 0L);
  // One map, and one apply that kills its worker on its first try.
  auto m = pool.map_async<long>("square", in, 10);
  auto r = pool.apply_async<long>("dies_first", 7L);
  BOOST_REQUIRE(mptest::eventually([&] { return !c.command({"GET", "victim"}).is_nil(); }));
  const pid_t victim = std::stoi(c.command({"GET", "victim"}).str());
  bool ours = false;
  for (auto& p : ps) ours = ours || p->pid() == victim;
  BOOST_REQUIRE(ours);
  ::kill(victim, SIGKILL);
  auto v = r.get_for(20s);
  BOOST_REQUIRE(v.has_value());
  BOOST_TEST(*v == 49);
  BOOST_TEST(c.command({"GET", "attempts:7"}).str() == "2");
  auto out = m.get_for(20s);
  BOOST_REQUIRE(out.has_value());
  BOOST_TEST(std::accumulate(out->begin(), out->end(), 0L) == sum_of_squares(300));
  // The others serve on; the dead one is forgotten.
  BOOST_TEST(mptest::eventually([&] { return pool.workers() == 2; }));
  BOOST_TEST(pool.apply<long>("square", 3L) == 9);
  for (auto& p : ps) {
    if (p->pid() == victim) {
      BOOST_REQUIRE(p->join_for(10s));
      BOOST_TEST(p->exitcode().value() == -SIGKILL);
    }
  }
  stop_workers(pool, ps);
}

BOOST_AUTO_TEST_CASE(with_no_retries_a_killed_worker_breaks_its_call, *boost::unit_test::timeout(60)) {
  auto ps = start_workers(2, redis.url());
  rd::Pool pool(redis.url(), quick_pool(0));
  rd::Client c(redis.url());
  wait_for_workers(pool, 2);
  auto r = pool.apply_async<long>("dies_first", 8L);
  BOOST_REQUIRE(mptest::eventually([&] { return !c.command({"GET", "victim"}).is_nil(); }));
  ::kill(std::stoi(c.command({"GET", "victim"}).str()), SIGKILL);
  const auto t0 = rd::Clock::now();
  expect_error([&] { r.get_for(20s); }, mp::errc::broken_pool,
               {"task 'dies_first'", "max_retries = 0"});
  BOOST_TEST(since(t0) < 5.0);  // a lease (400 ms) and a reap interval, with room
  BOOST_TEST(c.command({"GET", "attempts:8"}).str() == "1");  // never run again
  BOOST_TEST(pool.apply<long>("square", 4L) == 16);
  stop_workers(pool, ps);
}

BOOST_AUTO_TEST_CASE(the_waiting_client_reaps_when_no_worker_is_left, *boost::unit_test::timeout(60)) {
  // The only worker dies mid-task: no other worker notices; the waiting client does.
  auto ps = start_workers(1, redis.url());
  rd::Pool pool(redis.url(), quick_pool(1));
  rd::Client c(redis.url());
  wait_for_workers(pool, 1);
  auto r = pool.apply_async<long>("dies_first", 9L);
  BOOST_REQUIRE(mptest::eventually([&] { return !c.command({"GET", "victim"}).is_nil(); }));
  ::kill(ps[0]->pid(), SIGKILL);
  BOOST_REQUIRE(ps[0]->join_for(10s));
  // Waiting, the client reaps the dead worker: the job is back in the queue.
  BOOST_TEST(mptest::eventually([&] {
    r.wait_for(50ms);
    return pool.queued() == 1;
  }));
  BOOST_TEST(pool.workers() == 0u);
  // No worker: get_for returns at its deadline, without an exception.
  auto t0 = rd::Clock::now();
  BOOST_TEST(!r.get_for(300ms).has_value());
  BOOST_TEST(since(t0) >= 0.29);
  BOOST_TEST(since(t0) < 1.5);
  BOOST_TEST(!r.wait_for(100ms));
  BOOST_TEST(!r.ready());
  BOOST_CHECK_THROW(r.successful(), mp::Error);
  // A new worker takes the retried job.
  auto more = start_workers(1, redis.url());
  auto v = r.get_for(20s);
  BOOST_REQUIRE(v.has_value());
  BOOST_TEST(*v == 81);
  stop_workers(pool, more);
}

BOOST_AUTO_TEST_CASE(a_worker_killed_while_idle_changes_nothing, *boost::unit_test::timeout(60)) {
  auto ps = start_workers(2, redis.url());
  rd::Pool pool(redis.url(), quick_pool(0));
  wait_for_workers(pool, 2);
  BOOST_REQUIRE(mptest::wait_until_sleeping(ps[1]->pid()));
  ps[1]->kill();
  BOOST_REQUIRE(ps[1]->join_for(10s));
  std::vector<long> in(2000);
  std::iota(in.begin(), in.end(), 0L);
  auto out = pool.map_async<long>("square", in, 50).get_for(30s);  // max_retries = 0: nothing failed
  BOOST_REQUIRE(out.has_value());
  BOOST_TEST(std::accumulate(out->begin(), out->end(), 0L) == sum_of_squares(2000));
  BOOST_TEST(mptest::eventually([&] { return pool.workers() == 1; }));
  stop_workers(pool, ps);
}

BOOST_AUTO_TEST_CASE(a_worker_stalled_past_its_lease_loses_its_jobs_and_serves_on,
                     *boost::unit_test::timeout(60)) {
  // SIGSTOP a busy worker for longer than its lease: its jobs go to the other worker; when it
  // resumes it finishes them again (at-least-once) and the repeats count once.
  auto ps = start_workers(2, redis.url());
  rd::Pool pool(redis.url(), quick_pool(3));
  wait_for_workers(pool, 2);
  std::vector<long> in(400);
  std::iota(in.begin(), in.end(), 0L);
  auto m = pool.map_async<long>("slow_square", in, 10);
  BOOST_REQUIRE(mptest::eventually([&] { return m.progress().first > 0; }));
  ::kill(ps[0]->pid(), SIGSTOP);
  auto out = m.get_for(30s);  // the other worker does the rest, the stalled one's jobs included
  ::kill(ps[0]->pid(), SIGCONT);
  BOOST_REQUIRE(out.has_value());
  BOOST_TEST(std::accumulate(out->begin(), out->end(), 0L) == sum_of_squares(400));
  // It registers again and serves on.
  BOOST_TEST(mptest::eventually([&] { return pool.workers() == 2; }));
  auto again = pool.map<long>("square", in, 1);
  BOOST_TEST(std::accumulate(again.begin(), again.end(), 0L) == sum_of_squares(400));
  stop_workers(pool, ps);
}

namespace {
// An input range whose iteration throws after `n` items.
struct ThrowingRange {
  long n;
  struct iterator {
    long i, n;
    long operator*() const {
      if (i >= n) throw std::runtime_error("input broke");
      return i;
    }
    iterator& operator++() {
      ++i;
      return *this;
    }
    bool operator!=(const iterator& o) const { return i != o.i; }
  };
  iterator begin() const { return {0, n}; }
  iterator end() const { return {2 * n, n}; }
};
}  // namespace

BOOST_AUTO_TEST_CASE(an_input_that_throws_halfway_submits_nothing, *boost::unit_test::timeout(30)) {
  rd::Pool pool(redis.url(), quick_pool());
  BOOST_CHECK_THROW(pool.map_async<long>("square", ThrowingRange{5}), std::runtime_error);
  BOOST_TEST(pool.queued() == 0u);
  rd::Client c(redis.url());
  BOOST_TEST(c.command({"KEYS", "mp:pool:*"}).size() == 0u);
}

BOOST_AUTO_TEST_CASE(forked_clients_share_a_pool_and_renew_their_own_calls,
                     *boost::unit_test::timeout(60)) {
  // Calls that outlive result_ttl (300 ms) stay alive because their client renews them — in a
  // forked child too, whose parent's renewal thread does not exist there.
  auto ps = start_workers(2, redis.url());
  auto opts = quick_pool();
  opts.result_ttl = 300ms;
  rd::Pool pool(redis.url(), opts);
  wait_for_workers(pool, 2);
  BOOST_TEST(pool.apply<long>("square", 3L) == 9);  // the parent's renewal thread is running
  auto clients = mptest::start_all(3, [&](int k) {
    std::vector<long> in(300);
    std::iota(in.begin(), in.end(), 1000L * k);
    auto r = pool.map_async<long>("slow_square", in, 10).get_for(30s);
    CHILD_REQUIRE(r.has_value());
    long want = 0;
    for (long x : in) want += x * x;
    CHILD_REQUIRE(std::accumulate(r->begin(), r->end(), 0L) == want);
    return 0;
  });
  mptest::join_all_ok(clients);
  stop_workers(pool, ps);
}

BOOST_AUTO_TEST_CASE(a_dead_clients_calls_and_results_expire, *boost::unit_test::timeout(60)) {
  g_url = redis.url();
  rd::Client c(redis.url());
  auto opts = quick_pool();
  opts.result_ttl = 300ms;
  // A client submits with no worker alive and is killed.
  const int rc = mptest::run_child([&] {
    rd::Pool pool(redis.url(), opts);
    pool.apply_async<long>("counted", 1L);
    pool.map_async<long>("counted", std::vector<long>{1, 2, 3}, 1);
    ::kill(::getpid(), SIGKILL);
    return 0;
  });
  BOOST_TEST(rc == -SIGKILL);
  auto keys = [&](const std::string& pattern) { return c.command({"KEYS", pattern}).size(); };
  BOOST_TEST(keys("mp:pool:default:call:*") == 2u);
  BOOST_TEST(mptest::eventually([&] { return keys("mp:pool:default:call:*") == 0; }));
  // A worker started now drops the dead client's jobs without running them.
  auto ps = start_workers(1, redis.url());
  rd::Pool pool(redis.url(), opts);
  BOOST_TEST(mptest::eventually([&] { return pool.queued() == 0; }));
  BOOST_TEST(c.command({"GET", "runs"}).is_nil());
  // A client killed after its tasks ran: the results expire too.
  const int rc2 = mptest::run_child([&] {
    rd::Pool p(redis.url(), opts);
    auto r = p.apply_async<long>("counted", 5L);
    rd::Client cc(redis.url());
    if (!mptest::eventually([&] { return cc.command({"KEYS", "mp:pool:default:result:*"}).size() == 1; })) return 1;
    ::kill(::getpid(), SIGKILL);
    return 0;
  });
  BOOST_TEST(rc2 == -SIGKILL);
  BOOST_TEST(c.command({"GET", "runs"}).str() == "1");
  BOOST_TEST(mptest::eventually([&] { return keys("mp:pool:default:result:*") == 0; }));
  BOOST_TEST(keys("mp:pool:default:call:*") == 0u);
  // A live client holding a result longer than the TTL keeps it (it renews), and cleans up after.
  auto r = pool.apply_async<long>("counted", 6L);
  BOOST_REQUIRE(mptest::eventually([&] { return keys("mp:pool:default:result:*") == 1; }));
  const auto held = rd::Clock::now();
  BOOST_REQUIRE(mptest::eventually([&] { return since(held) > 1.0; }));  // > 3 TTLs
  BOOST_TEST(keys("mp:pool:default:result:*") == 1u);
  BOOST_TEST(r.get_for(5s).value() == 6);
  stop_workers(pool, ps);
  BOOST_TEST(mptest::eventually([&] { return keys("mp:pool:default:call:*") + keys("mp:pool:default:result:*") == 0; }));
}

BOOST_AUTO_TEST_CASE(a_stopped_server_honours_every_deadline, *boost::unit_test::timeout(60)) {
  auto ps = start_workers(1, redis.url());
  rd::Pool pool(redis.url(), quick_pool());
  wait_for_workers(pool, 1);
  BOOST_TEST(pool.apply<long>("square", 2L) == 4);
  redis.pause();
  // apply_async needs the server: it fails after reconnect_for; a pending call's waits keep
  // their deadlines.
  rd::AsyncResult<long> r = [&] {
    redis.resume();
    auto a = pool.apply_async<long>("dies_first", 3L);  // blocks its worker: never finishes
    redis.pause();
    return a;
  }();
  for (auto d : {50ms, 300ms, 700ms}) {
    auto t0 = rd::Clock::now();
    BOOST_TEST(!r.get_for(d).has_value());
    BOOST_TEST(since(t0) >= std::chrono::duration<double>(d).count() - 0.01);
    BOOST_TEST(since(t0) < std::chrono::duration<double>(d).count() + 1.0);
    t0 = rd::Clock::now();
    BOOST_TEST(!r.wait_for(d));
    BOOST_TEST(since(t0) < std::chrono::duration<double>(d).count() + 1.0);
  }
  redis.resume();
  // The worker is blocked in dies_first: kill it (mid-task), another takes the retry.
  auto more = start_workers(1, redis.url());
  rd::Client c(redis.url());
  BOOST_REQUIRE(mptest::eventually([&] { return !c.command({"GET", "victim"}).is_nil(); }));
  ::kill(std::stoi(c.command({"GET", "victim"}).str()), SIGKILL);
  BOOST_TEST(r.get_for(20s).value() == 9);
  pool.shutdown_workers();
  for (auto* v : {&ps, &more}) {
    for (auto& p : *v) BOOST_REQUIRE(p->join_for(20s));
  }
}

BOOST_AUTO_TEST_CASE(a_restarted_aof_server_loses_no_task, *boost::unit_test::timeout(90)) {
  mptest::RedisServer aof(mptest::RedisServer::Config{true, ""});
  auto ps = start_workers(3, aof.url());
  rd::Pool pool(aof.url(), quick_pool());
  wait_for_workers(pool, 3);
  std::vector<long> in(3000);
  std::iota(in.begin(), in.end(), 0L);
  std::atomic<std::size_t> seen{0};
  auto m = pool.map_async<long>("slow_square", in, 5, [&](std::size_t done, std::size_t) { seen = done; });
  // Restart while the map runs (its progress read by this thread, which then waits).
  BOOST_REQUIRE(mptest::eventually([&] { return m.progress().first > 0; }));
  const std::size_t at_restart = m.progress().first;
  aof.restart();
  BOOST_TEST(at_restart < in.size());
  auto out = m.get_for(60s);
  BOOST_REQUIRE(out.has_value());
  BOOST_TEST(std::accumulate(out->begin(), out->end(), 0L) == sum_of_squares(3000));
  BOOST_TEST(seen.load() == in.size());
  // And again, with everything queued before the restart.
  auto m2 = pool.map_async<long>("square", in, 5);
  aof.restart();
  auto out2 = m2.get_for(60s);
  BOOST_REQUIRE(out2.has_value());
  BOOST_TEST(std::accumulate(out2->begin(), out2->end(), 0L) == sum_of_squares(3000));
  pool.shutdown_workers();
  for (auto& p : ps) {
    BOOST_REQUIRE(p->join_for(20s));
    BOOST_TEST(p->exitcode().value() == 0);
  }
}

BOOST_AUTO_TEST_CASE(a_server_restarted_without_persistence_fails_waiting_calls,
                     *boost::unit_test::timeout(30)) {
  rd::Pool pool(redis.url(), quick_pool());
  auto r = pool.apply_async<long>("square", 2L);  // no worker: it waits in the queue
  BOOST_TEST(!r.get_for(100ms).has_value());
  redis.restart();  // no AOF: the queue and the call are gone
  expect_error([&] { r.get_for(10s); }, mp::errc::broken_pool, {"task 'square'", "expired"});
}

BOOST_AUTO_TEST_CASE(serve_stops_on_a_signal_handler_a_flag_or_max_tasks, *boost::unit_test::timeout(60)) {
  rd::Pool pool(redis.url(), quick_pool());
  g_url = redis.url();
  // stop_serving() from a SIGTERM handler: serve returns, the program exits normally.
  mp::Process p([url = redis.url()] {
    std::signal(SIGTERM, [](int) { rd::stop_serving(); });
    rd::serve(url, tasks(), quick_serve());
    return 7;
  });
  p.start();
  wait_for_workers(pool, 1);
  BOOST_TEST(pool.apply<long>("square", 5L) == 25);
  ::kill(p.pid(), SIGTERM);
  BOOST_REQUIRE(p.join_for(10s));
  BOOST_TEST(p.exitcode().value() == 7);
  BOOST_TEST(pool.workers() == 0u);  // it left: no lease to expire
  // max_tasks: returns after that many jobs; concurrency: threads in one serve call.
  mp::Process q([url = redis.url()] {
    auto o = quick_serve();
    o.max_tasks = 5;
    o.concurrency = 2;
    return rd::serve(url, tasks(), o) >= 5 ? 0 : 1;
  });
  q.start();
  wait_for_workers(pool, 2);
  std::vector<rd::AsyncResult<long>> rs;
  for (long i = 0; i < 5; ++i) rs.push_back(pool.apply_async<long>("square", i));
  for (auto& r : rs) BOOST_TEST(r.get_for(10s).has_value());
  BOOST_REQUIRE(q.join_for(10s));
  BOOST_TEST(q.exitcode().value() == 0);
  // A stop flag set from another thread.
  std::atomic<bool> stop{false};
  std::thread t([&] {
    auto o = quick_serve();
    o.stop = &stop;
    rd::serve(redis.url(), tasks(), o);
  });
  wait_for_workers(pool, 1);
  BOOST_TEST(pool.apply<long>("square", 6L) == 36);
  stop = true;
  t.join();
  BOOST_TEST(pool.workers() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

// The redis_primes sample's smoke test (tests/redis/CMakeLists.txt, redis.sample.primes):
// `--scenario redis_primes_sample <path of redis_primes> <limit>` starts a redis-server of its
// own, runs the coordinator with 3 workers (it SIGKILLs one mid-run and checks the count), and
// exits 0 when the coordinator did, within 60 s.
MPTEST_SCENARIO(redis_primes_sample) {
  if (args.size() != 2) {
    std::fprintf(stderr, "usage: --scenario redis_primes_sample <redis_primes> <limit>\n");
    return 2;
  }
  mptest::RedisServer server;
  mp::Process coordinator(mp::Command{args[0], {args[0], server.url(), args[1], "3"}});
  coordinator.start();
  if (!coordinator.join_for(60s)) {
    std::fprintf(stderr, "redis_primes_sample: the coordinator did not finish in 60 s\n");
    coordinator.kill();
    coordinator.join();
    return 1;
  }
  const int code = coordinator.exitcode().value_or(-1);
  std::fprintf(stderr, "redis_primes_sample: the coordinator exited with %d\n", code);
  return code == 0 ? 0 : 1;
}
