// The channel core under Queue and Pipe: end ownership (lease or robust mutex), records in a
// byte ring, and the sleep/wake protocol. See include/multiproc/detail/channel.hpp.
#include <multiproc/detail/channel.hpp>

#include "os.hpp"
#include "waiter_count.hpp"

#include <multiproc/detail/fork_hooks.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <csignal>
#include <climits>
#include <cstring>
#include <linux/membarrier.h>
#include <pthread.h>
#include <string>
#include <sys/syscall.h>
#include <unistd.h>

namespace multiproc::detail {
namespace {

// Operations in a row by one thread, in shared mode, before it is given the lease.
constexpr std::uint32_t kLeaseStreak = 64;

// A field of shared memory read exactly once (the compiler may not load it again later).
template <class T>
T read_once(const T& field) noexcept {
  return *static_cast<const volatile T*>(&field);
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::uint64_t round_up_pow2(std::uint64_t n) noexcept {
  std::uint64_t p = 64;
  while (p < n) p <<= 1;
  return p;
}

}  // namespace

void ChannelRef::asymmetric_fence_heavy() noexcept { heavy_fence(); }

std::uint64_t ring_bytes_for(std::uint64_t capacity, std::uint32_t record_size,
                             std::uint64_t requested_bytes, const std::string& what) {
  if (capacity == 0 || capacity > kMaxCapacity) {
    throw Error(errc::invalid_argument, what + ": capacity " + std::to_string(capacity) +
                                            " is not in [1, " + std::to_string(kMaxCapacity) + "]");
  }
  std::uint64_t bytes;
  if (record_size != 0) {
    bytes = capacity * record_size;
  } else if (requested_bytes != 0) {
    bytes = requested_bytes;
  } else {
    bytes = std::max<std::uint64_t>(std::uint64_t{64} << 10, capacity * 256);
  }
  if (bytes > kMaxRingBytes) {
    throw Error(errc::invalid_argument, what + ": a ring of " + std::to_string(bytes) +
                                            " bytes is too large (the limit is " +
                                            std::to_string(kMaxRingBytes) + ")");
  }
  bytes = round_up_pow2(std::max<std::uint64_t>(bytes, record_size == 0 ? 256 : 64));
  return bytes;
}

void channel_init(ChannelState* c, std::uint64_t ring_bytes, std::uint64_t capacity,
                  std::uint32_t record_size, std::uint64_t ring_offset, const std::string& what) {
  c->ring_bytes = ring_bytes;
  c->capacity = capacity;
  c->ring_offset = ring_offset;
  c->record_size = record_size;
  mutex_init(&c->producer.lock, false, what + " (producer end)");
  mutex_init(&c->consumer.lock, false, what + " (consumer end)");
  c->producer.cpu.store(-1, std::memory_order_relaxed);  // no producer has published yet
  // Everything else starts at zero: shared mode, empty ring, not closed.
}

ChannelRef::ChannelRef(ChannelState* c, std::uint64_t span, const std::string* what)
    : c_(c), what_(what) {
  const std::uint64_t rb = read_once(c->ring_bytes);
  const std::uint64_t capacity = read_once(c->capacity);
  const std::uint64_t offset = read_once(c->ring_offset);
  const std::uint32_t record_size = read_once(c->record_size);
  std::string problem;
  if (rb < 64 || rb > kMaxRingBytes || (rb & (rb - 1)) != 0) {
    problem = "its ring size " + std::to_string(rb) + " is not a power of two in [64, 2^38]";
  } else if (offset < sizeof(ChannelState) || offset % kCacheLine != 0 || offset > span ||
             rb > span - offset) {
    problem = "its ring (" + std::to_string(rb) + " bytes at offset " + std::to_string(offset) +
              ") is not inside the " + std::to_string(span) + " bytes mapped for it";
  } else if (capacity == 0 || capacity > kMaxCapacity) {
    problem = "its capacity " + std::to_string(capacity) + " is not in [1, 2^23]";
  } else if (record_size != 0 && (record_size > rb || capacity * record_size > rb)) {
    problem = "its " + std::to_string(capacity) + " records of " + std::to_string(record_size) +
              " bytes do not fit its ring of " + std::to_string(rb);
  }
  if (!problem.empty()) {
    throw Error(errc::corrupt, *what + ": its channel header is damaged: " + problem);
  }
  ring_ = reinterpret_cast<unsigned char*>(c) + offset;
  rb_ = rb;
  capacity_ = capacity;
  record_size_ = record_size;
}

// ---- cursors from the other end ----------------------------------------------------------------

bool ChannelRef::cursors_plausible(std::uint64_t head, std::uint64_t tail) const noexcept {
  const std::uint64_t bytes = bytes_between(head, tail);
  const std::uint64_t records = records_between(head, tail);
  if (bytes > rb_ || records > capacity_) return false;
  if (record_size_ != 0) return bytes == records * record_size_;  // every record is that size
  // Variable records start on kRecordAlign boundaries and take at least a header each.
  return ((head | tail) & (kRecordAlign - 1)) == 0 && records <= bytes / kRecordHeader;
}

void ChannelRef::corrupt_cursors(std::uint64_t head, std::uint64_t tail) const {
  throw Error(errc::corrupt,
              *what_ + ": its cursors cannot be right (consumer at " + hex(head) + ", producer at " +
                  hex(tail) + ", ring of " + std::to_string(rb_) + " bytes, capacity " +
                  std::to_string(capacity_) + "): the segment was damaged; a get() skips ahead");
}

void ChannelRef::realign_producer(std::uint64_t tail) const {
  // Only the holder of the producer end writes its cursor: move it to the next boundary. The
  // bytes skipped hold no header a consumer can believe: it will skip them as damaged.
  const std::uint64_t bytes = (cursor_bytes(tail) + kRecordAlign - 1) & ~(kRecordAlign - 1);
  // release: pairs with the consumer's acquire load of the producer cursor.
  c_->producer.mine = make_cursor(cursor_records(tail), bytes);
  c_->producer.cursor.store(c_->producer.mine, std::memory_order_release);
  notify(c_->data, 1);
  throw Error(errc::corrupt, *what_ + ": its producer cursor " + hex(tail) +
                                 " was misaligned (the segment was damaged): realigned; the "
                                 "message was not put");
}

void ChannelRef::skip_to_producer(std::uint64_t head, const std::string& problem) const {
  EndState& k = c_->consumer;
  // acquire: pairs with the producer's release store of its cursor.
  const std::uint64_t tail = c_->producer.cursor.load(std::memory_order_acquire);
  std::string dropped;
  if (cursors_plausible(head, tail) ||
      (bytes_between(head, tail) <= rb_ && records_between(head, tail) <= capacity_)) {
    const std::uint64_t records = records_between(head, tail);
    dropped = "skipped the " + std::to_string(records) +
              " message(s) published up to the producer cursor";
    // A JoinableQueue counts the skipped messages as done (nobody can take them any more), so
    // that join() does not wait for them. (Other channels do not read `done`.)
    if (records != 0) {
      c_->done.fetch_add(records);
      notify(c_->done_signal, INT_MAX);
    }
  } else {
    dropped = "its cursors cannot be right (consumer at " + hex(head) + ", producer at " +
              hex(tail) + "): skipped to the producer cursor, dropping whatever was queued";
  }
  k.other = tail;
  k.pending = tail;
  k.mine = tail;
  // release: pairs with the producer's acquire load of the consumer cursor; frees the bytes.
  k.cursor.store(tail, std::memory_order_release);
  notify(c_->space, INT_MAX);
  throw Error(errc::corrupt, *what_ + ": " + problem + " (the segment was damaged); " + dropped +
                                 "; the next get goes on from there");
}

// ---- ends ------------------------------------------------------------------------------------

// The holder is its thread, in its process (checked by start time against pid reuse). Only
// positive evidence makes it dead: "no such process", another start time, or a thread missing
// from a process whose /proc entry we can read. A process that exists but that /proc hides from
// us (hidepid) counts as alive: taking a live holder's end would corrupt the ring.
bool holder_slot_alive(const HolderSlot& h) noexcept {
  const pid_t pid = h.pid.load(std::memory_order_relaxed);
  const pid_t tid = h.tid.load(std::memory_order_relaxed);
  // unknown counts as alive (see above).
  return thread_liveness(pid, tid, h.start) != Liveness::dead;
}

void ChannelRef::step_aside(HolderSlot& h) noexcept {
  h.active.store(0, std::memory_order_release);
  futex_wake(&h.active, INT_MAX);
}

void ChannelRef::wake_revoker(HolderSlot& h) noexcept { futex_wake(&h.active, INT_MAX); }

// This thread's holder slot, claimed if need be (requires the end's lock); -1 if none is free
// (32 live threads have held this end's lease): the end then stays shared for this thread.
int ChannelRef::claim_holder_slot(EndState& e) noexcept {
  const pid_t tid = current_tid(), pid = current_pid();
  const std::uint64_t start = current_start_time();
  int free_slot = -1;
  for (int i = 0; i < kHolderSlots; ++i) {
    HolderSlot& h = e.slots[i];
    const pid_t t = h.tid.load(std::memory_order_relaxed);
    if (t == tid && h.pid.load(std::memory_order_relaxed) == pid && h.start == start) return i;
    if (free_slot < 0 && (t == 0 || !holder_slot_alive(h))) free_slot = i;
  }
  if (free_slot < 0) return -1;
  // A dead thread's slot is reused: it writes nothing any more. (The current lease, if any, was
  // revoked before this thread got here, so the slot is not the lease's.)
  HolderSlot& h = e.slots[free_slot];
  h.tid.store(0, std::memory_order_relaxed);
  h.active.store(0, std::memory_order_relaxed);
  h.pid.store(pid, std::memory_order_relaxed);
  h.start = start;
  h.tid.store(tid, std::memory_order_release);
  return free_slot;
}

EndToken ChannelRef::acquire_slow(EndState& e, const Clock::time_point* deadline) const {
  const pid_t me = current_tid();
  Clock::time_point now;
  if (deadline != nullptr && *deadline == kNoWait) {  // try_put, try_get: one look, no wait
    now = Clock::now();
    deadline = &now;
  }
  if (deadline == nullptr || *deadline == Clock::time_point::max()) {
    mutex_lock(&e.lock, *what_);
  } else if (!mutex_lock_until(&e.lock, *deadline, *what_)) {
    return EndToken::none;
  }

  if (e.mode.load(std::memory_order_relaxed) == kEndLeased) {
    const std::int32_t slot = e.lease_slot.load(std::memory_order_relaxed);
    if (slot >= 0 && slot < kHolderSlots) {
      HolderSlot& h = e.slots[slot];
      if (h.tid.load(std::memory_order_relaxed) != me ||
          h.pid.load(std::memory_order_relaxed) != current_pid()) {
        // Revoke the lease: after the heavy fence, the holder either saw `revoke` (and will step
        // aside) or its `active` store is visible to us.
        e.revoke.store(1);
        asymmetric_fence_heavy();  // SYNC POINT: pairs with the holder's light fence
        while (h.active.load(std::memory_order_acquire) != 0) {
          if (!holder_slot_alive(h)) break;  // died inside an operation: nothing was published
          const auto slice = next_slice(deadline);
          if (!futex_wait(&h.active, 1, &slice) && deadline != nullptr && Clock::now() >= *deadline) {
            e.revoke.store(0, std::memory_order_relaxed);
            mutex_unlock(&e.lock, *what_);
            return EndToken::none;
          }
        }
      }
    }
    e.lease_slot.store(-1, std::memory_order_relaxed);
    e.mode.store(kEndShared, std::memory_order_relaxed);
    e.revoke.store(0, std::memory_order_release);  // release: mode and slot first (weak CPUs)
  }
  // The owner's copy of the cursor is only as good as the last owner left it (it may have died
  // between the two stores): the shared cursor is the truth.
  e.mine = e.cursor.load(std::memory_order_relaxed);
  // A chunked message still marked as being sent has no sender any more: its holder finished
  // its operation (or died in it) before we got here. Tell the consumer assembling it.
  if (e.open_message.load(std::memory_order_relaxed) == kOpenStreaming) abandon_message_of(e);
  if (e.last_tid == me) {
    ++e.streak;
  } else {
    e.last_tid = me;
    e.streak = 1;
  }
  return EndToken::locked;
}

void ChannelRef::release_slow(EndState& e, EndToken t) const noexcept {
  if (t == EndToken::locked) {
    if (e.streak >= kLeaseStreak) {
      // The same thread every time: give it the lease, so its next operations skip the mutex.
      e.streak = 0;
      const int slot = claim_holder_slot(e);
      if (slot >= 0) {
        e.lease_slot.store(slot, std::memory_order_relaxed);
        e.mode.store(kEndLeased, std::memory_order_release);
      }
    }
    mutex_unlock_noexcept(&e.lock, *what_);
  }
}

// ---- producer --------------------------------------------------------------------------------

bool ChannelRef::has_room_slow(std::size_t n) const {
  EndState& p = c_->producer;
  const std::uint64_t tail = p.mine;
  if (record_size_ == 0 && (tail & (kRecordAlign - 1)) != 0) realign_producer(tail);
  if (fits(p.other, tail, n)) return true;
  repair_own_cursor(p, tail);
  // acquire: pairs with the consumer's release store of its cursor; the bytes it freed are ours.
  const std::uint64_t head = c_->consumer.cursor.load(std::memory_order_acquire);
  // A consumer cursor ahead of ours, or further behind than the ring allows, is damage: waiting
  // for room would wait forever.
  if (!cursors_plausible(head, tail)) corrupt_cursors(head, tail);
  p.other = head;
  return fits(head, tail, n);
}

void ChannelRef::repair_own_cursor(EndState& e, std::uint64_t mine) const noexcept {
  // The owner works from its copy (EndState::mine) and only stores the shared cursor, so a
  // cursor scribbled while it holds the end would stay wrong until its next store — for ever, if
  // that damage is what stops the other end (a consumer cursor ahead of the producer fails
  // every put, and a consumer with nothing to take never stores). Asked whenever the owner
  // finds no room or no data: it puts the truth back.
  if (e.cursor.load(std::memory_order_relaxed) != mine) {
    // release: as the owner's stores of its cursor.
    e.cursor.store(mine, std::memory_order_release);
    notify(&e == &c_->producer ? c_->data : c_->space, INT_MAX);
  }
}

bool ChannelRef::has_data_slow(std::uint64_t head) const {
  EndState& k = c_->consumer;
  repair_own_cursor(k, head);
  // acquire: pairs with the producer's release store of its cursor; the record is readable.
  const std::uint64_t tail = c_->producer.cursor.load(std::memory_order_acquire);
  k.other = tail;
  if (bytes_between(head, tail) == 0 && records_between(head, tail) == 0) return false;
  if (!cursors_plausible(head, tail)) skip_to_producer(head, "its cursors cannot be right");
  return true;
}

bool ChannelRef::room_hint(std::size_t n) const noexcept {
  const std::uint64_t tail = c_->producer.cursor.load(std::memory_order_acquire);
  const std::uint64_t head = c_->consumer.cursor.load(std::memory_order_acquire);
  return fits(head, tail, n);
}

bool ChannelRef::rewind_ok(std::uint64_t tail) const noexcept {
  EndState& p = c_->producer;
  // acquire: pairs with the consumer's release store of its cursor; the bytes it freed are ours.
  const std::uint64_t head = c_->consumer.cursor.load(std::memory_order_acquire);
  if (head != tail) return false;
  p.other = head;  // a fresh lower bound (it is the tail)
  return true;
}

unsigned char* ChannelRef::reserve(std::size_t n, RecordType type) const {
  EndState& p = c_->producer;
  const std::uint64_t rb = rb_;
  const std::uint64_t tail = p.mine;
  // Checked here too, not only in has_room(): a header at a misaligned offset could end past
  // the ring.
  if ((tail & (kRecordAlign - 1)) != 0) realign_producer(tail);
  std::uint64_t bytes = cursor_bytes(tail);
  std::uint64_t off = bytes & (rb - 1);
  const std::uint64_t span = record_span(n);
  // A skip to the ring's end: where the record does not fit before it, and, for a channel that
  // rewinds (set_rewind), where the consumer has taken everything — looked at only when the
  // record crosses a sixteenth of the ring past its first quarter, so a producer that runs ahead
  // loads the consumer's cursor line once per sixteenth, not per record. Room: has_room(n) saw
  // room for the record after the cached consumer cursor; with the consumer at our tail the
  // whole ring is free, and the skip plus the record take rb - off + span <= rb.
  // (off ^ (off + span)) >= rb / 16: the record crosses a multiple of rb / 16.
  if (off + span > rb || (rewind_ && off >= rb / 4 && span <= off &&
                          (off ^ (off + span)) >= rb / 16 && rewind_ok(tail))) {
    const RecordHeader skip =
        seal_record(bytes, static_cast<std::uint32_t>(rb - off - kRecordHeader), kRecordSkip);
    std::memcpy(ring_ + off, &skip, sizeof skip);
    bytes += rb - off;
    off = 0;
  }
  const RecordHeader h = seal_record(bytes, static_cast<std::uint32_t>(n), type);
  std::memcpy(ring_ + off, &h, sizeof h);
  p.pending = make_cursor(cursor_records(tail) + record_counts(type), bytes + span);
  return ring_ + off + kRecordHeader;
}

void ChannelRef::publish(std::size_t /*n*/) const noexcept {
  EndState& p = c_->producer;
  const std::uint64_t tail = p.mine;
  if (tls_waited) note_cpu(p);
  p.mine = p.pending;
  // release: pairs with the consumer's acquire load of the producer cursor; publishes the record.
  p.cursor.store(p.pending, std::memory_order_release);
  // Refresh the 64-bit count when the 24-bit one crossed a multiple of kPutsRefresh.
  if (cursor_records(p.pending) != cursor_records(tail) &&
      (cursor_records(p.pending) & (kPutsRefresh - 1)) == 0) {
    refresh_puts(p.pending);
  }
  notify(c_->data, 1);
}

void ChannelRef::refresh_puts(std::uint64_t cursor) const noexcept {
  // Only the producer end's owner writes puts_base; it lags the cursor by less than 2^21.
  const std::uint64_t base = c_->puts_base.load(std::memory_order_relaxed);
  // release: pairs with the acquire in messages_put().
  c_->puts_base.store(base + ((cursor_records(cursor) - base) & kCursorRecordMask),
                      std::memory_order_release);
}

std::uint64_t ChannelRef::messages_put() const noexcept {
  // puts_base first, then the cursor: the base is never ahead of the cursor read after it, and
  // never 2^24 behind (it is refreshed every kPutsRefresh messages, and the owner that died
  // before a refresh is followed by one that refreshes at the next multiple).
  const std::uint64_t base = c_->puts_base.load(std::memory_order_acquire);
  const std::uint64_t tail = c_->producer.cursor.load(std::memory_order_acquire);
  return base + ((cursor_records(tail) - base) & kCursorRecordMask);
}

void ChannelRef::abandon_message() const noexcept { abandon_message_of(c_->producer); }

void ChannelRef::abandon_message_of(EndState& e) const noexcept {
  // release: pairs with the acquire in open_message_dead(); every chunk sent is published.
  e.open_message.store(kOpenAbandoned, std::memory_order_release);
  notify(c_->data, INT_MAX);
}

namespace {
// Whether the thread that holds a producer end (by lease or by its mutex) is gone.
bool producer_holder_dead(const EndState& e) noexcept {
  if (e.mode.load(std::memory_order_relaxed) == kEndLeased) {
    const std::int32_t slot = e.lease_slot.load(std::memory_order_relaxed);
    return slot >= 0 && slot < kHolderSlots && !holder_slot_alive(e.slots[slot]);
  }
  const pid_t tid = e.lock.owner.load(std::memory_order_relaxed);
  // A tid is visible in /proc like a pid. unknown: not dead (the message may still complete).
  return tid > 0 && process_liveness(tid, 0) == Liveness::dead;
}
}  // namespace

bool ChannelRef::open_message_dead(bool ask_liveness) const noexcept {
  // acquire: pairs with the release stores of open_message; what was sent before is visible.
  const std::uint32_t open = c_->producer.open_message.load(std::memory_order_acquire);
  if (open == kOpenStreaming) return ask_liveness && producer_holder_dead(c_->producer);
  // kOpenAbandoned, or kOpenNone: its sender finished (then its Last chunk would be visible,
  // and the caller saw no data) or the next sender cleared it.
  return true;
}

void ChannelRef::copy_wrapped_in(std::uint64_t off, const void* bytes,
                                 std::uint64_t size) const noexcept {
  const std::uint64_t first = rb_ - off;
  std::memcpy(ring_ + off, bytes, first);
  std::memcpy(ring_, static_cast<const unsigned char*>(bytes) + first, size - first);
}

void ChannelRef::copy_wrapped_out(std::uint64_t off, void* out, std::uint64_t size) const noexcept {
  const std::uint64_t first = rb_ - off;
  std::memcpy(out, ring_ + off, first);
  std::memcpy(static_cast<unsigned char*>(out) + first, ring_, size - first);
}

// ---- consumer --------------------------------------------------------------------------------

bool ChannelRef::data_hint() const noexcept {
  const std::uint64_t head = c_->consumer.cursor.load(std::memory_order_acquire);
  const std::uint64_t tail = c_->producer.cursor.load(std::memory_order_acquire);
  return bytes_between(head, tail) != 0;  // a message, or the beginning of a chunked one
}

const unsigned char* ChannelRef::peek(RecordHeader& out) const {
  EndState& k = c_->consumer;
  const std::uint64_t rb = rb_;
  const std::uint64_t head = k.mine;
  // has_data() saw [head, other) published and at most a ring long.
  const std::uint64_t published = bytes_between(head, k.other);
  if ((head & (kRecordAlign - 1)) != 0 || published > rb) {
    skip_to_producer(head, "its consumer cursor " + hex(head) + " is not at a record");
  }
  std::uint64_t bytes = cursor_bytes(head);
  std::uint64_t off = bytes & (rb - 1);
  std::uint64_t skipped = 0;
  RecordHeader h;
  std::memcpy(&h, ring_ + off, sizeof h);
  if ((h.type & kRecordTypeMask) == kRecordSkip) {
    if (h.type != seal_record(bytes, h.length, kRecordSkip).type ||
        h.length != rb - off - kRecordHeader) {  // a skip runs to the ring's end
      skip_to_producer(head, "a record in the ring is damaged (bad header)");
    }
    skipped = rb - off;
    bytes += skipped;
    off = 0;
    std::memcpy(&h, ring_, sizeof h);
  }
  // The header comes from shared memory: check it before anyone trusts it. Its check covers its
  // length, type and place; the record must also lie in the ring and in what was published.
  const std::uint32_t type = h.type & kRecordTypeMask;
  if (type < kRecordWhole || type > kRecordAbort || type == kRecordSkip ||
      h.type != seal_record(bytes, h.length, type).type || h.length > rb - off - kRecordHeader ||
      record_span(h.length) > rb - off || skipped + record_span(h.length) > published) {
    skip_to_producer(head, "a record in the ring is damaged (bad header)");
  }
  out = RecordHeader{h.length, type};
  k.pending = make_cursor(cursor_records(head) + record_counts(type), bytes + record_span(h.length));
  return ring_ + off + kRecordHeader;
}

// ---- waiting ---------------------------------------------------------------------------------

int ChannelRef::register_sleeper(Signal& s, bool observer) noexcept {
  (observer ? s.observers : s.waiters).fetch_add(1);  // seq_cst
  const std::int32_t code = (current_pid() << 1) | (observer ? 1 : 0);
  for (int i = 0; i < kSleeperSlots; ++i) {
    std::int32_t free_slot = 0;
    if (s.sleepers[i].compare_exchange_strong(free_slot, code)) return i;
  }
  return -1;  // all slots taken: counted, and healed only by the miss rule in wake()
}

void ChannelRef::unregister_sleeper(Signal& s, bool observer, int slot) noexcept {
  if (slot >= 0) {
    std::int32_t code = (current_pid() << 1) | (observer ? 1 : 0);
    // Fails only if a healer took the slot, having judged us dead: then it also took the count.
    if (!s.sleepers[slot].compare_exchange_strong(code, 0)) return;
  }
  count_down(observer ? s.observers : s.waiters);
}

void ChannelRef::wake(Signal& s, int n) noexcept {
  // seq_cst: pairs with the sleeper's store of asleep = 1 (see Signal). Observers do not set it:
  // with observers registered, bump and wake every time.
  const bool armed = s.asleep.exchange(0) != 0;
  if (armed || n == INT_MAX) {
    s.epoch.fetch_add(1, std::memory_order_release);
    const int woken = futex_wake(&s.epoch, n);
    // More are counted than we woke (the woken still count until they leave): more may sleep,
    // and the next waker must not skip them.
    if (n != INT_MAX && s.waiters.load(std::memory_order_relaxed) > static_cast<std::uint32_t>(woken)) {
      s.asleep.store(1);
    }
    if (woken > 0) return;
  }
  // Nobody was asleep although the counts say some are: perhaps about to sleep, already woken
  // and on their way out, or killed while asleep. Now and then, take the dead off the counts, or
  // every later operation would pay for this: scan every 64 wake-up system calls that found
  // nobody, or every 512 skipped ones (a woken sleeper that waits for a CPU makes many of those,
  // and each scan costs system calls per sleeper).
  const std::uint32_t weight = armed ? 8 : 1;
  if ((s.misses.fetch_add(weight, std::memory_order_relaxed) + weight) % 512 >= weight) return;
  std::uint32_t slotted[2] = {0, 0};  // live (or unknown) slotted waiters, observers
  for (auto& slot : s.sleepers) {
    std::int32_t code = slot.load(std::memory_order_relaxed);
    if (code == 0) continue;
    // unknown: keep the count (a wake-up too many costs less than a sleeper never woken).
    if (process_liveness(code >> 1, 0) != Liveness::dead) {
      ++slotted[code & 1];
    } else if (slot.compare_exchange_strong(code, 0)) {
      count_down((code & 1) != 0 ? s.observers : s.waiters);
    }
  }
  // Sleepers beyond the kSleeperSlots have no slot, so a dead one cannot be told from a live
  // one: 9 processes killed inside wait() on one queue left its count above 0 for good, and every
  // later put paid a system call (20x slower; an outside probe). We get here only after wake-ups
  // that woke nobody, 64 system calls' worth: sleepers counted beyond the slotted ones are then
  // taken as gone. One that was alive after all (awake between two sleeps all that time) takes
  // nothing off below 0 when it leaves (count_down), and may miss one wake-up: it looks again at
  // the end of its liveness slice.
  for (int k = 0; k < 2; ++k) {
    std::atomic<std::uint32_t>& count = k == 1 ? s.observers : s.waiters;
    std::uint32_t v = count.load(std::memory_order_relaxed);
    while (v > slotted[k] && !count.compare_exchange_weak(v, slotted[k], std::memory_order_relaxed)) {
    }
  }
}

bool ChannelRef::sleep_on(Signal& s, std::uint32_t epoch, const Clock::time_point* deadline,
                          bool& ran_out) const noexcept {
  if (deadline != nullptr && Clock::now() >= *deadline) {
    ran_out = false;  // no sleep: a poll(0) does not make the next wait skip its spin
    return false;
  }
  const auto slice = next_slice(deadline);
  futex_wait(&s.epoch, epoch, &slice);
  const auto now = Clock::now();
  ran_out = now >= slice && s.epoch.load(std::memory_order_relaxed) == epoch;
  return deadline == nullptr || now < *deadline;
}

void ChannelRef::close(std::uint32_t bits) const noexcept {
  // One read-modify-write: a process killed here has either closed the channel or not.
  c_->closed.fetch_or(bits);
  for (Signal* s : {&c_->data, &c_->space, &c_->done_signal}) {
    s->epoch.fetch_add(1, std::memory_order_release);
    futex_wake(&s->epoch, INT_MAX);
  }
}

void throw_corrupt_record(const std::string& what, const std::string& problem) {
  throw Error(errc::corrupt, what + ": " + problem +
                                 " (the segment was damaged); the record was skipped");
}

std::uint64_t ChannelRef::size() const noexcept {
  if (shut_down_immediately()) return 0;  // what is left is discarded
  const std::uint64_t head = c_->consumer.cursor.load(std::memory_order_acquire);
  const std::uint64_t tail = c_->producer.cursor.load(std::memory_order_acquire);
  // Two loads, one after the other: the consumer may move (and the producer after it) between
  // them, so a sound snapshot can exceed the capacity (by at most a ring), never be negative.
  // A consumer ahead of the producer (more than half the byte space away) is damage.
  if (bytes_between(head, tail) > kCursorByteMask / 2) return 0;
  return std::min(records_between(head, tail), capacity_);
}

}  // namespace multiproc::detail
