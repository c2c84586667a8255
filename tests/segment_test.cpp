// Segments: header validation on open, name lifetime, stale-name reclamation, concurrent creation.
#include "support/support.hpp"

#include <multiproc/detail/segment_header.hpp>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <cstring>
#include <optional>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

using namespace mptest;
namespace bip = boost::interprocess;

namespace {

// A raw shared memory object under multiproc's naming, with arbitrary content: a foreign or
// damaged segment. Removed by the test through mp::remove.
void make_raw(const std::string& name, std::size_t size, const std::function<void(char*)>& fill) {
  bip::shared_memory_object shm(bip::create_only, ("mp." + name).c_str(), bip::read_write);
  shm.truncate(static_cast<bip::offset_t>(size));
  if (size > 0) {
    bip::mapped_region region(shm, bip::read_write);
    fill(static_cast<char*>(region.get_address()));
  }
}

// Rewrites bytes of an existing segment's header in place.
void patch(const std::string& name, const std::function<void(mp::detail::SegmentHeader&)>& f) {
  bip::shared_memory_object shm(bip::open_only, ("mp." + name).c_str(), bip::read_write);
  bip::mapped_region region(shm, bip::read_write, 0, sizeof(mp::detail::SegmentHeader));
  f(*static_cast<mp::detail::SegmentHeader*>(region.get_address()));
}

struct Point {
  double x, y;
};
struct Other {
  double a, b;
};

pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(segment, Clean)

BOOST_AUTO_TEST_CASE(errors_are_system_errors_in_the_multiproc_category, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("taken");
  mp::SharedValue<int> v(mp::create_only, name, 1);
  try {
    mp::SharedValue<int> again(mp::create_only, name, 2);
    BOOST_FAIL("created a taken name");
  } catch (const std::system_error& e) {
    BOOST_TEST(std::string(e.code().category().name()) == "multiproc");
    BOOST_TEST((e.code() == std::errc::file_exists));  // portable condition
    BOOST_TEST(message_has(e, "SharedValue<int> '" + name + "'"));
    BOOST_TEST(message_has(e, "taken"));
  }
  BOOST_TEST(v.load() == 1);
}

BOOST_AUTO_TEST_CASE(open_only_on_a_missing_name_says_so, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("missing");
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::not_found,
               {name, "no object of that name"});
  expect_error([&] { mp::Mutex(mp::open_only, name); }, mp::errc::not_found, {"Mutex", name});
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(wrong_kind_is_an_error_naming_both_kinds, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("kind");
  mp::Mutex m(mp::create_only, name);
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::wrong_kind,
               {name, "holds a Mutex", "not a SharedValue"});
  const std::string vname = unique_name("value");
  mp::SharedValue<int> v(mp::create_only, vname);
  expect_error([&] { mp::RawValue<int>(mp::open_only, vname); }, mp::errc::wrong_kind,
               {"SharedValue<int>", "not a RawValue"});
  expect_error([&] { mp::SharedArray<int>(mp::open_only, vname); }, mp::errc::wrong_kind,
               {"not a SharedArray"});
}

BOOST_AUTO_TEST_CASE(wrong_element_type_or_size_is_an_error, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("typed");
  mp::SharedValue<int> v(mp::create_only, name, 3);
  expect_error([&] { mp::SharedValue<double>(mp::open_only, name); }, mp::errc::type_mismatch,
               {name, "int ('i', 4 bytes)", "double ('d', 8 bytes)"});
  expect_error([&] { mp::SharedValue<unsigned>(mp::open_only, name); }, mp::errc::type_mismatch,
               {"'I'"});
  // Structs without a type code are told apart by name and size.
  const std::string sname = unique_name("struct");
  mp::SharedValue<Point> p(mp::create_only, sname, Point{1, 2});
  expect_error([&] { mp::SharedValue<Other>(mp::open_only, sname); }, mp::errc::type_mismatch,
               {"Point", "Other"});
  expect_error([&] { mp::SharedValue<long double>(mp::open_only, sname); },
               mp::errc::type_mismatch, {"16 bytes"});
  BOOST_TEST(mp::SharedValue<Point>(mp::open_only, sname).load().y == 2.0);
}

BOOST_AUTO_TEST_CASE(too_short_segment_is_corrupt, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("short");
  make_raw(name, 100, [](char* p) { std::memset(p, 0x5a, 100); });
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::corrupt,
               {name, "100 bytes, too short"});
  BOOST_TEST(mp::remove(name));
}

