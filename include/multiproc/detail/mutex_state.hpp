// multiproc/detail/mutex_state.hpp — the shared part of Mutex and RecursiveMutex. Private.
//
// Why not boost::interprocess::interprocess_mutex: on POSIX it is a process-shared pthread mutex
// without the robust attribute, so a holder that dies (SIGKILL, a crash) leaves it locked forever,
// and Boost's own "robust emulation" exists only for its spin mutexes and reports an unusable
// mutex. multiproc needs the opposite: the next locker recovers it and is told. So the lock is a
// pthread mutex with PTHREAD_MUTEX_ROBUST + PTHREAD_PROCESS_SHARED: the kernel's robust-futex list
// marks it when the holding thread dies and wakes a waiter, who gets EOWNERDEAD, makes it
// consistent and carries on; a short bounded spin in front keeps contended hand-offs cheap.
#pragma once

#include <multiproc/detail/futex.hpp>

#include <atomic>
#include <cstdint>
#include <pthread.h>
#include <string>
#include <sys/types.h>

namespace multiproc::detail {

// Layout (in shared memory, one cache line or two; written only by the current holder unless
// noted):
//   mutex        pthread_mutex_t, robust + process-shared; ERRORCHECK (Mutex) or RECURSIVE
//   owner        tid of the holder, 0 when free: set after locking, cleared before unlocking
//                (relaxed: the mutex itself orders it; others read it only for diagnostics)
//   depth        recursion depth of the holder (RecursiveMutex; 1 for Mutex)
//   owner_died   1 while the holder is the one that recovered the lock from a dead holder
//   inconsistent 1 from a recovery until someone marks the guarded data repaired (survives
//                unlock: SharedValue/SharedArray refuse to hand out such data silently)
//   recursive    immutable after init
struct alignas(64) MutexState {
  pthread_mutex_t mutex;
  std::atomic<std::int32_t> owner;
  std::uint32_t depth;
  std::atomic<std::uint32_t> owner_died;
  std::atomic<std::uint32_t> inconsistent;
  std::uint32_t recursive;
};

//! Initialises a zero-filled state in place. Throws Error if pthread refuses.
void mutex_init(MutexState* s, bool recursive, const std::string& what);

//! The calling thread's id (cached per thread, refreshed in forked children).
inline thread_local pid_t tls_tid = 0;
pid_t current_tid_slow() noexcept;
inline pid_t current_tid() noexcept {
  const pid_t t = tls_tid;
  return t != 0 ? t : current_tid_slow();
}

//! This process's pid and start time (cached: getpid() is a system call; refreshed in forked
//! children). Together they name this process across pid reuse.
inline std::atomic<pid_t> g_cached_pid{0};
inline std::atomic<std::uint64_t> g_cached_start{0};
pid_t current_pid_slow() noexcept;
inline pid_t current_pid() noexcept {
  const pid_t p = g_cached_pid.load(std::memory_order_acquire);
  return p != 0 ? p : current_pid_slow();
}
inline std::uint64_t current_start_time() noexcept {
  (void)current_pid();  // fills both caches
  return g_cached_start.load(std::memory_order_relaxed);
}

//! Blocks until held. Throws Error(errc::would_deadlock) when a Mutex is relocked by its holder.
void mutex_lock(MutexState* s, const std::string& what);
//! Returns true if it took the lock without blocking.
bool mutex_try_lock(MutexState* s, const std::string& what);
//! Returns false if the deadline passed first.
bool mutex_lock_until(MutexState* s, Clock::time_point deadline, const std::string& what);
//! Throws Error(errc::not_owner) when the caller does not hold it.
void mutex_unlock(MutexState* s, const std::string& what);
//! For destructors: unlocks, and terminates with a message if the caller does not hold it.
void mutex_unlock_noexcept(MutexState* s, const std::string& what) noexcept;

//! Fully releases a lock the caller holds (every recursion level); returns the depth it had.
//! Throws: Error(errc::not_owner) when the caller does not hold it.
unsigned mutex_release_all(MutexState* s, const std::string& what);
//! Takes the lock again up to `depth` levels (after mutex_release_all).
void mutex_reacquire(MutexState* s, unsigned depth, const std::string& what);

//! Whether the calling thread holds it, having recovered it from a dead holder.
inline bool mutex_owner_died(const MutexState* s) noexcept {
  return s->owner_died.load(std::memory_order_relaxed) != 0 &&
         s->owner.load(std::memory_order_relaxed) == current_tid();
}

//! Whether a holder died since the guarded data was last marked repaired.
inline bool mutex_inconsistent(const MutexState* s) noexcept {
  return s->inconsistent.load(std::memory_order_relaxed) != 0;
}
inline void mutex_mark_repaired(MutexState* s) noexcept {
  s->inconsistent.store(0, std::memory_order_relaxed);
}

//! Throws Error(errc::owner_died) naming `what` when the guarded data may be half-updated.
void throw_inconsistent(const std::string& what);

//! Holds the lock for a scope (the internal fast path of load/store/update: no handle copy).
class MutexScope {
 public:
  MutexScope(MutexState* s, const std::string& what) : s_(s), what_(what) { mutex_lock(s_, what_); }
  ~MutexScope() { mutex_unlock_noexcept(s_, what_); }
  MutexScope(const MutexScope&) = delete;
  MutexScope& operator=(const MutexScope&) = delete;
  //! Throws Error(errc::owner_died) when the guarded data may be half-updated.
  void require_consistent() const {
    if (mutex_inconsistent(s_)) throw_inconsistent(what_);
  }

 private:
  MutexState* s_;
  const std::string& what_;
};

//! Whether the calling thread holds it.
inline bool mutex_held_by_caller(const MutexState* s) noexcept {
  return s->owner.load(std::memory_order_relaxed) == current_tid();
}

}  // namespace multiproc::detail
