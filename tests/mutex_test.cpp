// Mutex: the Lockable contract, mutual exclusion across processes, and recovery from holders
// killed with SIGKILL.
// (Slightly over our ~500-line mark: the crash cases share the holder scenarios at the top.)
#include "support/support.hpp"

#include <csignal>
#include <chrono>
#include <climits>
#include <cstdio>
#include <ctime>
#include <linux/futex.h>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <random>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>

using namespace mptest;

namespace {

// A child that takes m and is SIGKILLed holding it; returns its exit code (-SIGKILL).
int die_holding(const mp::Mutex& m) {
  return mptest::run_child([m] {
    m.lock();
    ::kill(::getpid(), SIGKILL);
    return 1;
  });
}

// A child process that takes m, says so through `locked`, and holds it until `release`.
struct HeldElsewhere {
  explicit HeldElsewhere(const mp::Mutex& m)
      : holder([this, m] {
          m.lock();
          locked.signal();
          release.wait();
          m.unlock();
        }) {
    holder.start();
  }
  Gate locked, release;
  mp::Process holder;
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(mutex, Clean)

BOOST_AUTO_TEST_CASE(meets_the_lockable_contract_in_one_process, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  m.lock();
  BOOST_TEST(!m.previous_owner_died());
  m.unlock();
  BOOST_TEST(m.try_lock());
  m.unlock();
  BOOST_TEST(m.try_lock_for(10ms));
  m.unlock();
  BOOST_TEST(m.try_lock_until(std::chrono::system_clock::now() + 10ms));
  m.unlock();
  BOOST_TEST(m.try_lock_until(std::chrono::steady_clock::now() - 1s));  // free: succeeds anyway
  m.unlock();
  { std::lock_guard<mp::Mutex> g(m); }
  {
    std::unique_lock<mp::Mutex> u(m);
    u.unlock();
    BOOST_TEST(u.try_lock_for(1ms));
  }
  {
    mp::Mutex other;
    std::scoped_lock both(m, other);
    BOOST_TEST(!other.try_lock());
  }
  BOOST_TEST(m.try_lock());
  m.unlock();
}

BOOST_AUTO_TEST_CASE(relocking_from_the_holder_throws_instead_of_deadlocking, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  m.lock();
  expect_errc([&] { m.lock(); }, mp::errc::would_deadlock);
  expect_errc([&] { m.try_lock_for(10ms); }, mp::errc::would_deadlock);
  BOOST_TEST(!m.try_lock());
  m.unlock();
}

BOOST_AUTO_TEST_CASE(unlock_by_a_non_owner_throws, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  expect_errc([&] { m.unlock(); }, mp::errc::not_owner);
  m.lock();
  std::thread([&] { expect_errc([&] { m.unlock(); }, mp::errc::not_owner); }).join();
  CHECK_CHILD([m] { return child_expect_errc([&] { m.unlock(); }, mp::errc::not_owner); });
  m.unlock();
}

BOOST_AUTO_TEST_CASE(held_in_another_process_times_out_then_blocks, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  HeldElsewhere held(m);
  BOOST_REQUIRE(held.locked.wait());
  BOOST_TEST(!m.try_lock());
  auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!m.try_lock_for(100ms));
  BOOST_TEST(seconds_since(start) >= 0.099);
  BOOST_TEST(seconds_since(start) < 5.0);
  start = std::chrono::steady_clock::now();
  BOOST_TEST(!m.try_lock_until(std::chrono::system_clock::now() + 50ms));
  BOOST_TEST(seconds_since(start) >= 0.049);
  held.release.signal();
  m.lock();  // blocks until the holder unlocks
  BOOST_TEST(!m.previous_owner_died());
  m.unlock();
  BOOST_REQUIRE(held.holder.join_for(30s));
  BOOST_TEST(*held.holder.exitcode() == 0);
}

// A zero or passed deadline is a try_lock that reports "held": it neither spins through the
// contended wait's looks nor marks the word FUTEX_WAITERS, which would make every unlock of the
// holder a futex_wake system call for nobody.
BOOST_AUTO_TEST_CASE(a_passed_deadline_fails_at_once_without_marking_the_word, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  HeldElsewhere held(m);
  BOOST_REQUIRE(held.locked.wait());
  const auto* state = static_cast<const mp::detail::MutexState*>(m.segment().body());
  const auto past = std::chrono::steady_clock::now() - 1s;
  int taken = 0;
  for (int i = 0; i < 2000; ++i) {
    if (m.try_lock_for(0ms)) ++taken;
    if (m.try_lock_until(past)) ++taken;
    if (m.try_lock_until(std::chrono::system_clock::now())) ++taken;
  }
  BOOST_TEST(taken == 0);
  BOOST_TEST((state->word.load() & FUTEX_WAITERS) == 0u);
  BOOST_TEST(state->sleepers.load() == 0u);
  held.release.signal();
  BOOST_REQUIRE(held.holder.join_for(30s));
  BOOST_TEST(*held.holder.exitcode() == 0);
  BOOST_TEST(m.try_lock_for(0ms));  // free now: a zero timeout still takes it
  m.unlock();
}

BOOST_AUTO_TEST_CASE(mutual_exclusion_across_processes_gives_exact_sums, *boost::unit_test::timeout(120)) {
  mp::Mutex m;
  mp::RawValue<long> counter(0);  // deliberately unsynchronised except through m
  constexpr int kChildren = 4;
  constexpr long kIterations = 20000;
  std::vector<mp::Process> children;
  for (int i = 0; i < kChildren; ++i) {
    // A non-mutable lambda holding copies of the handles: lock_guard deduces <const Mutex>.
    children.emplace_back([m, counter](int add) {
      for (long k = 0; k < kIterations; ++k) {
        std::lock_guard lock(m);
        counter.store(counter.load() + add);
      }
    }, i + 1);
  }
  for (auto& c : children) c.start();
  for (auto& c : children) {
    BOOST_REQUIRE(c.join_for(60s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  BOOST_TEST(counter.load() == kIterations * kChildren * (kChildren + 1) / 2);
}

// Every unlock is a plain store followed by a look at the sleepers mark (release_word): the
// sleeper's membarrier is all that orders them. A wake-up lost that way would not hang anyone (a
// sleeper looks again every liveness slice) but shows as a slice that ran out on a free word,
// which the lock counts. So: processes that each hold the lock long enough for the others to go
// to sleep on it, many times over, with exact sums, and no slice that found the word free.
//
// The race this caught when the mark was a flag: an unlock preempted between its store and its
// look cleared a mark set for a later holder — a newer one, or a later tenure of the same thread
// that took the word from 0 while the sleeper's membarrier ran — and that holder's unlock then
// woke nobody (MutexState says how the mark now names the holder). On host A, before the fix (the
// flag, and a first tid mark that could not tell tenures apart), it lost about one wake-up in
// 5,000-8,000 hand-offs of the second case below (4 processes, 80 us holds: 4 of 6 runs failed),
// and one in 2,000 of the first in 2 of 30 runs; none in about 290,000 hand-offs since.
//
// full_fences_in: the children whose number is at least this one run as a process that could not
// register for membarrier does (FenceMode kFenceFull: unlocks with an exchange, sleepers without
// the registration), beside children that did.
void hand_off_among_sleepers(int children, long rounds, std::chrono::microseconds hold,
                             int full_fences_in = INT_MAX) {
  mp::Mutex m;
  mp::RawValue<long> counter(0);
  mp::RawArray<long> missed(static_cast<std::size_t>(children));
  std::vector<mp::Process> procs;
  for (int i = 0; i < children; ++i) {
    procs.emplace_back([m, counter, missed, rounds, hold, full_fences_in](int me) {
      if (me >= full_fences_in) {
        mp::detail::g_fence_mode.store(mp::detail::kFenceFull, std::memory_order_release);
      }
      const std::uint64_t before = mp::detail::mutex_slices_found_free();
      for (long k = 0; k < rounds; ++k) {
        std::lock_guard lock(m);
        counter.store(counter.load() + 1);
        // Held longer than a locker's bounded spin, so the others sleep.
        const auto until = std::chrono::steady_clock::now() + hold;
        while (std::chrono::steady_clock::now() < until) {
        }
      }
      missed[static_cast<std::size_t>(me)] =
          static_cast<long>(mp::detail::mutex_slices_found_free() - before);
    }, i);
  }
  for (auto& p : procs) p.start();
  for (auto& p : procs) {
    BOOST_REQUIRE(p.join_for(120s));
    BOOST_TEST(*p.exitcode() == 0);
  }
  BOOST_TEST(counter.load() == children * rounds);
  long lost = 0;
  for (int i = 0; i < children; ++i) lost += missed[static_cast<std::size_t>(i)];
  BOOST_TEST_MESSAGE("slices that ran out on a free word: " << lost << " in "
                                                             << children * rounds << " holds");
  BOOST_TEST(lost == 0, lost << " lost wake-ups in " << children * rounds << " holds");
}

BOOST_AUTO_TEST_CASE(sleepers_handed_the_lock_by_plain_stores_miss_no_wake_up,
                     *boost::unit_test::timeout(300)) {
  hand_off_among_sleepers(8, 250, 200us);
  // Shorter holds, fewer processes: a holder often unlocks and takes the word again while a
  // sleeper's membarrier runs (the same tid, a later tenure).
  hand_off_among_sleepers(4, 2000, 80us);
  // One CPU: a holder preempted between its store and its look at the mark, sleepers announcing
  // themselves while it is off the CPU.
  PinnedToOneCpu pin;
  BOOST_REQUIRE(pin.ok());
  hand_off_among_sleepers(8, 100, 200us);
}

// A process that cannot use membarrier (FenceMode kFenceFull) beside processes that can: their
// unlocks are plain stores, which its own full fence does not order. Its sleepers must still
// make them visible (heavy_fence), or they miss the wake-up of a holder from the others.
BOOST_AUTO_TEST_CASE(sleepers_with_full_fences_beside_plain_store_unlocks_miss_no_wake_up,
                     *boost::unit_test::timeout(300)) {
  hand_off_among_sleepers(4, 2000, 80us, 2);
  PinnedToOneCpu pin;
  BOOST_REQUIRE(pin.ok());
  hand_off_among_sleepers(6, 150, 200us, 3);
}

// This thread takes m, a child process goes to sleep on it, the unlock wakes it: it takes m and
// leaves.
void a_new_sleeper_is_woken(mp::Mutex& m) {
  m.lock();
  mp::Process next([m]() mutable {
    m.lock();
    m.unlock();
  });
  next.start();
  BOOST_REQUIRE(wait_until_sleeping(next.pid()));
  m.unlock();
  BOOST_REQUIRE(next.join_for(30s));
  BOOST_TEST(*next.exitcode() == 0);
}

// A sleeper SIGKILLed (or SIGSTOPped) while asleep leaves its sleepers mark behind: the next
// unlock pays one futex_wake for nobody and clears it, and the lock goes on as before — its
// unlocks stop calling into the kernel, other sleepers are still woken.
BOOST_AUTO_TEST_CASE(a_sleeper_stopped_or_killed_asleep_leaves_a_mark_the_next_unlock_clears,
                     *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  const auto* state = static_cast<const mp::detail::MutexState*>(m.segment().body());
  ContinueAtExit cont;
  for (const int sig : {SIGSTOP, SIGKILL}) {
    m.lock();
    mp::Process sleeper([m]() mutable {
      m.lock();
      m.unlock();
    });
    sleeper.start();
    BOOST_REQUIRE(wait_until_sleeping(sleeper.pid()));
    BOOST_REQUIRE(mptest::eventually([&] { return state->sleepers.load() != 0u; }));
    // The mark names the holder the sleeper waits behind: this thread.
    BOOST_TEST(state->sleepers.load() == static_cast<std::uint32_t>(::gettid()));
    ::kill(sleeper.pid(), sig);
    if (sig == SIGSTOP) cont.pids.push_back(sleeper.pid());
    m.unlock();  // wakes the stopped or dead sleeper: nobody takes it
    BOOST_TEST(state->sleepers.load() == 0u);
    BOOST_TEST((state->word.load() & FUTEX_TID_MASK) == 0u);
    // Uncontended again: taken and released without a mark.
    for (int i = 0; i < 1000; ++i) {
      m.lock();
      m.unlock();
    }
    BOOST_TEST(state->sleepers.load() == 0u);
    // A new sleeper is woken as ever (beside the stopped one, which holds nothing).
    a_new_sleeper_is_woken(m);
    if (sig == SIGSTOP) {
      ::kill(sleeper.pid(), SIGCONT);
      BOOST_REQUIRE(sleeper.join_for(30s));
      BOOST_TEST(*sleeper.exitcode() == 0);  // woke, took the free lock, left
    } else {
      BOOST_REQUIRE(sleeper.join_for(30s));
      BOOST_TEST(*sleeper.exitcode() == -SIGKILL);
    }
  }
  BOOST_TEST(m.try_lock());
  m.unlock();
}

// A mark no unlock will clear — left by a locker killed while it announced itself behind a holder
// that has gone since, or scribbled over — costs nothing but a look: unlocks by others leave it
// alone (it is not theirs to clear), and the next sleeper writes its own holder over it and is
// woken at once, not by its liveness slice.
BOOST_AUTO_TEST_CASE(a_mark_naming_no_holder_is_left_alone_and_replaced_by_the_next_sleeper,
                     *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  auto* state = static_cast<mp::detail::MutexState*>(m.segment().body());
  constexpr std::uint32_t kStale = FUTEX_TID_MASK;  // no thread has this id (pid_max is lower)
  state->sleepers.store(kStale);
  for (int i = 0; i < 1000; ++i) {
    m.lock();
    m.unlock();
  }
  BOOST_TEST(state->sleepers.load() == kStale);
  BOOST_TEST((state->word.load() & FUTEX_TID_MASK) == 0u);
  mp::RawValue<long> slices(-1);
  m.lock();
  mp::Process sleeper([m, slices]() mutable {
    const std::uint64_t before = mp::detail::mutex_slices_found_free();
    m.lock();
    m.unlock();
    slices.store(static_cast<long>(mp::detail::mutex_slices_found_free() - before));
  });
  sleeper.start();
  BOOST_REQUIRE(wait_until_sleeping(sleeper.pid()));
  BOOST_TEST(state->sleepers.load() == static_cast<std::uint32_t>(::gettid()));
  m.unlock();  // this thread's mark: cleared, and the sleeper woken
  BOOST_REQUIRE(sleeper.join_for(30s));
  BOOST_TEST(*sleeper.exitcode() == 0);
  BOOST_TEST(slices.load() == 0);  // woken by the unlock, not by its slice running out
  BOOST_TEST(state->sleepers.load() == 0u);
}

// Lockers SIGSTOPped and continued at random points, thousands of times, while they contend
// with holds longer than a locker's bounded spin, so that the others go to sleep: the stops land
// anywhere — holding the lock, spinning, between a sleeper's announcement (its mark and
// FUTEX_WAITERS) and its look at the word, asleep, in an unlock between its store and its look at
// the mark. Nothing may be lost or wedged: exact sums, every locker done, the lock free and
// working after. A wake-up that goes to a stopped sleeper (woken, it cannot run) leaves a running
// one to its liveness slice: a delay, which the message reports, not a failure.
void stop_lockers_at_random(int children, long rounds) {
  mp::Mutex m;
  const auto* state = static_cast<const mp::detail::MutexState*>(m.segment().body());
  mp::RawValue<long> counter(0);
  mp::RawArray<long> slices(static_cast<std::size_t>(children));
  std::vector<mp::Process> procs;
  for (int i = 0; i < children; ++i) {
    procs.emplace_back([m, counter, slices, rounds](int me) {
      const std::uint64_t before = mp::detail::mutex_slices_found_free();
      for (long k = 0; k < rounds; ++k) {
        std::lock_guard lock(m);
        counter.store(counter.load() + 1);
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(150);
        while (std::chrono::steady_clock::now() < until) {
        }
      }
      slices[static_cast<std::size_t>(me)] =
          static_cast<long>(mp::detail::mutex_slices_found_free() - before);
    }, i);
  }
  ContinueAtExit cont;
  for (auto& p : procs) {
    p.start();
    cont.pids.push_back(p.pid());
  }
  std::mt19937 rng(12345);
  long stops = 0;
  const auto give_up = std::chrono::steady_clock::now() + 100s;
  while (counter.load() < children * rounds && std::chrono::steady_clock::now() < give_up) {
    const pid_t victim = procs[rng() % static_cast<unsigned>(children)].pid();
    ::kill(victim, SIGSTOP);
    ++stops;
    // Stopped for 0-200 us (the others go on meanwhile), then continued: a fault injected at a
    // random point, not a wait for anything.
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % 200);
    while (std::chrono::steady_clock::now() < until) {
    }
    ::kill(victim, SIGCONT);
  }
  for (auto& p : procs) {
    BOOST_REQUIRE(p.join_for(60s));
    BOOST_TEST(*p.exitcode() == 0);
  }
  BOOST_TEST(counter.load() == children * rounds);
  long slow = 0;
  for (int i = 0; i < children; ++i) slow += slices[static_cast<std::size_t>(i)];
  BOOST_TEST_MESSAGE(stops << " stops; " << slow << " liveness slices ran out on a free word in "
                           << children * rounds << " holds");
  BOOST_TEST(stops > 100);
  BOOST_TEST((state->word.load() & FUTEX_TID_MASK) == 0u);
  BOOST_TEST(m.try_lock());
  m.unlock();
  // A stale mark (a stopped sleeper's) costs one wake per unlock until a sleeper replaces it; the
  // next contended hand-off works as ever.
  a_new_sleeper_is_woken(m);
}

BOOST_AUTO_TEST_CASE(lockers_stopped_and_continued_at_random_points_lose_nothing,
                     *boost::unit_test::timeout(300)) {
  stop_lockers_at_random(4, 1500);
  // One CPU: the stopper, the holder and the sleepers take turns on it, so a locker is also
  // preempted (not only stopped) between any two of its steps.
  PinnedToOneCpu pin;
  BOOST_REQUIRE(pin.ok());
  stop_lockers_at_random(4, 600);
}

MPTEST_SCENARIO(add_under_named_mutex) {
  mp::Mutex m(mp::open_only, args.at(0));
  mp::RawValue<long> counter(mp::open_only, args.at(1));
  const long n = std::stol(args.at(2));
  for (long k = 0; k < n; ++k) {
    std::lock_guard lock(m);
    counter.store(counter.load() + 1);
  }
  return 0;
}

BOOST_AUTO_TEST_CASE(named_mutex_excludes_unrelated_processes, *boost::unit_test::timeout(120)) {
  const std::string mname = unique_name("lock"), cname = unique_name("counter");
  mp::Mutex m(mp::create_only, mname);
  mp::RawValue<long> counter(mp::create_only, cname, 0);
  Spawned a("add_under_named_mutex", {mname, cname, "20000"});
  Spawned b("add_under_named_mutex", {mname, cname, "20000"});
  for (int k = 0; k < 20000; ++k) {
    std::lock_guard lock(m);
    counter.store(counter.load() + 1);
  }
  BOOST_TEST(a.wait() == 0);
  BOOST_TEST(b.wait() == 0);
  BOOST_TEST(counter.load() == 60000);
}

MPTEST_SCENARIO(die_holding_named_mutex) {
  mp::Mutex m(mp::open_only, args.at(0));
  m.lock();
  ::kill(::getpid(), SIGKILL);
  return 1;
}

BOOST_AUTO_TEST_CASE(named_mutex_recovers_from_an_unrelated_holder_killed, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("robust");
  mp::Mutex m(mp::open_or_create, name);
  Spawned victim("die_holding_named_mutex", {name});
  BOOST_TEST(victim.wait() == -SIGKILL);
  BOOST_REQUIRE(m.try_lock_for(5s));
  BOOST_TEST(m.previous_owner_died());
  m.unlock();
}

BOOST_AUTO_TEST_CASE(holder_killed_by_sigkill_releases_the_lock_to_the_next_locker, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  Gate locked, never;
  mp::Process holder([&] {
    m.lock();
    locked.signal();
    never.wait(60s);
  });
  holder.start();
  BOOST_REQUIRE(locked.wait());
  BOOST_TEST(!m.try_lock());
  holder.kill();
  holder.join();
  BOOST_TEST(*holder.exitcode() == -SIGKILL);
  const auto start = std::chrono::steady_clock::now();
  BOOST_REQUIRE(m.try_lock_for(5s));
  BOOST_TEST_MESSAGE("recovered in " << seconds_since(start) * 1e6 << " us");
  BOOST_TEST(m.previous_owner_died());
  m.unlock();
  m.lock();
  BOOST_TEST(!m.previous_owner_died());  // reported once, to the recovering holder
  m.unlock();
}

BOOST_AUTO_TEST_CASE(waiter_blocked_in_lock_wakes_when_the_holder_dies, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  Gate locked, never;
  mp::Process holder([&] {
    m.lock();
    locked.signal();
    never.wait(60s);
  });
  holder.start();
  BOOST_REQUIRE(locked.wait());
  mp::Process waiter([m] {
    m.lock();  // blocks until the holder dies
    const bool told = m.previous_owner_died();
    m.unlock();
    return told ? 0 : 1;
  });
  waiter.start();
  BOOST_REQUIRE(wait_until_in_futex(waiter.pid()));
  BOOST_TEST(waiter.is_alive());
  const auto start = std::chrono::steady_clock::now();
  holder.kill();
  BOOST_REQUIRE(waiter.join_for(10s));
  BOOST_TEST_MESSAGE("blocked waiter took over in " << seconds_since(start) * 1e6 << " us");
  BOOST_TEST(*waiter.exitcode() == 0);
  holder.join();
}

BOOST_AUTO_TEST_CASE(recovering_holder_that_dies_too_is_recovered_again, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  BOOST_TEST(die_holding(m) == -SIGKILL);
  BOOST_TEST(run_child([m] {
               m.lock();
               if (!m.previous_owner_died()) return 1;
               ::kill(::getpid(), SIGKILL);  // dies before repairing or unlocking
               return 2;
             }) == -SIGKILL);
  BOOST_REQUIRE(m.try_lock_for(5s));
  BOOST_TEST(m.previous_owner_died());
  m.unlock();
}

BOOST_AUTO_TEST_CASE(a_recovery_is_reported_across_a_condition_wait_and_then_forgotten, *boost::unit_test::timeout(60)) {
  // The inline unlock trusts a lock kept in the robust slot to be held once and not recovered;
  // a Condition wait releases and retakes a recovered lock, which must keep reporting the death
  // until it is unlocked and not after, and whose holder's death must still be recovered.
  mp::Mutex m;
  mp::Condition cv;
  BOOST_TEST(die_holding(m) == -SIGKILL);
  BOOST_TEST(run_child([m, cv]() mutable {
               std::unique_lock<mp::Mutex> held(m);
               if (!m.previous_owner_died()) return 1;
               if (cv.wait_for(held, 10ms)) return 2;  // nobody notifies: times out
               if (!m.previous_owner_died()) return 3;  // still this holder's recovery
               held.unlock();
               held.lock();
               return m.previous_owner_died() ? 4 : 0;  // reported once
             }) == 0);
  BOOST_TEST(die_holding(m) == -SIGKILL);
  BOOST_TEST(run_child([m, cv]() mutable {
               std::unique_lock<mp::Mutex> held(m);
               if (!m.previous_owner_died()) return 1;
               if (cv.wait_for(held, 1ms)) return 2;
               ::kill(::getpid(), SIGKILL);  // dies holding the retaken, recovered lock
               return 3;
             }) == -SIGKILL);
  BOOST_REQUIRE(m.try_lock_for(5s));
  BOOST_TEST(m.previous_owner_died());
  m.unlock();
  m.lock();
  BOOST_TEST(!m.previous_owner_died());
  m.unlock();
}

BOOST_AUTO_TEST_CASE(thread_exiting_while_holding_releases_it, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  std::thread([&] { m.lock(); }).join();
  BOOST_REQUIRE(m.try_lock_for(5s));
  BOOST_TEST(m.previous_owner_died());
  m.unlock();
}

namespace {

// A robust process-shared glibc mutex in anonymous shared memory: it shares each thread's kernel
// robust list with multiproc's locks.
struct GlibcRobust {
  pthread_mutex_t* m;
  GlibcRobust() {
    void* p = ::mmap(nullptr, sizeof(pthread_mutex_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    BOOST_REQUIRE(p != MAP_FAILED);
    m = static_cast<pthread_mutex_t*>(p);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
  }
  ~GlibcRobust() {
    pthread_mutex_destroy(m);
    ::munmap(m, sizeof(pthread_mutex_t));
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(shares_the_robust_list_with_glibc_mutexes_in_any_order, *boost::unit_test::timeout(60)) {
  // multiproc's locks sit on the same kernel list as glibc's robust mutexes. Lock and unlock them
  // interleaved, out of order, so that each side unlinks entries next to the other's, then die:
  // every lock still held must be recovered, whichever side it belongs to, and the others free.
  mp::Mutex a, b, c, d;
  GlibcRobust g1, g2;
  BOOST_TEST(run_child([&] {
               a.lock();
               if (pthread_mutex_lock(g1.m) != 0) return 1;
               b.lock();
               if (pthread_mutex_lock(g2.m) != 0) return 2;
               a.unlock();                                    // ours, between glibc entries
               if (pthread_mutex_unlock(g1.m) != 0) return 3;  // glibc's, next to ours
               c.lock();
               d.lock();
               c.unlock();  // ours, between ours
               ::kill(::getpid(), SIGKILL);  // holds b, d (ours) and g2 (glibc's)
               return 4;
             }) == -SIGKILL);
  for (mp::Mutex* held : {&b, &d}) {
    BOOST_REQUIRE(held->try_lock_for(5s));
    BOOST_TEST(held->previous_owner_died());
    held->unlock();
  }
  for (mp::Mutex* freed : {&a, &c}) {
    BOOST_REQUIRE(freed->try_lock());
    BOOST_TEST(!freed->previous_owner_died());
    freed->unlock();
  }
  BOOST_TEST(pthread_mutex_trylock(g1.m) == 0);
  BOOST_TEST(pthread_mutex_unlock(g1.m) == 0);
  BOOST_TEST(pthread_mutex_trylock(g2.m) == EOWNERDEAD);
  BOOST_TEST(pthread_mutex_consistent(g2.m) == 0);
  BOOST_TEST(pthread_mutex_unlock(g2.m) == 0);
  // And the same thread keeps using both kinds afterwards, in this process too.
  for (int i = 0; i < 3; ++i) {
    a.lock();
    BOOST_TEST(pthread_mutex_lock(g1.m) == 0);
    b.lock();
    a.unlock();
    BOOST_TEST(pthread_mutex_unlock(g1.m) == 0);
    b.unlock();
  }
}

BOOST_AUTO_TEST_CASE(nested_locks_in_any_order_are_all_recovered, *boost::unit_test::timeout(60)) {
  // A thread holds its first lock through the robust list's pending slot and moves it onto the
  // list when it takes a second; unlocking out of order and relocking must keep every lock still
  // held registered, so that all of them are recovered at once (no liveness slice) when it dies.
  mp::Mutex a, b, c, d;
  mp::RecursiveMutex r;
  BOOST_TEST(run_child([&] {
               a.lock();  // the slot
               b.lock();  // a onto the list, b in the slot
               a.unlock();
               c.lock();  // b onto the list, c in the slot
               r.lock();
               r.lock();  // recursion while in the slot
               b.unlock();
               if (!d.try_lock()) return 1;
               r.unlock();
               ::kill(::getpid(), SIGKILL);  // holds c, d and r (depth 1)
               return 2;
             }) == -SIGKILL);
  const auto start = std::chrono::steady_clock::now();
  for (mp::Mutex* held : {&c, &d}) {
    BOOST_REQUIRE(held->try_lock());  // at once: the kernel released them at the death
    BOOST_TEST(held->previous_owner_died());
    held->unlock();
  }
  BOOST_REQUIRE(r.try_lock());
  BOOST_TEST(r.previous_owner_died());
  BOOST_TEST(r.depth() == 1u);
  r.unlock();
  for (mp::Mutex* freed : {&a, &b}) {
    BOOST_REQUIRE(freed->try_lock());
    BOOST_TEST(!freed->previous_owner_died());
    freed->unlock();
  }
  BOOST_TEST(seconds_since(start) < 0.05);
}

BOOST_AUTO_TEST_CASE(lock_whose_slot_glibc_cleared_is_registered_again, *boost::unit_test::timeout(60)) {
  // Locking and unlocking a robust pthread mutex clears the pending slot that holds our lock. The
  // thread's next multiproc operation notices, puts the lock back on the kernel's list, and from
  // then on the process keeps every lock on the list, where glibc's use of the slot cannot hurt.
  mp::Mutex m, other, later;
  GlibcRobust g;
  BOOST_TEST(run_child([&] {
               m.lock();
               if (pthread_mutex_lock(g.m) != 0) return 1;
               if (pthread_mutex_unlock(g.m) != 0) return 2;
               other.lock();  // notices, and registers m again
               ::kill(::getpid(), SIGKILL);
               return 3;
             }) == -SIGKILL);
  for (mp::Mutex* held : {&m, &other}) {
    BOOST_REQUIRE(held->try_lock());  // at once: the kernel knew both
    BOOST_TEST(held->previous_owner_died());
    held->unlock();
  }
  BOOST_TEST(run_child([&] {
               m.lock();
               if (pthread_mutex_lock(g.m) != 0) return 1;
               if (pthread_mutex_unlock(g.m) != 0) return 2;
               m.unlock();  // notices: every lock goes on the list from now on
               later.lock();
               if (pthread_mutex_lock(g.m) != 0) return 3;
               if (pthread_mutex_unlock(g.m) != 0) return 4;  // clears the slot, not the list
               ::kill(::getpid(), SIGKILL);
               return 5;
             }) == -SIGKILL);
  BOOST_REQUIRE(later.try_lock());
  BOOST_TEST(later.previous_owner_died());
  later.unlock();
  BOOST_REQUIRE(m.try_lock());
  BOOST_TEST(!m.previous_owner_died());
  m.unlock();
}

BOOST_AUTO_TEST_CASE(child_forked_by_a_holder_holds_nothing, *boost::unit_test::timeout(60)) {
  // The parent's lock sits in its pending slot at the fork; the child must neither own it nor
  // carry its registration into its own locking, and its own locks must be recovered.
  mp::Mutex held, other;
  held.lock();
  BOOST_TEST(run_child([&] {
               if (held.try_lock()) return 1;
               other.lock();  // through the child's own slot
               ::kill(::getpid(), SIGKILL);
               return 2;
             }) == -SIGKILL);
  BOOST_REQUIRE(other.try_lock());
  BOOST_TEST(other.previous_owner_died());
  other.unlock();
  BOOST_TEST(!held.previous_owner_died());
  held.unlock();
  BOOST_REQUIRE(held.try_lock());
  held.unlock();
}

BOOST_AUTO_TEST_CASE(blocked_waiter_uses_no_cpu, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  m.lock();
  CHECK_CHILD([m] {
    const double cpu0 = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    if (m.try_lock_for(500ms)) return 2;
    const double wall = seconds_since(start);
    const double cpu = cpu_seconds() - cpu0;
    std::fprintf(stderr, "blocked 500 ms: %.3f s wall, %.4f s CPU\n", wall, cpu);
    return cpu < 0.1 * wall ? 0 : 1;  // spins only briefly, then sleeps
  });
  m.unlock();
}

BOOST_AUTO_TEST_CASE(open_or_create_and_open_only_reach_the_same_lock, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("shared");
  mp::Mutex a(mp::open_or_create, name);
  mp::Mutex b(mp::open_or_create, name);
  mp::Mutex c(mp::open_only, name);
  a.lock();
  BOOST_TEST(!b.try_lock());
  BOOST_TEST(!c.try_lock());
  a.unlock();
  BOOST_TEST(c.try_lock());
  c.unlock();
  BOOST_TEST(a.segment().owns_name());
  BOOST_TEST(b.segment().owns_name());  // one mapping per process, owned by its creator
}

BOOST_AUTO_TEST_CASE(locked_and_holder_follow_a_holder_in_another_process, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  BOOST_TEST(!m.locked());
  BOOST_TEST(!m.holder_tid().has_value());
  BOOST_TEST(!m.holder_pid().has_value());
  Gate taken, release, released, leave;
  mp::Process holder([&] {
    m.lock();
    taken.signal();
    release.wait();
    m.unlock();
    released.signal();
    leave.wait();
  });
  holder.start();
  BOOST_REQUIRE(taken.wait());
  BOOST_TEST(m.locked());
  BOOST_TEST((m.holder_pid() == std::optional<pid_t>(holder.pid())));
  BOOST_TEST((m.holder_tid() == std::optional<pid_t>(holder.pid())));  // a single-threaded child
  ::kill(holder.pid(), SIGSTOP);  // a stopped holder still holds it
  BOOST_TEST(m.locked());
  BOOST_TEST(!m.try_lock());
  ::kill(holder.pid(), SIGCONT);
  release.signal();
  BOOST_REQUIRE(released.wait());
  BOOST_TEST(!m.locked());
  BOOST_TEST(!m.holder_pid().has_value());
  leave.signal();
  BOOST_REQUIRE(holder.join_for(30s));
  BOOST_TEST(*holder.exitcode() == 0);
  m.lock();  // and the caller itself
  BOOST_TEST(m.locked());
  BOOST_TEST((m.holder_pid() == std::optional<pid_t>(::getpid())));
  m.unlock();
  BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_CASE(holder_pid_maps_a_holding_thread_to_its_process, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  Gate taken, leave;
  mp::Process holder([&] {
    std::thread t([&] {
      m.lock();
      taken.signal();
      leave.wait();
      m.unlock();
    });
    t.join();
  });
  holder.start();
  BOOST_REQUIRE(taken.wait());
  BOOST_TEST(m.locked());
  BOOST_REQUIRE(m.holder_tid().has_value());
  BOOST_TEST(*m.holder_tid() != holder.pid());  // the thread, not the process
  BOOST_TEST((m.holder_pid() == std::optional<pid_t>(holder.pid())));
  leave.signal();
  BOOST_REQUIRE(holder.join_for(30s));
  BOOST_TEST(*holder.exitcode() == 0);
  BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_CASE(locked_is_false_after_the_holder_died_until_someone_takes_it, *boost::unit_test::timeout(60)) {
  // The kernel marks the word "owner died" with no thread id: free to take, so locked() is false
  // (Python's locked() says whether a lock is acquired). The next locker recovers it.
  mp::Mutex m;
  BOOST_TEST(die_holding(m) == -SIGKILL);
  BOOST_TEST(!m.locked());
  BOOST_TEST(!m.holder_pid().has_value());
  BOOST_REQUIRE(m.try_lock());
  BOOST_TEST(m.previous_owner_died());
  BOOST_TEST(m.locked());
  m.unlock();
  BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_CASE(a_word_naming_a_thread_id_no_thread_can_have_is_taken_over,
                     *boost::unit_test::timeout(60)) {
  // A lock word scribbled (or left as garbage) with a thread id at or above 2^22, which no Linux
  // thread can have (PID_MAX_LIMIT): no unlock and no death will ever free it. Old code: an
  // untimed lock() waited for good, try_lock() and every timed lock failed. Now each form takes
  // it over as from a dead holder, in another process too, and says so.
  mp::Mutex m(mp::create_only, unique_name("mutex.notid"));
  auto* state = static_cast<mp::detail::MutexState*>(m.segment().body());
  const std::uint32_t garbage[] = {std::uint32_t{1} << 22, 0x3fffffffu,
                                   0xffffffffu,  // waiters and owner-died bits set too
                                   (std::uint32_t{1} << 22) | FUTEX_WAITERS};
  for (const std::uint32_t w : garbage) {
    BOOST_TEST_CONTEXT("word " << std::hex << w) {
      state->word.store(w);
      BOOST_TEST(!m.locked());  // held by nobody
      BOOST_TEST(!m.holder_tid().has_value());
      // An untimed lock() in another process (killed, and failed, if it waits).
      CHECK_CHILD([&] {
        m.lock();
        const bool ok = m.previous_owner_died() && m.locked();
        m.unlock();
        return ok && !m.locked() ? 0 : 1;
      }, 20s);
      state->word.store(w);
      BOOST_REQUIRE(m.try_lock());
      BOOST_TEST(m.previous_owner_died());
      m.unlock();
      state->word.store(w);
      BOOST_REQUIRE(m.try_lock_for(10s));
      BOOST_TEST(m.previous_owner_died());
      m.unlock();
      // Once released, the lock is an ordinary one again.
      m.lock();
      BOOST_TEST(!m.previous_owner_died());
      m.unlock();
      BOOST_TEST((state->word.load() & FUTEX_TID_MASK) == 0u);
    }
  }
  // A scribbled id below the limit may be a live thread's: still waited for (README, Limits).
  state->word.store((std::uint32_t{1} << 22) - 1);
  BOOST_TEST(m.locked());
  BOOST_TEST(!m.try_lock());
  BOOST_TEST(!m.try_lock_for(50ms));
  state->word.store(0);
}

BOOST_AUTO_TEST_CASE(locked_with_a_waiter_and_after_the_holder_dies_under_it, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  Gate taken, never, got, leave;
  mp::Process holder([&] {
    m.lock();
    taken.signal();
    never.wait(60s);
  });
  holder.start();
  BOOST_REQUIRE(taken.wait());
  mp::Process waiter([&] {
    m.lock();  // sleeps with FUTEX_WAITERS set, until the holder dies
    got.signal(m.previous_owner_died() ? 'd' : 'n');
    leave.wait();
    m.unlock();
  });
  waiter.start();
  BOOST_REQUIRE(wait_until_in_futex(waiter.pid()));
  BOOST_TEST(m.locked());  // the waiters bit does not confuse it
  BOOST_TEST((m.holder_pid() == std::optional<pid_t>(holder.pid())));
  holder.kill();
  holder.join();
  BOOST_REQUIRE(got.wait());
  BOOST_TEST(got.last() == 'd');
  BOOST_TEST(m.locked());  // the waiter recovered it and holds it now
  BOOST_TEST((m.holder_pid() == std::optional<pid_t>(waiter.pid())));
  leave.signal();
  BOOST_REQUIRE(waiter.join_for(30s));
  BOOST_TEST(*waiter.exitcode() == 0);
  BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_SUITE_END()
