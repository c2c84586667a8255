// multiproc/process.hpp — run a callable in a forked child process (Python's
// multiprocessing.Process with the "fork" start method).
//
//   mp::SharedValue<long> total(0);
//   mp::Process p([total](int n) { total.update([&](long& t) { t += n; }); }, 42);
//   p.start();
//   p.join();                       // p.exitcode() == 0, total.load() == 42
//
// The child is a fork() of the calling process: it sees a copy of the parent's memory, and every
// multiproc handle it inherited (captured by the callable or passed as an argument) refers to the
// same shared object. Arguments are decay-copied when the Process is constructed.
//
// Exit code: an int returned by the callable (0..255 as the OS keeps it; other integral types are
// converted to int), 0 for any other return type; 1 for an uncaught exception, whose type and
// what() the child prints to stderr first; -N when signal N killed it. The child never returns
// into the parent's code: it leaves with _exit() after flushing stdio, so the parent's static
// destructors, atexit handlers and test framework never run in it. The parent flushes its own
// stdio before fork so that buffered output is not printed twice. Synchronous crash signals
// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS) are reset to their default action
// in the child, so a crash ends the child and shows in exitcode() instead of running a handler
// the parent installed.
//
// Handles the callable and the arguments hold by value belong to the child: a Pipe end captured
// that way counts the child as one of its holders from start() on (see pipe.hpp), while ends the
// child merely inherits with the rest of the parent's memory do not.
//
// A target that calls pthread_exit() ends the child (exit code 0), other threads included: its
// thread cannot unwind into the frames it shares with the parent.
//
// Destroying a started, unjoined Process joins it; a daemon child is terminated (SIGTERM, then
// SIGKILL after a second) and reaped. A daemon child is also killed if the thread that started it
// exits (Linux's parent-death signal), so it never outlives its parent. Not thread-safe: one
// thread at a time uses a given Process. Fork in a program with other threads has the usual
// limits: only the forking thread exists in the child.
#pragma once

#include <multiproc/detail/fork_hooks.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/error.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <tuple>
#include <type_traits>
#include <utility>

namespace multiproc {

class Process {
 public:
  //! An empty Process: start() runs nothing and the child exits with 0.
  Process();

  //! Effects: stores f and decay-copies of args; the child will run f(args...).
  //! Requires: f(args...) is callable on the copies.
  template <class F, class... Args,
            class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Process> &&
                                     std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>>>
  explicit Process(F&& f, Args&&... args) : Process(Target{}) {
    // Record the handles the target captures by value (a Pipe end counts the child as holding
    // only those: see pipe.hpp).
    detail::Captured* outer = detail::current_capture();
    detail::current_capture() = &captured_;
    try {
      target_ = make_target(std::forward<F>(f), std::forward<Args>(args)...);
    } catch (...) {
      detail::current_capture() = outer;
      throw;
    }
    detail::current_capture() = outer;
  }

  Process(Process&& other) noexcept;
  //! Effects: finishes the current child as the destructor does, then takes other's.
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  //! Effects: joins an unjoined child (a daemon is terminated first). Never throws.
  ~Process();

  //! Effects: forks the child, which runs the target and exits.
  //! Throws: Error(errc::bad_state) if already started; Error from errno if fork fails.
  void start();

  //! Effects: waits for the child to end and reaps it.
  //! Throws: Error(errc::bad_state) if not started.
  void join();

  //! Returns: true if the child ended (and was reaped) within the timeout.
  template <class Rep, class Period>
  bool join_for(const std::chrono::duration<Rep, Period>& timeout) {
    return join_until(detail::deadline_after(timeout));
  }
  template <class C, class D>
  bool join_until(const std::chrono::time_point<C, D>& deadline) {
    return join_until(detail::to_steady(deadline));
  }
  bool join_until(detail::Clock::time_point deadline);

  //! Returns: true between start() and the child's end.
  bool is_alive();

  //! The child's pid; 0 before start().
  pid_t pid() const noexcept { return pid_; }

  //! Returns: the exit code once the child ended (see the header comment), else nullopt.
  std::optional<int> exitcode();

  //! Effects: sends SIGTERM / SIGKILL to a running child; does nothing after it ended.
  //! Throws: Error(errc::bad_state) if not started.
  void terminate();
  void kill();

  //! "Process-<n>" unless set; also used in the child's crash message.
  const std::string& name() const noexcept { return name_; }
  Process& set_name(std::string name);

  bool daemon() const noexcept { return daemon_; }
  //! Throws: Error(errc::bad_state) after start().
  Process& set_daemon(bool daemon);

  //! A file descriptor that becomes readable when the child ends (a pidfd), for poll() or
  //! multiproc::wait; -1 before start() or where the kernel has no pidfd.
  int sentinel() const noexcept { return pidfd_; }

 private:
  using Target = std::function<int()>;
  explicit Process(Target target);

  template <class F, class... Args>
  static Target make_target(F&& f, Args&&... args) {
    return [f = std::decay_t<F>(std::forward<F>(f)),
            args = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() mutable {
      using R = decltype(std::apply(f, args));
      if constexpr (std::is_integral_v<R> && !std::is_same_v<R, bool>) {
        return static_cast<int>(std::apply(f, args));
      } else {
        std::apply(f, args);
        return 0;
      }
    };
  }

  [[noreturn]] void run_child();
  void reap(int status);
  bool try_reap();
  void finish() noexcept;  // the destructor's work
  void require_started(const char* action) const;

  Target target_;
  detail::Captured captured_;
  std::string name_;
  bool daemon_ = false;
  pid_t pid_ = 0;
  int pidfd_ = -1;
  bool reaped_ = false;
  std::optional<int> exitcode_;
};

//! Number of CPUs this process may run on (sched_getaffinity), at least 1.
int cpu_count() noexcept;

}  // namespace multiproc
