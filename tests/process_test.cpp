// Process: exit codes, join/join_for, terminate/kill, daemons, and the promise that a child never
// runs the parent's code after its target (atexit handlers, static destructors, test framework).
// current_process()/parent_process()/active_children() are in process_info_test.cpp (same suite),
// the process module (liveness, fork-hook order) in this_process_test.cpp.
#include "support/support.hpp"

#include "../src/process/liveness.hpp"  // the liveness query (private)

#include <multiproc/detail/fork_hooks.hpp>
#include <multiproc/detail/this_process.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdexcept>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <functional>
#include <thread>
#include <unistd.h>
#include <utility>

using namespace mptest;

namespace {

// Runs `body` in a forked child whose stderr (fd 2) goes to a pipe; returns what it wrote and,
// in *code, the exit code of the Process it started.
std::string capture_stderr(const std::function<int()>& body) {
  int fds[2];
  BOOST_REQUIRE(::pipe(fds) == 0);
  mp::Process p([&] {
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    return body();
  });
  p.start();
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  BOOST_REQUIRE(p.join_for(30s));
  return out + "|exit=" + std::to_string(*p.exitcode());
}

mp::RawValue<int>& atexit_runs() {
  static mp::RawValue<int> runs(0);
  return runs;
}
void count_atexit() { atexit_runs().store(atexit_runs().load() + 1); }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(process, Clean)

BOOST_AUTO_TEST_CASE(exit_code_is_the_int_the_target_returns, *boost::unit_test::timeout(60)) {
  mp::Process p([] { return 7; });
  BOOST_TEST(p.pid() == 0);
  BOOST_TEST(!p.exitcode().has_value());
  p.start();
  BOOST_TEST(p.pid() > 0);
  p.join();
  BOOST_TEST(p.exitcode().value() == 7);
  BOOST_TEST(!p.is_alive());

  mp::Process v([] {});
  v.start();
  v.join();
  BOOST_TEST(v.exitcode().value() == 0);

  mp::Process wide([] { return 300L; });  // the OS keeps the low 8 bits
  wide.start();
  wide.join();
  BOOST_TEST(wide.exitcode().value() == 44);

  mp::Process empty;
  empty.start();
  empty.join();
  BOOST_TEST(empty.exitcode().value() == 0);

  mp::Process minus_one([] { return -1; });
  minus_one.start();
  minus_one.join();
  BOOST_TEST(minus_one.exitcode().value() == 255);
}

BOOST_AUTO_TEST_CASE(a_bool_result_is_not_an_exit_code, *boost::unit_test::timeout(60)) {
  // true would read as exit code 1, a failure: a bool result is ignored, as Python ignores the
  // target's return value.
  mp::Process t([] { return true; });
  mp::Process f([] { return false; });
  mp::Process c([] { return static_cast<unsigned char>(9); });  // other integral types count
  t.start();
  f.start();
  c.start();
  t.join();
  f.join();
  c.join();
  BOOST_TEST(t.exitcode().value() == 0);
  BOOST_TEST(f.exitcode().value() == 0);
  BOOST_TEST(c.exitcode().value() == 9);
}

BOOST_AUTO_TEST_CASE(arguments_are_copied_into_the_child, *boost::unit_test::timeout(60)) {
  mp::SharedValue<long> out(0);
  std::string text = "four";
  mp::Process p([out](const std::string& s, int k, std::vector<int> v) {
    out.store(static_cast<long>(s.size()) * k + v.at(2));
  }, text, 10, std::vector<int>{1, 2, 3});
  text = "changed after construction";
  p.start();
  p.join();
  BOOST_TEST(out.load() == 43);
}

BOOST_AUTO_TEST_CASE(uncaught_exception_exits_1_and_names_the_type, *boost::unit_test::timeout(60)) {
  const std::string out = capture_stderr([] {
    mp::Process inner([]() -> int { throw std::runtime_error("boom at step 3"); });
    inner.set_name("worker-7");
    inner.start();
    inner.join();
    return *inner.exitcode();
  });
  BOOST_TEST(out.find("worker-7") != std::string::npos, out);
  BOOST_TEST(out.find("std::runtime_error") != std::string::npos, out);
  BOOST_TEST(out.find("boom at step 3") != std::string::npos, out);
  BOOST_TEST(out.find("|exit=1") != std::string::npos, out);

  const std::string other = capture_stderr([] {
    mp::Process inner([] { throw 42; });
    inner.start();
    inner.join();
    return *inner.exitcode();
  });
  BOOST_TEST(other.find("unknown type") != std::string::npos, other);
  BOOST_TEST(other.find("|exit=1") != std::string::npos, other);
}

BOOST_AUTO_TEST_CASE(killed_child_reports_minus_the_signal, *boost::unit_test::timeout(60)) {
  Gate never;
  mp::Process k([&] { never.wait(60s); });
  k.start();
  k.kill();
  k.join();
  BOOST_TEST(k.exitcode().value() == -SIGKILL);

  mp::Process t([&] { never.wait(60s); });
  t.start();
  t.terminate();
  t.join();
  BOOST_TEST(t.exitcode().value() == -SIGTERM);

  mp::Process a([] { std::abort(); });
  a.start();
  a.join();
  BOOST_TEST(a.exitcode().value() == -SIGABRT);
}

BOOST_AUTO_TEST_CASE(crash_signals_take_their_default_action_in_the_child, *boost::unit_test::timeout(60)) {
  // Boost.Test, like many frameworks, installs handlers for SIGSEGV and friends in this process.
  // The child must die of the signal instead of running them (and the rest of the suite).
  mp::Process segv([] {
    ::raise(SIGSEGV);
    return 0;
  });
  segv.start();
  segv.join();
  BOOST_TEST(segv.exitcode().value() == -SIGSEGV);
  mp::Process fpe([] {
    ::raise(SIGFPE);
    return 0;
  });
  fpe.start();
  fpe.join();
  BOOST_TEST(fpe.exitcode().value() == -SIGFPE);
}

BOOST_AUTO_TEST_CASE(join_for_times_out_while_the_child_runs, *boost::unit_test::timeout(60)) {
  Gate release;
  mp::Process p([&] { return release.wait(60s) ? 0 : 3; });
  p.start();
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!p.join_for(100ms));
  BOOST_TEST(seconds_since(start) >= 0.099);
  BOOST_TEST(p.is_alive());
  BOOST_TEST(!p.exitcode().has_value());
  BOOST_TEST(!p.join_until(std::chrono::system_clock::now() + 20ms));
  release.signal();
  BOOST_TEST(p.join_for(30s));
  BOOST_TEST(!p.is_alive());
  BOOST_TEST(p.exitcode().value() == 0);
  BOOST_TEST(p.join_for(0s));  // already reaped
}

