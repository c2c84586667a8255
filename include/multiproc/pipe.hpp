// multiproc/pipe.hpp — a two-ended message channel between processes (Python's
// multiprocessing.Pipe and its Connection objects).
//
//   auto [parent_end, child_end] = mp::Pipe();
//   mp::Process child([child_end] { child_end.send(std::string("hello")); });
//   child.start();
//   child_end.close();                          // this process no longer holds the child's end
//   std::string s = parent_end.recv<std::string>();
//   try { parent_end.recv<std::string>(); } catch (const mp::EOFError&) { /* child done */ }
//
// Pipe(duplex = true) returns two Connections. Duplex: each end sends to and receives from the
// other. With duplex = false, .first only receives and .second only sends; the wrong direction
// throws Error(errc::wrong_direction).
//
// send(v) / recv<T>() carry typed values through Codec<T> (codec.hpp); send_bytes / recv_bytes /
// recv_bytes_into carry raw bytes; both kinds of message are interchangeable. Message boundaries
// are kept, and a message may be of any size: one larger than 128 KiB (or than half the ring)
// streams through it in chunks, the receiver copying one out while the sender writes the next. recv_bytes_into with a too-small buffer throws
// Error(errc::too_large) and leaves the message in the pipe; a recv that throws anything else
// (a decode error, no memory for the message) has taken the message: the next recv gets the one
// after it. poll(d) waits up to d for something to receive (or for EOF).
//
// End of file, as with OS pipes: an end is open while some process holds it and has not closed
// it. Holders: the process that made the Pipe; a Process child whose callable or arguments hold
// a copy of the Connection (captured by value — Process::start registers the child before it
// returns; ends the child merely inherits with the parent's memory do not count, unlike file
// descriptors); a child of a raw fork() (which holds everything it inherited); any process that
// opened the end by name or used it. close(), the destruction of the last handle in a process,
// and the death of the process (even by SIGKILL) all end a holding. When the peer's end is
// closed and everything it sent has been received, recv throws EOFError; a send to a closed peer
// throws Closed (at once after close(); after a peer's death, when the ring is full and the
// sender would wait). So, as in Python, close your copy of the child's end after starting it.
//
// Threads and processes may share one end; each message is sent and received whole (a sender or
// receiver holds its end for a whole message). Latency: one side that keeps sending holds a lease
// on its end (no atomic read-modify-write per message); a blocked receiver spins briefly, then
// sleeps on a futex (no CPU).
//
// Crashes: a sender killed mid-message loses that message: the receiver drops the part it had
// (the next sender marks it aborted, or the receiver notices the sender's death). A receiver
// killed mid-message loses it too; the next receiver skips its remaining chunks. Nothing is ever
// delivered twice, torn, or mixed with another message. Dead peers are noticed within 100 ms.
//
// Damage: any process of the user can write the segment's bytes. Geometry is copied and checked
// at open, so nothing a writer puts there makes a send or recv touch memory outside the segment;
// a recv that finds a damaged record or impossible cursors throws Error(errc::corrupt) once,
// having skipped what was published up to then, and the next recv works. A damaged holder table
// is clamped to its 1024 entries (detail/holder_table.hpp).
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/channel.hpp>
#include <multiproc/detail/fork_hooks.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/segment.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace multiproc {

//! Which end of a named Pipe to open.
enum class PipeEnd : std::uint8_t { first = 0, second = 1 };

namespace detail {
class ConnectionImpl;
struct PipeFactory;
}  // namespace detail

class Connection {
 public:
  //! Effects: opens one end of the Pipe `name` (created with Pipe(create_only, name, ...)).
  //! Throws: Error as Segment::open; Error(errc::invalid_argument) naming the pipe for an `end`
  //! other than PipeEnd::first or PipeEnd::second; Error(errc::corrupt) for a damaged header.
  Connection(open_only_t, const Name& name, PipeEnd end);

  // Copies share the end. A copy or move made while a Process builds its target (a capture by
  // value) makes that Process's child a holder of the end.
  Connection(const Connection& other) : impl_(other.impl_) { detail::note_captured(impl_); }
  Connection(Connection&& other) noexcept : impl_(std::move(other.impl_)) { note_moved(); }
  Connection& operator=(const Connection& other) {
    impl_ = other.impl_;
    detail::note_captured(impl_);
    return *this;
  }
  Connection& operator=(Connection&& other) noexcept {
    impl_ = std::move(other.impl_);
    note_moved();
    return *this;
  }
  ~Connection() = default;

  //! Effects: sends v, encoded with Codec<T>; blocks while the pipe is full.
  //! Throws: Closed if the peer's end is closed; Error(errc::wrong_direction) on a receive-only
  //! end; Error(errc::closed) after close().
  template <class T>
  void send(const T& v) const {
    static_assert(has_codec_v<T>, "send(v) needs a multiproc::Codec<T> (see codec.hpp)");
    const std::size_t n = Codec<T>::size(v);
    if constexpr (detail::raw_encoding_v<T>) {
      // A string or a vector of plain elements is its own bytes: sent from where they are, so
      // that one too large for a record streams without an encoded copy first.
      send_bytes(detail::raw_bytes(v), n);
    } else {
      send_encoded(n, [&v](std::byte* out) { Codec<T>::encode(v, out); });
    }
  }

