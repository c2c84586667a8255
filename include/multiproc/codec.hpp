// multiproc/codec.hpp — how a value becomes bytes in a Queue, a Pipe or a Pool task.
//
// Python pickles; multiproc asks Codec<T>. Built in, and what decode checks (bytes come from
// another process, possibly a buggy or hostile one, so every check throws Error(errc::corrupt)
// naming the type being decoded — never undefined behaviour, never an allocation sized by an
// unchecked count or length: no reservation is larger than the message in hand):
//   - trivially copyable T (ints, floats, chars, std::byte, PODs, std::array of them): copied byte
//     for byte; decode checks the size. A Codec of yours for such a type replaces that copy
//     everywhere: inside vectors and arrays, in a Queue's records, in a Pool's chunks. Every byte pattern is taken as a valid value: the codec
//     cannot see inside a struct of yours, so a struct with bool or enum members must check them
//     itself (give it a Codec with decode_fields, which checks each field as below);
//   - bool: one byte, 0 or 1 (anything else is corrupt);
//   - enums: their underlying integer. An enum opts in to a range check by specialising
//     multiproc::enum_range (below): a value outside [min, max] is corrupt. Without it, an enum
//     with a fixed underlying type (every enum class, and `enum E : int`) accepts any value of that
//     type, as C++ does; an unscoped enum without a fixed type has no codec (a compile error),
//     because a value beyond its enumerators would be undefined behaviour;
//   - std::string: its characters (any bytes); std::vector<U> for trivially copyable U (without a
//     Codec of yours): its elements' bytes (the size must be a whole number of elements); std::vector<bool>: one byte
//     per element, each 0 or 1;
//   - std::optional<U>: a flag byte, 0 or 1, then U's encoding (zeros when empty if U has a fixed
//     size, so that the optional has one too);
//   - std::variant<Ts...> (at most 255 alternatives): the index in one byte, which must be less
//     than sizeof...(Ts), then that alternative's encoding (padded with zeros to the largest when
//     every alternative has a fixed size); a valueless variant cannot be encoded (invalid_argument);
//   - std::vector<U>, std::array<U, N>, std::pair<A, B> and std::tuple<Ts...> of other types with a
//     codec (strings, vectors, bools, enums, optionals, variants, yours): their elements, each with
//     its length in front when it has no fixed size; a vector's count in front. A count or length
//     is checked against the bytes that remain before anything is reserved (and a vector
//     reserves at most the message's size in bytes), every element is checked as its own type
//     says, and trailing bytes are corrupt. Decoded elements may take more memory than their
//     encoding (an empty std::string is 8 bytes encoded, 32 in memory); only that memory grows.
//
// Types that only point at data elsewhere — raw pointers, std::string_view — have no codec: the
// data would not travel. Send a std::string instead. Neither do maps and sets (send a vector of
// pairs).
//
// For your own type, specialise multiproc::Codec:
//
//   struct Job { int id; std::string url; };
//   template <> struct multiproc::Codec<Job> {
//     static std::size_t size(const Job& j) { return multiproc::encoded_size(j.id, j.url); }
//     static void encode(const Job& j, std::byte* out) { multiproc::encode_fields(out, j.id, j.url); }
//     static Job decode(const std::byte* in, std::size_t n) {
//       Job j;
//       multiproc::decode_fields(in, n, j.id, j.url);
//       return j;
//     }
//   };
//
// and for an enum, its valid range (contiguous from min to max; for a sparse enum specialise
// Codec<E> itself):
//
//   enum class Colour : std::uint8_t { red, green, blue };
//   template <> struct multiproc::enum_range<Colour> {
//     static constexpr Colour min = Colour::red, max = Colour::blue;
//   };
//
// The contract: size(v) is the number of bytes encode(v, out) writes; decode(in, n) receives
// exactly those n bytes (possibly in another process) and rebuilds the value. A codec whose
// encoding always has the same size may say so with `static constexpr std::size_t fixed_size`
// (0 means "varies"). decode throws multiproc::Error(errc::corrupt) on bytes it cannot read —
// never undefined behaviour; Codec<T>::decode(p, n) may be called on any n bytes at p, whoever
// wrote them. Codecs are used by one thread at a time and must not keep pointers into `in`.
#pragma once

