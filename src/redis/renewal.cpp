// The process's lease-renewal thread (multiproc/redis/detail/renewal.hpp).
#include <multiproc/redis/detail/renewal.hpp>

#include <condition_variable>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <thread>

#include <pthread.h>
#include <unistd.h>

namespace multiproc::redis::detail {
namespace {

using Clock = std::chrono::steady_clock;

struct Entry {
  std::chrono::milliseconds period;
  Clock::time_point due;
  std::function<bool()> renew;
};

struct Renewer {
  std::mutex mutex;
  std::condition_variable cv;      // wakes the thread: a new entry, a poke
  std::condition_variable idle;    // the thread finished a run (reset() waits for it)
  std::map<std::uint64_t, Entry> entries;
  std::uint64_t next_id = 1;
  std::uint64_t running = 0;       // the id being renewed now, or 0
  bool started = false;

  void loop() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      auto next = Clock::time_point::max();
      std::uint64_t id = 0;
      for (auto& [k, e] : entries) {
        if (e.due < next) {
          next = e.due;
          id = k;
        }
      }
      if (id == 0) {
        cv.wait(lock);
        continue;
      }
      if (Clock::now() < next) {
        cv.wait_until(lock, next);
        continue;
      }
      Entry& e = entries.at(id);
      e.due = Clock::now() + e.period;
      std::function<bool()> f = e.renew;  // a copy: the entry may go while it runs
      running = id;
      lock.unlock();
      bool keep = true;
      try {
        keep = f();
      } catch (const std::exception&) {
        keep = true;  // the server is unreachable now: try again at the next period
      } catch (...) {
        keep = true;
      }
      lock.lock();
      running = 0;
      if (!keep) entries.erase(id);
      idle.notify_all();
    }
  }
};

// Never destroyed: the thread may run while static destructors do.
Renewer& renewer() {
  static Renewer* r = [] {
    auto* p = new Renewer;
    // A forked child has no renewal thread and none of its parent's entries; the mutex is held
    // across fork() so that the child's copy is consistent.
    pthread_atfork([] { renewer().mutex.lock(); }, [] { renewer().mutex.unlock(); },
                   [] {
                     Renewer& c = renewer();
                     // The condition variables may count the parent's renewal thread as a
                     // waiter, which the child does not have: a notify would wait for it
                     // forever (glibc). Fresh ones, without destroying the old (that could
                     // wait too); they own no resources.
                     new (&c.cv) std::condition_variable;
                     new (&c.idle) std::condition_variable;
                     c.entries.clear();
                     c.running = 0;
                     c.started = false;
                     c.mutex.unlock();
                   });
    return p;
  }();
  return *r;
}

}  // namespace

Renewal::Renewal(std::chrono::milliseconds period, std::function<bool()> renew) {
  Renewer& r = renewer();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (period.count() < 1) period = std::chrono::milliseconds(1);
  id_ = r.next_id++;
  r.entries.emplace(id_, Entry{period, Clock::now() + period, std::move(renew)});
  if (!r.started) {
    r.started = true;
    std::thread([&r] { r.loop(); }).detach();
  }
  r.cv.notify_all();
}

Renewal::~Renewal() { reset(); }

Renewal::Renewal(Renewal&& other) noexcept : id_(other.id_) { other.id_ = 0; }

Renewal& Renewal::operator=(Renewal&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    other.id_ = 0;
  }
  return *this;
}

void Renewal::reset() noexcept {
  if (id_ == 0) return;
  Renewer& r = renewer();
  std::unique_lock<std::mutex> lock(r.mutex);
  r.entries.erase(id_);
  r.idle.wait(lock, [&] { return r.running != id_; });
  id_ = 0;
}

void Renewal::poke() const noexcept {
  if (id_ == 0) return;
  Renewer& r = renewer();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.entries.find(id_);
  if (it == r.entries.end()) return;
  it->second.due = Clock::now();
  r.cv.notify_all();
}

}  // namespace multiproc::redis::detail
