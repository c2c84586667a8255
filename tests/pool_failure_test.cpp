// Pool, when things go wrong: remote errors, workers killed idle / mid-call / with a task queued
// behind, a task that exits, terminate with running calls and a backlog, close+join while workers
// die, maxtasksperchild, initializers (failing ones break the pool), a pool that cannot replace a
// worker, destroying a busy pool.
#include "pool_tasks.hpp"

#include <algorithm>
#include <cstdio>
#include <future>
#include <optional>
#include <set>
#include <thread>

using namespace pooltest;

// One suite, `pool`, over pool_test.cpp, pool_failure_test.cpp and pool_stream_test.cpp.
BOOST_FIXTURE_TEST_SUITE(pool, Clean)

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
  NamedEvent never("never");
  NamedEvent started("started");
  auto stuck = pool.apply_async(signal_then_wait, started.name, never.name);
  auto queued = pool.apply_async(square, 6L);  // waits behind it
  BOOST_REQUIRE(pool.worker_pids().size() == 1u);
  BOOST_REQUIRE(started.wait_for(std::chrono::seconds(30)));  // the task is running
  ::kill(pool.worker_pids()[0], SIGKILL);
  BOOST_CHECK_THROW(stuck.get(), mp::BrokenPool);
  BOOST_TEST(queued.get() == 36);  // not started: given to the replacement
}

