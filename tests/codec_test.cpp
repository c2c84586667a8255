// Codec: built-in encodings, composite fields, a user specialisation, and decode errors.
#include "support/support.hpp"

#include <array>
#include <atomic>
#include <future>
#include <cstring>
#include <map>
#include <numeric>
#include <optional>
#include <variant>

using namespace mptest;

namespace {

struct Job {
  int id = 0;
  std::string url;
  std::vector<double> weights;
  bool operator==(const Job& o) const { return id == o.id && url == o.url && weights == o.weights; }
};

struct Pod {
  int a;
  double b;
};

// Trivially copyable, with a codec of its own (below) that is not its bytes: v travels as v * 10,
// and decode refuses what is not a multiple of 10, and 70 (so 7 never arrives).
struct Tenths {
  int v;
};
Tenths tenths_of(int x) { return Tenths{x}; }

enum class Colour : std::uint8_t { red, green, blue };  // opts in to a range check below
enum class Level : int { low = -1, high = 1 };          // fixed type, no opt-in: any int
enum Unfixed { u0, u1 };                                 // no fixed type, no opt-in: no codec
enum Ranged { r0, r1, r2 };                              // no fixed type, opts in

template <class T>
std::vector<std::byte> encode(const T& v) {
  std::vector<std::byte> buf(mp::Codec<T>::size(v));
  mp::Codec<T>::encode(v, buf.data());
  return buf;
}

//! v's encoding with every byte equal to 1 set to `to`. In the values below the only such byte is
//! the flag (a bool, an optional's engaged flag, a variant's index), wherever the encoding puts it.
template <class T>
std::vector<std::byte> forged(const T& v, unsigned char to) {
  std::vector<std::byte> buf = encode(v);
  int changed = 0;
  for (std::byte& b : buf) {
    if (b == std::byte{1}) {
      b = std::byte{to};
      ++changed;
    }
  }
  BOOST_TEST_REQUIRE(changed >= 1);
  return buf;
}

template <class T>
void expect_corrupt(const std::vector<std::byte>& bytes, std::initializer_list<std::string> parts) {
  expect_error([&] { (void)mp::Codec<T>::decode(bytes.data(), bytes.size()); }, mp::errc::corrupt,
               parts);
}

//! An allocator that counts its allocations: a decode must not allocate for a forged length.
template <class T>
struct CountingAllocator {
  using value_type = T;
  static inline int allocations = 0;
  static inline std::size_t largest = 0;  // bytes of the largest allocation
  CountingAllocator() = default;
  template <class U>
  CountingAllocator(const CountingAllocator<U>&) noexcept {}  // NOLINT: rebinding
  T* allocate(std::size_t n) {
    ++allocations;
    largest = std::max(largest, n * sizeof(T));
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  friend bool operator==(const CountingAllocator&, const CountingAllocator&) { return true; }
  friend bool operator!=(const CountingAllocator&, const CountingAllocator&) { return false; }
};

std::vector<std::byte> with_count(std::uint64_t count, std::size_t body) {
  std::vector<std::byte> buf(sizeof count + body);
  std::memcpy(buf.data(), &count, sizeof count);
  return buf;
}

template <class T>
T round_trip(const T& v) {
  const std::size_t n = mp::Codec<T>::size(v);
  std::vector<std::byte> buf(n);
  mp::Codec<T>::encode(v, buf.data());
  return mp::Codec<T>::decode(buf.data(), n);
}

}  // namespace

template <>
struct multiproc::Codec<Job> {
  static std::size_t size(const Job& j) { return encoded_size(j.id, j.url, j.weights); }
  static void encode(const Job& j, std::byte* out) { encode_fields(out, j.id, j.url, j.weights); }
  static Job decode(const std::byte* in, std::size_t n) {
    Job j;
    decode_fields(in, n, j.id, j.url, j.weights);
    return j;
  }
};

template <>
struct multiproc::Codec<Tenths> {
  static constexpr std::size_t fixed_size = 4;
  static std::size_t size(const Tenths&) { return 4; }
  static void encode(const Tenths& t, std::byte* out) {
    const std::int32_t w = t.v * 10;
    std::memcpy(out, &w, 4);
  }
  static Tenths decode(const std::byte* in, std::size_t n) {
    std::int32_t w = 0;
    if (n != 4) throw Error(errc::corrupt, "Tenths: wrong size");
    std::memcpy(&w, in, 4);
    if (w % 10 != 0 || w == 70) throw Error(errc::corrupt, "Tenths: refused " + std::to_string(w));
    return Tenths{w / 10};
  }
};

template <>
struct multiproc::enum_range<Colour> {
  static constexpr Colour min = Colour::red, max = Colour::blue;
};
template <>
struct multiproc::enum_range<Ranged> {
  static constexpr Ranged min = r0, max = r2;
};

BOOST_FIXTURE_TEST_SUITE(codec, Clean)

BOOST_AUTO_TEST_CASE(trivially_copyable_types_are_their_bytes, *boost::unit_test::timeout(60)) {
  static_assert(mp::codec_fixed_size_v<long> == sizeof(long));
  static_assert(mp::codec_fixed_size_v<Pod> == sizeof(Pod));
  static_assert(mp::codec_fixed_size_v<std::string> == 0);
  BOOST_TEST(round_trip(42L) == 42L);
  const Pod p = round_trip(Pod{7, 2.5});
  BOOST_TEST(p.a == 7);
  BOOST_TEST(p.b == 2.5);
  const std::array<int, 3> arr{1, 2, 3};
  BOOST_TEST((round_trip(arr) == arr));
}

BOOST_AUTO_TEST_CASE(strings_vectors_and_composites, *boost::unit_test::timeout(60)) {
  BOOST_TEST(round_trip(std::string()) == "");
  BOOST_TEST(round_trip(std::string("héllo\0world", 12)) == std::string("héllo\0world", 12));
  BOOST_TEST((round_trip(std::vector<int>{1, 2, 3}) == std::vector<int>{1, 2, 3}));
  BOOST_TEST((round_trip(std::vector<bool>{true, false}) == std::vector<bool>{true, false}));
  const std::vector<std::string> words{"a", "", "longer word"};
  BOOST_TEST((round_trip(words) == words));
  const auto pr = std::make_pair(std::string("k"), 3);
  BOOST_TEST((round_trip(pr) == pr));
  const auto tup = std::make_tuple(1, std::string("two"), std::vector<double>{3.0}, 'c');
  BOOST_TEST((round_trip(tup) == tup));
  BOOST_TEST((round_trip(std::optional<std::string>()) == std::optional<std::string>()));
  BOOST_TEST((round_trip(std::optional<std::string>("x")) == std::optional<std::string>("x")));
  const std::vector<std::vector<std::string>> nested{{"a"}, {}, {"b", "c"}};
  BOOST_TEST((round_trip(nested) == nested));
}

BOOST_AUTO_TEST_CASE(user_specialisation_with_field_helpers, *boost::unit_test::timeout(60)) {
  const Job j{17, "https://example.com/x", {0.5, 1.5}};
  BOOST_TEST((round_trip(j) == j));
  static_assert(mp::has_codec_v<Job>);
  static_assert(!mp::has_codec_v<std::map<int, int>>);
}

BOOST_AUTO_TEST_CASE(bad_bytes_are_errors_not_undefined_behaviour, *boost::unit_test::timeout(60)) {
  const std::byte junk[5] = {};
  BOOST_CHECK_THROW(mp::Codec<long>::decode(junk, 5), mp::Error);
  BOOST_CHECK_THROW(mp::Codec<std::vector<int>>::decode(junk, 5), mp::Error);
  BOOST_CHECK_THROW((mp::Codec<std::pair<std::string, int>>::decode(junk, 5)), mp::Error);
  std::byte huge[16] = {};
  const std::uint64_t absurd = ~std::uint64_t{0};
  std::memcpy(huge, &absurd, sizeof absurd);
  try {
    mp::Codec<std::vector<std::string>>::decode(huge, sizeof huge);
    BOOST_FAIL("decoded an absurd count");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::corrupt));
  }
}

