// Non-template parts of Queue, JoinableQueue and SimpleQueue.
#include <multiproc/queue.hpp>

#include "chunk_framing.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>

namespace multiproc {
namespace detail {

namespace {
// The ring of an unbounded queue (capacity 0): large, and sparse until messages pass through.
constexpr std::uint64_t kUnboundedRingBytes = std::uint64_t{64} << 20;
// The most a streamed message reserves before its bytes arrive (its length is read from shared
// memory, and may lie).
constexpr std::uint64_t kLargeReserve = std::uint64_t{64} << 20;
}  // namespace

std::uint64_t unbounded_capacity(std::uint32_t record_size) noexcept {
  if (record_size == 0) return kMaxCapacity;
  return std::clamp<std::uint64_t>(kUnboundedRingBytes / record_size, 1, kMaxCapacity);
}

SegmentLayout queue_layout(Kind kind, const ElementType& element, std::uint64_t capacity,
                           std::uint32_t record_size, std::uint64_t bytes, const std::string& what) {
  if (capacity == 0) {  // unbounded, as Python's maxsize <= 0: as large as is sensible
    capacity = unbounded_capacity(record_size);
    if (record_size == 0 && bytes == 0) bytes = kUnboundedRingBytes;
  }
  const std::uint64_t ring = ring_bytes_for(capacity, record_size, bytes, what);
  SegmentLayout layout;
  layout.kind = kind;
  layout.element = element;
  layout.count = capacity;
  layout.body_size = kChannelHeader + ring;
  layout.body_alignment = kCacheLine;
  return layout;
}

Segment::Init queue_init(std::uint64_t capacity, std::uint32_t record_size,
                         std::uint64_t ring_bytes, std::string what) {
  return [=](void* body) {
    channel_init(static_cast<ChannelState*>(body), ring_bytes, capacity, record_size,
                 kChannelHeader, what);
  };
}

ChannelRef queue_channel(const Segment& seg, std::uint32_t record_size) {
  if (seg.body_size() < kChannelHeader) {
    seg.fail(errc::corrupt, "its body is too small for a channel header");
  }
  // The geometry is copied (and checked against the mapping) once, here; then compared, copy
  // against copy, with what the segment header says.
  ChannelRef ch(static_cast<ChannelState*>(seg.body()), seg.body_size(), &seg.describe());
  if (ch.ring_offset() != kChannelHeader || seg.body_size() != kChannelHeader + ch.ring_bytes() ||
      ch.capacity() != seg.count() || ch.record_size() != record_size) {
    seg.fail(errc::corrupt, "its channel header does not match its segment (capacity " +
                                std::to_string(ch.capacity()) + ", ring " +
                                std::to_string(ch.ring_bytes()) + " bytes, record size " +
                                std::to_string(ch.record_size()) + ")");
  }
  return ch;
}

void close_queue(const ChannelRef& ch) {
  for (;;) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(10);
    const EndToken t = ch.acquire(ch.producer(), &deadline);
    if (t != EndToken::none) {
      ch.close();
      ch.release(ch.producer(), t);
      return;
    }
    // A snapshot (only the value matters): a stale answer costs one more round.
    if (ch.producer().open_message.load(std::memory_order_relaxed) == kOpenStreaming) {
      ch.close();
      return;
    }
  }
}

bool streamed_put_open(const ChannelRef& ch) noexcept {
  // close() read kOpenStreaming before it set the closed bit that our caller saw (acquire), so
  // this load sees kOpenStreaming or a later value (coherence). Its acquire (in
  // open_message_dead) pairs with put_large's release store of kOpenNone after its Last chunk.
  // A dead sender's message never completes: then the queue is drained.
  return !ch.open_message_dead(true);
}

void throw_closed(const ChannelRef& ch, const char* operation) {
  const bool put = std::string(operation) == "put";
  const char* state = ch.shut_down_immediately()
                          ? " on a queue shut down immediately (what was queued is discarded)"
                      : put ? " on a closed queue"
                            : " on a closed queue that has been drained";
  throw Closed(ch.what() + ": " + operation + state);
}

namespace {

// Messages put and not yet marked done, all 64 bits: puts - done, less what an immediate
// shutdown discarded (the messages still in the ring: nobody can take them any more).
// `done` is read before this call; the cursor once, before the consumer's: every stale value
// errs towards more unfinished, never fewer.
std::uint64_t unfinished(const ChannelRef& ch, std::uint64_t done) noexcept {
  ChannelState* c = ch.state();
  const bool discarded = ch.shut_down_immediately();
  const std::uint64_t base = c->puts_base.load(std::memory_order_acquire);
  const std::uint64_t tail = c->producer.cursor.load(std::memory_order_acquire);
  const std::uint64_t puts = base + ((cursor_records(tail) - base) & kCursorRecordMask);
  std::uint64_t left = 0;
  if (discarded) left = records_between(c->consumer.cursor.load(std::memory_order_acquire), tail);
  left = std::min(left, ch.capacity());  // damaged cursors must not make join() wait forever
  const std::uint64_t taken = puts > left ? puts - left : 0;
  return taken > done ? taken - done : 0;
}

}  // namespace

void task_done(const ChannelRef& ch) {
  ChannelState* c = ch.state();
  std::uint64_t done = c->done.load(std::memory_order_relaxed);
  for (;;) {
    if (unfinished(ch, done) == 0) {
      throw Error(errc::bad_state,
                  ch.what() + ": task_done() called more times than messages were put");
    }
    if (c->done.compare_exchange_weak(done, done + 1)) break;
  }
  if (unfinished(ch, done + 1) == 0) ChannelRef::notify(c->done_signal, INT_MAX);
}

bool join_until(const ChannelRef& ch, const Clock::time_point* deadline) {
  ChannelState* c = ch.state();
  auto all_done = [&] { return unfinished(ch, c->done.load(std::memory_order_acquire)) == 0; };
  while (!all_done()) {
    if (!ch.sleep_until(c->done_signal, all_done, deadline)) return all_done();
  }
  return true;
}

// ---- messages larger than a record -----------------------------------------------------------
//
// The producer holds its end from the first chunk to the last, so chunks of one message are
// contiguous; open_message says a message is half sent (kOpenStreaming) or given up
// (kOpenAbandoned). The next producer to take the end just clears it: a consumer that was
// assembling the dead message drops it when it sees the next message begin, or when it finds no
// more data and open_message_dead().

namespace {

class HeldProducer {
 public:
  HeldProducer(const ChannelRef& ch, const Clock::time_point* deadline)
      : ch_(ch), t_(ch.acquire(ch.producer(), deadline)) {}
  ~HeldProducer() { release(); }
  HeldProducer(const HeldProducer&) = delete;
  HeldProducer& operator=(const HeldProducer&) = delete;
  bool held() const noexcept { return t_ != EndToken::none; }
  void release() noexcept {
    if (t_ != EndToken::none) ch_.release(ch_.producer(), t_);
    t_ = EndToken::none;
  }

