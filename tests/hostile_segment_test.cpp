// Hostile segments (issue 12): a file truncated under the processes that map it, a name owned by
// another user or writable by others, and headers and sync-object geometry scribbled on by a
// same-user writer. Every victim runs in a child process, so that the old behaviour (death by
// SIGBUS, a silent open, a wild read) shows as a failed check rather than a crashed test run.
#include "support/support.hpp"

#include <multiproc/detail/segment_header.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace mptest;

namespace {

std::string path_of(const std::string& name) { return "/dev/shm/mp." + name; }

// Writes through a raw mapping of the segment file's first `bytes`, as a stray process could.
void scribble(const std::string& name, std::size_t bytes, const std::function<void(unsigned char*)>& f) {
  const int fd = ::open(path_of(name).c_str(), O_RDWR | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  BOOST_REQUIRE(p != MAP_FAILED);
  f(static_cast<unsigned char*>(p));
  ::munmap(p, bytes);
}

void patch(const std::string& name, const std::function<void(mp::detail::SegmentHeader&)>& f) {
  scribble(name, mp::detail::kHeaderSize,
           [&](unsigned char* p) { f(*reinterpret_cast<mp::detail::SegmentHeader*>(p)); });
}

// The body of a segment: the bytes from body_offset, through a raw mapping.
void scribble_body(const std::string& name, const std::function<void(unsigned char*)>& f) {
  std::uint64_t offset = 0, size = 0;
  patch(name, [&](mp::detail::SegmentHeader& h) {
    offset = h.body_offset;
    size = h.body_size;
  });
  scribble(name, offset + size, [&](unsigned char* p) { f(p + offset); });
}

// Child-side: f must throw an Error with `code` whose message holds `part`. 0 if so.
template <class F>
int child_expect(F&& f, std::error_code code, const std::string& part) {
  try {
    f();
  } catch (const mp::Error& e) {
    if (e.code() != code) {
      std::fprintf(stderr, "wrong code %s: %s\n", e.code().message().c_str(), e.what());
      return 2;
    }
    if (std::string(e.what()).find(part) == std::string::npos) {
      std::fprintf(stderr, "message without '%s': %s\n", part.c_str(), e.what());
      return 3;
    }
    return 0;
  }
  std::fprintf(stderr, "no error thrown\n");
  return 1;
}

const std::error_code kCorrupt = mp::make_error_code(mp::errc::corrupt);
const std::error_code kDenied(EACCES, std::system_category());

// A file not made by multiproc, mapped and then shrunk: a SIGBUS multiproc must not swallow.
void touch_truncated_foreign_mapping() {
  const int fd = ::memfd_create("foreign", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, 4096) != 0) ::_exit(90);
  auto* p = static_cast<volatile char*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (p == MAP_FAILED || ::ftruncate(fd, 0) != 0) ::_exit(91);
  p[100] = 1;  // SIGBUS
  ::_exit(92);
}

void user_sigbus(int, siginfo_t*, void*) { ::_exit(42); }

}  // namespace

// A fresh process with its own SIGBUS handler installed before multiproc's: truncating one of its
// multiproc segments is survived (and never reaches the user's handler), a SIGBUS elsewhere still
// does.
MPTEST_SCENARIO(hostile_sigbus_chain) {
  (void)args;
  struct sigaction sa {};
  sa.sa_sigaction = &user_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
  const std::string name = unique_name("chain");
  {
    mp::SharedMemory block(mp::create_only, name, 1 << 16);
    std::memset(block.data(), 7, block.size());
    if (::truncate(path_of(name).c_str(), 0) != 0) return 10;
    volatile std::byte* p = block.data();
    if (p[5000] != std::byte{0}) return 11;  // lost: reads as zero here
    p[5000] = std::byte{3};                  // and is writable (privately)
    if (!block.segment().truncated()) return 12;
  }
  if (mp::exists(name)) return 13;  // the creator's last handle still removed the name
  touch_truncated_foreign_mapping();  // -> user_sigbus -> _exit(42)
  return 14;
}

// Opens the SharedArray<int> args[0] and exits with its element 3 (100 when the open fails).
MPTEST_SCENARIO(hostile_open_array) {
  try {
    return mp::SharedArray<int>(mp::open_only, args.at(0)).load(3);
  } catch (const mp::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 100;
  }
}