BOOST_AUTO_TEST_CASE(sentinel_becomes_readable_when_the_child_ends, *boost::unit_test::timeout(60)) {
  Gate release;
  mp::Process p([&] { release.wait(60s); });
  BOOST_TEST(p.sentinel() == -1);
  p.start();
  BOOST_REQUIRE(p.sentinel() >= 0);
  pollfd pfd{p.sentinel(), POLLIN, 0};
  BOOST_TEST(::poll(&pfd, 1, 0) == 0);
  release.signal();
  BOOST_TEST(::poll(&pfd, 1, 30000) == 1);
  p.join();
}

BOOST_AUTO_TEST_CASE(misuse_is_an_error, *boost::unit_test::timeout(60)) {
  mp::Process p([] {});
  BOOST_CHECK_THROW(p.join(), mp::Error);
  BOOST_CHECK_THROW(p.terminate(), mp::Error);
  BOOST_CHECK_THROW(p.join_for(1ms), mp::Error);
  p.start();
  try {
    p.start();
    BOOST_FAIL("started twice");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
    BOOST_TEST(std::string(e.what()).find(p.name()) != std::string::npos);
  }
  BOOST_CHECK_THROW(p.set_daemon(true), mp::Error);
  p.join();
  p.terminate();  // after the end: nothing to signal, no error
  p.kill();
}

BOOST_AUTO_TEST_CASE(names_default_to_a_counter_and_can_be_set, *boost::unit_test::timeout(60)) {
  mp::Process a([] {}), b([] {});
  BOOST_TEST(a.name().rfind("Process-", 0) == 0);
  BOOST_TEST(a.name() != b.name());
  b.set_name("indexer");
  BOOST_TEST(b.name() == "indexer");
  BOOST_TEST(!b.daemon());
}

BOOST_AUTO_TEST_CASE(child_never_runs_the_parents_atexit_handlers, *boost::unit_test::timeout(60)) {
  atexit_runs();  // created before the fork (and before the handler, which outlives it)
  static bool registered = false;
  if (!registered) {
    std::atexit(&count_atexit);
    registered = true;
  }
  mp::Process p([] { return 0; });
  p.start();
  p.join();
  BOOST_TEST(p.exitcode().value() == 0);
  BOOST_TEST(atexit_runs().load() == 0);
}

BOOST_AUTO_TEST_CASE(buffered_output_is_not_printed_twice, *boost::unit_test::timeout(60)) {
  int fds[2];
  BOOST_REQUIRE(::pipe(fds) == 0);
  // An intermediate process with stdout on a pipe writes "A" without flushing, then starts a
  // Process that writes "B". Without the flush before fork, the child would print "A" again.
  const int code = run_child([&] {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    std::fputs("A", stdout);
    std::cout << "a";
    mp::Process p([] {
      std::fputs("B", stdout);
      std::cout << "b";
    });
    p.start();
    p.join();
    return 0;
  });
  ::close(fds[1]);
  std::string out;
  char buf[64];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  BOOST_TEST(code == 0);
  BOOST_TEST(out == "AaBb");
}

