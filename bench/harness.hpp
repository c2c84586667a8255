// The benchmark's harness: what every scenario file (queues.cpp, pipes.cpp, locks.cpp,
// processes.cpp, manager.cpp, executor.cpp) uses to start processes the same way, release them together and time only the
// work. bench.cpp holds the registry and main().
//
// Every implementation of a scenario — multiproc, Boost.Interprocess, a bare limit — sits in the
// same file and goes through the same harness template, so that the peers differ only in the
// calls being measured.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <sched.h>
#include <string>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;

//! One measurement: value, unit, and whether higher is better (printed as JSON by main()).
struct Result {
  double value;
  const char* unit;
  bool higher_is_better;
};

//! scenario -> implementation -> measurement. Each scenario file adds its scenarios.
using Scenarios = std::map<std::string, std::map<std::string, std::function<Result()>>>;
void add_queue_scenarios(Scenarios& s);
void add_pipe_scenarios(Scenarios& s);
void add_lock_scenarios(Scenarios& s);
void add_process_scenarios(Scenarios& s);
void add_manager_scenarios(Scenarios& s);   // manager.cpp, when the Manager is built
void add_executor_scenarios(Scenarios& s);  // executor.cpp, when the executor is built
void add_redis_scenarios(Scenarios& s);     // redis.cpp, in multiproc_redis_bench

//! A curve (curves.cpp): one value per point of x (processes, message bytes, a percentile, or a
//! category such as "create"), all measured by one run, printed by main() as
//! {"points": [["x", value], ...], "x": "<x_label>", "unit": ..., "better": ...}.
struct Curve {
  const char* x_label;
  const char* unit;
  bool higher_is_better;
  std::vector<std::pair<std::string, double>> points;
};
using Curves = std::map<std::string, std::map<std::string, std::function<Curve()>>>;
void add_curve_scenarios(Curves& c);  // curves.cpp

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "multiproc_bench: %s: %s\n", what, std::strerror(errno));
  std::exit(2);
}

//! Anonymous shared memory for a harness's own flags and results.
template <class T>
T* shared_new() {
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  return new (p) T();
}
template <class T>
void shared_delete(T* p) {
  p->~T();
  ::munmap(p, sizeof(T));
}

//! Start line: children call ready_and_wait(); the parent calls release() when all are ready.
struct alignas(64) StartLine {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  void ready_and_wait() {
    ready.fetch_add(1);
    while (go.load(std::memory_order_acquire) == 0) sched_yield();
  }
  void release(int n) {
    while (ready.load() < n) sched_yield();
    go.store(1, std::memory_order_release);
  }
};

//! Forks a child that runs body() and exits with 0.
inline pid_t spawn(const std::function<void()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    body();
    std::fflush(nullptr);
    ::_exit(0);
  }
  return pid;
}

//! Waits for a child; true when it exited with 0.
inline bool reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

inline double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

inline std::string unique(const char* what) {
  return std::string("bench.") + std::to_string(::getpid()) + "." + what;
}

inline void relax() { __builtin_ia32_pause(); }

inline long futex(std::atomic<int>* word, int op, int val) {
  return ::syscall(SYS_futex, reinterpret_cast<int*>(word), op, val, nullptr, nullptr, 0);
}

//! One child runs child() and the parent parent(), both released together; returns the seconds
//! parent() took. Dies with `what` when the child fails.
template <class Child, class Parent>
double timed_with_child(const char* what, Child child, Parent parent) {
  auto* line = shared_new<StartLine>();
  const pid_t pid = spawn([&] {
    line->ready_and_wait();
    child();
  });
  line->release(1);
  const auto t0 = Clock::now();
  parent();
  const double s = seconds(t0);
  const bool ok = reap(pid);
  shared_delete(line);
  if (!ok) die(what);
  return s;
}

//! n children each run prepare(k) (untimed: connecting, warming up), then body(k), released
//! together; returns the seconds from the release until all of them have exited. Dies with `what`
//! when one fails.
template <class Prepare, class Body>
double timed_prepared_children(const char* what, int n, Prepare prepare, Body body) {
  auto* line = shared_new<StartLine>();
  std::vector<pid_t> pids;
  for (int k = 0; k < n; ++k) {
    pids.push_back(spawn([&] {
      prepare(k);
      line->ready_and_wait();
      body(k);
    }));
  }
  line->release(n);
  const auto t0 = Clock::now();
  bool ok = true;
  for (pid_t pid : pids) ok = reap(pid) && ok;
  const double s = seconds(t0);
  shared_delete(line);
  if (!ok) die(what);
  return s;
}

//! n children run body(0) ... body(n - 1), released together; returns the seconds until all of
//! them have exited. Dies with `what` when one fails.
template <class Body>
double timed_children(const char* what, int n, Body body) {
  return timed_prepared_children(what, n, [](int) {}, body);
}

//! Bytes streamed 1 -> 1: the child calls send() n times, the parent recv() n times, each recv()
//! returning the size it got; MB/s.
template <class Send, class Recv>
Result bytes_run(std::size_t size, long n, Send send, Recv recv) {
  long bad = 0;
  const double s = timed_with_child(
      "bytes: the sender failed", [&] { for (long i = 0; i < n; ++i) send(); },
      [&] { for (long i = 0; i < n; ++i) bad += recv() != size; });
  if (bad != 0) die("bytes: wrong sizes");
  return {static_cast<double>(size) * n / s / 1e6, "MB/s", true};
}

//! Repeats io(offset, left) (a read or a write) until n bytes went through; false on an error or
//! end of file.
template <class Io>
bool transfer_all(std::size_t n, Io io) {
  for (std::size_t off = 0; off < n;) {
    const ssize_t done = io(off, n - off);
    if (done <= 0) return false;
    off += static_cast<std::size_t>(done);
  }
  return true;
}

}  // namespace bench
