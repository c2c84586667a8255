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
// Exit code: what the callable returns when that is an integral type other than bool (converted
// to int; the OS keeps the low 8 bits, so -1 reads 255 and 300 reads 44); 0 when it returns bool
// (true would read as a failure, so a bool is not taken as an exit code) or anything else; 1 for
// an uncaught exception, whose type and what() the child prints to stderr first; -N when signal
// N killed it. The child never returns into the parent's code: it leaves with _exit() after
// flushing stdio, so the parent's static destructors, atexit handlers and test framework never
// run in it. The parent flushes its own stdio before fork so that buffered output is not printed
// twice. Synchronous crash signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS)
// are reset to their default action in the child, so a crash ends the child and shows in
// exitcode() instead of running a handler the parent installed.
//
// Handles the callable and the arguments hold by value belong to the child: a Pipe end captured
// that way counts the child as one of its holders from start() on (see pipe.hpp), while ends the
// child merely inherits with the rest of the parent's memory do not.
//
// A target that calls pthread_exit() ends the child (exit code 0), other threads included: its
// thread cannot unwind into the frames it shares with the parent.
//
// Destroying a started, unjoined Process joins it; a daemon child is terminated (SIGTERM, then
// SIGKILL after a second) and reaped. A daemon child also gets SIGKILL when the thread that
// started it exits (Linux's parent-death signal, PR_SET_PDEATHSIG; ChildOptions chooses it for
// any child), so it never outlives its parent. Not thread-safe: one
// thread at a time uses a given Process (active_children() may run on any thread meanwhile: the
// exit status is collected under one lock, whoever collects it). Fork in a program with other
// threads has the usual limits: only the forking thread exists in the child.
//
// The end of a child is watched through its pidfd. Without one (Linux < 5.3, or pidfd_open
// failing, e.g. at the open-file limit), join_for() and multiproc::wait() poll the exit status
// in sleeps of 1 to 16 ms; join() blocks in waitid().
//
// Child setup (ChildOptions, set with set_options(); defaults in brackets), applied in the child
// after fork and before the target runs, in this order:
//   1. signals: handlers the parent installed become SIG_DFL, as exec would make them
//      [reset_signal_handlers = true]; ignored signals stay ignored [reset_ignored_signals =
//      false]; the signal mask becomes empty [unblock_signals = true]. (So terminate() ends a
//      child even when the parent handles or blocks SIGTERM.) The crash signals are reset to
//      SIG_DFL whatever the options say (see above).
//   2. parent-death signal [parent_death_signal = nullopt: SIGKILL for a daemon, none otherwise;
//      0: none]: sent to the child when the THREAD that called start() ends (Linux's rule), and
//      at once if the parent is already gone when the child sets it up.
//   3. file descriptors: the sentinels (pidfds) of this process's other Process children are
//      always closed in the child [not configurable]; with close_fds = true [false], every
//      descriptor from 3 up is closed too except those in keep_fds (and, for an exec'd child,
//      the ones handed over). multiproc objects hold no descriptors (their mappings survive
//      close), so close_fds never breaks a handle the child inherited; a user's socket or
//      file does need its place in keep_fds.
//   4. title [title = nullopt: the name, if set_name() was called; "" or no set_name(): none]:
//      prctl(PR_SET_NAME) (what /proc/<pid>/comm, `ps -o comm` and pgrep show; 15 bytes kept),
//      and the command-line area that `ps -o args` and /proc/<pid>/cmdline show is overwritten
//      with it (found through /proc/self/stat's arg_start/arg_end; the title is cut to the
//      length of the original command line; the child's argv[] strings are gone).
//   5. setup: a callable run in the child before the target [empty]. If it throws, the child
//      prints the exception and exits with 1, as for the target.
// For an exec'd child (Command, below) the same steps run before exec, except the title (an
// exec'd program shows its own argv); a setup hook that throws makes start() throw instead.
//
// Exec'd children: Process(Command{path, argv, env, cwd}) forks and runs another program
// (execve; no PATH search) instead of a callable. Before start(), pass(key, object) hands it a
// named multiproc object — anything with an (open_only, name) constructor: Queue,
// JoinableQueue, SimpleQueue, SharedValue, RawValue, SharedArray, RawArray, Mutex,
// RecursiveMutex, Semaphore, BoundedSemaphore, Event, Condition, Barrier, SharedMemory,
// ShareableList — or one end of a named Pipe (a Connection), and pass_fd(key, fd) a file
// descriptor (a listening socket). The program gets each back with one call by key:
// mp::inherited<mp::Queue<int>>("jobs"), mp::inherited_fd("listen") (multiproc/handover.hpp,
// which documents the format). Objects travel by name — an anonymous object cannot reach
// another program: start() is refused with Error(errc::invalid_argument) naming it; create it
// under a name (for instance a unique one, "app.<pid>.jobs"); the Process keeps a handle to each
// object passed until close(), so the creator cannot remove its name before the program opened
// it. Descriptors travel as themselves: pass_fd() duplicates the descriptor at once (the caller
// may close its own), the child inherits the duplicate (not close-on-exec) under that number,
// and the parent's duplicate is closed when start() returns (a child another Process forks
// between pass_fd() and that start() inherits it too, and holds it while it lives: pass fds
// just before start(), or close them in such children). A Connection passed counts the
// child as one of its holders from start() on (its death is EOF for the peer, as for a forked
// child); other objects are only opened. Same sentinel(), exitcode(), join/join_for,
// terminate/kill, daemon and parent-death signal as a forked child; ChildOptions steps 1-3 and 5
// run before exec. start() throws, with the child already reaped and the Process back to
// not-started, when the program cannot be run: Error from errno (ENOENT, EACCES, ENOEXEC, ...)
// naming the Process and the path, or the directory for a failed chdir; Error(errc::remote_error)
// with its type and what() when the setup hook threw. (A CLOEXEC pipe carries the failure back;
// it is closed by a successful exec.) An exec'd child's exit code is its program's.
//
// Who am I: current_process() describes the calling process: "MainProcess" in the process that
// never came from a Process, else the name its Process had at start(); pid(); daemon().
// parent_process() is nullopt in the main process and describes the process that forked this
// one otherwise — also after a raw fork(), whose child keeps its parent's name and daemon flag
// (as in Python) but has the forking process as its parent. active_children() lists the children
// this process started with Process that still run, and reaps those that ended (their Process
// objects then report the exit code, -N for one a signal killed); a forked child starts with
// none. A child whose parent died keeps it as parent_process(), whose is_alive() is then false.
#pragma once

