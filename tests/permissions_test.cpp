// Permissions: objects shared on purpose with another user — a mode and group at creation
// (with_permissions), a trusted owner on open (trust_owner) — and what stays refused. The
// second-user cases need root (as CI runs them): a forked child drops to an unused uid/gid with
// setgid/setuid; they are skipped, and say so, otherwise.
#include "support/support.hpp"

#include <csignal>
#include <cstdlib>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace mptest;

namespace {

// An unused user and group (no account is needed to run as them).
constexpr uid_t kUid = 54321;
constexpr gid_t kGid = 54322;

boost::test_tools::assertion_result running_as_root(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(::geteuid() == 0);
  r.message() << "needs root to become a second user with setuid (CI runs the tests as root)";
  return r;
}

// In a forked child: become kUid with kGid as its only group. False when that fails.
bool become_second_user() {
  if (::setgroups(0, nullptr) != 0 || ::setgid(kGid) != 0 || ::setuid(kUid) != 0) return false;
  ::prctl(PR_SET_DUMPABLE, 1);  // setuid made it undumpable: keep its /proc files its own
  return ::geteuid() == kUid && ::getegid() == kGid;
}

struct stat stat_of(const std::string& name) {
  struct stat st {};
  BOOST_REQUIRE(::stat(("/dev/shm/mp." + name).c_str(), &st) == 0);
  return st;
}

// Child-side: 0 when f throws an Error with system error `err` and a message holding every part.
template <class F>
int child_expect_system(F&& f, int err, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const mp::Error& e) {
    if (e.code() != std::error_code(err, std::system_category())) {
      std::fprintf(stderr, "unexpected error: %s\n", e.what());
      return 2;
    }
    for (const auto& part : parts) {
      if (std::string(e.what()).find(part) == std::string::npos) {
        std::fprintf(stderr, "'%s' lacks '%s'\n", e.what(), part.c_str());
        return 3;
      }
    }
    return 0;
  }
  return 1;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(permissions, Clean)

BOOST_AUTO_TEST_CASE(created_with_mode_and_group_whatever_the_umask, *boost::unit_test::timeout(60)) {
  const gid_t group = ::geteuid() == 0 ? kGid : ::getegid();  // root may give any group
  const mode_t old_umask = ::umask(077);
  const std::string name = unique_name("shared");
  mp::SharedValue<long> v(mp::create_only, mp::with_permissions(name, {0660, group}), 1);
  const std::string plain = unique_name("plain");
  mp::Event e(mp::create_only, plain);
  ::umask(old_umask);
  const struct stat st = stat_of(name);
  BOOST_TEST((st.st_mode & 07777) == 0660u);
  BOOST_TEST(st.st_gid == group);
  BOOST_TEST(st.st_uid == ::geteuid());
  BOOST_TEST((stat_of(plain).st_mode & 07777) == 0600u);  // the default is unchanged
  // Composes with persistent; open_or_create applies them when it creates.
  const std::string kept = unique_name("kept");
  {
    mp::SharedValue<int> p(mp::open_or_create,
                           mp::with_permissions(mp::persistent(kept), mp::Permissions(0666)), 2);
  }
  BOOST_TEST((stat_of(kept).st_mode & 07777) == 0666u);
  BOOST_TEST(mp::remove(kept));
  // Bad input is an Error naming the problem.
  expect_error([] { mp::Permissions(0640); }, mp::errc::invalid_argument, {"0640", "read-write"});
  expect_errc([] { mp::Permissions(0660, "no-such-group-mptest"); }, mp::errc::not_found);
  expect_error([] { mp::trust_owner("x", "no-such-user-mptest"); }, mp::errc::not_found,
               {"no-such-user-mptest"});
  BOOST_TEST(*mp::trust_owner("x", "root").trusted_owner() == 0u);
  BOOST_TEST(*mp::trust_owner("x", "54321").trusted_owner() == kUid);
  BOOST_TEST(*mp::Permissions(0660, "0").group() == 0u);
}

BOOST_AUTO_TEST_CASE(second_user_opens_with_trust_and_counts_exactly,
                     *boost::unit_test::timeout(120) *
                         boost::unit_test::precondition(running_as_root)) {
  // The master (root here) creates a counter and a lock for group kGid; workers running as
  // another user open them trusting root and count; one is SIGKILLed inside update(), and the
  // robust lock passes on across users all the same.
  const std::string name = unique_name("hits"), lname = unique_name("lock");
  mp::SharedValue<long> hits(mp::create_only, mp::with_permissions(name, {0660, kGid}), 0);
  mp::Mutex lock(mp::create_only, mp::with_permissions(lname, {0660, kGid}));
  constexpr int kWorkers = 2;
  constexpr long kEach = 5000;
  std::vector<mp::Process> workers;
  for (int i = 0; i < kWorkers; ++i) {
    workers.emplace_back([name, lname] {
      if (!become_second_user()) return 10;
      // Without the opt-in: refused, naming the owner and how to opt in.
      CHILD_REQUIRE(child_expect_system([&] { mp::SharedValue<long>(mp::open_only, name); },
                                        EACCES,
                                        {"belongs to uid 0", "runs as uid 54321",
                                         "trust_owner(name, 0)", "allow_foreign"}) == 0);
      // Trusting another user than the owner: refused too.
      CHILD_REQUIRE(child_expect_system(
                        [&] { mp::SharedValue<long>(mp::open_only, mp::trust_owner(name, 4242)); },
                        EACCES, {"trusts uid 4242"}) == 0);
      mp::SharedValue<long> h(mp::open_only, mp::trust_owner(name, "root"));
      mp::Mutex m(mp::open_only, mp::trust_owner(lname, 0));
      for (long k = 0; k < kEach; ++k) {
        h.update([](long& x) { ++x; });
        std::lock_guard<mp::Mutex> g(m);
      }
      return 0;
    });
    workers.back().start();
  }
  for (long k = 0; k < kEach; ++k) hits.update([](long& x) { ++x; });
  for (auto& w : workers) {
    BOOST_REQUIRE(w.join_for(60s));
    BOOST_TEST(*w.exitcode() == 0);
  }
  BOOST_TEST(hits.load() == (kWorkers + 1) * kEach);
  // A worker of the other user killed inside update() and while holding the Mutex.
  Gate inside, never;
  mp::Process victim([&] {
    if (!become_second_user()) return 10;
    mp::SharedValue<long> h(mp::open_only, mp::trust_owner(name, 0));
    mp::Mutex m(mp::open_only, mp::trust_owner(lname, 0));
    m.lock();
    h.update([&](long& x) {
      ++x;
      inside.signal();
      never.wait(60s);
    });
    return 0;
  });
  victim.start();
  BOOST_REQUIRE(inside.wait());
  victim.kill();
  victim.join();
  BOOST_TEST(*victim.exitcode() == -SIGKILL);
  BOOST_TEST(hits.load() == (kWorkers + 1) * kEach + 1);
  BOOST_TEST(hits.recoveries() == 1u);
  BOOST_TEST(lock.try_lock_for(5s));
  BOOST_TEST(lock.previous_owner_died());
  lock.unlock();
}

BOOST_AUTO_TEST_CASE(trust_does_not_open_what_others_may_write_or_read,
                     *boost::unit_test::timeout(60) *
                         boost::unit_test::precondition(running_as_root)) {
  const std::string open_name = unique_name("world"), closed = unique_name("closed");
  mp::SharedValue<int> world(mp::create_only, mp::with_permissions(open_name, mp::Permissions(0666)), 3);
  mp::SharedValue<int> mine(mp::create_only, closed, 4);  // 0600: not for the other user
  CHECK_CHILD([&] {
    if (!become_second_user()) return 10;
    CHILD_REQUIRE(child_expect_system(
                      [&] { mp::SharedValue<int>(mp::open_only, mp::trust_owner(open_name, 0)); },
                      EACCES, {"mode 0666", "others may write it", "allow_foreign"}) == 0);
    mp::SharedValue<int> w(mp::open_only, mp::allow_foreign(open_name));  // the blanket opt-in
    CHILD_REQUIRE(w.load() == 3);
    // The OS refuses a file the mode does not open to this user: a clear Error, not a crash.
    CHILD_REQUIRE(child_expect_system(
                      [&] { mp::SharedValue<int>(mp::open_only, mp::trust_owner(closed, 0)); },
                      EACCES, {closed}) == 0);
    return 0;
  });
}

BOOST_AUTO_TEST_CASE(names_across_users_liveness_and_removal,
                     *boost::unit_test::timeout(60) *
                         boost::unit_test::precondition(running_as_root)) {
  // (1) The other user cannot take over a name whose creator (root, alive) it cannot signal:
  // liveness reads /proc, kill()'s EPERM counts as alive. Nor remove it: /dev/shm is sticky.
  const std::string rname = unique_name("rooted");
  mp::SharedValue<long> rooted(mp::create_only, mp::with_permissions(rname, {0660, kGid}), 1);
  const mp::Segment::FileId rid = rooted.segment().file_id();
  CHECK_CHILD([&] {
    if (!become_second_user()) return 10;
    CHILD_REQUIRE(child_expect_errc([&] { mp::SharedValue<long>(mp::create_only, rname, 0); },
                                    mp::errc::already_exists) == 0);
    CHILD_REQUIRE(child_expect_system([&] { mp::Segment::unlink(rname, rid); }, EACCES,
                                      {"cannot remove"}) == 0);
    CHILD_REQUIRE(mp::exists(rname));
    return 0;
  });
  BOOST_TEST(rooted.load() == 1);
  // (2) An object the other user created, shared with root's group: root opens it trusting
  // that user, and root's identity-checked removal (flock, then unlink) works on a file of
  // another owner; the creator's last handle then finds no name to remove.
  const std::string uname = unique_name("theirs");
  Gate made, removed;
  mp::Process creator([&] {
    if (!become_second_user()) return 10;
    mp::SharedValue<long> v(mp::create_only, mp::with_permissions(uname, mp::Permissions(0660)), 0);
    for (int k = 0; k < 1000; ++k) v.update([](long& x) { ++x; });
    made.signal();
    if (!removed.wait()) return 11;
    CHILD_REQUIRE(!mp::exists(uname));
    CHILD_REQUIRE(v.load() == 2000);  // root's increments, through the unnamed object
    return 0;
  });
  creator.start();
  BOOST_REQUIRE(made.wait());
  const struct stat st = stat_of(uname);
  BOOST_TEST(st.st_uid == kUid);
  BOOST_TEST(st.st_gid == kGid);
  BOOST_TEST(child_expect_system([&] { mp::SharedValue<long>(mp::open_only, uname); }, EACCES,
                                 {"belongs to uid 54321", "trust_owner(name, 54321)"}) == 0);
  {
    mp::SharedValue<long> v(mp::open_only, mp::trust_owner(uname, kUid));
    for (int k = 0; k < 1000; ++k) v.update([](long& x) { ++x; });
    BOOST_TEST(mp::Segment::unlink(uname, v.segment().file_id()));
  }
  BOOST_TEST(!mp::exists(uname));
  removed.signal();
  BOOST_REQUIRE(creator.join_for(30s));
  BOOST_TEST(*creator.exitcode() == 0);
}


BOOST_AUTO_TEST_CASE(a_dead_creators_name_another_user_may_not_remove_says_so,
                     *boost::unit_test::timeout(60) *
                         boost::unit_test::precondition(running_as_root)) {
  // A root process creates a name the second user may open, and dies without removing it. The
  // second user sees a dead creator but cannot unlink root's file in the sticky /dev/shm: its
  // create must say so and name the owner — not retry and report a name "re-created by others".
  const std::string name = unique_name("orphan");
  CHECK_CHILD([&] {
    mp::SharedValue<long> v(mp::create_only, mp::with_permissions(name, {0660, kGid}), 7);
    std::_Exit(0);  // no destructor: the name stays behind with a dead creator
    return 1;
  });
  BOOST_REQUIRE(mp::exists(name));
  CHECK_CHILD([&] {
    if (!become_second_user()) return 10;
    try {
      mp::SharedValue<long>(mp::create_only, name, 0);
    } catch (const mp::Error& e) {
      const std::string what = e.what();
      CHILD_REQUIRE(e.code() == mp::errc::already_exists);
      CHILD_REQUIRE(what.find("died") != std::string::npos);
      CHILD_REQUIRE(what.find("belongs to uid 0") != std::string::npos);
      CHILD_REQUIRE(what.find("re-created") == std::string::npos);
      return 0;
    }
    return 1;
  });
  // Root may: its create reclaims the stale name, and the new object is its own.
  {
    mp::SharedValue<long> mine(mp::create_only, name, 3);
    BOOST_TEST(mine.load() == 3);
  }
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_SUITE_END()
