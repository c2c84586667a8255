// multiproc/detail/cache_line.hpp — the one cache-line size multiproc pads and aligns to.
// Private: users never name it.
#pragma once

#include <cstddef>

namespace multiproc::detail {

//! Bytes of a cache line on the machines multiproc targets (x86-64, AArch64). Shared structs align
//! their hot words to it so that two processes writing different words do not share a line, and
//! segment bodies start on it. (std::hardware_destructive_interference_size would be the standard
//! name, but g++ warns that its value may differ between builds, and the layout of a shared
//! segment must not.) Changing it changes the layout of every segment.
inline constexpr std::size_t kCacheLine = 64;

//! n rounded up to a whole number of cache lines.
constexpr std::size_t round_up_to_cache_line(std::size_t n) noexcept {
  return (n + kCacheLine - 1) / kCacheLine * kCacheLine;
}

}  // namespace multiproc::detail
