// multiproc/redis/queue.hpp — Queue<T> and JoinableQueue<T> on a Redis server: the local queues'
// interface (queue.hpp), shared by every process on every host that names the same queue, and
// reliable: a consumer that dies holding messages does not lose them.
//
//   mp::redis::Queue<Job> jobs("redis://10.0.0.5:6379/0", "jobs", 1000);   // any host
//   jobs.put(job);
//   try { for (;;) handle(jobs.get()); } catch (const mp::Closed&) {}      // a consumer
//
// Same name, same queue: the first handle records what it is (kind, element type —
// typeid(T).name() —, capacity, max_deliveries) in mp:queue:<name>:meta; a handle that opens it
// otherwise throws Error(errc::type_mismatch) naming the queue and the field (a JoinableQueue
// opened as a Queue, or the reverse: Error(errc::wrong_kind)). Values go through
// Codec<T> (redis::to_bytes / from_bytes). capacity 0 is unbounded (Python's maxsize <= 0); else
// a put that would make more than `capacity` messages waiting fails (try_put: false) or waits
// (put, put_for): the check and the push are one Lua script, so racing producers never exceed
// it. Messages given back by dead consumers (below) return even beyond the capacity (they were
// counted once already). Redis must be standalone (not Cluster): the scripts reach the in-flight
// lists of other consumers. Keys: mp:queue:<name>:{meta,items,state,consumers,inflight:<id>,
// dead,notify,space,joined}.
//
// Acknowledgement (what makes a message done). Each handle — each copy too, and the copy a
// forked child uses — is one consumer with its own in-flight list on the server. A get moves the
// message from the queue into that list (atomically, recording a lease that expires on the
// server's clock), and it stays there until acknowledged:
//   - Queue: the handle's next get (or get_for, try_get, ack(), or its destruction) acknowledges
//     every message this handle took before — the consumer is back for more, so it is done with
//     them. One thread per handle for precise acknowledgement (threads sharing a handle share it).
//   - JoinableQueue: task_done() acknowledges the oldest message this handle holds (and counts it
//     done for join(), across hosts); get() acknowledges nothing. Destroying a handle that still
//     holds messages gives them back to the queue at once (they were not done).
// A process that ends without destroying its handle (an mp::Process child returns through
// _exit, which runs no destructors) leaves what the handle holds to its lease: it is delivered
// again. Call ack() or task_done() before such an exit (a consumer loop that ends on Closed
// holds nothing). While a handle holds messages, the process's renewal thread (detail::Renewal)
// renews its lease every lease/3, so a slow consumer that is alive keeps them however long it
// works. When a lease expires (the process was SIGKILLed, its host is gone, it was stopped for
// longer than the lease), the next operation of any client on the queue gives its messages back
// to the front of the queue with their delivery count raised: at-least-once delivery.
// get_delivery()/get_delivery_for() return the count (1 the first time) and the message's id.
// With QueueOptions::max_deliveries = n, a message whose consumer dies (or gives it back) at
// its n-th delivery goes to the dead letters (mp:queue:<name>:dead, a list of raw entries
// "<deliveries>:<id>:<bytes>") instead of being delivered again, so a message that kills its
// consumers does not loop; a dead message counts as done for join().
//
// Blocking: an empty queue's getters and a full queue's putters block on the server (BLPOP on a
// notification list that puts, gets and close() push to), in slices of at most lease/2 and 1 s,
// so that expired leases are found and a lost wake-up costs one slice at most. close() wakes
// everyone. Every call has a deadline: get_for/put_for return nullopt/false at theirs even when
// the server stops answering (SIGSTOP, a partition) — and then the server does not run the
// operation later: every script carries its deadline (on the server's clock, from an offset
// measured on open) and does nothing once it has passed. Untimed calls (put, get) retry across a
// dead or restarted server for Options::reconnect_for, then throw Error(errc::disconnected).
//
// Speed: a put is one round trip (one script); so is a get when a message is waiting (the same
// script acknowledges the previous one); a getter that finds the queue empty blocks, then takes:
// three. put_many()/get_many() move up to 512 messages (get_many: any number) per round trip.
// A JoinableQueue handle that holds k messages not yet marked done sends their ids with each
// get (so that the script can tell them from messages taken by a lost reply): O(k) per get.
//
// close(): later puts throw Closed (from any process, any host: "closed" is on the server);
// gets drain what is left — including messages other consumers hold, which may come back if
// their lease lapses, so a get waits while another live consumer holds unacknowledged messages —
// then throw Closed. Closing is permanent (the keys persist on the server until removed).
//
// What survives what:
//   - a consumer killed while idle: nothing to lose; killed holding messages (between get and
//     ack): they return after its lease, delivery count + 1; killed mid-get: the message is in
//     its in-flight list (returns after the lease) or still in the queue;
//   - a producer killed mid-put: the message is in the queue or not (one script), never half;
//   - a server stopped (SIGSTOP): every timed call returns at its deadline; untimed ones throw
//     after reconnect_for; a stop longer than a lease may let leases lapse when it resumes (the
//     server's clock ran on; a renewal may reach it after another client's script), so messages
//     held across it may be delivered again;
//   - a server restarted: clients reconnect; with AOF (appendfsync always) every put that
//     returned and every acknowledgement survive; without persistence a server crash loses
//     everything it held.
// What can be delivered twice: a message whose consumer's lease lapsed while it was alive
// (stopped longer than the lease, partitioned) — both may process it; a put or an
// acknowledgement whose reply was lost to a broken connection is sent again, so a put may store
// a message twice. Corrupt bytes (another program pushed into mp:queue:<name>:items): get()
// moves the entry to the dead letters and throws Error(errc::corrupt) naming the queue; the next
// get() goes on.
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/error.hpp>
#include <multiproc/redis/client.hpp>
#include <multiproc/segment.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

