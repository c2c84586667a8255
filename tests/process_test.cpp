// Process: exit codes, join/join_for, terminate/kill, daemons, and the promise that a child never
// runs the parent's code after its target (atexit handlers, static destructors, test framework).
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

// What a process sees of itself, sent back over a Connection.
struct Identity {
  pid_t pid = 0;
  std::string name;
  bool daemon = false;
  pid_t parent_pid = -1;  // -1: parent_process() is nullopt
  std::string parent_name;
  bool parent_alive = false;
  std::size_t children = 0;  // active_children().size()
};

void send_identity(const mp::Connection& c) {
  const mp::ProcessInfo self = mp::current_process();
  const std::optional<mp::ProcessInfo> parent = mp::parent_process();
  c.send(static_cast<int>(self.pid()));
  c.send(self.name());
  c.send(static_cast<int>(self.daemon()));
  c.send(static_cast<int>(parent ? parent->pid() : -1));
  c.send(parent ? parent->name() : std::string());
  c.send(static_cast<int>(parent && parent->is_alive()));
  c.send(static_cast<int>(mp::active_children().size()));
}

Identity recv_identity(const mp::Connection& c) {
  BOOST_REQUIRE(c.poll(30s));
  Identity id;
  id.pid = c.recv<int>();
  id.name = c.recv<std::string>();
  id.daemon = c.recv<int>() != 0;
  id.parent_pid = c.recv<int>();
  id.parent_name = c.recv<std::string>();
  id.parent_alive = c.recv<int>() != 0;
  id.children = static_cast<std::size_t>(c.recv<int>());
  return id;
}

std::vector<pid_t> pids_of(const std::vector<mp::ProcessInfo>& infos) {
  std::vector<pid_t> out;
  for (const auto& i : infos) out.push_back(i.pid());
  return out;
}