BOOST_AUTO_TEST_CASE(terminate_returns_promptly_with_a_long_backlog, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  NamedEvent never("blocked");
  std::vector<std::string> names(5000, never.name);
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

BOOST_AUTO_TEST_CASE(an_initializer_that_exits_cleanly_breaks_the_pool, *boost::unit_test::timeout(120)) {
  // exit code 0 before the worker said it was ready: not a worker to replace for ever.
  mp::Pool pool(2, [] { ::_exit(0); });
  auto r = pool.apply_async(square, 3L);
  BOOST_REQUIRE(r.wait_for(60s));
  expect_error([&] { r.get(); }, mp::errc::broken_pool, {"initializer", "exit"});
  BOOST_CHECK_THROW(pool.apply(square, 2L), mp::BrokenPool);
}

BOOST_AUTO_TEST_CASE(a_forked_childs_copy_of_a_pool_refuses_work_and_leaves_the_parents_alone,
                     *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  BOOST_TEST(pool.apply(square, 4L) == 16);
  const std::vector<pid_t> workers = pool.worker_pids();
  NamedEvent never("never");
  auto pending = pool.apply_async(wait_for_event, never.name);
  auto stream = pool.imap(square, range(1000));
  // The child's copy shares the parent's workers and pipes: it took the parent's replies (and the
  // parent its) before; now every use is Error(bad_state), and its destructor touches nothing.
  CHECK_CHILD([&] {
    for (auto action : std::vector<std::function<void()>>{
             [&] { pool.apply_async(square, 5L); }, [&] { pool.apply(square, 5L); },
             [&] { pool.map(square, range(10)); }, [&] { pool.imap(square, range(10)); },
             [&] { pool.close(); }, [&] { pool.terminate(); }, [&] { pool.join(); },
             [&] { pending.get(); }, [&] { pending.wait_for(10ms); },
             [&] {
               for (long v : stream) (void)v;  // a stream of the parent's, read in the child
             }}) {
      try {
        action();
        return 1;
      } catch (const mp::Error& e) {
        CHILD_REQUIRE(e.code() == mp::errc::bad_state);
        CHILD_REQUIRE(std::string(e.what()).find("process") != std::string::npos);
      }
    }
    pool.~Pool();  // as a child that returns from main would: the parent's workers stay
    return 0;
  });
  BOOST_TEST(pool.worker_pids() == workers);
  for (pid_t w : workers) BOOST_TEST(::kill(w, 0) == 0);
  for (long i = 0; i < 200; ++i) BOOST_REQUIRE(pool.apply(square, i) == i * i);
  long sum = 0;
  for (long v : stream) sum += v;
  BOOST_TEST(sum == sum_of_squares(1000));
  never.set();
  BOOST_TEST(pending.get());
}

namespace {
// A task handed the address of the Pool (or executor) it runs on: its worker's copy of it, made
// by the fork. 0 when every call that would act is refused with bad_state, as in any other
// process; the worker crashed (SIGSEGV) before.
long use_the_pool_it_runs_on(long address) {
  auto& pool = *reinterpret_cast<mp::Pool*>(address);
  int refused = 0;
  for (auto action : std::vector<std::function<void()>>{
           [&] { pool.apply(square, 5L); }, [&] { pool.apply_async(square, 5L); },
           [&] { pool.close(); }, [&] { pool.terminate(); }, [&] { pool.join(); }}) {
    try {
      action();
    } catch (const mp::Error& e) {
      if (e.code() == mp::errc::bad_state) ++refused;
    }
  }
  // The queries answer, with the pool as the fork saw it (worker_pids(): those started by then).
  return refused == 5 && pool.size() == 2 && pool.worker_pids().size() <= 2 ? 0 : 1;
}
long use_the_executor_it_runs_on(long address) {
  auto& ex = *reinterpret_cast<mp::ProcessPoolExecutor*>(address);
  try {
    ex.submit(square, 5L);
  } catch (const mp::Error& e) {
    return e.code() == mp::errc::bad_state ? 0 : 1;
  }
  return 1;
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_worker_started_with_the_pool_refuses_to_use_it, *boost::unit_test::timeout(60)) {
  // An outside probe: the first workers were forked while the Pool was being constructed, before
  // it held its core, so in them every use of the pool dereferenced a null pointer (SIGSEGV,
  // BrokenPool in the caller); a worker started later (a replacement) got bad_state. Now all do.
  mp::Pool pool(2);
  for (int i = 0; i < 6; ++i) {
    BOOST_TEST(pool.apply(use_the_pool_it_runs_on, reinterpret_cast<long>(&pool)) == 0);
  }
  mp::ProcessPoolExecutor ex(1);
  BOOST_TEST(ex.submit(use_the_executor_it_runs_on, reinterpret_cast<long>(&ex)).result() == 0);
}

BOOST_AUTO_TEST_CASE(close_and_join_do_not_wait_for_a_child_a_task_forked,
                     *boost::unit_test::timeout(60)) {
  mp::Pool pool(1);
  const auto sleeper = static_cast<pid_t>(pool.apply(fork_a_sleeper, 60L));
  const auto t0 = std::chrono::steady_clock::now();
  pool.close();
  pool.join();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::kill(sleeper, SIGKILL);  // not ours to reap: the worker was its parent
  // The child holds the worker's pipe ends, so EOF never reached the worker: join() waited 10 s
  // and killed it. The pool's stop message ends it at once.
  BOOST_TEST(took < 5.0);
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

BOOST_AUTO_TEST_CASE(destroying_a_busy_pool_reaps_everything, *boost::unit_test::timeout(60)) {
  NamedEvent never("stuck");
  std::optional<mp::AsyncResult<bool>> r;
  {
    mp::Pool pool(3);
    r.emplace(pool.apply_async(wait_for_event, never.name));
  }  // terminates and joins (the fixture checks for zombies and /dev/shm leftovers)
  BOOST_TEST(r->ready());
  BOOST_CHECK_THROW(r->get(), mp::Error);  // the call was cut short, not left hanging
}

// ---- every call ends (issue 10, item 1) --------------------------------------------------------

BOOST_AUTO_TEST_CASE(terminate_fails_a_running_call_with_bad_state, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  NamedEvent never("never");
  NamedEvent started("started");
  auto running = pool.apply_async(signal_then_wait, started.name, never.name);
  auto queued = pool.map_async(wait_for_event, std::vector<std::string>(50, never.name), 1);
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

BOOST_AUTO_TEST_CASE(terminate_from_another_thread_ends_a_map_whose_caller_deals_it_out,
                     *boost::unit_test::timeout(120)) {
  // A blocking map() on idle workers is dealt out by its own caller: two tasks to each worker, the
  // rest kept in its backlog, the caller asleep on the workers' pipes. terminate() from another
  // thread must end it with bad_state (the workers killed, the backlog failed), not leave it
  // asleep; also with one of the workers SIGSTOPped first (SIGKILL ends a stopped process).
  ContinueAtExit cont;
  for (const bool stop_one : {false, true}) {
    mp::Pool pool(2);
    BOOST_TEST(pool.apply(square, 2L) == 4);
    NamedEvent never("never");
    NamedEvent started("started");
    const std::vector<std::tuple<std::string, std::string>> items(50, {started.name, never.name});
    auto call = std::async(std::launch::async, [&]() -> std::string {
      try {
        (void)pool.starmap(signal_then_wait, items, 1);
        return "returned";
      } catch (const mp::Error& e) {
        return e.code() == mp::errc::bad_state ? "bad_state" : e.what();
      }
    });
    BOOST_REQUIRE(started.wait_for(30s));  // running: the caller is dealing it out
    if (stop_one) {
      const pid_t victim = pool.worker_pids().front();
      ::kill(victim, SIGSTOP);
      cont.pids.push_back(victim);
      BOOST_REQUIRE(eventually([&] { return is_stopped(victim); }, 10s));
    }
    pool.terminate();
    BOOST_REQUIRE(call.wait_for(30s) == std::future_status::ready);  // before: the tasks' 60 s
    BOOST_TEST(call.get() == "bad_state");
    pool.join();
    BOOST_TEST(pool.worker_pids().empty());
  }
}

BOOST_AUTO_TEST_CASE(terminate_ends_a_pool_whose_worker_stopped_in_the_middle_of_a_large_reply,
                     *boost::unit_test::timeout(120)) {
  // A worker SIGSTOPped while it streams a 32 MB reply (its pipe's ring holds 1 MiB): the thread
  // reading it waits, holding the pool's reading lock, for chunks that do not come. terminate()
  // must still end the pool: it kills the workers itself (before, it only told the manager, which
  // waited for that lock: terminate() and join() hung). The call fails.
  ContinueAtExit cont;
  mp::Pool pool(2);
  BOOST_TEST(pool.apply(square, 2L) == 4);
  const std::string pid_name = unique_name("pid");
  mp::RawValue<int> pid(mp::create_only, pid_name, 0);
  auto r = pool.apply_async(report_pid_then_many, pid_name, 4L << 20);  // dealt out: no reader yet
  BOOST_REQUIRE(eventually([&] { return pid.load() != 0; }, 30s));
  // Asleep in the futex: its ring is full and nobody reads (the reply cannot have ended).
  BOOST_REQUIRE(wait_until_in_futex(pid.load(), 30s));
  ::kill(pid.load(), SIGSTOP);
  cont.pids.push_back(pid.load());
  BOOST_REQUIRE(eventually([&] { return is_stopped(pid.load()); }, 10s));
  auto reader = std::async(std::launch::async, [&] {
    try {
      (void)r.get();  // reads the first MiB, then waits for the stopped worker
      return std::string("returned");
    } catch (const mp::Error& e) {
      return std::string(e.what());
    }
  });
  // It cannot return while the worker is stopped; the wait also gives it time to get into the
  // reply (terminate() must end the pool either way).
  BOOST_TEST((reader.wait_for(200ms) == std::future_status::timeout));
  pool.terminate();
  BOOST_REQUIRE(reader.wait_for(30s) == std::future_status::ready);
  BOOST_TEST(reader.get() != "returned");
  auto joined = std::async(std::launch::async, [&] { pool.join(); });
  BOOST_REQUIRE(joined.wait_for(30s) == std::future_status::ready);
  BOOST_TEST(pool.worker_pids().empty());
}

BOOST_AUTO_TEST_CASE(a_stopped_worker_holds_back_only_the_tasks_dealt_to_it, *boost::unit_test::timeout(180)) {
  // One worker SIGSTOPped in the middle of a long map: the other must run every task but the at
  // most two the stopped one was sent (so the caller, or the manager, must go on dealing to the
  // worker that answers, never wait behind the stopped one), and after SIGCONT the map is whole
  // and each task ran once. Whether its caller deals it out (map) or the manager does (map_async,
  // whose caller only waits for the result).
  mp::Pool pool(2);
  BOOST_TEST(pool.apply(square, 2L) == 4);
  ContinueAtExit cont;
  constexpr long kTasks = 2000;
  for (int round = 0; round < 2; ++round) {
    const std::string name = unique_name("count");
    mp::SharedValue<long> count(mp::create_only, name, 0);
    std::vector<std::tuple<long, std::string>> items;
    for (long i = 0; i < kTasks; ++i) items.emplace_back(i, name);
    std::future<std::vector<long>> call;
    if (round == 0) {
      call = std::async(std::launch::async, [&] { return pool.starmap(counted_square, items, 1); });
    } else {
      auto r = std::make_shared<mp::AsyncResult<std::vector<long>>>(
          pool.starmap_async(counted_square, items, 1));
      call = std::async(std::launch::async, [r] { return r->get(); });
    }
    BOOST_REQUIRE(eventually([&] { return count.load() >= 100; }, 60s));
    const pid_t victim = pool.worker_pids().at(static_cast<std::size_t>(round));
    ::kill(victim, SIGSTOP);
    cont.pids.push_back(victim);
    BOOST_REQUIRE(eventually([&] { return is_stopped(victim); }, 10s));
    BOOST_TEST(eventually([&] { return count.load() >= kTasks - 2; }, 90s),
               "ran " << count.load() << " of " << kTasks << " with one worker stopped");
    ::kill(victim, SIGCONT);
    BOOST_REQUIRE(call.wait_for(60s) == std::future_status::ready);
    const std::vector<long> squares = call.get();
    BOOST_REQUIRE(squares.size() == static_cast<std::size_t>(kTasks));
    long wrong = 0;
    for (long i = 0; i < kTasks; ++i) wrong += squares[static_cast<std::size_t>(i)] != i * i;
    BOOST_TEST(wrong == 0);
    BOOST_TEST(count.load() == kTasks);  // each task ran once
  }
}

BOOST_AUTO_TEST_CASE(a_worker_stopped_while_idle_does_not_hold_a_task_larger_than_its_ring,
                     *boost::unit_test::timeout(120)) {
  // A task of 2 MiB streams through the worker's 1 MiB ring. Sent to a worker stopped while idle,
  // it held the manager in the send — and every later task with it — until the worker was
  // continued (an outside probe: a 2-worker pool answered nothing for good). The manager gives up
  // on the stopped one and sends the task to the other; the stopped one, continued, works again.
  mp::Pool pool(2);
  BOOST_TEST(pool.apply(square, 2L) == 4);
  ContinueAtExit cont;
  const pid_t victim = pool.worker_pids().front();  // the first the manager deals to
  ::kill(victim, SIGSTOP);
  cont.pids.push_back(victim);
  BOOST_REQUIRE(eventually([&] { return is_stopped(victim); }, 10s));
  for (int i = 0; i < 3; ++i) {
    auto big = pool.apply_async(length_of, std::string(std::size_t{2} << 20, 'x'));
    auto small = pool.apply_async(square, 5L);
    BOOST_REQUIRE(big.wait_for(60s));
    BOOST_TEST(big.get() == 2L << 20);
    BOOST_REQUIRE(small.wait_for(60s));
    BOOST_TEST(small.get() == 25);
  }
  // Calls its caller deals out itself (small, nothing queued) pass the stopped worker by too.
  for (long i = 0; i < 20; ++i) {
    auto r = pool.apply_async(square, i);
    BOOST_REQUIRE(r.wait_for(30s));
    BOOST_TEST(r.get() == i * i);
  }
  ::kill(victim, SIGCONT);
  // It drops the part it was sent and takes tasks again: a map of many reaches both workers.
  BOOST_TEST(eventually([&] {
    for (int pid : pool.map(my_pid, std::vector<int>(400, 0), 1)) {
      if (pid == static_cast<int>(victim)) return true;
    }
    return false;
  }, 30s));
  const auto lengths = pool.map(length_of, std::vector<std::string>(6, std::string(std::size_t{3} << 20, 'y')), 1);
  for (long n : lengths) BOOST_TEST(n == 3L << 20);
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
BOOST_AUTO_TEST_CASE(a_worker_that_cannot_be_replaced_breaks_the_pool,
                     *boost::unit_test::timeout(120) *
                         boost::unit_test::precondition(not_under_thread_sanitizer)) {
  NamedEvent never("never");
  NamedEvent started("started");
  const std::string pid_name = unique_name("pid");
  mp::RawValue<int> pid(mp::create_only, pid_name, 0);
  CHECK_CHILD([&] {
    std::setvbuf(stderr, nullptr, _IONBF, 0);
    mp::Pool pool(1);
    auto running = pool.apply_async(report_pid_then_wait, pid_name, started.name, never.name);
    auto queued = pool.apply_async(square, 3L);
    CHILD_REQUIRE(started.wait_for(30s));
    // Address space for what is mapped now, and not for another worker's 2 MiB pipe
    // (1 MiB less than now: the dead worker's 2 MiB pipe is unmapped before its replacement's).
    CHILD_REQUIRE(limit_address_space(-(1 << 20)));
    ::kill(pid.load(), SIGKILL);
    CHILD_REQUIRE(running.wait_for(30s));
    CHILD_REQUIRE(queued.wait_for(30s));
    if (!throws<mp::BrokenPool>([&] { running.get(); })) return 10;
    if (!throws<mp::BrokenPool>([&] { queued.get(); })) return 11;
    if (!throws<mp::BrokenPool>([&] { pool.apply(square, 1L); })) return 12;
    return 0;
  });
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
  NamedEvent hold("hold");
  NamedEvent started("started");
  const std::string other_pid_name = unique_name("otherpid");
  mp::RawValue<int> other_pid(mp::create_only, other_pid_name, 0);
  NamedEvent other_hold("otherhold");
  NamedEvent other_started("otherstarted");
  auto victim_call = pool.apply_async(report_pid_then_wait, pid_name, started.name, hold.name);
  auto other_call =
      pool.apply_async(report_pid_then_wait, other_pid_name, other_started.name, other_hold.name);
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

// ---- a lone call sent straight to an idle worker (issue 16) ------------------------------------

BOOST_AUTO_TEST_CASE(a_worker_killed_running_a_direct_call_fails_it, *boost::unit_test::timeout(120)) {
  // Nothing queued and the worker idle: the call skips the manager, which does not watch that
  // worker's pipe while the caller waits; its death must still fail the call, and only it.
  mp::Pool pool(1);
  BOOST_TEST(pool.apply(square, 2L) == 4);
  for (int round = 0; round < 2; ++round) {
    const std::string pid_name = unique_name("pid");
    mp::RawValue<int> pid(mp::create_only, pid_name, 0);
    NamedEvent hold("hold");
    NamedEvent started("started");
    auto call = pool.apply_async(report_pid_then_wait, pid_name, started.name, hold.name);
    BOOST_REQUIRE(started.wait_for(30s));
    if (round == 1) BOOST_TEST(!call.get_for(1ms).has_value());  // a waiter came and went
    ::kill(pid.load(), SIGKILL);
    try {
      call.get();
      BOOST_FAIL("a killed call returned");
    } catch (const mp::BrokenPool& e) {
      BOOST_TEST(std::string(e.what()).find("signal 9") != std::string::npos, e.what());
    }
    BOOST_TEST(pool.apply(square, 5L) == 25);  // replaced
  }
}

BOOST_AUTO_TEST_CASE(a_small_map_sent_straight_to_the_workers_fails_alone_when_one_dies_or_throws,
                     *boost::unit_test::timeout(120)) {
  // Its caller reads the replies (nothing queued, the workers idle): a death among its tasks must
  // fail it, whether the caller waits in get() or came and went (get_for) first, and an exception
  // in one task fails it with that error; the next small map is whole.
  mp::Pool pool(2);
  BOOST_TEST(pool.apply(square, 2L) == 4);
  for (int round = 0; round < 4; ++round) {
    if (round % 2 == 0) {
      BOOST_CHECK_THROW(pool.map(kill_myself_on, std::vector<long>{6, 7, 8}), mp::BrokenPool);
      // Dealt out a few at a time: the death comes with most of the call still to send.
      BOOST_CHECK_THROW(pool.map(kill_myself_on, range(200), 1), mp::BrokenPool);
    } else {
      auto r = pool.map_async(kill_myself_on, std::vector<long>{7, 8});
      try {
        (void)r.get_for(std::chrono::microseconds(100));  // a waiter that came and went
      } catch (const mp::BrokenPool&) {  // or saw the death already (a CI run did)
      }
      BOOST_CHECK_THROW(r.get(), mp::BrokenPool);
    }
    const auto before = pool.worker_pids();
    BOOST_CHECK_THROW(pool.map(fail_on_three, std::vector<long>{1, 2, 3, 4}), mp::RemoteError);
    BOOST_TEST((pool.map(square, std::vector<long>{1, 2, 3}) == std::vector<long>{1, 4, 9}));
    BOOST_TEST((pool.worker_pids() == before));  // an exception kills no one
  }
  // Within maxtasksperchild, which replaces workers between the small maps.
  mp::Pool short_lived(2, {}, 3);
  long sum = 0;
  for (int i = 0; i < 60; ++i) {
    for (long v : short_lived.map(square, std::vector<long>{i, i + 1})) sum += v;
  }
  long expect = 0;
  for (long i = 0; i < 60; ++i) expect += i * i + (i + 1) * (i + 1);
  BOOST_TEST(sum == expect);
}

BOOST_AUTO_TEST_CASE(a_worker_killed_mid_chunk_of_a_placed_map_fails_the_map, *boost::unit_test::timeout(120)) {
  // Results of plain values go straight into the result vector: a death mid-map must still fail
  // the map (not leave a half-filled vector), and the next map is whole.
  mp::Pool pool(2);
  for (int round = 0; round < 3; ++round) {
    BOOST_CHECK_THROW(pool.map(kill_myself_on, range(50000)), mp::BrokenPool);
    const auto squares = pool.map(square, range(50000));
    BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(50000));
  }
}

BOOST_AUTO_TEST_CASE(a_failed_map_never_sends_from_its_input_again, *boost::unit_test::timeout(120)) {
  // map() sends chunks of plain values straight from the caller's input, which may change or go
  // as soon as map() has returned. The worker dies in the first chunk: the chunk it had been sent
  // behind it, and those still queued, must be dropped with the failed call — not sent from the
  // input later (to the replacement, which says it is ready only after map() has returned here).
  // Overwritten with kPoison, the input must never reach a worker; freed, it must never be read
  // (ASan's run checks that).
  mp::Pool pool(1);
  mp::RawValue<int> poisoned(mp::create_only, poison_flag_name(::getpid()), 0);
  for (int round = 0; round < 4; ++round) {
    auto in = std::make_unique<std::vector<long>>(range(20000));
    BOOST_CHECK_THROW(pool.map(kill_myself_or_report_poison, *in, 100), mp::BrokenPool);
    if (round % 2 == 0) {
      std::fill(in->begin(), in->end(), kPoison);
    } else {
      in.reset();
    }
    const auto squares = pool.map(square, range(3000), 10);  // behind anything left queued
    BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(3000));
    BOOST_TEST(poisoned.load() == 0, "round " << round);
  }
  // The flag works: a map that does carry the poison raises it.
  BOOST_TEST(pool.map(kill_myself_or_report_poison, std::vector<long>{kPoison, 1}).front() == kPoison);
  BOOST_TEST(poisoned.load() == 1);
}

BOOST_AUTO_TEST_CASE(a_call_failed_by_a_death_finds_the_worker_already_replaced, *boost::unit_test::timeout(120)) {
  // The BrokenPool of a death is delivered after the replacement is started: the caller it wakes
  // finds the pool whole (and does not run while the manager forks).
  mp::Pool pool(2);
  for (int round = 0; round < 5; ++round) {
    const auto before = pool.worker_pids();
    BOOST_REQUIRE(before.size() == 2u);
    BOOST_CHECK_THROW(pool.apply(kill_myself_on, 7L), mp::BrokenPool);
    const auto after = pool.worker_pids();
    BOOST_TEST(after.size() == 2u);
    // One of the two is the dead one's replacement.
    const auto kept = std::count_if(after.begin(), after.end(), [&](pid_t p) {
      return std::find(before.begin(), before.end(), p) != before.end();
    });
    BOOST_TEST(kept == 1);
  }
}

BOOST_AUTO_TEST_CASE(terminate_during_a_burst_of_apply_async_ends_every_call, *boost::unit_test::timeout(120)) {
  // Threads keep submitting lone calls (straight to idle workers, or queued) and waiting for
  // them in every way while the pool is terminated: each call returns its right result or fails
  // with Error(bad_state) — none hangs, none returns a wrong value.
  mp::Pool pool(2);
  constexpr int kThreads = 3;
  std::atomic<long> done{0};
  std::atomic<long> failed{0};
  std::atomic<long> wrong{0};
  std::atomic<long> other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (long i = 0;; ++i) {  // until the pool refuses: every call after terminate() does
        try {
          auto r = pool.apply_async(square, i);
          long v = 0;
          if ((i + t) % 2 == 0) {
            v = r.get();
          } else {
            while (!r.ready()) {
            }
            v = r.get();
          }
          if (v == i * i) {
            ++done;
          } else {
            ++wrong;
          }
        } catch (const mp::Error& e) {
          if (e.code() != mp::errc::bad_state) {
            ++other;
            continue;
          }
          ++failed;
          return;
        }
      }
    });
  }
  BOOST_REQUIRE(eventually([&] { return done.load() >= 300; }, 60s));
  pool.terminate();
  pool.join();
  for (auto& t : threads) t.join();
  BOOST_TEST(wrong.load() == 0);
  BOOST_TEST(other.load() == 0);
  BOOST_TEST(failed.load() >= kThreads);  // each thread saw the pool terminated
  BOOST_CHECK_THROW(pool.apply_async(square, 1L), mp::Error);
}

BOOST_AUTO_TEST_SUITE_END()
