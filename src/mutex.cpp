// Robust process-shared mutexes: Mutex and RecursiveMutex share this code.
#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/error.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/recursive_mutex.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <sys/syscall.h>
#include <unistd.h>

namespace multiproc::detail {
namespace {

// Bounded spin before sleeping in the kernel: long enough to cover a typical critical section
// hand-off between cores, short enough that a descheduled holder costs little.
constexpr int kSpinIterations = 100;

void reset_tid_after_fork() noexcept { tls_tid = 0; }

struct AtforkRegistration {
  AtforkRegistration() { ::pthread_atfork(nullptr, nullptr, &reset_tid_after_fork); }
};

[[noreturn]] void throw_errno(int err, const std::string& what, const char* action) {
  throw Error::from_errno(err, what + ": " + action);
}

// After pthread reported success (0) or EOWNERDEAD, records the new holder.
void on_acquired(MutexState* s, int rc) {
  const pid_t me = current_tid();
  if (rc == EOWNERDEAD) {
    // The previous holder died holding it. Mark it usable again and tell the new holder, who may
    // have to repair the data it guards. For a RecursiveMutex the dead owner's whole recursion is
    // gone: pthread has reset its count to 1, and so do we.
    ::pthread_mutex_consistent(&s->mutex);
    s->owner.store(me, std::memory_order_relaxed);
    s->depth = 1;
    s->owner_died.store(1, std::memory_order_relaxed);
    s->inconsistent.store(1, std::memory_order_relaxed);
    return;
  }
  if (s->recursive != 0 && s->owner.load(std::memory_order_relaxed) == me) {
    ++s->depth;
    return;
  }
  s->owner.store(me, std::memory_order_relaxed);
  s->depth = 1;
}

// Locked with rc; returns true when held, false for EBUSY/ETIMEDOUT; throws otherwise.
bool handle(MutexState* s, int rc, const std::string& what) {
  switch (rc) {
    case 0:
    case EOWNERDEAD:
      on_acquired(s, rc);
      return true;
    case EBUSY:
    case ETIMEDOUT:
      return false;
    case EDEADLK:
      throw Error(errc::would_deadlock,
                  what + ": lock: the calling thread already holds it (use a RecursiveMutex to "
                         "lock it again)");
    case ENOTRECOVERABLE:
      throw Error(errc::corrupt,
                  what + ": lock: unrecoverable (it was unlocked after its holder died without "
                         "being made consistent)");
    case EAGAIN:
      throw Error(errc::bad_state, what + ": lock: too many recursive locks");
    default:
      throw_errno(rc, what, "lock");
  }
}

// The lock word of a glibc mutex, read to spin without writing the cache line. Only a hint: the
// decision is always pthread_mutex_trylock's.
bool looks_free(const MutexState* s) noexcept {
#if defined(__GLIBC__)
  return __atomic_load_n(&s->mutex.__data.__lock, __ATOMIC_RELAXED) == 0;
#else
  return true;
#endif
}

bool spin_try_lock(MutexState* s, const std::string& what) {
  for (int i = 0; i < kSpinIterations; ++i) {
    cpu_relax();
    if (looks_free(s) && handle(s, ::pthread_mutex_trylock(&s->mutex), what)) return true;
  }
  return false;
}

}  // namespace

pid_t current_tid_slow() noexcept {
  static AtforkRegistration registration;  // once per process; resets the cache in children
  tls_tid = static_cast<pid_t>(::syscall(SYS_gettid));
  return tls_tid;
}

void mutex_init(MutexState* s, bool recursive, const std::string& what) {
  pthread_mutexattr_t attr;
  int rc = ::pthread_mutexattr_init(&attr);
  if (rc != 0) throw_errno(rc, what, "cannot initialise mutex attributes");
  struct AttrGuard {
    pthread_mutexattr_t* a;
    ~AttrGuard() { ::pthread_mutexattr_destroy(a); }
  } guard{&attr};
  if ((rc = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) != 0 ||
      (rc = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) != 0 ||
      (rc = ::pthread_mutexattr_settype(
           &attr, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK)) != 0) {
    throw_errno(rc, what, "cannot set robust process-shared mutex attributes");
  }
  if ((rc = ::pthread_mutex_init(&s->mutex, &attr)) != 0) {
    throw_errno(rc, what, "cannot initialise the mutex");
  }
  s->owner.store(0, std::memory_order_relaxed);
  s->depth = 0;
  s->owner_died.store(0, std::memory_order_relaxed);
  s->inconsistent.store(0, std::memory_order_relaxed);
  s->recursive = recursive ? 1 : 0;
}

void mutex_lock(MutexState* s, const std::string& what) {
  if (handle(s, ::pthread_mutex_trylock(&s->mutex), what)) return;
  if (s->recursive == 0 && s->owner.load(std::memory_order_relaxed) == current_tid()) {
    handle(s, EDEADLK, what);  // throws; checked before spinning on ourselves
  }
  if (spin_try_lock(s, what)) return;
  int rc;
  while ((rc = ::pthread_mutex_lock(&s->mutex)) == EINTR) {
  }
  handle(s, rc, what);
}

bool mutex_try_lock(MutexState* s, const std::string& what) {
  const int rc = ::pthread_mutex_trylock(&s->mutex);
  // Held by the caller: not available, as for any other holder (Python's acquire(False) says
  // False too). Only the blocking forms report the deadlock.
  if (rc == EDEADLK) return false;
  return handle(s, rc, what);
}

bool mutex_lock_until(MutexState* s, Clock::time_point deadline, const std::string& what) {
  if (handle(s, ::pthread_mutex_trylock(&s->mutex), what)) return true;
  if (s->recursive == 0 && s->owner.load(std::memory_order_relaxed) == current_tid()) {
    handle(s, EDEADLK, what);
  }
  if (Clock::now() >= deadline) return false;
  if (spin_try_lock(s, what)) return true;
  if (deadline == Clock::time_point::max()) {
    mutex_lock(s, what);
    return true;
  }
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1000000000);
  ts.tv_nsec = static_cast<long>(ns % 1000000000);
  int rc;
  while ((rc = ::pthread_mutex_clocklock(&s->mutex, CLOCK_MONOTONIC, &ts)) == EINTR) {
  }
  return handle(s, rc, what);
}