#include <multiproc/detail/fork_hooks.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/error.hpp>
#include <multiproc/segment.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace multiproc {

namespace detail {
struct ChildState;  // a started child's exit status, shared with the active_children() registry
struct ProcessInfoAccess;
}  // namespace detail

//! A snapshot of one process's identity, as current_process(), parent_process() and
//! active_children() return it. A plain value: it stays valid (and safe) after the Process it
//! describes is moved, closed or destroyed.
class ProcessInfo {
 public:
  pid_t pid() const noexcept { return pid_; }
  //! The name at the time of the snapshot (see the header comment).
  const std::string& name() const noexcept { return name_; }
  bool daemon() const noexcept { return daemon_; }
  //! Returns: whether the process still runs (exists and is not a zombie). Checks the process's
  //! start time too, so a pid reused by another process does not count. Reaps nothing.
  bool is_alive() const noexcept;

 private:
  friend struct detail::ProcessInfoAccess;
  ProcessInfo(pid_t pid, std::string name, bool daemon, std::uint64_t start_time)
      : pid_(pid), name_(std::move(name)), daemon_(daemon), start_time_(start_time) {}
  pid_t pid_;
  std::string name_;
  bool daemon_;
  std::uint64_t start_time_;  // clock ticks since boot (/proc/<pid>/stat); 0 if unknown
};

//! Returns: the calling process: pid() is getpid(), name() "MainProcess" or the name of the
//! Process that started it, daemon() as that Process had it (false in the main process).
ProcessInfo current_process();

//! Returns: the process that forked this one (by Process or a raw fork()), or nullopt in the main
//! process. Its name() is what current_process().name() was there at the fork.
std::optional<ProcessInfo> parent_process();

//! Effects: reaps every child this process started with Process that has ended and not been
//! joined yet (their Process objects keep the exit code; nothing is left a zombie).
//! Returns: the children started with Process, in start order, that still run — a Pool's
//! workers included, as in Python. Children of other processes (this one's parent's included)
//! and children made with a raw fork() are never listed.
std::vector<ProcessInfo> active_children();

//! A program for an exec'd child (Python's subprocess arguments): see the header comment.
// Every member has a default, so Command{path} and Command{path, argv} are complete (no
// -Wmissing-field-initializers).
struct Command {
  std::string path = {};                                   //!< the program, run as given (no PATH search)
  std::vector<std::string> argv = {};                      //!< argv[0] first; empty: {path}
  std::optional<std::vector<std::string>> env = std::nullopt;  //!< "NAME=value" each; nullopt: this process's
  std::string cwd = {};                                    //!< empty: this process's working directory
};

