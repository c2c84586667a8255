// multiproc/detail/channel.hpp — the byte ring under Queue and Pipe. Private.
//
// A channel is a ring of bytes with two ends: producers append records at the tail, consumers
// take them from the head. Each end is owned by one thread at a time, in one of two ways:
//
// - leased: one thread that uses the end over and over holds a lease. Its operations touch only
//   cache lines it owns — no atomic read-modify-write, no fence — which is what lets a queue run
//   at the speed of a bare spinning ring. Another thread that wants the end revokes the lease: it
//   raises `revoke`, issues membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) so that the holder's
//   plain stores and loads are ordered against it (an asymmetric fence: the rare side pays), and
//   waits until the holder is not inside an operation (`active` == 0) — or is dead.
// - shared: every operation takes the end's robust mutex. An end falls back to shared when a
//   lease is revoked, and is leased again to a thread that performed kLeaseStreak operations in a
//   row.
//
// Records are published by one 64-bit store of the producer's cursor (messages << 40 | bytes), so
// a producer killed at any instruction has published a record entirely or not at all; a consumer
// advances its own cursor only after copying a record out, so a consumer killed mid-copy leaves
// the record for the next one. Nothing is ever half-visible, duplicated or lost except the one
// record in flight in the dead process.
//
// Messages larger than a record stream through the ring in chunks (First, Middle..., Last) while
// the sender holds the producer end, so the chunks of one message are contiguous. The cursor's
// message count moves only with a Whole record or a Last chunk: a message counts once it is
// complete, and a message whose sender died or gave up never counts. A consumer holds the
// consumer end while it assembles a message; chunks it finds without their First (their reader
// died) are skipped, and a partial message is dropped when a new message begins after it, or when
// its sender is gone (`open_message`).
//
// A skip record (kRecordSkip) runs from where it starts to the ring's end: the next record is at
// offset 0. A producer writes one where a record does not fit before the end, and, on a channel
// that rewinds (set_rewind: pipes), where the consumer has taken everything and the tail is past
// the ring's first quarter, so that records cycle through its warm first part.
//
// Distrust: every byte of the segment may be written by a buggy or hostile process of the same
// user. The geometry (ring size, capacity, record size, ring offset) is copied into ChannelRef
// once, when the channel is opened, and checked against the mapping there (Error(corrupt));
// operations use only that copy, so every ring offset they compute is masked into the mapped
// ring whatever the cursors say. Cursors read from the other end are checked when they are
// loaded (the consumer's ahead of the producer's, or further apart than the ring or the capacity
// allow: Error(corrupt)), and every variable record's header carries a 24-bit check of its
// length, its type and its position in the stream (a damaged or moved header is not believed).
// A consumer that finds a damaged record or impossible cursors cannot know where the next good
// record starts: it skips everything published up to the producer cursor it then reads, says how
// many messages that dropped in the Error(corrupt) it throws once, and the next get() goes on from
// there. A producer that finds impossible cursors throws Error(corrupt) and changes nothing (the
// consumer end is not its to move): puts fail until a get() has skipped ahead; a producer that
// finds its own cursor misaligned realigns it (throwing once). What a hostile writer can still
// do is make messages wrong (it can write any payload bytes), lost or repeated within the ring —
// never make an operation read or write outside the mapping.
//
// Sleeping: a process that must wait (for data, for room, for a lease) registers in a waiters
// counter, issues the same membarrier, re-checks, and sleeps on a futex "epoch" word that the
// other side bumps (and wakes) only when it sees waiters. Sleepers wake every kLivenessSlice to
// notice dead partners; no CPU is used in between.
#pragma once

#include <multiproc/detail/cache_line.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/error.hpp>

#include <atomic>
#include <cstddef>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <sched.h>
#include <sys/types.h>