BOOST_AUTO_TEST_CASE(foreign_segment_is_corrupt_at_once, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("foreign");
  make_raw(name, 4096, [](char* p) { std::memset(p, 0xab, 4096); });
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::corrupt,
               {name, "not a multiproc segment"});
  BOOST_TEST(seconds_since(start) < 1.0);  // no waiting for an initialisation that never comes
  BOOST_TEST(mp::remove(name));

  // A ready state word but someone else's magic number.
  make_raw(name, 4096, [](char* p) {
    std::memset(p, 0, 4096);
    auto* h = reinterpret_cast<mp::detail::SegmentHeader*>(p);
    h->state.store(mp::detail::kStateReady);
    h->magic = 0x1234;
  });
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::corrupt,
               {"bad magic"});
  BOOST_TEST(mp::remove(name));
}

BOOST_AUTO_TEST_CASE(damaged_header_fails_its_checksum, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("damaged");
  mp::SharedValue<int> v(mp::create_only, name, 9);
  patch(name, [](mp::detail::SegmentHeader& h) { h.count = 1000; });
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::corrupt,
               {name, "damaged", "checksum"});
  // A consistent header (checksum recomputed) that promises more than the segment holds.
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.body_size = 1 << 20;
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::corrupt,
               {"truncated"});
  // A layout from a future version.
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.count = 1;
    h.body_size = sizeof(mp::detail::ValueBody<int>);
    h.layout_version = 99;
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::corrupt,
               {"layout version 99"});
}

BOOST_AUTO_TEST_CASE(count_that_disagrees_with_the_body_is_corrupt, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("count");
  mp::SharedArray<int> a(mp::create_only, name, 10);
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.count = 11;  // 44 bytes of elements claimed, body holds 40
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::SharedArray<int>(mp::open_only, name); }, mp::errc::corrupt,
               {"count 11"});
}

BOOST_AUTO_TEST_CASE(empty_segment_is_corrupt_at_once, *boost::unit_test::timeout(60)) {
  // multiproc links a name only to a complete object, so an empty one is never "in creation".
  const std::string name = unique_name("empty");
  make_raw(name, 0, [](char*) {});
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::corrupt,
               {name, "empty"});
  BOOST_TEST(seconds_since(start) < 1.0);
  expect_error([&] { mp::SharedValue<int>(mp::create_only, name); }, mp::errc::already_exists,
               {name});
  BOOST_TEST(mp::remove(name));
}

BOOST_AUTO_TEST_CASE(creator_that_died_while_initialising_is_detected_and_reclaimed, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("halfmade");
  const pid_t gone = dead_pid();
  make_raw(name, 4096, [gone](char* p) {
    auto* h = reinterpret_cast<mp::detail::SegmentHeader*>(p);
    h->creator_pid = gone;  // state stays "initialising" forever
  });
  expect_error([&] { mp::SharedValue<int>(mp::open_only, name); }, mp::errc::corrupt,
               {"pid " + std::to_string(gone), "died while initialising"});
  mp::SharedValue<int> fresh(mp::create_only, name, 42);  // reclaimed
  BOOST_TEST(mp::SharedValue<int>(mp::open_only, name).load() == 42);
}

BOOST_AUTO_TEST_CASE(creator_killed_at_any_instruction_never_blocks_the_name, *boost::unit_test::timeout(120)) {
  // A process creates and destroys the same name in a loop and is SIGKILLed at a random moment,
  // 100 times: every time, the name must be free or reclaimable by the next create_only.
  std::srand(static_cast<unsigned>(::getpid()));
  int reclaimed = 0;
  for (int round = 0; round < 100; ++round) {
    const std::string name = unique_name("killed");
    mp::RawValue<int> started(0);
    mp::Process creator([name, started] {
      for (;;) {
        try {
          mp::SharedArray<int> a(mp::create_only, name, 64);
          started.store(1);
        } catch (const mp::Error&) {
        }
      }
    });
    creator.start();
    BOOST_REQUIRE(eventually([&] { return started.load() == 1; }));
    // A random moment inside the create/destroy loop (not a synchronisation point).
    std::this_thread::sleep_for(std::chrono::microseconds(std::rand() % 2000));
    creator.kill();
    creator.join();
    if (mp::exists(name)) ++reclaimed;
    mp::SharedArray<int> again(mp::create_only, name, 8);  // never "taken", never corrupt
    BOOST_TEST(again.size() == 8u);
  }
  BOOST_TEST_MESSAGE(reclaimed << " of 100 kills left a name behind; all were reclaimed");
}