#include <multiproc/error.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

namespace multiproc {

//! Codec<T>: size / encode / decode, see above. Undefined for types without one.
template <class T, class Enable = void>
struct Codec;

//! Opt-in range check for an enum E: specialise with `static constexpr E min, max` (see above).
//! Undefined (no check) for enums that do not opt in.
template <class E>
struct enum_range;

namespace detail {
template <class T, class = void>
struct has_codec : std::false_type {};
template <class T>
struct has_codec<T, std::void_t<decltype(Codec<T>::size(std::declval<const T&>()))>>
    : std::true_type {};

template <class T, class = void>
struct codec_fixed_size : std::integral_constant<std::size_t, 0> {};
template <class T>
struct codec_fixed_size<T, std::void_t<decltype(Codec<T>::fixed_size)>>
    : std::integral_constant<std::size_t, Codec<T>::fixed_size> {};

//! Throws Error(errc::corrupt): "multiproc: cannot decode a <demangled type> from <got> bytes:
//! <why>". `type` is a mangled name (typeid(T).name()).
[[noreturn]] void throw_decode_error(const char* type, std::size_t got, const char* why);
[[noreturn]] void throw_decode_error(const char* type, std::size_t got, const std::string& why);
//! Throws Error(errc::invalid_argument): "multiproc: cannot encode a <type>: <why>".
[[noreturn]] void throw_encode_error(const char* type, const char* why);

template <class T>
struct is_view : std::false_type {};
template <class C, class Traits>
struct is_view<std::basic_string_view<C, Traits>> : std::true_type {};

template <class E, class = void>
struct has_enum_range : std::false_type {};
template <class E>
struct has_enum_range<E, std::void_t<decltype(enum_range<E>::min), decltype(enum_range<E>::max)>>
    : std::true_type {};

// An enum has a fixed underlying type exactly when E{u} compiles for a value u of that type
// (C++17 [dcl.init.list]/3): then every value of the underlying type is a value of E.
template <class E, class = void>
struct has_fixed_underlying : std::false_type {};
template <class E>
struct has_fixed_underlying<E, std::void_t<decltype(E{std::declval<std::underlying_type_t<E>>()})>>
    : std::true_type {};

template <class T, class = void>
struct copied_raw;

// Types with byte patterns that are not values (a bool of 5, an optional flagged 7, a variant
// index beyond its alternatives, an enum outside its range), and arrays of a type with a codec of
// the user's: they are never copied blindly.
template <class T, class = void>
struct has_invalid_bytes : std::bool_constant<std::is_same_v<T, bool> || std::is_enum_v<T>> {};
template <class U>
struct has_invalid_bytes<std::optional<U>> : std::true_type {};
template <class... Ts>
struct has_invalid_bytes<std::variant<Ts...>> : std::true_type {};
template <class U, std::size_t N>
struct has_invalid_bytes<std::array<U, N>>
    : std::bool_constant<has_invalid_bytes<U>::value ||
                         (std::is_trivially_copyable_v<U> && !copied_raw<U>::value)> {};
template <class A, class B>
struct has_invalid_bytes<std::pair<A, B>>
    : std::bool_constant<has_invalid_bytes<A>::value || has_invalid_bytes<B>::value> {};
template <class... Ts>
struct has_invalid_bytes<std::tuple<Ts...>>
    : std::bool_constant<(false || ... || has_invalid_bytes<Ts>::value)> {};

// Copied byte for byte: trivially copyable, not something that only points at its data, and
// (as far as the codec can see) every byte pattern a value.
template <class T>
inline constexpr bool is_plain_v = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                                   !std::is_member_pointer_v<T> && !is_view<T>::value &&
                                   !has_invalid_bytes<T>::value;

//! "byte 5" style text for messages.
std::string show_byte(std::byte b);
}  // namespace detail

//! True when T has a Codec (built in or specialised).
template <class T>
inline constexpr bool has_codec_v = detail::has_codec<T>::value;

//! The constant size of T's encoding, or 0 when it varies.
template <class T>
inline constexpr std::size_t codec_fixed_size_v = detail::codec_fixed_size<T>::value;

// Trivially copyable types: their bytes.
template <class T>
struct Codec<T, std::enable_if_t<detail::is_plain_v<T>>> {
  static constexpr bool copies_bytes = true;  // see detail::copied_raw
  static constexpr std::size_t fixed_size = sizeof(T);
  static std::size_t size(const T&) noexcept { return sizeof(T); }
  static void encode(const T& v, std::byte* out) noexcept { std::memcpy(out, &v, sizeof(T)); }
  static T decode(const std::byte* in, std::size_t n) {
    if (n != sizeof(T)) detail::throw_decode_error(typeid(T).name(), n, "wrong size");
    T v;
    std::memcpy(static_cast<void*>(&v), in, sizeof(T));
    return v;
  }
};

namespace detail {
//! Whether a T is encoded by the byte copy above: plain, and no Codec of the user's specialised
//! for it. Wherever a T's bytes could be copied without calling its codec (a vector's elements,
//! a std::array, a queue's fixed records, a Pool's chunks of plain values), this decides; a codec
//! of yours for a trivially copyable type is used there as everywhere else.
template <class T, class>
struct copied_raw : std::false_type {};
template <class T>
struct copied_raw<T, std::enable_if_t<is_plain_v<T> && Codec<T>::copies_bytes>> : std::true_type {};
template <class T>
inline constexpr bool copied_raw_v = copied_raw<T>::value;
}  // namespace detail

// bool: one byte, 0 or 1.
template <>
struct Codec<bool> {
  static constexpr std::size_t fixed_size = 1;
  static std::size_t size(bool) noexcept { return 1; }
  static void encode(bool v, std::byte* out) noexcept { out[0] = static_cast<std::byte>(v ? 1 : 0); }
  static bool decode(const std::byte* in, std::size_t n) {
    if (n != 1) detail::throw_decode_error(typeid(bool).name(), n, "wrong size");
    if (in[0] == std::byte{0}) return false;
    if (in[0] == std::byte{1}) return true;
    detail::throw_decode_error(typeid(bool).name(), n,
                               detail::show_byte(in[0]) + " is neither 0 (false) nor 1 (true)");
  }
};

// Enums: their underlying integer, checked against enum_range<E> when E opts in; otherwise only
// enums with a fixed underlying type (any value of it is a value of E).
template <class E>
struct Codec<E, std::enable_if_t<std::is_enum_v<E> && (detail::has_enum_range<E>::value ||
                                                       detail::has_fixed_underlying<E>::value)>> {
  using U = std::underlying_type_t<E>;
  static constexpr std::size_t fixed_size = sizeof(E);
  static std::size_t size(E) noexcept { return sizeof(E); }
  static void encode(E v, std::byte* out) noexcept {
    const U u = static_cast<U>(v);
    std::memcpy(out, &u, sizeof u);
  }
  static E decode(const std::byte* in, std::size_t n) {
    if (n != sizeof(U)) detail::throw_decode_error(typeid(E).name(), n, "wrong size");
    U u;
    std::memcpy(&u, in, sizeof u);
    if constexpr (detail::has_enum_range<E>::value) {
      constexpr U lo = static_cast<U>(enum_range<E>::min);
      constexpr U hi = static_cast<U>(enum_range<E>::max);
      static_assert(lo <= hi, "multiproc::enum_range<E>: min must not be greater than max");
      if (u < lo || u > hi) {
        detail::throw_decode_error(typeid(E).name(), n,
                                   "value " + std::to_string(+u) + " is outside its enum_range [" +
                                       std::to_string(+lo) + ", " + std::to_string(+hi) + "]");
      }
    }
    return static_cast<E>(u);  // a value of E: in the enumerators' range, or E's type is fixed
  }
};

// std::string: its characters.
template <class Traits, class Alloc>
struct Codec<std::basic_string<char, Traits, Alloc>> {
  using S = std::basic_string<char, Traits, Alloc>;
  static constexpr bool encodes_own_bytes = true;  // see detail::raw_encoding
  static std::size_t size(const S& s) noexcept { return s.size(); }
  static void encode(const S& s, std::byte* out) noexcept {
    s.copy(reinterpret_cast<char*>(out), s.size());
  }
  static S decode(const std::byte* in, std::size_t n) {
    return S(reinterpret_cast<const char*>(in), n);
  }
};

// std::vector<U>, U trivially copyable (and no codec of the user's for it): its elements' bytes.
template <class U, class Alloc>
struct Codec<std::vector<U, Alloc>, std::enable_if_t<detail::copied_raw_v<U> && !std::is_same_v<U, bool>>> {
  using V = std::vector<U, Alloc>;
  static constexpr bool encodes_own_bytes = true;  // see detail::raw_encoding
  static std::size_t size(const V& v) noexcept { return v.size() * sizeof(U); }
  static void encode(const V& v, std::byte* out) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
    // g++ 12 inlines this into every alternative of a variant's encode and checks the memcpy
    // against the buffer sized for the alternative actually held: a false -Warray-bounds (or
    // -Wstringop-overflow).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
    if (!v.empty()) std::memcpy(out, v.data(), v.size() * sizeof(U));
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
  }
  static V decode(const std::byte* in, std::size_t n) {
    if (n % sizeof(U) != 0) detail::throw_decode_error(typeid(V).name(), n, "not a whole number of elements");
    V v(n / sizeof(U));
    if (n != 0) std::memcpy(static_cast<void*>(v.data()), in, n);
    return v;
  }
};

