// multiproc/placed.hpp — robust locks, semaphores, events and condition variables that live in
// memory you manage (Boost's interprocess_mutex inside your own shared struct).
//
//   struct Shared {                       // in a SharedMemory block, a Boost managed segment,
//     mp::PlacedMutex lock;               // or any other shared mapping
//     mp::PlacedCondition ready;
//     long jobs = 0;
//   };
//   mp::SharedMemory block(sizeof(Shared));
//   Shared& s = *new (block.data()) Shared;  // or segment.construct<Shared>("shared")()
//   // in this process and in children (an unrelated process may map it at another address):
//   { std::unique_lock lock(s.lock); s.ready.wait(lock, [&] { return s.jobs > 0; }); }
//
// Mutex, Semaphore, Event and Condition are handles to an object in a segment of its own. The
// Placed types are the objects themselves, to embed in memory that processes already share. They
// are the same primitives (the same shared states and the same code: a PlacedMutex is the lock
// inside a Mutex) with the same methods and the same crash guarantees; what the handles add is
// the segment, the name, and keeping the mapping alive while a lock in it is held.
//
// Requirements on the memory: it is shared (MAP_SHARED: a multiproc SharedMemory, a Boost
// managed segment, a POSIX or System V segment, a memfd) — a private mapping would copy the
// object at the first write. Each object is constructed once, in place, before any other process
// uses it (placement new, Boost's construct<T>, the constructor of a struct that embeds it); never
// again while another process may use it. A constructed object's bytes are the zeros of a fresh
// segment (table below), so memory that is still all zero already holds one — but construct it
// where you can. The mapping may sit at a different address in every process: no object holds a
// pointer into itself or into another process (a held lock's robust-list node points to the
// holder's own list, and only the holder and the kernel read it). Destroying one is a no-op
// (trivial destructor): stopping to use it is enough; a process killed mid-call leaves nothing
// that needs destroying.
//
// Layout: standard-layout, trivially destructible, natural alignment (no cache-line padding, so
// any shared allocator can hold them), the same in every process of a build (sizes for 64-bit
// Linux). Not copyable or movable: copying a lock's bytes is never what you want. For the same
// reason a struct embedding them is not copyable, so SharedValue<T>/RawValue<T> (which copy T) do
// not take one: use a SharedMemory block or a managed segment.
//
//   type                   size  align  all-zero bytes are
//   PlacedMutex              40      8  an unlocked PlacedMutex
//   PlacedRecursiveMutex     40      8  (not valid: construct it)
//   PlacedSemaphore          16      4  a semaphore holding 0 units
//   PlacedEvent               8      4  a clear event
//   PlacedCondition          96      8  a condition nobody waits on
//
// Crashes — what survives a SIGKILL at any instruction, exactly as for the handles:
// - PlacedMutex / PlacedRecursiveMutex: robust. A holder that dies releases the lock to the next
//   locker (or a waiter blocked in lock()), whose previous_owner_died() is true until it unlocks.
//   Requires: the memory stays mapped in the holder's process while it holds the lock (the
//   kernel's robust list points into it; a Mutex handle keeps its own segment mapped for this).
// - PlacedSemaphore / PlacedEvent: one atomic word each, which no death corrupts (as Semaphore,
//   Event: a unit acquired by a process that dies is not returned; a setter that dies before
//   set() leaves the flag down).
// - PlacedCondition: as Condition; its internal lock is robust, a dead waiter may cost one
//   notification, and a dead notifier delays sleepers by at most 100 ms.
// Blocking waits sleep on a futex word in the object (shared futexes: they work across processes
// whatever the mapping addresses), in slices of 100 ms so that no death leaves a waiter asleep.
#pragma once

#include <multiproc/condition.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/detail/sync_state.hpp>
#include <multiproc/detail/thread_safety.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>

namespace multiproc {
namespace detail {

//! The name placed objects use in messages ("PlacedMutex: unlock by a thread that does not hold
//! it"): they have no segment to describe them.
enum class Placed { mutex, recursive_mutex, condition, semaphore };
inline const std::string& placed_what(Placed which) noexcept {
  static const std::string names[] = {"PlacedMutex", "PlacedRecursiveMutex", "PlacedCondition",
                                      "PlacedSemaphore"};
  return names[static_cast<int>(which)];
}

//! What PlacedMutex and PlacedRecursiveMutex share: a MutexState and the lock API on it.
template <bool Recursive>
class MULTIPROC_CAPABILITY("mutex") PlacedLock {
 public:
  PlacedLock(const PlacedLock&) = delete;
  PlacedLock& operator=(const PlacedLock&) = delete;

