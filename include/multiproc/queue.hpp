// multiproc/queue.hpp — bounded multi-producer multi-consumer queues between processes (Python's
// multiprocessing.Queue, JoinableQueue and SimpleQueue).
//
//   mp::Queue<std::string> jobs(1000);             // up to 1000 messages in flight
//   mp::Process worker([jobs] {
//     try { for (;;) handle(jobs.get()); } catch (const mp::Closed&) {}   // ends when drained
//   });
//   worker.start();
//   jobs.put("https://example.com/");
//   jobs.close();                                   // the worker drains what is left, then stops
//
// Messages are typed: Queue<T> carries any T with a Codec (codec.hpp) — trivially copyable types
// byte for byte, std::string, std::vector, tuples, your own. A Queue holds at most `capacity`
// messages, and its messages live in a ring of `bytes` bytes (variable-size types; default: 256
// per message and at least 64 KiB). A message of any size goes through: one larger than
// max_message_bytes() (half the ring, at most 128 KiB) streams through the ring in chunks, the
// producer writing one while a consumer reads the last (as Pipe does), so the ring bounds memory,
// not message size, and a large message crosses at the speed of both copies at once.
// put() blocks while the queue is full, try_put() returns false, put_for() gives up after a
// timeout; get() blocks while it is empty, try_get() and get_for() return std::nullopt. Messages of
// one producer arrive in the order it put them. A put() that returned is visible to get() at once
// (no feeder thread, unlike Python), and stays in the queue if the producer exits right after.
//
// Large messages: a producer holds its end while it streams one (other producers wait), and a
// consumer holds its end while it assembles one, so chunks of different messages never mix.
// put_for() and try_put() give the message up if the ring has no room for its next chunk by the
// deadline (try_put(): at once) — it is then never delivered, and they return false. The chunks
// it had already written stay in the ring until a get skips them (empty() and size() count no
// message meanwhile): with no consumer, a large put given up can leave too little room for
// the next put, which waits (or fails) until a get runs. A get that
// has begun taking a streamed message finishes it even past its deadline, as long as the producer
// is alive and sending (the deadline bounds the wait for a message to begin).
//
// Unbounded: Queue<T>() (and capacity 0, Python's maxsize <= 0) cannot grow a fixed shared
// ring, so it is a large queue instead: up to 2^23 messages (fewer for fixed-size T over 8 bytes:
// as many as fit in 64 MiB) in a 64 MiB ring. The segment is created sparse: pages cost memory
// only once messages have passed through them (after 64 MiB of traffic, all of them). A put
// blocks only when 2^23 messages, or 64 MiB of them, wait unconsumed; full() reports the count.
//
// close() (= shutdown()): later puts throw Closed; gets drain what is left, then throw Closed — a
// consumer loop ends cleanly without sentinels. shutdown(true) (Python 3.13's immediate=True)
// also discards what is queued: gets throw Closed at once, size() is 0, and a JoinableQueue
// counts the discarded messages as done, so join() returns once the messages already taken are
// marked done. Blocked putters and getters, in any process, wake and throw. Both throw Closed,
// as close() does (not a new ShutDown type): shutdown(false) is close(), and a consumer loop that
// ends on Closed ends on either; the message says which. size(), empty() and full() are
// snapshots.
//
// Shared by fork (copy the handle into the child's lambda) or by name (create_only / open_only /
// open_or_create, checked against T). Any number of threads and processes may put and get.
//
// Speed: one thread that keeps putting (or getting) holds a lease on its end and pays no atomic
// read-modify-write per message, so a single producer and consumer run near the speed of a bare
// spinning ring; with several, each operation takes the end's robust mutex (the message copy
// happens under it). A blocked put or get spins briefly, then sleeps on a futex: no CPU.
//
// Crashes: a producer or consumer killed at any instruction — inside put or get included — never
// leaves the queue unusable. A message is published by one 64-bit store: a producer killed
// mid-put loses only that message (a streamed one too: the consumer assembling it drops it within
// 100 ms, or when the next message begins); a consumer killed mid-get before it advanced its
// cursor leaves the message for the next get, and after that loses it (it was copied out, and is
// gone with the process) — as is a streamed message it had begun (the next consumer skips its
// remaining chunks). Nothing is duplicated or torn. A dead holder of an end's lease or mutex is
// detected and replaced. shutdown(true) is one atomic read-modify-write (close() takes the
// producer end's robust lock around one): a process killed inside it has shut the queue down or
// not. For JoinableQueue, a consumer that dies between get() and task_done() (or
// mid-way through a streamed message) leaves join() waiting (as in Python): use join_for(). A
// message lost with its producer was never counted.
//
// Damage: any process of the user can write the segment's bytes. The ring's geometry is copied
// and checked when the queue is opened (Error(errc::corrupt) there), so no put or get ever
// touches memory outside the segment, whatever is written. A get() that finds a damaged record
// (every header carries a check of its length, type and place) or impossible cursors throws
// Error(errc::corrupt) once, having skipped everything published up to then (the message says
// how many messages); the next get() works. A put() that finds the consumer's cursor impossible
// throws Error(errc::corrupt) and puts nothing, until a get() has skipped ahead. size() stays in
// [0, capacity()]. Damaged payload bytes of a sound record are not detected (decode may fail).
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/channel.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/queue_segment.hpp>
#include <multiproc/detail/shared_object.hpp>
#include <multiproc/segment.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace multiproc {
namespace detail {

//! What Queue, JoinableQueue and SimpleQueue share.
template <class T>
class QueueBase {
  static_assert(has_codec_v<T>,
                "Queue<T> needs a multiproc::Codec<T>: T trivially copyable, std::string, "
                "std::vector, std::pair/tuple/optional of such, or your own specialisation "
                "(see multiproc/codec.hpp)");
  static constexpr std::uint32_t kRecordSize = static_cast<std::uint32_t>(codec_fixed_size_v<T>);