namespace detail {
//! Whether the codec T gets (one of the two above, which say so with encodes_own_bytes) encodes
//! it as its own contiguous bytes, data() .. data() + size(): a message too large for one record
//! then streams straight from the object, without an encoded copy. A codec of the user's, also
//! one specialized for such a type, is always used as written.
template <class T, class = void>
struct raw_encoding : std::false_type {};
template <class T>
struct raw_encoding<T, std::void_t<decltype(Codec<T>::encodes_own_bytes)>>
    : std::bool_constant<Codec<T>::encodes_own_bytes> {};
template <class T>
inline constexpr bool raw_encoding_v = raw_encoding<T>::value;
template <class T>
const std::byte* raw_bytes(const T& v) noexcept {
  return reinterpret_cast<const std::byte*>(v.data());
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Composite encodings: fields one after the other; a field without a fixed size is preceded by
// its length (8 bytes, little-endian as in memory).

namespace detail {

template <class T>
std::size_t field_size(const T& v) {
  static_assert(has_codec_v<T>, "every field needs a multiproc::Codec (see codec.hpp)");
  if constexpr (codec_fixed_size_v<T> != 0) {
    return codec_fixed_size_v<T>;
  } else {
    return sizeof(std::uint64_t) + Codec<T>::size(v);
  }
}

template <class T>
std::byte* encode_field(std::byte* out, const T& v) {
  if constexpr (codec_fixed_size_v<T> != 0) {
    Codec<T>::encode(v, out);
    return out + codec_fixed_size_v<T>;
  } else {
    const std::uint64_t n = Codec<T>::size(v);
    std::memcpy(out, &n, sizeof n);
    Codec<T>::encode(v, out + sizeof n);
    return out + sizeof n + n;
  }
}

//! The fewest bytes a field of type T takes: its fixed size, or its length prefix.
template <class T>
inline constexpr std::size_t min_field_size_v =
    codec_fixed_size_v<T> != 0 ? codec_fixed_size_v<T> : sizeof(std::uint64_t);

//! Reads fields one after the other, each bounded by the bytes that remain. `type` is the
//! mangled name of what is being decoded, for messages.
struct FieldReader {
  const std::byte* p;
  const std::byte* end;
  const char* type;

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end - p); }
  //! Reads an element count and checks that `count` fields of T can fit in what remains (before
  //! the caller reserves anything for them).
  template <class T>
  std::size_t read_count() {
    const auto count = read<std::uint64_t>();
    if (count > remaining() / min_field_size_v<T>) {
      throw_decode_error(type, remaining(),
                         "a count of " + std::to_string(count) + " elements of at least " +
                             std::to_string(min_field_size_v<T>) + " bytes each does not fit in " +
                             "the " + std::to_string(remaining()) + " bytes left");
    }
    return static_cast<std::size_t>(count);
  }

  template <class T>
  T read() {
    std::size_t n;
    if constexpr (codec_fixed_size_v<T> != 0) {
      n = codec_fixed_size_v<T>;
    } else {
      std::uint64_t len;
      need(sizeof len);
      std::memcpy(&len, p, sizeof len);
      p += sizeof len;
      if (len > static_cast<std::uint64_t>(end - p)) {
        throw_decode_error(type, static_cast<std::size_t>(end - p), "field longer than the message");
      }
      n = static_cast<std::size_t>(len);
    }
    need(n);
    T v = Codec<T>::decode(p, n);
    p += n;
    return v;
  }
  void need(std::size_t n) {
    if (n > static_cast<std::size_t>(end - p)) {
      throw_decode_error(type, static_cast<std::size_t>(end - p), "message too short");
    }
  }
  void finish() {
    if (p != end) throw_decode_error(type, static_cast<std::size_t>(end - p), "trailing bytes");
  }
};

}  // namespace detail

