// SharedArray and RawArray: construction, bounds, locked and unlocked access, sharing with forked
// and unrelated processes.
#include "support/support.hpp"

#include <csignal>
#include <list>
#include <mutex>
#include <numeric>

using namespace mptest;

BOOST_FIXTURE_TEST_SUITE(shared_array, Clean)

BOOST_AUTO_TEST_CASE(size_constructor_zero_fills, *boost::unit_test::timeout(60)) {
  mp::SharedArray<double> a(1000);
  BOOST_TEST(a.size() == 1000u);
  const auto v = a.to_vector();
  BOOST_TEST(std::all_of(v.begin(), v.end(), [](double x) { return x == 0.0; }));
  mp::SharedArray<int> empty(0);
  BOOST_TEST(empty.size() == 0u);
  BOOST_TEST(empty.to_vector().empty());
}

BOOST_AUTO_TEST_CASE(list_vector_and_range_constructors, *boost::unit_test::timeout(60)) {
  mp::SharedArray<int> a{1, 2, 3};
  BOOST_TEST((a.to_vector() == std::vector<int>{1, 2, 3}));
  mp::SharedArray<int> braces{5};  // braces pick the list: one element
  BOOST_TEST(braces.size() == 1u);
  mp::SharedArray<int> parens(5);  // parentheses pick the size
  BOOST_TEST(parens.size() == 5u);
  const std::vector<long> src{4, 5, 6, 7};
  mp::SharedArray<long> from_vector(src);
  BOOST_TEST((from_vector.to_vector() == src));
  std::list<short> l{9, 8};
  mp::SharedArray<short> from_range(l.begin(), l.end());
  BOOST_TEST((from_range.to_vector() == std::vector<short>{9, 8}));
  mp::SharedArray<bool> flags{true, false, true};
  BOOST_TEST((flags.to_vector() == std::vector<bool>{true, false, true}));
}

BOOST_AUTO_TEST_CASE(element_access_locked_and_unlocked, *boost::unit_test::timeout(60)) {
  mp::SharedArray<int> a(4);
  a[0] = 10;           // unlocked, like a plain array
  a.store(1, 11);      // locked
  a.at(2) = 12;        // bounds-checked
  BOOST_TEST(a.load(0) == 10);
  BOOST_TEST(a.load(1) == 11);
  BOOST_TEST(a.data()[2] == 12);
  {
    auto g = a.lock();
    BOOST_TEST(g.size() == 4u);
    g[3] = 13;
    for (int& x : g) x += 1;
    BOOST_TEST(!a.mutex().try_lock());
  }
  BOOST_TEST((a.to_vector() == std::vector<int>{11, 12, 13, 14}));
}

BOOST_AUTO_TEST_CASE(out_of_range_index_is_an_error_naming_the_array, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("bounded");
  mp::SharedArray<int> a(mp::create_only, name, 3);
  try {
    a.at(3);
    BOOST_FAIL("no error");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::invalid_argument));
    const std::string what = e.what();
    BOOST_TEST(what.find("SharedArray<int> '" + name + "'") != std::string::npos, what);
    BOOST_TEST(what.find("index 3") != std::string::npos, what);
    BOOST_TEST(what.find("size 3") != std::string::npos, what);
  }
  BOOST_CHECK_THROW(a.load(10), mp::Error);
  BOOST_CHECK_THROW(a.store(3, 1), mp::Error);
  BOOST_TEST(a.mutex().try_lock());  // a throwing load/store released the lock
  a.mutex().unlock();
}