BOOST_AUTO_TEST_CASE(invalid_names_are_rejected, *boost::unit_test::timeout(60)) {
  expect_error([] { mp::SharedValue<int>(mp::create_only, ""); }, mp::errc::invalid_argument,
               {"empty"});
  expect_error([] { mp::SharedValue<int>(mp::create_only, "a/b"); }, mp::errc::invalid_argument,
               {"'a/b'", "'/'"});
  expect_error([] { mp::SharedValue<int>(mp::create_only, std::string(201, 'x')); },
               mp::errc::invalid_argument, {"longer than 200"});
  expect_error([] { mp::SharedValue<int>(mp::create_only, std::string("a\0b", 3)); },
               mp::errc::invalid_argument, {"NUL"});
  expect_error([] { mp::Mutex(mp::create_only, ".."); }, mp::errc::invalid_argument, {"reserved"});
}

BOOST_AUTO_TEST_CASE(absurd_sizes_are_errors_not_crashes, *boost::unit_test::timeout(60)) {
  expect_error([] { mp::SharedArray<double>(std::size_t{1} << 60); }, mp::errc::invalid_argument,
               {"SharedArray<double>", "too large"});
  expect_error([] { mp::RawArray<long>(std::numeric_limits<std::size_t>::max() / 2); },
               mp::errc::invalid_argument, {"do not fit"});
  expect_error([] { mp::SharedArray<char>(std::size_t{1} << 45); }, mp::errc::invalid_argument,
               {"memory"});
  const std::string name = unique_name("huge");
  expect_error([&] { mp::SharedArray<char>(mp::create_only, name, std::size_t{1} << 45); },
               mp::errc::invalid_argument, {name, "/dev/shm has only"});
  BOOST_TEST(!mp::exists(name));  // nothing half-made is left
}

