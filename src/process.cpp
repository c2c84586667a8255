// Process: fork, run, _exit; pidfd sentinels; exit codes in Python's convention; the registry
// of active children and this process's identity (current_process, parent_process).
// About 750 lines, kept whole: the Process methods and the registry share one mutex and one
// ChildState (whoever reaps a child first records its status for both), and splitting them would
// put that locking protocol in two files.
#include <multiproc/process.hpp>
#include <multiproc/detail/fork_hooks.hpp>
#include <multiproc/handover.hpp>

#include "os.hpp"
#include "process/child_setup.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cxxabi.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <mutex>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <typeinfo>
#include <unistd.h>

namespace multiproc {
namespace detail {

// A started child's exit status. Shared by its Process (a move carries the pointer along) and,
// until the child is reaped, by the registry of active children, so whoever reaps it first
// records the status for both. Every field but pid is guarded by registry().mutex.
struct ChildState {
  pid_t pid = 0;
  std::string name;              // the Process's name (set_name updates it)
  bool daemon = false;
  std::uint64_t start_time = 0;  // read from /proc when first listed; 0 until then
  bool ended = false;            // reaped (or lost)
  bool lost = false;             // reaped outside multiproc: the exit code is unknown
  bool lost_reported = false;    // a Process call has thrown for the loss
  std::optional<int> exitcode;
  int pidfd = -1;                // the sentinel; -1 once closed (written under the mutex, read
                                 // unlocked by the owning Process only)
};

struct ProcessInfoAccess {
  static ProcessInfo make(pid_t pid, std::string name, bool daemon, std::uint64_t start_time) {
    return ProcessInfo(pid, std::move(name), daemon, start_time);
  }
};

}  // namespace detail

namespace {

using detail::ChildState;
using detail::ProcessInfoAccess;

// The thread that forks a child, as the child sees it (set by start() before the fork; the child
// is a copy of that thread): its parent-death signal comes when that thread ends.
thread_local pid_t t_forker_tid = 0;

// What this process knows about itself and its children. One mutex guards all of it; the atfork
// handlers below hold it across every fork, so no child inherits it locked or half-updated.
struct Registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<ChildState>> active;  // started with Process, not reaped; in order
  std::vector<std::weak_ptr<ChildState>> sentinels;  // children whose pidfd may be open: a
                                                     // Process child closes them (ChildOptions 3)
  std::string self_name = "MainProcess";
  bool self_daemon = false;
  std::optional<ProcessInfo> parent;
  pid_t forker_pid = 0;  // the process that is forking, and its start time: set by prepare_fork
  std::uint64_t forker_start = 0;
  // The write ends of the exec failure pipes of Process::start calls in flight (see start()):
  // every child forked meanwhile by another thread closes them, or the parent's read of its
  // report would wait for that unrelated child to exit (an outside probe: start() of /bin/true
  // took as long as a sibling Process forked at the same moment lived).
  std::vector<int> exec_reports;
};

// The failure pipe this thread is forking for (its own child keeps it), or -1.
thread_local int t_exec_report = -1;

// Closes the write end `fd` of an exec failure pipe and takes it off Registry::exec_reports.
void close_exec_report(int fd) noexcept;

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: a Process may outlive static destructors
  return *r;
}

void close_exec_report(int fd) noexcept {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);  // no fork in between: it would inherit the end
  r.exec_reports.erase(std::remove(r.exec_reports.begin(), r.exec_reports.end(), fd),
                       r.exec_reports.end());
  ::close(fd);
}

void prepare_fork() noexcept {
  Registry& r = registry();
  const std::uint64_t start = detail::self_start_time();  // cached: see the registration below
  r.mutex.lock();
  r.forker_pid = ::getpid();
  r.forker_start = start;
}

void parent_after_fork() noexcept { registry().mutex.unlock(); }

// Every forked child, raw fork() included: the parent's children are not its children, and its
// parent is the process that forked it, under the name that process had.
void child_after_fork() noexcept {
  Registry& r = registry();
  for (int fd : r.exec_reports) {
    if (fd != t_exec_report) ::close(fd);
  }
  r.exec_reports.clear();
  r.active.clear();
  r.parent.reset();
  try {
    r.parent = ProcessInfoAccess::make(r.forker_pid, r.self_name, r.self_daemon, r.forker_start);
  } catch (...) {  // out of memory: no parent rather than a wrong one
  }
  r.mutex.unlock();
}