 private:
  const ChannelRef& ch_;
  EndToken t_;
};

bool past(const Clock::time_point* deadline) {
  return deadline != nullptr && Clock::now() >= *deadline;
}

}  // namespace

bool put_large(const ChannelRef& ch, const std::byte* data, std::size_t n,
               const Clock::time_point* deadline, bool wait) {
  // Chunks of a quarter ring (a few are in flight at once, and a skip to the ring's end wastes
  // at most one), and no larger than max_whole_payload() (the consumer copies one out while we
  // write the next).
  const std::size_t maxp = std::min(static_cast<std::size_t>(ch.ring_bytes() / 4 - kRecordHeader),
                                    ch.max_whole_payload());
  std::size_t part = first_chunk_bytes(n, maxp);
  EndState& e = ch.producer();
  // The first chunk: like a small put, the end is let go while waiting for room.
  for (;;) {
    HeldProducer held(ch, deadline);
    if (!held.held()) return false;
    if (ch.closed()) {
      held.release();
      throw_closed(ch, "put");
    }
    // A message an earlier holder left half sent is dead: say so by moving on.
    e.open_message.store(kOpenNone, std::memory_order_release);
    if (ch.has_room(kChunkLength + part)) {
      e.open_message.store(kOpenStreaming, std::memory_order_relaxed);  // published with the First
      append_first_chunk(ch, data, n, part);
      std::size_t sent = part;
      // The other chunks, holding the end: contiguous in the ring.
      while (sent < n) {
        part = std::min(n - sent, maxp);
        for (;;) {
          if (ch.shut_down_immediately()) {  // what we would send is discarded
            ch.abandon_message();
            held.release();
            throw_closed(ch, "put");
          }
          if (ch.has_room(part)) break;
          if (!wait || past(deadline) ||
              !ch.sleep_until(ch.state()->space,
                              [&] { return ch.room_hint(part) || ch.shut_down_immediately(); },
                              deadline, /*observer=*/true)) {  // see take_large_into's wait
            if (ch.has_room(part)) break;
            ch.abandon_message();  // never delivered: the consumer drops what it has
            return false;
          }
        }
        append_next_chunk(ch, data, n, sent, part);
        sent += part;
      }
      e.open_message.store(kOpenNone, std::memory_order_release);
      return true;
    }
    held.release();
    if (!wait) return false;
    if (!ch.sleep_until(ch.state()->space,
                        [&] { return ch.closed() || ch.room_hint(kChunkLength + part); },
                        deadline)) {
      return false;
    }
  }
}

namespace {

template <class Buffer>
void append_bytes(Buffer& out, const unsigned char* p, std::size_t n) {
  using C = typename Buffer::value_type;
  out.insert(out.end(), reinterpret_cast<const C*>(p), reinterpret_cast<const C*>(p + n));
}

template <class Buffer>
bool take_large_into(const ChannelRef& ch, const RecordHeader& first, const unsigned char* src,
                     Buffer& out) {
  if (first.type != kRecordFirst) {
    // Middle or Last chunks whose First a dead consumer took (or a Pipe-style abort): skip.
    ch.consume(first);
    return false;
  }
  std::uint64_t total;
  if (first.length < sizeof total) {
    ch.consume(first);
    throw_corrupt_record(ch.what(), "a streamed message's first chunk has no length");
  }
  std::memcpy(&total, src, sizeof total);
  const std::uint64_t got0 = first.length - sizeof total;
  if (got0 > total || total <= ch.max_whole_payload() - sizeof total ||
      total > std::numeric_limits<std::size_t>::max() / 2) {
    ch.consume(first);  // its Middle and Last chunks are skipped as orphans
    throw_corrupt_record(ch.what(), "a streamed message announces " + std::to_string(total) +
                                        " bytes, which its first chunk contradicts");
  }
  // The length comes from shared memory: memory grows with the bytes that arrive, not with what
  // the First chunk announces (reserved up to kLargeReserve only; a reservation touches no page).
  out.clear();
  out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(total, kLargeReserve)));
  append_bytes(out, src + sizeof total, static_cast<std::size_t>(got0));
  ch.consume(first);
  std::uint64_t got = got0;
  bool idle = false;  // slept without data arriving: time to ask whether the sender lives
  for (;;) {
    if (ch.has_data()) {
      idle = false;
      RecordHeader h;
      const unsigned char* p = ch.peek(h);
      if (h.type == kRecordMiddle || h.type == kRecordLast) {
        if (got + h.length > total || (h.type == kRecordLast) != (got + h.length == total)) {
          ch.consume(h);
          out.clear();
          throw_corrupt_record(ch.what(), "a streamed message does not match its length");
        }
        append_bytes(out, p, h.length);
        got += h.length;
        ch.consume(h);
        if (h.type == kRecordLast) return true;
        continue;
      }
      // A new message begins (or an abort): the one we have will never be completed.
      out.clear();
      return false;
    }
    if (ch.shut_down_immediately()) {
      out.clear();
      throw_closed(ch, "get");
    }
    if (ch.open_message_dead(idle) && !ch.has_data()) {
      out.clear();  // its sender died or gave up
      return false;
    }
    // Its sender is alive and sending: wait past any deadline (the message is half taken). As an
    // observer, woken by every chunk the producer publishes: a waiter shares the producer's one
    // wake-up with the idle consumers asleep on the same signal, and one of those — which cannot
    // take anything while this thread holds the end — took it: this thread then slept out its
    // liveness slice, 100 ms for each chunk (2 consumers of 300 KB messages on one CPU: 40-60 ms
    // a message instead of 0.1 ms; an outside probe).
    ch.sleep_until(ch.state()->data,
                   [&] { return ch.data_hint() || ch.shut_down_immediately(); }, nullptr,
                   /*observer=*/true);
    idle = true;
  }
}

}  // namespace

bool take_large(const ChannelRef& ch, const RecordHeader& first, const unsigned char* src,
                std::vector<std::byte>& out) {
  return take_large_into(ch, first, src, out);
}

bool take_large(const ChannelRef& ch, const RecordHeader& first, const unsigned char* src,
                std::string& out) {
  return take_large_into(ch, first, src, out);
}

}  // namespace detail
}  // namespace multiproc
