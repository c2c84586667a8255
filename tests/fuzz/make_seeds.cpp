// tests/fuzz/make_seeds.cpp — writes the seed corpora of codec_fuzz and segment_header_fuzz:
//   make_seeds <dir>   (dir: tests/fuzz/corpus) writes <dir>/codec/* and <dir>/segment_header/*.
// codec: for each case of codec_cases.hpp that has a codec, [selector][encoding] of its samples 0..3.
// segment_header: [control][segment] for headers written by the library's own initialise()
// (src/segment/header.cpp) for a few layouts, with control bytes that expect what they hold (so
// they validate) and one that expects another kind. Deterministic but for creator_pid and
// creator_start_time, which the header records; rerun it when an encoding or the header changes.
#include "codec_cases.hpp"

#include "segment/segment_impl.hpp"

#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace mp = multiproc;

void write_file(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

std::string two_digits(std::size_t i) {
  return (i < 10 ? "0" : "") + std::to_string(i);
}

template <class T>
void codec_seeds(const std::string& dir, std::size_t selector, int* written) {
  if constexpr (mp::has_codec_v<T>) {
    std::set<std::vector<unsigned char>> seen;
    for (int k = 0; k < 4; ++k) {
      const T v = fuzz::sample<T>(k);
      std::vector<unsigned char> bytes(1 + mp::Codec<T>::size(v));
      bytes[0] = static_cast<unsigned char>(selector);
      mp::Codec<T>::encode(v, reinterpret_cast<std::byte*>(bytes.data() + 1));
      if (!seen.insert(bytes).second) continue;
      write_file(dir + "/" + two_digits(selector) + "-" + std::to_string(k), bytes);
      ++*written;
    }
  } else {
    std::printf("codec case %zu: no codec for this type in this build, no seed\n", selector);
  }
}

template <std::size_t... I>
void all_codec_seeds(const std::string& dir, int* written, std::index_sequence<I...>) {
  (codec_seeds<std::tuple_element_t<I, fuzz::Cases>>(dir, I, written), ...);
}

// Index of `kind` in segment_header_fuzz.cpp's kKinds table (its control bits 4..7).
struct HeaderSeed {
  const char* name;
  unsigned kind_index;
  mp::SegmentLayout layout;
};

void header_seeds(const std::string& dir, int* written) {
  const mp::ElementType none{};
  const std::vector<HeaderSeed> seeds = {
      {"value_int", 0, {mp::Kind::value, mp::ElementType::of<int>(), 1, 128, 64}},
      {"array_double", 2, {mp::Kind::array, mp::ElementType::of<double>(), 16, 192, 64}},
      {"mutex", 4, {mp::Kind::mutex, none, 0, 64, 64}},
      {"queue_int", 10, {mp::Kind::queue, mp::ElementType::of<int>(), 16, 1024, 64}},
      {"pipe", 12, {mp::Kind::pipe, none, 0, 512, 128}},
      {"shared_memory_100", 13, {mp::Kind::shared_memory, none, 0, 100, 64}},
      {"user_struct", 15, {mp::Kind::user, mp::ElementType::of<fuzz::Plain>(), 3, 0, 64}},
  };
  for (const HeaderSeed& s : seeds) {
    const std::size_t total = mp::detail::seg::total_size_for(s.layout, s.name);
    std::vector<unsigned char> segment(total);
    mp::detail::seg::initialise(segment.data(), s.layout, mp::detail::seg::body_offset_for(s.layout),
                                false, false, {});
    // control: kind from bits 4..7 / from the header, element from the header or none, checksum
    // kept or recomputed; the last one expects a kind the header does not hold.
    const unsigned char controls[] = {
        static_cast<unsigned char>(s.kind_index << 4 | (s.layout.element.size != 0 ? 0x0c : 0)),
        0x0f,
        static_cast<unsigned char>(((s.kind_index + 1) % 16) << 4 | 0x01),
    };
    for (unsigned char c : controls) {
      std::vector<unsigned char> bytes(1 + total);
      bytes[0] = c;
      std::copy(segment.begin(), segment.end(), bytes.begin() + 1);
      char suffix[8];
      std::snprintf(suffix, sizeof suffix, "-%02x", c);
      write_file(dir + "/" + s.name + suffix, bytes);
      ++*written;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <tests/fuzz/corpus>\n", argv[0]);
    return 2;
  }
  const std::string root = argv[1];
  int codec = 0;
  int header = 0;
  all_codec_seeds(root + "/codec", &codec, std::make_index_sequence<fuzz::kCases>{});
  header_seeds(root + "/segment_header", &header);
  std::printf("wrote %d codec seeds to %s/codec, %d header seeds to %s/segment_header\n", codec,
              root.c_str(), header, root.c_str());
  return 0;
}