 public:
  using value_type = T;

  //! Effects: appends v, blocking while the queue is full (v may be of any size).
  //! Throws: Closed after close() or shutdown(); what Codec<T>::encode throws (nothing is put);
  //! Error(errc::corrupt) when another process damaged the queue's cursors (nothing is put; see
  //! "Damage" above).
  void put(const T& v) const { put_impl(v, nullptr, true); }
  //! Returns: false (without waiting) if the queue is full, or if another thread is inside an
  //! operation on the producer end (streaming a large message, or stopped mid-put) — or, for a
  //! message larger than the ring, if the ring had no room for its next chunk (it is given up).
  //! Throws: as put().
  bool try_put(const T& v) const { return put_impl(v, &kNoWait, false); }
  //! Returns: false if the queue stayed full until the timeout (a message larger than the ring:
  //! if it was not through by then; it is given up). Throws: as put().
  template <class Rep, class Period>
  bool put_for(const T& v, const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = deadline_after(timeout);
    return put_impl(v, &deadline, true);
  }
  template <class C, class D>
  bool put_until(const T& v, const std::chrono::time_point<C, D>& deadline) const {
    const auto d = to_steady(deadline);
    return put_impl(v, &d, true);
  }

  //! Returns: the oldest message, blocking while the queue is empty.
  //! Throws: Closed once the queue is closed and drained, or at once after shutdown(true);
  //! what Codec<T>::decode throws (the message is consumed then); Error(errc::corrupt) for a
  //! damaged record or cursors (what was published up to then is skipped: see "Damage" above).
  T get() const { return *get_impl(nullptr, true); }
  //! Returns: the oldest message, or nullopt (without waiting) if there is none, or if another
  //! thread is inside an operation on the consumer end (assembling a large message, or stopped
  //! mid-get). A streamed message that this call has begun to take is waited for to its end,
  //! here and in get_for(). Throws: as get().
  std::optional<T> try_get() const { return get_impl(&kNoWait, false); }
  //! Returns: the oldest message, or nullopt if none arrived before the timeout. Throws: as get().
  template <class Rep, class Period>
  std::optional<T> get_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = deadline_after(timeout);
    return get_impl(&deadline, true);
  }
  template <class C, class D>
  std::optional<T> get_until(const std::chrono::time_point<C, D>& deadline) const {
    const auto d = to_steady(deadline);
    return get_impl(&d, true);
  }

