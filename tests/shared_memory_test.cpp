// SharedMemory and ShareableList: zero-filled creation, sharing with forked and unrelated
// processes, exact sizes, Python's close/unlink mapped onto multiproc's name lifetime, bad sizes,
// wrong kinds and element types, damaged headers, bounds, count/index.
// (Longer than our ~500-line mark on purpose: SharedMemory and ShareableList share the pattern,
// scribble and unrelated-process scenarios at the top; each case runs alone with --run_test.)
#include "support/support.hpp"

#include <multiproc/detail/segment_header.hpp>
#include <multiproc/shared_memory.hpp>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <optional>
#include <sys/mman.h>
#include <unistd.h>

using namespace mptest;

namespace {

// The test pattern: word i of a block filled with `seed`.
std::uint64_t pattern(std::uint64_t i, std::uint64_t seed) {
  std::uint64_t z = i + seed * 0x9e3779b97f4a7c15ull + 1;  // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void fill(std::byte* p, std::size_t bytes, std::uint64_t seed) {
  auto* w = reinterpret_cast<std::uint64_t*>(p);
  for (std::size_t i = 0; i < bytes / 8; ++i) w[i] = pattern(i, seed);
}

// Words that differ from the pattern (0 when the block holds exactly `seed`'s pattern).
std::size_t mismatches(const std::byte* p, std::size_t bytes, std::uint64_t seed) {
  const auto* w = reinterpret_cast<const std::uint64_t*>(p);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < bytes / 8; ++i) bad += w[i] != pattern(i, seed) ? 1 : 0;
  return bad;
}

