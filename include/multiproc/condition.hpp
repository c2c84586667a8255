// multiproc/condition.hpp — a condition variable shared between processes (Python's
// multiprocessing.Condition; C++'s std::condition_variable_any).
//
//   mp::Mutex m;  mp::Condition cv;  mp::SharedValue<int> items(0);   // shared with children
//   // consumer                                  // producer
//   std::unique_lock lock(m);                    { std::lock_guard lock(m); ++*items.lock(); }
//   cv.wait(lock, [&] { return ...; });          cv.notify_one();
//
// wait(lock) atomically releases `lock` and sleeps until notified, then locks it again before
// returning. `lock` is a Mutex, a RecursiveMutex, a std::unique_lock of either, or any other
// BasicLockable. With a RecursiveMutex every level the caller holds is released while waiting and
// restored before returning.
//
// notify(n) wakes min(n, processes waiting and not yet notified) of the processes waiting at the
// time of the call, notify_one() one, notify_all() all of them; a process that starts waiting
// after a notify is never woken by it. Any number of waiters and outstanding notifications is
// counted exactly. There are no spurious wake-ups: a wait returns true only when it consumed a
// notification, and a timed wait returns false only at its deadline (a waiter notified before it
// looked at the clock returns true). The predicate forms are still the right way to wait for a
// state. Waiting sleeps on a futex word in the segment (no CPU while blocked); timed waits honour
// their deadline to within the scheduler's resolution.
//
// How: every wait draws a 64-bit arrival number; numbers below `notified_below` are notified.
// The waiters above it form two groups: the serving group, formed by a notify from the waiters
// present then, and the newcomers who came since. A notify hands tickets to the serving group,
// whose members take them first come, first served; only once every member holds one (the group
// is then folded into the notified range) does it turn the newcomers into the serving group and
// hand them the rest. A waiter that times out without a ticket leaves its group's count. The
// counts sit under a small robust lock inside the Condition; a notified waiter returns without it.
//
// Crashes: no death makes the Condition unusable or loses a notification handed to a live
// waiter. A waiter that dies while waiting stays counted in its group, so one notification may be
// spent on it (only waiters present at that notify could have had it anyway). A notifier killed
// between updating the counts and waking sleepers delays them by at most 100 ms (sleepers look
// again that often); one killed in the middle of the update leaves counts the next user repairs,
// at worst as if that notify had been a notify(n) with a smaller n. A process that dies holding
// the Mutex is handled by the Mutex: the waiter that relocks it next sees previous_owner_died().
// A process stopped (SIGSTOP, a debugger) or long preempted while it holds the internal lock — a
// few instructions of a notify or a wait — holds up others' untimed calls until it runs again,
// but no timed wait past its deadline: a waiter that has not registered yet returns false with
// nothing changed; a registered one leaves through one of four departure slots, which the next
// holder of the internal lock settles — a notification that reached it after it gave up (from the
// stopped notifier) is passed on to a waiter still there, possibly one that came after that
// notify. (A Condition; a PlacedCondition has no room for slots and, like a Condition whose four
// slots are all taken, waits for the internal lock then.)
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/detail/sync_state.hpp>
#include <multiproc/error.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/recursive_mutex.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>