BOOST_AUTO_TEST_CASE(user_types_travel_through_a_queue_between_processes, *boost::unit_test::timeout(60)) {
  mp::Queue<Job> q(16);  // smaller than the stream: producer and consumer run together
  mp::Process producer([q] {
    for (int i = 0; i < 100; ++i) q.put(Job{i, "u" + std::to_string(i), std::vector<double>(i % 5, 1.0)});
  });
  producer.start();
  for (int i = 0; i < 100; ++i) {
    const Job j = q.get();
    BOOST_TEST(j.id == i);
    BOOST_TEST(j.url == "u" + std::to_string(i));
    BOOST_TEST(j.weights.size() == static_cast<std::size_t>(i % 5));
  }
  BOOST_REQUIRE(producer.join_for(30s));
  BOOST_TEST(*producer.exitcode() == 0);
}

BOOST_AUTO_TEST_CASE(a_bool_from_a_byte_other_than_0_or_1_is_corrupt, *boost::unit_test::timeout(60)) {
  BOOST_TEST(round_trip(true) == true);
  BOOST_TEST(round_trip(false) == false);
  expect_corrupt<bool>(forged(true, 5), {"bool", "5"});
  expect_corrupt<bool>(forged(true, 0xff), {"bool", "255"});
  // Inside other encodings too: a vector<bool>'s elements, a bool field.
  expect_corrupt<std::vector<bool>>(forged(std::vector<bool>{false, true}, 2), {"bool", "2"});
  expect_corrupt<std::pair<std::string, bool>>(forged(std::make_pair(std::string("xy"), true), 9),
                                               {"bool", "9"});
  expect_corrupt<std::array<bool, 3>>(forged(std::array<bool, 3>{false, true, false}, 3),
                                      {"bool", "3"});
}

