// Process: fork, run, _exit; pidfd sentinels; exit codes in Python's convention.
#include <multiproc/process.hpp>
#include <multiproc/detail/fork_hooks.hpp>

#include "os.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cxxabi.h>
#include <cstdio>
#include <fcntl.h>
#include <iostream>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <typeinfo>
#include <unistd.h>

namespace multiproc {
namespace {

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
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
  } catch (...) {
  }
  std::fflush(nullptr);
}

void reset_crash_signals() noexcept {
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS}) {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

}  // namespace

int cpu_count() noexcept { return detail::available_cpus(); }

Process::Process() : Process(Target{}) {}

Process::Process(Target target)
    : target_(std::move(target)), name_("Process-" + std::to_string(++process_counter)) {}

Process::Process(Process&& other) noexcept
    : target_(std::move(other.target_)),
      captured_(std::move(other.captured_)),
      name_(std::move(other.name_)),
      daemon_(other.daemon_),
      pid_(std::exchange(other.pid_, 0)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      reaped_(std::exchange(other.reaped_, false)),
      exitcode_(std::exchange(other.exitcode_, std::nullopt)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    finish();
    target_ = std::move(other.target_);
    captured_ = std::move(other.captured_);
    name_ = std::move(other.name_);
    daemon_ = other.daemon_;
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::exchange(other.pidfd_, -1);
    reaped_ = std::exchange(other.reaped_, false);
    exitcode_ = std::exchange(other.exitcode_, std::nullopt);
  }
  return *this;
}

Process::~Process() { finish(); }

void Process::finish() noexcept {
  if (pid_ != 0 && !reaped_) {
    try {
      if (daemon_) {
        terminate();
        if (!join_for(std::chrono::seconds(1))) {
          kill();
          join();
        }
      } else {
        join();
      }
    } catch (...) {  // destructors never throw; the child was reaped elsewhere
    }
  }
  if (pidfd_ >= 0) {
    ::close(pidfd_);
    pidfd_ = -1;
  }
}

Process& Process::set_name(std::string name) {
  name_ = std::move(name);
  return *this;
}

Process& Process::set_daemon(bool daemon) {
  if (pid_ != 0) {
    throw Error(errc::bad_state, "Process '" + name_ + "': set_daemon after start()");
  }
  daemon_ = daemon;
  return *this;
}

void Process::require_started(const char* action) const {
  if (pid_ == 0) {
    throw Error(errc::bad_state, "Process '" + name_ + "': " + action + " before start()");
  }
}

void Process::start() {
  if (pid_ != 0) throw Error(errc::bad_state, "Process '" + name_ + "': already started");
  flush_stdio();  // or the child would print the parent's buffered output a second time
  const pid_t parent = ::getpid();
  // When the target captured handles that track holders, the child waits until the parent has
  // registered it (below): otherwise a child that closes such a handle at once could be
  // registered again after its close.
  int registered[2] = {-1, -1};
  if (!captured_.empty() && ::pipe2(registered, O_CLOEXEC) != 0) {
    throw Error::from_errno(errno, "Process '" + name_ + "': pipe failed");
  }
  detail::forking_for_process() = true;  // atfork handlers: this child is registered below
  const pid_t pid = ::fork();
  detail::forking_for_process() = false;
  if (pid < 0) {
    for (int fd : registered) {
      if (fd >= 0) ::close(fd);
    }
    throw Error::from_errno(errno, "Process '" + name_ + "': fork failed");
  }
  if (pid == 0) {
    if (registered[0] >= 0) {
      ::close(registered[1]);
      char c;
      while (::read(registered[0], &c, 1) < 0 && errno == EINTR) {  // EOF if the parent died
      }
      ::close(registered[0]);
    }
    if (daemon_) {
      // A daemon never outlives its parent (strictly: the thread that forked it).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
    }
    run_child();
  }
  pid_ = pid;
  pidfd_ = open_pidfd(pid);
  detail::notify_forked(pid, captured_);  // before the parent can close its copies of handles
  if (registered[0] >= 0) {
    ::close(registered[0]);
    const char c = 1;
    while (::write(registered[1], &c, 1) < 0 && errno == EINTR) {
    }
    ::close(registered[1]);
  }
}

void Process::run_child() {
  reset_crash_signals();
  int code = 0;
  try {
    if (target_) code = target_();
  } catch (const abi::__forced_unwind&) {
    // pthread_exit() from the target's thread: unwinding further would run the parent's frames
    // (copied by fork), so the child ends here. (glibc requires a forced unwind to be rethrown
    // or the process to end inside the handler.)
    flush_stdio();
    ::_exit(0);
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
  ::_exit(code);
}

void Process::reap(int status) {
  reaped_ = true;
  if (WIFEXITED(status)) {
    exitcode_ = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exitcode_ = -WTERMSIG(status);
  }
}

bool Process::try_reap() {
  if (reaped_) return true;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reap(status);
      return true;
    }
    if (r == 0) return false;
    if (errno == EINTR) continue;
    reaped_ = true;  // ECHILD: someone else reaped it (SIGCHLD ignored, or waitpid(-1))
    throw Error::from_errno(errno, "Process '" + name_ + "' (pid " + std::to_string(pid_) +
                                       "): cannot collect its exit status");
  }
}

void Process::join() {
  require_started("join()");
  if (reaped_) return;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid_, &status, 0);
    if (r == pid_) {
      reap(status);
      return;
    }
    if (errno == EINTR) continue;
    reaped_ = true;
    throw Error::from_errno(errno, "Process '" + name_ + "' (pid " + std::to_string(pid_) +
                                       "): cannot collect its exit status");
  }
}

bool Process::join_until(detail::Clock::time_point deadline) {
  require_started("join_for()");
  if (try_reap()) return true;
  for (;;) {
    const auto now = detail::Clock::now();
    if (now >= deadline) return try_reap();
    if (deadline == detail::Clock::time_point::max()) {
      join();
      return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
    if (pidfd_ >= 0) {
      timespec ts{};
      ts.tv_sec = static_cast<time_t>(left.count() / 1000000000);
      ts.tv_nsec = static_cast<long>(left.count() % 1000000000);
      pollfd pfd{pidfd_, POLLIN, 0};
      ::ppoll(&pfd, 1, &ts, nullptr);
    } else {
      // No pidfd (kernel older than 5.3): poll the exit status with short sleeps.
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
          left, std::chrono::milliseconds(2)));
    }
    if (try_reap()) return true;
  }
}

bool Process::is_alive() {
  if (pid_ == 0 || reaped_) return false;
  return !try_reap();
}

std::optional<int> Process::exitcode() {
  if (pid_ == 0) return std::nullopt;
  try_reap();
  return exitcode_;
}

namespace {
// Signals the child through its pidfd when there is one: even if someone else reaped it (SIGCHLD
// ignored, waitpid(-1)) and its pid was reused, the signal cannot reach another process.
void send_signal(int pidfd, pid_t pid, int sig) {
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

void Process::terminate() {
  require_started("terminate()");
  if (!reaped_) send_signal(pidfd_, pid_, SIGTERM);
}

void Process::kill() {
  require_started("kill()");
  if (!reaped_) send_signal(pidfd_, pid_, SIGKILL);
}

}  // namespace multiproc
