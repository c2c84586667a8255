// multiproc/event.hpp — a flag that processes wait for (Python's multiprocessing.Event).
//
//   mp::Event ready;
//   mp::Process worker([ready] { setup(); ready.set(); serve(); });
//   worker.start();
//   ready.wait();                       // or: if (!ready.wait_for(5s)) give_up();
//
// set() raises the flag and wakes every waiter in every process; clear() lowers it; wait() blocks
// until it is raised. A set() always releases the processes already waiting, even if clear()
// follows at once (their wait returns true). Waiting spins briefly, then sleeps on a futex word
// in the segment: no CPU while blocked. Shared by fork or by name.
//
// Crashes: the flag is one atomic word; no death corrupts it. A setter killed between raising the
// flag and waking the waiters delays them by at most 100 ms (waiters look again that often). A
// process that was supposed to set() it and died leaves the flag down: survivors that wait with
// wait_for() get false at their deadline. A waiter that dies stays counted for a while: later
// set() calls make a wake-up system call that a clean event skips, until a process's sets have
// woken nobody 64 times over 200 ms; then the count is cleared (a live waiter wrongly cleared
// with it looks again within 100 ms).
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/detail/sync_state.hpp>
#include <multiproc/segment.hpp>

#include <chrono>

namespace multiproc {

//! Constructors: Event() is an unnamed event, initially clear, shared with children forked after
//! this call; Event(create_only / open_only / open_or_create, name) creates / opens the event
//! called `name` (Throws: Error as Segment::create / open / open_or_create).
class Event : public detail::Primitive<detail::EventState, Kind::event, &detail::event_init> {
 public:
  using Primitive::Primitive;

  //! Effects: raises the flag and wakes every waiter.
  void set() const noexcept { detail::event_set(h_.state()); }
  //! Effects: lowers the flag.
  void clear() const noexcept { detail::event_clear(h_.state()); }
  //! Returns: whether the flag is raised now (a snapshot).
  bool is_set() const noexcept { return detail::event_is_set(h_.state()); }
  //! Effects: blocks until the flag is raised.
  void wait() const noexcept { detail::event_wait(h_.state(), nullptr); }
  //! Returns: true if the flag was raised before the timeout / deadline, false otherwise.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_until(detail::deadline_after(timeout));
  }
  template <class C, class D>
  bool wait_until(const std::chrono::time_point<C, D>& deadline) const {
    const auto d = detail::to_steady(deadline);
    return detail::event_wait(h_.state(), &d);
  }

  const Segment& segment() const noexcept { return h_.segment(); }
};

}  // namespace multiproc