bool all_zero(const std::byte* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

bool shm_file_exists(const std::string& name) {
  return ::access(("/dev/shm/mp." + name).c_str(), F_OK) == 0;
}

// Scribbles into the header of /dev/shm/mp.<name> through a raw mapping of the file, as a stray
// process or a disk tool could.
void scribble(const std::string& name, const std::function<void(unsigned char*)>& f) {
  const int fd = ::open(("/dev/shm/mp." + name).c_str(), O_RDWR | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  void* p = ::mmap(nullptr, mp::detail::kHeaderSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  BOOST_REQUIRE(p != MAP_FAILED);
  f(static_cast<unsigned char*>(p));
  ::munmap(p, mp::detail::kHeaderSize);
}

void patch(const std::string& name, const std::function<void(mp::detail::SegmentHeader&)>& f) {
  scribble(name, [&](unsigned char* p) { f(*reinterpret_cast<mp::detail::SegmentHeader*>(p)); });
}

struct Point {
  double x, y;
  bool operator==(const Point& o) const { return x == o.x && y == o.y; }
};
struct Other {
  double a, b;
};

}  // namespace

// An unrelated process: opens the block by name, checks it holds seed A's pattern over exactly
// `size` bytes, then overwrites it with seed B's.
MPTEST_SCENARIO(shm_check_and_refill) {
  mp::SharedMemory block(mp::open_only, args.at(0));
  CHILD_REQUIRE(block.size() == std::stoull(args.at(1)));
  CHILD_REQUIRE(block.name() == args.at(0));
  CHILD_REQUIRE(mismatches(block.data(), block.size(), std::stoull(args.at(2))) == 0);
  fill(block.data(), block.size(), std::stoull(args.at(3)));
  return 0;
}

// An unrelated process: adds i * 10 to element i of a named ShareableList<long>; exits with its size.
MPTEST_SCENARIO(shm_list_add_index) {
  mp::ShareableList<long> list(mp::open_only, args.at(0));
  for (std::size_t i = 0; i < list.size(); ++i) list.set(i, list.get(i) + static_cast<long>(i) * 10);
  return static_cast<int>(list.size());
}

// An unrelated process: opens the block by name; 0 if it opened and holds seed 7's pattern, 2 for
// Error(corrupt), 3 for any other Error.
MPTEST_SCENARIO(shm_open_checked) {
  try {
    mp::SharedMemory block(mp::open_only, args.at(0));
    return mismatches(block.data(), block.size(), 7) == 0 ? 0 : 4;
  } catch (const mp::Error& e) {
    return e.code() == mp::errc::corrupt ? 2 : 3;
  }
}

// An unrelated process: opens a named ShareableList<std::string>, checks element 0 is args[1],
// then sets element 1 to args[2]; exits with the list's width.
MPTEST_SCENARIO(shm_string_list) {
  mp::ShareableList<std::string> list(mp::open_only, args.at(0));
  CHILD_REQUIRE(list.get(0) == args.at(1));
  list.set(1, args.at(2));
  return static_cast<int>(list.width());
}

BOOST_FIXTURE_TEST_SUITE(shared_memory, Clean)

// ---------------------------------------------------------------------------------------------
// SharedMemory

BOOST_AUTO_TEST_CASE(anonymous_block_is_zero_filled_and_shared_with_forked_children, *boost::unit_test::timeout(60)) {
  mp::SharedMemory block(1 << 20);
  BOOST_TEST(block.size() == std::size_t{1} << 20);
  BOOST_TEST(block.name().empty());
  BOOST_TEST(block.describe() == "SharedMemory (anonymous)");
  BOOST_TEST(all_zero(block.data(), block.size()));
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(block.data()) % 64 == 0u);
  CHECK_CHILD([block] {
    fill(block.data(), block.size(), 3);
    return 0;
  });
  BOOST_TEST(mismatches(block.data(), block.size(), 3) == 0u);
  const mp::SharedMemory::Bytes bytes = block.buf();
  BOOST_TEST(bytes.data() == block.data());
  BOOST_TEST(bytes.size() == block.size());
  BOOST_TEST(static_cast<std::size_t>(bytes.end() - bytes.begin()) == block.size());
  BOOST_TEST(!block.unlink());  // no name to remove
}

BOOST_AUTO_TEST_CASE(a_64_mib_block_crosses_unrelated_processes_exactly, *boost::unit_test::timeout(120)) {
  constexpr std::size_t kSize = std::size_t{64} << 20;
  const std::string name = unique_name("big");
  mp::SharedMemory block(mp::create_only, name, kSize);
  BOOST_TEST(block.name() == name);
  BOOST_TEST(block.describe() == "SharedMemory '" + name + "'");
  BOOST_TEST(all_zero(block.data(), kSize));
  fill(block.data(), kSize, 1);
  Spawned child("shm_check_and_refill", {name, std::to_string(kSize), "1", "2"});
  BOOST_TEST(child.wait(60s) == 0);  // it saw every word of pattern 1
  BOOST_TEST(mismatches(block.data(), kSize, 2) == 0u);  // and we see every word of its pattern 2
}

BOOST_AUTO_TEST_CASE(size_is_exactly_the_requested_size_and_open_takes_it_from_the_segment, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("odd");
  mp::SharedMemory block(mp::create_only, name, 4097);  // not a page multiple
  BOOST_TEST(block.size() == 4097u);
  block.data()[4096] = std::byte{0x5a};
  mp::SharedMemory opened(mp::open_only, name);
  BOOST_TEST(opened.size() == 4097u);
  BOOST_TEST(opened.data() == block.data());  // one mapping per process
  CHECK_CHILD([name] {
    mp::SharedMemory seen(mp::open_only, name);
    CHILD_REQUIRE(seen.size() == 4097u);
    CHILD_REQUIRE(seen.data()[4096] == std::byte{0x5a});
    seen.data()[0] = std::byte{0x11};
    return 0;
  });
  BOOST_TEST((block.data()[0] == std::byte{0x11}));
  mp::SharedMemory one(1);
  BOOST_TEST(one.size() == 1u);
}

BOOST_AUTO_TEST_CASE(size_zero_is_invalid_argument, *boost::unit_test::timeout(60)) {
  expect_error([] { mp::SharedMemory(0); }, mp::errc::invalid_argument,
               {"SharedMemory (anonymous)", "'size' must be a positive number different from zero"});
  const std::string name = unique_name("zero");
  expect_error([&] { mp::SharedMemory(mp::create_only, name, 0); }, mp::errc::invalid_argument,
               {"SharedMemory '" + name + "'", "'size'"});
  expect_error([&] { mp::SharedMemory(mp::open_or_create, name, 0); }, mp::errc::invalid_argument,
               {"'size'"});
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(absurd_sizes_are_errors_not_crashes, *boost::unit_test::timeout(60)) {
  constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
  for (std::size_t size : {kMax, kMax - 4095, std::size_t{1} << 60, std::size_t{1} << 46}) {
    expect_error([&] { mp::SharedMemory block(size); }, mp::errc::invalid_argument,
                 {"SharedMemory (anonymous)"});
    const std::string name = unique_name("absurd");
    expect_error([&] { mp::SharedMemory block(mp::create_only, name, size); },
                 mp::errc::invalid_argument, {name});
    BOOST_TEST(!mp::exists(name));  // nothing half-made is left
  }
  // Large, but less than the 64 TiB limit: refused for lack of memory / space, not mapped.
  expect_error([] { mp::SharedMemory block(std::size_t{1} << 45); }, mp::errc::invalid_argument,
               {"memory"});
  const std::string name = unique_name("huge");
  expect_error([&] { mp::SharedMemory block(mp::create_only, name, std::size_t{1} << 45); },
               mp::errc::invalid_argument, {"/dev/shm has only"});
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(a_name_holding_another_kind_is_wrong_kind, *boost::unit_test::timeout(60)) {
  const std::string qname = unique_name("queue");
  mp::Queue<int> q(mp::create_only, qname, 4);
  expect_error([&] { mp::SharedMemory(mp::open_only, qname); }, mp::errc::wrong_kind,
               {qname, "holds a Queue<int>", "not a SharedMemory"});
  expect_error([&] { mp::SharedMemory(mp::open_or_create, qname, 64); }, mp::errc::wrong_kind,
               {"not a SharedMemory"});
  const std::string bname = unique_name("block");
  mp::SharedMemory block(mp::create_only, bname, 64);
  expect_error([&] { mp::Queue<int>(mp::open_only, bname); }, mp::errc::wrong_kind,
               {"holds a SharedMemory", "not a Queue"});
  expect_error([&] { mp::ShareableList<int>(mp::open_only, bname); }, mp::errc::wrong_kind,
               {"holds a SharedMemory", "not a ShareableList"});
  const std::string lname = unique_name("list");
  mp::ShareableList<int> list(mp::create_only, lname, {1, 2});
  expect_error([&] { mp::SharedMemory(mp::open_only, lname); }, mp::errc::wrong_kind,
               {"holds a ShareableList<int>", "not a SharedMemory"});
  BOOST_TEST(mp::kind_name(mp::Kind::shared_memory) == "SharedMemory");
  BOOST_TEST(mp::kind_name(mp::Kind::shareable_list) == "ShareableList");
}

BOOST_AUTO_TEST_CASE(creators_last_handle_removes_the_name_while_openers_keep_the_block, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("owned");
  constexpr std::size_t kSize = 1 << 16;
  std::optional<mp::SharedMemory> creator;
  creator.emplace(mp::create_only, name, kSize);
  BOOST_TEST(shm_file_exists(name));
  Gate writer_open, reader_open;
  mp::Event go, written;
  mp::Process writer([&] {
    mp::SharedMemory block(mp::open_only, name);  // opened by name, not inherited
    writer_open.signal();
    if (!go.wait_for(30s)) return 2;
    fill(block.data(), block.size(), 9);
    written.set();
    return 0;
  });
  mp::Process reader([&] {
    mp::SharedMemory block(mp::open_only, name);
    reader_open.signal();
    if (!written.wait_for(30s)) return 2;
    return mismatches(block.data(), kSize, 9) == 0 && !mp::exists(name) ? 0 : 1;
  });
  writer.start();
  reader.start();
  BOOST_REQUIRE(writer_open.wait());
  BOOST_REQUIRE(reader_open.wait());
  { mp::SharedMemory copy = *creator; }  // a copy going is not the last handle
  BOOST_TEST(shm_file_exists(name));
  creator.reset();  // the creating process's last handle
  BOOST_TEST(!shm_file_exists(name));
  expect_error([&] { mp::SharedMemory(mp::open_only, name); }, mp::errc::not_found, {name});
  go.set();
  BOOST_REQUIRE(writer.join_for(30s));
  BOOST_REQUIRE(reader.join_for(30s));
  BOOST_TEST(*writer.exitcode() == 0);
  BOOST_TEST(*reader.exitcode() == 0);  // the openers still shared one block
}

BOOST_AUTO_TEST_CASE(forked_copies_never_remove_the_name, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("forked");
  mp::SharedMemory block(mp::create_only, name, 128);
  CHECK_CHILD([block, name]() mutable {
    block.close();  // the child's last copy: the child did not create it
    CHILD_REQUIRE(block.closed());
    CHILD_REQUIRE(mp::exists(name));
    return 0;
  });
  BOOST_TEST(mp::exists(name));
}

BOOST_AUTO_TEST_CASE(unlink_early_then_open_only_is_not_found, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("early");
  mp::SharedMemory block(mp::create_only, name, 4096);
  fill(block.data(), 4096, 5);
  BOOST_TEST(block.unlink());
  BOOST_TEST(!shm_file_exists(name));
  expect_error([&] { mp::SharedMemory(mp::open_only, name); }, mp::errc::not_found,
               {"SharedMemory '" + name + "'", "no object of that name"});
  BOOST_TEST(!block.unlink());  // already gone: nothing to remove, no error (mp::remove alike)
  BOOST_TEST(mismatches(block.data(), 4096, 5) == 0u);  // the block itself stays
  CHECK_CHILD([block] { return mismatches(block.data(), 4096, 5) == 0 ? 0 : 1; });

  // A successor under the same name is another object: the old handle never removes it.
  mp::SharedMemory successor(mp::create_only, name, 64);
  BOOST_TEST(all_zero(successor.data(), 64));
  BOOST_TEST(!block.unlink());
  BOOST_TEST(mp::exists(name));
  block.close();  // the old creator's last handle: its name is long gone, the successor's stays
  BOOST_TEST(mp::exists(name));
  BOOST_TEST(mp::SharedMemory(mp::open_only, name).size() == 64u);
}

BOOST_AUTO_TEST_CASE(a_non_creator_may_unlink_and_the_creator_keeps_the_block, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("theirs");
  mp::SharedMemory block(mp::create_only, name, 4096);
  CHECK_CHILD([name] {
    mp::SharedMemory opened(mp::open_only, name);
    fill(opened.data(), 4096, 6);
    opened.close();              // Python's idiom: close(), then unlink()
    CHILD_REQUIRE(opened.unlink());
    CHILD_REQUIRE(!mp::exists(name));
    return 0;
  });
  BOOST_TEST(!mp::exists(name));
  BOOST_TEST(mismatches(block.data(), 4096, 6) == 0u);
}

BOOST_AUTO_TEST_CASE(close_releases_this_handle_only, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("closed");
  mp::SharedMemory block(mp::create_only, name, 100);
  mp::SharedMemory copy = block;
  block.data()[99] = std::byte{7};
  block.close();
  BOOST_TEST(block.closed());
  BOOST_TEST(block.size() == 100u);      // still answers, as Python's .size
  BOOST_TEST(block.name() == name);
  expect_error([&] { (void)block.data(); }, mp::errc::bad_state,
               {"SharedMemory '" + name + "'", "closed"});
  expect_error([&] { (void)block.buf(); }, mp::errc::bad_state, {"buf()"});
  block.close();  // idempotent
  BOOST_TEST(mp::exists(name));  // the copy is still a handle of the creating process
  BOOST_TEST((copy.data()[99] == std::byte{7}));
  mp::SharedMemory moved = std::move(copy);
  BOOST_TEST(copy.closed());  // NOLINT: a moved-from handle is closed
  BOOST_CHECK_THROW((void)copy.data(), mp::Error);
  moved.close();  // the last handle of the creating process: the name goes
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(persistent_block_outlives_its_creator_until_unlink, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("python");
  {
    mp::SharedMemory block(mp::create_only, mp::persistent(name), 256);
    fill(block.data(), 256, 4);
    block.close();  // Python's default behaviour: close() keeps the block
  }
  BOOST_TEST(mp::exists(name));
  CHECK_CHILD([name] {
    mp::SharedMemory opened(mp::open_only, name);
    CHILD_REQUIRE(mismatches(opened.data(), 256, 4) == 0);
    CHILD_REQUIRE(opened.unlink());
    return 0;
  });
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(open_or_create_creates_once_and_checks_the_size, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("ooc");
  mp::SharedMemory a(mp::open_or_create, name, 512);
  BOOST_TEST(a.segment().owns_name());
  a.data()[0] = std::byte{42};
  CHECK_CHILD([name] {
    mp::SharedMemory b(mp::open_or_create, name, 512);
    CHILD_REQUIRE(!b.segment().owns_name());
    CHILD_REQUIRE(b.data()[0] == std::byte{42});
    return 0;
  });
  expect_error([&] { mp::SharedMemory(mp::open_or_create, name, 1024); }, mp::errc::type_mismatch,
               {name, "512", "1024"});
}

BOOST_AUTO_TEST_CASE(creator_killed_while_writing_leaves_a_usable_block_and_a_reclaimable_name, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("killed");
  constexpr std::size_t kSize = 1 << 20;
  Gate filled;
  mp::Process creator([&] {
    mp::SharedMemory block(mp::create_only, name, kSize);
    fill(block.data(), kSize, 8);
    filled.signal();
    auto* w = reinterpret_cast<volatile std::uint64_t*>(block.data());
    for (std::uint64_t i = 0;; ++i) w[0] = pattern(0, 8) + (i & 1);  // busy when killed
  });
  creator.start();
  BOOST_REQUIRE(filled.wait());
  creator.kill();
  BOOST_REQUIRE(creator.join_for(30s));
  BOOST_TEST(*creator.exitcode() == -SIGKILL);
  {
    mp::SharedMemory left(mp::open_only, name);  // the name stays usable
    BOOST_TEST(left.size() == kSize);
    const auto* w = reinterpret_cast<const std::uint64_t*>(left.data());
    BOOST_TEST((w[0] == pattern(0, 8) || w[0] == pattern(0, 8) + 1));  // its last store, whole
    std::size_t bad = 0;
    for (std::size_t i = 1; i < kSize / 8; ++i) bad += w[i] != pattern(i, 8) ? 1 : 0;
    BOOST_TEST(bad == 0u);  // everything it wrote before survives it
  }
  mp::SharedMemory restarted(mp::create_only, name, 64);  // reclaimed: a fresh, zeroed block
  BOOST_TEST(restarted.size() == 64u);
  BOOST_TEST(all_zero(restarted.data(), 64));
}

BOOST_AUTO_TEST_CASE(damaged_headers_are_corrupt_never_a_crash, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("scribbled");
  mp::SharedMemory block(mp::create_only, name, 1000);
  // A checksummed field changed by a stray write.
  patch(name, [](mp::detail::SegmentHeader& h) { h.body_size = 999; });
  expect_error([&] { mp::SharedMemory(mp::open_only, name); }, mp::errc::corrupt,
               {"SharedMemory '" + name + "'", "checksum"});
  // Consistent headers (checksum recomputed) that disagree with the segment or with themselves.
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.body_size = 1000;
    h.count = 999;
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::SharedMemory(mp::open_only, name); }, mp::errc::corrupt,
               {"count 999"});
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.count = 0;
    h.body_size = 0;
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::SharedMemory(mp::open_only, name); }, mp::errc::corrupt, {"0 bytes"});
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.count = std::uint64_t{1} << 40;
    h.body_size = std::uint64_t{1} << 40;
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::SharedMemory(mp::open_only, name); }, mp::errc::corrupt,
               {"truncated"});
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.count = 1000;
    h.body_size = 1000;
    h.checksum = mp::detail::header_checksum(h);
  });
  BOOST_TEST(mp::SharedMemory(mp::open_only, name).size() == 1000u);  // repaired
}

