// Pipe: chunked framing. A message that fits one ring record goes as one Whole record; a larger
// one streams as First (carrying the total length), Middle..., Last, so there is no size limit
// on a message. A sender that dies (or throws) mid-message is told to the receiver by an Abort
// record from the next sender, or noticed by the receiver itself (open_message_dead).
#include "connection_impl.hpp"

#include "../chunk_framing.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace multiproc::detail {

void ConnectionImpl::abort_open_message_slow() const {
  EndState& e = send_.producer();
  // The previous sender died (or threw) halfway through a chunked message: tell the receiver.
  wait_room(0);
  send_.append(0, kRecordAbort, [](unsigned char*) {});
  e.open_message.store(kOpenNone, std::memory_order_release);
}

void ConnectionImpl::stream(const std::byte* data, std::size_t n) const {
  EndState& e = send_.producer();
  const std::size_t maxp = send_.max_whole_payload();
  e.open_message.store(kOpenStreaming, std::memory_order_relaxed);  // published with the First
  // First chunk: the total length, then as much as fits (chunk_framing.hpp, shared with Queue).
  std::size_t part = first_chunk_bytes(n, maxp);
  try {
    wait_room(kChunkLength + part);
    append_first_chunk(send_, data, n, part);
    std::size_t sent = part;
    while (sent < n) {
      part = std::min(n - sent, maxp);
      wait_room(part);
      append_next_chunk(send_, data, n, sent, part);
      sent += part;
    }
  } catch (...) {
    // Given up (the peer closed its end, this end was closed here, ...): say so, so that a
    // receiver in the middle of it drops the part it has. Without this it waited for the rest
    // for good: the end, released as the exception left, had no holder whose death would tell.
    send_.abandon_message();
    throw;
  }
  e.open_message.store(kOpenNone, std::memory_order_release);
}

void receive_message(const ConnectionImpl& c, Receiver& r) {
  c.require_recv();
  const ChannelRef& ch = c.recv_;
  HeldEnd held(ch, ch.consumer());
  std::uint64_t total = 0, got = 0;
  bool in_message = false, slept = false;
  for (;;) {
    if (ch.has_data()) {
      RecordHeader h;
      // Error(corrupt) for a damaged header: skipped with what was published (channel.hpp).
      const auto* p = reinterpret_cast<const std::byte*>(ch.peek(h));
      switch (h.type) {
        case kRecordWhole:
          if (!r.accept(h.length)) {
            throw Error(errc::too_large, c.what_ + ": the next message has " +
                                             std::to_string(h.length) +
                                             " bytes, more than the buffer; it stays in the pipe");
          }
          try {
            r.whole(p, h.length);
          } catch (...) {
            ch.consume(h);
            throw;
          }
          ch.consume(h);
          return;
        case kRecordFirst: {
          std::uint64_t t = 0;
          if (h.length >= sizeof t) std::memcpy(&t, p, sizeof t);
          if (h.length < sizeof t || h.length - sizeof t > t ||
              t > std::numeric_limits<std::size_t>::max() / 2) {
            ch.consume(h);  // its Middle and Last chunks are skipped as orphans
            throw_corrupt_record(c.what_, "a chunked message's first chunk contradicts its length");
          }
          if (!r.accept(t)) {
            throw Error(errc::too_large, c.what_ + ": the next message has " + std::to_string(t) +
                                             " bytes, more than the buffer; it stays in the pipe");
          }
          total = t;
          got = h.length - sizeof t;
          try {
            r.begin(total);
            r.chunk(p + sizeof t, static_cast<std::size_t>(got));
          } catch (...) {  // no memory for it: the message is dropped, as when a chunk throws
            ch.consume(h);  // (its Middle and Last chunks are skipped as orphans)
            throw;
          }
          in_message = true;
          ch.consume(h);
          break;
        }
        case kRecordMiddle:
        case kRecordLast:
          if (in_message) {
            if (got + h.length > total || (h.type == kRecordLast) != (got + h.length == total)) {
              ch.consume(h);
              throw_corrupt_record(c.what_, "a chunked message does not match its length");
            }
            r.chunk(p, h.length);
            got += h.length;
          }
          ch.consume(h);  // chunks of a message whose first part a dead receiver took: skipped
          if (in_message && h.type == kRecordLast) {
            r.assembled();
            return;
          }
          break;
        case kRecordAbort:
          in_message = false;  // its sender died: drop what we have of it
          ch.consume(h);
          break;
        default:  // peek() lets no other type through
          ch.consume(h);
          throw_corrupt_record(c.what_, "unknown record type " + std::to_string(h.type));
      }
      continue;
    }
    // The cheap closed flag every time; the liveness scans (system calls) only after a sleep
    // that brought nothing — so a dead peer is noticed within 100 ms, at no cost while data flows.
    if (c.peer().closed.load(std::memory_order_acquire) != 0 || (slept && !c.peer_open())) {
      if (!ch.has_data()) {
        throw EOFError(c.what_ + ": the peer closed its end and everything it sent was received");
      }
      continue;
    }
    // has_data() after open_message_dead(): a sender that finishes in between publishes its Last
    // chunk before its release store of kOpenNone, which open_message_dead() reads (acquire) and
    // counts as "not streaming" — so the Last chunk is then seen here and the message is kept.
    // (In the other order a message completing between the two checks was dropped whole.)
    if (slept && in_message &&
        ch.producer().open_message.load(std::memory_order_acquire) == kOpenStreaming &&
        ch.open_message_dead(true) && !ch.has_data()) {
      in_message = false;  // its sender died mid-message; the next sender will also say so
    }
    if (c.closed_.load(std::memory_order_relaxed)) {
      // Closed by another thread of this process. A message in the middle of arriving is received
      // whole while its sender still sends it (other processes may hold this end: the rest would
      // be lost for them too); otherwise this wait ends. has_data() after open_message_dead(),
      // as above: a sender that just finished has published its Last chunk.
      const bool arriving = in_message && (!ch.open_message_dead(true) || ch.has_data());
      if (!arriving) c.throw_if_closed_while_waiting("recv");
    }
    ch.sleep_until(
        ch.state()->data,
        [&] {
          return ch.data_hint() || c.peer().closed.load() != 0 || (!in_message && c.closed_.load());
        },
        nullptr);
    slept = true;
  }
}

}  // namespace multiproc::detail
