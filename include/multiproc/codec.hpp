// multiproc/codec.hpp — how a value becomes bytes in a Queue, a Pipe or a Pool task.
//
// Python pickles; multiproc asks Codec<T>. Built in:
//   - trivially copyable T (ints, doubles, PODs, std::array of them): copied byte for byte;
//   - std::string, and std::vector<U> for trivially copyable U: their bytes;
//   - std::vector<U>, std::pair<A, B>, std::tuple<Ts...> and std::optional<U> of any types with a
//     codec: their elements, each with its length in front when it has no fixed size.
//
// Types that only point at data elsewhere — raw pointers, std::string_view — have no codec: the
// data would not travel. Send a std::string instead.
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
// The contract: size(v) is the number of bytes encode(v, out) writes; decode(in, n) receives
// exactly those n bytes (possibly in another process) and rebuilds the value. A codec whose
// encoding always has the same size may say so with `static constexpr std::size_t fixed_size`.
// decode throws multiproc::Error(errc::corrupt) on bytes it cannot read — never undefined
// behaviour. Codecs are used by one thread at a time and must not keep pointers into `in`.
#pragma once

#include <multiproc/error.hpp>

#include <array>
#include <typeinfo>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace multiproc {

//! Codec<T>: size / encode / decode, see above. Undefined for types without one.
template <class T, class Enable = void>
struct Codec;

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

[[noreturn]] void throw_decode_error(const char* type, std::size_t got, const char* why);

template <class T>
struct is_view : std::false_type {};
template <class C, class Traits>
struct is_view<std::basic_string_view<C, Traits>> : std::true_type {};

// Copied byte for byte: trivially copyable, and not something that only points at its data.
template <class T>
inline constexpr bool is_plain_v = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                                   !std::is_member_pointer_v<T> && !is_view<T>::value;
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

// std::string: its characters.
template <class Traits, class Alloc>
struct Codec<std::basic_string<char, Traits, Alloc>> {
  using S = std::basic_string<char, Traits, Alloc>;
  static std::size_t size(const S& s) noexcept { return s.size(); }
  static void encode(const S& s, std::byte* out) noexcept {
    s.copy(reinterpret_cast<char*>(out), s.size());
  }
  static S decode(const std::byte* in, std::size_t n) {
    return S(reinterpret_cast<const char*>(in), n);
  }
};

// std::vector<U>, U trivially copyable: its elements' bytes.
template <class U, class Alloc>
struct Codec<std::vector<U, Alloc>, std::enable_if_t<detail::is_plain_v<U> && !std::is_same_v<U, bool>>> {
  using V = std::vector<U, Alloc>;
  static std::size_t size(const V& v) noexcept { return v.size() * sizeof(U); }
  static void encode(const V& v, std::byte* out) noexcept {
    if (!v.empty()) std::memcpy(out, v.data(), v.size() * sizeof(U));
  }
  static V decode(const std::byte* in, std::size_t n) {
    if (n % sizeof(U) != 0) detail::throw_decode_error(typeid(V).name(), n, "not a whole number of elements");
    V v(n / sizeof(U));
    if (n != 0) std::memcpy(static_cast<void*>(v.data()), in, n);
    return v;
  }
};

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

struct FieldReader {
  const std::byte* p;
  const std::byte* end;
  const char* type;

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
  detail::FieldReader r{in, in + n, "fields"};
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
    detail::FieldReader r{in, in + n, "std::pair"};
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
    detail::FieldReader r{in, in + n, "std::tuple"};
    std::tuple<Ts...> t{r.template read<Ts>()...};  // braced init: left-to-right
    r.finish();
    return t;
  }
};

// std::vector<U> of non-trivial U (strings, vectors, your types): a count, then the elements.
template <class U, class Alloc>
struct Codec<std::vector<U, Alloc>, std::enable_if_t<!detail::is_plain_v<U> && has_codec_v<U>>> {
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
    detail::FieldReader r{in, in + n, "std::vector"};
    const auto count = r.template read<std::uint64_t>();
    if (count > n) detail::throw_decode_error("std::vector", n, "impossible element count");
    V v;
    v.reserve(static_cast<std::size_t>(count));
    for (std::uint64_t i = 0; i < count; ++i) v.push_back(r.template read<U>());
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
    for (std::size_t i = 0; i < n; ++i) v[i] = in[i] != std::byte{0};
    return v;
  }
};

// std::optional<U>: a flag byte, then the value.
template <class U>
struct Codec<std::optional<U>, std::enable_if_t<!detail::is_plain_v<std::optional<U>> && has_codec_v<U>>> {
  static std::size_t size(const std::optional<U>& o) {
    return 1 + (o ? Codec<U>::size(*o) : 0);
  }
  static void encode(const std::optional<U>& o, std::byte* out) {
    out[0] = static_cast<std::byte>(o ? 1 : 0);
    if (o) Codec<U>::encode(*o, out + 1);
  }
  static std::optional<U> decode(const std::byte* in, std::size_t n) {
    if (n == 0) detail::throw_decode_error("std::optional", n, "message too short");
    if (in[0] == std::byte{0}) {
      if (n != 1) detail::throw_decode_error("std::optional", n, "trailing bytes");
      return std::nullopt;
    }
    return Codec<U>::decode(in + 1, n - 1);
  }
};

}  // namespace multiproc