// Binds now, in the parent, the libc functions that only a child calls. A call through the PLT
// binds its symbol at the first call (lazy binding: how a program is linked unless with -z now),
// and a child's binding dies with it: every child looked the same symbols up again across the
// loaded libraries, faulting in anew (after the fork) the pages the lookup read and the GOT it
// wrote — about a fifth of a child's page faults, several microseconds each on a VM. These calls
// change nothing (queries); _exit, which cannot be called here, goes through exit_child.
void bind_child_symbols() noexcept {
  sigset_t set;
  sigemptyset(&set);
  (void)::sigprocmask(SIG_BLOCK, nullptr, &set);
  struct sigaction sa {};
  (void)::sigaction(SIGSEGV, nullptr, &sa);
}

// _exit through a pointer, whose value the loader writes at start-up (a data relocation, never
// lazy): see bind_child_symbols. volatile: or the compiler calls _exit through the PLT.
void (*volatile g_exit)(int) = &::_exit;

[[noreturn]] void exit_child(int code) noexcept {
  g_exit(code);
  __builtin_unreachable();
}

const bool g_atfork_registered = [] {
  // Fill the start-time cache now: prepare_fork reads it, and filling it reads /proc.
  (void)detail::self_start_time();
  bind_child_symbols();
  // The process_registry stage of every fork (fork_hooks.hpp says where it runs, and why).
  detail::register_fork_hooks(detail::ForkStage::process_registry,
                              {&prepare_fork, &parent_after_fork, &child_after_fork});
  return true;
}();

// Collects the child's exit status if it has ended. Requires registry().mutex.
bool poll_locked(ChildState& c) noexcept {
  if (c.ended) return true;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r == c.pid) {
      c.ended = true;
      if (WIFEXITED(status)) {
        c.exitcode = WEXITSTATUS(status);
      } else if (WIFSIGNALED(status)) {
        c.exitcode = -WTERMSIG(status);
      }
      return true;
    }
    if (r == 0) return false;
    if (errno == EINTR) continue;
    c.ended = true;  // ECHILD: someone else reaped it (SIGCHLD ignored, or waitpid(-1))
    c.lost = true;
    return true;
  }
}

// Takes a child off the active list (if it is there). Requires registry().mutex.
void unlist_locked(Registry& r, const std::shared_ptr<ChildState>& c) noexcept {
  const auto it = std::find(r.active.begin(), r.active.end(), c);
  if (it != r.active.end()) r.active.erase(it);
}

std::atomic<unsigned> process_counter{0};

int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) return static_cast<int>(fd);  // close-on-exec is set by the kernel
#endif
  (void)pid;
  return -1;
}

void flush_stdio() noexcept {
  // The standard streams may not exist yet: a Process started during static initialisation (a
  // Pool at namespace scope forks its workers then) flushed std::cout before the library's
  // iostreams were set up, and crashed. Constructing an Init makes them.
  static const std::ios_base::Init iostreams;
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
  } catch (...) {
  }
  std::fflush(nullptr);
}

// What an exec'd child needs, built before the fork.
struct ExecPlan {
  std::vector<std::string> argv_s, env_s;
  std::vector<char*> argv, envp;
  std::vector<int> handed;  // descriptors handed over
  std::vector<int> keep;    // what close_fds keeps: those, and the failure pipe
};