namespace multiproc::detail {

// A cursor packs complete messages (high 24 bits) and bytes (low 40 bits), so one store publishes
// both.
inline constexpr int kCursorByteBits = 40;
inline constexpr std::uint64_t kCursorByteMask = (std::uint64_t{1} << kCursorByteBits) - 1;
inline constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 23;   // records
inline constexpr std::uint64_t kMaxRingBytes = std::uint64_t{1} << 38;  // 256 GiB
inline constexpr std::uint64_t kCursorRecordMask = (std::uint64_t{1} << 24) - 1;
// ChannelState::puts_base is refreshed whenever the message count crosses a multiple of this.
inline constexpr std::uint64_t kPutsRefresh = std::uint64_t{1} << 20;
inline std::uint64_t cursor_bytes(std::uint64_t c) noexcept { return c & kCursorByteMask; }
inline std::uint64_t cursor_records(std::uint64_t c) noexcept { return c >> kCursorByteBits; }
inline std::uint64_t make_cursor(std::uint64_t records, std::uint64_t bytes) noexcept {
  return (records << kCursorByteBits) | (bytes & kCursorByteMask);
}
// Distances between cursors, modulo the field widths.
inline std::uint64_t bytes_between(std::uint64_t from, std::uint64_t to) noexcept {
  return (to - from) & kCursorByteMask;
}
inline std::uint64_t records_between(std::uint64_t from, std::uint64_t to) noexcept {
  return ((to >> kCursorByteBits) - (from >> kCursorByteBits)) & kCursorRecordMask;
}

// Variable-size records start with this header (8 bytes); fixed-size records have none.
enum RecordType : std::uint32_t {
  kRecordWhole = 1,   // a whole message (counts one message)
  kRecordSkip = 2,    // filler to the end of the ring: continue at offset 0
  kRecordFirst = 3,   // first chunk of a message too large for a record (payload: u64 total)
  kRecordMiddle = 4,  // further chunks
  kRecordLast = 5,    // last chunk (counts one message)
  kRecordAbort = 6,   // the sender of the open chunked message died: drop it (Pipe only)
};
//! Messages a record adds to the cursor's count: only a Whole record or a Last chunk completes one.
inline constexpr std::uint64_t record_counts(std::uint32_t type) noexcept {
  return type == kRecordWhole || type == kRecordLast ? 1 : 0;
}

// EndState::open_message of a producer end.
inline constexpr std::uint32_t kOpenNone = 0;       // no chunked message half sent
inline constexpr std::uint32_t kOpenStreaming = 1;  // the holder is sending one
inline constexpr std::uint32_t kOpenAbandoned = 2;  // its sender gave up (timeout, shutdown)

// ChannelState::closed bits.
inline constexpr std::uint32_t kClosed = 1;     // close() or shutdown(): no more puts
inline constexpr std::uint32_t kImmediate = 2;  // shutdown(immediate): what is queued is discarded
// In the ring, `type` holds the RecordType in its low 8 bits and record_check() in the high 24;
// peek() hands callers the bare RecordType.
struct RecordHeader {
  std::uint32_t length;  // payload bytes (excluding this header and padding)
  std::uint32_t type;    // RecordType | record_check(...) << 8
};
inline constexpr std::uint32_t kRecordTypeMask = 0xff;
//! The 24-bit check a variable record's header carries: of its length, its type and `position`,
//! the byte count of the producer cursor where the record starts (so a header copied from
//! elsewhere in the ring, or left from an earlier lap, is not believed either).
inline constexpr std::uint32_t record_check(std::uint64_t position, std::uint32_t length,
                                            std::uint32_t type) noexcept {
  std::uint64_t x = ((position & kCursorByteMask) << 3 | type) * 0x9E3779B97F4A7C15ull;
  x ^= std::uint64_t{length} * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  return static_cast<std::uint32_t>(x >> 40);
}
//! The header of a record at `position` (sealed with its check).
inline constexpr RecordHeader seal_record(std::uint64_t position, std::uint32_t length,
                                          std::uint32_t type) noexcept {
  return RecordHeader{length, type | record_check(position, length, type) << 8};
}
inline constexpr std::size_t kRecordHeader = sizeof(RecordHeader);
inline constexpr std::size_t kRecordAlign = 8;
//! Record bytes a variable payload of n bytes occupies (header + payload + padding).
inline std::size_t record_span(std::size_t n) noexcept {
  return kRecordHeader + (n + kRecordAlign - 1) / kRecordAlign * kRecordAlign;
}

//! See ChannelRef::max_whole_payload().
inline constexpr std::size_t kStreamChunk = std::size_t{128} << 10;

inline constexpr int kChannelSpin = 2000;
//! How many times a consumer whose producer last ran on its own CPU yields that CPU (see
//! sleep_until) before it sleeps.
inline constexpr int kChannelYields = 16;
inline constexpr std::uint32_t kEndShared = 0;
inline constexpr std::uint32_t kEndLeased = 1;

inline constexpr int kHolderSlots = 32;  // a power of two: a slot index is masked into range
static_assert((kHolderSlots & (kHolderSlots - 1)) == 0);

// A thread that has held (or holds) the lease of an end. Claimed under the end's lock by the
// thread itself (tid, pid, start); `active` is written only by that thread, around each of its
// operations while it holds the lease, and is the futex word a revoker sleeps on. Because every
// thread has its own word, a thread that was preempted just after checking it held the lease —
// and wakes up after the lease moved on — can only write its own word, never the new holder's.
struct HolderSlot {
  std::atomic<std::int32_t> tid;  // 0: free
  std::atomic<std::int32_t> pid;
  std::uint64_t start;            // the process's start time (pid reuse)
  std::atomic<std::uint32_t> active;
  std::uint32_t reserved;
};

// One end of a channel. Layout (each group on its own cache lines):
//   ownership   mode and lease_slot (written under `lock` when a lease is granted or revoked),
//               revoke (written by a revoker holding `lock`), streak state (under `lock`)
//   lock        robust mutex: every operation in shared mode, every lease grant and revocation
//   cursor      this end's progress; release-stored by the owner after the bytes it covers are
//               written (producer) or copied out (consumer); acquire-loaded by the other end
//   cpu         producer end: the CPU its owner ran on when it published after a wait
//               (current_cpu(), see note_cpu); a consumer waiting for data does not spin while
//               that is its own CPU. -1 (or garbage: only the spin depends on it) when unknown
//   (the owner's line, which the other end does not read on its fast path:)
//   mine        the owner's copy of `cursor`, as it last stored it; reread from `cursor` by every
//               acquire_slow (a new owner, or every operation of a shared end)
//   other       the owner's cached copy of the other end's cursor (a lower bound; may be stale)
//   pending     the cursor this end will store when the record being written/read is done
//   open_message  producer end: kOpenStreaming while a chunked message is half sent,
//               kOpenAbandoned when its sender gave up; written by the owner (release, after
//               the chunks it covers), read by consumers (acquire) to tell a dead message
//   slots       the threads that hold or held the lease (see HolderSlot)
//
// Why the owner's line: the other end spins on `cursor` while it waits, and on some CPUs (AMD's
// among them) such a read takes the line from the owner. An owner that then *loaded* anything
// from it — its own cursor, its cached copies — stalled a whole cache-line transfer before it
// could write the next record; a store does not stall. That load was a third of a Pipe round
// trip. So the fast paths only store to the cursor line.
struct alignas(kCacheLine) EndState {
  std::atomic<std::uint32_t> mode;
  std::atomic<std::int32_t> lease_slot;
  std::atomic<std::uint32_t> revoke;
  std::int32_t last_tid;
  std::uint32_t streak;
  alignas(kCacheLine) MutexState lock;
  alignas(kCacheLine) std::atomic<std::uint64_t> cursor;
  std::atomic<std::int32_t> cpu;  // where the owner last published (-1 or garbage: unknown)
  alignas(kCacheLine) std::uint64_t mine;
  std::uint64_t other;
  std::uint64_t pending;
  std::atomic<std::uint32_t> open_message;
  alignas(kCacheLine) HolderSlot slots[kHolderSlots];
};

static_assert(offsetof(EndState, mine) - offsetof(EndState, cursor) == kCacheLine &&
                  offsetof(EndState, slots) - offsetof(EndState, mine) == kCacheLine,
              "EndState: cpu shares the cursor's cache line; the owner's fields have their own");

//! Whether the thread of a holder slot still runs (and its process is the one that claimed it).
bool holder_slot_alive(const HolderSlot& h) noexcept;

inline constexpr int kSleeperSlots = 8;

// A futex word that one side bumps to wake the other, and who sleeps on it. Layout:
//   epoch      the futex word; bumped (release) by a waker that saw sleepers
//   waiters    sleepers that will take what they are woken for (get, recv, put): woken one at a
//              time
//   observers  sleepers that only look (wait(), poll()): woken on every notify, so that they
//              cannot swallow the one wake-up meant for a waiter
//   misses     wakes that found nobody asleep, weighted (see wake()); now and then the waker
//              reaps dead sleepers
//   sleepers   (pid << 1 | observer) of registered sleepers, 0 when free: lets a waker tell a
//              sleeper killed while registered from a live one, and take it off the counts
//   asleep     1: a waiter may be asleep (or about to sleep) on the epoch since the last wake.
//              Set (seq_cst) by a waiter before it reads the epoch; taken (exchange, seq_cst)
//              by a waker, which bumps and wakes only if it was set — so while a woken waiter
//              is still on its way out of the kernel (or waiting for a CPU), the wakers after
//              the first pay no system call. A waker that counts more waiters than it woke
//              sets it again (others may still sleep). Observers do not use it: a waker that sees observers
//              bumps and wakes every time.
struct alignas(kCacheLine) Signal {
  std::atomic<std::uint32_t> epoch;
  std::atomic<std::uint32_t> waiters;
  std::atomic<std::uint32_t> observers;
  std::atomic<std::uint32_t> misses;
  std::atomic<std::int32_t> sleepers[kSleeperSlots];
  std::atomic<std::uint32_t> asleep;
};
static_assert(sizeof(Signal) == kCacheLine, "Signal: one cache line");

// The shared state of one channel; the ring follows at `ring_offset` bytes from its start.
//   config (immutable after init): ring_bytes (a power of two), capacity (records),
//   record_size (fixed records; 0 for variable), ring_offset. Read once, by ChannelRef's
//   constructor, which checks it; never read again.
//   closed: kClosed | kImmediate bits, set once (fetch_or) and never cleared; read on every
//   operation
//   puts_base: the 64-bit count of messages published, as of a moment when the cursor's 24-bit
//   count was congruent to it; the producer end's owner refreshes it every kPutsRefresh
//   messages, so the full count is puts_base + (cursor messages - puts_base) mod 2^24 (see
//   messages_put()). Joinable queues count unfinished tasks with it.
//   done: JoinableQueue's task_done count (fetch_add), 64 bits
struct alignas(kCacheLine) ChannelState {
  std::uint64_t ring_bytes;
  std::uint64_t capacity;
  std::uint64_t ring_offset;
  std::uint32_t record_size;
  std::uint32_t reserved;
  std::atomic<std::uint32_t> closed;
  std::uint32_t reserved2;
  std::atomic<std::uint64_t> puts_base;
  alignas(kCacheLine) std::atomic<std::uint64_t> done;
  Signal done_signal;
  EndState producer;
  EndState consumer;
  Signal data;   // bumped by producers, slept on by consumers
  Signal space;  // bumped by consumers, slept on by producers
};

//! Rounds up to the ring size a channel of `capacity` records of up to `max_record` bytes gets.
std::uint64_t ring_bytes_for(std::uint64_t capacity, std::uint32_t record_size,
                             std::uint64_t requested_bytes, const std::string& what);

//! Initialises a zero-filled ChannelState whose ring starts `ring_offset` bytes after it.
void channel_init(ChannelState* c, std::uint64_t ring_bytes, std::uint64_t capacity,
                  std::uint32_t record_size, std::uint64_t ring_offset, const std::string& what);

//! Set when this thread enters a wait on a channel; its next publish records its CPU in the
//! producer end (ChannelRef::note_cpu) and clears it. Clear when a wait begins: the thread
//! published since its last wait, and likely waits for an answer (sleep_until yields then).
MULTIPROC_PROCESS_WIDE inline thread_local bool tls_waited = true;

//! The signal this thread last slept on until its slice or deadline ran out with nothing
//! happening (the epoch unchanged): its next wait on that signal sleeps at once, without the spin
//! or the yields (sleep_until). A thread that waits in a loop of timed waits — a Manager client
//! waiting for its server's answer in 20 ms slices, a server thread for its client's next
//! request, a receiver blocked for minutes (100 ms liveness slices) — spun 2,000 pauses (tens of
//! microseconds) at every slice, for nothing: hundreds of such threads take CPUs from the process
//! they wait for. Every wait clears it and one that runs out sets it; a dangling pointer costs at
//! most one skipped spin.
MULTIPROC_PROCESS_WIDE inline thread_local const void* tls_idle_signal = nullptr;

//! Set by a thread whose waits for data should yield the CPU now and then (sleep_until): one of
//! several processes that take turns at a few CPUs, whose waits are seldom a round trip's — a
//! Pool worker waiting for its next task.
MULTIPROC_PROCESS_WIDE inline thread_local bool tls_share_cpu = false;

// FenceMode, g_fence_mode, fence_register(), heavy_fence(): mutex_state.hpp (the lock's unlock
// uses the same asymmetric fences).

//! The deadline of the calls that must not wait (try_put, try_get): "now", taken only on the
//! slow path (acquire_slow), so the fast path pays no clock read.
inline constexpr Clock::time_point kNoWait = Clock::time_point::min();

//! For a long observer wait that must look at something else now and then (ChannelRef::sleep_until):
//! keep_waiting(ctx) is called every `every` while nothing arrives, and after every wake-up that
//! brought nothing; the wait ends when it returns false. The sleeper stays registered throughout.
//! A wait in slices that registered afresh for each paid a membarrier every slice: 1,000 threads
//! blocked in Manager calls, each looking every 20 ms, spent more than a CPU on them (and the
//! server, its 100 ms slices per client, most of another).
struct SliceWatch {
  Clock::duration every;
  bool (*keep_waiting)(const void* ctx);
  const void* ctx;
};

//! How an end is held: not at all, by lease (fast path), or under its mutex.
enum class EndToken : std::uint8_t { none, lease, locked };

//! A process-local view of one channel: every operation of Queue and Pipe goes through it.
class ChannelRef {
 public:
  ChannelRef() = default;
  //! Takes the channel's geometry from shared memory, once, and checks it against `span`: the
  //! bytes mapped from `c` on. No operation reads the geometry from shared memory afterwards.
  //! Requires: *what outlives this object (it names the channel in errors).
  //! Throws: Error(errc::corrupt) naming *what when the geometry cannot be right (the ring not a
  //! power of two, or not inside the mapping; capacity not in [1, kMaxCapacity]; a record size
  //! that does not fit the ring).
  ChannelRef(ChannelState* c, std::uint64_t span, const std::string* what);

