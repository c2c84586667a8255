// multiproc/mutex.hpp — a robust lock shared between processes (Python's multiprocessing.Lock).
//
// Mutex is a handle to a lock in shared memory. Share it with forked children by copying the
// handle (a lambda run by a Process may capture it by value), or with unrelated processes by name:
// Mutex(create_only, "jobs.lock") here, Mutex(open_only, "jobs.lock") there. It meets the standard
// Lockable and TimedLockable requirements, so std::lock_guard, std::unique_lock and
// std::scoped_lock work. Its methods are const (a handle is like a pointer), so a non-mutable lambda
// that captured it by value can still lock it: std::lock_guard lock(m) deduces lock_guard<const Mutex>.
//
// Crashes: the lock is robust. If its holder dies — SIGKILL, a crash, a thread that exits holding
// it — the next lock() (or a waiter already blocked in lock()) succeeds at once, and
// previous_owner_died() is true until that holder unlocks, so it can repair the data it guards.
// Boost's interprocess_mutex stays locked forever in that case, and Python's Lock deadlocks.
//
// Unlike Python's Lock, a Mutex has an owner: only the thread that locked it may unlock it
// (Error otherwise), and relocking it from the holding thread throws instead of deadlocking.
//
// Cost: an uncontended lock()+unlock() is a few tens of nanoseconds; a contended lock() spins
// briefly, then sleeps on a futex in the shared segment (no CPU used while blocked).
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/segment.hpp>

#include <chrono>

namespace multiproc {

class Mutex {
 public:
  //! Effects: creates an unnamed lock, shared with children forked after this call.
  Mutex();
  //! Effects: creates / opens / opens or creates the lock called `name`.
  //! Throws: Error as Segment::create / Segment::open (taken or missing name, wrong kind, ...).
  Mutex(create_only_t, const Name& name);
  Mutex(open_only_t, const Name& name);
  Mutex(open_or_create_t, const Name& name);

  //! Effects: blocks until the calling thread holds the lock; recovers it from a dead holder.
  //! Throws: Error(errc::would_deadlock) if the calling thread already holds it.
  void lock() const { detail::mutex_lock(state_, seg_.describe()); }

  //! Returns: true if the lock was free and is now held by the calling thread; false if anyone,
  //! the caller included, holds it.
  bool try_lock() const { return detail::mutex_try_lock(state_, seg_.describe()); }

  //! Returns: true if the lock was taken before the timeout / deadline passed.
  //! Throws: Error(errc::would_deadlock) if the calling thread already holds it.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return detail::mutex_lock_until(state_, detail::deadline_after(timeout), seg_.describe());
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    return detail::mutex_lock_until(state_, detail::to_steady(deadline), seg_.describe());
  }

  //! Requires: the calling thread holds the lock. Throws: Error(errc::not_owner) otherwise.
  void unlock() const { detail::mutex_unlock(state_, seg_.describe()); }

  //! Returns: true while the calling thread holds the lock after recovering it from a holder that
  //! died; false otherwise. Cleared by unlock().
  bool previous_owner_died() const noexcept { return detail::mutex_owner_died(state_); }

  //! The segment the lock lives in (its own, or that of the SharedValue/SharedArray it guards).
  const Segment& segment() const noexcept { return seg_; }

 private:
  template <class>
  friend class SharedValue;
  template <class>
  friend class SharedArray;
  Mutex(Segment seg, detail::MutexState* state) : seg_(std::move(seg)), state_(state) {}

  Segment seg_;
  detail::MutexState* state_ = nullptr;
};

}  // namespace multiproc