namespace multiproc::redis {

struct QueueOptions {
  //! How long a consumer holds the messages it took without renewing (renewed every lease/3
  //! while it holds them): how soon a dead consumer's messages come back.
  std::chrono::milliseconds lease{10000};
  //! 0: a message is redelivered however often its consumers die; n: after n deliveries it goes
  //! to the dead letters instead. Part of the queue's definition (checked on open).
  unsigned max_deliveries = 0;
  //! The connection's options, when the queue is made from a url.
  Options client{};
};

//! A message with its delivery record.
template <class T>
struct Delivery {
  T value;
  std::uint64_t id = 0;         //!< unique in its queue, increasing in put order
  unsigned deliveries = 1;      //!< 1 the first time; more after consumers died holding it
};

namespace detail {

struct QueueShared;
struct QueueConsumer;

//! A message as the server holds it (payload still encoded).
struct RawMessage {
  std::string payload;
  std::uint64_t id = 0;
  unsigned deliveries = 1;
};

//! The byte-level queue under Queue<T> and JoinableQueue<T> (src/redis/queue.cpp).
class QueueCore {
 public:
  enum class Kind { queue, joinable };

  QueueCore(Client client, std::string name, std::size_t capacity, const QueueOptions& options,
            Kind kind, const char* type_id, const std::string& type_name);
  //! Same queue, a new consumer (see "Acknowledgement").
  QueueCore(const QueueCore& other);
  QueueCore& operator=(const QueueCore& other);
  QueueCore(QueueCore&& other) noexcept;
  QueueCore& operator=(QueueCore&& other) noexcept;
  ~QueueCore();

  //! Puts every message of `payloads` it can: returns how many (0: full at the deadline, or at
  //! once when !wait). Throws Closed.
  std::size_t put(const std::vector<std::string>& payloads, Deadline deadline, bool wait) const;
  //! Takes up to `max` messages; empty when none came by the deadline (or at once when !wait).
  //! Throws Closed, Error(corrupt).
  std::vector<RawMessage> get(std::size_t max, Deadline deadline, bool wait) const;
  //! Moves a message that cannot be decoded to the dead letters; throws Error(corrupt) naming
  //! the queue and `why`.
  [[noreturn]] void reject(const RawMessage& m, const char* why) const;
  //! Gives messages this handle took back to the front of the queue, their delivery uncounted
  //! (a batch that get_many could not hand over whole).
  void unget(const std::vector<RawMessage>& ms) const;
  //! Acknowledges what this handle holds (Queue); returns how many were still its own.
  std::size_t ack() const;
  //! Acknowledges the oldest message this handle holds (JoinableQueue). Returns false if its
  //! lease had lapsed (it went back to the queue). Throws Error(bad_state) when it holds none.
  bool task_done() const;
  //! Waits until no message is unfinished; false at the deadline.
  bool join(Deadline deadline) const;
  std::size_t held() const noexcept;

  std::size_t size() const;
  std::size_t dead_size() const;
  std::uint64_t unfinished() const;
  bool closed() const;
  void close() const;
  std::size_t capacity() const noexcept;
  const std::string& name() const noexcept;
  const std::string& describe() const noexcept;  //!< "redis::Queue<int> 'jobs'"
  const Client& client() const noexcept;