void mutex_unlock(MutexState* s, const std::string& what) {
  if (s->owner.load(std::memory_order_relaxed) != current_tid()) {
    throw Error(errc::not_owner, what + ": unlock by a thread that does not hold it");
  }
  if (--s->depth > 0) {  // RecursiveMutex: still held at an outer level
    if (::pthread_mutex_unlock(&s->mutex) != 0) {
      ++s->depth;
      throw Error(errc::not_owner, what + ": unlock by a thread that does not hold it");
    }
    return;
  }
  s->owner_died.store(0, std::memory_order_relaxed);
  s->owner.store(0, std::memory_order_relaxed);
  const int rc = ::pthread_mutex_unlock(&s->mutex);
  if (rc != 0) throw_errno(rc, what, "unlock");
}

void throw_inconsistent(const std::string& what) {
  throw Error(errc::owner_died,
              what + ": a process died while holding its lock, so the data may be half-updated; "
                     "take lock(), repair it and call mark_repaired() on the guard (or store a "
                     "whole new value)");
}

unsigned mutex_release_all(MutexState* s, const std::string& what) {
  if (s->owner.load(std::memory_order_relaxed) != current_tid()) {
    throw Error(errc::not_owner, what + ": release by a thread that does not hold it");
  }
  const unsigned depth = s->depth;
  for (unsigned i = 0; i < depth; ++i) mutex_unlock(s, what);
  return depth;
}

void mutex_reacquire(MutexState* s, unsigned depth, const std::string& what) {
  mutex_lock(s, what);
  for (unsigned i = 1; i < depth; ++i) mutex_lock(s, what);  // recursive: immediate
}

void mutex_unlock_noexcept(MutexState* s, const std::string& what) noexcept {
  try {
    mutex_unlock(s, what);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "multiproc: fatal: %s\n", e.what());
    std::abort();
  }
}

}  // namespace multiproc::detail

// ---------------------------------------------------------------------------------------------
// Mutex and RecursiveMutex handles

namespace multiproc {
namespace {

Segment::Init mutex_initialiser(bool recursive) {
  return [recursive](void* body) {
    detail::mutex_init(static_cast<detail::MutexState*>(body), recursive,
                       recursive ? "RecursiveMutex" : "Mutex");
  };
}

using detail::state_layout;
using detail::MutexState;

}  // namespace

void detail::RobustLock::attach(Segment seg) {
  state_ = state_of<MutexState>(seg);
  seg.track_lock_owner(&state_->owner);
  seg_ = std::move(seg);
}

Mutex::Mutex() {
  attach(Segment::create_anonymous(state_layout<MutexState>(Kind::mutex), mutex_initialiser(false)));
}
Mutex::Mutex(create_only_t, const Name& name) {
  attach(Segment::create(name, state_layout<MutexState>(Kind::mutex), mutex_initialiser(false)));
}
Mutex::Mutex(open_only_t, const Name& name) { attach(Segment::open(name, Kind::mutex, nullptr)); }
Mutex::Mutex(open_or_create_t, const Name& name) {
  attach(Segment::open_or_create(name, state_layout<MutexState>(Kind::mutex),
                                 mutex_initialiser(false)));
}

RecursiveMutex::RecursiveMutex() {
  attach(Segment::create_anonymous(state_layout<MutexState>(Kind::recursive_mutex),
                                   mutex_initialiser(true)));
}
RecursiveMutex::RecursiveMutex(create_only_t, const Name& name) {
  attach(Segment::create(name, state_layout<MutexState>(Kind::recursive_mutex),
                         mutex_initialiser(true)));
}
RecursiveMutex::RecursiveMutex(open_only_t, const Name& name) {
  attach(Segment::open(name, Kind::recursive_mutex, nullptr));
}
RecursiveMutex::RecursiveMutex(open_or_create_t, const Name& name) {
  attach(Segment::open_or_create(name, state_layout<MutexState>(Kind::recursive_mutex),
                                 mutex_initialiser(true)));
}

}  // namespace multiproc
