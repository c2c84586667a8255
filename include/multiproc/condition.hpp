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
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/error.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/recursive_mutex.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <type_traits>

namespace multiproc {
namespace detail {

// Layout (128 bytes; offset: field; written under `lock` unless noted):
//   0   notified_below  arrival numbers below it are notified; only grows. Stored (release)
//                       under `lock`; waiters read it (acquire) without the lock to return early
//   8   newcomer_word   futex word of sleeping newcomers: +1 whenever the newcomers become the
//                       serving group (their sleepers are then moved to serving_word)
//   12  serving_word    futex word of sleeping serving-group members: +1 whenever tickets are
//                       handed out
//   16  lock            robust mutex guarding everything below (held for a few instructions)
//   56  arrived         arrival numbers handed out (the next waiter's number)
//   64  serving_end     the serving group is [notified_below, serving_end), the newcomers
//                       [serving_end, arrived)
//   72  serving         serving-group members still waiting (dead ones included)
//   80  tickets         notifications handed to the serving group and not yet taken;
//                       tickets < serving, or both 0 (a group whose members all hold tickets
//                       is folded into the notified range at once)
//   88  newcomers       newcomers still waiting (dead ones included)
struct alignas(64) ConditionState {
  std::atomic<std::uint64_t> notified_below;
  std::atomic<std::uint32_t> newcomer_word;
  std::atomic<std::uint32_t> serving_word;
  MutexState lock;
  std::uint64_t arrived;
  std::uint64_t serving_end;
  std::uint64_t serving;
  std::uint64_t tickets;
  std::uint64_t newcomers;
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "Condition's shared 64-bit counter must be a lock-free atomic");
static_assert(offsetof(ConditionState, arrived) == 56 && sizeof(ConditionState) == 128,
              "the Condition layout above is shared between builds");

void condition_init(ConditionState* s);
//! Registers a waiter; returns its arrival number.
std::uint64_t condition_enter(ConditionState* s, const std::string& what);
//! Unregisters a waiter that never slept (its lock could not be released).
void condition_cancel(ConditionState* s, std::uint64_t ticket, const std::string& what) noexcept;
//! Sleeps until the waiter is notified (true) or the deadline passes (false). Unregisters it.
bool condition_sleep(ConditionState* s, std::uint64_t ticket, const Clock::time_point* deadline,
                     const std::string& what) noexcept;
//! Notifies up to n of the waiters present now and not yet notified, and wakes them.
void condition_notify(ConditionState* s, std::uint32_t n, const std::string& what) noexcept;
//! Waiters present and not yet notified (a snapshot, for tests and diagnostics).
std::uint64_t condition_waiting(ConditionState* s, const std::string& what);

template <class L>
struct is_unique_robust_lock : std::false_type {};
template <class M>
struct is_unique_robust_lock<std::unique_lock<M>>
    : std::is_base_of<RobustLock, std::remove_const_t<M>> {};

}  // namespace detail

class Condition {
 public:
  //! Effects: an unnamed condition variable, shared with children forked after this call.
  Condition();
  Condition(create_only_t, const Name& name);
  Condition(open_only_t, const Name& name);
  Condition(open_or_create_t, const Name& name);

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
    const auto deadline = detail::deadline_after(timeout);
    return wait_impl(lock, &deadline);
  }
  //! Returns: pred() at the end: waits until it holds or the timeout passes.
  template <class Lock, class Rep, class Period, class Pred>
  bool wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& timeout, Pred pred) const {
    const auto deadline = detail::deadline_after(timeout);
    return wait_until_pred(lock, deadline, pred);
  }
  template <class Lock, class C, class D>
  bool wait_until(Lock& lock, const std::chrono::time_point<C, D>& deadline) const {
    const auto d = detail::to_steady(deadline);
    return wait_impl(lock, &d);
  }
  template <class Lock, class C, class D, class Pred>
  bool wait_until(Lock& lock, const std::chrono::time_point<C, D>& deadline, Pred pred) const {
    return wait_until_pred(lock, detail::to_steady(deadline), pred);
  }

  //! Effects: wakes one / at most n / all of the processes waiting now.
  void notify_one() const noexcept { detail::condition_notify(h_.state(), 1, h_.what()); }
  void notify(std::uint32_t n = 1) const noexcept {
    detail::condition_notify(h_.state(), n, h_.what());
  }
  void notify_all() const noexcept { detail::condition_notify(h_.state(), UINT32_MAX, h_.what()); }

  const Segment& segment() const noexcept { return h_.segment(); }

 private:
  template <class Lock, class Pred>
  bool wait_until_pred(Lock& lock, detail::Clock::time_point deadline, Pred& pred) const {
    while (!pred()) {
      if (!wait_impl(lock, &deadline)) return pred();
    }
    return true;
  }

  static detail::MutexState* robust_state(const detail::RobustLock& l) noexcept { return l.state_; }
  static const std::string& robust_what(const detail::RobustLock& l) noexcept {
    return l.seg_.describe();
  }

  [[noreturn]] static void not_owner(const std::string& what, const char* problem) {
    throw Error(errc::not_owner, what + ": Condition wait with a lock " + problem);
  }

  // Relocking cannot be allowed to fail silently: the caller believes it holds the lock.
  [[noreturn]] static void relock_failed(const std::exception& e) noexcept {
    std::fprintf(stderr, "multiproc: fatal: Condition could not relock after waiting: %s\n",
                 e.what());
    std::abort();
  }

  template <class Lock>
  bool wait_impl(Lock& lock, const detail::Clock::time_point* deadline) const {
    detail::ConditionState* s = h_.state();
    if constexpr (std::is_base_of_v<detail::RobustLock, std::remove_const_t<Lock>> ||
                  detail::is_unique_robust_lock<std::remove_const_t<Lock>>::value) {
      const detail::RobustLock* robust;
      if constexpr (std::is_base_of_v<detail::RobustLock, std::remove_const_t<Lock>>) {
        robust = &lock;
      } else {
        robust = lock.mutex();
      }
      // Refuse a lock the caller does not hold before registering: a notify could reach a
      // registered waiter before it found out.
      if (robust == nullptr) not_owner(h_.what(), "a std::unique_lock without a mutex");
      detail::MutexState* const ms = robust_state(*robust);
      if (!detail::mutex_held_by_caller(ms)) not_owner(robust_what(*robust), "not held by the caller");
      const std::uint64_t seq = detail::condition_enter(s, h_.what());
      detail::Released held{};
      try {
        held = detail::mutex_release_all(ms, robust_what(*robust));
      } catch (...) {
        detail::condition_cancel(s, seq, h_.what());
        throw;
      }
      const bool notified = detail::condition_sleep(s, seq, deadline, h_.what());
      try {
        detail::mutex_reacquire(ms, held, robust_what(*robust));
      } catch (const std::exception& e) {
        relock_failed(e);
      }
      return notified;
    } else {
      const std::uint64_t seq = detail::condition_enter(s, h_.what());
      try {
        lock.unlock();
      } catch (...) {
        detail::condition_cancel(s, seq, h_.what());
        throw;
      }
      const bool notified = detail::condition_sleep(s, seq, deadline, h_.what());
      try {
        lock.lock();
      } catch (const std::exception& e) {
        relock_failed(e);
      }
      return notified;
    }
  }

  detail::StateHandle<detail::ConditionState> h_;
};

}  // namespace multiproc