BOOST_FIXTURE_TEST_SUITE(hostile_segment, Clean)

// Finding 2: the creator and a process that opened the object survive a truncation by a third
// process, see the lost bytes as zeros, get Error(corrupt) "truncated by another process" on
// every later open, and the creator's last handle still removes the name.
BOOST_AUTO_TEST_CASE(truncated_segment_kills_nobody, *boost::unit_test::timeout(60)) {
  for (const off_t keep : {off_t{0}, off_t{4096}}) {  // everything lost; the body lost
    BOOST_TEST_CONTEXT("truncated to " << keep << " bytes") {
      const std::string name = unique_name("shrunk");
      const std::string lname = unique_name("shrunkvalue");
      Gate made, opened, cut_creator, cut_victim;
      mp::Process creator([&] {
        mp::SharedMemory block(mp::create_only, name, 1 << 20);
        mp::SharedValue<long> value(mp::create_only, lname, 41);
        std::memset(block.data(), 7, block.size());
        made.signal();
        if (!cut_creator.wait(30s)) return 20;
        volatile std::byte* p = block.data();
        CHILD_REQUIRE(p[(1 << 20) - 1] == std::byte{0});  // the lost page reads as zero
        p[(1 << 20) - 1] = std::byte{1};
        CHILD_REQUIRE(block.segment().truncated());
        CHILD_REQUIRE(child_expect([&] { mp::SharedMemory(mp::open_only, name); }, kCorrupt,
                                   "truncated by another process") == 0);
        CHILD_REQUIRE(child_expect([&] { block.segment().check_intact(); }, kCorrupt,
                                   "truncated by another process") == 0);
        // A locked value whose lock word and value are gone: no crash, no hang.
        (void)value.load();
        value.store(5);
        CHILD_REQUIRE(value.load() == 5);
        return 0;  // the destructors run here, on the shrunk segments
      });
      mp::Process victim([&] {
        if (!made.wait(30s)) return 20;
        mp::SharedMemory block(mp::open_only, name);
        mp::SharedValue<long> value(mp::open_only, lname);
        CHILD_REQUIRE(block.data()[12345] == std::byte{7});
        CHILD_REQUIRE(value.load() == 41);
        opened.signal();
        if (!cut_victim.wait(30s)) return 21;
        CHILD_REQUIRE(block.data()[12345] == std::byte{0});
        CHILD_REQUIRE(block.segment().truncated());
        CHILD_REQUIRE(child_expect([&] { mp::SharedMemory(mp::open_only, name); }, kCorrupt,
                                   "truncated by another process") == 0);
        (void)value.load();
        return 0;
      });
      creator.start();
      victim.start();
      BOOST_REQUIRE(opened.wait(30s));
      // The attacker: this process, which maps neither.
      BOOST_REQUIRE(::truncate(path_of(name).c_str(), keep) == 0);
      BOOST_REQUIRE(::truncate(path_of(lname).c_str(), keep) == 0);
      // A fresh open refuses a file shorter than its header says.
      if (keep > 0) {
        expect_error([&] { mp::SharedMemory(mp::open_only, name); }, mp::errc::corrupt,
                     {name, "truncated"});
      }
      cut_victim.signal();
      BOOST_REQUIRE(victim.join_for(30s));
      BOOST_TEST(victim.exitcode().value_or(-1) == 0);  // old code: -SIGBUS
      cut_creator.signal();
      BOOST_REQUIRE(creator.join_for(30s));
      BOOST_TEST(creator.exitcode().value_or(-1) == 0);  // old code: -SIGBUS
      BOOST_TEST(!mp::exists(name));  // the creator's last handle removed it
      BOOST_TEST(!mp::exists(lname));
      if (mp::exists(name)) mp::remove(name);
      if (mp::exists(lname)) mp::remove(lname);
    }
  }
}