  ChannelState* state() const noexcept { return c_; }
  const std::string& what() const noexcept { return *what_; }
  std::uint64_t capacity() const noexcept { return capacity_; }
  std::uint64_t ring_bytes() const noexcept { return rb_; }
  std::uint32_t record_size() const noexcept { return record_size_; }
  //! Where the ring starts, in bytes from the ChannelState (the checked copy).
  std::uint64_t ring_offset() const noexcept {
    return static_cast<std::uint64_t>(ring_ - reinterpret_cast<unsigned char*>(c_));
  }
  //! Largest payload one record can carry (variable records).
  std::size_t max_record_payload() const noexcept {
    // A record and the skip in front of it must fit in an empty ring: its span is at most half.
    return static_cast<std::size_t>(rb_ / 2 - kRecordHeader);
  }
  //! Largest payload Queue and Pipe send as one record: larger messages stream in chunks of at
  //! most this size (src/chunk_framing.hpp), even when one record could hold them. A record is
  //! readable only once complete, so a large message in one record is copied in by the sender,
  //! then out by the receiver, one after the other; in chunks the receiver copies one out while
  //! the sender writes the next. 1 MiB Pipe messages through a 4 MiB ring: 5.5 GB/s in one
  //! record, 16-17 GB/s in chunks of 64, 128, 256 or 512 KiB (AMD EPYC VM, 2 vCPUs; a bare
  //! two-process ring: 7 GB/s with 1 MiB slots, 22-23 GB/s with 64-256 KiB chunks).
  std::size_t max_whole_payload() const noexcept {
    return max_record_payload() < kStreamChunk ? max_record_payload() : kStreamChunk;
  }
  //! Whether this process's producer starts again from the ring's beginning when the consumer
  //! has taken everything and the tail is past the ring's first quarter (a skip record to the
  //! end, as at a wrap). Messages then cycle through the ring's first part, whose pages and cache
  //! lines are warm, instead of the whole ring: on a VM that maps each page of a process at its
  //! first touch, a Pool's first maps paid 5-10 us for every page of its 1 MiB rings. The price:
  //! until the consumer takes the record after the skip, the producer has room only before the
  //! skip — at least a quarter of the ring. Pipe sets it (a pipe promises no capacity); Queue does
  //! not (its capacity is a promise). Process-local; a consumer steps over the skip either way.
  void set_rewind(bool on) noexcept { rewind_ = on; }