namespace detail {
//! One object or descriptor handed to an exec'd child (handover.hpp documents the format).
struct HandoverEntry {
  char kind = 0;     //!< 'o' an object by name, 'c' a pipe end by name, 'f' a descriptor
  std::string key;
  std::string name;  //!< 'o' and 'c': the object's name
  //! 'o' and 'c': the prefix its file is spelled with (Segment::prefix); none in a handover
  //! written without it: the child's own prefix then
  std::optional<std::string> prefix;
  int end = -1;      //!< 'c': 0 first end, 1 second end
  int fd = -1;       //!< 'f': the descriptor
};
template <class T, class = void>
struct is_pipe_end : std::false_type {};
template <class T>
struct is_pipe_end<T, std::void_t<decltype(std::declval<const T&>().receive_channel())>>
    : std::true_type {};
}  // namespace detail

//! What a child starts with: see the header comment (steps 1-5) for each field and its default.
struct ChildOptions {
  bool reset_signal_handlers = true;
  bool reset_ignored_signals = false;
  bool unblock_signals = true;
  std::optional<int> parent_death_signal;
  bool close_fds = false;
  std::vector<int> keep_fds;
  std::optional<std::string> title;
  std::function<void()> setup;
};

class Process {
 public:
  //! An empty Process: start() runs nothing and the child exits with 0.
  Process();

