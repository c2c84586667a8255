// Private: the waiter counts of Event and Semaphore, which name no sleeper (unlike a channel's
// Signal, whose 8 slots let a waker take a dead sleeper off: channel.cpp), and so need another
// way to heal after a waiter is killed asleep. Counted, it stayed counted for good, and every
// later set() / release() paid a futex system call (the same defect an outside probe found in
// the channels: 9 killed sleepers, 20x slower for good).
#pragma once

#include <multiproc/detail/futex.hpp>

#include <atomic>
#include <cstdint>

namespace multiproc::detail {

//! Takes one off a waiter count, never below 0 (the healing below may have zeroed it).
inline void count_down(std::atomic<std::uint32_t>& count) noexcept {
  std::uint32_t v = count.load(std::memory_order_relaxed);
  while (v != 0 && !count.compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) {
  }
}

//! After a wake of `word` (woken: what futex_wake returned) made because `waiters` was nonzero.
//! A live waiter stays inside futex_wait but for moments (it sleeps in kLivenessSlice slices), so
//! wakes that found nobody, at least 64 of them over two slices and more with none that found
//! anyone, mean the counted waiters are dead: the count goes to 0. A live one wrongly taken off
//! (it was between two sleeps all that time) may miss one wake and look again at the end of its
//! slice; its leaving takes nothing below 0 (count_down). Per process and per object: the state
//! follows one object at a time, which is all a heuristic needs.
inline void note_wake(const void* object, std::atomic<std::uint32_t>& waiters, int woken) noexcept {
  struct Misses {
    const void* object = nullptr;
    std::uint32_t count = 0;
    Clock::time_point first{};
  };
  static thread_local Misses m;
  if (woken > 0 || m.object != object) {
    m = Misses{object, 0, Clock::now()};
    if (woken > 0) return;
  }
  if (++m.count < 64 || Clock::now() - m.first < 2 * kLivenessSlice) return;
  m.count = 0;
  m.first = Clock::now();
  waiters.store(0, std::memory_order_relaxed);
}

}  // namespace multiproc::detail