BOOST_AUTO_TEST_CASE(sigbus_elsewhere_still_reaches_the_previous_handler,
                     *boost::unit_test::timeout(60)) {
  // Installed before multiproc's: chained to for faults outside multiproc segments.
  BOOST_TEST(Spawned("hostile_sigbus_chain", {}).wait() == 42);
  // No previous handler: such a fault still ends the process with SIGBUS.
  BOOST_TEST(run_child([] {
               mp::SharedMemory block(1 << 12);  // installs multiproc's handler
               block.data()[0] = std::byte{1};
               touch_truncated_foreign_mapping();
               return 0;
             }) == -SIGBUS);
  // A SIGBUS sent with kill() is not a fault in a segment: default action.
  BOOST_TEST(run_child([] {
               mp::SharedMemory block(1 << 12);
               ::raise(SIGBUS);
               return 0;
             }) == -SIGBUS);
}

// Finding 3: an existing file that another user owns, mode 0666, is refused by open_only and
// open_or_create with an error naming the owner and the mode; allow_foreign(name) opens it.
BOOST_AUTO_TEST_CASE(foreign_owner_is_refused_unless_allowed, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("foreign");
  mp::SharedValue<int> made(mp::create_only, name, 7);
  const uid_t nobody = 65534;
  if (::chown(path_of(name).c_str(), nobody, nobody) != 0) {
    BOOST_TEST_MESSAGE("cannot chown /dev/shm files here (not root: " << std::strerror(errno)
                       << "): only the mode check is tested");
  }
  BOOST_REQUIRE(::chmod(path_of(name).c_str(), 0666) == 0);
  struct stat st {};
  BOOST_REQUIRE(::stat(path_of(name).c_str(), &st) == 0);
  std::string owner = "uid " + std::to_string(st.st_uid);
  if (const passwd* pw = ::getpwuid(st.st_uid)) owner += std::string(" (") + pw->pw_name + ")";
  // In a child: a fresh registry takes the full open path (the result is the same here).
  CHECK_CHILD([&] {
    CHILD_REQUIRE(child_expect([&] { mp::SharedValue<int>(mp::open_only, name); }, kDenied,
                               owner + ", mode 0666") == 0);
    CHILD_REQUIRE(child_expect([&] { mp::SharedValue<int>(mp::open_or_create, name, 1); },
                               kDenied, "allow_foreign") == 0);
    CHILD_REQUIRE(child_expect([&] { mp::Mutex(mp::open_only, name); }, kDenied, name) == 0);
    mp::SharedValue<int> v(mp::open_only, mp::allow_foreign(name));
    CHILD_REQUIRE(v.load() == 7);
    mp::SharedValue<int> w(mp::open_or_create, mp::allow_foreign(mp::persistent(name)), 1);
    CHILD_REQUIRE(w.load() == 7);
    return 0;
  });
  // This process maps it already (it made it): reopening here checks the file all the same.
  BOOST_TEST(child_expect([&] { mp::SharedValue<int>(mp::open_only, name); }, kDenied,
                          "allow_foreign") == 0);
}