// Whether `pid` is still our child in any state (running or a zombie): waitpid without reaping.
bool still_our_child(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

// Whether `pid` has ended but was not reaped yet.
bool is_zombie(pid_t pid) {
  siginfo_t info{};
  info.si_pid = 0;
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid;
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

// ---- current_process, parent_process, active_children ------------------------------------------

BOOST_AUTO_TEST_CASE(the_main_process_is_MainProcess_without_a_parent, *boost::unit_test::timeout(60)) {
  const mp::ProcessInfo self = mp::current_process();
  BOOST_TEST(self.pid() == ::getpid());
  BOOST_TEST(self.name() == "MainProcess");
  BOOST_TEST(!self.daemon());
  BOOST_TEST(self.is_alive());
  BOOST_TEST(!mp::parent_process().has_value());
  BOOST_TEST(mp::active_children().empty());
}

BOOST_AUTO_TEST_CASE(a_child_sees_itself_and_its_parent, *boost::unit_test::timeout(60)) {
  auto [r, w] = mp::Pipe(false);
  mp::Process p([w = w] { send_identity(w); });
  p.set_name("indexer");
  mp::Process d([w = w] { send_identity(w); });
  d.set_daemon(true);
  p.start();
  const Identity id = recv_identity(r);
  BOOST_TEST(id.pid == p.pid());
  BOOST_TEST(id.name == "indexer");
  BOOST_TEST(!id.daemon);
  BOOST_TEST(id.parent_pid == ::getpid());
  BOOST_TEST(id.parent_name == "MainProcess");
  BOOST_TEST(id.parent_alive);
  BOOST_TEST(id.children == 0u);
  d.start();
  const Identity did = recv_identity(r);
  BOOST_TEST(did.pid == d.pid());
  BOOST_TEST(did.name == d.name());  // the default "Process-<n>"
  BOOST_TEST(did.name.rfind("Process-", 0) == 0);
  BOOST_TEST(did.daemon);
  BOOST_TEST(did.parent_pid == ::getpid());
  BOOST_REQUIRE(p.join_for(30s));
  BOOST_REQUIRE(d.join_for(30s));
  BOOST_TEST(*p.exitcode() == 0);
  BOOST_TEST(*d.exitcode() == 0);
  w.close();
}

BOOST_AUTO_TEST_CASE(a_grandchild_sees_its_parent, *boost::unit_test::timeout(60)) {
  auto [r, w] = mp::Pipe(false);
  mp::RawValue<int> inner_pid(0);
  mp::Process outer([w = w, inner_pid]() mutable {
    send_identity(w);
    mp::Process inner([w] { send_identity(w); });
    inner.set_name("inner");
    inner.start();
    inner_pid.store(inner.pid());
    // While the grandchild runs, it is this process's one active child.
    const auto children = mp::active_children();
    CHILD_REQUIRE(children.size() == 1 || (children.empty() && !inner.is_alive()));
    CHILD_REQUIRE(children.empty() || (children[0].pid() == inner.pid() && children[0].name() == "inner"));
    inner.join();
    CHILD_REQUIRE(inner.exitcode() == 0);
    CHILD_REQUIRE(mp::active_children().empty());
    return 0;
  });
  outer.set_name("outer");
  outer.start();
  const Identity o = recv_identity(r);
  const Identity g = recv_identity(r);
  BOOST_REQUIRE(outer.join_for(30s));
  BOOST_TEST(*outer.exitcode() == 0);
  BOOST_TEST(o.name == "outer");
  BOOST_TEST(o.parent_pid == ::getpid());
  BOOST_TEST(g.pid == inner_pid.load());
  BOOST_TEST(g.name == "inner");
  BOOST_TEST(g.parent_pid == outer.pid());
  BOOST_TEST(g.parent_name == "outer");
  BOOST_TEST(g.children == 0u);
  w.close();
}

BOOST_AUTO_TEST_CASE(an_orphan_sees_its_dead_parent_as_not_alive, *boost::unit_test::timeout(60)) {
  auto [r, w] = mp::Pipe(false);
  Gate parent_gone;
  mp::Process outer([w = w, &parent_gone] {
    mp::Process inner([w, &parent_gone] {
      const auto before = mp::parent_process();
      w.send(static_cast<int>(before && before->is_alive()));
      if (!parent_gone.wait(30s)) return 1;
      const auto after = mp::parent_process();  // the same snapshot: reparenting changes nothing
      w.send(static_cast<int>(after ? after->pid() : -1));
      w.send(static_cast<int>(after && after->is_alive()));
      return 0;
    });
    inner.start();
    inner.join();  // killed in here
    return 0;
  });
  outer.start();
  BOOST_REQUIRE(r.poll(30s));
  BOOST_TEST(r.recv<int>() == 1);
  outer.kill();  // the grandchild is orphaned
  outer.join();
  parent_gone.signal();
  BOOST_REQUIRE(r.poll(30s));
  BOOST_TEST(r.recv<int>() == outer.pid());
  BOOST_REQUIRE(r.poll(30s));
  BOOST_TEST(r.recv<int>() == 0);
  w.close();
}

BOOST_AUTO_TEST_CASE(children_do_not_inherit_the_parents_children, *boost::unit_test::timeout(60)) {
  Gate release;
  std::vector<mp::Process> busy;
  for (int i = 0; i < 3; ++i) {
    busy.emplace_back([&] { return release.wait(60s) ? 0 : 3; });
    busy.back().set_daemon(true);  // ended by the destructor should a check below throw
    busy.back().start();
  }
  BOOST_REQUIRE(mp::active_children().size() == 3u);
  // A Process child: it starts with no children of its own, then has the one it starts.
  CHECK_CHILD([] {
    CHILD_REQUIRE(mp::active_children().empty());
    mp::Process own([] { return 4; });
    own.start();
    const auto listed = mp::active_children();
    CHILD_REQUIRE(listed.size() <= 1);
    CHILD_REQUIRE(listed.empty() || listed[0].pid() == own.pid());
    own.join();
    CHILD_REQUIRE(own.exitcode() == 4);
    return 0;
  });
  // A raw fork() child: no children either; it keeps its parent's name, and its parent is us.
  std::fflush(nullptr);
  const pid_t forker = ::getpid();
  const pid_t raw = ::fork();
  BOOST_REQUIRE(raw >= 0);
  if (raw == 0) {
    int code = 0;
    if (!mp::active_children().empty()) code |= 1;
    if (mp::current_process().name() != "MainProcess" || mp::current_process().pid() != ::getpid()) code |= 2;
    const auto parent = mp::parent_process();
    if (!parent || parent->pid() != forker || parent->name() != "MainProcess") code |= 4;
    ::_exit(code);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(raw, &status, 0) == raw);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);  // bits: 1 children, 2 self, 4 parent
  BOOST_TEST(mp::active_children().size() == 3u);  // the forks did not disturb ours
  for (int i = 0; i < 3; ++i) release.signal();
  for (auto& p : busy) BOOST_REQUIRE(p.join_for(30s));
  BOOST_TEST(mp::active_children().empty());
}

BOOST_AUTO_TEST_CASE(active_children_lists_live_ones_and_reaps_the_rest, *boost::unit_test::timeout(60)) {
  constexpr int n = 32;
  Gate release;
  mp::Event go;
  std::vector<mp::Process> ps;
  for (int i = 0; i < n; ++i) {
    // Even ones end with exit code i as soon as told; odd ones wait for the gate.
    ps.emplace_back([&, i] {
      if (i % 2 == 0) return go.wait_for(60s) ? i : 100;
      return release.wait(60s) ? i : 100;
    });
    ps.back().set_daemon(true);
    ps.back().start();
  }
  ps[1].set_name("renamed after start");
  std::vector<pid_t> all;
  for (const auto& p : ps) all.push_back(p.pid());
  const auto listed = mp::active_children();
  BOOST_TEST(pids_of(listed) == all, boost::test_tools::per_element());  // in start order
  BOOST_TEST(listed[1].name() == "renamed after start");
  BOOST_TEST(listed[2].name() == ps[2].name());
  BOOST_TEST(std::all_of(listed.begin(), listed.end(), [](const auto& c) { return c.is_alive(); }));
  BOOST_TEST(std::all_of(listed.begin(), listed.end(), [](const auto& c) { return c.daemon(); }));

  go.set();
  for (int i = 0; i < n; i += 2) {
    const pid_t pid = ps[i].pid();
    BOOST_REQUIRE(eventually([&] { return is_zombie(pid); }, 30s));
    BOOST_TEST(!listed[i].is_alive());  // the snapshot looks again, reaping nothing
    BOOST_TEST(is_zombie(pid));
  }
  const auto after = mp::active_children();
  std::vector<pid_t> odd;
  for (int i = 1; i < n; i += 2) odd.push_back(ps[i].pid());
  BOOST_TEST(pids_of(after) == odd, boost::test_tools::per_element());
  int sum = 0;
  for (int i = 0; i < n; i += 2) {
    BOOST_TEST(!still_our_child(ps[i].pid()));  // reaped: no zombie left
    BOOST_TEST(!ps[i].is_alive());
    sum += ps[i].exitcode().value();  // the Process objects kept the exit codes
    ps[i].join();                     // and joining again is fine
  }
  BOOST_TEST(sum == 2 * (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15));
  for (int i = 1; i < n; i += 2) release.signal();
  for (int i = 1; i < n; i += 2) BOOST_REQUIRE(ps[i].join_for(30s));
  BOOST_TEST(mp::active_children().empty());
  int odd_sum = 0;
  for (int i = 1; i < n; i += 2) odd_sum += *ps[i].exitcode();
  BOOST_TEST(odd_sum == 16 * 16);
}

BOOST_AUTO_TEST_CASE(active_children_after_kill_stop_move_and_destroy, *boost::unit_test::timeout(60)) {
  Gate never;
  std::vector<mp::Process> ps;
  for (int i = 0; i < 4; ++i) {
    ps.emplace_back([&] { never.wait(60s); });
    ps.back().set_daemon(true);
    ps.back().start();
  }
  const pid_t killed = ps[0].pid(), stopped = ps[1].pid(), moved = ps[2].pid(), destroyed = ps[3].pid();
  ::kill(stopped, SIGSTOP);
  ps[0].kill();
  BOOST_REQUIRE(eventually([&] { return is_zombie(killed); }, 30s));
  mp::Process target = std::move(ps[2]);
  std::vector<mp::ProcessInfo> listed = mp::active_children();
  BOOST_TEST((pids_of(listed) == std::vector<pid_t>{stopped, moved, destroyed}));
  BOOST_TEST(!still_our_child(killed));
  BOOST_TEST(*ps[0].exitcode() == -SIGKILL);
  ps.pop_back();  // a daemon: its destructor terminates and reaps it
  BOOST_TEST(!still_our_child(destroyed));
  BOOST_TEST(!listed[2].is_alive());  // a snapshot outlives the Process it described
  BOOST_TEST(listed[2].name().rfind("Process-", 0) == 0);
  BOOST_TEST((pids_of(mp::active_children()) == std::vector<pid_t>{stopped, moved}));
  target.kill();
  ps[1].kill();  // SIGKILL ends a stopped process too
  BOOST_REQUIRE(target.join_for(30s));
  BOOST_REQUIRE(ps[1].join_for(30s));
  BOOST_TEST(mp::active_children().empty());
}

BOOST_AUTO_TEST_CASE(active_children_on_another_thread_while_joining, *boost::unit_test::timeout(120)) {
  // active_children() may reap a child that another thread is joining: the join must still
  // return, with the right exit code (the status is collected once, under one lock).
  for (int round = 0; round < 4; ++round) {
    mp::Event go;
    std::vector<mp::Process> ps;
    for (int i = 0; i < 16; ++i) {
      ps.emplace_back([go](int k) { return go.wait_for(60s) ? k : 100; }, i);
      ps.back().start();
    }
    std::atomic<bool> stop{false};
    std::atomic<long> listings{0};
    std::thread lister = repeat_until(stop, listings, [] { (void)mp::active_children(); });
    int sum = 0;
    try {
      BOOST_REQUIRE(eventually([&] { return listings.load() > 0; }));
      go.set();  // they all end now, while the lister reaps what it finds ended
      for (int i = 0; i < 16; ++i) {
        if (i % 2 == 0) {
          ps[i].join();
        } else {
          BOOST_REQUIRE(ps[i].join_for(30s));
        }
        sum += ps[i].exitcode().value();
      }
    } catch (...) {
      stop.store(true);
      lister.join();
      throw;
    }
    stop.store(true);
    lister.join();
    BOOST_TEST(sum == 15 * 16 / 2);
    BOOST_TEST(mp::active_children().empty());
  }
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

// ---- the process module: the liveness query, and the order of the fork hooks ---------------

namespace {

namespace d = multiproc::detail;

// The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...), or 0.
char proc_state(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return 0;
  char buf[512] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const char* p = n > 0 ? std::strrchr(buf, ')') : nullptr;
  return p != nullptr && p[1] == ' ' ? p[2] : 0;
}

}  // namespace

BOOST_AUTO_TEST_CASE(liveness_of_self_a_live_child_a_reused_pid_a_zombie_and_a_reaped_child,
                     *boost::unit_test::timeout(60)) {
  const pid_t me = ::getpid();
  BOOST_TEST((d::process_liveness(me, d::current_start_time()) == d::Liveness::alive));
  BOOST_TEST((d::process_liveness(me, 0) == d::Liveness::alive));
  BOOST_TEST((d::process_liveness(0, 0) == d::Liveness::dead));
  BOOST_TEST((d::process_liveness(-1, 0) == d::Liveness::dead));

  Gate release;
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    release.wait(30s);
    ::_exit(0);
  }
  const std::uint64_t start = d::process_start_time(child);
  BOOST_TEST(start != 0u);
  BOOST_TEST((d::process_liveness(child, start) == d::Liveness::alive));
  BOOST_TEST((d::process_liveness(child, 0) == d::Liveness::alive));
  // The same pid with another start time: the pid was reused, the process we knew is dead.
  BOOST_TEST((d::process_liveness(child, start + 1) == d::Liveness::dead));
  release.signal();
  // Exited, not reaped: a zombie is dead.
  BOOST_REQUIRE(eventually([&] { return proc_state(child) == 'Z'; }));
  BOOST_TEST((d::process_liveness(child, start) == d::Liveness::dead));
  BOOST_TEST((d::process_liveness(child, 0) == d::Liveness::dead));
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  // Reaped (and, should the pid be reused meanwhile, the start time tells).
  BOOST_TEST((d::process_liveness(child, start) == d::Liveness::dead));
}

BOOST_AUTO_TEST_CASE(a_zombie_leader_whose_other_thread_runs_is_alive, *boost::unit_test::timeout(60)) {
  Gate release;
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    std::thread([&] {
      release.wait(30s);
      ::_exit(0);
    }).detach();
    ::syscall(SYS_exit, 0);  // ends the leader thread only, with no unwinding
  }
  const std::uint64_t start = d::process_start_time(child);
  BOOST_REQUIRE(eventually([&] { return proc_state(child) == 'Z'; }));  // the leader has exited
  BOOST_TEST((d::process_liveness(child, start) == d::Liveness::alive));
  BOOST_TEST((d::thread_liveness(child, child, start) == d::Liveness::dead));  // the leader
  release.signal();
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_TEST((d::process_liveness(child, start) == d::Liveness::dead));
}