BOOST_AUTO_TEST_CASE(every_header_byte_flipped_opens_intact_or_is_corrupt, *boost::unit_test::timeout(120)) {
  // The creator is another process, so each open here maps and validates from scratch.
  const std::string name = unique_name("flipped");
  Gate made, done;
  mp::Process creator([&] {
    mp::SharedMemory block(mp::create_only, name, 4096);
    fill(block.data(), 4096, 7);
    made.signal();
    done.wait(60s);
  });
  creator.start();
  BOOST_REQUIRE(made.wait());
  int corrupt = 0, intact = 0;
  for (std::size_t off = 0; off < mp::detail::kHeaderSize; ++off) {
    scribble(name, [off](unsigned char* p) { p[off] ^= 0xff; });
    try {
      mp::SharedMemory opened(mp::open_only, name);
      BOOST_TEST(mismatches(opened.data(), opened.size(), 7) == 0u);
      BOOST_TEST(opened.size() == 4096u);
      BOOST_TEST(off >= mp::detail::kChecksumEnd + 4, "opened with byte " << off << " flipped");
      ++intact;
    } catch (const mp::Error& e) {
      BOOST_TEST((e.code() == mp::errc::corrupt), "byte " << off << ": " << e.what());
      ++corrupt;
    }
    scribble(name, [off](unsigned char* p) { p[off] ^= 0xff; });
  }
  BOOST_TEST(corrupt >= static_cast<int>(mp::detail::kChecksumEnd + 4));  // all of [0, 148)
  BOOST_TEST(corrupt + intact == static_cast<int>(mp::detail::kHeaderSize));
  // And an unrelated process (a fresh registry, the full open path) on a scribbled state word.
  scribble(name, [](unsigned char* p) { p[0] ^= 0x01; });
  BOOST_TEST(Spawned("shm_open_checked", {name}).wait() == 2);
  scribble(name, [](unsigned char* p) { p[0] ^= 0x01; });
  BOOST_TEST(Spawned("shm_open_checked", {name}).wait() == 0);
  done.signal();
  BOOST_REQUIRE(creator.join_for(30s));
  BOOST_TEST(*creator.exitcode() == 0);
  BOOST_TEST(!mp::exists(name));
}