  //! Complete messages in the queue now (a snapshot; 0 after shutdown(true)).
  std::size_t size() const noexcept { return static_cast<std::size_t>(ch_.size()); }
  bool empty() const noexcept { return size() == 0; }
  //! Whether size() >= capacity() (a snapshot). A put of a variable-size T may also wait while
  //! the ring's bytes are taken, which full() does not report.
  bool full() const noexcept { return size() >= capacity(); }
  //! Most messages the queue holds (the unbounded default: see the header comment).
  std::size_t capacity() const noexcept { return static_cast<std::size_t>(ch_.capacity()); }
  //! Bytes of the ring, and the largest message that goes through without streaming.
  std::size_t ring_bytes() const noexcept { return static_cast<std::size_t>(ch_.ring_bytes()); }
  std::size_t max_message_bytes() const noexcept {
    return kRecordSize != 0 ? kRecordSize : ch_.max_whole_payload();
  }

  //! Effects: no more puts (they throw Closed); gets drain what is left, then throw Closed.
  //! Waits for a put in progress to finish, so that nothing is published after it — except a
  //! streamed message already begun: its producer may be waiting for a consumer (perhaps the very
  //! thread calling close()), so close() then closes without waiting; that message still
  //! completes and is delivered: until it is through (or given up, or its producer dies), gets
  //! wait for it rather than throw Closed (try_get() returns nullopt, get_for() times out), and
  //! a consumer assembling it does not stop at close(). Idempotent.
  void close() const { close_queue(ch_); }
  //! Python 3.13's Queue.shutdown(immediate). Effects: immediate = false is close().
  //! immediate = true: no more puts, and what is queued is discarded at once — gets throw
  //! Closed, a put or get streaming a large message gives it up, and for a JoinableQueue the
  //! discarded messages count as done (join() then waits only for messages already taken).
  //! Wakes every blocked caller in every process. Does not wait. Idempotent, and sticky.
  void shutdown(bool immediate = false) const {
    if (!immediate) {
      close();
    } else {
      ch_.close(kClosed | kImmediate);
    }
  }
  //! Whether close() or shutdown() was called (a snapshot).
  bool closed() const noexcept { return ch_.closed(); }

  const Segment& segment() const noexcept { return seg_; }

  //! For multiproc::wait(): the channel behind the queue.
  const ChannelRef& channel() const noexcept { return ch_; }