//! Bytes that encode_fields(out, fields...) writes.
template <class... Fields>
std::size_t encoded_size(const Fields&... fields) {
  return (std::size_t{0} + ... + detail::field_size(fields));
}

//! Writes each field in turn (with its length first when it has no fixed size).
template <class... Fields>
void encode_fields(std::byte* out, const Fields&... fields) {
  ((out = detail::encode_field(out, fields)), ...);
}

//! Reads fields written by encode_fields into the given variables; Error(errc::corrupt) when the
//! n bytes do not hold exactly those fields.
template <class... Fields>
void decode_fields(const std::byte* in, std::size_t n, Fields&... fields) {
  detail::FieldReader r{in, in + n, typeid(std::tuple<Fields...>).name()};
  ((fields = r.template read<Fields>()), ...);
  r.finish();
}

// std::pair<A, B> and std::tuple<Ts...>: fields.
template <class A, class B>
struct Codec<std::pair<A, B>, std::enable_if_t<!detail::is_plain_v<std::pair<A, B>> &&
                                               has_codec_v<A> && has_codec_v<B>>> {
  static std::size_t size(const std::pair<A, B>& p) { return encoded_size(p.first, p.second); }
  static void encode(const std::pair<A, B>& p, std::byte* out) {
    encode_fields(out, p.first, p.second);
  }
  static std::pair<A, B> decode(const std::byte* in, std::size_t n) {
    detail::FieldReader r{in, in + n, typeid(std::pair<A, B>).name()};
    A a = r.template read<A>();
    B b = r.template read<B>();
    r.finish();
    return {std::move(a), std::move(b)};
  }
};

