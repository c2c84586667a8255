// Non-template parts of Queue, JoinableQueue and SimpleQueue, and of the codecs.
#include <multiproc/codec.hpp>
#include <multiproc/queue.hpp>

#include "os.hpp"

#include <climits>

namespace multiproc {
namespace detail {

void throw_decode_error(const char* type, std::size_t got, const char* why) {
  throw Error(errc::corrupt, "multiproc: cannot decode a " + demangle(type) + " from " +
                                 std::to_string(got) + " bytes: " + why);
}

SegmentLayout queue_layout(Kind kind, const ElementType& element, std::uint64_t capacity,
                           std::uint32_t record_size, std::uint64_t bytes, const std::string& what) {
  const std::uint64_t ring = ring_bytes_for(capacity, record_size, bytes, what);
  SegmentLayout layout;
  layout.kind = kind;
  layout.element = element;
  layout.count = capacity;
  layout.body_size = kChannelHeader + ring;
  layout.body_alignment = 64;
  return layout;
}

Segment::Init queue_init(std::uint64_t capacity, std::uint32_t record_size,
                         std::uint64_t ring_bytes, std::string what) {
  return [=](void* body) {
    channel_init(static_cast<ChannelState*>(body), ring_bytes, capacity, record_size,
                 kChannelHeader, what);
  };
}

ChannelState* queue_state(const Segment& seg, std::uint32_t record_size) {
  auto* c = static_cast<ChannelState*>(seg.body());
  const std::uint64_t rb = c->ring_bytes;
  if (seg.body_size() < kChannelHeader || c->ring_offset != kChannelHeader || rb == 0 ||
      (rb & (rb - 1)) != 0 || seg.body_size() != kChannelHeader + rb ||
      c->capacity != seg.count() || c->capacity == 0 || c->capacity > kMaxCapacity ||
      c->record_size != record_size) {
    seg.fail(errc::corrupt, "its channel header does not match its segment (capacity " +
                                std::to_string(c->capacity) + ", ring " + std::to_string(rb) +
                                " bytes, record size " + std::to_string(c->record_size) + ")");
  }
  return c;
}

void throw_too_large(const std::string& what, std::size_t n, std::size_t max) {
  throw Error(errc::too_large, what + ": a message of " + std::to_string(n) +
                                   " bytes can never fit (at most " + std::to_string(max) +
                                   " per message; create the queue with more bytes)");
}

void throw_closed(const std::string& what, const char* operation) {
  throw Closed(what + ": " + operation + (std::string(operation) == "put"
                                              ? " on a closed queue"
                                              : " on a closed queue that has been drained"));
}

namespace {
constexpr std::uint64_t kRecordMask = (std::uint64_t{1} << 24) - 1;
std::uint64_t unfinished(const ChannelState* c, std::uint64_t done) noexcept {
  const std::uint64_t put = cursor_records(c->producer.cursor.load(std::memory_order_acquire));
  return (put - done) & kRecordMask;
}
}  // namespace

void task_done(ChannelState* c, const std::string& what) {
  std::uint64_t done = c->done.load(std::memory_order_relaxed);
  for (;;) {
    if (unfinished(c, done) == 0) {
      throw Error(errc::bad_state, what + ": task_done() called more times than messages were put");
    }
    if (c->done.compare_exchange_weak(done, done + 1)) break;
  }
  if (unfinished(c, done + 1) == 0) ChannelRef::notify(c->done_signal, INT_MAX);
}

bool join_until(const ChannelRef& ch, const Clock::time_point* deadline) {
  ChannelState* c = ch.state();
  auto all_done = [c] { return unfinished(c, c->done.load(std::memory_order_acquire)) == 0; };
  while (!all_done()) {
    if (!ch.sleep_until(c->done_signal, all_done, deadline)) return all_done();
  }
  return true;
}

}  // namespace detail
}  // namespace multiproc