BOOST_AUTO_TEST_CASE(an_optional_engaged_flag_other_than_0_or_1_is_corrupt, *boost::unit_test::timeout(60)) {
  BOOST_TEST((round_trip(std::optional<int>(42)) == std::optional<int>(42)));
  BOOST_TEST((round_trip(std::optional<int>()) == std::optional<int>()));
  expect_corrupt<std::optional<int>>(forged(std::optional<int>(42), 7), {"optional", "7"});
  expect_corrupt<std::optional<std::string>>(forged(std::optional<std::string>("*"), 7),
                                             {"optional", "7"});
  // A valid flag, then an invalid value inside (the encoding ends with the vector's element).
  auto inner = encode(std::optional<std::vector<bool>>(std::vector<bool>{true}));
  inner.back() = std::byte{4};
  expect_corrupt<std::optional<std::vector<bool>>>(inner, {"bool", "4"});
}

BOOST_AUTO_TEST_CASE(a_variant_index_out_of_range_is_corrupt, *boost::unit_test::timeout(60)) {
  using V = std::variant<int, float>;
  BOOST_TEST((round_trip(V(2.5f)) == V(2.5f)));
  BOOST_TEST((round_trip(V(-3)) == V(-3)));
  expect_corrupt<V>(forged(V(0.0f), 7), {"variant", "7"});
  using W = std::variant<std::string, std::vector<int>>;
  BOOST_TEST((round_trip(W(std::vector<int>{2, 3})) == W(std::vector<int>{2, 3})));
  expect_corrupt<W>(forged(W(std::vector<int>{}), 2), {"variant", "2"});
}

BOOST_AUTO_TEST_CASE(a_forged_length_is_corrupt_before_anything_is_allocated, *boost::unit_test::timeout(60)) {
  using Strings = std::vector<std::string, CountingAllocator<std::string>>;
  // 16 elements claimed, 8 bytes left: not even one length prefix each.
  const auto buf = with_count(16, 8);
  CountingAllocator<std::string>::allocations = 0;
  expect_corrupt<Strings>(buf, {"vector", "16"});
  BOOST_TEST(CountingAllocator<std::string>::allocations == 0);
  // Nested: the outer vector is fine, an inner string claims more than the message has.
  std::vector<std::byte> nested = encode(std::vector<std::vector<std::string>>{{"abc"}});
  const std::uint64_t huge = std::uint64_t{1} << 40;
  // After the outer count, the inner vector's length and the inner count: the string's length.
  std::memcpy(nested.data() + 24, &huge, sizeof huge);
  expect_corrupt<std::vector<std::vector<std::string>>>(nested, {"vector"});
  // A length beyond the message inside fields.
  std::vector<std::byte> fields = encode(std::make_pair(std::string("abc"), 1));
  std::memcpy(fields.data(), &huge, sizeof huge);
  expect_corrupt<std::pair<std::string, int>>(fields, {"longer than the message"});
}

