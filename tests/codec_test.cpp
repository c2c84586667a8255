// Codec: built-in encodings, composite fields, a user specialisation, and decode errors.
#include "support/support.hpp"

#include <array>
#include <map>

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

BOOST_AUTO_TEST_SUITE_END()