// Objects multiproc makes are the creator's and 0600, and open as before; a same-user file that
// others may write is refused too.
BOOST_AUTO_TEST_CASE(writable_by_others_is_refused, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("groupw");
  mp::Event made(mp::create_only, name);
  struct stat st {};
  BOOST_REQUIRE(::stat(path_of(name).c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0600u);
  BOOST_TEST(st.st_uid == ::geteuid());
  CHECK_CHILD([&] {
    mp::Event e(mp::open_only, name);
    return 0;
  });
  BOOST_REQUIRE(::chmod(path_of(name).c_str(), 0620) == 0);
  CHECK_CHILD([&] {
    CHILD_REQUIRE(child_expect([&] { mp::Event(mp::open_only, name); }, kDenied,
                               "mode 0620; group or others may write it") == 0);
    mp::Event e(mp::open_only, mp::allow_foreign(name));
    return 0;
  });
  BOOST_REQUIRE(::chmod(path_of(name).c_str(), 0644) == 0);  // readable by others: allowed
  CHECK_CHILD([&] {
    mp::Event e(mp::open_only, name);
    return 0;
  });
}

// Deliverable 1: the header is validated once and kept as a private copy. A scribble on the
// mapped header after open changes nothing in the processes that have it open; reopening there
// is Error(corrupt); bytes 148..255 are covered by the checksum.
BOOST_AUTO_TEST_CASE(header_scribbled_after_open_is_not_believed, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("scribbled");
  mp::SharedArray<int> a(mp::create_only, name, 10);
  for (int i = 0; i < 10; ++i) a.store(static_cast<std::size_t>(i), i);
  const std::uint64_t count = a.segment().count();
  const std::size_t body = a.segment().body_size();
  // A consistent but lying header: a count and body size the mapping does not have.
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.count = std::uint64_t{1} << 40;
    h.body_size = std::uint64_t{1} << 42;
    h.checksum = mp::detail::header_checksum(h);
  });
  BOOST_TEST(a.segment().count() == count);      // old code: 2^40 (read from the mapping)
  BOOST_TEST(a.segment().body_size() == body);
  BOOST_TEST(a.size() == 10u);
  BOOST_TEST(a.load(9) == 9);
  expect_error([&] { mp::SharedArray<int>(mp::open_only, name); }, mp::errc::corrupt,
               {name, "truncated or damaged"});
  // A consistent change: an open here judges it as an unrelated process does, through a mapping
  // of its own; the handle already open keeps its copy.
  patch(name, [count, body](mp::detail::SegmentHeader& h) {
    h.count = count - 1;
    h.body_size = body;
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::SharedArray<int>(mp::open_only, name); }, mp::errc::corrupt,
               {name, "count " + std::to_string(count - 1)});
  BOOST_TEST(Spawned("hostile_open_array", {name}).wait() == 100);
  BOOST_TEST(a.size() == 10u);
  patch(name, [count, body](mp::detail::SegmentHeader& h) {
    h.count = count;
    h.body_size = body;
    h.creator_pid = 1;
    h.checksum = mp::detail::header_checksum(h);
  });
  {
    mp::SharedArray<int> again(mp::open_only, name);
    BOOST_TEST(again.load(3) == 3);
    again.store(3, 33);
    BOOST_TEST(a.load(3) == 33);  // the same object, through another mapping
    BOOST_TEST(again.segment().header().creator_pid == 1);
    BOOST_TEST(a.segment().header().creator_pid != 1);
  }
  BOOST_TEST(mp::exists(name));  // that open did not take over the name
  BOOST_TEST(Spawned("hostile_open_array", {name}).wait() == 33);
  // Every reserved byte is under the checksum now.
  for (std::size_t off : {std::size_t{148}, std::size_t{200}, std::size_t{255}}) {
    BOOST_TEST_CONTEXT("byte " << off) {
      scribble(name, mp::detail::kHeaderSize, [off](unsigned char* p) { p[off] ^= 0x5a; });
      CHECK_CHILD([&] {
        return child_expect([&] { mp::SharedArray<int>(mp::open_only, name); }, kCorrupt,
                            "checksum");
      });
      scribble(name, mp::detail::kHeaderSize, [off](unsigned char* p) { p[off] ^= 0x5a; });
    }
  }
}

// An outside probe: a bool whose byte another process set to 5 was handed out as a bool (undefined
// behaviour: UBSan flagged the load; at -O2 b and !b were both true). It reads as true now, as
// Python's c_bool does, and update() and a guard see 0 or 1.
BOOST_AUTO_TEST_CASE(a_bool_byte_other_than_0_or_1_reads_as_true, *boost::unit_test::timeout(60)) {
  const auto scribble_byte = [](void* p, unsigned char b) { std::memcpy(p, &b, 1); };
  mp::SharedValue<bool> v(false);
  scribble_byte(v.lock().operator->(), 5);
  BOOST_TEST(v.load());
  BOOST_TEST(v.exchange(false));
  scribble_byte(v.lock().operator->(), 0xff);
  v.update([](bool& b) { b = !b; });  // settled to true first: now false
  BOOST_TEST(!v.load());
  mp::RawValue<bool> raw(false);
  scribble_byte(&raw.get(), 7);
  BOOST_TEST(raw.load());
  mp::SharedArray<bool> a(3);
  scribble_byte(a.data() + 1, 9);
  BOOST_TEST(a.load(1));
  BOOST_TEST((a.to_vector() == std::vector<bool>{false, true, false}));
  const std::string name = unique_name("bool_byte");
  mp::SharedValue<bool> named(mp::create_only, name, false);
  scribble_byte(named.lock().operator->(), 5);
  BOOST_TEST(mp::make_value(mp::open_only, name).load_as<int>() == 1);
}