BOOST_AUTO_TEST_CASE(destroying_a_started_process_joins_it, *boost::unit_test::timeout(60)) {
  mp::SharedValue<int> done(0);
  Gate release;
  {
    mp::Process p([&] {
      release.wait(60s);
      done.store(1);
    });
    p.start();
    release.signal();
  }  // joins here
  BOOST_TEST(done.load() == 1);
}

BOOST_AUTO_TEST_CASE(destroying_a_daemon_terminates_it, *boost::unit_test::timeout(60)) {
  Gate never;
  pid_t pid = 0;
  {
    mp::Process d([&] { never.wait(120s); });
    d.set_daemon(true);
    BOOST_TEST(d.daemon());
    d.start();
    pid = d.pid();
    BOOST_TEST(pid_running(pid));
  }
  BOOST_TEST(!pid_running(pid));  // terminated and reaped
}

BOOST_AUTO_TEST_CASE(daemon_dies_with_its_parent, *boost::unit_test::timeout(60)) {
  mp::RawValue<int> daemon_pid(0);
  Gate started, never;
  mp::Process parent([&] {
    mp::Process d([&] { never.wait(120s); });
    d.set_daemon(true);
    d.start();
    daemon_pid.store(d.pid());
    started.signal();
    never.wait(120s);
  });
  parent.start();
  BOOST_REQUIRE(started.wait());
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, daemon_pid.load(), 0));
  BOOST_REQUIRE(pidfd >= 0);
  parent.kill();  // no destructors run in the parent: only the kernel can end the daemon
  parent.join();
  pollfd pfd{pidfd, POLLIN, 0};
  BOOST_TEST(::poll(&pfd, 1, 10000) == 1);  // the daemon ended
  ::close(pidfd);
}

BOOST_AUTO_TEST_CASE(a_daemon_dies_with_the_thread_that_started_it_even_one_that_ends_at_once,
                     *boost::unit_test::timeout(60)) {
  // The parent-death signal follows the forking thread, and only from the child's prctl on: a
  // thread that ended before it left its daemon running (an outside probe: 20 of 20).
  for (int trial = 0; trial < 5; ++trial) {
    Gate never;
    mp::Process d([&] { never.wait(120s); });
    d.set_daemon(true);
    std::thread([&] { d.start(); }).join();
    BOOST_REQUIRE(d.join_for(20s));
    BOOST_TEST(d.exitcode().value() == -SIGKILL);
  }
}

BOOST_AUTO_TEST_CASE(a_std_function_is_a_target, *boost::unit_test::timeout(60)) {
  const std::function<int()> f = [] { return 3; };  // matched a private constructor before
  mp::Process p(f);
  p.start();
  p.join();
  BOOST_TEST(p.exitcode().value() == 3);
  std::function<void(int)> g = [](int) {};
  mp::Process q(g, 4);
  q.start();
  q.join();
  BOOST_TEST(q.exitcode().value() == 0);
}

BOOST_AUTO_TEST_CASE(moved_processes_keep_their_child, *boost::unit_test::timeout(60)) {
  std::vector<mp::Process> ps;
  for (int i = 0; i < 3; ++i) ps.emplace_back([](int k) { return k; }, i + 1);
  for (auto& p : ps) p.start();
  mp::Process moved = std::move(ps[1]);
  BOOST_TEST(ps[1].pid() == 0);
  moved.join();
  BOOST_TEST(moved.exitcode().value() == 2);
  ps[0].join();
  ps[2].join();
  BOOST_TEST(ps[0].exitcode().value() + ps[2].exitcode().value() == 4);
  mp::Process assigned([] { return 5; });
  assigned.start();
  assigned = mp::Process([] { return 6; });  // joins the first child
  assigned.start();
  assigned.join();
  BOOST_TEST(assigned.exitcode().value() == 6);
}

BOOST_AUTO_TEST_CASE(many_children_are_all_reaped, *boost::unit_test::timeout(120)) {
  mp::SharedValue<long> sum(0);
  std::vector<mp::Process> ps;
  for (int i = 0; i < 64; ++i) {
    ps.emplace_back([sum](int k) { sum.update([k](long& s) { s += k; }); }, i);
    ps.back().start();
  }
  for (auto& p : ps) BOOST_REQUIRE(p.join_for(60s));
  BOOST_TEST(sum.load() == 63 * 64 / 2);
  // The fixture checks that no zombie or running child is left.
}