// An outside probe: a count checked only against the fewest bytes an element takes (8, a length
// prefix) let an element 64 KiB large in memory reserve 8,000 times the message (an 8.6 GB
// reservation from 1 MB, std::bad_alloc from 4 MB).
BOOST_AUTO_TEST_CASE(a_count_reserves_no_more_than_the_message_holds, *boost::unit_test::timeout(60)) {
  using Big = std::pair<std::string, std::array<char, 65536>>;
  using Bigs = std::vector<Big, CountingAllocator<Big>>;
  // 1,000 elements claimed, each with only a zero length prefix: plausible by count alone.
  const auto buf = with_count(1000, 8 * 1000);
  CountingAllocator<Big>::largest = 0;
  expect_corrupt<Bigs>(buf, {"too short"});
  BOOST_TEST(CountingAllocator<Big>::largest <= buf.size());
  // Real elements still decode, however much larger in memory than encoded.
  Bigs v(3);
  v[1].first = "middle";
  v[2].second[65535] = 'z';
  BOOST_TEST((round_trip(v) == v));
}

BOOST_AUTO_TEST_CASE(enums_are_checked_against_their_opt_in_range, *boost::unit_test::timeout(60)) {
  static_assert(mp::codec_fixed_size_v<Colour> == 1);
  static_assert(mp::has_codec_v<Ranged>);
  static_assert(!mp::has_codec_v<Unfixed>);  // a value beyond u1 would be undefined behaviour
  for (Colour c : {Colour::red, Colour::green, Colour::blue}) BOOST_TEST((round_trip(c) == c));
  const std::vector<std::byte> three{std::byte{3}};
  expect_corrupt<Colour>(three, {"Colour", "3", "enum_range [0, 2]"});
  std::vector<std::byte> ranged(sizeof(Ranged));
  const auto minus_one = static_cast<std::underlying_type_t<Ranged>>(-1);
  std::memcpy(ranged.data(), &minus_one, sizeof minus_one);
  expect_corrupt<Ranged>(ranged, {"Ranged", "enum_range"});
  BOOST_TEST((round_trip(r2) == r2));
  // A fixed underlying type without opt-in: any value of it, as C++ allows.
  std::vector<std::byte> seven(sizeof(int));
  const int v = 7;
  std::memcpy(seven.data(), &v, sizeof v);
  BOOST_TEST(static_cast<int>(mp::Codec<Level>::decode(seven.data(), seven.size())) == 7);
  // Inside containers and optionals.
  auto colours = encode(std::vector<Colour>{Colour::red, Colour::blue});
  colours.back() = std::byte{200};
  expect_corrupt<std::vector<Colour>>(colours, {"Colour", "200"});
  auto maybe = encode(std::optional<Colour>(Colour::green));
  maybe.back() = std::byte{9};
  expect_corrupt<std::optional<Colour>>(maybe, {"Colour", "9"});
}

