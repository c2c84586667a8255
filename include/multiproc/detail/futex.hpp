// multiproc/detail/futex.hpp — waiting on a 32-bit word in shared memory (Linux futex).
// Private. The words live in segments shared between processes, so these are the shared
// (non-FUTEX_PRIVATE) operations.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

// glibc (2.35 on) registers a restartable-sequences area for every thread and says where it is
// in __rseq_offset / __rseq_size (read by current_cpu()).
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35)) && \
    defined(__has_include) && (defined(__x86_64__) || defined(__aarch64__))
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define MULTIPROC_HAVE_RSEQ 1
#endif
#endif
#if defined(MULTIPROC_HAVE_RSEQ) && defined(__has_builtin)
#if !__has_builtin(__builtin_thread_pointer)
#undef MULTIPROC_HAVE_RSEQ
#endif
#endif

namespace multiproc::detail {

using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC on Linux: what the futex deadlines use

//! Blocks while *word == expected, until a futex_wake on the word, a signal, or `deadline`
//! (nullptr: no deadline). Returns false only when the deadline has passed; true otherwise
//! (woken, value already different, or interrupted — callers re-check their condition).
bool futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                const Clock::time_point* deadline) noexcept;

//! Wakes up to `count` waiters blocked on word; returns how many were woken.
int futex_wake(const std::atomic<std::uint32_t>* word, int count) noexcept;

//! As futex_wait, for a waiter that belongs to the classes in `bitset` (a nonzero mask).
bool futex_wait_bitset(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::uint32_t bitset, const Clock::time_point* deadline) noexcept;
//! Wakes up to `count` waiters whose bitset shares a bit with `mask`.
int futex_wake_bitset(const std::atomic<std::uint32_t>* word, int count, std::uint32_t mask) noexcept;

//! Longest a waiter that may be woken late (its waker died between changing the state and
//! waking it) sleeps before it looks again. Every untimed wait in multiproc sleeps in slices of
//! this length, so no death can leave a process asleep for good.
inline constexpr std::chrono::milliseconds kLivenessSlice{100};

//! The end of the next sleeping slice: the deadline, or now + kLivenessSlice if that is sooner.
inline Clock::time_point next_slice(const Clock::time_point* deadline) noexcept {
  const auto slice = Clock::now() + kLivenessSlice;
  return deadline != nullptr && *deadline < slice ? *deadline : slice;
}

//! One pause instruction: the body of every bounded spin.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

//! The CPU the calling thread runs on, from the restartable-sequences area glibc (2.35 on)
//! registers for every thread and the kernel keeps current: one thread-local load, no system
//! call. -1 when unknown (no rseq: an older glibc, or glibc.pthread.rseq=0).
inline std::int32_t current_cpu() noexcept {
#if defined(MULTIPROC_HAVE_RSEQ)
  if (__rseq_size == 0) return -1;
  // The kernel writes cpu_id (a u32 of struct rseq) on every return to this thread.
  const auto* area = reinterpret_cast<const struct rseq*>(
      static_cast<const char*>(__builtin_thread_pointer()) + __rseq_offset);
  const auto cpu = static_cast<std::int32_t>(__atomic_load_n(
      static_cast<const volatile std::uint32_t*>(&area->cpu_id), __ATOMIC_RELAXED));
  return cpu >= 0 ? cpu : -1;
#else
  return -1;
#endif
}

//! now + d without overflow: a duration beyond ~30 years means "no deadline".
template <class R, class P>
Clock::time_point deadline_after(const std::chrono::duration<R, P>& d) {
  using namespace std::chrono;
  const auto now = Clock::now();
  const double seconds = duration_cast<duration<double>>(d).count();
  if (!(seconds > 0)) return now;
  if (seconds > 1e9) return Clock::time_point::max();
  return now + duration_cast<Clock::duration>(duration<double>(seconds));
}

//! A steady-clock time point is already one.
inline Clock::time_point to_steady(Clock::time_point t) noexcept { return t; }

//! Converts any clock's time point to the steady clock (what every deadline is kept in), without
//! overflow: time_point::max() of any clock stays "no deadline".
template <class C, class D>
Clock::time_point to_steady(const std::chrono::time_point<C, D>& t) {
  using namespace std::chrono;
  if (t == std::chrono::time_point<C, D>::max()) return Clock::time_point::max();
  // The distance in floating point: t - C::now() in D's integer type may overflow.
  const double left = duration<double>(t.time_since_epoch()).count() -
                      duration<double>(C::now().time_since_epoch()).count();
  return deadline_after(duration<double>(left));
}

}  // namespace multiproc::detail
