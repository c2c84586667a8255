// Private to src/pipe/: the state behind a Connection, and the steps the pipe files share.
// One job per file:
//   pipe.cpp      the Connection API: making and opening pipes, send/recv entry points, close
//   framing.cpp   chunked framing: streaming a message larger than one record, and receiving one
//   tracking.cpp  which ends this process holds, and who holds them after a fork
// The holder table itself (who holds an end) is src/channel/holder_table.cpp.
#pragma once

#include <multiproc/pipe.hpp>

#include <multiproc/detail/cache_line.hpp>
#include <multiproc/detail/holder_table.hpp>
#include <multiproc/detail/this_process.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace multiproc::detail {

inline constexpr std::size_t kChannelSpan = round_up_to_cache_line(sizeof(ChannelState));

// Layout of a pipe segment's body: this header, then the channel towards the first end (ring
// included), then — duplex only — the channel towards the second end.
struct alignas(kCacheLine) PipeState {
  std::uint32_t duplex;
  std::uint32_t reserved;
  std::uint64_t ring_bytes;
  HolderTable holders[2];
};
inline constexpr std::size_t kPipeHeader = round_up_to_cache_line(sizeof(PipeState));

//! Channel `index` of a pipe whose rings are `ring_bytes` long (the caller's checked copy: the
//! header's field is read once, at open).
inline ChannelState* channel_at(PipeState* p, int index, std::uint64_t ring_bytes) {
  return reinterpret_cast<ChannelState*>(reinterpret_cast<unsigned char*>(p) + kPipeHeader +
                                         static_cast<std::size_t>(index) * (kChannelSpan + ring_bytes));
}

//! How often one process scans the peer's holders for liveness at most (a lock and a /proc
//! read per holder): often enough that a dead peer is seen well within one kLivenessSlice, rarely
//! enough that a busy poll() loop does not spend its time in /proc.
inline constexpr std::chrono::milliseconds kPeerScanInterval{20};

//! Sends `head` followed by the n bytes at `body` as one message on c, copied into the ring
//! straight from both (the Pool sends a chunk of map()'s input this way, src/pool/manager.cpp).
//! Throws: as Connection::send_bytes.
void send_parts(const Connection& c, std::string_view head, const std::byte* body, std::size_t n);

//! A send on c waits at most `limit` for room each time it must (0: for good, the default), then
//! throws SendStalled; a message it was streaming is given up (its receiver drops the part). For
//! the Pool's manager thread, which must not wait for good on one stopped worker.
void set_send_stall_limit(const Connection& c, std::chrono::milliseconds limit);
//! Whether the receiver of c has taken everything sent on it (a snapshot).
bool send_drained(const Connection& c);

//! Connection::poll until `deadline` (Clock::time_point::max(): none) for a server or a client
//! that watches its peer's process itself: every `watch.every` with nothing to receive it calls
//! watch.keep_waiting(watch.ctx), and returns false when that says no. Returns true as poll():
//! a message, or the peer's end closed. Unlike poll() it stays registered as a sleeper for the
//! whole wait (one membarrier, not one per slice) and makes no liveness scan of the peer's
//! holders (/proc reads): the watch does that job, once for all of a process's connections (a
//! Manager's client asks whether its server lives, the server whether a client's process does).
//! Throws: as poll().
bool poll_watching(const Connection& c, Clock::time_point deadline, const SliceWatch& watch);
//! Whether the peer's end of c is marked closed (its last holder closed it, or a liveness scan
//! found them all dead): the flag only, no scan.
bool peer_marked_closed(const Connection& c) noexcept;
//! What a send throws when set_send_stall_limit's limit passed with no room.
struct SendStalled : Error {
  using Error::Error;
};

//! Writes one byte of every page in the first `bytes` of each ring of c's pipe (the value that is
//! there), so that this process has mapped them before it sends or receives there: on a VM that
//! maps a page of a process at its first touch (5-10 us a page on host A, docs/benchmarks.md;
//! also after MADV_POPULATE_WRITE), a Pool's first map otherwise paid that inside the map.
//! Requires: no other process uses the rings meanwhile (the Pool's parent calls it before it
//! forks the worker, the worker before it says it is ready).
void touch_rings(const Connection& c, std::size_t bytes);

class ConnectionImpl {
 public:
  ConnectionImpl(Segment seg, PipeEnd end, bool register_self);
  ~ConnectionImpl();