ExecPlan make_plan(const Command& c, const std::vector<detail::HandoverEntry>& handover,
                   const std::string& name) {
  auto check = [&](const std::string& s, const char* what) {
    if (s.find('\0') != std::string::npos) {
      throw Error(errc::invalid_argument, "Process '" + name + "': the command's " + what +
                                              " holds a NUL byte");
    }
  };
  check(c.path, "path");
  check(c.cwd, "working directory");
  ExecPlan plan;
  plan.argv_s = c.argv.empty() ? std::vector<std::string>{c.path} : c.argv;
  for (const auto& a : plan.argv_s) check(a, "argv");
  const std::string prefix = std::string(kHandoverVariable) + "=";
  // The child spells names with this process's name prefix — the one set_name_prefix() set, not
  // only one from the environment — so that what is handed over by name is found (an outside
  // probe: a Queue passed after set_name_prefix("pfx.") was "no object of that name" in the
  // child). A MULTIPROC_PREFIX the command's own environment sets is kept.
  const std::string names = "MULTIPROC_PREFIX=";
  bool names_given = false, names_inherited = false;
  if (c.env) {
    for (const auto& e : *c.env) {
      check(e, "environment");
      if (e.compare(0, names.size(), names) == 0) names_given = true;
      if (e.compare(0, prefix.size(), prefix) != 0) plan.env_s.push_back(e);
    }
  } else {
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, names.c_str(), names.size()) == 0) {
        names_inherited = true;
        continue;
      }
      if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) plan.env_s.emplace_back(*e);
    }
  }
  if (!names_given) {
    // Only when set_name_prefix() made the prefix differ from the environment's (an invalid
    // MULTIPROC_PREFIX, which name_prefix() refuses, is passed on as it is).
    try {
      const std::string current = name_prefix();
      const char* env = std::getenv("MULTIPROC_PREFIX");
      if (current != (env != nullptr ? env : "")) {
        std::vector<std::string> kept;
        for (auto& e : plan.env_s) {
          if (e.compare(0, names.size(), names) != 0) kept.push_back(std::move(e));
        }
        plan.env_s = std::move(kept);
        plan.env_s.push_back(names + current);
      } else if (names_inherited && env != nullptr) {
        plan.env_s.push_back(names + env);
      }
    } catch (const Error&) {
      if (const char* env = std::getenv("MULTIPROC_PREFIX")) plan.env_s.push_back(names + env);
    }
  }
  if (!handover.empty()) plan.env_s.push_back(prefix + detail::encode_handover(handover));
  for (auto& a : plan.argv_s) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);
  for (auto& e : plan.env_s) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);
  for (const auto& h : handover) {
    if (h.kind == 'f') plan.handed.push_back(h.fd);
  }
  plan.keep = plan.handed;
  return plan;
}

void reset_crash_signals() noexcept {
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS}) {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

// Signals the child through its pidfd when there is one: even if someone else reaped it (SIGCHLD
// ignored, waitpid(-1)) and its pid was reused, the signal cannot reach another process.
void send_signal(int pidfd, pid_t pid, int sig) noexcept {
#ifdef SYS_pidfd_send_signal
  if (pidfd >= 0) {
    ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
    return;
  }
#endif
  (void)pidfd;
  ::kill(pid, sig);
}

}  // namespace

int cpu_count() noexcept { return detail::available_cpus(); }

// ---- who am I -------------------------------------------------------------------------------

bool ProcessInfo::is_alive() const noexcept {
  // unknown (a process /proc does not show us): alive, as before.
  return detail::process_liveness(pid_, start_time_) != detail::Liveness::dead;
}

ProcessInfo current_process() {
  const std::uint64_t start = detail::self_start_time();
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return ProcessInfoAccess::make(::getpid(), r.self_name, r.self_daemon, start);
}

std::optional<ProcessInfo> parent_process() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.parent;
}

std::vector<ProcessInfo> active_children() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (const auto& c : r.active) poll_locked(*c);  // reaps the ended ones
  r.active.erase(std::remove_if(r.active.begin(), r.active.end(),
                                [](const std::shared_ptr<ChildState>& c) { return c->ended; }),
                 r.active.end());
  std::vector<ProcessInfo> out;
  out.reserve(r.active.size());
  for (const auto& c : r.active) {
    // Not reaped, so its pid cannot have been reused yet: the start time read now is its own.
    if (c->start_time == 0) c->start_time = detail::process_start_time(c->pid);
    out.push_back(ProcessInfoAccess::make(c->pid, c->name, c->daemon, c->start_time));
  }
  return out;
}

// ---- Process --------------------------------------------------------------------------------

Process::Process() : Process(NoTarget{}) {}

Process::Process(NoTarget) : name_("Process-" + std::to_string(++process_counter)) {}

