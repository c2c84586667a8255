// multiproc/detail/queue_segment.hpp — the out-of-line parts of Queue, JoinableQueue and
// SimpleQueue (src/queue.cpp): the layout of a queue segment, close, join, and messages larger
// than one record. The put/get fast path stays inline in queue.hpp. Private: users never name it.
#pragma once

#include <multiproc/detail/cache_line.hpp>
#include <multiproc/detail/channel.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/segment.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace multiproc::detail {

//! Bytes before a queue's ring: the ChannelState, padded to whole cache lines.
inline constexpr std::size_t kChannelHeader = round_up_to_cache_line(sizeof(ChannelState));

//! Creates or checks the layout of a queue segment.
SegmentLayout queue_layout(Kind kind, const ElementType& element, std::uint64_t capacity,
                           std::uint32_t record_size, std::uint64_t bytes, const std::string& what);
Segment::Init queue_init(std::uint64_t capacity, std::uint32_t record_size, std::uint64_t ring_bytes,
                         std::string what);
//! The channel of a queue segment, its geometry copied and checked against the segment (records of
//! `record_size` bytes; 0: variable). Throws: Error(errc::corrupt) naming the queue.
ChannelRef queue_channel(const Segment& seg, std::uint32_t record_size);
[[noreturn]] void throw_closed(const ChannelRef& ch, const char* operation);
//! QueueBase::close(), out of line (not a fast path).
void close_queue(const ChannelRef& ch);
//! For a get that found a closed queue empty, holding the consumer end: whether a streamed put
//! begun before close() may still publish (its sender streams and lives). close() closes
//! without the producer end while a message streams, even before its First chunk is visible.
//! Callers look at has_data() again after a false answer (a Last chunk may have landed).
bool streamed_put_open(const ChannelRef& ch) noexcept;
//! The same question without system calls, for a sleeper: whether the producer end still says
//! a message is streaming.
inline bool streamed_put_open_hint(const ChannelRef& ch) noexcept {
  return ch.producer().open_message.load(std::memory_order_relaxed) == kOpenStreaming;
}
void task_done(const ChannelRef& ch);
bool join_until(const ChannelRef& ch, const Clock::time_point* deadline);
//! Streams a message larger than one record (`n` encoded bytes) through the ring.
//! Returns false if it was given up at the deadline (wait = false: when the ring had no room).
//! Throws: Closed after close() or shutdown().
bool put_large(const ChannelRef& ch, const std::byte* data, std::size_t n,
               const Clock::time_point* deadline, bool wait);
//! Holding the consumer end, with peek() having returned a record other than kRecordWhole:
//! assembles a streamed message into `out` (returns true), or consumes remains of a message
//! whose reader died (returns false: look again). `out` grows with the bytes that arrive (the
//! announced length is not trusted beyond a 64 MiB reservation). Throws: Closed if the queue is
//! shut down immediately meanwhile; Error(errc::corrupt) for a damaged record (consumed, or
//! skipped with what was published after it: see channel.hpp; the next get goes on).
bool take_large(const ChannelRef& ch, const RecordHeader& h, const unsigned char* src,
                std::vector<std::byte>& out);
//! The same, assembling the bytes into a string: a Queue<std::string> (whose encoding is its
//! characters) returns it as it is, without a decoded copy.
bool take_large(const ChannelRef& ch, const RecordHeader& h, const unsigned char* src,
                std::string& out);
//! The capacity an unbounded queue (capacity 0) gets, for records of `record_size` (0: variable).
std::uint64_t unbounded_capacity(std::uint32_t record_size) noexcept;

}  // namespace multiproc::detail
