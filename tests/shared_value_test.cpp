// SharedValue and RawValue: access, locking, sharing with forked and unrelated processes, and a
// holder killed inside update.
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
  mp::SharedValue<long> v(5);
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
  mp::SharedValue<int> v(mp::create_only, vname, 0);
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

BOOST_AUTO_TEST_SUITE_END()