BOOST_AUTO_TEST_CASE(children_fill_disjoint_slices, *boost::unit_test::timeout(60)) {
  constexpr std::size_t kN = 100000;
  constexpr int kChildren = 4;
  mp::SharedArray<long> a(kN);
  std::vector<mp::Process> children;
  for (int c = 0; c < kChildren; ++c) {
    children.emplace_back([a](int part) {
      for (std::size_t i = part; i < kN; i += kChildren) a[i] = static_cast<long>(i) * 3;
    }, c);
    children.back().start();
  }
  for (auto& c : children) {
    BOOST_REQUIRE(c.join_for(30s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  const auto v = a.to_vector();
  long sum = std::accumulate(v.begin(), v.end(), 0L);
  BOOST_TEST(sum == 3L * static_cast<long>(kN) * (kN - 1) / 2);
}

BOOST_AUTO_TEST_CASE(children_incrementing_under_the_lock_give_exact_counts, *boost::unit_test::timeout(120)) {
  mp::SharedArray<int> counts(16);
  constexpr int kChildren = 4, kRounds = 5000;
  std::vector<mp::Process> children;
  for (int c = 0; c < kChildren; ++c) {
    children.emplace_back([counts] {
      for (int r = 0; r < kRounds; ++r) {
        auto g = counts.lock();
        for (int& x : g) ++x;
      }
    });
    children.back().start();
  }
  for (auto& c : children) {
    BOOST_REQUIRE(c.join_for(60s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  for (int x : counts.to_vector()) BOOST_TEST(x == kChildren * kRounds);
}

MPTEST_SCENARIO(square_named_array) {
  mp::SharedArray<double> a(mp::open_only, args.at(0));
  auto g = a.lock();
  for (double& x : g) x = x * x;
  return static_cast<int>(g.size());
}

BOOST_AUTO_TEST_CASE(named_array_size_comes_from_the_segment, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("squares");
  mp::SharedArray<double> a(mp::create_only, name, {1, 2, 3, 4, 5});
  Spawned child("square_named_array", {name});
  BOOST_TEST(child.wait() == 5);  // the child saw five elements without being told
  BOOST_TEST((a.to_vector() == std::vector<double>{1, 4, 9, 16, 25}));
  mp::SharedArray<double> reopened(mp::open_only, name);
  BOOST_TEST(reopened.size() == 5u);
  BOOST_CHECK_THROW(mp::SharedArray<float>(mp::open_only, name), mp::Error);
}

BOOST_AUTO_TEST_CASE(holder_killed_mid_update_is_reported, *boost::unit_test::timeout(60)) {
  mp::SharedArray<int> a(8);
  Gate halfway, never;
  mp::Process victim([&] {
    auto g = a.lock();
    for (int i = 0; i < 4; ++i) g[i] = 1;
    halfway.signal();
    never.wait(60s);
  });
  victim.start();
  BOOST_REQUIRE(halfway.wait());
  victim.kill();
  victim.join();
  auto g = a.lock();
  BOOST_TEST(g.previous_owner_died());
  BOOST_TEST(std::accumulate(g.begin(), g.end(), 0) == 4);
}

BOOST_AUTO_TEST_CASE(raw_array_has_no_lock_and_is_shared, *boost::unit_test::timeout(60)) {
  mp::RawArray<unsigned char> bytes(256);
  CHECK_CHILD([bytes] {
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i);
    return 0;
  });
  int sum = 0;
  for (unsigned char b : bytes) sum += b;
  BOOST_TEST(sum == 255 * 256 / 2);
  const std::string name = unique_name("raw");
  mp::RawArray<int> named(mp::create_only, name, {3, 1, 2});
  mp::RawArray<int> opened(mp::open_only, name);
  BOOST_TEST((opened.to_vector() == std::vector<int>{3, 1, 2}));
  BOOST_CHECK_THROW(mp::SharedArray<int>(mp::open_only, name), mp::Error);  // a RawArray
  BOOST_CHECK_THROW(opened.at(3), mp::Error);
}

MPTEST_SCENARIO(bump_array_under_named_rlock) {
  mp::SharedArray<int> a(mp::open_only, args.at(0));  // opens the RecursiveMutex it records
  mp::RecursiveMutex r = a.recursive_mutex();
  if (r.segment().name() != args.at(1)) return 3;
  for (int k = 0; k < 2000; ++k) {
    std::lock_guard outer(r);
    auto g = a.lock();  // nested in the same recursive lock
    if (r.depth() != 2u) return 4;
    for (int& x : g) ++x;
  }
  return 0;
}

BOOST_AUTO_TEST_CASE(named_array_guarded_by_a_named_recursive_mutex, *boost::unit_test::timeout(120)) {
  const std::string rname = unique_name("rlock"), aname = unique_name("arr");
  mp::RecursiveMutex r(mp::create_only, rname);
  mp::SharedArray<int> a(mp::create_only, aname, {0, 0, 0}, r);
  mp::SharedValue<int> idle(0, r);
  // A process killed while idle (holding handles, not the lock) concerns nobody.
  BOOST_TEST(run_child([a, idle] {
               ::kill(::getpid(), SIGKILL);
               return a.size() + idle.load() == 0 ? 1 : 2;
             }) == -SIGKILL);
  Spawned p("bump_array_under_named_rlock", {aname, rname});
  Spawned q("bump_array_under_named_rlock", {aname, rname});
  for (int k = 0; k < 2000; ++k) {
    auto g = a.lock();
    for (int& x : g) ++x;
  }
  BOOST_TEST(p.wait() == 0);
  BOOST_TEST(q.wait() == 0);
  BOOST_TEST((a.to_vector() == std::vector<int>{6000, 6000, 6000}));
  BOOST_TEST(idle.load() == 0);
  BOOST_CHECK_THROW(a.mutex(), mp::Error);  // use recursive_mutex()
  mp::SharedArray<int> again(mp::open_or_create, aname, 3);  // exists: opens the lock it records
  BOOST_TEST(again.recursive_mutex().segment().name() == rname);
  const mp::Mutex plain(mp::create_only, unique_name("plain"));
  BOOST_CHECK_THROW(mp::SharedArray<int>(mp::open_or_create, aname, 3, plain), mp::Error);
}

BOOST_AUTO_TEST_SUITE_END()
