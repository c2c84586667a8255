// SharedValue and RawValue: access, locking, sharing with forked and unrelated processes, and a
// holder killed inside update.
// (At our ~500-line mark: values and their crash cases share the scenarios at the top.)
#include "support/support.hpp"

#include <csignal>
#include <mutex>
#include <thread>

using namespace mptest;

namespace {
struct Point {
  double x, y;
  int tag;
};
}  // namespace

BOOST_FIXTURE_TEST_SUITE(shared_value, Clean)

BOOST_AUTO_TEST_CASE(initial_load_store_and_exchange, *boost::unit_test::timeout(60)) {
  mp::SharedValue<int> zero;
  BOOST_TEST(zero.load() == 0);
  mp::SharedValue<double> d(2.5);
  BOOST_TEST(d.load() == 2.5);
  d.store(-1.25);
  BOOST_TEST(d.load() == -1.25);
  BOOST_TEST(d.exchange(4.0) == -1.25);
  BOOST_TEST(d.load() == 4.0);
  mp::SharedValue<Point> p(Point{1, 2, 3});
  BOOST_TEST(p.load().y == 2.0);
  p.update([](Point& q) { q.tag = 9; });
  BOOST_TEST(p.load().tag == 9);
}

BOOST_AUTO_TEST_CASE(update_returns_what_the_function_returns, *boost::unit_test::timeout(60)) {
  mp::SharedValue<long> v(10);
  const long old = v.update([](long& x) { return x++; });
  BOOST_TEST(old == 10);
  BOOST_TEST(v.load() == 11);
  v.update([](long& x) { x *= 2; });
  BOOST_TEST(v.load() == 22);
}

BOOST_AUTO_TEST_CASE(guard_holds_the_lock_and_gives_access, *boost::unit_test::timeout(60)) {
  mp::SharedValue<Point> p(Point{0, 0, 0});
  {
    auto g = p.lock();
    g->x = 1.5;
    (*g).tag = 4;
    BOOST_TEST(!g.previous_owner_died());
    BOOST_TEST(!p.mutex().try_lock());  // the guard holds the value's own lock
  }
  BOOST_TEST(p.mutex().try_lock());
  p.mutex().unlock();
  BOOST_TEST(p.load().x == 1.5);
  BOOST_TEST(p.load().tag == 4);
  // mutex() works with the standard lock types and excludes update().
  mp::Mutex m = p.mutex();
  std::unique_lock<mp::Mutex> u(m);
  CHECK_CHILD([p] {
    mp::Mutex cm = p.mutex();
    return cm.try_lock() ? 1 : 0;
  });
}

BOOST_AUTO_TEST_CASE(copies_share_one_value, *boost::unit_test::timeout(60)) {
  mp::SharedValue<int> a(1);
  mp::SharedValue<int> b = a;
  b.store(5);
  BOOST_TEST(a.load() == 5);
  const mp::SharedValue<int> c = a;  // a const handle still updates the shared value
  c.update([](int& x) { x += 1; });
  BOOST_TEST(a.load() == 6);
}