  // ---- ends -------------------------------------------------------------------------------
  //! Takes an end, waiting (up to the deadline) for a revoked lease or the mutex. A deadline of
  //! kNoWait (or any past one) waits for nobody: returns EndToken::none at once if another thread
  //! is inside an operation on the end (streaming, assembling, or stopped there).
  EndToken acquire(EndState& e, const Clock::time_point* deadline) const {
    if (try_lease(e)) return EndToken::lease;
    return acquire_slow(e, deadline);
  }
  void release(EndState& e, EndToken t) const noexcept {
    if (t == EndToken::lease) {
      release_lease(e);
    } else {
      release_slow(e, t);
    }
  }
  EndState& producer() const noexcept { return c_->producer; }
  EndState& consumer() const noexcept { return c_->consumer; }

  // ---- producer, holding the producer end ------------------------------------------------
  //! Whether a record of n payload bytes fits now (updates the cached consumer cursor).
  //! Throws: Error(errc::corrupt) when the consumer cursor it loads cannot be right (ahead of
  //! ours, or further behind than the ring or the capacity allow; nothing is changed), or when
  //! our own cursor is misaligned (it is realigned: the next call works).
  bool has_room(std::size_t n) const {
    EndState& p = c_->producer;
    const std::uint64_t tail = p.mine;
    // Room before the cached consumer cursor; a misaligned cursor (variable records) goes to
    // has_room_slow to be realigned.
    if ((record_size_ != 0 || (tail & (kRecordAlign - 1)) == 0) && fits(p.other, tail, n)) {
      return true;
    }
    return has_room_slow(n);
  }
  //! The same question asked without holding the end (a hint for sleepers).
  bool room_hint(std::size_t n) const noexcept;
  //! Whether the consumers have taken every byte published (a snapshot).
  bool drained() const noexcept {
    return cursor_bytes(c_->consumer.cursor.load(std::memory_order_acquire)) ==
           cursor_bytes(c_->producer.cursor.load(std::memory_order_acquire));
  }
  //! Writes one record: the payload through `write(dst)` where it is contiguous, with `type`.
  //! Requires has_room(n). Publishes it and wakes a consumer. Throws: what `write` throws
  //! (nothing is published); Error(errc::corrupt) as has_room() for a misaligned cursor.
  template <class Write>
  void append(std::size_t n, RecordType type, Write&& write) const {
    unsigned char* dst = reserve(n, type);
    write(dst);
    publish(n);
  }
  //! Fixed-size records: copies `bytes` (record_size of them; may wrap) and publishes. Size is
  //! the record size when known at compile time (0: read it from the channel).
  template <std::size_t Size = 0>
  void append_fixed(const void* bytes) const noexcept {
    EndState& p = c_->producer;
    const std::uint64_t size = Size != 0 ? Size : record_size_;
    const std::uint64_t tail = p.mine;
    const std::uint64_t off = cursor_bytes(tail) & (rb_ - 1);
    if (off + size <= rb_) {
      std::memcpy(ring_ + off, bytes, Size != 0 ? Size : size);
    } else {
      copy_wrapped_in(off, bytes, size);
    }
    const std::uint64_t next = make_cursor(cursor_records(tail) + 1, cursor_bytes(tail) + size);
    if (tls_waited) note_cpu(p);
    p.mine = next;
    // release: pairs with the consumer's acquire load of the producer cursor; publishes it.
    p.cursor.store(next, std::memory_order_release);
    if ((cursor_records(next) & (kPutsRefresh - 1)) == 0) refresh_puts(next);
    notify(c_->data, 1);
  }

