// Pipe and Connection: two channels in one segment, chunked streaming of large messages, and the
// holder tables that turn "no live process holds the other end" into EOF.
#include <multiproc/pipe.hpp>

#include <multiproc/detail/fork_hooks.hpp>
#include <multiproc/detail/mutex_state.hpp>

#include "os.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <pthread.h>
#include <unistd.h>

namespace multiproc {
namespace detail {
namespace {

constexpr std::uint32_t kMaxHolders = 64;
constexpr std::uint64_t kDefaultPipeRing = std::uint64_t{1} << 20;
constexpr std::size_t kChannelSpan = (sizeof(ChannelState) + 63) / 64 * 64;

// The processes holding one end. Layout:
//   lock      robust mutex guarding count and holders
//   closed    1 once no process holds the end (set by the last close, or by a liveness scan that
//             found every holder dead); cleared when a process opens the end again. Read
//             unlocked (acquire) on every send and before every sleep.
//   overflow  more holders than slots: the end never counts as closed
//   holders   pid and start time of each holding process; an entry with a negative pid is a
//             fork in progress (-parent pid, and a CLOCK_MONOTONIC deadline in ns as `start`):
//             the child replaces it with its own entry, and it lapses if the child never does
struct alignas(64) HolderTable {
  MutexState lock;
  std::atomic<std::uint32_t> closed;
  std::atomic<std::uint32_t> overflow;
  std::uint32_t count;
  struct Holder {
    std::int32_t pid;
    std::uint32_t reserved;
    std::uint64_t start;
  } holders[kMaxHolders];
};

// Layout of a pipe segment's body: this header, then the channel towards the first end (ring
// included), then — duplex only — the channel towards the second end.
struct alignas(64) PipeState {
  std::uint32_t duplex;
  std::uint32_t reserved;
  std::uint64_t ring_bytes;
  HolderTable holders[2];
};
constexpr std::size_t kPipeHeader = (sizeof(PipeState) + 63) / 64 * 64;

ChannelState* channel_at(PipeState* p, int index) {
  return reinterpret_cast<ChannelState*>(reinterpret_cast<unsigned char*>(p) + kPipeHeader +
                                         static_cast<std::size_t>(index) * (kChannelSpan + p->ring_bytes));
}

class TableLock {
 public:
  explicit TableLock(HolderTable& t) : t_(t) {
    mutex_lock(&t_.lock, kWhat);
    if (mutex_inconsistent(&t_.lock)) {  // a holder died mid-update: keep what is well-formed
      t_.count = std::min(t_.count, kMaxHolders);
      mutex_mark_repaired(&t_.lock);
    }
  }
  ~TableLock() { mutex_unlock_noexcept(&t_.lock, kWhat); }
  TableLock(const TableLock&) = delete;
  TableLock& operator=(const TableLock&) = delete;

