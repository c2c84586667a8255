// Test support: unique names, children (forked or re-executed), and leak checks.
//
// - unique_name("x") gives a name no other test run uses: "t<pid>.<counter>.x". Children started
//   with spawn() inherit the run's prefix, so every name a run makes is recognisable and the
//   global fixture can check that /dev/shm holds none of them at the end.
// - run_child(f) forks (through multiproc::Process) and returns the child's exit code, killing it
//   if it outlives its timeout; CHECK_CHILD(f) checks that it exited with 0.
// - Scenarios: MPTEST_SCENARIO(name) { ... } defines a function that an unrelated process (the
//   test binary re-executed with `--scenario name args...`) runs; spawn("name", {args}) starts it.
// - Gate: a one-shot signal between processes over a pipe (for tests of the primitives that a
//   library Event would otherwise provide), never a sleep.
#pragma once

#include <multiproc/multiproc.hpp>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <sched.h>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace mptest {

namespace mp = multiproc;
using namespace std::chrono_literals;

//! A name unique to this test run and call.
std::string unique_name(const std::string& what);

//! The prefix of every name this run makes ("t<pid>.").
const std::string& run_prefix();

//! Runs f in a forked child; returns its exit code (see Process::exitcode). If the child is still
//! running after `timeout`, kills it and returns -SIGKILL after reporting a test failure.
int run_child(std::function<int()> f, std::chrono::milliseconds timeout = 30s);

#define CHECK_CHILD(...) BOOST_CHECK_EQUAL(::mptest::run_child(__VA_ARGS__), 0)

//! Child-side check: prints the failing expression and makes the child exit with 1.
#define CHILD_REQUIRE(cond)                                                                \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "%s:%d: child check failed: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

using ScenarioFn = int (*)(const std::vector<std::string>& args);
struct ScenarioRegistration {
  ScenarioRegistration(const char* name, ScenarioFn fn);
};
#define MPTEST_SCENARIO(name)                                                      \
  static int mptest_scenario_##name(const std::vector<std::string>& args);         \
  static ::mptest::ScenarioRegistration mptest_register_##name(#name,              \
                                                               &mptest_scenario_##name); \
  static int mptest_scenario_##name(const std::vector<std::string>& args)

//! An unrelated process: the test binary re-executed to run a scenario.
class Spawned {
 public:
  Spawned(const std::string& scenario, const std::vector<std::string>& args);
  Spawned(Spawned&& other) noexcept;
  Spawned(const Spawned&) = delete;
  ~Spawned();  // kills and reaps a still running process
  pid_t pid() const noexcept { return pid_; }
  //! Waits up to `timeout` for it to exit; returns the exit code (as Process::exitcode), or kills
  //! it, reports a failure and returns -SIGKILL on timeout.
  int wait(std::chrono::milliseconds timeout = 30s);
  void kill_now();

 private:
  pid_t pid_ = 0;
  int pidfd_ = -1;
  bool reaped_ = false;
  int code_ = 0;
};

//! Dispatches `--scenario name args...`; returns -1 when argv is not a scenario call.
int run_scenario_if_requested(int argc, char** argv);

//! A one-shot, cross-process signal over a pipe: open() before fork, then one side signal()s and
//! the other wait()s (with a timeout). Either side may close its end; a closed writer wakes the
//! reader with false.
class Gate {
 public:
  Gate();
  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  void signal(char c = '!');
  //! Returns true when signalled within the timeout; false on timeout or when the writer closed.
  bool wait(std::chrono::milliseconds timeout = 30s);
  char last() const noexcept { return last_; }
  void close_write();

 private:
  int fds_[2] = {-1, -1};
  char last_ = 0;
};

//! Seconds elapsed since `start`.
double seconds_since(std::chrono::steady_clock::time_point start);

//! CPU time this process has used, in seconds.
double cpu_seconds();

//! Whether `pid` is stopped (SIGSTOP): state T (or t) in /proc/<pid>/stat.
bool is_stopped(pid_t pid);
//! Whether every thread of `pid` has stopped (state T). kill(SIGSTOP) returns before a thread
//! running on another CPU has stopped: a server thread spinning in recv can still answer a call
//! sent right after it.
bool all_threads_stopped(pid_t pid);

//! Continues the stopped processes when it goes out of scope (a failed check must not leave a
//! stopped child for Process's destructor to join forever).
struct ContinueAtExit {
  std::vector<pid_t> pids;
  ~ContinueAtExit();
};

//! Pins this process (and the children it forks while pinned) to one CPU, the first it may run
//! on; restores the old mask when it goes out of scope. ok(): whether pinning worked.
class PinnedToOneCpu {
 public:
  PinnedToOneCpu();
  ~PinnedToOneCpu();
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;
  bool ok() const noexcept { return ok_; }