  // ---- consumer, holding the consumer end ------------------------------------------------
  //! Whether a record (a message, or a chunk of one) is published and not yet taken (updates
  //! the cached producer cursor).
  //! Throws: Error(errc::corrupt) when the producer cursor it loads cannot be right (behind ours,
  //! or further ahead than the ring or the capacity allow): the consumer cursor then skips to the
  //! producer's (see the header comment), so the next call works.
  bool has_data() const {
    EndState& k = c_->consumer;
    const std::uint64_t head = k.mine;
    // Published bytes, and no more than a ring of them — one compare (0 wraps round to the top).
    if (bytes_between(head, k.other) - 1 < rb_) return true;
    return has_data_slow(head);
  }
  //! The same question asked without holding the end (a hint for sleepers and wait()).
  bool data_hint() const noexcept;
  //! The next variable record: its header (with the bare RecordType), and its payload
  //! (contiguous). Requires has_data(); steps over skip records.
  //! Throws: Error(errc::corrupt) for a header that cannot be right (its check, type or length
  //! is wrong, or it runs past what was published): everything published up to the producer
  //! cursor is skipped first (the message says how many messages), so the next call works.
  const unsigned char* peek(RecordHeader& h) const;
  //! Fixed-size records: copies the next record into `out` and consumes it. Requires has_data().
  template <std::size_t Size = 0>
  void take_fixed(void* out) const noexcept {
    EndState& k = c_->consumer;
    const std::uint64_t size = Size != 0 ? Size : record_size_;
    const std::uint64_t head = k.mine;
    const std::uint64_t off = cursor_bytes(head) & (rb_ - 1);
    if (off + size <= rb_) {
      std::memcpy(out, ring_ + off, Size != 0 ? Size : size);
    } else {
      copy_wrapped_out(off, out, size);
    }
    k.pending = make_cursor(cursor_records(head) + 1, cursor_bytes(head) + size);
    consume(RecordHeader{});
  }
  //! Marks the record returned by peek() consumed, and wakes a producer.
  void consume(const RecordHeader&) const noexcept {
    EndState& k = c_->consumer;
    k.mine = k.pending;
    // release: pairs with the producer's acquire load of the consumer cursor; frees the bytes.
    k.cursor.store(k.pending, std::memory_order_release);
    notify(c_->space, 1);
    // Chain the wake-ups: another sleeping consumer should look if records remain.
    if (c_->data.waiters.load(std::memory_order_relaxed) != 0 &&
        bytes_between(k.pending, k.other) != 0) {
      notify(c_->data, 1);
    }
  }

