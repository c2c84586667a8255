// The process module (include/multiproc/detail/this_process.hpp, fork_hooks.hpp, and
// src/process/liveness.hpp): the liveness query on live, zombie, reaped and reused processes and
// threads, and the order in which the fork hooks run. Private interfaces, tested directly.
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

BOOST_FIXTURE_TEST_SUITE(this_process, Clean)

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
  // Exited, not reaped: a zombie is dead — once all its threads are gone. The leader shows 'Z'
  // a moment before a second thread has finished exiting (under TSan every forked child has one,
  // TSan's background thread), and a zombie leader with a live thread is rightly alive
  // (a_zombie_leader_whose_other_thread_runs_is_alive): so the verdict is polled.
  BOOST_REQUIRE(eventually([&] { return proc_state(child) == 'Z'; }));
  BOOST_TEST(eventually([&] { return d::process_liveness(child, start) == d::Liveness::dead; }));
  BOOST_TEST((d::process_liveness(child, start) == d::Liveness::dead));  // and stays dead
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