 protected:
  // Creates the queue at `where` (anonymous, create_only or open_or_create a name).
  QueueBase(Kind kind, const Placement& where, std::size_t capacity, std::size_t bytes) {
    const std::string what = describe_object<T>(kind, where.name());
    const SegmentLayout layout =
        queue_layout(kind, ElementType::of<T>(), capacity, kRecordSize, bytes, what);
    attach(where.make(layout, queue_init(layout.count, kRecordSize,
                                         layout.body_size - kChannelHeader, what)));
  }
  QueueBase(Kind kind, open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, kind, &element));
  }

  Segment seg_;
  ChannelRef ch_;

 private:
  void attach(Segment seg) {
    seg_ = std::move(seg);
    ch_ = queue_channel(seg_, kRecordSize);  // names the queue by seg_, which outlives ch_
    fence_register();
  }

  std::size_t encoded_size(const T& v) const {
    if constexpr (kRecordSize != 0) {
      (void)v;
      return kRecordSize;
    } else {
      return Codec<T>::size(v);
    }
  }

  // A message larger than a record: streamed from the object itself when its encoding is its own
  // bytes (a string, a vector of plain values), else encoded aside (an encoder that throws puts
  // nothing) and streamed. Out of line from put_impl: the common path stays small.
  bool put_large_impl(const T& v, std::size_t n, const Clock::time_point* deadline,
                      bool wait) const {
    if constexpr (detail::raw_encoding_v<T>) {
      // Its encoding is its own bytes (a string, a vector of plain values): streamed from it.
      return put_large(ch_, detail::raw_bytes(v), n, deadline, wait);
    }
    std::vector<std::byte> buffer(n);
    Codec<T>::encode(v, buffer.data());
    return put_large(ch_, buffer.data(), n, deadline, wait);
  }

  // put_impl and get_impl stay inline in this header on purpose: they are the fast path (a
  // leased end, one copy into the ring, no call into the library), which is what makes a queue
  // run near the speed of a bare spinning ring. Everything slow is out of line in queue.cpp.
  bool put_impl(const T& v, const Clock::time_point* deadline, bool wait) const {
    const std::size_t n = encoded_size(v);
    if constexpr (kRecordSize == 0) {
      if (n > ch_.max_whole_payload()) return put_large_impl(v, n, deadline, wait);
    }
    EndState& end = ch_.producer();
    for (;;) {
      const EndToken t = ch_.acquire(end, deadline);
      if (t == EndToken::none) return false;
      if (ch_.closed()) {
        ch_.release(end, t);
        throw_closed(ch_, "put");
      }
      bool room;
      try {
        room = ch_.has_room(n);
      } catch (...) {  // Error(corrupt): the cursors cannot be right
        ch_.release(end, t);
        throw;
      }
      if (room) {
        if constexpr (kRecordSize != 0) {
          if constexpr (detail::copied_raw_v<T>) {
            ch_.template append_fixed<kRecordSize>(&v);
          } else {
            std::byte buf[kRecordSize];
            try {
              Codec<T>::encode(v, buf);
            } catch (...) {
              ch_.release(end, t);
              throw;
            }
            ch_.template append_fixed<kRecordSize>(buf);
          }
        } else {
          try {
            ch_.append(n, kRecordWhole,
                       [&](unsigned char* dst) { Codec<T>::encode(v, reinterpret_cast<std::byte*>(dst)); });
          } catch (...) {
            ch_.release(end, t);  // nothing was published
            throw;
          }
        }
        ch_.release(end, t);
        return true;
      }
      ch_.release(end, t);
      if (!wait) return false;
      if (!ch_.sleep_until(ch_.state()->space, [&] { return ch_.closed() || ch_.room_hint(n); },
                           deadline)) {
        return false;
      }
    }
  }

  std::optional<T> get_impl(const Clock::time_point* deadline, bool wait) const {
    EndState& end = ch_.consumer();
    for (;;) {
      const EndToken t = ch_.acquire(end, deadline);
      if (t == EndToken::none) return std::nullopt;
      if (ch_.shut_down_immediately()) {
        ch_.release(end, t);
        throw_closed(ch_, "get");
      }
      // Error(corrupt) from has_data() or peek(): the cursors or a record cannot be right (the
      // consumer cursor has skipped ahead; the next get goes on).
      auto has_data = [&] {
        try {
          return ch_.has_data();
        } catch (...) {
          ch_.release(end, t);
          throw;
        }
      };
      bool data = has_data();
      bool closed = false;     // closed and drained
      bool streaming = false;  // closed, but a streamed put begun before close() is under way
      // acquire: every record published before close() is visible once closed is seen.
      if (!data && ch_.closed()) {
        data = has_data();
        if (!data) {
          streaming = streamed_put_open(ch_);
          data = has_data();
          closed = !data && !streaming;
        }
      }
      if (data) {
        std::optional<T> out;
        RecordHeader h{};
        if constexpr (kRecordSize != 0) {
          alignas(T) unsigned char buf[kRecordSize];
          ch_.template take_fixed<kRecordSize>(buf);
          ch_.release(end, t);
          out.emplace(Codec<T>::decode(reinterpret_cast<const std::byte*>(buf), kRecordSize));
        } else {
          const unsigned char* src;
          try {
            src = ch_.peek(h);
          } catch (...) {
            ch_.release(end, t);
            throw;
          }
          if (h.type != kRecordWhole) {  // streamed in chunks: assembled out of line
            // A std::string is its bytes: assembled in place and returned as it is.
            constexpr bool in_place = std::is_same_v<T, std::string> && detail::raw_encoding_v<T>;
            std::conditional_t<in_place, std::string, std::vector<std::byte>> buffer;
            bool whole;
            try {
              whole = take_large(ch_, h, src, buffer);
            } catch (...) {
              ch_.release(end, t);
              throw;
            }
            ch_.release(end, t);
            if (!whole) continue;  // remains of a message whose reader died: look again
            if constexpr (in_place) {
              out.emplace(std::move(buffer));
            } else {
              out.emplace(Codec<T>::decode(buffer.data(), buffer.size()));
            }
            return out;
          }
          try {
            out.emplace(Codec<T>::decode(reinterpret_cast<const std::byte*>(src), h.length));
          } catch (...) {
            ch_.consume(h);  // a message that cannot be decoded must not wedge the queue
            ch_.release(end, t);
            throw;
          }
          ch_.consume(h);
          ch_.release(end, t);
        }
        return out;
      }
      ch_.release(end, t);
      if (closed) throw_closed(ch_, "get");
      if (!wait) return std::nullopt;
      // Closed with a streamed put under way: wait for its First chunk, or for it to end (done,
      // given up) — or, by the sleep's liveness slice, to look whether its sender died.
      if (!ch_.sleep_until(ch_.state()->data,
                           [&] {
                             return ch_.data_hint() ||
                                    (streaming ? !streamed_put_open_hint(ch_) : ch_.closed());
                           },
                           deadline)) {
        return std::nullopt;
      }
    }
  }
};

