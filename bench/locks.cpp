// Lock scenarios: N processes incrementing one counter under the lock (increments/s), and an
// uncontended lock + unlock (ns); multiproc's SharedValue and Mutex beside Boost's
// interprocess_mutex and a plain process-shared pthread mutex.
#include "harness.hpp"
#include "peers.hpp"

#include <multiproc/multiproc.hpp>

#include <boost/interprocess/sync/interprocess_mutex.hpp>

#include <pthread.h>

namespace mp = multiproc;
namespace bip = boost::interprocess;

namespace bench {
namespace {

// ---- lock contention: N processes incrementing one shared counter under the lock ------------

template <class Increment>
Result contention_run(int procs, long per_proc, Increment increment, const std::function<long()>& total) {
  const double s = timed_children("lock_contention: a process failed", procs, [&](int) {
    for (long i = 0; i < per_proc; ++i) increment();
  });
  if (total() != procs * per_proc) die("lock_contention: wrong count");
  return {procs * per_proc / s, "increments/s", true};
}

Result contention_multiproc(int procs) {
  // What a user writes: a SharedValue<long> and its own robust lock.
  mp::SharedValue<long> counter(0);
  return contention_run(
      procs, 10000000, [&] { counter.update([](long& v) { ++v; }); }, [&] { return counter.load(); });
}

Result contention_boost(int procs) {
  auto* c = shared_new<BoostCounter>();
  Result r = contention_run(
      procs, 10000000,
      [&] {
        c->mutex.lock();
        ++c->value;
        c->mutex.unlock();
      },
      [&] { return c->value; });
  shared_delete(c);
  return r;
}

Result contention_pthread(int procs) {
  // The bare limit: a plain (not robust) process-shared pthread mutex.
  auto* c = shared_new<PthreadCounter>();
  Result r = contention_run(
      procs, 10000000,
      [&] {
        pthread_mutex_lock(&c->mutex);
        ++c->value;
        pthread_mutex_unlock(&c->mutex);
      },
      [&] { return c->value; });
  shared_delete(c);
  return r;
}

// ---- uncontended lock + unlock, nanoseconds -----------------------------------------------------

template <class Lock, class Unlock>
Result uncontended_run(Lock lock, Unlock unlock) {
  const long n = 20000000;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    lock();
    asm volatile("" ::: "memory");
    unlock();
  }
  return {seconds(t0) / n * 1e9, "ns", false};
}

Result uncontended_multiproc() {
  mp::Mutex m;
  return uncontended_run([&] { m.lock(); }, [&] { m.unlock(); });
}

Result uncontended_boost() {
  auto* c = shared_new<BoostCounter>();
  Result r = uncontended_run([&] { c->mutex.lock(); }, [&] { c->mutex.unlock(); });
  shared_delete(c);
  return r;
}

Result uncontended_pthread() {
  auto* c = shared_new<PthreadCounter>();
  Result r = uncontended_run([&] { pthread_mutex_lock(&c->mutex); },
                             [&] { pthread_mutex_unlock(&c->mutex); });
  shared_delete(c);
  return r;
}

}  // namespace

void add_lock_scenarios(Scenarios& s) {
  for (int procs : {2, 4, 8}) {
    s["lock_contention_" + std::to_string(procs) + "p"] = {
        {"multiproc", [procs] { return contention_multiproc(procs); }},
        {"boost_interprocess_mutex", [procs] { return contention_boost(procs); }},
        {"bare_pthread_mutex", [procs] { return contention_pthread(procs); }}};
  }
  s["lock_uncontended"] = {{"multiproc", uncontended_multiproc},
                           {"boost_interprocess_mutex", uncontended_boost},
                           {"bare_pthread_mutex", uncontended_pthread}};
}

}  // namespace bench