 private:
  cpu_set_t old_{};
  bool ok_ = false;
};

//! Waits (polling /proc with a deadline) until `pid` sleeps in the kernel, i.e. has blocked.
bool wait_until_sleeping(pid_t pid, std::chrono::milliseconds timeout = 10s);

//! Starts n Processes running body(0) ... body(n - 1) (each returns the child's exit code).
std::vector<std::unique_ptr<mp::Process>> start_all(int n, const std::function<int(int)>& body);
//! Joins each (60 s at most) and checks that it exited with 0.
void join_all_ok(std::vector<std::unique_ptr<mp::Process>>& ps);

//! Waits (polling /proc/<pid>/syscall with a deadline) until `pid` is blocked in a futex wait —
//! inside a multiproc lock, semaphore, event, condition or barrier, not anywhere else.
bool wait_until_in_futex(pid_t pid, std::chrono::milliseconds timeout = 10s);

//! Polls `done` until it is true or the timeout passes (for conditions no primitive signals, such
//! as "n processes are now waiting"); returns its last value.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s);

//! Whether a process with this pid exists and is not a zombie.
bool pid_running(pid_t pid);

//! Whether `pid` is still our child in any state (running or a zombie): waitid without reaping.
bool still_our_child(pid_t pid);

//! Whether our child `pid` has ended but was not reaped yet.
bool is_zombie(pid_t pid);

//! Whether this build runs under ThreadSanitizer (whose shadow memory makes RLIMIT_AS games
//! meaningless).
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#else
inline constexpr bool kThreadSanitizer = false;
#endif
//! A precondition for tests that cannot run under ThreadSanitizer (skipped, saying why).
inline boost::test_tools::assertion_result not_under_thread_sanitizer(
    boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(!kThreadSanitizer);
  r.message() << "limits the address space, which ThreadSanitizer's shadow memory fills";
  return r;
}

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif
//! A precondition for tests that need malloc to fail cleanly (std::bad_alloc) under a lowered
//! RLIMIT_AS: skipped under ThreadSanitizer (above) and AddressSanitizer, whose allocator
//! reports an allocation it cannot make and aborts.
inline boost::test_tools::assertion_result not_under_sanitizers(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(!kThreadSanitizer && !kAddressSanitizer);
  r.message() << "needs malloc to fail under a lowered RLIMIT_AS; a sanitizer's allocator aborts";
  return r;
}

//! Lowers this process's RLIMIT_AS (soft) to what it has mapped now plus `headroom` bytes
//! (negative: less than now). Returns whether it could.
bool limit_address_space(long long headroom);
//! Raises this process's RLIMIT_AS (soft) back to its hard limit. Returns whether it could.
bool lift_address_space_limit();

//! The children of every thread of this process (from /proc/self/task/*/children), zombies too —
//! except ThreadSanitizer's llvm-symbolizer.
std::vector<pid_t> running_children();

//! Whether e's message contains `part` (printed when it does not).
bool message_has(const std::exception& e, const std::string& part);

//! Runs f, which must throw an Error with `code` and a message containing every part.
template <class F>
void expect_error(F&& f, mp::errc code, std::initializer_list<std::string> parts) {
  try {
    f();
    BOOST_ERROR("no error thrown");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::make_error_code(code)),
               "code was " << e.code().message() << ": " << e.what());
    for (const auto& part : parts) BOOST_TEST(message_has(e, part), "missing '" << part << "'");
  }
}

//! Runs f, which must throw an Error with `code` (any message).
template <class F>
void expect_errc(F&& f, mp::errc code) {
  try {
    f();
    BOOST_ERROR("no error thrown");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::make_error_code(code)), e.what());
  }
}

//! Child-side expect_errc, for CHECK_CHILD: 0 when f throws an Error with `code`, 2 when it throws
//! one with another code, 1 when it does not throw.
template <class F>
int child_expect_errc(F&& f, mp::errc code) {
  try {
    f();
  } catch (const mp::Error& e) {
    return e.code() == code ? 0 : 2;
  }
  return 1;
}

//! Starts a thread that calls f() over and over until `stop` is set, adding one to `rounds` after
//! each call. The caller sets `stop` and joins the thread (on every path, exceptions included).
std::thread repeat_until(const std::atomic<bool>& stop, std::atomic<long>& rounds,
                         std::function<void()> f);

//! Names of /dev/shm entries made by this run (beginning with "mp." + run_prefix()).
std::vector<std::string> leftover_segments();

}  // namespace mptest

namespace mptest {

//! Per-test fixture (BOOST_FIXTURE_TEST_SUITE(suite, mptest::Clean)): after each test, fails it if
//! it left a segment in /dev/shm or an unreaped child process, and cleans up either.
struct Clean {
  void setup() {}
  void teardown();
};

}  // namespace mptest