// An outside probe: a header (with a right checksum) whose count is absurd was reported as
// invalid_argument ("do not fit in memory", as if the caller had asked for that many), not as the
// damage it is.
BOOST_AUTO_TEST_CASE(an_absurd_count_in_a_header_is_corrupt, *boost::unit_test::timeout(60)) {
  const std::string array = unique_name("absurd_array");
  const std::string list = unique_name("absurd_list");
  const std::string strings = unique_name("absurd_strings");
  mp::SharedArray<int> a(mp::create_only, array, 10);
  mp::ShareableList<long> l(mp::create_only, list, 3);
  mp::ShareableList<std::string> s(mp::create_only, strings, 3, 5);
  for (const std::string& name : {array, list, strings}) {
    patch(name, [](mp::detail::SegmentHeader& h) {
      h.count = std::numeric_limits<std::uint64_t>::max();
      h.checksum = mp::detail::header_checksum(h);
    });
  }
  expect_error([&] { mp::SharedArray<int>(mp::open_only, array); }, mp::errc::corrupt,
               {array, "more than fit in memory"});
  expect_error([&] { (void)mp::make_array(mp::open_only, array); }, mp::errc::corrupt, {array});
  expect_error([&] { mp::ShareableList<long>(mp::open_only, list); }, mp::errc::corrupt, {list});
  expect_error([&] { mp::ShareableList<std::string>(mp::open_only, strings); }, mp::errc::corrupt,
               {strings, "more than fit in memory"});
}

// An outside probe: the body offset was only checked to be a multiple of 64, so a forged header
// moving the body by 64 bytes handed out a misaligned element of an alignas(256) type (UBSan).
struct alignas(256) Wide {
  long x;
};
BOOST_AUTO_TEST_CASE(a_body_offset_off_its_elements_alignment_is_corrupt,
                     *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("misaligned");
  mp::SharedArray<Wide> a(mp::create_only, name, 2);
  struct stat st {};
  BOOST_REQUIRE(::stat(path_of(name).c_str(), &st) == 0);
  BOOST_REQUIRE(::truncate(path_of(name).c_str(), st.st_size + 64) == 0);  // room for the move
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.body_offset += 64;  // still a multiple of 64, not of 256
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::SharedArray<Wide>(mp::open_only, name); }, mp::errc::corrupt,
               {name, "not aligned to 256"});
}

// Deliverable 1 for the sync objects: a Barrier's parties and timeout are taken from the segment
// once, at open, and checked against the header; a scribble afterwards changes nothing.
BOOST_AUTO_TEST_CASE(barrier_geometry_scribbled, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("barrier");
  mp::Barrier b(mp::create_only, name, 2, {}, mp::Barrier::Timeout(10s));
  scribble_body(name, [](unsigned char* body) {
    auto* parties = reinterpret_cast<std::uint32_t*>(body + 56);
    BOOST_REQUIRE(*parties == 2u);
    *parties = 1000;  // a round of 2 would never trip
    std::int64_t t = -1;
    std::memcpy(body + 72, &t, sizeof t);
  });
  BOOST_TEST(b.parties() == 2u);
  BOOST_TEST((b.timeout() == mp::Barrier::Timeout(10s)));
  mp::Process other([b] { return static_cast<int>(b.wait()); });
  other.start();
  const unsigned mine = b.wait();  // old code: times out after 10 s, BrokenBarrier
  BOOST_REQUIRE(other.join_for(30s));
  BOOST_TEST(mine + static_cast<unsigned>(other.exitcode().value_or(-1)) == 1u);
  // A process opening it now is told.
  CHECK_CHILD([&] {
    return child_expect([&] { mp::Barrier(mp::open_only, name); }, kCorrupt, "parties");
  });
}