// ---------------------------------------------------------------------------------------------
// ShareableList

BOOST_AUTO_TEST_CASE(list_constructors_and_typed_access, *boost::unit_test::timeout(60)) {
  mp::ShareableList<double> zeros(5);
  BOOST_TEST(zeros.size() == 5u);
  BOOST_TEST((zeros.to_vector() == std::vector<double>(5, 0.0)));
  BOOST_TEST(zeros.name().empty());
  mp::ShareableList<int> braces{5};  // braces pick the list: one element
  BOOST_TEST((braces.to_vector() == std::vector<int>{5}));
  mp::ShareableList<int> parens(5);  // parentheses pick the size
  BOOST_TEST(parens.size() == 5u);
  const std::vector<long> src{4, 5, 6, 7};
  mp::ShareableList<long> from_vector(src);
  BOOST_TEST((from_vector.to_vector() == src));
  mp::ShareableList<bool> flags(std::vector<bool>{true, false, true});
  BOOST_TEST((flags.to_vector() == std::vector<bool>{true, false, true}));
  mp::ShareableList<int> empty(0);
  BOOST_TEST(empty.size() == 0u);
  BOOST_TEST(empty.to_vector().empty());
  BOOST_TEST(!empty.find(0));

  mp::ShareableList<int> xs{1, 2, 3};
  xs.set(0, 10);
  xs[1] = 20;
  xs[2] = xs[1];  // element to element
  const int first = xs[0];
  BOOST_TEST(first == 10);
  BOOST_TEST(xs.get(1) == 20);
  BOOST_TEST((xs.to_vector() == std::vector<int>{10, 20, 20}));
  mp::ShareableList<Point> points{{1, 2}, {3, 4}};
  points[1] = Point{5, 6};
  BOOST_TEST(points.get(1).y == 6.0);
}