Process::Process(Process&& other) noexcept
    : target_(std::move(other.target_)),
      captured_(std::move(other.captured_)),
      name_(std::move(other.name_)),
      daemon_(other.daemon_),
      closed_(std::exchange(other.closed_, false)),
      name_set_(other.name_set_),
      pid_(std::exchange(other.pid_, 0)),
      options_(std::move(other.options_)),
      command_(std::move(other.command_)),
      handover_(std::move(other.handover_)),
      handed_(std::move(other.handed_)),
      child_(std::move(other.child_)) {
  other.handover_.clear();  // its descriptors are ours now
}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    finish();
    target_ = std::move(other.target_);
    captured_ = std::move(other.captured_);
    name_ = std::move(other.name_);
    daemon_ = other.daemon_;
    closed_ = std::exchange(other.closed_, false);
    name_set_ = other.name_set_;
    pid_ = std::exchange(other.pid_, 0);
    options_ = std::move(other.options_);
    command_ = std::move(other.command_);
    close_handed_fds();
    handover_ = std::move(other.handover_);
    other.handover_.clear();
    handed_ = std::move(other.handed_);
    child_ = std::move(other.child_);
  }
  return *this;
}

Process::~Process() { finish(); }

void Process::finish() noexcept {
  if (pid_ != 0 && !closed_) {
    try {
      if (!try_reap()) {
        if (daemon_) {
          terminate();
          if (!join_for(std::chrono::seconds(1))) {
            kill();
            join();
          }
        } else {
          join();
        }
      }
    } catch (...) {  // destructors never throw; the child was reaped elsewhere
    }
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    unlist_locked(r, child_);
  }
  close_sentinel();
  close_handed_fds();
}

void Process::close_sentinel() noexcept {
  if (!child_ || child_->pidfd < 0) return;
  // Under the lock that every fork holds: a child never sees a closed pidfd as still open.
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  ::close(child_->pidfd);
  child_->pidfd = -1;
}

int Process::pidfd() const noexcept { return child_ ? child_->pidfd : -1; }
int Process::sentinel() const noexcept { return pidfd(); }

Process& Process::set_name(std::string name) {
  name_ = std::move(name);
  name_set_ = true;
  if (child_) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    child_->name = name_;
  }
  return *this;
}

Process& Process::set_daemon(bool daemon) {
  require_open("set_daemon()");
  if (pid_ != 0) {
    throw Error(errc::bad_state, "Process '" + name_ + "': set_daemon after start()");
  }
  daemon_ = daemon;
  return *this;
}

Process& Process::set_options(ChildOptions options) {
  require_open("set_options()");
  if (pid_ != 0) {
    throw Error(errc::bad_state, "Process '" + name_ + "': set_options after start()");
  }
  if (options.parent_death_signal && (*options.parent_death_signal < 0 ||
                                       *options.parent_death_signal >= NSIG)) {
    throw Error(errc::invalid_argument,
                "Process '" + name_ + "': parent_death_signal " +
                    std::to_string(*options.parent_death_signal) + " is not a signal number");
  }
  for (int fd : options.keep_fds) {
    if (fd < 0) {
      throw Error(errc::invalid_argument, "Process '" + name_ + "': keep_fds holds " +
                                              std::to_string(fd) + ", not a file descriptor");
    }
  }
  options_ = std::move(options);
  return *this;
}

void Process::require_open(const char* action) const {
  if (closed_) {
    throw Error(errc::bad_state, "Process '" + name_ + "': " + action + ": process object is closed");
  }
}

void Process::require_started(const char* action) const {
  require_open(action);
  if (pid_ == 0) {
    throw Error(errc::bad_state, "Process '" + name_ + "': " + action + " before start()");
  }
}