BOOST_AUTO_TEST_CASE(checked_types_keep_fixed_sizes_and_travel_through_a_queue, *boost::unit_test::timeout(60)) {
  static_assert(mp::codec_fixed_size_v<bool> == 1);
  static_assert(mp::codec_fixed_size_v<std::optional<int>> == 1 + sizeof(int));
  static_assert(mp::codec_fixed_size_v<std::variant<char, double>> == 1 + sizeof(double));
  static_assert(mp::codec_fixed_size_v<std::array<bool, 3>> == 3);
  static_assert(mp::codec_fixed_size_v<std::optional<std::string>> == 0);
  using Item = std::tuple<bool, std::optional<int>, std::variant<int, std::string>, Colour>;
  mp::Queue<Item> q(8);
  mp::Queue<std::optional<int>> fixed(8);
  mp::Process producer([q, fixed] {
    for (int i = 0; i < 50; ++i) {
      q.put(Item{i % 2 == 0, i % 3 == 0 ? std::optional<int>() : std::optional<int>(i),
                 i % 5 == 0 ? std::variant<int, std::string>(std::to_string(i))
                            : std::variant<int, std::string>(i),
                 static_cast<Colour>(i % 3)});
      fixed.put(i % 4 == 0 ? std::optional<int>() : std::optional<int>(i));
    }
  });
  producer.start();
  long sum = 0;
  int empty = 0;
  for (int i = 0; i < 50; ++i) {
    const auto [even, opt, var, colour] = q.get();
    BOOST_TEST(even == (i % 2 == 0));
    BOOST_TEST(opt.has_value() == (i % 3 != 0));
    BOOST_TEST(var.index() == (i % 5 == 0 ? 1u : 0u));
    BOOST_TEST((colour == static_cast<Colour>(i % 3)));
    const auto f = fixed.get();
    if (f) {
      sum += *f;
    } else {
      ++empty;
    }
  }
  BOOST_TEST(empty == 13);                         // 0, 4, ..., 48
  BOOST_TEST(sum == 49 * 50 / 2 - 4 * (12 * 13 / 2));  // all i, less the multiples of 4
  BOOST_REQUIRE(producer.join_for(30s));
  BOOST_TEST(*producer.exitcode() == 0);
}

// A codec of the user's for a trivially copyable type replaces its byte copy everywhere a T is
// encoded: inside vectors and arrays, in a Queue's fixed records, in a Pool's chunks (found by an
// outside probe: map, imap and vectors copied the bytes, apply and Queue<T>::get decoded them).
BOOST_AUTO_TEST_CASE(a_codec_of_yours_for_a_trivially_copyable_type_is_used_everywhere,
                     *boost::unit_test::timeout(120)) {
  static_assert(mp::detail::copied_raw_v<Pod> && !mp::detail::copied_raw_v<Tenths>);
  static_assert(!mp::detail::is_plain_v<std::array<Tenths, 2>>);
  const auto ints = [](const auto& ts) {
    std::vector<int> out;
    for (const Tenths& t : ts) out.push_back(t.v);
    return out;
  };
  const std::vector<Tenths> v{{1}, {2}, {3}};
  const std::vector<std::byte> bytes = encode(v);
  std::int32_t first = 0;
  std::memcpy(&first, bytes.data() + bytes.size() - 12, 4);  // the elements end the encoding
  BOOST_TEST(first == 10);
  BOOST_TEST((ints(round_trip(v)) == std::vector<int>{1, 2, 3}));
  BOOST_TEST((ints(round_trip(std::array<Tenths, 2>{{{4}, {5}}})) == std::vector<int>{4, 5}));
  expect_error([&] { (void)round_trip(std::vector<Tenths>{{7}}); }, mp::errc::corrupt,
               {"refused 70"});

  mp::Queue<Tenths> q(64);
  mp::Queue<std::vector<Tenths>> qv(8);
  mp::Process producer([q, qv] {
    for (int i = 1; i <= 200; ++i) q.put(Tenths{i == 7 ? 8 : i});
    qv.put(std::vector<Tenths>{{1}, {2}});
    qv.put(std::vector<Tenths>{{7}});
  });
  producer.start();
  long sum = 0;
  for (int i = 1; i <= 200; ++i) sum += q.get().v;
  BOOST_TEST(sum == 200 * 201 / 2 + 1);
  BOOST_TEST((ints(qv.get()) == std::vector<int>{1, 2}));
  expect_error([&] { (void)qv.get(); }, mp::errc::corrupt, {"refused 70"});
  BOOST_REQUIRE(producer.join_for(30s));
  BOOST_TEST(*producer.exitcode() == 0);

  mp::Pool pool(2);
  std::vector<int> in(1000);
  std::iota(in.begin(), in.end(), 1);
  in[6] = 8;  // no 7
  long total = 0;
  for (const Tenths& t : pool.map(tenths_of, in)) total += t.v;
  BOOST_TEST(total == 1000 * 1001 / 2 + 1);
  total = 0;
  for (const Tenths& t : pool.imap(tenths_of, in)) total += t.v;
  BOOST_TEST(total == 1000 * 1001 / 2 + 1);
  expect_error([&] { (void)pool.map(tenths_of, std::vector<int>{1, 7}); }, mp::errc::corrupt,
               {"refused 70"});
  expect_error([&] { (void)pool.map_async(tenths_of, std::vector<int>{7}).get(); },
               mp::errc::corrupt, {"refused 70"});
  pool.close();
  pool.join();
}