BOOST_AUTO_TEST_CASE(list_out_of_range_is_an_error_naming_the_list, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("bounded");
  mp::ShareableList<int> xs(mp::create_only, name, {1, 2, 3});
  BOOST_TEST(xs.name() == name);
  const std::string what = "ShareableList<int> '" + name + "'";
  expect_error([&] { (void)xs.get(3); }, mp::errc::invalid_argument, {what, "index 3", "size 3"});
  expect_error([&] { xs.set(3, 1); }, mp::errc::invalid_argument, {what, "index 3"});
  expect_error([&] { xs[std::numeric_limits<std::size_t>::max()] = 1; },
               mp::errc::invalid_argument, {what});
  expect_error([&] { (void)mp::ShareableList<int>(0).get(0); }, mp::errc::invalid_argument,
               {"ShareableList<int> (anonymous)", "size 0"});
  BOOST_TEST((xs.to_vector() == std::vector<int>{1, 2, 3}));  // nothing written
}

BOOST_AUTO_TEST_CASE(list_count_index_and_find, *boost::unit_test::timeout(60)) {
  mp::ShareableList<int> xs{3, 1, 3, 2, 3};
  BOOST_TEST(xs.count(3) == 3u);
  BOOST_TEST(xs.count(9) == 0u);
  BOOST_TEST(xs.index(2) == 3u);
  BOOST_TEST(xs.index(3) == 0u);
  BOOST_TEST(*xs.find(1) == 1u);
  BOOST_TEST(!xs.find(9));
  expect_error([&] { (void)xs.index(9); }, mp::errc::invalid_argument,
               {"ShareableList<int> (anonymous)", "not in the list"});
  mp::ShareableList<double> nan{std::numeric_limits<double>::quiet_NaN(), 0.0};
  BOOST_TEST(nan.count(std::numeric_limits<double>::quiet_NaN()) == 0u);  // as Python: NaN != NaN
  BOOST_TEST(nan.index(-0.0) == 1u);  // compared by value, not by bytes
  mp::ShareableList<Point> points{{1, 2}, {3, 4}, {1, 2}};
  BOOST_TEST(points.count(Point{1, 2}) == 2u);
}

