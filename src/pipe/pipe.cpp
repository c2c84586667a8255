// Pipe and Connection: the API. Two channels in one segment (one per direction); each end has a
// holder table, which turns "no live process holds the other end" into EOF. The framing of large
// messages and the fork tracking of holders live next to this file (see connection_impl.hpp).
#include "connection_impl.hpp"

#include "../os.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <unistd.h>
#include <vector>

namespace multiproc {
namespace detail {
namespace {

constexpr std::uint64_t kDefaultPipeRing = std::uint64_t{1} << 20;

const char* end_name(PipeEnd e) { return e == PipeEnd::first ? "first" : "second"; }

}  // namespace

ConnectionImpl::ConnectionImpl(Segment seg, PipeEnd end, bool register_self)
    : seg_(std::move(seg)), end_(end) {
  state_ = static_cast<PipeState*>(seg_.body());
  what_ = seg_.describe() + " (" + end_name(end) + " end)";
  // Read once: later code uses these copies (and the ChannelRefs'), never the header again.
  const std::uint64_t rb = *static_cast<const volatile std::uint64_t*>(&state_->ring_bytes);
  const std::uint32_t channels =
      *static_cast<const volatile std::uint32_t*>(&state_->duplex) != 0 ? 2 : 1;
  if (rb == 0 || (rb & (rb - 1)) != 0 || seg_.count() != channels ||
      seg_.body_size() != kPipeHeader + channels * (kChannelSpan + rb)) {
    seg_.fail(errc::corrupt, "its pipe header does not match its segment");
  }
  // Each channel's geometry is copied and checked once (ChannelRef), against this pipe's.
  ChannelRef refs[2];
  for (std::uint32_t i = 0; i < channels; ++i) {
    ChannelState* c = channel_at(state_, static_cast<int>(i), rb);
    refs[i] = ChannelRef(c, kChannelSpan + rb, &what_);
    refs[i].set_rewind(true);  // a pipe promises no capacity: keep its messages in warm memory
    if (refs[i].ring_bytes() != rb || refs[i].ring_offset() != kChannelSpan ||
        refs[i].record_size() != 0) {
      seg_.fail(errc::corrupt, "its channel headers do not match its segment");
    }
    seg_.track_lock_owner(&c->producer.lock.owner);
    seg_.track_lock_owner(&c->consumer.lock.owner);
  }
  seg_.track_lock_owner(&state_->holders[0].lock.owner);
  seg_.track_lock_owner(&state_->holders[1].lock.owner);
  // Channel 0 carries messages to the first end; channel 1 (duplex) to the second.
  if (end == PipeEnd::first) {
    recv_ = refs[0];
    can_recv_ = true;
    if (channels == 2) {
      send_ = refs[1];
      can_send_ = true;
    }
  } else {
    send_ = refs[0];
    can_send_ = true;
    if (channels == 2) {
      recv_ = refs[1];
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

void ConnectionImpl::throw_if_closed_while_waiting(const char* action) const {
  // close() by another thread of this process wakes this one (wake_peer): it must not go back
  // to sleep on an end this process no longer holds.
  if (closed_.load(std::memory_order_relaxed)) {
    throw Error(errc::closed, what_ + ": " + action + ": the connection was closed while waiting");
  }
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

void ConnectionImpl::require_open_slow(const char* action) const {
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

void ConnectionImpl::wrong_direction(bool sending) const {
  throw Error(errc::wrong_direction,
              what_ + (sending ? ": this end of a one-way Pipe only receives (send on the second end)"
                               : ": this end of a one-way Pipe only sends (receive on the first end)"));
}

void ConnectionImpl::wait_room_slow(std::size_t n) const {
  // The cheap closed flag every time; the liveness scan of the peer's holders (system calls)
  // only after a sleep that brought no room — within 100 ms of a peer's death.
  bool slept = false;
  const std::int64_t stall = send_stall_ms_.load(std::memory_order_relaxed);
  const Clock::time_point deadline =  // no clock read for a pipe without a limit (nearly all)
      stall > 0 ? Clock::now() + std::chrono::milliseconds(stall) : Clock::time_point{};
  while (!send_.has_room(n)) {
    if (peer().closed.load(std::memory_order_acquire) != 0 || (slept && !peer_open())) {
      throw Closed(what_ + ": send: the peer closed its end");
    }
    // (In the middle of a message, stream() marks it given up as the exception leaves.)
    throw_if_closed_while_waiting("send");
    if (stall > 0 && slept && Clock::now() >= deadline) {
      throw SendStalled(errc::bad_state, what_ + ": send: the receiver made no room for " +
                                             std::to_string(stall) + " ms (stopped?)");
    }
    send_.sleep_until(
        send_.state()->space,
        [&] { return send_.room_hint(n) || peer().closed.load() != 0 || closed_.load(); },
        stall > 0 ? &deadline : nullptr);
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
  static ConnectionImpl& impl(const Connection& c) { return *c.impl_; }
  static void touch_rings(const Connection& c, std::size_t bytes) {
    const long page = ::sysconf(_SC_PAGESIZE);
    for (const ChannelRef* ch : {&c.impl_->recv_, &c.impl_->send_}) {
      if (ch->state() == nullptr) continue;  // a simplex end has one direction
      auto* ring = reinterpret_cast<unsigned char*>(ch->state()) + ch->ring_offset();
      const std::size_t n = std::min<std::uint64_t>(bytes, ch->ring_bytes());
      for (std::size_t off = 0; off < n; off += static_cast<std::size_t>(page)) {
        volatile unsigned char* b = ring + off;
        *b = *b;  // a write of what is there: the page is this process's from now on
      }
    }
  }
  static void send_parts(const Connection& c, std::string_view head, const std::byte* body,
                         std::size_t n) {
    struct Parts {
      std::string_view head;
      const std::byte* body;
      std::size_t n;
    } parts{head, body, n};
    c.send_with(head.size() + n, [](void* ctx, std::byte* out) {
      const auto* p = static_cast<const Parts*>(ctx);
      if (!p->head.empty()) std::memcpy(out, p->head.data(), p->head.size());
      if (p->n != 0) std::memcpy(out + p->head.size(), p->body, p->n);
    }, &parts);
  }
  static Connection open(Segment seg, PipeEnd end) {
    if (end != PipeEnd::first && end != PipeEnd::second) {
      throw Error(errc::invalid_argument,
                  seg.describe() + ": PipeEnd(" + std::to_string(static_cast<int>(end)) +
                      ") is not an end of a pipe (PipeEnd::first or PipeEnd::second)");
    }
    // This process may already hold the end (made the Pipe, or opened it before): one impl per
    // end per process, so that dropping one handle does not end the process's holding.
    if (auto impl = find_tracked(seg.body(), end)) {
      impl->require_open("open");  // registers this process if it was not yet
      return Connection(impl);
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
  layout.body_alignment = detail::kCacheLine;
  return layout;
}

Segment::Init pipe_init(bool duplex, std::uint64_t ring_bytes, std::string what) {
  return [=](void* body) {
    auto* p = static_cast<PipeState*>(body);
    p->duplex = duplex ? 1 : 0;
    p->ring_bytes = ring_bytes;
    const std::uint64_t start = self_start_time();
    for (HolderTable& t : p->holders) {  // the creator holds both ends
      holder_table_init(t, ::getpid(), start, what + " (holders)");
    }
    const std::uint64_t capacity = std::min<std::uint64_t>(ring_bytes / 16, kMaxCapacity);
    for (int i = 0; i < (duplex ? 2 : 1); ++i) {
      channel_init(channel_at(p, i, ring_bytes), ring_bytes, capacity, 0, kChannelSpan, what);
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

void detail::touch_rings(const Connection& c, std::size_t bytes) {
  detail::PipeFactory::touch_rings(c, bytes);
}

void detail::send_parts(const Connection& c, std::string_view head, const std::byte* body,
                        std::size_t n) {
  detail::PipeFactory::send_parts(c, head, body, n);
}

void detail::set_send_stall_limit(const Connection& c, std::chrono::milliseconds limit) {
  detail::PipeFactory::impl(c).send_stall_ms_.store(limit.count(), std::memory_order_relaxed);
}

bool detail::send_drained(const Connection& c) { return detail::PipeFactory::impl(c).send_.drained(); }

bool detail::peer_marked_closed(const Connection& c) noexcept {
  return holder_table_closed(detail::PipeFactory::impl(c).peer());
}

bool detail::poll_watching(const Connection& c, Clock::time_point deadline,
                           const SliceWatch& watch) {
  const ConnectionImpl& impl = detail::PipeFactory::impl(c);
  impl.require_recv();
  const ChannelRef& ch = impl.recv_;
  const auto ready = [&] { return ch.data_hint() || impl.peer().closed.load() != 0; };
  if (ready()) return true;
  impl.throw_if_closed_while_waiting("poll");
  const Clock::time_point* until = deadline == Clock::time_point::max() ? nullptr : &deadline;
  // An observer, as poll(): it takes nothing. Our own close() (another thread) ends the wait too.
  ch.sleep_until(ch.state()->data, [&] { return ready() || impl.closed_.load(); }, until, true,
                 &watch);
  if (ready()) return true;
  impl.throw_if_closed_while_waiting("poll");
  return false;
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
  if (n <= ch.max_whole_payload()) {
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
  if (n > ch.max_whole_payload()) {  // streamed (max_whole_payload): encode aside, then stream
    // Not zero-filled first (a std::vector would be): the encoder writes every byte.
    std::unique_ptr<std::byte[]> buffer(new std::byte[n]);
    encode(ctx, buffer.get());
    send_bytes(buffer.get(), n);
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
    const std::string* what;
    std::vector<std::byte> buffer;
    bool accept(std::uint64_t) override { return true; }
    // A message that is not a T (Codec's Error(corrupt)) names this pipe too.
    void run(const std::byte* p, std::size_t n) {
      try {
        decode(ctx, p, n);
      } catch (const Error& e) {
        if (e.code() != errc::corrupt) throw;
        throw Error(errc::corrupt, *what + ": recv: " + e.what() + " (the message is dropped)");
      }
    }
    void whole(const std::byte* p, std::size_t n) override { run(p, n); }
    void begin(std::uint64_t total) override {
      buffer.clear();
      buffer.reserve(static_cast<std::size_t>(std::min(total, detail::kAssemblyReserve)));
    }
    void chunk(const std::byte* p, std::size_t n) override { buffer.insert(buffer.end(), p, p + n); }
    void assembled() override { run(buffer.data(), buffer.size()); }
  } r;
  r.decode = decode;
  r.ctx = ctx;
  r.what = &impl_->what_;
  detail::receive_message(*impl_, r);
}

std::string Connection::recv_bytes() const {
  struct Bytes : detail::Receiver {
    std::string out;
    bool accept(std::uint64_t) override { return true; }
    void whole(const std::byte* p, std::size_t n) override {
      out.assign(reinterpret_cast<const char*>(p), n);
    }
    void begin(std::uint64_t total) override {
      out.clear();
      out.reserve(static_cast<std::size_t>(std::min(total, detail::kAssemblyReserve)));
    }
    void chunk(const std::byte* p, std::size_t n) override {
      out.append(reinterpret_cast<const char*>(p), n);
    }
    void assembled() override {}
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
    void begin(std::uint64_t) override { length = 0; }
    void chunk(const std::byte* p, std::size_t n) override {  // accept() bounds the total
      std::memcpy(buffer + length, p, n);
      length += n;
    }
    void assembled() override {}
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
    impl_->throw_if_closed_while_waiting("poll");
    ch.sleep_until(
        ch.state()->data,
        [&] { return ch.data_hint() || impl_->peer().closed.load() != 0 || impl_->closed_.load(); },
        &deadline, true);  // an observer: poll() takes nothing
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