namespace multiproc {
namespace detail {

//! Whether L is a lock built on a MutexState (it has a robust_lock_ref hidden friend).
template <class L, class = void>
struct is_robust_ref : std::false_type {};
template <class L>
struct is_robust_ref<L, std::void_t<decltype(robust_lock_ref(std::declval<const L&>()))>>
    : std::true_type {};
template <class L>
struct is_unique_robust_lock : std::false_type {};
template <class M>
struct is_unique_robust_lock<std::unique_lock<M>> : is_robust_ref<std::remove_const_t<M>> {};

[[noreturn]] inline void condition_not_owner(const std::string& what, const char* problem) {
  throw Error(errc::not_owner, what + ": Condition wait with a lock " + problem);
}

// Relocking cannot be allowed to fail silently: the caller believes it holds the lock.
[[noreturn]] inline void condition_relock_failed(const std::exception& e) noexcept {
  std::fprintf(stderr, "multiproc: fatal: Condition could not relock after waiting: %s\n",
               e.what());
  std::abort();
}

//! The whole of a Condition wait on `s` (what: its name in messages) with `lock`, until notified
//! (true) or `deadline` (false; nullptr: none). A robust lock (Mutex, RecursiveMutex, the placed
//! locks, or a std::unique_lock of one) is released at every level and restored as it was held;
//! any other BasicLockable through its unlock()/lock().
template <class Lock>
bool condition_wait(ConditionCore* s, const std::string& what, Lock& lock,
                    const Clock::time_point* deadline, ConditionDepartures departed = nullptr) {
  using L = std::remove_const_t<Lock>;
  if constexpr (is_robust_ref<L>::value || is_unique_robust_lock<L>::value) {
    LockRef ref{};
    if constexpr (is_robust_ref<L>::value) {
      ref = robust_lock_ref(lock);
    } else {
      // Refuse a lock the caller does not hold before registering: a notify could reach a
      // registered waiter before it found out.
      if (lock.mutex() == nullptr) condition_not_owner(what, "a std::unique_lock without a mutex");
      ref = robust_lock_ref(*lock.mutex());
    }
    if (!mutex_held_by_caller(ref.state)) condition_not_owner(*ref.what, "not held by the caller");
    std::uint64_t seq = 0;
    if (!condition_enter(s, what, deadline, seq, departed)) return false;  // `lock` still held
    Released held{};
    try {
      held = mutex_release_all(ref.state, *ref.what);
    } catch (...) {
      condition_cancel(s, seq, what, departed);
      throw;
    }
    const bool notified = condition_sleep(s, seq, deadline, what, departed);
    try {
      mutex_reacquire(ref.state, held, *ref.what);
    } catch (const std::exception& e) {
      condition_relock_failed(e);
    }
    return notified;
  } else {
    std::uint64_t seq = 0;
    if (!condition_enter(s, what, deadline, seq, departed)) return false;  // `lock` still held
    try {
      lock.unlock();
    } catch (...) {
      condition_cancel(s, seq, what, departed);
      throw;
    }
    const bool notified = condition_sleep(s, seq, deadline, what, departed);
    try {
      lock.lock();
    } catch (const std::exception& e) {
      condition_relock_failed(e);
    }
    return notified;
  }
}

//! The waiting and notifying API of Condition and PlacedCondition over a ConditionState, which
//! Derived returns from cond_state() with its name from cond_what(), and its departure slots
//! from cond_departed() (nullptr: none).
template <class Derived>
class ConditionOps {
 public:
  //! Requires: the caller holds `lock`. Effects: releases it, sleeps until notified (never
  //! spuriously), locks it again. Throws: Error(errc::not_owner) if the caller does not hold a
  //! Mutex/RecursiveMutex passed as `lock`, or a unique_lock has none (nothing is released or
  //! registered then).
  template <class Lock>
  void wait(Lock& lock) const {
    wait_impl(lock, nullptr);
  }
  //! Effects: while (!pred()) wait(lock).
  template <class Lock, class Pred>
  void wait(Lock& lock, Pred pred) const {
    while (!pred()) wait_impl(lock, nullptr);
  }
  //! Returns: true if notified, false if the timeout passed first (and only then).
  template <class Lock, class Rep, class Period>
  bool wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_until(lock, deadline_after(timeout));
  }
  //! Returns: pred() at the end: waits until it holds or the timeout passes.
  template <class Lock, class Rep, class Period, class Pred>
  bool wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& timeout, Pred pred) const {
    return wait_until(lock, deadline_after(timeout), std::move(pred));
  }
  template <class Lock, class C, class D>
  bool wait_until(Lock& lock, const std::chrono::time_point<C, D>& deadline) const {
    const auto d = to_steady(deadline);
    return wait_impl(lock, &d);
  }
  template <class Lock, class C, class D, class Pred>
  bool wait_until(Lock& lock, const std::chrono::time_point<C, D>& deadline, Pred pred) const {
    const auto d = to_steady(deadline);
    while (!pred()) {
      // The deadline is looked at after every wake-up too: wake-ups that never end (notify_all
      // in a loop, or counts a scribble made impossible) must not keep the caller past it.
      if (!wait_impl(lock, &d) || Clock::now() >= d) return pred();
    }
    return true;
  }

  //! Effects: wakes one / at most n / all of the processes waiting now. n may be of any integer
  //! type and is never narrowed: n <= 0 wakes nobody (as Python's), n >= 2^32 - 1 wakes all (a
  //! notify(2^32) once woke nobody: the count was cut to 32 bits).
  void notify_one() const noexcept { notify(1); }
  template <class Int = std::uint32_t>
  void notify(Int n = 1) const noexcept {
    static_assert(std::is_integral_v<Int> && !std::is_same_v<Int, bool>,
                  "Condition::notify(n) takes an integer number of waiters");
    if constexpr (std::is_signed_v<Int>) {
      if (n <= 0) return;
    } else {
      if (n == 0) return;
    }
    std::uint32_t count = UINT32_MAX;
    if constexpr (sizeof(Int) < sizeof(std::uint32_t)) {
      count = static_cast<std::uint32_t>(n);
    } else if (static_cast<std::make_unsigned_t<Int>>(n) < UINT32_MAX) {
      count = static_cast<std::uint32_t>(n);
    }
    condition_notify(self().cond_state(), count, self().cond_what(), self().cond_departed());
  }
  void notify_all() const noexcept { notify(UINT32_MAX); }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
  template <class Lock>
  bool wait_impl(Lock& lock, const Clock::time_point* deadline) const {
    return condition_wait(self().cond_state(), self().cond_what(), lock, deadline,
                          self().cond_departed());
  }
};

}  // namespace detail

//! Constructors: Condition() is an unnamed condition variable, shared with children forked after
//! this call; Condition(create_only / open_only / open_or_create, name) creates / opens the one
//! called `name` (Throws: Error as Segment::create / open / open_or_create).
class Condition
    : public detail::Primitive<detail::ConditionState, Kind::condition, &detail::condition_init>,
      public detail::ConditionOps<Condition> {
 public:
  using Primitive::Primitive;

  const Segment& segment() const noexcept { return h_.segment(); }

 private:
  friend class detail::ConditionOps<Condition>;
  detail::ConditionCore* cond_state() const noexcept { return h_.state(); }
  detail::ConditionDepartures cond_departed() const noexcept { return h_.state()->departed; }
  const std::string& cond_what() const noexcept { return h_.what(); }
};

}  // namespace multiproc
