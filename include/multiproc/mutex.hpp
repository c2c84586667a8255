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
// The one exception: a thread that, holding a Mutex, locks or unlocks a robust pthread mutex
// (PTHREAD_MUTEX_ROBUST) and dies before its next multiproc lock operation (README, "The lock").
// docs/lock-states.md lists every state of the lock and what each call returns in it.
//
// locked() says whether anyone holds it (Python's Lock.locked()); holder_tid() and holder_pid()
// say who, for diagnostics ("which worker is sitting on the jobs lock?").
//
// Unlike Python's Lock, a Mutex has an owner: only the thread that locked it may unlock it
// (Error otherwise), and relocking it from the holding thread throws instead of deadlocking.
//
// Cost: an uncontended lock()+unlock() is under ten nanoseconds (one compare-and-swap, one
// exchange, inlined); a contended lock() sleeps on the futex word in the shared segment at once
// (no CPU used while blocked). detail/mutex_state.hpp says how it is robust at that price: the
// word is on the thread's kernel robust list, shared with glibc, so the kernel releases it when
// the holder dies. Requires glibc; a thread without glibc's robust list gets an Error on lock().
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/detail/thread_safety.hpp>
#include <multiproc/segment.hpp>

#include <chrono>
#include <optional>
#include <type_traits>
#include <sys/types.h>

namespace multiproc {

template <class>
class SharedValue;
template <class>
class SharedArray;

namespace detail {

//! What Mutex and RecursiveMutex share: a handle to a robust lock in a segment.
class MULTIPROC_CAPABILITY("mutex") RobustLock {
 public:
  //! Effects: blocks until the calling thread holds the lock; recovers it from a dead holder.
  //! Throws: Error(errc::would_deadlock) if the calling thread already holds a (non-recursive)
  //! Mutex.
  void lock() const MULTIPROC_ACQUIRE() { mutex_lock(h_.state(), h_.what()); }

  //! Returns: true if the lock was free (or, for a RecursiveMutex, held by the caller) and is now
  //! held by the calling thread; false if another thread — or, for a Mutex, the caller — holds it.
  bool try_lock() const MULTIPROC_TRY_ACQUIRE(true) {
    return mutex_try_lock(h_.state(), h_.what());
  }

  //! Returns: true if the lock was taken before the timeout / deadline passed. A zero timeout or a
  //! passed deadline answers at once, as try_lock() does (no spin, no mark on the lock word).
  //! Throws: Error(errc::would_deadlock) if the calling thread already holds a Mutex.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) const
      MULTIPROC_TRY_ACQUIRE(true) {
    return mutex_lock_until(h_.state(), deadline_after(timeout), h_.what());
  }
  template <class C, class D>
  bool try_lock_until(const std::chrono::time_point<C, D>& deadline) const
      MULTIPROC_TRY_ACQUIRE(true) {
    return mutex_lock_until(h_.state(), to_steady(deadline), h_.what());
  }

  //! Requires: the calling thread holds the lock. Throws: Error(errc::not_owner) otherwise.
  void unlock() const MULTIPROC_RELEASE() { mutex_unlock(h_.state(), h_.what()); }

  //! Returns: true while the calling thread holds the lock after recovering it from a holder that
  //! died; false otherwise. Cleared when the lock is fully released.
  bool previous_owner_died() const noexcept { return mutex_owner_died(h_.state()); }

  //! Returns: whether some thread holds the lock now (Python's Lock.locked()). A snapshot: another
  //! process may take or release it the moment after. It reads the lock word and nothing else; it
  //! never blocks and costs lock() nothing. A lock whose holder died and that nobody has taken
  //! since reads false: it is free to take (the next locker gets it at once and sees
  //! previous_owner_died()). For a RecursiveMutex, true also when the caller holds it.
  bool locked() const noexcept { return mutex_locked(h_.state()); }

  //! Returns: the kernel thread id (gettid) of the holder, or nullopt when the lock is free — a
  //! snapshot, for diagnostics. In a single-threaded process it is the process id.
  std::optional<pid_t> holder_tid() const noexcept;

  //! Returns: the process id of the holder, or nullopt when the lock is free or the holder's
  //! process cannot be told. Best effort, for diagnostics: the lock word holds only the holder's
  //! thread id (nothing more is stored on the lock path), which this maps to its process through
  //! /proc/<tid>/status (Tgid). nullopt when that thread exited in the meantime or /proc hides it
  //! (hidepid); like every snapshot it may be stale by the time it is read, and a thread id reused
  //! after the holder released the lock and exited could name another process.
  std::optional<pid_t> holder_pid() const;

  //! The segment the lock lives in (its own, or that of the SharedValue/SharedArray it guards).
  const Segment& segment() const noexcept { return h_.segment(); }

 protected:
  explicit RobustLock(StateHandle<MutexState> h) noexcept : h_(std::move(h)) {}

  StateHandle<MutexState> h_;

 private:
  friend struct LockAccess;
  friend LockRef robust_lock_ref(const RobustLock& l) noexcept {
    return {l.h_.state(), &l.h_.what()};
  }
};

//! For SharedValue/SharedArray and Condition, which use a caller's lock by its state.
struct LockAccess {
  static MutexState* state(const RobustLock& l) noexcept { return l.h_.state(); }
  static const std::string& what(const RobustLock& l) noexcept { return l.h_.what(); }
};

//! Whether L is Mutex or RecursiveMutex (what a SharedValue/SharedArray may be guarded by).
template <class L>
inline constexpr bool is_robust_lock_v = std::is_base_of_v<RobustLock, L>;

inline void init_mutex(MutexState* s) { mutex_init(s, false, "Mutex"); }
inline void init_recursive_mutex(MutexState* s) { mutex_init(s, true, "RecursiveMutex"); }

//! Mutex or RecursiveMutex (kind K, initialised by Init), constructors included: both inherit them.
template <Kind K, auto Init>
class LockHandle : public Primitive<MutexState, K, Init, RobustLock> {
 public:
  using Primitive<MutexState, K, Init, RobustLock>::Primitive;

 private:
  // A SharedValue's or SharedArray's lock as a handle (their mutex()): a state in their segment.
  template <class>
  friend class multiproc::SharedValue;
  template <class>
  friend class multiproc::SharedArray;
  LockHandle(Segment seg, MutexState* state)
      : Primitive<MutexState, K, Init, RobustLock>(StateHandle<MutexState>(std::move(seg), state)) {}
};

}  // namespace detail

//! Constructors: Mutex() creates an unnamed lock, shared with children forked after this call;
//! Mutex(create_only / open_only / open_or_create, name) creates / opens / opens or creates the
//! lock called `name` (Throws: Error as Segment::create / open / open_or_create: taken or missing
//! name, wrong kind, ...).
class MULTIPROC_CAPABILITY("mutex") Mutex
    : public detail::LockHandle<Kind::mutex, &detail::init_mutex> {
 public:
  using LockHandle::LockHandle;
};

}  // namespace multiproc
