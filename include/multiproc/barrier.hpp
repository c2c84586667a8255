// multiproc/barrier.hpp — a reusable rendezvous for a fixed number of processes (Python's
// multiprocessing.Barrier).
//
//   mp::Barrier step(4, [] { std::puts("round done"); });   // shared with 4 children
//   for (int round = 0; round < 1000; ++round) { work(round); step.wait(); }
//
// wait() blocks until `parties` processes (or threads) have called it, then releases them all
// and starts the next round. It returns a distinct index in [0, parties) each round: the order of
// arrival, so the last to arrive gets parties - 1. The optional action runs exactly once per
// round, in the last process to arrive, before anyone is released; if it throws, the barrier
// breaks and the exception propagates from that process's wait(). The action is part of the
// handle, not of the shared object: each process that opens a named barrier may give its own, and
// the one of the last arrival runs.
//
// A default timeout given at construction (Python's Barrier(parties, action, timeout)) makes every
// wait() without an argument a wait_for(timeout), in every process sharing the barrier.
//
// A broken barrier throws BrokenBarrier from every current and future wait() until reset(). It
// breaks when abort() is called, when a wait_for() times out (every waiter of that round then
// throws, the timed-out one included), or when the action throws. reset() returns it to the empty
// state; processes waiting at that moment get BrokenBarrier. Waiting spins briefly (rounds in
// lockstep hand over fast), then sleeps on a futex word: no CPU while blocked.
//
// Crashes: a party that dies before arriving cannot be told from a slow one, so wait() would wait
// for it forever: give the barrier a default timeout, or wait with wait_for(), when parties may die — the round then breaks at the
// deadline and everyone hears BrokenBarrier. A party that dies inside the barrier's robust
// internal lock — while arriving, running the action, abort() or reset() — breaks the barrier:
// waiters notice within 100 ms (their sleeping slice) and throw BrokenBarrier. A party that dies while waiting after
// arriving does not disturb the round. broken(), n_waiting() and parties() take no lock.
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/state_segment.hpp>
#include <multiproc/segment.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

namespace multiproc {
namespace detail {
struct BarrierState;  // src/barrier.cpp
}  // namespace detail

class Barrier {
 public:
  using Action = std::function<void()>;
  using Timeout = std::chrono::nanoseconds;

  //! Effects: an unnamed barrier for `parties` processes, shared with children forked after this.
  //! With a timeout (Python's Barrier(parties, action, timeout)), wait() without an argument waits
  //! at most that long, as wait_for(timeout), in every process that shares the barrier: the
  //! timeout is stored in the shared object, not in this handle. A negative timeout counts as 0.
  //! Without an action: Barrier(4, {}, 5s).
  //! Throws: Error(errc::invalid_argument) when parties is 0.
  explicit Barrier(unsigned parties, Action action = {});
  Barrier(unsigned parties, Action action, Timeout timeout);
  Barrier(create_only_t, const Name& name, unsigned parties, Action action = {});
  Barrier(create_only_t, const Name& name, unsigned parties, Action action, Timeout timeout);
  //! Effects: opens the barrier `name`; its parties and default timeout come from the segment.
  Barrier(open_only_t, const Name& name, Action action = {});
  //! Throws: as Segment::open_or_create, and Error(errc::type_mismatch) if it exists with other
  //! parties. A barrier that exists keeps the default timeout it was created with.
  Barrier(open_or_create_t, const Name& name, unsigned parties, Action action = {});
  Barrier(open_or_create_t, const Name& name, unsigned parties, Action action, Timeout timeout);

  //! Effects: waits for the round to fill — at most the default timeout, when the barrier has one
  //! (then as wait_for(timeout())). Returns: this process's index in the round.
  //! Throws: BrokenBarrier if the barrier is or becomes broken (a default timeout that passes
  //! breaks it, as wait_for's does); the action's exception in the process that ran it;
  //! Error(errc::bad_state) when this waiter, released from its round, did not run again before
  //! 63 more rounds had ended (stopped, starved): the outcomes of the last 64 rounds are kept
  //! (the newest may be changing as it looks), so whether its own completed or broke is no
  //! longer known.
  unsigned wait() const;
  //! As wait(), but a round not filled by the deadline breaks the barrier (BrokenBarrier).
  template <class Rep, class Period>
  unsigned wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    return wait_until(&deadline);
  }
  template <class C, class D>
  unsigned wait_until(const std::chrono::time_point<C, D>& deadline) const {
    const auto d = detail::to_steady(deadline);
    return wait_until(&d);
  }

  //! Effects: breaks the barrier: waiters now and later get BrokenBarrier until reset().
  void abort() const;
  //! Effects: returns the barrier to its empty, unbroken state; current waiters get BrokenBarrier.
  void reset() const;
  //! Returns: whether it is broken (a snapshot).
  bool broken() const noexcept;
  unsigned parties() const noexcept;
  //! Returns: the default timeout of wait(), or nullopt when it waits without one.
  std::optional<Timeout> timeout() const noexcept;
  //! Returns: how many processes wait in the current round (a snapshot).
  unsigned n_waiting() const noexcept;

  const Segment& segment() const noexcept { return h_.segment(); }

 private:
  unsigned wait_until(const detail::Clock::time_point* deadline) const;

  //! Takes parties and the default timeout from the segment, once, checked against its header.
  //! Throws: Error(errc::corrupt) naming the barrier when they are damaged.
  void take_geometry();

  detail::StateHandle<detail::BarrierState> h_;
  Action action_;
  unsigned parties_ = 0;            // immutable copies: never re-read from shared memory
  std::optional<Timeout> timeout_;
};

}  // namespace multiproc