BOOST_AUTO_TEST_CASE(thread_liveness_of_this_thread_an_ended_thread_and_a_dead_process,
                     *boost::unit_test::timeout(60)) {
  const pid_t me = ::getpid();
  const std::uint64_t start = d::current_start_time();
  BOOST_TEST((d::thread_liveness(me, d::current_tid(), start) == d::Liveness::alive));
  BOOST_TEST((d::thread_liveness(me, d::current_tid(), 0) == d::Liveness::alive));
  BOOST_TEST((d::thread_liveness(me, d::current_tid(), start + 1) == d::Liveness::dead));
  BOOST_TEST((d::thread_liveness(me, 0, start) == d::Liveness::dead));
  BOOST_TEST((d::thread_liveness(0, d::current_tid(), 0) == d::Liveness::dead));
  pid_t ended = 0;
  std::thread([&] { ended = d::current_tid(); }).join();
  BOOST_TEST(ended != d::current_tid());
  BOOST_TEST((d::thread_liveness(me, ended, start) == d::Liveness::dead));

  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_TEST((d::thread_liveness(child, child, 0) == d::Liveness::dead));
}

namespace {

// Wrappers around every stage's handlers that note the order they run in, and — in a child —
// whether a stage after `identity` could still see the parent's identity caches.
d::ForkHooks g_saved[d::kForkStages];
char g_trace[64];
std::atomic<unsigned> g_trace_len{0};
pid_t g_parent_pid = 0, g_parent_tid = 0;

void note(char c) noexcept {
  const unsigned i = g_trace_len.fetch_add(1);
  if (i < sizeof g_trace) g_trace[i] = c;
}

template <unsigned I>
void traced_prepare() noexcept {
  note(static_cast<char>('a' + I));
  if (g_saved[I].prepare != nullptr) g_saved[I].prepare();
}
template <unsigned I>
void traced_parent() noexcept {
  note(static_cast<char>('A' + I));
  if (g_saved[I].parent != nullptr) g_saved[I].parent();
}
template <unsigned I>
void traced_child() noexcept {
  if (I > 0 && (d::g_cached_pid.load() == g_parent_pid || d::tls_tid == g_parent_tid)) note('X');
  note(static_cast<char>('0' + I));
  if (g_saved[I].child != nullptr) g_saved[I].child();
}

template <std::size_t... I>
void trace_fork_stages(std::index_sequence<I...>) {
  ((g_saved[I] = d::registered_fork_hooks(static_cast<d::ForkStage>(I)),
    d::register_fork_hooks(static_cast<d::ForkStage>(I),
                           {&traced_prepare<I>, &traced_parent<I>, &traced_child<I>})),
   ...);
}

void restore_fork_stages() {
  for (unsigned i = 0; i < d::kForkStages; ++i) {
    d::register_fork_hooks(static_cast<d::ForkStage>(i), g_saved[i]);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(fork_hooks_run_in_stage_order_and_later_stages_see_the_childs_identity,
                     *boost::unit_test::timeout(60)) {
  // Every stage in use: a Pipe end held (pipe_holders, fences, segment registry through a name).
  auto [a, b] = mp::Pipe(mp::create_only, mptest::unique_name("hooks"));
  BOOST_REQUIRE(d::kForkStages == 6u);
  g_parent_pid = d::current_pid();
  g_parent_tid = d::current_tid();
  g_trace_len = 0;
  trace_fork_stages(std::make_index_sequence<d::kForkStages>{});
  int fds[2];
  BOOST_REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  if (child == 0) {
    const unsigned n = std::min<unsigned>(g_trace_len.load(), sizeof g_trace);
    (void)!::write(fds[1], g_trace, n);
    // The pipe_holders stage made this child a holder of a's end: it can still send on it.
    a.send(7);
    ::_exit(0);
  }
  restore_fork_stages();
  BOOST_REQUIRE(child > 0);
  ::close(fds[1]);
  const std::string in_parent(g_trace, std::min<unsigned>(g_trace_len.load(), sizeof g_trace));
  std::string in_child;
  char buf[64];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) in_child.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(in_parent == "fedcbaABCDEF");  // prepare in reverse stage order, parent in order
  BOOST_TEST(in_child == "fedcba012345");   // child in order; no 'X': identity came first
  BOOST_TEST(b.recv<int>() == 7);
}

BOOST_AUTO_TEST_SUITE_END()