//! The constructors of Queue, JoinableQueue and SimpleQueue: the same set for each, making a
//! segment of kind K.
template <class T, Kind K>
class QueueOf : public QueueBase<T> {
 public:
  //! Effects: an unnamed, unbounded queue (Python's Queue(); see "Unbounded" above).
  QueueOf() : QueueOf(0) {}
  //! Effects: an unnamed queue of up to `capacity` messages (0: unbounded, as Python's
  //! maxsize <= 0) in a ring of `bytes` bytes for variable-size T (0 picks the default),
  //! shared with children forked after this call.
  //! Throws: Error(errc::invalid_argument) for a capacity above 2^23, or absurd bytes.
  explicit QueueOf(std::size_t capacity, std::size_t bytes = 0)
      : QueueBase<T>(K, Placement(), capacity, bytes) {}
  //! Effects: creates the queue `name`, as above. Throws: as above; as Segment::create.
  QueueOf(create_only_t t, const Name& name, std::size_t capacity = 0, std::size_t bytes = 0)
      : QueueBase<T>(K, Placement(t, name), capacity, bytes) {}
  //! Effects: opens the queue `name`; capacity and bytes come from the segment.
  QueueOf(open_only_t t, const Name& name) : QueueBase<T>(K, t, name) {}
  //! Effects: opens the queue `name`, or creates it as create_only does.
  QueueOf(open_or_create_t t, const Name& name, std::size_t capacity = 0, std::size_t bytes = 0)
      : QueueBase<T>(K, Placement(t, name), capacity, bytes) {}
};

}  // namespace detail

//! Python's Queue. Constructors (detail::QueueOf): Queue() unbounded, Queue(capacity, bytes = 0),
//! (create_only, name, capacity = 0, bytes = 0), (open_only, name), (open_or_create, name,
//! capacity = 0, bytes = 0).
template <class T>
class Queue : public detail::QueueOf<T, Kind::queue> {
 public:
  using detail::QueueOf<T, Kind::queue>::QueueOf;
};

//! A Queue whose consumers report each message done (task_done), so that a producer can wait
//! until every message put has been handled (join).
//! Constructors: as Queue's.
template <class T>
class JoinableQueue : public detail::QueueOf<T, Kind::joinable_queue> {
 public:
  using detail::QueueOf<T, Kind::joinable_queue>::QueueOf;

  //! Effects: marks one message put on this queue as handled. The count of unfinished messages
  //! is 64 bits wide.
  //! Throws: Error(errc::bad_state) when called more times than messages were put (messages
  //! discarded by shutdown(true) count as done).
  void task_done() const { detail::task_done(this->ch_); }
  //! Effects: blocks until every message put so far has been marked handled.
  void join() const { detail::join_until(this->ch_, nullptr); }
  //! Returns: false if messages were still unhandled at the timeout.
  template <class Rep, class Period>
  bool join_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    return detail::join_until(this->ch_, &deadline);
  }
};

//! Python's SimpleQueue: put, get, empty, close — unbounded by default, like Python's (see
//! "Unbounded" in Queue); a capacity may be given.
//! Constructors: as Queue's.
template <class T>
class SimpleQueue : public detail::QueueOf<T, Kind::simple_queue> {
 public:
  using detail::QueueOf<T, Kind::simple_queue>::QueueOf;
};

}  // namespace multiproc
