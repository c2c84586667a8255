// multiproc/detail/sync_state.hpp — the shared-memory states of Semaphore, Event and Condition and
// the algorithms on them. Private. Two kinds of object use them: the handles (Semaphore, Event,
// Condition: a state in a segment of its own) and the placed types of placed.hpp (a state
// embedded in memory the user manages). The algorithms work on the *Core structs, which have
// their natural alignment (so that they can sit anywhere a user's allocator puts them); the
// handles' segments hold them padded to a cache line (the *State structs, layout unchanged).
// Every core is valid when zero-filled, and none holds a pointer or anything else tied to one
// process's mapping, so each may sit at a different address in every process.
#pragma once

#include <multiproc/detail/cache_line.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/mutex_state.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace multiproc::detail {

//! The most units a semaphore can hold (and so the largest release): 2^31 - 1, the futex word's
//! positive range.
inline constexpr std::uint32_t kSemaphoreMaxCount = 0x7fffffff;

//! Throws Error(errc::invalid_argument): "<what>: release(<k>): ..." (semaphore.cpp).
[[noreturn]] void throw_bad_release(const std::string& what, const std::string& k);

//! k as the semaphore's count type. Throws: throw_bad_release unless 1 <= k <= kSemaphoreMaxCount;
//! no integer is narrowed before this check.
template <class Int>
std::uint32_t checked_release_count(Int k, const std::string& what) {
  static_assert(std::is_integral_v<Int> && !std::is_same_v<Int, bool>,
                "Semaphore::release(k) takes an integer number of units");
  if (k < 1 || static_cast<std::make_unsigned_t<Int>>(k) > kSemaphoreMaxCount) {
    throw_bad_release(what, std::to_string(+k));
  }
  return static_cast<std::uint32_t>(k);
}

// ---- Semaphore ------------------------------------------------------------------------------

// Layout (16 bytes; all zero: an unbounded semaphore holding 0 units):
//   count     units available; the futex word acquirers sleep on. Changed only by CAS (acquire)
//             and fetch_add / CAS (release), seq_cst: pairs with the seq_cst waiters counter
//   waiters   acquirers that may be asleep; release() skips the wake syscall when 0
//   bound     BoundedSemaphore's ceiling; immutable
//   bounded   1 for a BoundedSemaphore; immutable
struct SemaphoreCore {
  std::atomic<std::uint32_t> count;
  std::atomic<std::uint32_t> waiters;
  std::uint32_t bound;
  std::uint32_t bounded;
};
//! A Semaphore's segment body: the core alone on its cache line.
struct alignas(kCacheLine) SemaphoreState : SemaphoreCore {};

//! Returns: `initial` as a count. Throws: Error(errc::invalid_argument) naming `what` when it is
//! negative or above INT_MAX.
std::uint32_t semaphore_checked_initial(long initial, const char* what);
//! Initialises a state in place: `value` units, bounded by `value` when `bounded`.
void semaphore_init(SemaphoreCore* s, std::uint32_t value, bool bounded) noexcept;
//! Takes a unit, waiting until `deadline` (nullptr: none). Returns: whether it took one.
bool semaphore_acquire(SemaphoreCore* s, const Clock::time_point* deadline) noexcept;
bool semaphore_try_acquire(SemaphoreCore* s) noexcept;
//! Adds k units and wakes up to k waiters. Throws: Error(errc::bad_state) past a bound,
//! Error(errc::invalid_argument) on overflow (nothing is added either way).
void semaphore_release(SemaphoreCore* s, std::uint32_t k, const std::string& what);

// ---- Event ----------------------------------------------------------------------------------

// Layout (8 bytes; all zero: clear):
//   word      bit 0: the flag; bits 1..31: a generation bumped by every set() that raises it.
//             The futex word waiters sleep on; seq_cst, pairs with the seq_cst waiters counter.
//   waiters   processes that may be asleep in wait(); set() skips the wake syscall when 0
struct EventCore {
  std::atomic<std::uint32_t> word;
  std::atomic<std::uint32_t> waiters;
};
//! An Event's segment body: the core alone on its cache line.
struct alignas(kCacheLine) EventState : EventCore {};

void event_init(EventCore* s) noexcept;
void event_set(EventCore* s) noexcept;
void event_clear(EventCore* s) noexcept;
bool event_is_set(const EventCore* s) noexcept;
//! Waits until the flag is raised (true) or `deadline` passes (false; nullptr: no deadline).
bool event_wait(EventCore* s, const Clock::time_point* deadline) noexcept;

// ---- Condition ------------------------------------------------------------------------------

// Layout (96 bytes, 8-aligned; offset: field; written under `lock` unless noted; all zero: no
// waiter, lock free):
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
struct ConditionCore {
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
//! A Condition's segment body: the core, then (at 96) `departed`: the arrival number + 1 of each
//! timed waiter that gave up at its deadline while another process held the core's lock (stopped
//! or preempted inside a notify or a wait), 0: a free slot. Posted without the lock (CAS), taken
//! (exchange) and unregistered by the next holder of the lock. It was padding in builds without
//! it, zero-filled: free slots. (A PlacedCondition is the bare core: it has none.)
inline constexpr int kConditionDepartures = 4;
struct alignas(kCacheLine) ConditionState : ConditionCore {
  std::atomic<std::uint64_t> departed[kConditionDepartures];
};
//! A Condition's departure slots (kConditionDepartures of them), or nullptr: none.
using ConditionDepartures = std::atomic<std::uint64_t>*;
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "Condition's shared 64-bit counter must be a lock-free atomic");
static_assert(offsetof(ConditionCore, arrived) == 56 && sizeof(ConditionCore) == 96 &&
                  sizeof(ConditionState) == 128 && sizeof(SemaphoreState) == 64 &&
                  sizeof(EventState) == 64,
              "the layouts above are shared between builds");

// Every function below that takes the core's lock first unregisters the waiters posted in
// `departed` (when there are slots).
void condition_init(ConditionCore* s);
//! Registers a waiter: true, with its arrival number in `ticket`; false (nothing registered) when
//! the deadline (nullptr: none) passed while another process held the core's lock.
bool condition_enter(ConditionCore* s, const std::string& what, const Clock::time_point* deadline,
                     std::uint64_t& ticket, ConditionDepartures departed = nullptr);
//! Unregisters a waiter that never slept (its lock could not be released).
void condition_cancel(ConditionCore* s, std::uint64_t ticket, const std::string& what,
                      ConditionDepartures departed = nullptr) noexcept;
//! Sleeps until the waiter is notified (true) or the deadline passes (false). Unregisters it —
//! through a departure slot when another process holds the core's lock at the deadline (without
//! slots, or with all of them taken, it waits for that lock).
bool condition_sleep(ConditionCore* s, std::uint64_t ticket, const Clock::time_point* deadline,
                     const std::string& what, ConditionDepartures departed = nullptr) noexcept;
//! Notifies up to n of the waiters present now and not yet notified, and wakes them.
void condition_notify(ConditionCore* s, std::uint32_t n, const std::string& what,
                      ConditionDepartures departed = nullptr) noexcept;
//! Waiters present and not yet notified (a snapshot, for tests and diagnostics).
std::uint64_t condition_waiting(ConditionCore* s, const std::string& what,
                                ConditionDepartures departed = nullptr);

}  // namespace multiproc::detail