  //! Returns: the next message, decoded with Codec<T>; blocks until one arrives.
  //! Throws: EOFError when the peer's end is closed and everything was received;
  //! Error(errc::wrong_direction) on a send-only end; what Codec<T>::decode throws.
  template <class T>
  T recv() const {
    static_assert(has_codec_v<T>, "recv<T>() needs a multiproc::Codec<T> (see codec.hpp)");
    T out{};
    receive_decoded([&out](const std::byte* in, std::size_t n) { out = Codec<T>::decode(in, n); });
    return out;
  }

  //! Effects: sends n bytes as one message (any size).
  void send_bytes(const void* data, std::size_t n) const;
  void send_bytes(std::string_view bytes) const { send_bytes(bytes.data(), bytes.size()); }
  //! Python's send_bytes(buf, offset, size): sends bytes [offset, offset + size) of `buf` as one
  //! message; size = std::nullopt (Python's None) sends to the end of `buf`. Offset and size
  //! are signed, so that a negative one is reported as Python reports it. Both are required:
  //! send_bytes(p, n) with two arguments is always (pointer, length).
  //! Throws: Error(errc::invalid_argument) naming the connection, with Python's messages:
  //! "offset is negative", "buffer length < offset", "size is negative", "buffer length <
  //! offset + size"; otherwise as send_bytes(data, n).
  void send_bytes(std::string_view buf, std::ptrdiff_t offset,
                  std::optional<std::ptrdiff_t> size) const {
    send_bytes(buf.data(), buf.size(), offset, size);
  }
  //! The same on `length` bytes at `data`.
  void send_bytes(const void* data, std::size_t length, std::ptrdiff_t offset,
                  std::optional<std::ptrdiff_t> size) const;
  //! Returns: the next message's bytes.
  std::string recv_bytes() const;
  //! Effects: receives the next message into buffer. Returns: its length.
  //! Throws: Error(errc::too_large) if it is longer than `size` — the message stays in the pipe.
  std::size_t recv_bytes_into(void* buffer, std::size_t size) const;

  //! Returns: whether a message (or EOF) is ready to receive, waiting up to `timeout` for one.
  template <class Rep = long, class Period = std::ratio<1>>
  bool poll(const std::chrono::duration<Rep, Period>& timeout = std::chrono::seconds(0)) const {
    const auto deadline = detail::deadline_after(timeout);
    return poll_until(deadline);
  }

  //! Effects: this process stops holding this end (all its copies of the handle); the peer gets
  //! EOF once no other process holds it. Other threads of this process blocked on the end (in
  //! recv, poll, or a send waiting for room) wake with Error(errc::closed). Idempotent.
  void close() const;
  //! Whether close() was called on this end in this process.
  bool closed() const noexcept;

  //! Which end this is.
  PipeEnd end() const noexcept;
  bool can_send() const noexcept;
  bool can_recv() const noexcept;
  const Segment& segment() const noexcept;

  //! For multiproc::wait(): the channel this end receives from (nullptr if it cannot receive),
  //! and whether the peer's end is closed now.
  const detail::ChannelRef* receive_channel() const noexcept;
  bool peer_closed() const;

 private:
  friend struct detail::PipeFactory;
  explicit Connection(std::shared_ptr<detail::ConnectionImpl> impl) : impl_(std::move(impl)) {}
  void note_moved() noexcept {
    try {
      detail::note_captured(impl_);
    } catch (...) {  // out of memory while recording: the child registers when it first uses it
    }
  }

  template <class Encode>
  void send_encoded(std::size_t n, Encode encode) const {
    struct Ctx {
      Encode* encode;
      static void call(void* c, std::byte* out) { (*static_cast<Ctx*>(c)->encode)(out); }
    } ctx{&encode};
    send_with(n, &Ctx::call, &ctx);
  }
  template <class Decode>
  void receive_decoded(Decode decode) const {
    struct Ctx {
      Decode* decode;
      static void call(void* c, const std::byte* in, std::size_t n) {
        (*static_cast<Ctx*>(c)->decode)(in, n);
      }
    } ctx{&decode};
    receive_with(&Ctx::call, &ctx);
  }
  void send_with(std::size_t n, void (*encode)(void*, std::byte*), void* ctx) const;
  void receive_with(void (*decode)(void*, const std::byte*, std::size_t), void* ctx) const;
  bool poll_until(detail::Clock::time_point deadline) const;

  std::shared_ptr<detail::ConnectionImpl> impl_;
};

//! Returns: two connected Connections, shared with children forked after this call. With
//! duplex = false, .first only receives and .second only sends. `ring_bytes` is the buffer of
//! each direction (0: 1 MiB); messages of any size stream through it. A send waits when the
//! messages not yet received fill the ring — or, just after the sender started again from the
//! ring's beginning (it does when the receiver has taken everything, to stay in warm memory), at
//! least a quarter of it, until the receiver takes the next message.
std::pair<Connection, Connection> Pipe(bool duplex = true, std::size_t ring_bytes = 0);

//! As above, by name: other processes open an end with Connection(open_only, name, PipeEnd::...).
std::pair<Connection, Connection> Pipe(create_only_t, const Name& name, bool duplex = true,
                                       std::size_t ring_bytes = 0);

}  // namespace multiproc