template <class... Ts>
struct Codec<std::tuple<Ts...>, std::enable_if_t<!detail::is_plain_v<std::tuple<Ts...>> &&
                                                 (has_codec_v<Ts> && ...)>> {
  static std::size_t size(const std::tuple<Ts...>& t) {
    return std::apply([](const Ts&... f) { return encoded_size(f...); }, t);
  }
  static void encode(const std::tuple<Ts...>& t, std::byte* out) {
    std::apply([out](const Ts&... f) { encode_fields(out, f...); }, t);
  }
  static std::tuple<Ts...> decode(const std::byte* in, std::size_t n) {
    detail::FieldReader r{in, in + n, typeid(std::tuple<Ts...>).name()};
    std::tuple<Ts...> t{r.template read<Ts>()...};  // braced init: left-to-right
    r.finish();
    return t;
  }
};

// std::vector<U> of other U (strings, vectors, enums, optionals, your types): a count, then the
// elements.
template <class U, class Alloc>
struct Codec<std::vector<U, Alloc>,
             std::enable_if_t<!detail::copied_raw_v<U> && !std::is_same_v<U, bool> && has_codec_v<U>>> {
  using V = std::vector<U, Alloc>;
  static std::size_t size(const V& v) {
    std::size_t n = sizeof(std::uint64_t);
    for (const U& u : v) n += detail::field_size(u);
    return n;
  }
  static void encode(const V& v, std::byte* out) {
    const std::uint64_t count = v.size();
    std::memcpy(out, &count, sizeof count);
    out += sizeof count;
    for (const U& u : v) out = detail::encode_field(out, u);
  }
  static V decode(const std::byte* in, std::size_t n) {
    detail::FieldReader r{in, in + n, typeid(V).name()};
    const std::size_t count = r.template read_count<U>();  // checked before reserving
    V v;
    // Reserved up to the message's own size: a U can be far larger in memory than its shortest
    // encoding (a pair holding a std::array of 64 KiB has an 8-byte length prefix as its fewest
    // bytes), so `count` alone could reserve thousands of times the message. Elements beyond
    // the reservation grow the vector as they decode.
    v.reserve(std::min(count, n / sizeof(U)));
    for (std::size_t i = 0; i < count; ++i) v.push_back(r.template read<U>());
    r.finish();
    return v;
  }
};

