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
// notify(n) wakes at most n of the processes waiting at the time of the call, notify_one() one,
// notify_all() all of them; a process that starts waiting after a notify is never woken by it. A
// wait() returns true only for a notification (timed waits return false at their deadline), so
// unlike many condition variables there are no spurious wake-ups — the predicate forms are still
// the right way to wait for a state. Waiting sleeps on a futex word in the segment (no CPU while
// blocked); timed waits honour their deadline to within the scheduler's resolution.
//
// How: each notify opens a new generation and hands out wake tickets that only waiters of older
// generations may take; the bookkeeping sits under a small robust lock inside the Condition.
//
// Crashes: no death makes the Condition unusable, and a notification is never lost. A waiter that
// dies while waiting stays counted, so a notify that would have gone to it can be spent on it; the
// live waiters present at that notify can always take its tickets. A notifier killed between
// handing out tickets and waking sleepers delays them by at most 100 ms (sleepers look again that
// often). A process that dies holding the Mutex is handled by the Mutex: the waiter that relocks
// it next sees previous_owner_died().
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/recursive_mutex.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <type_traits>

namespace multiproc {
namespace detail {

inline constexpr std::uint32_t kConditionBatches = 32;

// Layout:
//   seq       the current generation; futex word the waiters sleep on (each with the bitset bit
//             of its own generation). Written only under `lock`, with release.
//   lock      robust mutex guarding everything below (held for a few instructions)
//   waiters   registered waiters (entered, not yet left)
//   tickets   wake tickets handed out and not yet taken (the sum over the batches)
//   batches   ring of (generation, tickets) handed out by notifies, oldest at `head`: a ticket of
//             generation g may be taken by a waiter that entered at a generation before g
struct alignas(64) ConditionState {
  std::atomic<std::uint32_t> seq;
  MutexState lock;
  std::uint32_t waiters;
  std::uint32_t tickets;
  std::uint32_t head;
  std::uint32_t used;
  struct Batch {
    std::uint32_t generation;
    std::uint32_t tickets;
  } batches[kConditionBatches];
};

void condition_init(ConditionState* s);
//! Registers a waiter; returns its generation.
std::uint32_t condition_enter(ConditionState* s, const std::string& what);
//! Unregisters a waiter that never slept (its lock could not be released).
void condition_cancel(ConditionState* s, std::uint32_t generation, const std::string& what) noexcept;
//! Sleeps until the waiter takes a ticket (true) or the deadline passes (false). Unregisters it.
bool condition_sleep(ConditionState* s, std::uint32_t generation, const Clock::time_point* deadline,
                     const std::string& what) noexcept;
//! Hands out up to n tickets (to waiters present now) and wakes that many sleepers.
void condition_notify(ConditionState* s, std::uint32_t n, const std::string& what) noexcept;

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

  //! Requires: the caller holds `lock`. Effects: releases it, sleeps until notified (or a
  //! spurious wake-up), locks it again. Throws: Error(errc::not_owner) if the caller does not
  //! hold a Mutex/RecursiveMutex passed as `lock` (nothing is released then).
  template <class Lock>
  void wait(Lock& lock) const {
    wait_impl(lock, nullptr);
  }
  //! Effects: while (!pred()) wait(lock).
  template <class Lock, class Pred>
  void wait(Lock& lock, Pred pred) const {
    while (!pred()) wait_impl(lock, nullptr);
  }
  //! Returns: false if the timeout passed without a notification, true otherwise.
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

  // Relocking cannot be allowed to fail silently: the caller believes it holds the lock.
  [[noreturn]] static void relock_failed(const std::exception& e) noexcept {
    std::fprintf(stderr, "multiproc: fatal: Condition could not relock after waiting: %s\n",
                 e.what());
    std::abort();
  }

  template <class Lock>
  bool wait_impl(Lock& lock, const detail::Clock::time_point* deadline) const {
    detail::ConditionState* s = h_.state();
    const std::uint32_t seq = detail::condition_enter(s, h_.what());
    if constexpr (std::is_base_of_v<detail::RobustLock, std::remove_const_t<Lock>> ||
                  detail::is_unique_robust_lock<std::remove_const_t<Lock>>::value) {
      const detail::RobustLock* robust;
      if constexpr (std::is_base_of_v<detail::RobustLock, std::remove_const_t<Lock>>) {
        robust = &lock;
      } else {
        robust = lock.mutex();
      }
      detail::Released held{};
      try {
        held = detail::mutex_release_all(robust_state(*robust), robust_what(*robust));
      } catch (...) {
        detail::condition_cancel(s, seq, h_.what());
        throw;
      }
      const bool notified = detail::condition_sleep(s, seq, deadline, h_.what());
      try {
        detail::mutex_reacquire(robust_state(*robust), held, robust_what(*robust));
      } catch (const std::exception& e) {
        relock_failed(e);
      }
      return notified;
    } else {
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