 private:
  QueueConsumer& me() const;
  void leave() noexcept;

  std::shared_ptr<QueueShared> shared_;
  mutable std::atomic<QueueConsumer*> consumer_{nullptr};
};

// Clamped, as every local timeout is (multiproc::detail::deadline_after): a timeout of centuries
// (hours::max(), seconds::max()) is no deadline. Adding it to now() overflowed — undefined
// behaviour, in practice a deadline in the past: get_for(300 years) returned nullopt at once.
template <class Rep, class Period>
Deadline after(const std::chrono::duration<Rep, Period>& d) {
  const Clock::time_point t = multiproc::detail::deadline_after(d);
  if (t == Clock::time_point::max()) return std::nullopt;
  return t;
}

template <class T>
class QueueBase {
  static_assert(has_codec_v<T>, "redis::Queue<T> needs a multiproc::Codec<T> (see multiproc/codec.hpp)");

 public:
  using value_type = T;

  //! Effects: appends v, waiting while the queue is full. Throws: Closed after close();
  //! Error(disconnected) when the server cannot be reached for Options::reconnect_for; what
  //! Codec<T>::encode throws.
  void put(const T& v) const { core_.put({to_bytes(v)}, {}, true); }
  //! Returns: false at once if the queue is full. Throws: as put().
  bool try_put(const T& v) const { return core_.put({to_bytes(v)}, {}, false) == 1; }
  //! Returns: false if the queue stayed full (or the server did not answer) until the timeout;
  //! the message was not put then. Throws: as put().
  template <class Rep, class Period>
  bool put_for(const T& v, const std::chrono::duration<Rep, Period>& timeout) const {
    return core_.put({to_bytes(v)}, after(timeout), true) == 1;
  }
  //! Effects: puts every value, as many per round trip as there is room for. Throws: as put()
  //! (values before the one that failed were put).
  void put_many(const std::vector<T>& values) const {
    std::vector<std::string> bytes;
    bytes.reserve(values.size());
    for (const T& v : values) bytes.push_back(to_bytes(v));
    std::size_t done = 0;
    while (done < bytes.size()) {  // at most 512 per script: the server serves others between
      const std::size_t n = std::min<std::size_t>(bytes.size() - done, 512);
      const auto from = bytes.begin() + static_cast<std::ptrdiff_t>(done);
      done += core_.put(std::vector<std::string>(from, from + static_cast<std::ptrdiff_t>(n)), {}, true);
    }
  }