BOOST_AUTO_TEST_CASE(list_element_type_is_checked_on_open, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("typed");
  mp::ShareableList<int> xs(mp::create_only, name, 4);
  expect_error([&] { mp::ShareableList<double>(mp::open_only, name); }, mp::errc::type_mismatch,
               {"ShareableList<double> '" + name + "'", "int ('i', 4 bytes)", "double ('d', 8 bytes)"});
  expect_error([&] { mp::ShareableList<unsigned>(mp::open_only, name); }, mp::errc::type_mismatch,
               {"'I'"});
  const std::string sname = unique_name("points");
  mp::ShareableList<Point> points(mp::create_only, sname, {{1, 2}});
  expect_error([&] { mp::ShareableList<Other>(mp::open_only, sname); }, mp::errc::type_mismatch,
               {"Point", "Other"});
  expect_error([&] { mp::ShareableList<int>(mp::open_or_create, sname, 1); },
               mp::errc::type_mismatch, {"Point"});
  BOOST_TEST(mp::ShareableList<Point>(mp::open_only, sname).get(0).y == 2.0);
  expect_error([&] { mp::ShareableList<int>(mp::open_or_create, name, 5); },
               mp::errc::type_mismatch, {"count 4", "count 5"});
  BOOST_TEST(mp::ShareableList<int>(mp::open_or_create, name, 4).size() == 4u);
}

BOOST_AUTO_TEST_CASE(list_absurd_sizes_are_errors, *boost::unit_test::timeout(60)) {
  expect_error([] { mp::ShareableList<long>(std::numeric_limits<std::size_t>::max() / 2); },
               mp::errc::invalid_argument, {"ShareableList<long>", "do not fit"});
  const std::string name = unique_name("hugelist");
  expect_error([&] { mp::ShareableList<double>(mp::create_only, name, std::size_t{1} << 60); },
               mp::errc::invalid_argument, {name});
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(list_shared_with_an_unrelated_process_by_name, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("list");
  mp::ShareableList<long> xs(mp::create_only, name, {1, 2, 3, 4, 5, 6, 7});
  Spawned child("shm_list_add_index", {name});
  BOOST_TEST(child.wait() == 7);  // it saw seven elements without being told
  BOOST_TEST((xs.to_vector() == std::vector<long>{1, 12, 23, 34, 45, 56, 67}));
}

BOOST_AUTO_TEST_CASE(list_forked_children_fill_disjoint_slices_exactly, *boost::unit_test::timeout(60)) {
  constexpr std::size_t kN = 100000;
  constexpr int kChildren = 4;
  mp::ShareableList<std::uint64_t> xs(kN);
  std::vector<mp::Process> children;
  for (int c = 0; c < kChildren; ++c) {
    children.emplace_back([xs, c] {
      for (std::size_t i = c; i < kN; i += kChildren) xs[i] = i;
      return 0;
    });
  }
  for (auto& p : children) p.start();
  for (auto& p : children) {
    BOOST_REQUIRE(p.join_for(30s));
    BOOST_TEST(*p.exitcode() == 0);
  }
  std::uint64_t sum = 0;
  for (std::uint64_t v : xs.to_vector()) sum += v;
  BOOST_TEST(sum == kN * (kN - 1) / 2);
  BOOST_TEST(xs.index(kN - 1) == kN - 1);
}

BOOST_AUTO_TEST_CASE(list_word_elements_never_tear_between_processes, *boost::unit_test::timeout(60)) {
  // One process flips an element between two 8-byte values while another reads it: every read is
  // one of the two, never a mix of halves.
  static constexpr std::uint64_t kA = 0x0123456789abcdefull, kB = ~kA;
  mp::ShareableList<std::uint64_t> xs{kA};
  mp::Event stop;
  mp::Process writer([xs, stop] {
    for (std::uint64_t i = 0; !stop.is_set(); ++i) xs.set(0, (i & 1) ? kB : kA);
    return 0;
  });
  writer.start();
  std::size_t torn = 0, seen_b = 0;
  for (int i = 0; i < 200000; ++i) {
    const std::uint64_t v = xs.get(0);
    torn += (v != kA && v != kB) ? 1 : 0;
    seen_b += v == kB ? 1 : 0;
  }
  stop.set();
  BOOST_REQUIRE(writer.join_for(30s));
  BOOST_TEST(*writer.exitcode() == 0);
  BOOST_TEST(torn == 0u);
  BOOST_TEST_MESSAGE(seen_b << " of 200000 reads saw the second value");
}

BOOST_AUTO_TEST_CASE(list_shm_is_the_same_block_and_unlinks_the_list, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("listshm");
  mp::ShareableList<std::int32_t> xs(mp::create_only, name, {1, 2, 3});
  mp::SharedMemory block = xs.shm();
  BOOST_TEST(block.size() == 3 * sizeof(std::int32_t));
  BOOST_TEST(block.name() == name);
  BOOST_TEST(block.describe() == "ShareableList<int> '" + name + "'");
  std::int32_t v = 0;
  std::memcpy(&v, block.data() + 4, sizeof v);
  BOOST_TEST(v == 2);
  block.close();
  BOOST_TEST(xs.get(2) == 3);  // the list's own handle is unaffected
  BOOST_TEST(mp::exists(name));
  CHECK_CHILD([name] {
    mp::ShareableList<std::int32_t> opened(mp::open_only, name);
    CHILD_REQUIRE(opened.shm().unlink());  // Python: sl.shm.unlink()
    opened.set(0, 100);
    return 0;
  });
  BOOST_TEST(!mp::exists(name));
  BOOST_TEST(xs.get(0) == 100);
}

BOOST_AUTO_TEST_CASE(list_damaged_count_is_corrupt, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("listcount");
  mp::ShareableList<int> xs(mp::create_only, name, 10);
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.count = 11;  // 44 bytes claimed, the body holds 40
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::ShareableList<int>(mp::open_only, name); }, mp::errc::corrupt,
               {"count 11"});
}

