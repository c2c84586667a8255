#include "support.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <poll.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <ctime>
#include <unistd.h>

extern char** environ;

namespace mptest {

namespace {

// ThreadSanitizer starts llvm-symbolizer as a child of the process it symbolizes a report or a
// suppression for (the exception_ptr one in .ci/tsan.supp), and keeps it running: not a child of
// the test's making.
bool is_sanitizer_helper(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name.rfind("llvm-symbolizer", 0) == 0;
}

}  // namespace

std::vector<pid_t> running_children() {
  std::vector<pid_t> out;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string path = std::string("/proc/self/task/") + e->d_name + "/children";
      if (FILE* f = std::fopen(path.c_str(), "r")) {
        long pid = 0;
        while (std::fscanf(f, "%ld", &pid) == 1) {
          if (!is_sanitizer_helper(static_cast<pid_t>(pid))) out.push_back(static_cast<pid_t>(pid));
        }
        std::fclose(f);
      }
    }
    ::closedir(d);
  }
  return out;
}

namespace {

std::map<std::string, ScenarioFn>& scenarios() {
  static std::map<std::string, ScenarioFn> m;
  return m;
}

std::atomic<unsigned> name_counter{0};

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1000;
}

// The state letter of /proc/<pid>/stat (R, S, D, T, Z, X...), or '\0' when it cannot be read.
char proc_state(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return '\0';
  char buf[512] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the name in parentheses may itself hold ") "
  return p != nullptr && p[1] == ' ' ? p[2] : '\0';
}

// Waits for a pidfd to become readable, up to `timeout`; false on timeout.
bool wait_pidfd(int pidfd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{pidfd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

}  // namespace

const std::string& run_prefix() {
  static const std::string prefix = [] {
    if (const char* p = std::getenv("MPTEST_PREFIX")) return std::string(p);
    return "t" + std::to_string(::getpid()) + ".";
  }();
  return prefix;
}

std::string unique_name(const std::string& what) {
  // The pid keeps names made by forked children (which share the counter's value) distinct.
  return run_prefix() + std::to_string(::getpid()) + "." + std::to_string(++name_counter) + "." +
         what;
}

int run_child(std::function<int()> f, std::chrono::milliseconds timeout) {
  mp::Process p([f = std::move(f)] { return f(); });
  p.start();
  if (!p.join_for(timeout)) {
    BOOST_ERROR("child " << p.pid() << " still running after " << timeout.count()
                         << " ms: killed");
    p.kill();
    p.join();
    return -SIGKILL;
  }
  return *p.exitcode();
}

ScenarioRegistration::ScenarioRegistration(const char* name, ScenarioFn fn) {
  scenarios()[name] = fn;
}

int run_scenario_if_requested(int argc, char** argv) {
  if (argc < 3 || std::strcmp(argv[1], "--scenario") != 0) return -1;
  auto it = scenarios().find(argv[2]);
  if (it == scenarios().end()) {
    std::fprintf(stderr, "unknown scenario '%s'\n", argv[2]);
    return 2;
  }
  std::vector<std::string> args(argv + 3, argv + argc);
  try {
    return it->second(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scenario %s: uncaught exception: %s\n", argv[2], e.what());
    return 3;
  }
}

Spawned::Spawned(const std::string& scenario, const std::vector<std::string>& args) {
  std::vector<std::string> argv_s{"/proc/self/exe", "--scenario", scenario};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "MPTEST_PREFIX=", 14) != 0) env_s.emplace_back(*e);
  }
  env_s.push_back("MPTEST_PREFIX=" + run_prefix());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::fflush(nullptr);
  const int rc = ::posix_spawn(&pid_, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data());
  if (rc != 0) {
    throw std::runtime_error(std::string("posix_spawn failed: ") + std::strerror(rc));
  }
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd_ < 0) throw std::runtime_error("pidfd_open failed: the tests need Linux 5.3 or later");
}

