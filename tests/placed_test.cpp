// Placed primitives: a robust lock, semaphore, event and condition embedded in memory the user
// manages (a SharedMemory block, a Boost managed segment), used across real processes, recovered
// from holders killed with SIGKILL.
#include "support/support.hpp"

#include <multiproc/placed.hpp>

#include <boost/interprocess/managed_shared_memory.hpp>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <vector>

using namespace mptest;
namespace bip = boost::interprocess;

namespace {

// What a user puts in shared memory: their data next to the primitives that guard it.
struct Board {
  mp::PlacedMutex lock;
  mp::PlacedCondition changed;
  mp::PlacedSemaphore slots{0};
  mp::PlacedEvent start;
  long counter = 0;  // guarded by lock
  int waiting = 0;   // guarded by lock
  int go = 0;        // guarded by lock
  int woken = 0;     // guarded by lock
};

// Removes a Boost managed segment's name at the end of the scope, even on failure.
struct BoostSegmentRemover {
  std::string name;
  ~BoostSegmentRemover() { bip::shared_memory_object::remove(name.c_str()); }
};

// `n` children running f(i), started at once; join() reaps them all and returns their exit codes.
class Children {
 public:
  template <class F>
  Children(int n, F f) {
    for (int i = 0; i < n; ++i) ps_.emplace_back([f, i] { return f(i); });
    for (auto& p : ps_) p.start();
  }
  ~Children() { join(); }
  std::vector<int> join() {
    std::vector<int> codes;
    for (auto& p : ps_) {
      if (!p.join_for(30s)) p.kill();
      p.join();
      codes.push_back(p.exitcode().value_or(-999));
    }
    return codes;
  }
  const mp::Process& at(int i) const { return ps_.at(static_cast<std::size_t>(i)); }

