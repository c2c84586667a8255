// RecoveryPolicy of SharedValue and SharedArray: a counter whose holder was SIGKILLed inside
// update() keeps answering load() (recover, the default for a word-sized number) and counts the
// death; strict objects throw until repaired as before; the policy travels with the object to
// every process that opens it, and a scribbled policy is Error(corrupt).
#include "support/support.hpp"

#include <multiproc/detail/locked_object.hpp>
#include <multiproc/detail/segment_header.hpp>

#include <csignal>
#include <cstddef>
#include <fcntl.h>
#include <unistd.h>

using namespace mptest;

namespace {

struct Pair {  // 8 bytes: a struct, so strict by default, but recover may be asked for
  int a, b;
};
struct Point {
  double x, y;
  int tag;
};

// Writes `policy` into the body of the named value or array (in /dev/shm, as a hostile process
// of the same user could). Returns false when the file cannot be patched.
bool scribble_policy(const std::string& name, std::uint32_t policy) {
  const std::string path = "/dev/shm/mp." + name;
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  mp::detail::SegmentHeader h;
  bool ok = ::pread(fd, static_cast<void*>(&h), sizeof h, 0) == static_cast<ssize_t>(sizeof h);
  const off_t at = static_cast<off_t>(h.body_offset + offsetof(mp::detail::LockedHead, policy));
  ok = ok && ::pwrite(fd, &policy, sizeof policy, at) == static_cast<ssize_t>(sizeof policy);
  ::close(fd);
  return ok;
}

// Kills a child inside v.update(), after it added one: the victim's `before` increments and the
// one it died inside of are in the value. Returns the child's exit code (-SIGKILL).
template <class V>
int kill_inside_update(const V& v, long before) {
  Gate inside;
  Gate never;
  mp::Process victim([&] {
    for (long k = 0; k < before; ++k) v.update([](long& x) { ++x; });
    v.update([&](long& x) {
      ++x;
      inside.signal();
      never.wait(60s);
    });
  });
  victim.start();
  if (!inside.wait()) {
    victim.kill();
    victim.join();
    return 0;  // the caller's check of -SIGKILL fails
  }
  victim.kill();
  victim.join();
  return *victim.exitcode();
}

}  // namespace

MPTEST_SCENARIO(load_recovered_counter) {
  // An unrelated process: opens the counter by name and reads it (exit 0 when all holds).
  mp::SharedValue<long> v(mp::open_only, args.at(0));
  if (v.recovery_policy() != mp::RecoveryPolicy::recover) return 3;
  if (v.load() != std::stol(args.at(1))) return 4;
  if (v.recoveries() != std::stoul(args.at(2))) return 5;
  return 0;
}

MPTEST_SCENARIO(load_strict_counter) {
  // exit 0 when load() throws owner_died, the policy read from the object is strict and nothing
  // was recovered silently.
  mp::SharedValue<long> v(mp::open_only, args.at(0));
  if (v.recovery_policy() != mp::RecoveryPolicy::strict || v.recoveries() != 0) return 3;
  try {
    (void)v.load();
  } catch (const mp::Error& e) {
    return e.code() == mp::errc::owner_died ? 0 : 2;
  }
  return 1;
}

BOOST_FIXTURE_TEST_SUITE(recovery_policy, Clean)