BOOST_AUTO_TEST_CASE(name_goes_with_the_creators_last_handle, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("scoped");
  {
    mp::SharedValue<int> v(mp::create_only, name, 5);
    BOOST_TEST(mp::exists(name));
    BOOST_TEST(v.segment().owns_name());
    {
      mp::SharedValue<int> copy = v;
      mp::SharedValue<int> opened(mp::open_only, name);
      BOOST_TEST(opened.segment().owns_name());  // the creating process shares one mapping
      BOOST_TEST(opened.segment().body() == v.segment().body());
    }
    BOOST_TEST(mp::exists(name));  // copies and openers do not remove it
  }
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(handles_opened_by_the_creator_keep_the_name, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("reopened");
  std::optional<mp::SharedValue<int>> created;
  created.emplace(mp::create_only, name, 5);
  mp::SharedValue<int> opened(mp::open_or_create, name, 0);
  created.reset();  // not the creating process's last handle: the opened one shares it
  BOOST_TEST(mp::exists(name));
  CHECK_CHILD([name] { return mp::SharedValue<int>(mp::open_only, name).load() == 5 ? 0 : 1; });
}

BOOST_AUTO_TEST_CASE(forked_child_dropping_its_copy_never_removes_the_name, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("forked");
  std::optional<mp::SharedValue<int>> v;
  v.emplace(mp::create_only, name, 5);
  const pid_t pid = ::fork();
  if (pid == 0) {
    v.reset();  // the child's last handle
    ::_exit(mp::exists(name) ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST(mp::exists(name));
  v.reset();
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(persistent_name_stays_until_removed, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("persistent");
  { mp::SharedValue<int> v(mp::create_only, mp::persistent(name), 11); }
  BOOST_TEST(mp::exists(name));
  BOOST_TEST(mp::SharedValue<int>(mp::open_only, name).load() == 11);
  BOOST_TEST(mp::remove(name));
  BOOST_TEST(!mp::remove(name));
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(opened_object_outlives_its_name, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("unlinked");
  mp::SharedValue<int> opened(mp::create_only, name, 1);
  BOOST_TEST(mp::remove(name));
  BOOST_TEST(!mp::exists(name));
  opened.store(2);
  BOOST_TEST(opened.load() == 2);
  mp::SharedValue<int> successor(mp::create_only, name, 100);  // a new, distinct object
  BOOST_TEST(opened.load() == 2);
  BOOST_TEST(successor.load() == 100);
}

BOOST_AUTO_TEST_CASE(name_of_a_killed_creator_is_reclaimed_on_create, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("stale");
  Gate created, never;
  mp::Process creator([&] {
    mp::SharedValue<int> v(mp::create_only, name, 7);
    created.signal();
    never.wait(60s);  // killed while holding the name
  });
  creator.start();
  BOOST_REQUIRE(created.wait());
  creator.kill();
  creator.join();
  BOOST_TEST(*creator.exitcode() == -SIGKILL);
  BOOST_TEST(mp::exists(name));  // left behind by the dead creator
  BOOST_TEST(mp::SharedValue<int>(mp::open_only, name).load() == 7);  // still readable
  mp::SharedValue<int> restarted(mp::create_only, name, 8);  // a restarted server
  BOOST_TEST(restarted.load() == 8);
  BOOST_TEST(restarted.segment().owns_name());
}

BOOST_AUTO_TEST_CASE(persistent_name_of_a_killed_creator_is_kept, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("kept");
  Gate created, never;
  mp::Process creator([&] {
    mp::SharedValue<int> v(mp::create_only, mp::persistent(name), 7);
    created.signal();
    never.wait(60s);
  });
  creator.start();
  BOOST_REQUIRE(created.wait());
  creator.kill();
  creator.join();
  expect_error([&] { mp::SharedValue<int>(mp::create_only, name, 8); }, mp::errc::already_exists,
               {name});
  BOOST_TEST(mp::SharedValue<int>(mp::open_or_create, name, 9).load() == 7);
  BOOST_TEST(mp::remove(name));
}

BOOST_AUTO_TEST_CASE(open_or_create_races_create_exactly_once, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("race");
  constexpr int kChildren = 8;
  Gate ready, release;
  mp::Event go;  // all children are forked before any of them races to create
  mp::SharedValue<int> created_count(0);
  std::vector<mp::Process> children;
  for (int i = 0; i < kChildren; ++i) {
    children.emplace_back([&] {
      if (!go.wait_for(30s)) return 2;
      mp::SharedValue<int> v(mp::open_or_create, name, 0);
      if (v.segment().owns_name()) created_count.update([](int& n) { ++n; });
      v.update([](int& x) { ++x; });
      ready.signal();
      release.wait();  // keep the creator's handle alive until the parent has looked
      return 0;
    });
  }
  for (auto& c : children) c.start();
  go.set();
  for (int i = 0; i < kChildren; ++i) BOOST_REQUIRE(ready.wait());
  BOOST_TEST(mp::SharedValue<int>(mp::open_only, name).load() == kChildren);
  BOOST_TEST(created_count.load() == 1);
  for (int i = 0; i < kChildren; ++i) release.signal();
  for (auto& c : children) {
    BOOST_REQUIRE(c.join_for(30s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  BOOST_TEST(!mp::exists(name));  // the creating child removed it when it finished
}

BOOST_AUTO_TEST_CASE(open_or_create_checks_the_existing_size, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("sized");
  mp::SharedArray<int> a(mp::create_only, name, 10);
  expect_error([&] { mp::SharedArray<int>(mp::open_or_create, name, 20); },
               mp::errc::type_mismatch, {name, "count 10", "count 20"});
  BOOST_TEST(mp::SharedArray<int>(mp::open_or_create, name, 10).size() == 10u);
}

BOOST_AUTO_TEST_CASE(kind_names_and_element_descriptions, *boost::unit_test::timeout(60)) {
  BOOST_TEST(mp::kind_name(mp::Kind::value) == "SharedValue");
  BOOST_TEST(mp::kind_name(mp::Kind::queue) == "Queue");
  BOOST_TEST(mp::kind_name(static_cast<mp::Kind>(4242)) == "Segment#4242");
  BOOST_TEST(mp::ElementType::of<int>().describe() == "int ('i', 4 bytes)");
  BOOST_TEST(mp::ElementType::of<Point>().describe() == "(anonymous namespace)::Point (16 bytes)");
  BOOST_TEST(mp::SharedValue<short>().segment().describe() == "SharedValue<short> (anonymous)");
}

BOOST_AUTO_TEST_SUITE_END()