  // ---- waiting, holding nothing (or the end, for a Pipe mid-message) ----------------------
  //! Sleeps until `ready()` may have changed (the signal's epoch moved), the deadline, or a
  //! liveness slice elapses. `ready` is re-checked after registering, so no wake-up is lost.
  //! Returns false only when the deadline passed (or `watch` said to stop).
  //! An observer (wait(), poll()) only looks and is woken by every notify; a waiter takes.
  //! `watch` (observers only): stay registered for the whole wait, however long, and ask
  //! watch->keep_waiting every watch->every (returns false when it says no) — see SliceWatch.
  template <class Ready>
  bool sleep_until(Signal& s, Ready&& ready, const Clock::time_point* deadline,
                   bool observer = false, const SliceWatch* watch = nullptr) const {
    // A partner that is running usually answers within a microsecond or two: spin that long
    // before paying for a sleep (membarrier, futex, two context switches).
    //
    // A producer waiting for room looks only every few pauses. The ring is full, so the consumer
    // has a whole ring of work and nothing is gained by noticing the first free slot at once;
    // but each look pulls the consumer's cursor line away from it, and looking at every pause
    // made a full queue move that line once per message — half the throughput of a queue whose
    // consumer is the slower side. Waits for data (latency) look at every pause.
    //
    // Not while the other end last worked on this thread's own CPU: then it most likely waits
    // for this very CPU (more threads than CPUs, or a process pinned with taskset), and spinning
    // would only keep it from answering. That was a Manager with two clients on two CPUs —
    // four threads taking turns burning 40 us spins — slower than Python's. Looked at again
    // every 256 pauses: a partner may move.
    //
    // Then, if this thread published since its last wait (it most likely waits for the answer
    // to what it sent: a Pipe round trip, a Manager or Pool call), yield the CPU a few times
    // before sleeping: the partner it just woke is most likely queued on this CPU, and if it
    // answers while we are still runnable, neither pays for a futex sleep and wake-up. On one
    // CPU (taskset -c 0, AMD EPYC VM) that took a pipe round trip from 10 to 4.5 us and a
    // Manager call from 11 to 6.8 us, and a Manager with 4 clients on 2 CPUs 4x as fast. Not for
    // a thread that only takes (a consumer of a stream): yielding to a producer that streams
    // made a one-CPU Queue<long> half as fast. A yield with nothing else to run returns at once,
    // so kChannelYields bounds the extra work before the sleep to a few microseconds; one that
    // lets others run is followed by a look at the deadline.
    //
    // A consumer waiting for data also prefetches, at every pause, the cache line where the next
    // record will be. Otherwise it fetched that line from the producer's core only after it saw
    // the producer's cursor move: two transfers one after the other for each message. With the
    // prefetch the line is usually here, or on its way, when the cursor moves. Pipe round trip
    // 0.90 -> 0.71 us (bare spinning ping-pong 0.54 us), Manager call and Pool apply_async
    // 1.17x, Queue 2 producers x 2 consumers 1.27x (A/B, AMD EPYC VM). A prefetch never faults,
    // and the address is masked into the ring whatever the shared cursor says.
    const bool answered = !tls_waited;
    tls_waited = true;
    // The last wait on this signal ran its slice out: no spin (see tls_idle_signal).
    const bool idle = tls_idle_signal == &s;
    tls_idle_signal = nullptr;  // set again below if this one runs out too
    const bool for_room = &s == &c_->space;
    const int every = for_room ? room_poll_interval() : 1;
    const EndState* other = &s == &c_->data ? &c_->producer : nullptr;
    const unsigned char* next =
        other != nullptr
            ? ring_ + (cursor_bytes(c_->consumer.cursor.load(std::memory_order_relaxed)) & (rb_ - 1))
            : nullptr;
    for (int i = idle ? kChannelSpin + 1 : 1; i <= kChannelSpin; ++i) {
      if (next != nullptr) __builtin_prefetch(next);
      if ((i & 255) == 1 && other != nullptr && on_my_cpu(*other)) {
        for (int y = 0; answered && y < kChannelYields; ++y) {
          ::sched_yield();
          if (ready()) return true;
          // A yield to others that run may take a slice: a deadline is not overshot by 16.
          if (deadline != nullptr && Clock::now() >= *deadline) break;
        }
        break;
      }
      cpu_relax();
      if (i % every == 0) {
        if (ready()) return true;
        // Every 256 pauses, yield: another process may be waiting for this very CPU (more
        // processes than CPUs). A producer waiting for room: the consumers that would make room
        // — 4 producers and 4 consumers of one Queue<long> on 2 CPUs fell to 1-4 M msgs/s, below
        // Boost's message_queue (5-15 M with the yields, AMD EPYC VM). A thread that says it
        // shares its CPU (tls_share_cpu: a Pool worker), waiting for data: the other workers may
        // have work of their own — two workers on one CPU, one waiting for its next task while
        // the other had one to run: a map of two tiny tasks took 80 us instead of 15. Not every
        // wait for data: where a pause is short, 256 of them are under a microsecond, and a
        // yield there (a system call) landed inside ordinary pipe round trips (0.78-0.95x, A/B
        // on host A). With nobody else to run, a yield returns at once. Yielding at every look
        // (each 64 pauses) cost 2 producers and 2 consumers a quarter of their throughput.
        if ((for_room || tls_share_cpu) && (i & 255) == 0) {
          ::sched_yield();
          if (deadline != nullptr && Clock::now() >= *deadline) break;
        }
      }
    }
    const int slot = register_sleeper(s, observer);
    // seq_cst: pairs with the waker's exchange; a waker that takes 0 came before this store,
    // and then our ready() below (after the heavy fence) sees what it published.
    if (!observer) s.asleep.store(1);
    asymmetric_fence_heavy();
    bool in_time = true;
    bool ran_out = false;
    Clock::time_point next_look{};
    if (watch != nullptr) next_look = Clock::now() + watch->every;
    for (;;) {
      const std::uint32_t epoch = s.epoch.load(std::memory_order_acquire);
      if (ready()) break;
      if (watch == nullptr) {
        in_time = sleep_on(s, epoch, deadline, ran_out);
        break;
      }
      // Still registered (and fenced) since before the epoch load above: a notify after it bumps
      // the epoch, so this sleep returns at once — no wake-up is lost across the slices.
      const bool last = deadline != nullptr && *deadline <= next_look;
      const Clock::time_point until = last ? *deadline : next_look;
      const bool passed = !sleep_on(s, epoch, &until, ran_out);
      if (passed && last) {
        in_time = ready();
        break;
      }
      // Asked at every look, and at every wake-up that brought nothing: a wake-up may be sent to
      // say that what the watch looks at changed (a Manager's client found its server gone).
      if (!ready() && !watch->keep_waiting(watch->ctx)) {
        in_time = false;
        break;
      }
      if (passed) next_look = Clock::now() + watch->every;
    }
    tls_idle_signal = ran_out ? &s : nullptr;
    unregister_sleeper(s, observer, slot);
    return in_time;
  }
  //! Records in the producer end `e` (owned by the caller) the CPU the caller runs on: a store
  //! only (a load of the cursor line would stall, see EndState). Called for the first publish
  //! after a wait (tls_waited):
  //! a thread that streams without waiting pays nothing, and one that answers after each wait (a
  //! server, a pool worker, a client) keeps it current — a thread mostly moves to another CPU
  //! when it wakes. Consumers do not record theirs: a producer waiting for room always spins (a
  //! full ring means the consumer has work, and runs).
  static void note_cpu(EndState& e) noexcept {
    tls_waited = false;
    e.cpu.store(current_cpu(), std::memory_order_relaxed);
  }
  //! Whether the owner of end `e` last moved its cursor on the calling thread's CPU.
  static bool on_my_cpu(const EndState& e) noexcept {
    const std::int32_t mine = current_cpu();
    return mine >= 0 && e.cpu.load(std::memory_order_relaxed) == mine;
  }
  //! Counts a sleeper (seq_cst) and records its pid in a free slot; returns the slot or -1.
  static int register_sleeper(Signal& s, bool observer) noexcept;
  static void unregister_sleeper(Signal& s, bool observer, int slot) noexcept;
  //! Bumps the signal and wakes up to n waiters and every observer — if anyone sleeps (and,
  //! for waiters only, if no earlier wake is still on its way to them: Signal::asleep).
  static void notify(Signal& s, int n) noexcept {
    asymmetric_fence_light();  // SYNC POINT: our cursor store, then the sleeper counts load
    const std::uint32_t observers = s.observers.load(std::memory_order_relaxed);
    if ((s.waiters.load(std::memory_order_relaxed) | observers) != 0) {
      wake(s, observers != 0 ? INT_MAX : n);
    }
  }