void Process::start() {
  require_open("start()");
  if (pid_ != 0) throw Error(errc::bad_state, "Process '" + name_ + "': already started");
  auto child = std::make_shared<ChildState>();  // before the fork: nothing may fail after it
  child->name = name_;
  child->daemon = daemon_;
  ExecPlan plan;
  int failed[2] = {-1, -1};  // an exec'd child's failure report (CLOEXEC: exec closes it)
  // Its write end is listed (Registry::exec_reports) from its creation to its close, both under
  // the registry mutex that every fork's prepare handler takes: no child forked by another thread
  // meanwhile keeps it open.
  auto release_report = [&failed] {
    close_exec_report(failed[1]);
    ::close(failed[0]);
  };
  if (command_) {
    plan = make_plan(*command_, handover_, name_);
    plan.keep.reserve(plan.keep.size() + 1);
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.exec_reports.reserve(r.exec_reports.size() + 1);
    if (::pipe2(failed, O_CLOEXEC) != 0) {
      throw Error::from_errno(errno, "Process '" + name_ + "': pipe failed");
    }
    r.exec_reports.push_back(failed[1]);
    plan.keep.push_back(failed[1]);
  }
  flush_stdio();  // or the child would print the parent's buffered output a second time
  const pid_t parent = ::getpid();
  t_forker_tid = detail::current_tid();
  // When the target captured handles that track holders, the child waits until the parent has
  // registered it (below): otherwise a child that closes such a handle at once could be
  // registered again after its close.
  int registered[2] = {-1, -1};
  if (!captured_.empty() && ::pipe2(registered, O_CLOEXEC) != 0) {
    const int err = errno;
    if (failed[0] >= 0) release_report();
    throw Error::from_errno(err, "Process '" + name_ + "': pipe failed");
  }
  detail::forking_for_process() = true;  // atfork handlers: this child is registered below
  t_exec_report = failed[1];
  const pid_t pid = ::fork();
  t_exec_report = -1;
  detail::forking_for_process() = false;
  if (pid < 0) {
    const int err = errno;
    for (int fd : registered) {
      if (fd >= 0) ::close(fd);
    }
    if (failed[0] >= 0) release_report();
    throw Error::from_errno(err, "Process '" + name_ + "': fork failed");
  }
  if (pid == 0) {
    {
      // child_after_fork made the parent our parent_process(); this is who we are.
      Registry& r = registry();
      std::lock_guard<std::mutex> lock(r.mutex);
      r.self_name = name_;
      r.self_daemon = daemon_;
    }
    if (registered[0] >= 0) {
      ::close(registered[1]);
      char c;
      while (::read(registered[0], &c, 1) < 0 && errno == EINTR) {  // EOF if the parent died
      }
      ::close(registered[0]);
    }
    if (command_) {
      ::close(failed[0]);
      exec_child(parent, &plan, failed[1]);
    }
    setup_child(parent, {}, false);
    run_child();
  }
  pid_ = pid;
  child->pid = pid;
  child_ = child;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    child->pidfd = open_pidfd(pid);
    r.sentinels.erase(std::remove_if(r.sentinels.begin(), r.sentinels.end(),
                                     [](const std::weak_ptr<ChildState>& w) { return w.expired(); }),
                      r.sentinels.end());
    if (child->pidfd >= 0) r.sentinels.push_back(child);
    r.active.push_back(std::move(child));
  }
  detail::notify_forked(pid, captured_);  // before the parent can close its copies of handles
  if (registered[0] >= 0) {
    ::close(registered[0]);
    const char c = 1;
    while (::write(registered[1], &c, 1) < 0 && errno == EINTR) {
    }
    ::close(registered[1]);
  }
  if (failed[0] >= 0) {
    close_exec_report(failed[1]);
    std::string report;  // empty: the exec succeeded (the pipe closed with it)
    char buf[512];
    for (;;) {
      const ssize_t n = ::read(failed[0], buf, sizeof buf);
      if (n > 0) {
        report.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    ::close(failed[0]);
    if (!report.empty()) {
      // The child exits at once: reap it, and the Process is back to not started.
      try {
        join();
      } catch (...) {
      }
      {
        Registry& r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        unlist_locked(r, child_);
      }
      close_sentinel();
      child_.reset();
      pid_ = 0;
      int err = 0;
      if (report.size() >= sizeof err) std::memcpy(&err, report.data(), sizeof err);
      const std::string what =
          "Process '" + name_ + "': " +
          (report.size() > sizeof err ? report.substr(sizeof err) : std::string("exec failed"));
      if (err > 0) throw Error::from_errno(err, what);
      throw Error(errc::remote_error, what);
    }
    close_handed_fds();  // the child has them
  }
}

void Process::setup_child(pid_t parent, const std::vector<int>& also_keep, bool for_exec) {
  const ChildOptions& o = options_;
  // 1. signals
  if (o.reset_signal_handlers || o.reset_ignored_signals) {
    detail::reset_signal_dispositions(o.reset_signal_handlers, o.reset_ignored_signals);
  }
  if (o.unblock_signals) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
  }
  // 2. parent-death signal (a daemon: SIGKILL unless chosen otherwise)
  const int pdeath = o.parent_death_signal ? *o.parent_death_signal : (daemon_ ? SIGKILL : 0);
  if (pdeath != 0) {
    ::prctl(PR_SET_PDEATHSIG, pdeath, 0, 0, 0);
    // The signal comes when the thread that forked us ends after this prctl. If it ended before
    // (a thread that starts a daemon and returns at once), or the whole parent did: now. A thread
    // ending early went unnoticed (getppid() names the process): its daemon outlived it.
    if (::getppid() != parent ||
        (t_forker_tid > 0 && ::syscall(SYS_tgkill, parent, t_forker_tid, 0) != 0 &&
         errno == ESRCH)) {  // not EPERM or ENOSYS (a filter): only a thread that is gone
      ::raise(pdeath);
    }
  }
  // 3. descriptors: the parent's other children's sentinels, then (asked for) everything else
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (const auto& w : r.sentinels) {
      if (auto c = w.lock()) {
        if (c->pidfd >= 0) ::close(c->pidfd);
        c->pidfd = -1;
      }
    }
    r.sentinels.clear();
  }
  if (o.close_fds) {
    std::vector<int> keep = o.keep_fds;
    keep.insert(keep.end(), also_keep.begin(), also_keep.end());
    detail::close_fds_except(std::move(keep));
  }
  // 4. title (a forked child only: exec replaces the command line)
  if (!for_exec) {
    const std::string* title = o.title ? &*o.title : name_set_ ? &name_ : nullptr;
    if (title != nullptr && !title->empty()) detail::set_process_title(*title);
  }
}