  //! Effects: blocks until the calling thread holds the lock; recovers it from a dead holder.
  //! Throws: Error(errc::would_deadlock) if the calling thread already holds a PlacedMutex.
  void lock() MULTIPROC_ACQUIRE() { mutex_lock(&s_, what()); }
  //! Returns: true if it took the lock without blocking (as Mutex::try_lock).
  bool try_lock() MULTIPROC_TRY_ACQUIRE(true) { return mutex_try_lock(&s_, what()); }
  //! Returns: true if the lock was taken before the timeout / deadline passed.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout)
      MULTIPROC_TRY_ACQUIRE(true) {
    return mutex_lock_until(&s_, deadline_after(timeout), what());
  }
  template <class C, class D>
  bool try_lock_until(const std::chrono::time_point<C, D>& deadline) MULTIPROC_TRY_ACQUIRE(true) {
    return mutex_lock_until(&s_, to_steady(deadline), what());
  }
  //! Requires: the calling thread holds the lock. Throws: Error(errc::not_owner) otherwise.
  void unlock() MULTIPROC_RELEASE() { mutex_unlock(&s_, what()); }
  //! Returns: true while the calling thread holds the lock after recovering it from a holder
  //! that died; false otherwise. Cleared when the lock is fully released.
  bool previous_owner_died() const noexcept { return mutex_owner_died(&s_); }
  //! Returns: whether some thread holds the lock now (a snapshot; false after its holder died,
  //! until someone takes it again).
  bool locked() const noexcept { return mutex_locked(&s_); }

 protected:
  PlacedLock() noexcept { mutex_init(&s_, Recursive, what()); }
  static const std::string& what() noexcept { return placed_what(Recursive ? Placed::recursive_mutex : Placed::mutex); }

  MutexState s_;

 private:
  friend LockRef robust_lock_ref(const PlacedLock& l) noexcept {
    return {const_cast<MutexState*>(&l.s_), &what()};
  }
};

}  // namespace detail

//! A robust lock in memory you manage: Mutex's lock without the segment. All-zero bytes are an
//! unlocked PlacedMutex, so a zero-filled segment needs no construction.
class MULTIPROC_CAPABILITY("mutex") PlacedMutex : public detail::PlacedLock<false> {
 public:
  //! Effects: an unlocked lock (the same bytes as zero-filling it).
  PlacedMutex() noexcept {}  // user-provided: not an aggregate of its base
};

//! A robust, reentrant lock in memory you manage: RecursiveMutex's lock without the segment.
//! Must be constructed (zero bytes are a PlacedMutex).
class MULTIPROC_CAPABILITY("mutex") PlacedRecursiveMutex : public detail::PlacedLock<true> {
 public:
  //! Effects: an unlocked reentrant lock.
  PlacedRecursiveMutex() noexcept {}
  //! Returns: how many times the calling thread holds it (0 if it does not).
  unsigned depth() const noexcept { return detail::mutex_held_by_caller(&s_) ? s_.depth : 0; }
};

//! A counting semaphore in memory you manage: Semaphore without the segment. All-zero bytes are a
//! semaphore holding 0 units.
class PlacedSemaphore {
 public:
  //! Effects: a semaphore holding `initial` units. Throws: Error(errc::invalid_argument) for a
  //! negative or too large initial value.
  explicit PlacedSemaphore(long initial = 1) {
    detail::semaphore_init(&s_, detail::semaphore_checked_initial(initial, "PlacedSemaphore"),
                           false);
  }
  PlacedSemaphore(const PlacedSemaphore&) = delete;
  PlacedSemaphore& operator=(const PlacedSemaphore&) = delete;