BOOST_AUTO_TEST_CASE(pthread_exit_in_the_target_ends_the_child, *boost::unit_test::timeout(60)) {
  // The target's thread must not unwind into the frames the child shares with the parent (here,
  // the test framework's): the child ends instead.
  mp::Process p([] { ::pthread_exit(nullptr); });
  p.start();
  BOOST_REQUIRE(p.join_for(30s));
  BOOST_TEST(*p.exitcode() == 0);
}

// ---- close() ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(close_refuses_a_running_child_then_releases_everything, *boost::unit_test::timeout(60)) {
  Gate release;
  auto held = std::make_shared<int>(7);
  mp::Process p([&release, held] { return release.wait(60s) ? *held : 100; });
  p.set_name("closer");
  p.start();
  try {
    p.close();
    BOOST_FAIL("close() of a running process");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
    BOOST_TEST(std::string(e.what()).find("closer") != std::string::npos, e.what());
  }
  BOOST_TEST(p.is_alive());  // still usable
  BOOST_TEST(mp::active_children().size() == 1u);
  const int fd = p.sentinel();
  BOOST_REQUIRE(fd >= 0);
  BOOST_TEST(held.use_count() == 2);
  release.signal();
  p.join();
  BOOST_TEST(*p.exitcode() == 7);
  p.close();
  p.close();  // twice is fine
  BOOST_TEST(::fcntl(fd, F_GETFD) == -1);  // the pidfd is closed
  BOOST_TEST(held.use_count() == 1);       // the target and what it captured are gone
  BOOST_TEST(p.sentinel() == -1);
  BOOST_TEST(p.name() == "closer");
  BOOST_TEST(p.pid() > 0);
  auto closed_error = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const mp::Error& e) {
      return e.code() == mp::errc::bad_state && std::string(e.what()).find("closed") != std::string::npos &&
             std::string(e.what()).find("closer") != std::string::npos;
    }
    return false;
  };
  BOOST_TEST(closed_error([&] { p.start(); }));
  BOOST_TEST(closed_error([&] { p.join(); }));
  BOOST_TEST(closed_error([&] { p.join_for(1ms); }));
  BOOST_TEST(closed_error([&] { p.is_alive(); }));
  BOOST_TEST(closed_error([&] { p.exitcode(); }));
  BOOST_TEST(closed_error([&] { p.terminate(); }));
  BOOST_TEST(closed_error([&] { p.kill(); }));
  BOOST_TEST(closed_error([&] { p.set_daemon(true); }));
  BOOST_TEST(closed_error([&] { mp::wait({p}, 0ms); }));
  mp::Process moved = std::move(p);  // stays closed
  BOOST_TEST(closed_error([&] { moved.join(); }));
}

BOOST_AUTO_TEST_CASE(close_reaps_an_ended_unjoined_child, *boost::unit_test::timeout(60)) {
  mp::Process p([] { return 3; });
  p.start();
  const pid_t pid = p.pid();
  BOOST_REQUIRE(eventually([&] { return is_zombie(pid); }, 30s));
  p.close();
  BOOST_TEST(!still_our_child(pid));  // no zombie left
  BOOST_TEST(mp::active_children().empty());
}

BOOST_AUTO_TEST_CASE(close_before_start_means_it_never_starts, *boost::unit_test::timeout(60)) {
  mp::Process p([] {});
  p.close();
  BOOST_CHECK_THROW(p.start(), mp::Error);
  BOOST_TEST(p.pid() == 0);
  mp::Process q;
  q.close();
  q = mp::Process([] { return 2; });  // assigning a fresh one reopens the variable
  q.start();
  q.join();
  BOOST_TEST(*q.exitcode() == 2);
}

BOOST_AUTO_TEST_CASE(close_after_an_outside_reap_does_not_throw, *boost::unit_test::timeout(60)) {
  mp::Process p([] { return 5; });
  p.start();
  int status = 0;
  BOOST_REQUIRE(::waitpid(p.pid(), &status, 0) == p.pid());  // someone else collects it
  p.close();  // nothing left to release but our own resources
  mp::Process q([] { return 6; });
  q.start();
  BOOST_REQUIRE(::waitpid(q.pid(), &status, 0) == q.pid());
  BOOST_CHECK_THROW(q.join(), mp::Error);  // reported once...
  q.join();                                // ...then it counts as ended, with no exit code
  BOOST_TEST(!q.exitcode().has_value());
  BOOST_TEST(mp::active_children().empty());
}

BOOST_AUTO_TEST_CASE(cpu_count_is_positive, *boost::unit_test::timeout(60)) { BOOST_TEST(mp::cpu_count() >= 1); }

BOOST_AUTO_TEST_SUITE_END()
