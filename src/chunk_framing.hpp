// How a message larger than one record crosses a channel, for Queue (queue.cpp) and Pipe
// (pipe.cpp): a First chunk (the message's length as a u64, then its first bytes), Middle chunks,
// and a Last chunk, appended by one producer holding its end so that they are contiguous.
// Private to src/.
#pragma once

#include <multiproc/detail/channel.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace multiproc::detail {

//! Bytes of the message in the First chunk of an n-byte message cut into chunks of at most
//! `max_payload` bytes (the First also carries the length). The First chunk needs room for
//! kChunkLength + that many bytes.
inline constexpr std::size_t kChunkLength = sizeof(std::uint64_t);
inline std::size_t first_chunk_bytes(std::size_t n, std::size_t max_payload) noexcept {
  return std::min(n, max_payload - kChunkLength);
}

//! Appends the First chunk of the n-byte message `data`: its length, then its first `part` bytes.
//! Requires: the producer end held, room for kChunkLength + part bytes.
inline void append_first_chunk(const ChannelRef& ch, const std::byte* data, std::size_t n,
                               std::size_t part) {
  const std::uint64_t total = n;
  ch.append(kChunkLength + part, kRecordFirst, [&](unsigned char* dst) {
    std::memcpy(dst, &total, kChunkLength);
    std::memcpy(dst + kChunkLength, data, part);
  });
}

//! Appends bytes [sent, sent + part) of the n-byte message `data`: a Middle chunk, or the Last
//! when they end it. Requires: the producer end held, room for part bytes.
inline void append_next_chunk(const ChannelRef& ch, const std::byte* data, std::size_t n,
                              std::size_t sent, std::size_t part) {
  const RecordType type = sent + part == n ? kRecordLast : kRecordMiddle;
  ch.append(part, type, [&](unsigned char* dst) { std::memcpy(dst, data + sent, part); });
}

}  // namespace multiproc::detail