BOOST_AUTO_TEST_CASE(children_updating_under_the_lock_give_an_exact_sum, *boost::unit_test::timeout(120)) {
  mp::SharedValue<long> total(0);
  constexpr int kChildren = 4;
  constexpr long kIterations = 25000;
  std::vector<mp::Process> children;
  for (int i = 1; i <= kChildren; ++i) {
    children.emplace_back([total](int add) {
      for (long k = 0; k < kIterations; ++k) {
        if (k % 2 == 0) {
          total.update([add](long& t) { t += add; });
        } else {
          auto g = total.lock();
          *g += add;
        }
      }
    }, i);
  }
  for (auto& c : children) c.start();
  for (auto& c : children) {
    BOOST_REQUIRE(c.join_for(60s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  BOOST_TEST(total.load() == kIterations * kChildren * (kChildren + 1) / 2);
}

MPTEST_SCENARIO(add_to_named_value) {
  mp::SharedValue<long> v(mp::open_only, args.at(0));
  const long n = std::stol(args.at(1));
  for (long k = 0; k < n; ++k) v.update([](long& x) { ++x; });
  return 0;
}

BOOST_AUTO_TEST_CASE(named_value_shared_with_unrelated_processes, *boost::unit_test::timeout(120)) {
  const std::string name = unique_name("total");
  mp::SharedValue<long> v(mp::create_only, name, 0);
  Spawned a("add_to_named_value", {name, "20000"});
  Spawned b("add_to_named_value", {name, "20000"});
  for (int k = 0; k < 20000; ++k) v.update([](long& x) { ++x; });
  BOOST_TEST(a.wait() == 0);
  BOOST_TEST(b.wait() == 0);
  BOOST_TEST(v.load() == 60000);
  mp::SharedValue<long> again(mp::open_or_create, name, -1);
  BOOST_TEST(again.load() == 60000);  // opened, not re-initialised
}

BOOST_AUTO_TEST_CASE(holder_killed_inside_an_update_is_reported_to_the_next, *boost::unit_test::timeout(60)) {
  mp::SharedValue<Point> p(Point{0, 0, 0});
  Gate halfway, never;
  mp::Process victim([&] {
    p.update([&](Point& q) {
      q.x = 1;  // half of a two-field update
      halfway.signal();
      never.wait(60s);
      q.y = 1;
    });
  });
  victim.start();
  BOOST_REQUIRE(halfway.wait());
  victim.kill();
  victim.join();
  // The half-updated value is never handed out silently...
  try {
    p.load();
    BOOST_ERROR("load() returned a value a dead holder left half-updated");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::owner_died));
    BOOST_TEST(std::string(e.what()).find("mark_repaired") != std::string::npos, e.what());
  }
  BOOST_CHECK_THROW(p.update([](Point&) {}), mp::Error);
  BOOST_CHECK_THROW(p.exchange(Point{}), mp::Error);
  {
    auto g = p.lock();
    BOOST_TEST(g.previous_owner_died());
    BOOST_TEST(g->x == 1.0);  // the dead holder's partial write: repair it here
    BOOST_TEST(g->y == 0.0);
  }
  {
    auto g = p.lock();
    BOOST_TEST(g.previous_owner_died());  // still: nobody repaired it
    g->y = 1;
    g.mark_repaired();
  }
  BOOST_TEST(p.load().y == 1.0);
  BOOST_TEST(!p.lock().previous_owner_died());
}

BOOST_AUTO_TEST_CASE(store_repairs_a_value_left_by_a_dead_holder, *boost::unit_test::timeout(60)) {
  mp::SharedValue<long> v(5, mp::RecoveryPolicy::strict);  // a long recovers by default
  BOOST_TEST(run_child([v] {
               auto g = v.lock();
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  BOOST_CHECK_THROW(v.load(), mp::Error);
  v.store(6);  // a whole new value
  BOOST_TEST(v.load() == 6);
}

BOOST_AUTO_TEST_CASE(guard_outlives_a_temporary_handle, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("guarded");
  mp::SharedValue<int> owner(mp::create_only, name, 0);
  CHECK_CHILD([name] {
    auto g = mp::SharedValue<int>(mp::open_only, name).lock();  // the handle is gone at once
    *g = 41;
    *g += 1;
    return 0;
  });
  BOOST_TEST(owner.load() == 42);
}

BOOST_AUTO_TEST_CASE(process_dying_with_locks_in_released_handles_frees_them_all, *boost::unit_test::timeout(60)) {
  // glibc's robust list runs through every lock a thread holds. A handle destroyed while its
  // lock is held must keep its mapping, or the kernel's walk of that list stops there when the
  // thread dies and the locks after it are never released.
  const std::string vname = unique_name("v"), mname = unique_name("m"), tname = unique_name("t");
  mp::SharedValue<int> v(mp::create_only, vname, 0, mp::RecoveryPolicy::strict);  // reports deaths
  mp::Mutex other(mp::create_only, mname);
  mp::Mutex last(mp::create_only, tname);
  Gate held, never;
  mp::Process victim([&] {
    other.lock();
    auto g = mp::SharedValue<int>(mp::open_only, vname).lock();  // a guard from a temporary
    {
      mp::Mutex m(mp::open_only, tname);
      // Forget the inherited handle too, so `m` is this process's last one: destroyed held.
      last = mp::Mutex();
      m.lock();
    }
    held.signal();
    never.wait(60s);
  });
  victim.start();
  BOOST_REQUIRE(held.wait());
  victim.kill();
  victim.join();
  BOOST_TEST(last.try_lock_for(5s));
  BOOST_TEST(last.previous_owner_died());
  last.unlock();
  BOOST_TEST(other.try_lock_for(5s));
  BOOST_TEST(other.previous_owner_died());
  other.unlock();
  auto g = v.lock();
  BOOST_TEST(g.previous_owner_died());
}

BOOST_AUTO_TEST_CASE(raw_value_loads_and_stores_without_a_lock, *boost::unit_test::timeout(60)) {
  mp::RawValue<long> r(7);
  BOOST_TEST(r.load() == 7);
  r.store(-3);
  BOOST_TEST(r.load() == -3);
  r.get() += 10;
  BOOST_TEST(r.load() == 7);
  mp::RawValue<Point> big(Point{1, 2, 3});  // not a machine word: plain copies
  big.store(Point{4, 5, 6});
  BOOST_TEST(big.load().tag == 6);
  CHECK_CHILD([r] {
    r.store(99);
    return 0;
  });
  BOOST_TEST(r.load() == 99);
}

BOOST_AUTO_TEST_CASE(raw_value_by_name, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("raw");
  mp::RawValue<short> a(mp::create_only, name, 3);
  mp::RawValue<short> b(mp::open_only, name);
  b.store(4);
  BOOST_TEST(a.load() == 4);
  mp::RawValue<short> c(mp::open_or_create, name, 100);
  BOOST_TEST(c.load() == 4);
}

BOOST_AUTO_TEST_CASE(values_sharing_one_mutex_are_updated_under_it_by_children, *boost::unit_test::timeout(120)) {
  // Python's Value('l', 0, lock=m): a, b and the array share m, so a counter touched only while
  // holding any one of them counts exactly.
  mp::Mutex m;
  mp::SharedValue<long> a(0, m), b(0, m);
  mp::SharedArray<long> arr(2, m);
  mp::RawValue<long> under_m(0);  // unsynchronised except through m
  constexpr int kChildren = 4;
  constexpr long kIterations = 5000;
  std::vector<mp::Process> children;
  for (int i = 1; i <= kChildren; ++i) {
    children.emplace_back([a, b, arr, m, under_m](int add) {
      for (long k = 0; k < kIterations; ++k) {
        switch (k % 4) {
          case 0:
            a.update([&](long& x) { x += add; under_m.store(under_m.load() + 1); });
            break;
          case 1: {
            auto g = b.lock();
            *g += add;
            under_m.store(under_m.load() + 1);
            break;
          }
          case 2: {
            auto g = arr.lock();
            g[0] += add;
            under_m.store(under_m.load() + 1);
            break;
          }
          default: {
            std::lock_guard lock(m);
            arr[1] += add;  // m held: the array's elements are ours
            under_m.store(under_m.load() + 1);
          }
        }
      }
    }, i);
  }
  for (auto& c : children) c.start();
  for (auto& c : children) {
    BOOST_REQUIRE(c.join_for(60s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  const long per_kind = kIterations / 4 * kChildren * (kChildren + 1) / 2;
  BOOST_TEST(a.load() == per_kind);
  BOOST_TEST(b.load() == per_kind);
  BOOST_TEST((arr.to_vector() == std::vector<long>{per_kind, per_kind}));
  BOOST_TEST(under_m.load() == kIterations * kChildren);
  // a.mutex() is m itself.
  const mp::Mutex am = a.mutex();
  std::lock_guard lock(am);
  BOOST_TEST(m.locked());
  BOOST_TEST(!b.mutex().try_lock());
  BOOST_TEST(!arr.mutex().try_lock());
}

BOOST_AUTO_TEST_CASE(holding_one_value_blocks_its_siblings, *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  mp::SharedValue<int> a(1, m), b(2, m);
  mp::SharedValue<int> own(3);  // its own lock: not blocked
  Gate taken, release, waiting_done;
  mp::Process holder([&] {
    auto g = a.lock();
    taken.signal();
    release.wait();
    *g = 10;
  });
  holder.start();
  BOOST_REQUIRE(taken.wait());
  BOOST_TEST(m.locked());
  BOOST_TEST(!b.mutex().try_lock());
  BOOST_TEST(own.load() == 3);
  mp::Process waiter([b] { b.update([](int& x) { x += 1; }); });
  waiter.start();
  BOOST_REQUIRE(wait_until_in_futex(waiter.pid()));  // b's update waits for a's holder
  BOOST_TEST(waiter.is_alive());
  release.signal();
  BOOST_REQUIRE(waiter.join_for(30s));
  BOOST_TEST(*waiter.exitcode() == 0);
  BOOST_REQUIRE(holder.join_for(30s));
  BOOST_TEST(*holder.exitcode() == 0);
  BOOST_TEST(a.load() == 10);
  BOOST_TEST(b.load() == 3);
  BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_CASE(recursive_mutex_lets_updates_nest_across_siblings, *boost::unit_test::timeout(120)) {
  mp::RecursiveMutex r;
  mp::SharedValue<long> a(0, r), b(0, r);
  std::vector<mp::Process> children;
  for (int i = 0; i < 3; ++i) {
    children.emplace_back([a, b, r] {
      for (int k = 0; k < 3000; ++k) {
        a.update([&](long& x) {
          b.update([&](long& y) { y += 2; });  // the same lock, held: reentrant
          ++x;
          if (r.depth() != 1u) std::abort();
        });
      }
      return 0;
    });
    children.back().start();
  }
  for (auto& c : children) {
    BOOST_REQUIRE(c.join_for(60s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  BOOST_TEST(a.load() == 9000);
  BOOST_TEST(b.load() == 18000);
  BOOST_TEST(a.recursive_mutex().depth() == 0u);
  BOOST_CHECK_THROW(a.mutex(), mp::Error);  // a RecursiveMutex, not a Mutex
  // With a plain shared Mutex the same nesting is a would-deadlock Error, not a hang.
  mp::Mutex m;
  mp::SharedValue<int> c(0, m), d(0, m);
  try {
    c.update([&](int&) { d.update([](int& y) { ++y; }); });
    BOOST_ERROR("nested update under one Mutex did not throw");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::would_deadlock), e.what());
  }
  BOOST_TEST(!m.locked());
  BOOST_CHECK_THROW(c.recursive_mutex(), mp::Error);
}

BOOST_AUTO_TEST_CASE(holder_killed_under_a_shared_lock_makes_every_sibling_suspect, *boost::unit_test::timeout(60)) {
  // The lock cannot say which of its values the dead holder was changing, so every value guarded
  // by it reports the death; each is repaired (or stored) on its own. A value with its own lock
  // is not concerned.
  mp::Mutex m;
  mp::SharedValue<long> a(1, m), b(2, m);
  mp::SharedArray<int> arr({1, 2, 3}, m);
  mp::SharedValue<long> own(4);
  BOOST_TEST(run_child([a] {
               auto g = a.lock();
               *g = 100;
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  BOOST_TEST(!m.locked());  // free to take
  for (const auto& v : {a, b}) {
    try {
      v.load();
      BOOST_ERROR("load() after a death under the shared lock");
    } catch (const mp::Error& e) {
      BOOST_TEST((e.code() == mp::errc::owner_died), e.what());
    }
  }
  BOOST_CHECK_THROW(arr.to_vector(), mp::Error);
  BOOST_TEST(own.load() == 4);
  a.store(5);  // repairs a only
  BOOST_TEST(a.load() == 5);
  BOOST_CHECK_THROW(b.load(), mp::Error);
  {
    auto g = b.lock();
    BOOST_TEST(g.previous_owner_died());
    g.mark_repaired();
  }
  BOOST_TEST(b.load() == 2);
  BOOST_CHECK_THROW(arr.load(0), mp::Error);
  {
    auto g = arr.lock();
    BOOST_TEST(g.previous_owner_died());
    g.mark_repaired();
  }
  BOOST_TEST((arr.to_vector() == std::vector<int>{1, 2, 3}));
  // A value made after the death (before anyone took the lock again) is not concerned by it...
  BOOST_TEST(run_child([b] {
               auto g = b.lock();
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  mp::SharedValue<long> later(7, m);
  BOOST_TEST(later.load() == 7);
  // ...but the second death concerns a and b again, though both were repaired after the first.
  BOOST_CHECK_THROW(a.load(), mp::Error);
  BOOST_CHECK_THROW(b.load(), mp::Error);
  BOOST_CHECK_THROW(arr.load(1), mp::Error);
  a.store(0);
  b.store(0);
  BOOST_TEST(a.load() + b.load() == 0);
}

// An outside probe: a value made while its shared lock awaited recovery number 2^31 (the count
// is 31 bits wide and wraps to 0) recorded 2^31 as the recovery it had seen, which the count
// never reaches: the value read as half-updated for ever.
BOOST_AUTO_TEST_CASE(a_value_made_before_the_recovery_count_wraps_is_not_concerned,
                     *boost::unit_test::timeout(60)) {
  mp::Mutex m;
  auto* state = static_cast<mp::detail::MutexState*>(m.segment().body());
  state->inconsistent.store(0xfffffffeu);  // 2^31 - 1 recoveries so far, data consistent
  BOOST_TEST(run_child([m] {
               m.lock();
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  mp::SharedValue<long> later(7, m);  // made after the death, before the lock is taken again
  BOOST_TEST(later.load() == 7);      // the recovery (count 0 now) does not concern it
  BOOST_TEST(later.load() == 7);
  BOOST_TEST(mp::detail::mutex_recoveries(state) == 0u);
}

MPTEST_SCENARIO(add_to_value_with_named_lock) {
  // Opens two values by name only: their lock is opened from the name each recorded.
  mp::SharedValue<long> x(mp::open_only, args.at(0)), y(mp::open_only, args.at(1));
  if (x.mutex().segment().name() != args.at(2)) return 3;
  for (int k = 0; k < 5000; ++k) {
    x.update([](long& v) { ++v; });
    auto g = y.lock();
    *g += 2;
  }
  return 0;
}

BOOST_AUTO_TEST_CASE(named_values_share_a_named_lock_with_unrelated_processes, *boost::unit_test::timeout(120)) {
  const std::string lname = unique_name("lock"), xname = unique_name("x"), yname = unique_name("y");
  mp::Mutex m(mp::create_only, lname);
  mp::SharedValue<long> x(mp::create_only, xname, 0, m), y(mp::create_only, yname, 0, m);
  Spawned p("add_to_value_with_named_lock", {xname, yname, lname});
  Spawned q("add_to_value_with_named_lock", {xname, yname, lname});
  BOOST_TEST(p.wait() == 0);
  BOOST_TEST(q.wait() == 0);
  BOOST_TEST(x.load() == 10000);
  BOOST_TEST(y.load() == 20000);
  // Opened here too: the same lock.
  mp::SharedValue<long> x2(mp::open_only, xname);
  {
    auto g = x2.lock();
    BOOST_TEST(m.locked());
    BOOST_TEST(!y.mutex().try_lock());
  }
  // open_or_create with the same lock opens; with another lock it is an Error.
  mp::SharedValue<long> x3(mp::open_or_create, xname, -1, m);
  BOOST_TEST(x3.load() == 10000);
  mp::Mutex other(mp::create_only, unique_name("other"));
  BOOST_CHECK_THROW(mp::SharedValue<long>(mp::open_or_create, xname, 0, other), mp::Error);
  BOOST_CHECK_THROW(mp::SharedArray<long>(mp::open_or_create, unique_name("gone") , 2, mp::Mutex()), mp::Error);
  // A named value needs a named lock: openers could never find an anonymous one.
  mp::Mutex anonymous;
  try {
    mp::SharedValue<long> bad(mp::create_only, unique_name("bad"), 0, anonymous);
    BOOST_ERROR("a named value took an anonymous lock");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::invalid_argument));
    BOOST_TEST(std::string(e.what()).find("named") != std::string::npos, e.what());
  }
  mp::SharedValue<long> own(0);
  BOOST_CHECK_THROW(mp::SharedValue<long>(mp::create_only, unique_name("bad2"), 0, own.mutex()), mp::Error);
  // An anonymous value may use any lock, another value's own included (Python's lock=v.get_lock()).
  mp::SharedValue<long> sibling(5, own.mutex());
  {
    auto g = own.lock();
    BOOST_TEST(!sibling.mutex().try_lock());
  }
}

BOOST_AUTO_TEST_CASE(opening_a_value_whose_named_lock_is_gone_is_an_error, *boost::unit_test::timeout(60)) {
  const std::string lname = unique_name("lock"), vname = unique_name("v");
  mp::SharedValue<int> v = [&] {
    mp::Mutex m(mp::create_only, lname);
    return mp::SharedValue<int>(mp::create_only, vname, 1, m);
  }();
  // The value keeps its lock (and its name) alive in the creating process.
  BOOST_TEST(mp::exists(lname));
  BOOST_TEST(mp::SharedValue<int>(mp::open_only, vname).load() == 1);
  BOOST_TEST(mp::remove(lname));
  try {
    mp::SharedValue<int> lost(mp::open_only, vname);
    BOOST_ERROR("opened a value without its lock");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::not_found), e.what());
    BOOST_TEST(std::string(e.what()).find(lname) != std::string::npos, e.what());
    BOOST_TEST(std::string(e.what()).find(vname) != std::string::npos, e.what());
  }
  BOOST_TEST(v.load() == 1);  // the handle that has it keeps working
}

BOOST_AUTO_TEST_SUITE_END()