namespace {
// An exec'd child's failure: errno (0 for a hook that threw) and a message, to the parent.
[[noreturn]] void report_failure(int fd, int err, const std::string& message) noexcept {
  char buf[512];
  std::memcpy(buf, &err, sizeof err);
  const std::size_t n = std::min(message.size(), sizeof buf - sizeof err);
  std::memcpy(buf + sizeof err, message.data(), n);
  while (::write(fd, buf, sizeof err + n) < 0 && errno == EINTR) {
  }
  exit_child(127);
}
}  // namespace

// An exec'd child, after the fork: setup, hook, chdir, exec — or a report to the parent.
void Process::exec_child(pid_t parent, const void* plan_ptr, int err_fd) {
  const ExecPlan& plan = *static_cast<const ExecPlan*>(plan_ptr);
  setup_child(parent, plan.keep, true);
  reset_crash_signals();
  if (options_.setup) {
    try {
      options_.setup();
    } catch (const std::exception& e) {
      report_failure(err_fd, 0, "the setup hook threw " + detail::demangle(typeid(e).name()) +
                                    ": " + e.what());
    } catch (...) {
      report_failure(err_fd, 0, "the setup hook threw an exception of unknown type");
    }
  }
  if (!command_->cwd.empty() && ::chdir(command_->cwd.c_str()) != 0) {
    report_failure(err_fd, errno, "cannot change to directory '" + command_->cwd + "'");
  }
  for (int fd : plan.handed) ::fcntl(fd, F_SETFD, 0);  // inherited by the program
  flush_stdio();
  ::execve(command_->path.c_str(), plan.argv.data(), plan.envp.data());
  report_failure(err_fd, errno, "cannot run '" + command_->path + "'");
}