  //! Whether close() or shutdown() was called (a snapshot).
  bool closed() const noexcept { return c_->closed.load(std::memory_order_acquire) != 0; }
  //! Whether shutdown(immediate = true) was called (a snapshot).
  bool shut_down_immediately() const noexcept {
    return (c_->closed.load(std::memory_order_acquire) & kImmediate) != 0;
  }
  //! Sets `bits` (kClosed, kImmediate) in the closed word and wakes every sleeper. Idempotent.
  void close(std::uint32_t bits = kClosed) const noexcept;
  //! Complete messages published and not yet consumed (a snapshot, in [0, capacity()]: cursors
  //! that cannot be right count as 0 when the consumer's is ahead, else as at most capacity()).
  std::uint64_t size() const noexcept;
  //! Messages ever published, all 64 bits (a snapshot).
  std::uint64_t messages_put() const noexcept;
  //! Whether the chunked message the consumer is assembling can never be completed: its sender
  //! gave up, or the producer end moved on, or (only when `ask_liveness`: system calls) its
  //! sender died. Requires: the caller saw no data after it.
  bool open_message_dead(bool ask_liveness) const noexcept;
  //! The owner of the producer end: publishes that the chunked message it was sending is given
  //! up, and wakes the consumer assembling it.
  void abandon_message() const noexcept;

  //! The fence a fast path needs between its own store and load when membarrier is missing.
  static void asymmetric_fence_light() noexcept {
    if (fences_are_full()) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    } else {
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the compiler must not reorder
    }
  }
  //! The fence a slow path issues: membarrier across processes (or a plain seq_cst fence where
  //! the fast paths fence themselves).
  static void asymmetric_fence_heavy() noexcept;