  //! Effects: stores f and decay-copies of args; the child will run f(args...).
  //! Requires: f(args...) is callable on the copies.
  template <class F, class... Args,
            class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Process> &&
                                     std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>>>
  explicit Process(F&& f, Args&&... args) : Process(NoTarget{}) {
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

  //! An exec'd child: start() runs `command` (see the header comment).
  //! Throws: Error(errc::invalid_argument) for an empty path.
  explicit Process(Command command);

  //! Effects: hands `object` (a named multiproc object or Pipe end) to the exec'd child under
  //! `key`; keeps a handle to it until close().
  //! Throws: Error(errc::bad_state) if this Process runs no Command, or after start() or close();
  //! Error(errc::invalid_argument) for an empty key, one already passed, or an anonymous object.
  template <class T>
  Process& pass(std::string key, const T& object) {
    const Segment& seg = object.segment();
    detail::HandoverEntry e;
    e.kind = 'o';
    e.key = std::move(key);
    if constexpr (detail::is_pipe_end<T>::value) {
      e.kind = 'c';
      e.end = static_cast<int>(object.end());
    }
    e.name = seg.name();
    if (seg.named()) e.prefix = seg.prefix();  // the child opens the very file, whatever its prefix
    check_handover(e, seg.named() ? nullptr : &seg.describe());
    // The copy kept: made as a capture, so a Connection counts the child as a holder.
    detail::Captured* outer = detail::current_capture();
    detail::current_capture() = &captured_;
    std::shared_ptr<void> copy;
    try {
      copy = std::make_shared<T>(object);
    } catch (...) {
      detail::current_capture() = outer;
      throw;
    }
    detail::current_capture() = outer;
    handed_.push_back(std::move(copy));
    handover_.push_back(std::move(e));
    return *this;
  }

  //! Effects: hands a duplicate of `fd` to the exec'd child under `key`.
  //! Throws: as pass(); Error(EBADF) naming the key if fd is not open; Error from errno if it
  //! cannot be duplicated.
  Process& pass_fd(std::string key, int fd);

  Process(Process&& other) noexcept;
  //! Effects: finishes the current child as the destructor does, then takes other's.
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  //! Effects: joins an unjoined child (a daemon is terminated first). Never throws.
  ~Process();

  //! Effects: forks the child, which runs the target and exits.
  //! Throws: Error(errc::bad_state) if already started or closed; Error from errno if fork fails.
  void start();

  //! Effects: waits for the child to end and reaps it.
  //! Throws: Error(errc::bad_state) if not started or closed. Error(ECHILD) if someone outside
  //! multiproc reaped the child (SIGCHLD ignored, waitpid(-1)): reported once, by the first call
  //! that finds it (join, join_for, is_alive, exitcode); from then on the Process counts as ended
  //! with no exit code.
  void join();

  //! Returns: true if the child ended (and was reaped) within the timeout.
  //! Throws: as join().
  template <class Rep, class Period>
  bool join_for(const std::chrono::duration<Rep, Period>& timeout) {
    return join_until(detail::deadline_after(timeout));
  }
  template <class C, class D>
  bool join_until(const std::chrono::time_point<C, D>& deadline) {
    return join_until(detail::to_steady(deadline));
  }
  bool join_until(detail::Clock::time_point deadline);

  //! Returns: true between start() and the child's end (reaps it once it ended).
  //! Throws: Error(errc::bad_state) once closed; Error(ECHILD) as join().
  bool is_alive();

  //! The child's pid; 0 before start(). Still the pid after close().
  pid_t pid() const noexcept { return pid_; }

  //! Returns: the exit code once the child ended (see the header comment), else nullopt.
  //! Throws: Error(errc::bad_state) once closed; Error(ECHILD) as join().
  std::optional<int> exitcode();

  //! Effects: sends SIGTERM / SIGKILL to a running child; does nothing after it ended.
  //! Throws: Error(errc::bad_state) if not started or closed.
  void terminate();
  void kill();

  //! Effects: releases what the Process holds — the pidfd, the target and its captured handles —
  //! and leaves active_children(). Calling it again does nothing. Allowed before start() (the
  //! Process can then never start) and once the child ended (reaped here if need be).
  //! Throws: Error(errc::bad_state), naming the process, while the child still runs. Afterwards
  //! start, join, join_for, is_alive, exitcode, terminate, kill and set_daemon throw
  //! Error(errc::bad_state, "... process object is closed"); name(), daemon() and pid() still
  //! answer, sentinel() is -1.
  void close();

  //! "Process-<n>" unless set (n counts the Process objects constructed, from 1; a forked child
  //! goes on from its parent's count at the fork, so a default name is unique within one
  //! process, not across a tree); also used in the child's crash message, as the child's
  //! current_process().name(), and by active_children(). A name set after start() does not
  //! reach the running child.
  const std::string& name() const noexcept { return name_; }
  Process& set_name(std::string name);

  bool daemon() const noexcept { return daemon_; }
  //! Throws: Error(errc::bad_state) after start() or close().
  Process& set_daemon(bool daemon);

  //! The child setup options (see ChildOptions and the header comment).
  //! Throws: Error(errc::bad_state) after start() or close(); Error(errc::invalid_argument)
  //! naming the process for a parent_death_signal outside 0..64 or a negative keep_fds entry.
  Process& set_options(ChildOptions options);
  const ChildOptions& options() const noexcept { return options_; }

  //! A file descriptor that becomes readable when the child ends (a pidfd), for poll() or
  //! multiproc::wait; -1 before start(), after close(), or where there is no pidfd (see above).
  //! In a forked child, the sentinels of the parent's other children are closed (-1).
  int sentinel() const noexcept;

 private:
  using Target = std::function<int()>;
  // The delegated-to constructor. A tag, not a Target: a user's std::function<int()> matched a
  // private Process(Target) before the template and did not compile (an outside probe).
  struct NoTarget {};
  explicit Process(NoTarget);

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
  [[noreturn]] void exec_child(pid_t parent, const void* plan, int err_fd);
  void check_handover(const detail::HandoverEntry& e, const std::string* anonymous) const;
  void close_handed_fds() noexcept;
  // ChildOptions steps 1-4, in the child; also_keep: descriptors close_fds keeps besides keep_fds
  void setup_child(pid_t parent, const std::vector<int>& also_keep, bool for_exec);
  int pidfd() const noexcept;
  void close_sentinel() noexcept;
  bool try_reap();          // true once the child ended; throws as join() documents
  void finish() noexcept;   // the destructor's work
  void require_open(const char* action) const;
  void require_started(const char* action) const;

  Target target_;
  detail::Captured captured_;
  std::string name_;
  bool daemon_ = false;
  bool closed_ = false;
  bool name_set_ = false;  // set_name() was called: the name is the default title
  pid_t pid_ = 0;
  ChildOptions options_;
  std::unique_ptr<Command> command_;              // an exec'd child's program, else null
  std::vector<detail::HandoverEntry> handover_;   // what pass() and pass_fd() hand it
  std::vector<std::shared_ptr<void>> handed_;     // copies of the objects passed, until close()
  std::shared_ptr<detail::ChildState> child_;  // from start() until close(); holds the pidfd
};

//! Number of CPUs this process may run on (sched_getaffinity), at least 1.
int cpu_count() noexcept;

}  // namespace multiproc
