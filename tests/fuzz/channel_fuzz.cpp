// libFuzzer target: the channel ring under Queue and Pipe, with every byte of its shared state
// and ring open to a hostile writer. A ChannelState and its ring live in a heap buffer (made by
// channel_init); the input is a program of operations: overwrite bytes anywhere in the buffer,
// put (whole records, fixed records, or a message streamed in chunks), get (peek/consume,
// take_fixed, take_large), look (size, hints, messages_put), and reopen (a new ChannelRef from the
// possibly damaged header). Nothing may crash, hang or touch memory outside the buffer (ASan);
// multiproc::Error (corrupt, closed) is an allowed outcome.
//
// Input: byte 0 picks the geometry (bit 0: fixed 8-byte records; bits 1-2: ring of 256 << 2k
// bytes; bits 3-5: capacity 2 << k); then operations, one byte each with their arguments.
#include <multiproc/detail/channel.hpp>
#include <multiproc/detail/queue_segment.hpp>
#include <multiproc/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace d = multiproc::detail;

namespace {

struct Input {
  const std::uint8_t* p;
  std::size_t n;
  bool empty() const { return n == 0; }
  std::uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::uint32_t u16() { return byte() | std::uint32_t{byte()} << 8; }
};

const std::string kWhat = "Queue<fuzz>";

// A message of n bytes whose contents depend on (n, seed).
void fill(unsigned char* dst, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<unsigned char>((i * 131 + seed) >> 3);
}

// Streams a message through the ring as Queue's put_large does, without waiting: gives up when
// the ring has no room for the next chunk (as try_put does).
void put_chunked(const d::ChannelRef& ch, std::size_t n, std::uint32_t seed) {
  std::vector<unsigned char> msg(n);
  fill(msg.data(), n, seed);
  const std::size_t maxp = static_cast<std::size_t>(ch.ring_bytes() / 4 - d::kRecordHeader);
  std::size_t part = std::min(n, maxp - 8);
  if (!ch.has_room(8 + part)) return;
  ch.producer().open_message.store(d::kOpenStreaming, std::memory_order_relaxed);
  const std::uint64_t total = n;
  ch.append(8 + part, d::kRecordFirst, [&](unsigned char* dst) {
    std::memcpy(dst, &total, 8);
    std::memcpy(dst + 8, msg.data(), part);
  });
  std::size_t sent = part;
  while (sent < n) {
    part = std::min(n - sent, maxp);
    if (!ch.has_room(part)) {
      ch.abandon_message();
      return;
    }
    ch.append(part, sent + part == n ? d::kRecordLast : d::kRecordMiddle,
              [&](unsigned char* dst) { std::memcpy(dst, msg.data() + sent, part); });
    sent += part;
  }
  ch.producer().open_message.store(d::kOpenNone, std::memory_order_release);
}

void get_one(const d::ChannelRef& ch, bool fixed) {
  if (!ch.has_data()) return;
  if (fixed) {
    unsigned char out[8];
    ch.take_fixed<8>(out);
    return;
  }
  d::RecordHeader h;
  const unsigned char* src = ch.peek(h);
  if (h.type == d::kRecordWhole) {
    volatile unsigned char sink = 0;  // read every byte the header claims: ASan checks them
    for (std::uint32_t i = 0; i < h.length; ++i) sink = sink + src[i];
    ch.consume(h);
    return;
  }
  // Never sleep for a sender: the message is given up (as when its sender is dead).
  ch.producer().open_message.store(d::kOpenAbandoned, std::memory_order_relaxed);
  std::vector<std::byte> out;
  d::take_large(ch, h, src, out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  const std::uint8_t config = in.byte();
  const bool fixed = (config & 1) != 0;
  const std::uint64_t rb = std::uint64_t{256} << (2 * ((config >> 1) & 3));
  const std::uint64_t capacity = std::min<std::uint64_t>(std::uint64_t{2} << ((config >> 3) & 7),
                                                         fixed ? rb / 8 : rb);
  const std::size_t span = d::kChannelHeader + rb;
  // Exactly the span, so that ASan sees any access past the ring.
  auto* buffer = static_cast<unsigned char*>(std::aligned_alloc(d::kCacheLine, span));
  std::memset(buffer, 0, span);
  auto* c = reinterpret_cast<d::ChannelState*>(buffer);
  d::channel_init(c, rb, capacity, fixed ? 8 : 0, d::kChannelHeader, kWhat);
  d::ChannelRef ch(c, span, &kWhat);
  std::uint32_t seed = 1;
  for (int steps = 0; !in.empty() && steps < 256; ++steps) {
    const std::uint8_t op = in.byte();
    try {
      switch (op % 8) {
        case 0: {  // a hostile write: up to 16 bytes anywhere in the buffer
          const std::size_t at = (in.u16() * 8 + (op >> 3)) % span;
          const std::size_t len = std::min<std::size_t>(in.byte() % 17, span - at);
          for (std::size_t i = 0; i < len; ++i) buffer[at + i] = in.byte();
          break;
        }
        case 1: {  // a cursor set outright (the most damaging write)
          std::uint64_t v = 0;
          for (int i = 0; i < 8; ++i) v |= std::uint64_t{in.byte()} << (8 * i);
          ((op >> 3) & 1 ? c->consumer : c->producer).cursor.store(v, std::memory_order_relaxed);
          break;
        }
        case 2:
        case 3: {  // put
          const std::size_t n = fixed ? 8 : in.byte() % (ch.max_record_payload() + 2);
          if (fixed) {
            if (ch.has_room(8)) {
              unsigned char rec[8];
              fill(rec, 8, ++seed);
              ch.append_fixed<8>(rec);
            }
          } else if (n <= ch.max_record_payload()) {
            if (ch.has_room(n)) {
              ch.append(n, d::kRecordWhole, [&](unsigned char* dst) { fill(dst, n, ++seed); });
            }
          } else {
            put_chunked(ch, n + in.byte() * 4, ++seed);
          }
          break;
        }
        case 4:
        case 5:  // get
          get_one(ch, fixed);
          break;
        case 6: {  // the snapshots: never more than the capacity
          if (ch.size() > ch.capacity()) __builtin_trap();
          (void)ch.room_hint(in.byte());
          (void)ch.data_hint();
          (void)ch.messages_put();
          break;
        }
        case 7: {  // another process opens the channel now: the header is checked again
          d::ChannelRef reopened(c, span, &kWhat);
          if (reopened.ring_offset() + reopened.ring_bytes() > span) __builtin_trap();
          // A Queue<T> also refuses another record size (queue_channel); it keeps the old view.
          if (reopened.record_size() == (fixed ? 8u : 0u)) ch = reopened;
          break;
        }
      }
    } catch (const multiproc::Error&) {
      // corrupt, closed: allowed outcomes
    }
  }
  std::free(buffer);
  return 0;
}