 private:
  //! Whether a record of n payload bytes fits between the consumer cursor `head` and the
  //! producer cursor `tail`: within the capacity and — variable records — in the ring's bytes,
  //! counting the skip to the ring's end that a record which would wrap needs first.
  bool fits(std::uint64_t head, std::uint64_t tail, std::size_t n) const noexcept {
    if (records_between(head, tail) >= capacity_) return false;
    if (record_size_ != 0) return true;  // fixed records: the count is the only limit
    const std::uint64_t off = cursor_bytes(tail) & (rb_ - 1);
    std::uint64_t need = record_span(n);
    if (off + need > rb_) need += rb_ - off;  // a skip to the end first
    return bytes_between(head, tail) + need <= rb_;
  }
  //! Pauses between looks while waiting for room: a sixteenth of the capacity, 1 to 64.
  int room_poll_interval() const noexcept {
    const std::uint64_t n = capacity_ / 16;
    return n < 1 ? 1 : n > 64 ? 64 : static_cast<int>(n);
  }
  bool try_lease(EndState& e) const noexcept {
    if (e.mode.load(std::memory_order_relaxed) != kEndLeased) return false;
    const std::int32_t slot = e.lease_slot.load(std::memory_order_relaxed);
    if (slot < 0 || slot >= kHolderSlots) return false;
    HolderSlot& h = e.slots[slot];
    // The slot must be ours: this thread, this process, this process's start (pid reuse).
    if (h.tid.load(std::memory_order_relaxed) != current_tid() ||
        h.pid.load(std::memory_order_relaxed) != current_pid() || h.start != current_start_time()) {
      return false;
    }
    h.active.store(1, std::memory_order_relaxed);  // our own word only
    asymmetric_fence_light();  // SYNC POINT: pairs with the revoker's heavy fence
    // acquire: pairs with the release store of revoke = 0 after a revocation's mode change.
    if (e.revoke.load(std::memory_order_acquire) == 0 &&
        e.mode.load(std::memory_order_relaxed) == kEndLeased &&
        e.lease_slot.load(std::memory_order_relaxed) == slot) {
      return true;
    }
    step_aside(h);  // being revoked, or no longer the holder
    return false;
  }
  void release_lease(EndState& e) const noexcept {
    // The lease cannot move while we are active: lease_slot is still ours (try_lease checked it;
    // masked all the same, so that a scribbled slot cannot index outside the table).
    HolderSlot& h = e.slots[e.lease_slot.load(std::memory_order_relaxed) & (kHolderSlots - 1)];
    // release: pairs with the revoker's acquire load of `active`; publishes this operation.
    h.active.store(0, std::memory_order_release);
    asymmetric_fence_light();  // SYNC POINT: store active, then load revoke
    if (e.revoke.load(std::memory_order_relaxed) != 0) wake_revoker(h);
  }
  static bool fences_are_full() noexcept {
    return g_fence_mode.load(std::memory_order_relaxed) != kFenceMembarrier;
  }
  static void wake(Signal& s, int n) noexcept;
  static void step_aside(HolderSlot& h) noexcept;
  static void wake_revoker(HolderSlot& h) noexcept;
  static int claim_holder_slot(EndState& e) noexcept;
  EndToken acquire_slow(EndState& e, const Clock::time_point* deadline) const;
  void release_slow(EndState& e, EndToken t) const noexcept;
  bool has_room_slow(std::size_t n) const;
  //! Whether the consumer has taken everything up to `tail` (reserve's rewind).
  bool rewind_ok(std::uint64_t tail) const noexcept;
  bool has_data_slow(std::uint64_t head) const;
  //! The owner of end `e`, whose copy of its cursor is `mine`: stores it again (and wakes the
  //! other end) if the shared cursor says otherwise — a scribble.
  void repair_own_cursor(EndState& e, std::uint64_t mine) const noexcept;
  //! Whether the cursors (head: consumer, tail: producer) can be those of this channel.
  bool cursors_plausible(std::uint64_t head, std::uint64_t tail) const noexcept;
  [[noreturn]] void corrupt_cursors(std::uint64_t head, std::uint64_t tail) const;
  [[noreturn]] void realign_producer(std::uint64_t tail) const;
  [[noreturn]] void skip_to_producer(std::uint64_t head, const std::string& problem) const;
  void copy_wrapped_in(std::uint64_t off, const void* bytes, std::uint64_t size) const noexcept;
  void copy_wrapped_out(std::uint64_t off, void* out, std::uint64_t size) const noexcept;
  unsigned char* reserve(std::size_t n, RecordType type) const;
  void publish(std::size_t n) const noexcept;
  void refresh_puts(std::uint64_t cursor) const noexcept;
  void abandon_message_of(EndState& e) const noexcept;
  //! Sleeps on s's epoch for a slice or until the deadline. `ran_out`: set when the sleep ended
  //! with the epoch still `epoch` after the whole slice or up to the deadline (tls_idle_signal).
  bool sleep_on(Signal& s, std::uint32_t epoch, const Clock::time_point* deadline,
                bool& ran_out) const noexcept;

  // The geometry, copied and checked once at construction (never re-read from c_).
  ChannelState* c_ = nullptr;
  unsigned char* ring_ = nullptr;
  std::uint64_t rb_ = 0;        // ring bytes, a power of two
  std::uint64_t capacity_ = 0;  // records
  std::uint32_t record_size_ = 0;
  bool rewind_ = false;  // see set_rewind
  const std::string* what_ = nullptr;
};

//! Error(errc::corrupt): a record of `what` whose contents contradict its header (the record
//! has been consumed: the next get goes on after it).
[[noreturn]] void throw_corrupt_record(const std::string& what, const std::string& problem);

}  // namespace multiproc::detail