BOOST_AUTO_TEST_CASE(defaults_are_chosen_per_type, *boost::unit_test::timeout(60)) {
  static_assert(mp::default_recovery_v<long> == mp::RecoveryPolicy::recover);
  static_assert(mp::default_recovery_v<double> == mp::RecoveryPolicy::recover);
  static_assert(mp::default_recovery_v<bool> == mp::RecoveryPolicy::recover);
  static_assert(mp::default_recovery_v<Pair> == mp::RecoveryPolicy::strict);
  static_assert(mp::default_recovery_v<long double> == mp::RecoveryPolicy::strict);
  BOOST_TEST((mp::SharedValue<long>(0).recovery_policy() == mp::RecoveryPolicy::recover));
  BOOST_TEST((mp::SharedValue<char>('x').recovery_policy() == mp::RecoveryPolicy::recover));
  BOOST_TEST((mp::SharedValue<Point>().recovery_policy() == mp::RecoveryPolicy::strict));
  BOOST_TEST((mp::SharedValue<Pair>().recovery_policy() == mp::RecoveryPolicy::strict));
  BOOST_TEST((mp::SharedArray<long>(3).recovery_policy() == mp::RecoveryPolicy::strict));
  // A caller's lock keeps several objects consistent together: strict, unless asked.
  mp::Mutex m;
  BOOST_TEST((mp::SharedValue<long>(0, m).recovery_policy() == mp::RecoveryPolicy::strict));
  BOOST_TEST((mp::SharedValue<long>(0, m, mp::RecoveryPolicy::recover).recovery_policy() ==
              mp::RecoveryPolicy::recover));
  BOOST_TEST((mp::SharedValue<long>(0, mp::RecoveryPolicy::strict).recovery_policy() ==
              mp::RecoveryPolicy::strict));
  // An 8-byte struct may ask for recover; a wider one may not.
  BOOST_TEST((mp::SharedValue<Pair>(Pair{1, 2}, mp::RecoveryPolicy::recover).recovery_policy() ==
              mp::RecoveryPolicy::recover));
  expect_error([] { mp::SharedValue<Point>(Point{}, mp::RecoveryPolicy::recover); },
               mp::errc::invalid_argument, {"RecoveryPolicy::recover", "1, 2, 4 or 8 bytes"});
  expect_errc([] { mp::SharedArray<Point>(2, mp::RecoveryPolicy::recover); },
              mp::errc::invalid_argument);
  expect_errc([] { mp::SharedValue<long>(0, static_cast<mp::RecoveryPolicy>(9)); },
              mp::errc::invalid_argument);
  // AnyValue by type code: its type's default; AnyArray strict.
  BOOST_TEST((mp::make_value('l', 1).recovery_policy() == mp::RecoveryPolicy::recover));
  BOOST_TEST((mp::make_value('d', 1.5).recovery_policy() == mp::RecoveryPolicy::recover));
  BOOST_TEST((mp::make_array('i', 4).recovery_policy() == mp::RecoveryPolicy::strict));
  BOOST_TEST(mp::make_value('l', 1).recoveries() == 0u);
}

BOOST_AUTO_TEST_CASE(counter_keeps_counting_exactly_across_holders_killed_inside_update, *boost::unit_test::timeout(120)) {
  // Two survivors increment a named counter throughout while three victims are SIGKILLed, one
  // after another, inside update(). Nobody throws; the total is exact; an unrelated process that
  // opens it by name reads it and sees the three recoveries.
  const std::string name = unique_name("hits");
  mp::SharedValue<long> hits(mp::create_only, name, 0);
  BOOST_TEST((hits.recovery_policy() == mp::RecoveryPolicy::recover));
  constexpr int kSurvivors = 2;
  constexpr int kVictims = 3;
  constexpr long kBefore = 500;  // increments of each victim before the one it dies inside of
  mp::Event stop;
  mp::RawArray<long> done(kSurvivors);
  std::vector<mp::Process> survivors;
  for (int i = 0; i < kSurvivors; ++i) {
    survivors.emplace_back([hits, stop, done](int slot) {
      long mine = 0;
      while (!stop.is_set()) {
        hits.update([](long& x) { ++x; });  // never throws: recover
        ++mine;
      }
      done[static_cast<std::size_t>(slot)] = mine;
    }, i);
    survivors.back().start();
  }
  for (int v = 0; v < kVictims; ++v) BOOST_TEST(kill_inside_update(hits, kBefore) == -SIGKILL);
  stop.set();
  long survived = 0;
  for (auto& s : survivors) {
    BOOST_REQUIRE(s.join_for(30s));
    BOOST_TEST(*s.exitcode() == 0);
  }
  for (std::size_t i = 0; i < kSurvivors; ++i) {
    BOOST_TEST(done[i] > 0);
    survived += done[i];
  }
  const long expected = survived + kVictims * (kBefore + 1);
  Spawned reader("load_recovered_counter",
                 {name, std::to_string(expected), std::to_string(kVictims)});
  BOOST_TEST(reader.wait() == 0);
  BOOST_TEST(hits.load() == expected);
  BOOST_TEST(hits.recoveries() == static_cast<unsigned>(kVictims));
  auto g = hits.lock();
  BOOST_TEST(!g.previous_owner_died());
}