  //! Returns: the oldest message, waiting while the queue is empty. Throws: Closed once closed
  //! and drained; Error(corrupt) for bytes that are not a T (moved to the dead letters);
  //! Error(disconnected) as put().
  T get() const { return std::move(get_delivery().value); }
  //! Returns: the oldest message, or nullopt at once if there is none. Throws: as get().
  std::optional<T> try_get() const { return value_of(take({}, false)); }
  //! Returns: the oldest message, or nullopt if none came (or the server did not answer)
  //! before the timeout. Throws: as get().
  template <class Rep, class Period>
  std::optional<T> get_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return value_of(take(after(timeout), true));
  }
  //! As get(), with the delivery count and id.
  Delivery<T> get_delivery() const { return std::move(*take({}, true)); }
  //! As get_for(), with the delivery count and id.
  template <class Rep, class Period>
  std::optional<Delivery<T>> get_delivery_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return take(after(timeout), true);
  }
  //! Returns: up to `max` messages (at least one), waiting up to `timeout` for the first; empty
  //! at the timeout. One round trip for all of them. Throws: as get() (a message of the batch
  //! that cannot be decoded goes to the dead letters; the others go back to the queue).
  template <class Rep, class Period>
  std::vector<T> get_many(std::size_t max, const std::chrono::duration<Rep, Period>& timeout) const {
    std::vector<RawMessage> raw = core_.get(max, after(timeout), true);
    std::vector<T> out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
      try {
        out.push_back(from_bytes<T>(raw[i].payload));
      } catch (const Error& e) {
        // The bad one goes to the dead letters and throws; the rest of the batch, including
        // what was decoded before it, goes back to the queue undelivered.
        std::vector<RawMessage> rest(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(i));
        rest.insert(rest.end(), raw.begin() + static_cast<std::ptrdiff_t>(i) + 1, raw.end());
        core_.unget(rest);
        core_.reject(raw[i], e.what());
      }
    }
    return out;
  }

  //! Messages waiting in the queue (not those consumers hold); a snapshot.
  std::size_t size() const { return core_.size(); }
  bool empty() const { return size() == 0; }
  bool full() const { return capacity() != 0 && size() >= capacity(); }
  std::size_t capacity() const noexcept { return core_.capacity(); }
  //! Messages in the dead letters (mp:queue:<name>:dead).
  std::size_t dead_size() const { return core_.dead_size(); }
  //! Messages this handle holds unacknowledged.
  std::size_t held() const noexcept { return core_.held(); }
  //! Effects: no more puts (they throw Closed, everywhere); gets drain, then throw Closed.
  //! Wakes every blocked caller. Idempotent.
  void close() const { core_.close(); }
  bool closed() const { return core_.closed(); }
  const std::string& name() const noexcept { return core_.name(); }
  const Client& client() const noexcept { return core_.client(); }

 protected:
  QueueBase(Client client, std::string name, std::size_t capacity, const QueueOptions& options,
            QueueCore::Kind kind)
      : core_(std::move(client), std::move(name), capacity, options, kind, typeid(T).name(),
              ElementType::of<T>().name) {}

  QueueCore core_;

 private:
  Delivery<T> decode(const RawMessage& m) const {
    try {
      return Delivery<T>{from_bytes<T>(m.payload), m.id, m.deliveries};
    } catch (const Error& e) {
      core_.reject(m, e.what());
    }
  }
  std::optional<Delivery<T>> take(Deadline deadline, bool wait) const {
    std::vector<RawMessage> raw = core_.get(1, deadline, wait);
    if (raw.empty()) return std::nullopt;
    return decode(raw.front());
  }
  static std::optional<T> value_of(std::optional<Delivery<T>> d) {
    if (!d) return std::nullopt;
    return std::move(d->value);
  }
};

}  // namespace detail

//! Python's Queue on Redis (see the header comment). Constructors: (url, name, capacity,
//! options = {}) and (client, name, capacity, options = {}). Throws: Error(invalid_argument) for
//! a bad url; Error(wrong_kind) when `name` is the other kind of queue; Error(type_mismatch) when
//! it exists with another type, capacity or max_deliveries; Error(disconnected) when the server cannot be reached.
template <class T>
class Queue : public detail::QueueBase<T> {
 public:
  Queue(std::string_view url, std::string name, std::size_t capacity, QueueOptions options = {})
      : Queue(Client(url, options.client), std::move(name), capacity, options) {}
  Queue(const Client& client, std::string name, std::size_t capacity, QueueOptions options = {})
      : detail::QueueBase<T>(client, std::move(name), capacity, options,
                             detail::QueueCore::Kind::queue) {}

  //! Effects: acknowledges every message this handle holds now (the next get would).
  //! Returns: how many were still this handle's (not given back after a lapsed lease).
  std::size_t ack() const { return this->core_.ack(); }
};

//! Python's JoinableQueue on Redis: consumers acknowledge with task_done(); join() waits, on any
//! host, until every message put has been acknowledged (or went to the dead letters).
//! Constructors: as Queue's.
template <class T>
class JoinableQueue : public detail::QueueBase<T> {
 public:
  JoinableQueue(std::string_view url, std::string name, std::size_t capacity,
                QueueOptions options = {})
      : JoinableQueue(Client(url, options.client), std::move(name), capacity, options) {}
  JoinableQueue(const Client& client, std::string name, std::size_t capacity,
                QueueOptions options = {})
      : detail::QueueBase<T>(client, std::move(name), capacity, options,
                             detail::QueueCore::Kind::joinable) {}

  //! Effects: marks the oldest message this handle took and has not marked yet as done.
  //! Returns: false if that message had already gone back to the queue (this handle's lease
  //! lapsed: it will be delivered again and counted then). Throws: Error(bad_state) when this
  //! handle holds no message (Python's "task_done() called too many times").
  bool task_done() const { return this->core_.task_done(); }
  //! Effects: waits until every message put has been marked done (or went to the dead letters).
  void join() const { this->core_.join({}); }
  //! Returns: false if messages were still unfinished at the timeout.
  template <class Rep, class Period>
  bool join_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return this->core_.join(detail::after(timeout));
  }
  //! Messages put and not yet done (a snapshot).
  std::uint64_t unfinished() const { return this->core_.unfinished(); }
};

}  // namespace multiproc::redis
