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
// wait_for() get false at their deadline. A waiter that dies stays counted: later set() calls
// then make a wake-up system call that a clean event skips.
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
//   word      bit 0: the flag; bits 1..31: a generation bumped by every set() that raises it.
//             The futex word waiters sleep on; seq_cst, pairs with the seq_cst waiters counter.
//   waiters   processes that may be asleep in wait(); set() skips the wake syscall when 0
struct alignas(64) EventState {
  std::atomic<std::uint32_t> word;
  std::atomic<std::uint32_t> waiters;
};

}  // namespace detail

class Event {
 public:
  //! Effects: an unnamed event, initially clear, shared with children forked after this call.
  Event();
  Event(create_only_t, const Name& name);
  Event(open_only_t, const Name& name);
  Event(open_or_create_t, const Name& name);

  //! Effects: raises the flag and wakes every waiter.
  void set() const;
  //! Effects: lowers the flag.
  void clear() const;
  //! Returns: whether the flag is raised now (a snapshot).
  bool is_set() const noexcept;
  //! Effects: blocks until the flag is raised.
  void wait() const { wait_until(nullptr); }
  //! Returns: true if the flag was raised before the timeout / deadline, false otherwise.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    return wait_until(&deadline);
  }
  template <class C, class D>
  bool wait_until(const std::chrono::time_point<C, D>& deadline) const {
    const auto d = detail::to_steady(deadline);
    return wait_until(&d);
  }

  const Segment& segment() const noexcept { return h_.segment(); }

 private:
  bool wait_until(const detail::Clock::time_point* deadline) const;
  detail::StateHandle<detail::EventState> h_;
};

}  // namespace multiproc
