// tests/fuzz/codec_cases.hpp — the types codec_fuzz decodes, and sample values of each (the seed
// corpus, written by make_seeds.cpp). Shared by both so that selector numbers agree.
//
// An input of codec_fuzz is [selector byte][payload]: the selector (modulo the number of cases)
// picks one type of Cases, the payload is what Codec<T>::decode receives. A case whose type has
// no codec in this build is skipped (and gets no seed), so the list can name types before the
// codec supports them (std::variant of non-trivial types, std::array of strings) and after it
// stops (an unscoped enum without a fixed type, whose out-of-range values are UB).
#pragma once

#include <multiproc/codec.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace fuzz {

enum Light { red, amber, green };  // unscoped, no fixed type: only 0..3 are values (UBSan: enum)
enum class Color : std::uint8_t { red, green, blue };  // every uint8_t is a value

// Trivially copyable, no padding: copied byte for byte (every byte pattern is a value).
struct Plain {
  std::int32_t id;
  std::uint8_t flags;
  char tag[3];
  friend bool operator==(const Plain& a, const Plain& b) {
    return a.id == b.id && a.flags == b.flags && a.tag[0] == b.tag[0] && a.tag[1] == b.tag[1] &&
           a.tag[2] == b.tag[2];
  }
};
static_assert(sizeof(Plain) == 8, "Plain has no padding (the round trip compares bytes)");

// A user type with its own codec, written as codec.hpp's comment shows (decode_fields), with
// fields whose bytes may be invalid (a bool) or out of the enumerators' range (an enum class).
struct Job {
  std::int32_t id = 0;
  std::string url;
  bool urgent = false;
  Color color = Color::red;
  friend bool operator==(const Job& a, const Job& b) {
    return a.id == b.id && a.url == b.url && a.urgent == b.urgent && a.color == b.color;
  }
};

using Cases = std::tuple<
    bool,                                                              // 0
    std::uint8_t,                                                      // 1
    std::int64_t,                                                      // 2
    double,                                                            // 3
    Light,                                                             // 4
    Color,                                                             // 5
    Plain,                                                             // 6
    std::array<std::int16_t, 3>,                                       // 7
    std::string,                                                       // 8
    std::vector<std::int32_t>,                                         // 9
    std::vector<bool>,                                                 // 10
    std::vector<std::string>,                                          // 11
    std::vector<std::vector<std::string>>,                             // 12
    std::optional<std::int32_t>,                                       // 13
    std::optional<std::string>,                                        // 14
    std::optional<std::vector<std::optional<std::string>>>,            // 15
    std::pair<std::int32_t, std::string>,                              // 16
    std::tuple<bool, std::string, std::vector<std::uint16_t>, std::optional<std::string>>,  // 17
    std::vector<std::pair<std::string, std::optional<std::int64_t>>>,  // 18
    std::variant<std::int32_t, char>,                                  // 19
    std::variant<std::int64_t, std::string, std::vector<std::string>>,  // 20
    std::array<bool, 3>,                                               // 21
    Job,                                                               // 22
    std::vector<Job>,                                                  // 23
    std::vector<Light>,                                                // 24
    std::array<std::string, 2>,                                        // 25
    std::optional<Color>,                                              // 26
    std::vector<std::variant<bool, std::string>>>;                     // 27

inline constexpr std::size_t kCases = std::tuple_size_v<Cases>;

// Whether two decoded values may be compared with ==: a double may be NaN (its bytes are compared
// instead).
template <class T>
inline constexpr bool kCompareValues = !std::is_floating_point_v<T>;

// Whether equal values always encode to the same bytes: not when a byte-for-byte copied type has
// padding (std::optional<std::int64_t> has 7 bytes of it, std::variant<std::int32_t, char> 3),
// whose bytes are whatever the sender's memory held.
template <class T, class = void>
struct FixedBytes : std::bool_constant<std::has_unique_object_representations_v<T> ||
                                       std::is_floating_point_v<T>> {};
template <class T>
inline constexpr bool kFixedBytes = FixedBytes<T>::value;
template <class... Ts>
inline constexpr bool kAllFixedBytes = (kFixedBytes<Ts> && ...);
template <>
struct FixedBytes<std::string> : std::true_type {};
template <class U>
struct FixedBytes<std::vector<U>> : std::bool_constant<kFixedBytes<U>> {};
template <>
struct FixedBytes<std::vector<bool>> : std::true_type {};
template <class U>
struct FixedBytes<std::optional<U>, std::enable_if_t<!std::is_trivially_copyable_v<std::optional<U>>>>
    : std::bool_constant<kFixedBytes<U>> {};