// A result the caller's Codec refuses fails the call everywhere it is looked at: get() throws,
// successful() is false, on_error runs and on_success does not (found by an outside probe: no
// callback ran, and successful() said true).
BOOST_AUTO_TEST_CASE(a_result_that_cannot_be_decoded_fails_the_call_for_its_callbacks_too,
                     *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  for (const bool as_map : {false, true}) {
    std::atomic<int> successes{0};
    std::promise<std::string> failed;
    auto cb = mp::callbacks([&](const auto&) { ++successes; },
                            [&](const mp::Error& e) { failed.set_value(e.what()); });
    std::future<std::string> reported = failed.get_future();
    if (as_map) {
      auto r = pool.map_async(tenths_of, cb, std::vector<int>{1, 7, 3});
      expect_error([&] { (void)r.get(); }, mp::errc::corrupt, {"refused 70"});
      BOOST_TEST(!r.successful());
    } else {
      auto r = pool.apply_async(tenths_of, cb, 7);
      expect_error([&] { (void)r.get(); }, mp::errc::corrupt, {"refused 70"});
      BOOST_TEST(!r.successful());
    }
    BOOST_REQUIRE(reported.wait_for(30s) == std::future_status::ready);
    BOOST_TEST(reported.get().find("refused 70") != std::string::npos);
    BOOST_TEST(successes.load() == 0);
  }
  // And one that decodes: on_success with the value, successful() true.
  std::promise<int> got;
  auto r = pool.apply_async(tenths_of,
                            mp::callbacks([&](const Tenths& t) { got.set_value(t.v); },
                                          [&](const mp::Error&) { got.set_value(-1); }),
                            6);
  BOOST_TEST(r.get().v == 6);
  BOOST_TEST(r.successful());
  std::future<int> f = got.get_future();
  BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
  BOOST_TEST(f.get() == 6);
  pool.close();
  pool.join();
}

BOOST_AUTO_TEST_CASE(forged_bytes_through_a_pipe_between_processes_are_corrupt, *boost::unit_test::timeout(60)) {
  auto ends = mp::Pipe();  // named ends, not a structured binding: the lambdas capture them
  const mp::Connection parent_end = std::move(ends.first);
  const mp::Connection child_end = std::move(ends.second);
  const std::vector<std::vector<std::byte>> messages{
      forged(true, 5), forged(std::optional<int>(42), 7),
      forged(std::variant<int, float>(0.0f), 7), {std::byte{3}}, encode(true)};
  mp::Process sender([child_end, messages] {
    for (const auto& m : messages) child_end.send_bytes(m.data(), m.size());
  });
  sender.start();
  expect_error([&] { (void)parent_end.recv<bool>(); }, mp::errc::corrupt, {"bool", "5"});
  expect_error([&] { (void)parent_end.recv<std::optional<int>>(); }, mp::errc::corrupt,
               {"optional", "7"});
  expect_error([&] { (void)parent_end.recv<std::variant<int, float>>(); }, mp::errc::corrupt,
               {"variant", "7"});
  expect_error([&] { (void)parent_end.recv<Colour>(); }, mp::errc::corrupt, {"Colour", "3"});
  BOOST_TEST(parent_end.recv<bool>() == true);  // the pipe goes on after a corrupt message
  BOOST_REQUIRE(sender.join_for(30s));
  BOOST_TEST(*sender.exitcode() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
