// RecursiveMutex: reentrancy, ownership, exclusion across processes, and recovery of a dead
// owner's whole recursion.
#include "support/support.hpp"

#include <csignal>
#include <mutex>
#include <optional>
#include <thread>

using namespace mptest;

BOOST_FIXTURE_TEST_SUITE(recursive_mutex, Clean)

BOOST_AUTO_TEST_CASE(owner_may_lock_again_and_must_unlock_as_often, *boost::unit_test::timeout(60)) {
  mp::RecursiveMutex m;
  BOOST_TEST(m.depth() == 0u);
  m.lock();
  m.lock();
  BOOST_TEST(m.try_lock());
  BOOST_TEST(m.try_lock_for(1ms));
  BOOST_TEST(m.depth() == 4u);
  CHECK_CHILD([m] { return m.try_lock() ? 1 : 0; });  // held: another process cannot take it
  m.unlock();
  m.unlock();
  m.unlock();
  BOOST_TEST(m.depth() == 1u);
  CHECK_CHILD([m] { return m.try_lock() ? 1 : 0; });  // still held at depth 1
  m.unlock();
  BOOST_TEST(m.depth() == 0u);
  CHECK_CHILD([m] {
    if (!m.try_lock()) return 1;
    m.unlock();
    return 0;
  });
  { std::scoped_lock both(m, m); }  // std::lock on the same recursive mutex twice
}

BOOST_AUTO_TEST_CASE(unlock_by_a_non_owner_throws, *boost::unit_test::timeout(60)) {
  mp::RecursiveMutex m;
  BOOST_CHECK_THROW(m.unlock(), mp::Error);
  m.lock();
  std::thread([&] {
    try {
      m.unlock();
      BOOST_ERROR("unlocked by a non-owner thread");
    } catch (const mp::Error& e) {
      BOOST_TEST((e.code() == mp::errc::not_owner));
    }
  }).join();
  CHECK_CHILD([m] { return child_expect_errc([&] { m.unlock(); }, mp::errc::not_owner); });
  BOOST_TEST(m.depth() == 1u);  // the failed unlocks changed nothing
  m.unlock();
}

BOOST_AUTO_TEST_CASE(nested_locking_across_processes_gives_exact_sums, *boost::unit_test::timeout(120)) {
  mp::RecursiveMutex m;
  mp::RawValue<long> counter(0);
  std::vector<mp::Process> children;
  for (int i = 0; i < 4; ++i) {
    children.emplace_back([m, counter] {
      for (int k = 0; k < 10000; ++k) {
        std::lock_guard outer(m);
        std::lock_guard inner(m);
        counter.store(counter.load() + 1);
      }
    });
    children.back().start();
  }
  for (auto& c : children) {
    BOOST_REQUIRE(c.join_for(60s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  BOOST_TEST(counter.load() == 40000);
}

BOOST_AUTO_TEST_CASE(dead_owners_whole_recursion_is_released, *boost::unit_test::timeout(60)) {
  mp::RecursiveMutex m;
  BOOST_TEST(run_child([m] {
               m.lock();
               m.lock();
               m.lock();
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  BOOST_REQUIRE(m.try_lock_for(5s));
  BOOST_TEST(m.previous_owner_died());
  BOOST_TEST(m.depth() == 1u);
  m.lock();
  BOOST_TEST(m.previous_owner_died());  // until fully released
  m.unlock();
  m.unlock();
  BOOST_TEST(m.depth() == 0u);
  m.lock();
  BOOST_TEST(!m.previous_owner_died());
  m.unlock();
}

MPTEST_SCENARIO(recursive_lock_named) {
  mp::RecursiveMutex m(mp::open_only, args.at(0));
  if (m.try_lock()) return 1;  // the parent holds it
  return 0;
}

BOOST_AUTO_TEST_CASE(named_recursive_mutex, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("rlock");
  mp::RecursiveMutex m(mp::create_only, name);
  std::lock_guard g(m);
  Spawned child("recursive_lock_named", {name});
  BOOST_TEST(child.wait() == 0);
  BOOST_CHECK_THROW(mp::Mutex(mp::open_only, name), mp::Error);  // another kind
}

BOOST_AUTO_TEST_CASE(locked_at_any_depth_and_seen_from_another_process, *boost::unit_test::timeout(60)) {
  mp::RecursiveMutex m;
  BOOST_TEST(!m.locked());
  m.lock();
  m.lock();
  BOOST_TEST(m.locked());
  CHECK_CHILD([m] { return m.locked() && m.holder_pid() == std::optional<pid_t>(::getppid()) ? 0 : 1; });
  m.unlock();
  BOOST_TEST(m.locked());  // still held at depth 1
  m.unlock();
  BOOST_TEST(!m.locked());
  CHECK_CHILD([m] { return !m.locked() && !m.holder_tid() ? 0 : 1; });
  BOOST_TEST(run_child([m] {
               m.lock();
               m.lock();
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  BOOST_TEST(!m.locked());  // its holder died: free to take
  BOOST_REQUIRE(m.try_lock());
  BOOST_TEST(m.previous_owner_died());
  BOOST_TEST(m.locked());
  m.unlock();
}

BOOST_AUTO_TEST_SUITE_END()
