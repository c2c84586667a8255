// SharedValue and RawValue: access, locking, sharing with forked and unrelated processes, and a
// holder killed inside update.
#include "support/support.hpp"

#include <csignal>
#include <mutex>

using namespace mptest;

namespace {
struct Point {
  double x, y;
  int tag;
};
}  // namespace

BOOST_FIXTURE_TEST_SUITE(shared_value, Clean)

BOOST_AUTO_TEST_CASE(initial_load_store_and_exchange) {
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

BOOST_AUTO_TEST_CASE(update_returns_what_the_function_returns) {
  mp::SharedValue<long> v(10);
  const long old = v.update([](long& x) { return x++; });
  BOOST_TEST(old == 10);
  BOOST_TEST(v.load() == 11);
  v.update([](long& x) { x *= 2; });
  BOOST_TEST(v.load() == 22);
}

BOOST_AUTO_TEST_CASE(guard_holds_the_lock_and_gives_access) {
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

BOOST_AUTO_TEST_CASE(copies_share_one_value) {
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
  auto g = p.lock();
  BOOST_TEST(g.previous_owner_died());
  BOOST_TEST(g->x == 1.0);  // the dead holder's partial write is visible: repair it here
  BOOST_TEST(g->y == 0.0);
  g->y = 1;
}

BOOST_AUTO_TEST_CASE(raw_value_loads_and_stores_without_a_lock) {
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

BOOST_AUTO_TEST_CASE(raw_value_by_name) {
  const std::string name = unique_name("raw");
  mp::RawValue<short> a(mp::create_only, name, 3);
  mp::RawValue<short> b(mp::open_only, name);
  b.store(4);
  BOOST_TEST(a.load() == 4);
  mp::RawValue<short> c(mp::open_or_create, name, 100);
  BOOST_TEST(c.load() == 4);
}

BOOST_AUTO_TEST_SUITE_END()