BOOST_AUTO_TEST_CASE(first_locker_after_a_death_counts_it_once, *boost::unit_test::timeout(60)) {
  // Whichever operation takes the lock first recovers: a guard, a store, a load. One death, one
  // count, whatever follows.
  mp::SharedValue<long> v(10);
  BOOST_TEST(kill_inside_update(v, 0) == -SIGKILL);
  BOOST_TEST(v.recoveries() == 0u);  // nobody has taken the lock since
  {
    auto g = v.lock();
    BOOST_TEST(!g.previous_owner_died());
    BOOST_TEST(*g == 11);
  }
  BOOST_TEST(v.recoveries() == 1u);
  BOOST_TEST(v.load() == 11);
  BOOST_TEST(v.recoveries() == 1u);
  // A death while idle holding a guard (not inside update), then store(): counted too.
  BOOST_TEST(run_child([v] {
               auto g = v.lock();
               *g = 50;
               ::kill(::getpid(), SIGKILL);
               return 1;
             }) == -SIGKILL);
  v.store(7);
  BOOST_TEST(v.recoveries() == 2u);
  BOOST_TEST(v.exchange(8) == 7);
  BOOST_TEST(v.recoveries() == 2u);
  // A third death, inside update() again: exchange() recovers it and sees the partial increment.
  BOOST_TEST(kill_inside_update(v, 3) == -SIGKILL);
  BOOST_TEST(v.exchange(0) == 12);
  BOOST_TEST(v.recoveries() == 3u);
}

BOOST_AUTO_TEST_CASE(strict_counter_throws_in_every_process_until_repaired, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("strict");
  mp::SharedValue<long> v(mp::create_only, name, 0, mp::RecoveryPolicy::strict);
  BOOST_TEST(kill_inside_update(v, 4) == -SIGKILL);
  Spawned reader("load_strict_counter", {name});
  BOOST_TEST(reader.wait() == 0);
  expect_errc([&] { (void)v.load(); }, mp::errc::owner_died);
  expect_errc([&] { v.update([](long& x) { ++x; }); }, mp::errc::owner_died);
  {
    auto g = v.lock();
    BOOST_TEST(g.previous_owner_died());
    BOOST_TEST(*g == 5);
    g.mark_repaired();
  }
  BOOST_TEST(v.load() == 5);
  BOOST_TEST(v.recoveries() == 0u);
}

BOOST_AUTO_TEST_CASE(struct_value_stays_strict, *boost::unit_test::timeout(60)) {
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
  expect_errc([&] { (void)p.load(); }, mp::errc::owner_died);
  CHECK_CHILD([p] { return child_expect_errc([&] { (void)p.load(); }, mp::errc::owner_died); });
  BOOST_TEST(p.recoveries() == 0u);
  p.store(Point{1, 1, 1});
  BOOST_TEST(p.load().y == 1.0);
}

BOOST_AUTO_TEST_CASE(policy_travels_with_the_object_and_open_or_create_checks_it, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("policy");
  mp::SharedValue<int> made(mp::create_only, name, 1, mp::RecoveryPolicy::strict);
  CHECK_CHILD([name] {
    mp::SharedValue<int> v(mp::open_only, name);
    CHILD_REQUIRE(v.recovery_policy() == mp::RecoveryPolicy::strict);
    mp::SharedValue<int> w(mp::open_or_create, name, 0);  // no policy asked: the stored one
    CHILD_REQUIRE(w.recovery_policy() == mp::RecoveryPolicy::strict);
    return 0;
  });
  expect_error([&] { mp::SharedValue<int>(mp::open_or_create, name, 0, mp::RecoveryPolicy::recover); },
               mp::errc::type_mismatch, {name, "recovery policy strict, not recover"});
  mp::SharedValue<int> same(mp::open_or_create, name, 0, mp::RecoveryPolicy::strict);
  BOOST_TEST(same.load() == 1);
  const std::string aname = unique_name("hist");
  mp::SharedArray<int> hist(mp::create_only, aname, 4, mp::RecoveryPolicy::recover);
  BOOST_TEST((mp::SharedArray<int>(mp::open_only, aname).recovery_policy() ==
              mp::RecoveryPolicy::recover));
  expect_errc([&] { mp::SharedArray<int>(mp::open_or_create, aname, 4, mp::RecoveryPolicy::strict); },
              mp::errc::type_mismatch);
}

