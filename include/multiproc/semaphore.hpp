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
// look again that often). A waiter that dies while blocked stays counted for a while: later
// releases make a wake-up system call (~0.3 us) that a clean semaphore skips, until a process's
// releases have woken nobody 64 times over 200 ms; then the count is cleared (a live waiter
// wrongly cleared with it looks again within 100 ms).
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/detail/sync_state.hpp>
#include <multiproc/segment.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>

namespace multiproc {
namespace detail {

//! What Semaphore and BoundedSemaphore share, constructors included (each inherits them).
template <bool Bounded>
class SemaphoreHandle {
 public:
  //! Effects: an unnamed semaphore holding `initial` units (Python's default is 1), shared with
  //! children forked after this call; a BoundedSemaphore may never hold more than `initial`.
  //! Throws: Error(errc::invalid_argument) naming the semaphore for an initial value outside
  //! [0, 2^31 - 1].
  explicit SemaphoreHandle(long initial = 1);
  //! Effects: creates / opens / opens or creates the semaphore called `name` (an existing one
  //! keeps its value; a BoundedSemaphore's bound must match). Throws: as above, and as
  //! Segment::create / open / open_or_create.
  SemaphoreHandle(create_only_t, const Name& name, long initial = 1);
  SemaphoreHandle(open_only_t, const Name& name);
  SemaphoreHandle(open_or_create_t, const Name& name, long initial = 1);

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
  //! Effects: adds k units and wakes up to k waiters. k may be of any integer type: it is checked,
  //! never narrowed. Throws: Error(errc::invalid_argument) naming the semaphore if k < 1, if k is
  //! more than a semaphore holds (2^31 - 1) or if the count would overflow (nothing is added);
  //! Error(errc::bad_state) if a BoundedSemaphore would exceed its bound (nothing is added).
  template <class Int = int>
  void release(Int k = 1) const {
    semaphore_release(h_.state(), checked_release_count(k, h_.what()), h_.what());
  }
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
  StateHandle<SemaphoreState> h_;

 private:
  //! Throws Error(errc::corrupt) when the state disagrees with the kind and the header's bound.
  void check_state() const;
};

extern template class SemaphoreHandle<false>;
extern template class SemaphoreHandle<true>;

}  // namespace detail

//! Constructors: Semaphore(initial = 1), and (create_only / open_only / open_or_create, name
//! [, initial]) as detail::SemaphoreHandle says.
class Semaphore : public detail::SemaphoreHandle<false> {
 public:
  using SemaphoreHandle::SemaphoreHandle;
};

//! Constructors: as Semaphore's; `initial` is also the bound.
class BoundedSemaphore : public detail::SemaphoreHandle<true> {
 public:
  using SemaphoreHandle::SemaphoreHandle;

  //! The bound: the initial value given at creation.
  //! (The header's copy, checked against the shared state at open: never re-read from it.)
  std::uint32_t bound() const noexcept { return static_cast<std::uint32_t>(h_.segment().count()); }
};

}  // namespace multiproc