  //! Effects: takes one unit, blocking while there is none.
  void acquire() noexcept { detail::semaphore_acquire(&s_, nullptr); }
  //! Returns: true if it took a unit without blocking / before the timeout or deadline.
  bool try_acquire() noexcept { return detail::semaphore_try_acquire(&s_); }
  template <class Rep, class Period>
  bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
    return try_acquire_until(detail::deadline_after(timeout));
  }
  template <class C, class D>
  bool try_acquire_until(const std::chrono::time_point<C, D>& deadline) {
    const auto d = detail::to_steady(deadline);
    return detail::semaphore_acquire(&s_, &d);
  }
  //! Effects: adds k units and wakes up to k waiters. Throws: Error(errc::invalid_argument) if
  //! k < 1 or k > 2^31 - 1 (any integer type: nothing narrows) or if the count would overflow
  //! (nothing is added).
  template <class Int = std::uint32_t>
  void release(Int k = 1) {
    const std::string& what = detail::placed_what(detail::Placed::semaphore);
    detail::semaphore_release(&s_, detail::checked_release_count(k, what), what);
  }
  //! Returns: the units available now (a snapshot).
  std::uint32_t value() const noexcept { return s_.count.load(std::memory_order_relaxed); }

 private:
  detail::SemaphoreCore s_;
};

//! A flag processes wait for, in memory you manage: Event without the segment. All-zero bytes are
//! a clear event.
class PlacedEvent {
 public:
  //! Effects: a clear event (the same bytes as zero-filling it).
  PlacedEvent() noexcept { detail::event_init(&s_); }
  PlacedEvent(const PlacedEvent&) = delete;
  PlacedEvent& operator=(const PlacedEvent&) = delete;

  //! Effects: raises the flag and wakes every waiter / lowers the flag.
  void set() noexcept { detail::event_set(&s_); }
  void clear() noexcept { detail::event_clear(&s_); }
  //! Returns: whether the flag is raised now (a snapshot).
  bool is_set() const noexcept { return detail::event_is_set(&s_); }
  //! Effects: blocks until the flag is raised.
  void wait() noexcept { detail::event_wait(&s_, nullptr); }
  //! Returns: true if the flag was raised before the timeout / deadline, false otherwise.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    return wait_until(detail::deadline_after(timeout));
  }
  template <class C, class D>
  bool wait_until(const std::chrono::time_point<C, D>& deadline) {
    const auto d = detail::to_steady(deadline);
    return detail::event_wait(&s_, &d);
  }

 private:
  detail::EventCore s_;
};

//! A condition variable in memory you manage: Condition without the segment, with the same
//! wait / wait_for / wait_until / notify_one / notify(n) / notify_all (see condition.hpp: exact
//! counts, no spurious wake-ups). The lock may be a PlacedMutex, PlacedRecursiveMutex, Mutex,
//! RecursiveMutex, a std::unique_lock of one, or any other BasicLockable. All-zero bytes are a
//! condition nobody waits on.
class PlacedCondition : public detail::ConditionOps<PlacedCondition> {
 public:
  //! Effects: a condition nobody waits on (the same bytes as zero-filling it).
  PlacedCondition() { detail::condition_init(&s_); }
  PlacedCondition(const PlacedCondition&) = delete;
  PlacedCondition& operator=(const PlacedCondition&) = delete;

 private:
  friend class detail::ConditionOps<PlacedCondition>;
  detail::ConditionCore* cond_state() const noexcept {
    return const_cast<detail::ConditionCore*>(&s_);
  }
  static const std::string& cond_what() noexcept { return detail::placed_what(detail::Placed::condition); }
  static detail::ConditionDepartures cond_departed() noexcept { return nullptr; }  // no room

  detail::ConditionCore s_;
};

namespace detail {
template <class T>
inline constexpr bool placeable_v = std::is_standard_layout_v<T> &&
                                    std::is_trivially_destructible_v<T> &&
                                    alignof(T) <= alignof(std::max_align_t);
}  // namespace detail
static_assert(detail::placeable_v<PlacedMutex> && detail::placeable_v<PlacedRecursiveMutex> &&
                  detail::placeable_v<PlacedSemaphore> && detail::placeable_v<PlacedEvent> &&
                  detail::placeable_v<PlacedCondition>,
              "placed primitives are standard-layout, trivially destructible and need no more "
              "than malloc's alignment, so that any shared allocator can hold them");
static_assert(sizeof(PlacedMutex) == 40 && sizeof(PlacedSemaphore) == 16 &&
                  sizeof(PlacedEvent) == 8 && sizeof(PlacedCondition) == 96,
              "the sizes in the table above");

}  // namespace multiproc