 private:
  static inline const std::string kWhat = "Pipe holder table";
  HolderTable& t_;
};

std::uint64_t monotonic_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

bool holder_alive(const HolderTable::Holder& h) {
  if (h.pid < 0) return monotonic_ns() < h.start;  // a fork in progress, until its deadline
  return process_alive(h.pid, h.start);
}

void add_holder(HolderTable& t, pid_t pid, std::uint64_t start) {
  TableLock lock(t);
  for (std::uint32_t i = 0; i < t.count; ++i) {
    if (t.holders[i].pid == pid) {
      t.holders[i].start = start;
      t.closed.store(0, std::memory_order_release);
      return;
    }
  }
  if (t.count == kMaxHolders) {  // make room by forgetting the dead
    std::uint32_t kept = 0;
    for (std::uint32_t i = 0; i < t.count; ++i) {
      if (holder_alive(t.holders[i])) t.holders[kept++] = t.holders[i];
    }
    t.count = kept;
  }
  if (t.count < kMaxHolders) {
    // The entry first, then the count: a death between the two loses nothing.
    t.holders[t.count] = {static_cast<std::int32_t>(pid), 0, start};
    std::atomic_signal_fence(std::memory_order_seq_cst);
    ++t.count;
  } else {
    t.overflow.store(1, std::memory_order_relaxed);  // too many to track: never report closed
  }
  t.closed.store(0, std::memory_order_release);
}

// Returns true if the table became empty (the end is now closed).
bool remove_holder(HolderTable& t, pid_t pid) {
  TableLock lock(t);
  for (std::uint32_t i = 0; i < t.count; ++i) {
    if (t.holders[i].pid == pid) {
      // Move the last entry over this one, then shorten: a death between the two leaves a
      // duplicate, never a lost holder.
      t.holders[i] = t.holders[t.count - 1];
      std::atomic_signal_fence(std::memory_order_seq_cst);
      --t.count;
      break;
    }
  }
  if (t.count == 0 && t.overflow.load(std::memory_order_relaxed) == 0) {
    t.closed.store(1, std::memory_order_release);
    return true;
  }
  return false;
}

// A raw fork is about to happen: the child will hold the end, but registers itself only after
// fork() returned in the parent. Until it does, this entry keeps the end open.
void add_pending_fork(HolderTable& t, pid_t parent) {
  TableLock lock(t);
  if (t.count == kMaxHolders) {
    t.overflow.store(1, std::memory_order_relaxed);
    return;
  }
  t.holders[t.count] = {-static_cast<std::int32_t>(parent), 0, monotonic_ns() + 2000000000ull};
  std::atomic_signal_fence(std::memory_order_seq_cst);
  ++t.count;
}

// Whether some live process still holds the end; forgets the dead ones.
bool end_open(HolderTable& t) {
  if (t.closed.load(std::memory_order_acquire) != 0) return false;
  if (t.overflow.load(std::memory_order_relaxed) != 0) return true;
  TableLock lock(t);
  std::uint32_t kept = 0;
  for (std::uint32_t i = 0; i < t.count; ++i) {
    if (holder_alive(t.holders[i])) t.holders[kept++] = t.holders[i];
  }
  t.count = kept;
  if (kept == 0) {
    t.closed.store(1, std::memory_order_release);
    return false;
  }
  return true;
}


const char* end_name(PipeEnd e) { return e == PipeEnd::first ? "first" : "second"; }

}  // namespace

// ---------------------------------------------------------------------------------------------

class ConnectionImpl {
 public:
  ConnectionImpl(Segment seg, PipeEnd end, bool register_self);
  ~ConnectionImpl();

  HolderTable& mine() const { return state_->holders[static_cast<int>(end_)]; }
  HolderTable& peer() const { return state_->holders[1 - static_cast<int>(end_)]; }
  void require_open(const char* action) const;
  void require_send() const;
  void require_recv() const;
  //! Whether a live process holds the peer's end. The closed flag costs a load; the liveness
  //! scan behind it (a lock and system calls per holder) runs at most every 20 ms per process.
  bool peer_open() const {
    if (peer().closed.load(std::memory_order_acquire) != 0) return false;
    const auto now = Clock::now();
    if (now - last_scan_.load(std::memory_order_relaxed) < std::chrono::milliseconds(20)) return true;
    last_scan_.store(now, std::memory_order_relaxed);
    return end_open(peer());
  }
  void close();
  void wake_peer() const;

  // Sending, holding the producer end of send_.
  void wait_room(std::size_t n) const;
  void stream(const std::byte* data, std::size_t n) const;
  void abort_open_message() const;