  HolderTable& mine() const { return state_->holders[static_cast<int>(end_)]; }
  HolderTable& peer() const { return state_->holders[1 - static_cast<int>(end_)]; }
  // The checks every send and recv begins with: inline, with what is rare out of line (a send
  // or recv is a few hundred instructions; calls and their register saves were a tenth of it).
  void require_open(const char* action) const {
    // relaxed: a close() racing with this call may or may not be seen, as with any order.
    if (closed_.load(std::memory_order_relaxed) || registered_pid_ != current_pid()) {
      require_open_slow(action);
    }
  }
  void require_open_slow(const char* action) const;
  void require_send() const {
    require_open("send");
    if (!can_send_) wrong_direction(true);
  }
  void require_recv() const {
    require_open("recv");
    if (!can_recv_) wrong_direction(false);
  }
  //! Error(wrong_direction): a send (`sending`) or a receive on the end that cannot do it.
  [[noreturn]] void wrong_direction(bool sending) const;
  //! Whether a live process holds the peer's end. The closed flag costs a load; the liveness
  //! scan behind it (a lock and system calls per holder) runs at most every kPeerScanInterval.
  bool peer_open() const {
    if (holder_table_closed(peer())) return false;
    const auto now = Clock::now();
    if (now - last_scan_.load(std::memory_order_relaxed) < kPeerScanInterval) return true;
    last_scan_.store(now, std::memory_order_relaxed);
    return holders_alive(peer());
  }
  void close();
  void wake_peer() const;
  //! Error(closed) if close() was called on this end in this process (by another thread, while
  //! the caller waited to `action`).
  void throw_if_closed_while_waiting(const char* action) const;

  // Sending, holding the producer end of send_.
  void wait_room(std::size_t n) const {
    if (!send_.has_room(n)) wait_room_slow(n);
  }
  void wait_room_slow(std::size_t n) const;
  void stream(const std::byte* data, std::size_t n) const;
  void abort_open_message() const {
    if (send_.producer().open_message.load(std::memory_order_relaxed) != kOpenNone) {
      abort_open_message_slow();
    }
  }
  void abort_open_message_slow() const;

  Segment seg_;
  PipeState* state_ = nullptr;
  PipeEnd end_;
  ChannelRef recv_, send_;
  bool can_recv_ = false, can_send_ = false;
  std::atomic<bool> closed_{false};
  mutable pid_t registered_pid_ = 0;
  mutable std::atomic<Clock::time_point> last_scan_{Clock::time_point{}};
  std::atomic<std::int64_t> send_stall_ms_{0};  // set_send_stall_limit
  std::string what_;
};

// tracking.cpp
//! Notes a new impl of this process, so that forked children are registered as its holders.
void track(const std::shared_ptr<ConnectionImpl>& impl);
//! The open impl of this process for `end` of the pipe whose body is at `body`, or nullptr.
std::shared_ptr<ConnectionImpl> find_tracked(const void* body, PipeEnd end);

// framing.cpp
// Holds an end for a scope.
class HeldEnd {
 public:
  HeldEnd(const ChannelRef& ch, EndState& e) : ch_(ch), e_(e), t_(ch.acquire(e, nullptr)) {}
  ~HeldEnd() { ch_.release(e_, t_); }
  HeldEnd(const HeldEnd&) = delete;
  HeldEnd& operator=(const HeldEnd&) = delete;

 private:
  const ChannelRef& ch_;
  EndState& e_;
  EndToken t_;
};

// What a receive does with a message: see it whole from the ring, or assemble its chunks.
// The length a First chunk announces comes from shared memory: a Receiver grows its storage
// with the chunks that arrive (begin() may reserve, up to kAssemblyReserve), never to `total` at
// once.
inline constexpr std::uint64_t kAssemblyReserve = std::uint64_t{64} << 20;
struct Receiver {
  // Returns false (and nothing is consumed) if a message of `total` bytes is not acceptable.
  virtual bool accept(std::uint64_t total) = 0;
  virtual void whole(const std::byte* p, std::size_t n) = 0;
  virtual void begin(std::uint64_t total) = 0;  // a chunked message of `total` bytes begins
  virtual void chunk(const std::byte* p, std::size_t n) = 0;  // its next bytes (in order)
  virtual void assembled() = 0;  // all `total` bytes have arrived
  virtual ~Receiver() = default;
};

//! Receives one message (whole or chunked) into r. Throws EOFError when the peer closed its end
//! and everything was received, Error(too_large) when r does not accept the length.
void receive_message(const ConnectionImpl& c, Receiver& r);

}  // namespace multiproc::detail
