// Tasks and inputs shared by the Pool's test files (pool_test.cpp, pool_failure_test.cpp,
// pool_stream_test.cpp): plain functions, as Pool tasks must be, and an input range made on the fly.
#pragma once

#include "support/support.hpp"

#include <atomic>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace pooltest {

using namespace mptest;

// An Event made under a unique name, which tasks open by that name: `go.name`.
struct UniqueName {
  std::string name;
};
struct NamedEvent : UniqueName, mp::Event {
  explicit NamedEvent(const std::string& what)
      : UniqueName{unique_name(what)}, mp::Event(mp::create_only, name) {}
};

// Whether f() throws an E (any other exception goes through).
template <class E, class F>
bool throws(F&& f) {
  try {
    f();
  } catch (const E&) {
    return true;
  }
  return false;
}

inline long square(long x) { return x * x; }
inline long triple(int x) { return static_cast<long>(x) * 3; }
inline int add(int a, int b) { return a + b; }
inline std::string shout(std::string s, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += s;
  return out + "!";
}
inline long fail_on_three(long x) {
  if (x == 3) throw std::invalid_argument("three is not welcome");
  return x;
}
inline int my_pid(int) { return static_cast<int>(::getpid()); }
inline long kill_myself_on(long x) {
  if (x == 7) ::kill(::getpid(), SIGKILL);
  return x;
}
// An item no worker may ever see: kill_myself_or_report_poison() raises the flag named
// poison_flag_name(pool's process) when it does (the test creates it; a worker's parent is the
// process of its pool).
inline constexpr long kPoison = -5;
inline std::string poison_flag_name(pid_t pool_process) {
  return run_prefix() + "poison." + std::to_string(pool_process);
}
inline long kill_myself_or_report_poison(long x) {
  if (x == kPoison) mp::RawValue<int>(mp::open_only, poison_flag_name(::getppid())).store(1);
  return kill_myself_on(x);
}
// Blocks until the named event is set (a task the test controls without sleeping).
inline bool wait_for_event(std::string name) {
  mp::Event e(mp::open_only, name);
  return e.wait_for(std::chrono::seconds(60));
}
// Sets `started`, then waits for `name` (the test knows the task is running, not just queued).
inline bool signal_then_wait(std::string started, std::string name) {
  mp::Event(mp::open_only, started).set();
  return wait_for_event(std::move(name));
}
// Stores this worker's pid in the named RawValue, sets `started`, then waits for `name`.
inline bool report_pid_then_wait(std::string pid_name, std::string started, std::string name) {
  mp::RawValue<int>(mp::open_only, pid_name).store(static_cast<int>(::getpid()));
  return signal_then_wait(std::move(started), std::move(name));
}
// Item 0 waits (up to a minute) for the last item to set the named event: the map finishes in
// time only if the items after it are dealt to the other workers as they free up, and none but
// the one already queued behind item 0 waits for it. Returns whether it did not time out.
inline bool first_waits_for_last(long x, long last, std::string event) {
  mp::Event e(mp::open_only, event);
  if (x == last) e.set();
  return x != 0 || e.wait_for(std::chrono::seconds(60));
}
// Adds x to the named SharedValue<long> (a side effect the test can watch without touching the
// call's result).
inline long add_into(long x, std::string total) {
  mp::SharedValue<long>(mp::open_only, total).update([x](long& t) { t += x; });
  return x;
}
// Counts itself in the named SharedValue<long> (so the test sees how many tasks ran while it
// holds a worker stopped), then returns x².
inline long counted_square(long x, std::string count) {
  mp::SharedValue<long>(mp::open_only, count).update([](long& c) { ++c; });
  return x * x;
}
// Stores this worker's pid in the named RawValue, then returns n longs (8n bytes: a reply that
// streams through the worker's pipe in chunks, and waits for room when larger than its ring).
inline std::vector<long> report_pid_then_many(std::string pid_name, long n) {
  mp::RawValue<int>(mp::open_only, pid_name).store(static_cast<int>(::getpid()));
  return std::vector<long>(static_cast<std::size_t>(n), 7);
}
inline long exit_quietly(long x) {
  if (x == 2) std::_Exit(0);  // a "clean" exit in the middle of a task
  return x;
}
// Forks a child that sleeps `seconds` (holding, as a raw fork does, every pipe end the worker
// holds) and returns its pid, for the caller to kill.
inline long fork_a_sleeper(long seconds) {
  const pid_t p = ::fork();
  if (p == 0) {
    ::sleep(static_cast<unsigned>(seconds));
    ::_exit(0);
  }
  return p;
}
inline long length_of(std::string s) { return static_cast<long>(s.size()); }
inline long g_worker_setting = 0;
inline long worker_setting(long) { return g_worker_setting; }
inline void nothing() {}

inline std::vector<long> range(long n) {
  std::vector<long> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0L);
  return v;
}

// An input-only range 0, 1, 2, ... below `limit` (LONG_MAX: endless in practice) whose items are
// made as they are read; reading item `throw_at` throws. `read` counts the items read.
struct Numbers {
  long limit = LONG_MAX;
  long throw_at = -1;
  std::atomic<long>* read = nullptr;
  struct iterator {
    using iterator_category = std::input_iterator_tag;
    using value_type = long;
    using difference_type = std::ptrdiff_t;
    using pointer = const long*;
    using reference = long;
    long i;
    const Numbers* n;
    long operator*() const {
      if (i == n->throw_at) throw std::runtime_error("no item " + std::to_string(i));
      if (n->read != nullptr) ++*n->read;
      return i;
    }
    iterator& operator++() {
      ++i;
      return *this;
    }
    bool operator==(const iterator& o) const { return i == o.i; }
    bool operator!=(const iterator& o) const { return i != o.i; }
  };
  iterator begin() const { return {0, this}; }
  iterator end() const { return {limit, this}; }
};

// Resident memory of this process, in bytes.
inline long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

// 0² + 1² + ... + (n-1)², dividing before multiplying so that it does not overflow.
inline long sum_of_squares(long n) {
  long a = n - 1, b = n, c = 2 * n - 1;
  (a % 2 == 0 ? a : b) /= 2;
  (a % 3 == 0 ? a : b % 3 == 0 ? b : c) /= 3;
  return a * b * c;
}

}  // namespace pooltest