  Segment seg_;
  PipeState* state_ = nullptr;
  PipeEnd end_;
  ChannelRef recv_, send_;
  bool can_recv_ = false, can_send_ = false;
  std::atomic<bool> closed_{false};
  mutable pid_t registered_pid_ = 0;
  mutable std::atomic<Clock::time_point> last_scan_{Clock::time_point{}};
  std::string what_;
};

namespace {

// Live ConnectionImpls of this process, for registering forked children as holders.
struct ImplRegistry {
  std::mutex mutex;
  std::vector<std::weak_ptr<ConnectionImpl>> impls;
};
ImplRegistry& impl_registry() {
  static ImplRegistry* r = new ImplRegistry;  // never destroyed: handles may outlive statics
  return *r;
}

// Process::start, in the parent right after fork: the child holds the ends its target captured.
void register_process_child(pid_t child, const Captured& captured) noexcept {
  try {
    const std::uint64_t start = process_start_time(child);
    for (const auto& weak : captured) {
      auto object = weak.lock();
      ImplRegistry& r = impl_registry();
      std::lock_guard<std::mutex> lock(r.mutex);
      for (auto& w : r.impls) {
        auto impl = w.lock();
        if (impl && impl.get() == object.get() && !impl->closed_.load()) {
          add_holder(impl->mine(), child, start);
        }
      }
    }
  } catch (...) {
  }
}

// Any other fork: the child holds everything it inherited, as it would file descriptors. The
// parent left a pending entry in each table before forking (prepare_fork); the child replaces it.
void prepare_fork() noexcept {
  if (forking_for_process()) return;  // Process::start registers exactly what it captured
  try {
    ImplRegistry& r = impl_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (auto& weak : r.impls) {
      if (auto impl = weak.lock()) {
        if (!impl->closed_.load()) add_pending_fork(impl->mine(), current_pid());
      }
    }
  } catch (...) {
  }
}

void remove_pending_fork(HolderTable& t, pid_t parent) {
  TableLock lock(t);
  for (std::uint32_t i = 0; i < t.count; ++i) {
    if (t.holders[i].pid == -static_cast<std::int32_t>(parent)) {
      t.holders[i] = t.holders[t.count - 1];
      std::atomic_signal_fence(std::memory_order_seq_cst);
      --t.count;
      return;
    }
  }
}

void register_self_in_child() noexcept {
  after_fork_child();  // fresh tid/pid caches and pending slot before taking any lock below
  ImplRegistry& r = impl_registry();
  new (&r.mutex) std::mutex();  // another thread may have held it at fork time
  if (forking_for_process()) return;
  try {
    const pid_t me = ::getpid();
    const pid_t parent = ::getppid();
    const std::uint64_t start = self_start_time();
    for (auto& weak : r.impls) {
      if (auto impl = weak.lock()) {
        if (!impl->closed_.load()) {
          add_holder(impl->mine(), me, start);
          remove_pending_fork(impl->mine(), parent);
          impl->registered_pid_ = me;
        }
      }
    }
  } catch (...) {
  }
}

void track(const std::shared_ptr<ConnectionImpl>& impl) {
  static const bool hooks = [] {
    add_fork_listener(&register_process_child);
    ::pthread_atfork(&prepare_fork, nullptr, &register_self_in_child);
    return true;
  }();
  (void)hooks;
  ImplRegistry& r = impl_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.impls.erase(std::remove_if(r.impls.begin(), r.impls.end(),
                               [](const std::weak_ptr<ConnectionImpl>& w) { return w.expired(); }),
                r.impls.end());
  r.impls.push_back(impl);
}

}  // namespace

ConnectionImpl::ConnectionImpl(Segment seg, PipeEnd end, bool register_self)
    : seg_(std::move(seg)), end_(end) {
  state_ = static_cast<PipeState*>(seg_.body());
  what_ = seg_.describe() + " (" + end_name(end) + " end)";
  const std::uint64_t rb = state_->ring_bytes;
  const std::uint32_t channels = state_->duplex != 0 ? 2 : 1;
  if (rb == 0 || (rb & (rb - 1)) != 0 || seg_.count() != channels ||
      seg_.body_size() != kPipeHeader + channels * (kChannelSpan + rb)) {
    seg_.fail(errc::corrupt, "its pipe header does not match its segment");
  }
  for (std::uint32_t i = 0; i < channels; ++i) {
    ChannelState* c = channel_at(state_, static_cast<int>(i));
    if (c->ring_bytes != rb || c->ring_offset != kChannelSpan || c->record_size != 0) {
      seg_.fail(errc::corrupt, "its channel headers do not match its segment");
    }
    seg_.track_lock_owner(&c->producer.lock.owner);
    seg_.track_lock_owner(&c->consumer.lock.owner);
  }
  seg_.track_lock_owner(&state_->holders[0].lock.owner);
  seg_.track_lock_owner(&state_->holders[1].lock.owner);
  // Channel 0 carries messages to the first end; channel 1 (duplex) to the second.
  if (end == PipeEnd::first) {
    recv_ = ChannelRef(channel_at(state_, 0), &what_);
    can_recv_ = true;
    if (channels == 2) {
      send_ = ChannelRef(channel_at(state_, 1), &what_);
      can_send_ = true;
    }
  } else {
    send_ = ChannelRef(channel_at(state_, 0), &what_);
    can_send_ = true;
    if (channels == 2) {
      recv_ = ChannelRef(channel_at(state_, 1), &what_);
      can_recv_ = true;
    }
  }
  fence_register();
  registered_pid_ = ::getpid();
  if (register_self) add_holder(mine(), registered_pid_, self_start_time());
}

ConnectionImpl::~ConnectionImpl() {
  // The last handle in this process: it stops holding the end (in a forked child, only if the
  // child held it).
  if (!closed_.load() && registered_pid_ == ::getpid()) {
    try {
      close();
    } catch (...) {
    }
  }
}

void ConnectionImpl::close() {
  if (closed_.exchange(true)) return;
  remove_holder(mine(), ::getpid());
  wake_peer();
}

void ConnectionImpl::wake_peer() const {
  // Whatever the peer waits for — data from us, room to send to us — it must look again.
  for (const ChannelRef* ch : {&send_, &recv_}) {
    if (ch->state() == nullptr) continue;
    for (Signal* s : {&ch->state()->data, &ch->state()->space}) {
      s->epoch.fetch_add(1, std::memory_order_release);
      futex_wake(&s->epoch, INT_MAX);
    }
  }
}

void ConnectionImpl::require_open(const char* action) const {
  if (closed_.load(std::memory_order_relaxed)) {
    throw Error(errc::closed, what_ + ": " + action + " on a closed connection");
  }
  // A process that uses an end it was not registered for (a Process child that reached the
  // handle through a reference) holds it from now on.
  const pid_t me = current_pid();
  if (registered_pid_ != me) {
    add_holder(mine(), me, self_start_time());
    registered_pid_ = me;
  }
}

void ConnectionImpl::require_send() const {
  require_open("send");
  if (!can_send_) {
    throw Error(errc::wrong_direction,
                what_ + ": this end of a one-way Pipe only receives (send on the second end)");
  }
}

void ConnectionImpl::require_recv() const {
  require_open("recv");
  if (!can_recv_) {
    throw Error(errc::wrong_direction,
                what_ + ": this end of a one-way Pipe only sends (receive on the first end)");
  }
}

void ConnectionImpl::wait_room(std::size_t n) const {
  // The cheap closed flag every time; the liveness scan of the peer's holders (system calls)
  // only after a sleep that brought no room — within 100 ms of a peer's death.
  bool slept = false;
  while (!send_.has_room(n)) {
    if (peer().closed.load(std::memory_order_acquire) != 0 || (slept && !peer_open())) {
      throw Closed(what_ + ": send: the peer closed its end");
    }
    send_.sleep_until(send_.state()->space,
                      [&] { return send_.room_hint(n) || peer().closed.load() != 0; }, nullptr);
    slept = true;
  }
}

void ConnectionImpl::abort_open_message() const {
  EndState& e = send_.producer();
  if (e.open_message.load(std::memory_order_relaxed) == kOpenNone) return;
  // The previous sender died (or threw) halfway through a chunked message: tell the receiver.
  wait_room(0);
  send_.append(0, kRecordAbort, [](unsigned char*) {});
  e.open_message.store(kOpenNone, std::memory_order_release);
}

void ConnectionImpl::stream(const std::byte* data, std::size_t n) const {
  EndState& e = send_.producer();
  const std::size_t maxp = send_.max_record_payload();
  e.open_message.store(kOpenStreaming, std::memory_order_relaxed);  // published with the First
  // First chunk: the total length, then as much as fits.
  const std::uint64_t total = n;
  std::size_t part = std::min(n, maxp - sizeof total);
  wait_room(sizeof total + part);
  send_.append(sizeof total + part, kRecordFirst, [&](unsigned char* dst) {
    std::memcpy(dst, &total, sizeof total);
    std::memcpy(dst + sizeof total, data, part);
  });
  std::size_t sent = part;
  while (sent < n) {
    part = std::min(n - sent, maxp);
    const RecordType type = sent + part == n ? kRecordLast : kRecordMiddle;
    wait_room(part);
    send_.append(part, type, [&](unsigned char* dst) { std::memcpy(dst, data + sent, part); });
    sent += part;
  }
  e.open_message.store(kOpenNone, std::memory_order_release);
}

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
struct Receiver {
  // Returns false (and nothing is consumed) if a message of `total` bytes is not acceptable.
  virtual bool accept(std::uint64_t total) = 0;
  virtual void whole(const std::byte* p, std::size_t n) = 0;
  virtual std::byte* assembly(std::uint64_t total) = 0;  // where the chunks go
  virtual void assembled(const std::byte* p, std::size_t n) = 0;
  virtual ~Receiver() = default;
};

void receive_message(const ConnectionImpl& c, Receiver& r) {
  c.require_recv();
  const ChannelRef& ch = c.recv_;
  HeldEnd held(ch, ch.consumer());
  std::byte* dst = nullptr;
  std::uint64_t total = 0, got = 0;
  bool in_message = false, slept = false;
  for (;;) {
    if (ch.has_data()) {
      RecordHeader h;
      const auto* p = reinterpret_cast<const std::byte*>(ch.peek(h));
      if (p == nullptr) throw_corrupt_record(c.what_);
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
          std::uint64_t t;
          if (h.length < sizeof t) throw_corrupt_record(c.what_);
          std::memcpy(&t, p, sizeof t);
          if (h.length - sizeof t > t) throw_corrupt_record(c.what_);
          if (!r.accept(t)) {
            throw Error(errc::too_large, c.what_ + ": the next message has " + std::to_string(t) +
                                             " bytes, more than the buffer; it stays in the pipe");
          }
          total = t;
          dst = r.assembly(total);
          got = h.length - sizeof t;
          std::memcpy(dst, p + sizeof t, static_cast<std::size_t>(got));
          in_message = true;
          ch.consume(h);
          break;
        }
        case kRecordMiddle:
        case kRecordLast:
          if (in_message) {
            if (got + h.length > total) {
              ch.consume(h);
              throw Error(errc::corrupt, c.what_ + ": a chunked message is longer than announced");
            }
            std::memcpy(dst + got, p, h.length);
            got += h.length;
          }
          ch.consume(h);  // chunks of a message whose first part a dead receiver took: skipped
          if (in_message && h.type == kRecordLast) {
            r.assembled(dst, static_cast<std::size_t>(total));
            return;
          }
          break;
        case kRecordAbort:
          in_message = false;  // its sender died: drop what we have of it
          ch.consume(h);
          break;
        default:
          ch.consume(h);
          throw Error(errc::corrupt, c.what_ + ": unknown record type " + std::to_string(h.type));
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
    if (slept && in_message &&
        ch.producer().open_message.load(std::memory_order_acquire) == kOpenStreaming &&
        !ch.has_data() && ch.open_message_dead(true)) {
      in_message = false;  // its sender died mid-message; the next sender will also say so
    }
    ch.sleep_until(ch.state()->data,
                   [&] { return ch.data_hint() || c.peer().closed.load() != 0; }, nullptr);
    slept = true;
  }
}

// ---- creation --------------------------------------------------------------------------------

struct PipeFactory {
  static std::pair<Connection, Connection> make(Segment seg) {
    auto first = std::make_shared<ConnectionImpl>(seg, PipeEnd::first, false);
    auto second = std::make_shared<ConnectionImpl>(seg, PipeEnd::second, false);
    track(first);
    track(second);
    return {Connection(first), Connection(second)};
  }
  static Connection open(Segment seg, PipeEnd end) {
    // This process may already hold the end (made the Pipe, or opened it before): one impl per
    // end per process, so that dropping one handle does not end the process's holding.
    {
      ImplRegistry& r = impl_registry();
      std::lock_guard<std::mutex> lock(r.mutex);
      for (auto& weak : r.impls) {
        auto impl = weak.lock();
        if (impl && impl->state_ == seg.body() && impl->end_ == end && !impl->closed_.load()) {
          impl->require_open("open");  // registers this process if it was not yet
          return Connection(impl);
        }
      }
    }
    auto impl = std::make_shared<ConnectionImpl>(std::move(seg), end, true);
    track(impl);
    return Connection(impl);
  }
};

namespace {

SegmentLayout pipe_layout(bool duplex, std::uint64_t ring_bytes) {
  SegmentLayout layout;
  layout.kind = Kind::pipe;
  layout.count = duplex ? 2 : 1;
  layout.body_size = kPipeHeader + layout.count * (kChannelSpan + ring_bytes);
  layout.body_alignment = 64;
  return layout;
}

Segment::Init pipe_init(bool duplex, std::uint64_t ring_bytes, std::string what) {
  return [=](void* body) {
    auto* p = static_cast<PipeState*>(body);
    p->duplex = duplex ? 1 : 0;
    p->ring_bytes = ring_bytes;
    const std::uint64_t start = self_start_time();
    for (HolderTable& t : p->holders) {
      mutex_init(&t.lock, false, what + " (holders)");
      t.count = 1;  // the creator holds both ends
      t.holders[0] = {static_cast<std::int32_t>(::getpid()), 0, start};
    }
    const std::uint64_t capacity = std::min<std::uint64_t>(ring_bytes / 16, kMaxCapacity);
    for (int i = 0; i < (duplex ? 2 : 1); ++i) {
      channel_init(channel_at(p, i), ring_bytes, capacity, 0, kChannelSpan, what);
    }
  };
}

std::uint64_t pipe_ring_bytes(std::size_t requested, const std::string& what) {
  return ring_bytes_for(1, 0, requested != 0 ? requested : kDefaultPipeRing, what);
}

}  // namespace
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Public API

std::pair<Connection, Connection> Pipe(bool duplex, std::size_t ring_bytes) {
  const std::string what = "Pipe (anonymous)";
  const std::uint64_t rb = detail::pipe_ring_bytes(ring_bytes, what);
  return detail::PipeFactory::make(
      Segment::create_anonymous(detail::pipe_layout(duplex, rb), detail::pipe_init(duplex, rb, what)));
}

std::pair<Connection, Connection> Pipe(create_only_t, const Name& name, bool duplex,
                                       std::size_t ring_bytes) {
  const std::string what = "Pipe '" + name.str() + "'";
  const std::uint64_t rb = detail::pipe_ring_bytes(ring_bytes, what);
  return detail::PipeFactory::make(
      Segment::create(name, detail::pipe_layout(duplex, rb), detail::pipe_init(duplex, rb, what)));
}

Connection::Connection(open_only_t, const Name& name, PipeEnd end)
    : Connection(detail::PipeFactory::open(Segment::open(name, Kind::pipe, nullptr), end)) {}

void Connection::send_bytes(const void* data, std::size_t n) const {
  impl_->require_send();
  if (impl_->peer().closed.load(std::memory_order_acquire) != 0) {
    throw Closed(impl_->what_ + ": send: the peer closed its end");
  }
  const detail::ChannelRef& ch = impl_->send_;
  detail::HeldEnd held(ch, ch.producer());
  impl_->abort_open_message();
  const auto* bytes = static_cast<const std::byte*>(data);
  if (n <= ch.max_record_payload()) {
    impl_->wait_room(n);
    ch.append(n, detail::kRecordWhole, [&](unsigned char* dst) {
      if (n != 0) std::memcpy(dst, bytes, n);
    });
  } else {
    impl_->stream(bytes, n);
  }
}

void Connection::send_bytes(const void* data, std::size_t length, std::ptrdiff_t offset,
                            std::optional<std::ptrdiff_t> size) const {
  // Python's checks, in Python's order, with Python's words.
  auto invalid = [this](const char* why) {
    throw Error(errc::invalid_argument, impl_->what_ + ": send_bytes: " + why);
  };
  if (offset < 0) invalid("offset is negative");
  const auto off = static_cast<std::size_t>(offset);
  if (length < off) invalid("buffer length < offset");
  std::size_t n = length - off;
  if (size) {
    if (*size < 0) invalid("size is negative");
    if (static_cast<std::size_t>(*size) > n) invalid("buffer length < offset + size");
    n = static_cast<std::size_t>(*size);
  }
  send_bytes(static_cast<const std::byte*>(data) + off, n);
}

void Connection::send_with(std::size_t n, void (*encode)(void*, std::byte*), void* ctx) const {
  impl_->require_send();
  if (impl_->peer().closed.load(std::memory_order_acquire) != 0) {
    throw Closed(impl_->what_ + ": send: the peer closed its end");
  }
  const detail::ChannelRef& ch = impl_->send_;
  if (n > ch.max_record_payload()) {  // too large for one record: encode aside, then stream
    std::vector<std::byte> buffer(n);
    encode(ctx, buffer.data());
    send_bytes(buffer.data(), n);
    return;
  }
  detail::HeldEnd held(ch, ch.producer());
  impl_->abort_open_message();
  impl_->wait_room(n);
  ch.append(n, detail::kRecordWhole,
            [&](unsigned char* dst) { encode(ctx, reinterpret_cast<std::byte*>(dst)); });
}

void Connection::receive_with(void (*decode)(void*, const std::byte*, std::size_t), void* ctx) const {
  struct Typed : detail::Receiver {
    void (*decode)(void*, const std::byte*, std::size_t);
    void* ctx;
    std::vector<std::byte> buffer;
    bool accept(std::uint64_t) override { return true; }
    void whole(const std::byte* p, std::size_t n) override { decode(ctx, p, n); }
    std::byte* assembly(std::uint64_t total) override {
      buffer.resize(static_cast<std::size_t>(total));
      return buffer.data();
    }
    void assembled(const std::byte* p, std::size_t n) override { decode(ctx, p, n); }
  } r;
  r.decode = decode;
  r.ctx = ctx;
  detail::receive_message(*impl_, r);
}

std::string Connection::recv_bytes() const {
  struct Bytes : detail::Receiver {
    std::string out;
    bool accept(std::uint64_t) override { return true; }
    void whole(const std::byte* p, std::size_t n) override {
      out.assign(reinterpret_cast<const char*>(p), n);
    }
    std::byte* assembly(std::uint64_t total) override {
      out.resize(static_cast<std::size_t>(total));
      return reinterpret_cast<std::byte*>(out.data());
    }
    void assembled(const std::byte*, std::size_t) override {}
  } r;
  detail::receive_message(*impl_, r);
  return std::move(r.out);
}

std::size_t Connection::recv_bytes_into(void* buffer, std::size_t size) const {
  struct Into : detail::Receiver {
    std::byte* buffer;
    std::size_t size;
    std::size_t length = 0;
    bool accept(std::uint64_t total) override { return total <= size; }
    void whole(const std::byte* p, std::size_t n) override {
      if (n != 0) std::memcpy(buffer, p, n);
      length = n;
    }
    std::byte* assembly(std::uint64_t) override { return buffer; }
    void assembled(const std::byte*, std::size_t n) override { length = n; }
  } r;
  r.buffer = static_cast<std::byte*>(buffer);
  r.size = size;
  detail::receive_message(*impl_, r);
  return r.length;
}

bool Connection::poll_until(detail::Clock::time_point deadline) const {
  impl_->require_recv();
  const detail::ChannelRef& ch = impl_->recv_;
  bool slept = false;
  for (;;) {
    if (ch.data_hint() || impl_->peer().closed.load(std::memory_order_acquire) != 0) return true;
    if ((slept || detail::Clock::now() >= deadline) && !impl_->peer_open()) return true;
    if (detail::Clock::now() >= deadline) return false;
    ch.sleep_until(ch.state()->data,
                   [&] { return ch.data_hint() || impl_->peer().closed.load() != 0; }, &deadline,
                   true);  // an observer: poll() takes nothing
    slept = true;
  }
}

void Connection::close() const { impl_->close(); }
bool Connection::closed() const noexcept { return impl_->closed_.load(); }
PipeEnd Connection::end() const noexcept { return impl_->end_; }
bool Connection::can_send() const noexcept { return impl_->can_send_; }
bool Connection::can_recv() const noexcept { return impl_->can_recv_; }
const Segment& Connection::segment() const noexcept { return impl_->seg_; }
const detail::ChannelRef* Connection::receive_channel() const noexcept {
  return impl_->can_recv_ ? &impl_->recv_ : nullptr;
}
bool Connection::peer_closed() const { return !impl_->peer_open(); }

}  // namespace multiproc
