// multiproc/semaphore.hpp — counting semaphores shared between processes (Python's
// multiprocessing.Semaphore and BoundedSemaphore).
//
//   mp::Semaphore slots(4);                 // four units
//   slots.acquire();  ...  slots.release();
//   if (slots.try_acquire_for(100ms)) { ... slots.release(); }
//
// A Semaphore counts units: acquire() takes one, blocking while there are none; release(k) adds k
// and wakes up to k waiters. A BoundedSemaphore(n) also refuses to go above n: a release that
// would is an Error (Python's ValueError), which catches a release without a matching acquire.
// Waiting spins briefly, then sleeps on a futex word in the segment (no CPU while blocked); timed
// waits honour their deadline to within the scheduler's resolution.
//
// Shared like every multiproc object: copy the handle into forked children, or open it by name
// (open_or_create of an existing semaphore ignores the initial value, as sem_open does; a
// BoundedSemaphore's bound must match).
//
// Crashes: the count lives in one atomic word, so no crash can corrupt it. A semaphore does not
// know who holds its units: a unit acquired by a process that dies is not returned (use a Mutex
// when ownership matters; wait with try_acquire_for where a unit's holder may die). A releaser
// killed between adding a unit and waking a waiter delays that waiter by at most 100 ms (waiters
// look again that often). A waiter that dies while blocked stays counted: later releases then
// make a wake-up system call (~0.3 us) that a clean semaphore skips.
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/segment.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace multiproc {
namespace detail {

// Layout (one cache line):
//   count     units available; the futex word acquirers sleep on. Changed only by CAS (acquire)
//             and fetch_add / CAS (release), seq_cst: pairs with the seq_cst waiters counter
//   waiters   acquirers that may be asleep; release() skips the wake syscall when 0
//   bound     BoundedSemaphore's ceiling; immutable
//   bounded   1 for a BoundedSemaphore; immutable
struct alignas(64) SemaphoreState {
  std::atomic<std::uint32_t> count;
  std::atomic<std::uint32_t> waiters;
  std::uint32_t bound;
  std::uint32_t bounded;
};

class SemaphoreBase {
 public:
  //! Effects: takes one unit, blocking while there is none.
  void acquire() const { semaphore_acquire(h_.state(), nullptr); }
  //! Returns: true if it took a unit without blocking.
  bool try_acquire() const { return semaphore_try_acquire(h_.state()); }
  //! Returns: true if it took a unit before the timeout / deadline.
  template <class Rep, class Period>
  bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = deadline_after(timeout);
    return semaphore_acquire(h_.state(), &deadline);
  }
  template <class C, class D>
  bool try_acquire_until(const std::chrono::time_point<C, D>& deadline) const {
    const auto d = to_steady(deadline);
    return semaphore_acquire(h_.state(), &d);
  }
  //! Effects: adds k units and wakes up to k waiters.
  //! Throws: Error(errc::bad_state) if a BoundedSemaphore would exceed its bound (nothing is
  //! added), Error(errc::invalid_argument) if the count would overflow.
  void release(std::uint32_t k = 1) const { semaphore_release(h_.state(), k, h_.what()); }
  //! Returns: the units available now (a snapshot).
  std::uint32_t value() const noexcept {
    return h_.state()->count.load(std::memory_order_relaxed);
  }
  //! Names this object inside the standard Lockable vocabulary: acquire()/release().
  void lock() const { acquire(); }
  bool try_lock() const { return try_acquire(); }
  void unlock() const { release(); }

  const Segment& segment() const noexcept { return h_.segment(); }

 protected:
  explicit SemaphoreBase(StateHandle<SemaphoreState> h) : h_(std::move(h)) {}
  static bool semaphore_acquire(SemaphoreState* s, const Clock::time_point* deadline);
  static bool semaphore_try_acquire(SemaphoreState* s) noexcept;
  static void semaphore_release(SemaphoreState* s, std::uint32_t k, const std::string& what);
  static Segment::Init initialiser(long initial, bool bounded, const char* what);

  StateHandle<SemaphoreState> h_;
};

}  // namespace detail

class Semaphore : public detail::SemaphoreBase {
 public:
  //! Effects: a semaphore holding `initial` units (Python's default is 1).
  //! Throws: Error(errc::invalid_argument) for a negative or too large initial value.
  explicit Semaphore(long initial = 1);
  Semaphore(create_only_t, const Name& name, long initial = 1);
  Semaphore(open_only_t, const Name& name);
  Semaphore(open_or_create_t, const Name& name, long initial = 1);
};

class BoundedSemaphore : public detail::SemaphoreBase {
 public:
  //! Effects: a semaphore holding `initial` units that may never hold more.
  //! Throws: Error(errc::invalid_argument) for a negative or too large initial value.
  explicit BoundedSemaphore(long initial = 1);
  BoundedSemaphore(create_only_t, const Name& name, long initial = 1);
  BoundedSemaphore(open_only_t, const Name& name);
  BoundedSemaphore(open_or_create_t, const Name& name, long initial = 1);

  //! The bound: the initial value given at creation.
  std::uint32_t bound() const noexcept { return h_.state()->bound; }
};

}  // namespace multiproc