Spawned::Spawned(Spawned&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      reaped_(other.reaped_),
      code_(other.code_) {}

Spawned::~Spawned() {
  if (pid_ != 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

int Spawned::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return code_;
  if (!wait_pidfd(pidfd_, timeout)) {
    BOOST_ERROR("spawned process " << pid_ << " still running after " << timeout.count()
                                   << " ms: killed");
    ::kill(pid_, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  code_ = decode_status(status);
  return code_;
}

void Spawned::kill_now() {
  if (!reaped_) ::kill(pid_, SIGKILL);
}

Gate::Gate() {
  if (::pipe2(fds_, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
}

Gate::~Gate() {
  for (int fd : fds_) {
    if (fd >= 0) ::close(fd);
  }
}

void Gate::signal(char c) {
  while (::write(fds_[1], &c, 1) < 0 && errno == EINTR) {
  }
}

void Gate::close_write() {
  if (fds_[1] >= 0) ::close(fds_[1]);
  fds_[1] = -1;
}

bool Gate::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fds_[0], POLLIN, 0};  // a timeout of 0 (or one already past) still looks once
    const int r = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t n = ::read(fds_[0], &last_, 1);
    if (n < 0 && errno == EINTR) continue;
    return n == 1;
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(500));  // polling with a deadline
  }
}

std::vector<std::unique_ptr<mp::Process>> start_all(int n, const std::function<int(int)>& body) {
  std::vector<std::unique_ptr<mp::Process>> ps;
  for (int i = 0; i < n; ++i) {
    ps.push_back(std::make_unique<mp::Process>([body, i] { return body(i); }));
    ps.back()->start();
  }
  return ps;
}

void join_all_ok(std::vector<std::unique_ptr<mp::Process>>& ps) {
  for (auto& p : ps) {
    BOOST_REQUIRE(p->join_for(std::chrono::seconds(60)));
    BOOST_TEST(p->exitcode().value() == 0);
  }
}

bool all_threads_stopped(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return false;
  bool stopped = true;
  int seen = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::FILE* f = std::fopen((dir + "/" + e->d_name + "/stat").c_str(), "r");
    if (f == nullptr) continue;
    char line[512] = {};
    const std::size_t n = std::fread(line, 1, sizeof line - 1, f);
    std::fclose(f);
    const char* close = std::strrchr(line, ')');  // the state follows the command's ")"
    if (n == 0 || close == nullptr || close[1] == 0) continue;
    ++seen;
    if (close[2] != 'T' && close[2] != 't') stopped = false;
  }
  ::closedir(d);
  return stopped && seen > 0;
}

bool is_stopped(pid_t pid) {
  const char state = proc_state(pid);
  return state == 'T' || state == 't';
}

ContinueAtExit::~ContinueAtExit() {
  for (pid_t pid : pids) ::kill(pid, SIGCONT);
}

PinnedToOneCpu::PinnedToOneCpu() {
  ok_ = ::sched_getaffinity(0, sizeof old_, &old_) == 0;
  if (!ok_) return;
  int cpu = 0;
  while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &old_)) ++cpu;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  ok_ = ::sched_setaffinity(0, sizeof one, &one) == 0;
}

PinnedToOneCpu::~PinnedToOneCpu() {
  if (ok_) ::sched_setaffinity(0, sizeof old_, &old_);
}

bool wait_until_sleeping(pid_t pid, std::chrono::milliseconds timeout) {
  return eventually([&] { return proc_state(pid) == 'S'; }, timeout);
}

bool wait_until_in_futex(pid_t pid, std::chrono::milliseconds timeout) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/syscall", static_cast<int>(pid));
  return eventually(
      [&] {
        FILE* f = std::fopen(path, "r");
        if (f == nullptr) return false;
        long number = -1;
        const int n = std::fscanf(f, "%ld", &number);
        std::fclose(f);
        return n == 1 && number == SYS_futex;
      },
      timeout);
}

bool still_our_child(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

bool is_zombie(pid_t pid) {
  siginfo_t info{};
  info.si_pid = 0;
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid;
}

bool pid_running(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  const char state = proc_state(pid);
  return state != '\0' && state != 'Z' && state != 'X';
}

std::thread repeat_until(const std::atomic<bool>& stop, std::atomic<long>& rounds,
                         std::function<void()> f) {
  return std::thread([&stop, &rounds, f = std::move(f)] {
    while (!stop.load()) {
      f();
      rounds.fetch_add(1);
    }
  });
}

std::vector<std::string> leftover_segments() {
  std::vector<std::string> out;
  const std::string prefix = "mp." + run_prefix();
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) out.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  return out;
}

}  // namespace mptest

namespace mptest {

void Clean::teardown() {
  for (const std::string& name : leftover_segments()) {
    BOOST_ERROR("left behind in /dev/shm: " << name);
    ::shm_unlink(("/" + name).c_str());
  }
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(-1, &status, WNOHANG);
    if (r > 0) {
      BOOST_ERROR("an unreaped child (zombie) was left behind: pid " << r);
      continue;
    }
    if (r == 0) {
      // Still running: find it through /proc, report it, and kill and reap it.
      for (pid_t child : running_children()) {
        BOOST_ERROR("a child process was still running after the test: pid " << child);
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
      }
    }
    break;
  }
}

bool message_has(const std::exception& e, const std::string& part) {
  const bool found = std::string(e.what()).find(part) != std::string::npos;
  if (!found) BOOST_TEST_MESSAGE("message was: " << e.what());
  return found;
}

bool limit_address_space(long long headroom) {
  std::ifstream statm("/proc/self/statm");
  long long pages = 0;
  if (!(statm >> pages)) return false;
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0) return false;
  limit.rlim_cur = static_cast<rlim_t>(pages * ::sysconf(_SC_PAGESIZE) + headroom);
  return ::setrlimit(RLIMIT_AS, &limit) == 0;
}

bool lift_address_space_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0) return false;
  limit.rlim_cur = limit.rlim_max;
  return ::setrlimit(RLIMIT_AS, &limit) == 0;
}

}  // namespace mptest