 private:
  std::vector<mp::Process> ps_;
};

// Polls, holding the board's lock, until pred() holds (true) or 10 s pass (false).
template <class Pred>
bool eventually_locked(Board* b, Pred pred) {
  return eventually([&] {
    std::lock_guard lock(b->lock);
    return pred();
  });
}

// A waiter: registers under the lock and waits once with no predicate (so each return is a
// notification consumed, never a spurious wake-up), then counts itself and leaves.
int wait_once(Board* b) {
  std::unique_lock lock(b->lock);
  ++b->waiting;
  CHILD_REQUIRE(b->changed.wait_for(lock, 60s));
  ++b->woken;
  return 0;
}

bool all_zero(const std::vector<int>& codes) {
  return std::all_of(codes.begin(), codes.end(), [](int c) { return c == 0; });
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(placed, Clean)

BOOST_AUTO_TEST_CASE(layout_is_placeable_and_a_constructed_object_is_all_zero, *boost::unit_test::timeout(30)) {
  static_assert(std::is_standard_layout_v<mp::PlacedMutex> &&
                std::is_standard_layout_v<mp::PlacedCondition> &&
                std::is_trivially_destructible_v<mp::PlacedCondition>);
  static_assert(!std::is_copy_constructible_v<mp::PlacedMutex>);
  // The bytes a constructor writes are the zeros of a fresh segment (recursive mutex aside).
  alignas(8) unsigned char bytes[sizeof(mp::PlacedCondition)];
  std::memset(bytes, 0xA5, sizeof bytes);
  new (bytes) mp::PlacedCondition();
  BOOST_TEST(std::count(bytes, bytes + sizeof bytes, 0) == static_cast<long>(sizeof bytes));
  std::memset(bytes, 0xA5, sizeof bytes);
  new (bytes) mp::PlacedMutex();
  BOOST_TEST(std::count(bytes, bytes + sizeof(mp::PlacedMutex), 0) ==
             static_cast<long>(sizeof(mp::PlacedMutex)));
}

BOOST_AUTO_TEST_CASE(lock_contract_and_errors_name_the_placed_type, *boost::unit_test::timeout(30)) {
  mp::PlacedMutex m;
  BOOST_TEST(!m.locked());
  m.lock();
  BOOST_TEST(m.locked());
  BOOST_TEST(!m.try_lock());  // held by the caller: not available, as Mutex
  expect_error([&] { m.lock(); }, mp::errc::would_deadlock, {"PlacedMutex"});
  std::thread([&] {
    expect_error([&] { m.unlock(); }, mp::errc::not_owner, {"PlacedMutex", "does not hold"});
    BOOST_TEST(!m.try_lock_for(20ms));
  }).join();
  m.unlock();
  BOOST_TEST(m.try_lock_for(1s));
  m.unlock();

  mp::PlacedRecursiveMutex r;
  r.lock();
  BOOST_TEST(r.try_lock());
  BOOST_TEST(r.depth() == 2u);
  r.unlock();
  r.unlock();
  BOOST_TEST(r.depth() == 0u);
  expect_error([&] { r.unlock(); }, mp::errc::not_owner, {"PlacedRecursiveMutex"});

  expect_error([] { mp::PlacedSemaphore s(-1); }, mp::errc::invalid_argument,
               {"PlacedSemaphore", "-1"});
  mp::PlacedSemaphore s(1);
  BOOST_TEST(s.try_acquire());
  BOOST_TEST(!s.try_acquire_for(10ms));  // an expected outcome: a return value
  s.release(2);
  BOOST_TEST(s.value() == 2u);
  // No narrowing: 2^32 would have released 0 units through a uint32_t parameter.
  expect_error([&] { s.release(1LL << 32); }, mp::errc::invalid_argument,
               {"PlacedSemaphore", "4294967296"});
  expect_error([&] { s.release(0); }, mp::errc::invalid_argument, {"PlacedSemaphore"});
  expect_error([&] { s.release(-3); }, mp::errc::invalid_argument, {"PlacedSemaphore", "-3"});
  BOOST_TEST(s.value() == 2u);
  mp::PlacedEvent e;
  BOOST_TEST(!e.wait_for(10ms));
  e.set();
  BOOST_TEST(e.is_set());
  BOOST_TEST(e.wait_for(0s));
}

BOOST_AUTO_TEST_CASE(placed_mutex_in_shared_memory_counts_exactly_across_processes, *boost::unit_test::timeout(120)) {
  mp::SharedMemory memory(sizeof(Board));
  Board* board = new (memory.data()) Board();  // stays mapped as long as `memory` lives
  constexpr int kProcs = 4;
  constexpr long kEach = 20000;
  Children children(kProcs, [board](int) {
    for (long k = 0; k < kEach; ++k) {
      std::lock_guard lock(board->lock);
      board->counter = board->counter + 1;  // not atomic: only the lock makes it exact
    }
    return 0;
  });
  for (long k = 0; k < kEach; ++k) {
    std::lock_guard lock(board->lock);
    board->counter = board->counter + 1;
  }
  BOOST_TEST(all_zero(children.join()));
  BOOST_TEST(board->counter == (kProcs + 1) * kEach);
  BOOST_TEST(!board->lock.locked());
}

BOOST_AUTO_TEST_CASE(holder_killed_while_holding_releases_to_a_blocked_waiter_in_another_process, *boost::unit_test::timeout(60)) {
  mp::SharedMemory memory(sizeof(Board));
  Board* board = new (memory.data()) Board();
  Gate locked, never;
  mp::Process holder([&] {
    board->lock.lock();
    board->counter = -1;  // a half-done update
    locked.signal();
    never.wait(60s);
  });
  holder.start();
  BOOST_REQUIRE(locked.wait());
  mp::Process waiter([board] {
    board->lock.lock();  // blocks until the holder dies
    const bool told = board->lock.previous_owner_died() && board->counter == -1;
    board->counter = 7;  // repaired
    board->lock.unlock();
    return told ? 0 : 1;
  });
  waiter.start();
  BOOST_REQUIRE(wait_until_in_futex(waiter.pid()));
  holder.kill();
  holder.join();
  BOOST_TEST(*holder.exitcode() == -SIGKILL);
  BOOST_REQUIRE(waiter.join_for(10s));
  BOOST_TEST(*waiter.exitcode() == 0);  // the waiter got the lock and was told
  BOOST_TEST(board->counter == 7);
  BOOST_REQUIRE(board->lock.try_lock());
  BOOST_TEST(!board->lock.previous_owner_died());  // reported once, to the recovering holder
  board->lock.unlock();
}

BOOST_AUTO_TEST_CASE(holder_killed_while_idle_or_stopped_leaves_the_lock_usable, *boost::unit_test::timeout(60)) {
  mp::SharedMemory memory(sizeof(Board));
  Board* board = new (memory.data()) Board();
  // Killed while idle (not holding): nothing to recover.
  mp::Process idle([board] {
    board->lock.lock();
    board->lock.unlock();
    ::kill(::getpid(), SIGKILL);
  });
  idle.start();
  idle.join();
  BOOST_TEST(*idle.exitcode() == -SIGKILL);
  BOOST_REQUIRE(board->lock.try_lock());
  BOOST_TEST(!board->lock.previous_owner_died());
  board->lock.unlock();
  // Stopped while holding: a timed lock returns false (no exception); it resumes and releases.
  Gate locked, release;
  mp::Process stopped([&] {
    board->lock.lock();
    locked.signal();
    release.wait(60s);
    board->lock.unlock();
  });
  stopped.start();
  BOOST_REQUIRE(locked.wait());
  ::kill(stopped.pid(), SIGSTOP);
  BOOST_TEST(!board->lock.try_lock_for(50ms));
  ::kill(stopped.pid(), SIGCONT);
  release.signal();
  BOOST_REQUIRE(board->lock.try_lock_for(10s));
  BOOST_TEST(!board->lock.previous_owner_died());
  board->lock.unlock();
  BOOST_REQUIRE(stopped.join_for(10s));
  BOOST_TEST(*stopped.exitcode() == 0);
}

BOOST_AUTO_TEST_CASE(in_a_boost_managed_segment_mapped_at_another_address, *boost::unit_test::timeout(120)) {
  const std::string name = unique_name("placed.boost");
  BoostSegmentRemover remover{name};
  bip::managed_shared_memory segment(bip::create_only, name.c_str(), 64 * 1024);
  Board* board = segment.construct<Board>("board")();
  constexpr int kProcs = 3;
  constexpr long kEach = 10000;
  // Each child maps the segment again (its inherited mapping stays, so the new one is elsewhere),
  // waits for the start event, takes a slot of the semaphore, and counts under the lock.
  Children children(kProcs, [name, board](int) {
    bip::managed_shared_memory mine(bip::open_only, name.c_str());
    Board* b = mine.find<Board>("board").first;
    CHILD_REQUIRE(b != nullptr && b != board);
    CHILD_REQUIRE(b->start.wait_for(30s));
    CHILD_REQUIRE(b->slots.try_acquire_for(30s));
    for (long k = 0; k < kEach; ++k) {
      std::lock_guard lock(b->lock);
      b->counter = b->counter + 1;
    }
    {
      std::lock_guard lock(b->lock);
      ++b->woken;
    }
    b->changed.notify_all();
    return 0;
  });
  for (int i = 0; i < kProcs; ++i) BOOST_REQUIRE(wait_until_in_futex(children.at(i).pid()));
  BOOST_TEST(board->counter == 0);  // all asleep on the start event
  board->slots.release(kProcs - 1);
  board->start.set();
  {
    // Exactly kProcs - 1 finish; the last one sleeps on the semaphore until its slot comes.
    std::unique_lock lock(board->lock);
    BOOST_REQUIRE(board->changed.wait_for(lock, 30s, [&] { return board->woken == kProcs - 1; }));
    BOOST_TEST(board->counter == (kProcs - 1) * kEach);
  }
  BOOST_TEST(board->slots.value() == 0u);
  board->slots.release();
  BOOST_TEST(all_zero(children.join()));
  BOOST_TEST(board->counter == kProcs * kEach);
  BOOST_TEST(board->woken == kProcs);
  segment.destroy<Board>("board");
}

BOOST_AUTO_TEST_CASE(condition_with_many_waiters_across_processes_wakes_exactly_n, *boost::unit_test::timeout(120)) {
  mp::SharedMemory memory(sizeof(Board));
  Board* board = new (memory.data()) Board();
  constexpr int kWaiters = 8;
  Children children(kWaiters, [board](int) { return wait_once(board); });
  // A waiter counted in `waiting` holds the lock until wait() has registered it and released it.
  BOOST_REQUIRE(eventually_locked(board, [&] { return board->waiting == kWaiters; }));
  board->changed.notify(3);
  BOOST_REQUIRE(eventually_locked(board, [&] { return board->woken == 3; }));
  // Exactly three leave; the other five are still asleep in the condition.
  auto running = [&] {
    int n = 0;
    for (int i = 0; i < kWaiters; ++i) n += pid_running(children.at(i).pid()) ? 1 : 0;
    return n;
  };
  BOOST_REQUIRE(eventually([&] { return running() == kWaiters - 3; }));
  for (int i = 0; i < kWaiters; ++i) {
    if (pid_running(children.at(i).pid())) BOOST_TEST(wait_until_in_futex(children.at(i).pid()));
  }
  {
    std::lock_guard lock(board->lock);
    BOOST_TEST(board->woken == 3);
  }
  board->changed.notify_all();
  BOOST_TEST(all_zero(children.join()));
  BOOST_TEST(board->woken == kWaiters);
}

BOOST_AUTO_TEST_CASE(condition_waiter_killed_while_waiting_costs_at_most_one_notification, *boost::unit_test::timeout(60)) {
  mp::SharedMemory memory(sizeof(Board));
  Board* board = new (memory.data()) Board();
  Children children(2, [board](int) { return wait_once(board); });
  BOOST_REQUIRE(eventually_locked(board, [&] { return board->waiting == 2; }));
  ::kill(children.at(0).pid(), SIGKILL);
  // notify_all reaches the survivor whatever the dead waiter took.
  board->changed.notify_all();
  const auto codes = children.join();
  BOOST_TEST(codes.at(0) == -SIGKILL);
  BOOST_TEST(codes.at(1) == 0);
  BOOST_TEST(board->woken == 1);
  // The condition and its lock still work: a waiter with a timeout gets false, not an error.
  std::unique_lock lock(board->lock);
  BOOST_TEST(!board->changed.wait_for(lock, 20ms));
}

BOOST_AUTO_TEST_SUITE_END()
