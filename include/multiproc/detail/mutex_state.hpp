// multiproc/detail/mutex_state.hpp — the shared part of Mutex and RecursiveMutex. Private.
//
// Why not boost::interprocess::interprocess_mutex: on POSIX it is a process-shared pthread mutex
// without the robust attribute, so a holder that dies (SIGKILL, a crash) leaves it locked forever,
// and Boost's own "robust emulation" exists only for its spin mutexes and reports an unusable
// mutex. multiproc needs the opposite: the next locker recovers it and is told.
//
// Why not a robust pthread mutex either (what multiproc used first): glibc's robust path is a
// general-purpose slow path (pthread_mutex_lock_full) that costs a third of the throughput of a
// plain mutex under contention, which would make the robust lock slower than Boost's fragile one.
// So the lock is a futex word of our own, robust through the same kernel mechanism glibc uses:
// the word holds the holder's thread id, and while held the lock is registered with the thread's
// kernel robust list (set_robust_list(2); in its pending slot or on the list itself, see below),
// which the kernel walks when the thread dies — exit, SIGKILL, exec — marking the word
// FUTEX_OWNER_DIED and waking one waiter. The next locker takes it,
// learns that the holder died, and carries on. That list belongs to glibc (it registers one per
// thread and links its own robust mutexes into it), so our entries follow glibc's own linkage
// exactly: a node {prev, next} placed relative to the word as glibc places __list relative to
// __lock in a pthread_mutex_t, so that glibc's robust mutexes and ours can share the list in any
// order. mutex.cpp checks the kernel's futex_offset for the thread at run time and refuses (an
// Error, never silent non-robustness) if it is not glibc's.
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/this_process.hpp>  // the identity caches (current_tid)

#include <atomic>
#include <cstdint>
#include <string>
#include <linux/futex.h>
#include <sys/types.h>

namespace multiproc::detail {

//! A node of a thread's kernel robust list, with glibc's back pointer (see above).
struct RobustLink {
  void* prev;  // &previous entry's next (or &the list head), with glibc's low-bit tagging
  void* next;  // the kernel-visible link: next entry, or the list head when last
};

// Layout (in shared memory, 40 bytes; written only by the current holder unless noted):
//   word         the lock: 0 when free; otherwise the holder's tid, plus FUTEX_WAITERS when
//                threads may be sleeping on it. Written by lockers, unlockers and the kernel,
//                which sets FUTEX_OWNER_DIED (tid 0) when the holder died
//   owner        tid of the holder, 0 when free: set after locking, cleared before unlocking
//                (a copy of word's tid for readers that want a plain int: diagnostics, Segment)
//   depth        recursion depth of the holder (RecursiveMutex; 1 for Mutex)
//   owner_died   1 while the holder is the one that recovered the lock from a dead holder
//   inconsistent bit 0: 1 from a recovery until someone marks the guarded data repaired
//                (survives unlock; Condition and Pipe use it for their own state). Bits 1-31:
//                how many times the lock was recovered from a dead holder (wraps), which is what
//                SharedValue/SharedArray compare with their own count, so that each object
//                sharing one lock is repaired separately. Written by holders only.
//   recursive    immutable after init
//   link         the holder's robust-list node (meaningful only while held, and only to the
//                holding thread and the kernel); link.prev is null unless the lock is on the list
// Deliberately not padded to a cache line: a small value guarded by the lock (SharedValue<long>,
// the first elements of a SharedArray) shares the lock's line, so a contended hand-off moves one
// line between cores, not two. Containers that want the lock alone on its line align it there.
struct MutexState {
  std::atomic<std::uint32_t> word;
  std::atomic<std::int32_t> owner;
  std::uint32_t depth;
  std::atomic<std::uint32_t> owner_died;
  std::atomic<std::uint32_t> inconsistent;
  std::uint32_t recursive;
  RobustLink link;
};

//! Initialises a zero-filled state in place (unlocked).
void mutex_init(MutexState* s, bool recursive, const std::string& what);

// current_tid(), current_pid(), current_start_time(): multiproc/detail/this_process.hpp.

// ---- the kernel robust list (Documentation/locking/robust-futex-ABI.rst) --------------------
//
// Each thread registers one list head with the kernel; glibc does it for every thread it starts
// (and again in a forked child). The kernel only ever follows `next` pointers and reads the word
// at entry + futex_offset; glibc additionally keeps a `prev` pointer just before each `next` (and
// a spare word before the head, struct pthread's robust_prev) to unlink in O(1). Our nodes keep
// both, so either side may unlink its entries whatever sits around them.
//
// The head also has one `list_op_pending` slot, meant for the entry being locked or unlocked at
// the moment; the kernel treats it exactly like a list entry when the thread dies. A thread that
// holds one multiproc lock at a time — the common case by far — keeps that lock in the slot for
// as long as it holds it, and never touches the list: linking and unlinking cost a quarter of the
// throughput of a contended lock. A second lock first moves the one in the slot onto the list
// (it holds it, so it may write its node), as does every slow path, since they use the slot for
// their own transient entries. Only glibc can take the slot away from us: its robust pthread
// mutexes use it while they are locked or unlocked and then clear it. The next multiproc lock or
// unlock by that thread notices (the slot no longer holds the lock it left there), puts the lock
// back under the kernel's care on the list, and switches the process to keeping every lock on
// the list. Until then — a thread that holds a multiproc lock, locks or unlocks a robust pthread
// mutex, and dies before its next multiproc lock operation — the kernel does not know the lock,
// and it is not recovered. (A liveness check by the waiters could cover that window, but the
// holder's thread id means nothing in another PID namespace or behind hidepid, where such a check
// would take a live holder's lock; not recovering is the lesser harm.)
//
// The kernel handles the pending slot after the list, and stops at the first list entry it cannot
// read: Segment keeps a mapping alive while a lock in it is held, so our entries stay readable.
// One copy of multiproc per process: a second (a static copy in two shared objects) would not
// know about the first's lock in the slot.
//
// `link.prev` is null while a lock is held through the slot (or free), non-null while it is on
// the list: what unlock needs to know to leave the list alone when the lock is not on it.
//
// The uncontended lock and unlock are inline below: under contention every instruction between
// taking and releasing the word, or between releasing and retaking it, decides how often a
// locker has to sleep.

struct RobustListHead {
  void* list;             // first entry's `next` field, or &list itself when empty
  long futex_offset;      // word = entry + futex_offset
  void* list_op_pending;  // entry being locked or unlocked right now
};

//! The calling thread's list head, once looked up (mutex.cpp checks it is glibc's). It stays at
//! the same address in a forked child (glibc re-registers the same struct pthread there).
inline thread_local RobustListHead* tls_robust_head = nullptr;
RobustListHead* robust_head_slow(const std::string& what);

inline void compiler_barrier() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }

// Entries are addresses of `next` fields, possibly tagged in bit 0 (PI futexes, glibc's).
inline void** robust_untag(void* entry) noexcept {
  return reinterpret_cast<void**>(reinterpret_cast<std::uintptr_t>(entry) & ~std::uintptr_t{1});
}
inline void*& robust_prev_of(void* entry) noexcept { return *(robust_untag(entry) - 1); }
inline void*& robust_next_at(void* entry) noexcept { return *robust_untag(entry); }

//! Links s at the front of the list (the holder has just taken the word; list_op_pending covers
//! the window until this is done).
inline void robust_enqueue(RobustListHead* head, MutexState* s) noexcept {
  void* first = head->list;
  robust_prev_of(first) = &s->link.next;
  s->link.next = first;
  s->link.prev = &head->list;
  compiler_barrier();  // the entry is complete before the kernel can see it
  head->list = &s->link.next;
}

//! Unlinks s. The node's own pointers are left as they are: only the holder reads them, and the
//! next holder overwrites them before linking it.
inline void robust_dequeue(MutexState* s) noexcept {
  void* next = s->link.next;
  void* prev = s->link.prev;
  robust_prev_of(next) = prev;
  robust_next_at(prev) = next;
}

//! The lock this thread holds through list_op_pending (see above), or nullptr.
inline thread_local MutexState* tls_pending_lock = nullptr;
//! Set once glibc was seen clearing the slot under one of our locks: every lock goes on the list.
inline std::atomic<bool> g_list_only{false};

//! Resets what a forked child must not inherit: the parent's lock in the pending slot. The
//! robust_slot stage of the fork-hook list (fork_hooks.hpp): after the identity caches are
//! cleared, before any stage takes a lock. Idempotent.
void after_fork_child() noexcept;

//! The lock and unlock paths that are not the uncontended common case (mutex.cpp).
void mutex_lock_slow(MutexState* s, const std::string& what);
void mutex_unlock_slow(MutexState* s, const std::string& what);