BOOST_AUTO_TEST_CASE(a_barrier_lock_held_elsewhere_holds_no_timed_wait_past_its_deadline,
                     *boost::unit_test::timeout(60)) {
  // The barrier's internal lock (body offset 0) made to look held by a live thread — as a process
  // stopped inside reset() holds it, or a writer of a live thread id (README: "A hostile
  // writer"). wait_for(500 ms) waited until the lock was let go (an outside probe: 3 s, until
  // SIGCONT; a dead thread id without the owner-died bit: for ever).
  const std::string name = unique_name("barrier");
  mp::Barrier b(mp::create_only, name, 2);
  mp::Event holder_may_go;
  mp::Process holder([holder_may_go] {  // a live thread id for the word: this child's
    holder_may_go.wait();
    return 0;
  });
  holder.start();
  const auto word_set = [&](std::uint32_t v) {
    scribble_body(name, [&](unsigned char* body) {
      reinterpret_cast<std::atomic<std::uint32_t>*>(body)->store(v);
    });
  };
  // A party that arrives before: registered in the round, it leaves at its deadline.
  mp::Process early([b] {
    try {
      b.wait_for(1500ms);
      return 1;
    } catch (const mp::BrokenBarrier& e) {
      return std::string(e.what()).find("timed out") != std::string::npos ? 0 : 2;
    }
  });
  early.start();
  BOOST_REQUIRE(eventually([&] { return b.n_waiting() == 1u; }));
  word_set(static_cast<std::uint32_t>(holder.pid()));
  const auto start = std::chrono::steady_clock::now();
  try {
    b.wait_for(500ms);  // one that arrives while it is held: it does not arrive
    BOOST_FAIL("the round filled");
  } catch (const mp::BrokenBarrier& e) {
    BOOST_TEST(std::string(e.what()).find("lock") != std::string::npos, e.what());
  }
  BOOST_TEST(seconds_since(start) < 10.0);
  BOOST_REQUIRE(early.join_for(30s));
  BOOST_TEST(early.exitcode().value_or(-1) == 0);
  // The lock let go: the next holder breaks the round they asked to break; reset() mends it.
  word_set(0);
  BOOST_CHECK_THROW(b.wait_for(100ms), mp::BrokenBarrier);
  BOOST_TEST(b.broken());
  b.reset();
  mp::Process other([b] { return static_cast<int>(b.wait_for(30s)); });
  other.start();
  const unsigned mine = b.wait_for(30s);
  BOOST_REQUIRE(other.join_for(30s));
  BOOST_TEST(mine + static_cast<unsigned>(other.exitcode().value_or(-1)) == 1u);
  holder_may_go.set();
  BOOST_REQUIRE(holder.join_for(30s));
}

BOOST_AUTO_TEST_CASE(condition_counts_scribbled_hold_no_timed_wait_past_its_deadline,
                     *boost::unit_test::timeout(60)) {
  // notified_below (at 0) written far ahead: every wait counts as notified at once. A probe's
  // wait_for(100 ms, pred) that never held was still spinning after 5 s.
  const std::string name = unique_name("cv");
  mp::Condition cv(mp::create_only, name);
  mp::Mutex m;
  scribble_body(name, [](unsigned char* body) {
    const std::uint64_t far = std::uint64_t{1} << 62;
    std::memcpy(body, &far, sizeof far);
  });
  std::unique_lock lock(m);
  const auto start = std::chrono::steady_clock::now();
  int calls = 0;
  BOOST_TEST(!cv.wait_for(lock, 100ms, [&] { ++calls; return false; }));
  BOOST_TEST(seconds_since(start) < 10.0);
  BOOST_TEST(calls >= 2);
  BOOST_TEST(lock.owns_lock());
}

BOOST_AUTO_TEST_CASE(semaphore_bound_scribbled, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("bsem");
  mp::BoundedSemaphore s(mp::create_only, name, 3);
  scribble_body(name, [](unsigned char* body) {
    auto* bound = reinterpret_cast<std::uint32_t*>(body + 8);
    BOOST_REQUIRE(*bound == 3u);
    *bound = 0xffffffffu;
  });
  BOOST_TEST(s.bound() == 3u);  // old code: 4294967295, read from the segment
  CHECK_CHILD([&] {
    return child_expect([&] { mp::BoundedSemaphore(mp::open_only, name); }, kCorrupt, "bound");
  });
}

BOOST_AUTO_TEST_SUITE_END()
