// tests/fuzz/codec_fuzz.cpp — libFuzzer target: the codecs decode bytes that another process
// wrote (a queue record, a pipe message, a pool task), so any bytes at all must either decode or
// throw multiproc::Error(errc::corrupt).
//
// Input: [selector][payload]; the selector picks a type of fuzz::Cases (codec_cases.hpp: bool,
// integers, double, enums, a plain struct, std::array, std::string, vectors, nested vectors,
// optionals, pair, tuple, variants, a user codec built on decode_fields with a bool and an enum
// field), and Codec<T>::decode(payload) runs. Then:
//   - a throw of multiproc::Error must carry errc::corrupt and a message;
//   - a value that decoded is used (compared, re-encoded): an invalid bool, enum, optional flag or
//     variant index in it is a UBSan or ASan report here;
//   - re-encoding it gives bytes of exactly Codec<T>::size (fixed_size when declared) that decode
//     again, to an equal value that re-encodes to as many bytes — the same bytes (one round reaches
//     a fixed point) unless the type holds padding copied byte for byte (fuzz::kFixedBytes).
// Anything else is a finding: a crash, a sanitizer report, another exception type (uncaught:
// std::terminate), an allocation above -malloc_limit_mb, a hang above -timeout.
// MULTIPROC_FUZZ_CODEC_SKIP=4,13 (case numbers of codec_cases.hpp) ignores those cases, to fuzz
// the others past a known finding.
#include "codec_cases.hpp"

#include <multiproc/error.hpp>

#include <bitset>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <typeinfo>
#include <vector>

namespace {

[[noreturn]] void finding(const char* type, const char* what) {
  std::fprintf(stderr, "codec_fuzz: %s: %s\n", type, what);
  std::abort();
}

template <class T>
std::vector<std::byte> encode(const T& v) {
  std::vector<std::byte> out(multiproc::Codec<T>::size(v));
  if constexpr (multiproc::codec_fixed_size_v<T> != 0) {
    if (out.size() != multiproc::codec_fixed_size_v<T>) {
      finding(typeid(T).name(), "size() differs from fixed_size");
    }
  }
  multiproc::Codec<T>::encode(v, out.data());
  return out;
}

// Decodes n bytes as T; nullopt when the codec refused them as it should.
template <class T>
std::optional<T> decode(const std::byte* p, std::size_t n) {
  try {
    return multiproc::Codec<T>::decode(p, n);
  } catch (const multiproc::Error& e) {
    if (e.code() != multiproc::errc::corrupt) finding(typeid(T).name(), "decode threw an Error that is not errc::corrupt");
    if (std::strlen(e.what()) == 0) finding(typeid(T).name(), "decode threw an Error without a message");
    return std::nullopt;
  }
}

template <class T>
void check(const std::byte* p, std::size_t n) {
  if constexpr (multiproc::has_codec_v<T>) {
    const std::optional<T> v = decode<T>(p, n);
    if (!v) return;
    const std::vector<std::byte> a = encode(*v);
    std::optional<T> w;
    try {
      w.emplace(multiproc::Codec<T>::decode(a.data(), a.size()));
    } catch (const multiproc::Error&) {
      finding(typeid(T).name(), "a decoded value re-encodes to bytes that do not decode");
    }
    if constexpr (fuzz::kCompareValues<T>) {
      if (!(*v == *w)) finding(typeid(T).name(), "a decoded value round-trips to a different value");
    }
    const std::vector<std::byte> b = encode(*w);
    if (b.size() != a.size()) finding(typeid(T).name(), "equal values encode to different sizes");
    if constexpr (fuzz::kFixedBytes<T>) {
      if (b != a) finding(typeid(T).name(), "re-encoding is not a fixed point");
    }
  } else {
    (void)p;
    (void)n;
  }
}

using Check = void (*)(const std::byte*, std::size_t);

template <std::size_t... I>
constexpr std::array<Check, sizeof...(I)> make_checks(std::index_sequence<I...>) {
  return {&check<std::tuple_element_t<I, fuzz::Cases>>...};
}
constexpr auto kChecks = make_checks(std::make_index_sequence<fuzz::kCases>{});

std::bitset<fuzz::kCases> skipped;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* list = std::getenv("MULTIPROC_FUZZ_CODEC_SKIP")) {
    for (const char* p = list; *p != '\0';) {
      char* end = nullptr;
      const unsigned long i = std::strtoul(p, &end, 10);
      if (end == p || i >= fuzz::kCases) finding("MULTIPROC_FUZZ_CODEC_SKIP", "not a list of case numbers");
      skipped.set(i);
      p = *end == ',' ? end + 1 : end;
    }
    std::fprintf(stderr, "codec_fuzz: skipping cases %s\n", list);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // libFuzzer hands over a heap copy of exactly `size` bytes: ASan sees any read past the payload.
  const std::size_t selector = data[0] % fuzz::kCases;
  if (skipped.test(selector)) return 0;
  kChecks[selector](reinterpret_cast<const std::byte*>(data + 1), size - 1);
  return 0;
}