// std::vector<bool>: one byte per element.
template <class Alloc>
struct Codec<std::vector<bool, Alloc>> {
  using V = std::vector<bool, Alloc>;
  static std::size_t size(const V& v) noexcept { return v.size(); }
  static void encode(const V& v, std::byte* out) noexcept {
    for (bool b : v) *out++ = static_cast<std::byte>(b ? 1 : 0);
  }
  static V decode(const std::byte* in, std::size_t n) {
    V v(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (in[i] != std::byte{0} && in[i] != std::byte{1}) {
        detail::throw_decode_error(typeid(V).name(), n,
                                   "element " + std::to_string(i) + " is " +
                                       detail::show_byte(in[i]) +
                                       ", neither 0 (false) nor 1 (true): not a bool");
      }
      v[i] = in[i] == std::byte{1};
    }
    return v;
  }
};

// std::array<U, N> of U that is not plain (bools, enums, strings, ...): N fields.
template <class U, std::size_t N>
struct Codec<std::array<U, N>, std::enable_if_t<!detail::is_plain_v<std::array<U, N>> &&
                                                !detail::copied_raw_v<U> && has_codec_v<U>>> {
  using A = std::array<U, N>;
  static constexpr std::size_t fixed_size = N * codec_fixed_size_v<U>;  // 0 when U's size varies
  static std::size_t size(const A& a) {
    std::size_t n = 0;
    for (const U& u : a) n += detail::field_size(u);
    return n;
  }
  static void encode(const A& a, std::byte* out) {
    for (const U& u : a) out = detail::encode_field(out, u);
  }
  static A decode(const std::byte* in, std::size_t n) {
    detail::FieldReader r{in, in + n, typeid(A).name()};
    A a{};
    for (U& u : a) u = r.template read<U>();
    r.finish();
    return a;
  }
};

namespace detail {
//! Reads an optional's engaged flag or a variant's index byte, refusing values above `max`.
inline std::size_t read_tag(const std::byte* in, std::size_t n, std::size_t max, const char* type,
                            const char* what) {
  if (n == 0) throw_decode_error(type, n, "message too short");
  const auto tag = static_cast<std::size_t>(in[0]);
  if (tag > max) {
    throw_decode_error(type, n, std::string(what) + " is " + std::to_string(tag) +
                                    (max == 1 ? std::string(", not 0 or 1")
                                              : ", not below " + std::to_string(max + 1)));
  }
  return tag;
}
}  // namespace detail