BOOST_AUTO_TEST_CASE(scribbled_policy_is_corrupt, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("scribbled");
  mp::SharedValue<long> v(mp::create_only, name, 3);
  BOOST_REQUIRE(scribble_policy(name, 7));
  expect_error([&] { mp::SharedValue<long>(mp::open_only, name); }, mp::errc::corrupt,
               {name, "unknown recovery policy 7"});
  BOOST_TEST(v.load() == 3);  // the handle that validated it keeps its copy
  BOOST_TEST((v.recovery_policy() == mp::RecoveryPolicy::recover));
  // recover, which no creator can choose for a 20-byte struct, is refused too.
  const std::string pname = unique_name("point");
  mp::SharedValue<Point> p(mp::create_only, pname, Point{});
  BOOST_REQUIRE(scribble_policy(pname, static_cast<std::uint32_t>(mp::RecoveryPolicy::recover)));
  expect_error([&] { mp::SharedValue<Point>(mp::open_only, pname); }, mp::errc::corrupt,
               {pname, "recover"});
  CHECK_CHILD([pname] {
    return child_expect_errc([&] { mp::SharedValue<Point>(mp::open_only, pname); },
                             mp::errc::corrupt);
  });
}

BOOST_AUTO_TEST_CASE(array_is_strict_unless_asked, *boost::unit_test::timeout(60)) {
  // A histogram whose buckets stand alone asks for recover; its holder killed inside a guard
  // leaves whole buckets, counted exactly. The same array left strict throws as before.
  for (const bool recover : {true, false}) {
    const std::string name = unique_name(recover ? "hist" : "strict_hist");
    mp::SharedArray<long> hist = recover ? mp::SharedArray<long>(mp::create_only, name, 4,
                                                                 mp::RecoveryPolicy::recover)
                                         : mp::SharedArray<long>(mp::create_only, name, 4);
    Gate inside, never;
    mp::Process victim([&] {
      mp::SharedArray<long> h(mp::open_only, name);
      for (int k = 0; k < 100; ++k) {
        auto g = h.lock();
        g[static_cast<std::size_t>(k % 4)] += 1;
      }
      auto g = h.lock();
      g[0] += 1;
      inside.signal();
      never.wait(60s);
      g[1] += 1;
    });
    victim.start();
    BOOST_REQUIRE(inside.wait());
    victim.kill();
    victim.join();
    if (recover) {
      const int rc = run_child([name] {
        mp::SharedArray<long> h(mp::open_only, name);
        CHILD_REQUIRE(h.to_vector() == (std::vector<long>{26, 25, 25, 25}));
        CHILD_REQUIRE(h.recoveries() == 1u);
        h.store(3, 0);
        return 0;
      });
      BOOST_TEST(rc == 0);
      BOOST_TEST((hist.to_vector() == std::vector<long>{26, 25, 25, 0}));
      BOOST_TEST(hist.recoveries() == 1u);
    } else {
      expect_errc([&] { (void)hist.to_vector(); }, mp::errc::owner_died);
      expect_errc([&] { (void)hist.load(0); }, mp::errc::owner_died);
      BOOST_TEST(hist.lock().previous_owner_died());
      BOOST_TEST(hist.recoveries() == 0u);
    }
  }
}

BOOST_AUTO_TEST_CASE(value_with_a_shared_lock_recovers_only_when_asked, *boost::unit_test::timeout(60)) {
  // Under one shared lock, a counter that asked for recover carries on; its strict sibling
  // (the default with a caller's lock) throws until repaired.
  mp::Mutex m;
  mp::SharedValue<long> counter(0, m, mp::RecoveryPolicy::recover);
  mp::SharedValue<long> sibling(0, m);
  BOOST_TEST(kill_inside_update(sibling, 2) == -SIGKILL);
  BOOST_TEST(counter.load() == 0);
  BOOST_TEST(counter.recoveries() == 1u);
  expect_errc([&] { (void)sibling.load(); }, mp::errc::owner_died);
  sibling.store(0);
  BOOST_TEST(sibling.load() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