template <class A, class B>
struct FixedBytes<std::pair<A, B>> : std::bool_constant<kAllFixedBytes<A, B>> {};
template <class... Ts>
struct FixedBytes<std::tuple<Ts...>> : std::bool_constant<kAllFixedBytes<Ts...>> {};
template <class... Ts>
struct FixedBytes<std::variant<Ts...>, std::enable_if_t<!std::is_trivially_copyable_v<std::variant<Ts...>>>>
    : std::bool_constant<kAllFixedBytes<Ts...>> {};
template <class U, std::size_t N>
struct FixedBytes<std::array<U, N>, std::enable_if_t<!std::is_trivially_copyable_v<std::array<U, N>>>>
    : std::bool_constant<kFixedBytes<U>> {};
template <>
struct FixedBytes<Job> : std::true_type {};

// ---------------------------------------------------------------------------------------------
// Sample<T>::get(k), k = 0..3: a few values of each type, small and large, for the seed corpus.

template <class T, class = void>
struct Sample;

template <class T>
T sample(int k) {
  return Sample<T>::get(k);
}

template <>
struct Sample<bool> {
  static bool get(int k) { return k % 2 != 0; }
};
template <class T>
struct Sample<T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>>> {
  static T get(int k) {
    switch (k) {
      case 0: return T(0);
      case 1: return T(1);
      case 2: return std::numeric_limits<T>::max();
      default: return std::numeric_limits<T>::lowest();
    }
  }
};
template <class T>
struct Sample<T, std::enable_if_t<std::is_enum_v<T>>> {
  static T get(int k) { return static_cast<T>(k % 3); }
};
template <>
struct Sample<std::string> {
  static std::string get(int k) {
    switch (k) {
      case 0: return "";
      case 1: return "a";
      case 2: return "hello, world";
      default: return std::string(100, 'x');
    }
  }
};
template <class U, std::size_t N>
struct Sample<std::array<U, N>> {
  static std::array<U, N> get(int k) {
    std::array<U, N> a{};
    for (std::size_t i = 0; i < N; ++i) a[i] = sample<U>((k + static_cast<int>(i)) % 4);
    return a;
  }
};
template <class U>
struct Sample<std::vector<U>> {
  static std::vector<U> get(int k) {
    std::vector<U> v;
    for (int i = 0; i < k; ++i) v.push_back(sample<U>((k + i) % 4));
    return v;
  }
};
template <class U>
struct Sample<std::optional<U>> {
  static std::optional<U> get(int k) {
    if (k == 0) return std::nullopt;
    return sample<U>(k);
  }
};
template <class A, class B>
struct Sample<std::pair<A, B>> {
  static std::pair<A, B> get(int k) { return {sample<A>(k), sample<B>(3 - k)}; }
};
template <class... Ts>
struct Sample<std::tuple<Ts...>> {
  static std::tuple<Ts...> get(int k) { return std::tuple<Ts...>{sample<Ts>(k)...}; }
};
template <class... Ts>
struct Sample<std::variant<Ts...>> {
  // Alternative k % sizeof...(Ts), holding its sample k.
  template <std::size_t... I>
  static std::variant<Ts...> pick(int k, std::index_sequence<I...>) {
    std::variant<Ts...> v;
    const std::size_t which = static_cast<std::size_t>(k) % sizeof...(Ts);
    ((which == I ? (void)v.template emplace<I>(sample<std::variant_alternative_t<I, std::variant<Ts...>>>(k))
                 : (void)0),
     ...);
    return v;
  }
  static std::variant<Ts...> get(int k) { return pick(k, std::index_sequence_for<Ts...>{}); }
};
template <>
struct Sample<Plain> {
  static Plain get(int k) {
    return Plain{k * 1000 - 1, static_cast<std::uint8_t>(k), {'a', 'b', static_cast<char>('0' + k)}};
  }
};
template <>
struct Sample<Job> {
  static Job get(int k) {
    return Job{k, k == 0 ? "" : "http://example.org/" + std::to_string(k), k % 2 != 0,
               static_cast<Color>(k % 3)};
  }
};

}  // namespace fuzz

template <>
struct multiproc::Codec<fuzz::Job> {
  static std::size_t size(const fuzz::Job& j) {
    return multiproc::encoded_size(j.id, j.url, j.urgent, j.color);
  }
  static void encode(const fuzz::Job& j, std::byte* out) {
    multiproc::encode_fields(out, j.id, j.url, j.urgent, j.color);
  }
  static fuzz::Job decode(const std::byte* in, std::size_t n) {
    fuzz::Job j;
    multiproc::decode_fields(in, n, j.id, j.url, j.urgent, j.color);
    return j;
  }
};