// ---------------------------------------------------------------------------------------------
// ShareableList<std::string>

BOOST_AUTO_TEST_CASE(string_list_holds_fixed_width_strings, *boost::unit_test::timeout(60)) {
  mp::ShareableList<std::string> words{"howdy", "", "hi"};
  BOOST_TEST(words.size() == 3u);
  BOOST_TEST(words.width() >= 5u);
  BOOST_TEST((4 + words.width()) % 8 == 0u);
  BOOST_TEST((words.to_vector() == std::vector<std::string>{"howdy", "", "hi"}));
  words.set(1, "hello");
  words[2] = "x";
  const std::string got = words[1];
  BOOST_TEST(got == "hello");
  BOOST_TEST(words.count("hello") == 1u);
  BOOST_TEST(words.index("x") == 2u);
  BOOST_TEST(!words.find("nope"));
  expect_error([&] { (void)words.index("nope"); }, mp::errc::invalid_argument,
               {"ShareableList<std::string> (anonymous)", "not in the list"});
  // Too long for the element: an error, the element unchanged.
  const std::string long_value(words.width() + 1, 'z');
  expect_error([&] { words.set(0, long_value); }, mp::errc::invalid_argument,
               {"exceeds the element width"});
  BOOST_TEST(words.get(0) == "howdy");
  words.set(0, std::string(words.width(), 'w'));  // exactly the width fits
  BOOST_TEST(words.get(0) == std::string(words.width(), 'w'));
  expect_error([&] { (void)words.get(3); }, mp::errc::invalid_argument, {"index 3", "size 3"});
  // Embedded NULs are bytes like any other.
  words.set(2, std::string("a\0b", 3));
  BOOST_TEST(words.get(2).size() == 3u);

  mp::ShareableList<std::string> blank(4, 100);  // four empty strings with room for 100 bytes
  BOOST_TEST((blank.to_vector() == std::vector<std::string>(4)));
  BOOST_TEST(blank.width() >= 100u);
  mp::ShareableList<std::string> wide({"a"}, 30);
  BOOST_TEST(wide.width() >= 30u);
  mp::ShareableList<std::string> from_vector(std::vector<std::string>{"abc", "de"});
  BOOST_TEST(from_vector.get(0) == "abc");
  expect_error([] { mp::ShareableList<std::string>(std::size_t{1} << 62, 64); },
               mp::errc::invalid_argument, {"ShareableList<std::string>", "do not fit"});
  expect_error([] { mp::ShareableList<std::string>(1, std::size_t{1} << 40); },
               mp::errc::invalid_argument, {"too large"});
  // The widest widths accepted are usable (an outside probe: 2^30 - 3 .. 2^30 were refused by the
  // list's own check of its slot, as corrupt). Sparse: only the first slot's length is written.
  for (std::size_t width : {(std::size_t{1} << 30) - 3, std::size_t{1} << 30}) {
    mp::ShareableList<std::string> widest(1, width);
    BOOST_TEST(widest.width() >= width);
    widest.set(0, "end");
    BOOST_TEST(widest.get(0) == "end");
  }
  expect_error([] { mp::ShareableList<std::string>(1, (std::size_t{1} << 30) + 1); },
               mp::errc::invalid_argument, {"too large"});
}