//! Blocks until held. Throws Error(errc::would_deadlock) when a Mutex is relocked by its holder.
inline void mutex_lock(MutexState* s, const std::string& what) {
  RobustListHead* head = tls_robust_head;
  if (head != nullptr && head->list_op_pending == nullptr && tls_pending_lock == nullptr &&
      !g_list_only.load(std::memory_order_relaxed)) {
    // Register through the pending slot first: the kernel recovers the word if this thread dies
    // anywhere from here on, whether or not the compare-and-swap below has happened yet.
    const pid_t me = current_tid();
    head->list_op_pending = &s->link.next;
    compiler_barrier();
    std::uint32_t v = 0;
    if (s->word.compare_exchange_strong(v, static_cast<std::uint32_t>(me),
                                        std::memory_order_acquire, std::memory_order_relaxed)) {
      s->link.prev = nullptr;  // not on the list
      s->owner.store(me, std::memory_order_relaxed);
      s->depth = 1;
      tls_pending_lock = s;
      return;
    }
    compiler_barrier();
    head->list_op_pending = nullptr;
  }
  mutex_lock_slow(s, what);
}
//! Returns true if it took the lock without blocking.
bool mutex_try_lock(MutexState* s, const std::string& what);
//! Returns false if the deadline passed first.
bool mutex_lock_until(MutexState* s, Clock::time_point deadline, const std::string& what);
//! Throws Error(errc::not_owner) when the caller does not hold it.
inline void mutex_unlock(MutexState* s, const std::string& what) {
  RobustListHead* head = tls_robust_head;
  if (head == nullptr || tls_pending_lock != s || head->list_op_pending != &s->link.next ||
      (s->word.load(std::memory_order_relaxed) & ~std::uint32_t{FUTEX_WAITERS}) !=
          static_cast<std::uint32_t>(current_tid()) ||
      s->depth != 1 || s->owner_died.load(std::memory_order_relaxed) != 0) {
    // On the list, a recursion level, a recovered lock, or not the holder. (Sleepers to wake
    // stay here: the contended hand-off is the one to keep short.)
    mutex_unlock_slow(s, what);
    return;
  }
  s->depth = 0;
  s->owner.store(0, std::memory_order_relaxed);
  tls_pending_lock = nullptr;
  const std::uint32_t old = s->word.exchange(0, std::memory_order_release);
  if ((old & FUTEX_WAITERS) != 0) futex_wake(&s->word, 1);
  // Still pending until here: a death after the release leaves a free word (or one another
  // thread holds), which the kernel leaves alone apart from a wake-up.
  compiler_barrier();
  head->list_op_pending = nullptr;
}
//! For destructors: unlocks, and terminates with a message if the caller does not hold it.
void mutex_unlock_noexcept(MutexState* s, const std::string& what) noexcept;

//! Fully releases a lock the caller holds (every recursion level); returns how it was held.
//! Throws: Error(errc::not_owner) when the caller does not hold it.
struct Released {
  unsigned depth;   // recursion levels held
  bool owner_died;  // the holder had recovered it from a dead holder (not yet fully unlocked)
};
Released mutex_release_all(MutexState* s, const std::string& what);
//! Takes the lock again as it was held before mutex_release_all: `depth` levels, and still
//! reporting a recovery the caller had not finished with (a Condition wait in between must not
//! make previous_owner_died() forget it).
void mutex_reacquire(MutexState* s, Released held, const std::string& what);

//! Whether the calling thread holds it, having recovered it from a dead holder.
inline bool mutex_owner_died(const MutexState* s) noexcept {
  return s->owner_died.load(std::memory_order_relaxed) != 0 &&
         s->owner.load(std::memory_order_relaxed) == current_tid();
}

//! Whether a holder died since the guarded data was last marked repaired. (Relaxed, as the
//! stores: read and written under the lock, whose acquire and release order them.)
inline bool mutex_inconsistent(const MutexState* s) noexcept {
  return (s->inconsistent.load(std::memory_order_relaxed) & 1u) != 0;
}
inline void mutex_mark_repaired(MutexState* s) noexcept {
  s->inconsistent.store(s->inconsistent.load(std::memory_order_relaxed) & ~1u,
                        std::memory_order_relaxed);
}
//! How many times the lock was recovered from a dead holder (modulo 2^31). Read under the lock.
inline std::uint32_t mutex_recoveries(const MutexState* s) noexcept {
  return s->inconsistent.load(std::memory_order_relaxed) >> 1;
}

//! Throws Error(errc::owner_died) naming `what` when the guarded data may be half-updated.
void throw_inconsistent(const std::string& what);

//! Holds the lock for a scope (the internal fast path of load/store/update: no handle copy).
class MutexScope {
 public:
  MutexScope(MutexState* s, const std::string& what) : s_(s), what_(what) { mutex_lock(s_, what_); }
  ~MutexScope() { mutex_unlock_noexcept(s_, what_); }
  MutexScope(const MutexScope&) = delete;
  MutexScope& operator=(const MutexScope&) = delete;
  //! Throws Error(errc::owner_died) when the guarded data may be half-updated.
  void require_consistent() const {
    if (mutex_inconsistent(s_)) throw_inconsistent(what_);
  }

 private:
  MutexState* s_;
  const std::string& what_;
};

//! Whether some thread holds it (a snapshot). False once a holder died and until someone takes it
//! again: the kernel leaves FUTEX_OWNER_DIED without a thread id in the word.
inline bool mutex_locked(const MutexState* s) noexcept {
  // relaxed: a snapshot that orders nothing (the caller reads no data the lock guards from it).
  return (s->word.load(std::memory_order_relaxed) & FUTEX_TID_MASK) != 0;
}

//! Whether the calling thread holds it.
inline bool mutex_held_by_caller(const MutexState* s) noexcept {
  return s->owner.load(std::memory_order_relaxed) == current_tid();
}

}  // namespace multiproc::detail