void Process::run_child() {
  reset_crash_signals();
  detail::rearm_segment_fault_handler();  // truncated segments stay survivable (segment.hpp)
  int code = 0;
  try {
    if (options_.setup) options_.setup();
    if (target_) code = target_();
  } catch (const abi::__forced_unwind&) {
    // pthread_exit() from the target's thread: unwinding further would run the parent's frames
    // (copied by fork), so the child ends here. (glibc requires a forced unwind to be rethrown
    // or the process to end inside the handler.)
    flush_stdio();
    exit_child(0);
  } catch (const std::exception& e) {
    flush_stdio();
    std::fprintf(stderr, "%s (pid %d): uncaught %s: %s\n", name_.c_str(), static_cast<int>(::getpid()),
                 detail::demangle(typeid(e).name()).c_str(), e.what());
    code = 1;
  } catch (...) {
    flush_stdio();
    std::fprintf(stderr, "%s (pid %d): uncaught exception of unknown type\n", name_.c_str(),
                 static_cast<int>(::getpid()));
    code = 1;
  }
  flush_stdio();
  exit_child(code);
}

bool Process::try_reap() {
  Registry& r = registry();
  std::unique_lock<std::mutex> lock(r.mutex);
  if (!poll_locked(*child_)) return false;
  unlist_locked(r, child_);
  if (child_->lost && !child_->lost_reported) {
    child_->lost_reported = true;
    lock.unlock();
    throw Error::from_errno(ECHILD, "Process '" + name_ + "' (pid " + std::to_string(pid_) +
                                        "): cannot collect its exit status");
  }
  return true;
}

void Process::join() {
  require_started("join()");
  while (!try_reap()) {
    // Sleep until it ends, reaping nothing: the status is collected under the lock above.
    const int fd = pidfd();
    if (fd >= 0) {
      pollfd pfd{fd, POLLIN, 0};
      ::poll(&pfd, 1, -1);
    } else {
      siginfo_t info{};
      ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT);  // ECHILD: reaped
    }
  }
}

bool Process::join_until(detail::Clock::time_point deadline) {
  require_started("join_for()");
  if (try_reap()) return true;
  if (deadline == detail::Clock::time_point::max()) {
    join();
    return true;
  }
  for (unsigned round = 0;; ++round) {
    const auto now = detail::Clock::now();
    if (now >= deadline) return try_reap();
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
    const int fd = pidfd();
    if (fd >= 0) {
      timespec ts{};
      ts.tv_sec = static_cast<time_t>(left.count() / 1000000000);
      ts.tv_nsec = static_cast<long>(left.count() % 1000000000);
      pollfd pfd{fd, POLLIN, 0};
      ::ppoll(&pfd, 1, &ts, nullptr);
    } else {
      // No pidfd: look at the exit status again after a short sleep.
      std::this_thread::sleep_for(
          std::min<std::chrono::nanoseconds>(left, detail::exit_poll_slice(round)));
    }
    if (try_reap()) return true;
  }
}

bool Process::is_alive() {
  require_open("is_alive()");
  if (pid_ == 0) return false;
  return !try_reap();
}

std::optional<int> Process::exitcode() {
  require_open("exitcode()");
  if (pid_ == 0) return std::nullopt;
  try_reap();
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return child_->exitcode;
}

void Process::terminate() {
  require_started("terminate()");
  // Under the lock: nobody can reap the child (freeing its pid for reuse) before the signal.
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!child_->ended) send_signal(child_->pidfd, pid_, SIGTERM);
}

namespace detail {

void signal_children(const std::vector<pid_t>& pids, int sig) noexcept {
  // Under the registry's lock, as Process::kill: a child listed there and not ended cannot be
  // reaped (its pid freed for reuse) before the signal.
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (const auto& c : r.active) {
    if (!c->ended && std::find(pids.begin(), pids.end(), c->pid) != pids.end()) {
      send_signal(c->pidfd, c->pid, sig);
    }
  }
}

}  // namespace detail

void Process::kill() {
  require_started("kill()");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!child_->ended) send_signal(child_->pidfd, pid_, SIGKILL);
}

void Process::close() {
  if (closed_) return;
  if (pid_ != 0) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (!poll_locked(*child_)) {
      throw Error(errc::bad_state, "Process '" + name_ + "' (pid " + std::to_string(pid_) +
                                       "): close() while it is still running");
    }
    unlist_locked(r, child_);
  }
  close_sentinel();
  close_handed_fds();
  handed_.clear();
  closed_ = true;
  child_.reset();
  target_ = nullptr;  // releases the handles the target holds
  captured_.clear();
}

}  // namespace multiproc