BOOST_AUTO_TEST_CASE(string_list_shared_by_name_and_type_checked, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("words");
  mp::ShareableList<std::string> words(mp::create_only, name, {"first", "second"}, 16);
  Spawned child("shm_string_list", {name, "first", "from the child"});
  BOOST_TEST(child.wait() == static_cast<int>(words.width()));
  BOOST_TEST(words.get(1) == "from the child");
  CHECK_CHILD([words] {  // inherited by fork
    CHILD_REQUIRE(words.get(1) == "from the child");
    words.set(0, "forked");
    return 0;
  });
  BOOST_TEST(words.get(0) == "forked");
  expect_error([&] { mp::ShareableList<int>(mp::open_only, name); }, mp::errc::type_mismatch,
               {"std::string", "int ('i', 4 bytes)"});
  const std::string iname = unique_name("ints");
  mp::ShareableList<int> ints(mp::create_only, iname, 3);
  expect_error([&] { mp::ShareableList<std::string>(mp::open_only, iname); },
               mp::errc::type_mismatch, {"int ('i', 4 bytes)", "opened as std::string"});
  expect_error([&] { mp::ShareableList<std::string>(mp::open_only, unique_name("none")); },
               mp::errc::not_found, {"no object of that name"});
  BOOST_TEST(mp::ShareableList<std::string>(mp::open_only, name).shm().unlink());
  BOOST_TEST(!mp::exists(name));
}

BOOST_AUTO_TEST_CASE(string_list_damaged_lengths_stay_inside_the_element, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("damaged");
  mp::ShareableList<std::string> words(mp::create_only, name, {"abc", "def"});
  // A stray write puts an absurd length into element 0: reads stop at the element's width.
  mp::SharedMemory raw = words.shm();
  const std::uint32_t absurd = 0xffffffffu;
  std::memcpy(raw.data(), &absurd, sizeof absurd);
  BOOST_TEST(words.get(0).size() == words.width());
  BOOST_TEST(words.get(1) == "def");
  // A header claiming odd slots is corrupt, not a wild read.
  patch(name, [](mp::detail::SegmentHeader& h) {
    h.elem_size = 3;
    h.body_size = 6;
    h.checksum = mp::detail::header_checksum(h);
  });
  expect_error([&] { mp::ShareableList<std::string>(mp::open_only, name); }, mp::errc::corrupt,
               {"string slots of 3 bytes"});
}

// Kind numbers are written into every segment header and read by other builds (and the inspector):
// removing a kind nobody creates must not renumber the others. Error codes keep their numbers too.
BOOST_AUTO_TEST_CASE(kind_and_error_numbers_stay_fixed, *boost::unit_test::timeout(60)) {
  auto kind_of = [](const mp::Segment& seg) { return seg.header().kind; };
  BOOST_TEST(kind_of(mp::SharedMemory(8).segment()) == 17u);
  BOOST_TEST(kind_of(mp::ShareableList<int>(2).segment()) == 18u);
  const std::string name = unique_name("kinds");
  mp::SharedMemory named(mp::create_only, name, 8);
  BOOST_TEST(kind_of(mp::SharedMemory(mp::open_only, name).segment()) == 17u);
  BOOST_TEST(static_cast<std::uint32_t>(mp::Kind::shared_memory) == 17u);
  BOOST_TEST(static_cast<std::uint32_t>(mp::Kind::shareable_list) == 18u);
  BOOST_TEST(static_cast<int>(mp::errc::broken_pool) == 16);
  BOOST_TEST(static_cast<int>(mp::errc::owner_died) == 18);
  BOOST_TEST(mp::make_error_code(mp::errc::owner_died).message() == "a lock holder died");
  BOOST_TEST(mp::error_category().message(17) == "unknown multiproc error");
}

// Every way of making a list gives the same object: anonymous, create_only, open_or_create
// (creating, then opening), open_only — size, contents and name as asked, across a fork.
BOOST_AUTO_TEST_CASE(every_constructor_makes_the_same_list, *boost::unit_test::timeout(60)) {
  const std::string a = unique_name("ctor.a"), b = unique_name("ctor.b");
  mp::ShareableList<long> anon{5, 6, 7};
  mp::ShareableList<long> created(mp::create_only, a, std::vector<long>{1, 2, 3});
  mp::ShareableList<long> made(mp::open_or_create, b, 4);
  mp::ShareableList<long> opened(mp::open_or_create, b, 4);
  BOOST_TEST(opened.segment().body() == made.segment().body());
  expect_error([&] { mp::ShareableList<long>(mp::open_or_create, b, 5); }, mp::errc::type_mismatch,
               {"ShareableList<long> '" + b + "'"});
  BOOST_TEST(run_child([=] {
               mp::ShareableList<long> again(mp::open_only, a);
               long sum = 0;
               for (long v : again.to_vector()) sum += v;
               for (long v : anon.to_vector()) sum += v;
               made.set(3, 40);
               return static_cast<int>(sum + static_cast<long>(again.size() + made.size()));
             }) == 1 + 2 + 3 + 5 + 6 + 7 + 3 + 4);
  BOOST_TEST(opened.get(3) == 40);
  BOOST_TEST(created.name() == a);
  BOOST_TEST(anon.name().empty());
}

BOOST_AUTO_TEST_SUITE_END()