// std::optional<U>: a flag byte (0 or 1), then the value; with a fixed-size U, zeros when empty.
template <class U>
struct Codec<std::optional<U>, std::enable_if_t<has_codec_v<U>>> {
  using O = std::optional<U>;
  static constexpr std::size_t kValueSize = codec_fixed_size_v<U>;
  static constexpr std::size_t fixed_size = kValueSize != 0 ? 1 + kValueSize : 0;
  static std::size_t size(const O& o) {
    if constexpr (kValueSize != 0) {
      return fixed_size;
    } else {
      return 1 + (o ? Codec<U>::size(*o) : 0);
    }
  }
  static void encode(const O& o, std::byte* out) {
    out[0] = static_cast<std::byte>(o ? 1 : 0);
    if (o) {
      Codec<U>::encode(*o, out + 1);
    } else if constexpr (kValueSize != 0) {
      std::memset(out + 1, 0, kValueSize);
    }
  }
  static O decode(const std::byte* in, std::size_t n) {
    const std::size_t engaged = detail::read_tag(in, n, 1, typeid(O).name(), "the engaged flag");
    if constexpr (kValueSize != 0) {
      if (n != fixed_size) detail::throw_decode_error(typeid(O).name(), n, "wrong size");
      if (engaged == 0) return std::nullopt;  // the zeros after the flag are not read
    } else {
      if (engaged == 0) {
        if (n != 1) detail::throw_decode_error(typeid(O).name(), n, "trailing bytes");
        return std::nullopt;
      }
    }
    return Codec<U>::decode(in + 1, n - 1);
  }
};

// std::variant<Ts...>: the index byte, then the alternative; padded to the largest alternative
// when all have fixed sizes, so that the variant has one too.
template <class... Ts>
struct Codec<std::variant<Ts...>, std::enable_if_t<(has_codec_v<Ts> && ...)>> {
  using V = std::variant<Ts...>;
  static_assert(sizeof...(Ts) <= 255, "multiproc::Codec<std::variant>: at most 255 alternatives");
  static constexpr std::size_t kLargest = std::max({codec_fixed_size_v<Ts>...});
  static constexpr bool kAllFixed = ((codec_fixed_size_v<Ts> != 0) && ...);
  static constexpr std::size_t fixed_size = kAllFixed ? 1 + kLargest : 0;

  static std::size_t size(const V& v) {
    if (v.valueless_by_exception()) {
      detail::throw_encode_error(typeid(V).name(), "it is valueless (an assignment threw)");
    }
    if constexpr (kAllFixed) {
      return fixed_size;
    } else {
      return 1 + std::visit([](const auto& alt) {
               return Codec<std::decay_t<decltype(alt)>>::size(alt);
             }, v);
    }
  }
  static void encode(const V& v, std::byte* out) {
    out[0] = static_cast<std::byte>(v.index());
    const std::size_t n = std::visit([out](const auto& alt) {
      using T = std::decay_t<decltype(alt)>;
      Codec<T>::encode(alt, out + 1);
      return Codec<T>::size(alt);
    }, v);
    if constexpr (kAllFixed) std::memset(out + 1 + n, 0, kLargest - n);
  }
  static V decode(const std::byte* in, std::size_t n) {
    const std::size_t index =
        detail::read_tag(in, n, sizeof...(Ts) - 1, typeid(V).name(), "the alternative index");
    if (kAllFixed && n != fixed_size) detail::throw_decode_error(typeid(V).name(), n, "wrong size");
    return decode_alternative(index, in + 1, n - 1, std::index_sequence_for<Ts...>{});
  }

 private:
  template <std::size_t I>
  static V decode_one(const std::byte* in, std::size_t n) {
    using T = std::variant_alternative_t<I, V>;
    // With padding, the alternative is the first bytes of the value.
    const std::size_t own = kAllFixed ? codec_fixed_size_v<T> : n;
    return V(std::in_place_index<I>, Codec<T>::decode(in, own));
  }
  template <std::size_t... I>
  static V decode_alternative(std::size_t index, const std::byte* in, std::size_t n,
                              std::index_sequence<I...>) {
    using Decoder = V (*)(const std::byte*, std::size_t);
    static constexpr Decoder decoders[] = {&decode_one<I>...};
    return decoders[index](in, n);
  }
};

//! A value's encoding as a string of bytes (Codec<T>::size, then encode): what the Manager and
//! multiproc::redis store.
template <class T>
std::string to_bytes(const T& v) {
  std::string s(Codec<T>::size(v), '\0');
  Codec<T>::encode(v, reinterpret_cast<std::byte*>(s.data()));
  return s;
}

//! The value back from its encoding. Throws: Error(errc::corrupt) from the codec when `bytes`
//! are not a T's encoding (another type's, or a writer's garbage).
template <class T>
T from_bytes(std::string_view bytes) {
  return Codec<T>::decode(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
}

}  // namespace multiproc
