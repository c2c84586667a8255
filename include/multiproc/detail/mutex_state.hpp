// multiproc/detail/mutex_state.hpp — the shared part of Mutex and RecursiveMutex. Private.
//
// docs/lock-states.md has the lock's states and transitions in one table (free, in the slot, on
// the list, owner died, inconsistent, list-only mode) and what each caller sees; this comment says
// why the lock is built this way.
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
// kernel robust list (set_robust_list(2); in its pending slot or on the list itself: see
// src/robust_list.hpp, which holds everything about the list that the inline fast path below does
// not need),
// which the kernel walks when the thread dies — exit, SIGKILL, exec — marking the word
// FUTEX_OWNER_DIED and waking one waiter. The next locker takes it,
// learns that the holder died, and carries on. That list belongs to glibc (it registers one per
// thread and links its own robust mutexes into it), so our entries follow glibc's own linkage
// exactly: a node {prev, next} placed relative to the word as glibc places __list relative to
// __lock in a pthread_mutex_t, so that glibc's robust mutexes and ours can share the list in any
// order. mutex.cpp checks the kernel's futex_offset for the thread at run time and refuses (an
// Error, never silent non-robustness) if it is not glibc's.
//
// What stays in this header, and why: MutexState (its layout is shared by every object that
// embeds a lock), and the uncontended mutex_lock()/mutex_unlock() with the per-thread state they
// read (tls_robust_head, tls_pending_lock, g_list_only). Those are inline on purpose: the
// uncontended pair is a compare-and-swap and a plain store (release_word: the sleepers pay for the
// unlock's ordering with a membarrier), and under contention the time between
// taking and releasing the word decides how often a locker sleeps — a call into the library on
// each side would add to exactly that. Everything else (the slow paths, the list itself) is in
// src/. The identity caches (tid, pid, start time) are shared with the rest of the library.
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
//   recursive    immutable after init
//   inconsistent bit 0: 1 from a recovery until someone marks the guarded data repaired
//                (survives unlock; Condition and Pipe use it for their own state). Bits 1-31:
//                how many times the lock was recovered from a dead holder (wraps), which is what
//                SharedValue/SharedArray compare with their own count, so that each object
//                sharing one lock is repaired separately. Written by holders only.
//   sleepers     the sleepers mark: 0, or the tid of a holder some thread may be asleep behind
//                (or about to sleep behind). A locker about to sleep writes the tid of the holder
//                it saw, runs a membarrier, and looks at the word again: only when that look
//                still shows that holder does it sleep (else it writes the newer one and looks
//                again). A thread that took the lock after sleeping writes its own tid, for the
//                others. Every unlock reads it after it frees the word: with asymmetric fences
//                the unlock is a plain store, and the sleeper pays for the ordering (its
//                membarrier). An unlock that finds its OWN tid there clears it (only if still
//                its own: a compare-and-swap) and wakes one; any other value it leaves alone.
//                Why the holder's tid and not a flag: an unlock delayed between its store and
//                its look (preempted) must not clear a mark set for a later holder — with a flag
//                it did, when its wake found nobody queued yet, and that sleeper then waited out
//                a 100 ms liveness slice (a lost wake-up in ~1 of 2,000 hand-offs). FUTEX_WAITERS
//                in the word stays for the kernel, which wakes a sleeper when it finds the
//                holder dead. A sleeper killed asleep costs its holder's unlock one futex_wake
//                for nobody (which clears the mark); one killed mid-announcement, or a holder
//                that died, may leave a mark no unlock will clear: it costs each unlock one
//                call that returns at once, until the next sleeper overwrites it. An unlocker
//                killed between its store and its wake (the fast unlock: the lock still in its
//                pending slot) is covered by the kernel, which wakes one waiter when it finds a
//                dead thread's pending word free (since the 2019 "futex: Prevent robust futex
//                exit race"); if another thread took the word first, a sleeper left behind waits
//                for its next liveness slice.
//   link         the holder's robust-list node (meaningful only while held, and only to the
//                holding thread and the kernel); link.prev is null unless the lock is on the list
// Deliberately not padded to a cache line: a small value guarded by the lock (SharedValue<long>,
// the first elements of a SharedArray) shares the lock's line, so a contended hand-off moves one
// line between cores, not two. Containers that want the lock alone on its line align it there.
struct MutexState {
  std::atomic<std::uint32_t> word;
  std::atomic<std::int32_t> owner;
  std::uint32_t depth;
  std::atomic<std::uint16_t> owner_died;
  std::uint16_t recursive;
  std::atomic<std::uint32_t> inconsistent;
  std::atomic<std::uint32_t> sleepers;
  RobustLink link;
};
static_assert(sizeof(MutexState) == 40, "MutexState's layout is shared (kLayoutVersion)");

//! No Linux thread id reaches this: pid_max can be raised to PID_MAX_LIMIT (2^22 on 64-bit) and
//! no further, ids stay below it, in every PID namespace. A word that names such a holder was
//! written by no locker (a scribble, or garbage in a segment): nobody holds the lock, and no
//! unlock or death will ever free the word. The lock's slow paths take it over as from a dead
//! holder (the taker sees previous_owner_died(), the guarded data counts as inconsistent) instead
//! of waiting for good, and locked() reads false. A scribbled id below it may be a live thread's,
//! and is still waited for (README, Limits).
inline constexpr std::uint32_t kNoSuchTid = std::uint32_t{1} << 22;

// ---- asymmetric fences ------------------------------------------------------------------------
//
// How a fast path orders a store before a load (the lock's unlock: free the word, then look for
// sleepers; a channel end's release): with membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) registered,
// a compiler barrier only, and the slow side (a sleeper, a revoker) pays with a membarrier, which
// runs a barrier on every CPU running a registered process; otherwise a full fence (and still
// that membarrier when the kernel lets this process call it: the processes it shares a lock with
// may be registered, their unlocks plain stores).
enum FenceMode : int { kFenceUnknown = 0, kFenceMembarrier = 1, kFenceFull = 2 };
MULTIPROC_PROCESS_WIDE inline std::atomic<int> g_fence_mode{kFenceUnknown};

//! Registers this process for asymmetric fences (once per process, again after fork).
void fence_register() noexcept;
//! The slow side's fence: a membarrier when this process registered, else a full fence.
void heavy_fence() noexcept;

//! Initialises a zero-filled state in place (unlocked).
void mutex_init(MutexState* s, bool recursive, const std::string& what) noexcept;

// current_tid(), current_pid(), current_start_time(): multiproc/detail/this_process.hpp.

// ---- what the inline fast path needs of the kernel robust list -----------------------------
//
// The robust list itself — how our entries share glibc's list, when a lock sits in the pending
// slot and when on the list, linking and unlinking — is private to the library: src/robust_list.hpp.
// Only the uncontended lock and unlock stay here, inline, with the three pieces of per-thread state
// they read (the list head, the lock held through the pending slot, the process-wide list-only
// switch). They are inline because that is where the lock's speed comes from: under contention
// every instruction between taking and releasing the word, or between releasing and retaking it,
// decides how often a locker has to sleep (bench: lock_contention_2p/4p, lock_uncontended). They
// are `inline thread_local`
// and not `extern thread_local` defined in src/: an extern thread_local is reached through a TLS
// wrapper call in every other translation unit, an inline one with a constant initialiser is a
// single thread-pointer-relative load.

//! The kernel's view of a thread's robust list (set_robust_list(2)); glibc registers one per thread.
struct RobustListHead {
  void* list;             // first entry's `next` field, or &list itself when empty
  long futex_offset;      // word = entry + futex_offset
  void* list_op_pending;  // entry being locked or unlocked right now (see src/robust_list.hpp)
};

//! The calling thread's list head, once looked up and checked to be glibc's (src/mutex.cpp). It
//! stays at the same address in a forked child (glibc re-registers the same struct pthread there).
MULTIPROC_PROCESS_WIDE inline thread_local RobustListHead* tls_robust_head = nullptr;

inline void compiler_barrier() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }

//! The lock this thread holds through list_op_pending (src/robust_list.hpp), or nullptr.
MULTIPROC_PROCESS_WIDE inline thread_local MutexState* tls_pending_lock = nullptr;
//! Set once glibc was seen clearing the slot under one of our locks: every lock goes on the list.
MULTIPROC_PROCESS_WIDE inline std::atomic<bool> g_list_only{false};

//! Resets what a forked child must not inherit: the parent's lock in the pending slot. The
//! robust_slot stage of the fork-hook list (fork_hooks.hpp): after the identity caches are
//! cleared, before any stage takes a lock. Idempotent.
void after_fork_child() noexcept;

//! How many times, in this process, a locker's sleeping slice ran out while the word was free:
//! its wake-up never came (a waker died, or was lost). For tests; 0 when no one died.
std::uint64_t mutex_slices_found_free() noexcept;

//! Called by an unlock that found `mark` (nonzero) in s->sleepers after freeing the word: when it
//! is the calling thread's tid, clears it (if unchanged) and wakes one sleeper (mutex.cpp).
void mutex_wake_sleeper(MutexState* s, std::uint32_t mark) noexcept;

//! Frees the word (the caller held it) and wakes a sleeper if one announced itself behind it.
//! With asymmetric fences registered, a plain store: a sleeper writes this holder's tid into
//! `sleepers`, then runs a membarrier, then looks at the word; so either that look finds the word
//! free (or held by someone newer: the sleeper announces itself again), or this load finds the
//! mark (the store-then-load pair of Dekker's algorithm, ordered by the sleeper's membarrier). Otherwise an exchange, a full barrier. One atomic read-modify-write fewer than an
//! exchange on every unlock: about 12.7 -> 7 ns for an uncontended lock + unlock on an AMD EPYC VM.
inline void release_word(MutexState* s) noexcept {
  if (g_fence_mode.load(std::memory_order_relaxed) == kFenceMembarrier) {
    s->word.store(0, std::memory_order_release);
    compiler_barrier();  // SYNC POINT: store the word, then load sleepers (the sleeper's membarrier)
    const std::uint32_t mark = s->sleepers.load(std::memory_order_relaxed);
    if (mark != 0) mutex_wake_sleeper(s, mark);
  } else {
    (void)s->word.exchange(0, std::memory_order_seq_cst);
    const std::uint32_t mark = s->sleepers.load(std::memory_order_seq_cst);
    if (mark != 0) mutex_wake_sleeper(s, mark);
  }
}

//! The lock and unlock paths that are not the uncontended common case (mutex.cpp).
void mutex_lock_slow(MutexState* s, const std::string& what);
//! As mutex_lock_slow, right after the fast path's compare-and-swap found the word at `seen`:
//! the slow path starts from that value instead of touching the word again.
void mutex_lock_contended(MutexState* s, std::uint32_t seen, const std::string& what);
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
    // Held (or recovered by the kernel): start the slow path from what the compare-and-swap saw.
    // Every further access to the word under contention is a cache-line transfer taken from the
    // holder, which lengthens its hold and so everyone's wait.
    mutex_lock_contended(s, v, what);
    return;
  }
  mutex_lock_slow(s, what);
}
//! Returns true if it took the lock without blocking.
bool mutex_try_lock(MutexState* s, const std::string& what);
//! Returns false if the deadline passed first.
bool mutex_lock_until(MutexState* s, Clock::time_point deadline, const std::string& what);
//! The uncontended unlock: returns false, having changed nothing, when the slow path must do it.
inline bool mutex_unlock_fast(MutexState* s) noexcept {
  RobustListHead* head = tls_robust_head;
  // tls_pending_lock == s says all the fast path needs, from this thread's own memory: this
  // thread holds s once (a recursion level moves it onto the list) and did not recover it from a
  // dead holder (a recovered lock goes onto the list too: src/mutex.cpp, register_taken). So the
  // first access to the shared line is a store, never a load followed by a store, which under
  // contention would be two cache-line transfers instead of one.
  if (head == nullptr || tls_pending_lock != s || head->list_op_pending != &s->link.next) {
    // On the list, a recursion level, a recovered lock, glibc took the slot, or not the holder.
    // (Sleepers to wake stay here: the contended hand-off is the one to keep short.)
    return false;
  }
  s->depth = 0;
  s->owner.store(0, std::memory_order_relaxed);
  tls_pending_lock = nullptr;
  release_word(s);
  // Still pending until here: a death after the release leaves a free word (or one another
  // thread holds), which the kernel leaves alone apart from a wake-up.
  compiler_barrier();
  head->list_op_pending = nullptr;
  return true;
}
//! Throws Error(errc::not_owner) when the caller does not hold it.
inline void mutex_unlock(MutexState* s, const std::string& what) {
  if (!mutex_unlock_fast(s)) mutex_unlock_slow(s, what);
}
//! For destructors: unlocks, and terminates with a message if the caller does not hold it.
void mutex_unlock_slow_noexcept(MutexState* s, const std::string& what) noexcept;
inline void mutex_unlock_noexcept(MutexState* s, const std::string& what) noexcept {
  if (!mutex_unlock_fast(s)) mutex_unlock_slow_noexcept(s, what);
}

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

//! A robust lock as a Condition sees it: its state and the name its messages use. Every lock type
//! built on a MutexState (Mutex, RecursiveMutex, the placed locks) has a hidden friend
//! `robust_lock_ref(const L&)` returning one, which Condition finds by argument-dependent lookup.
struct LockRef {
  MutexState* state;
  const std::string* what;
};

//! Holds the lock for a scope: the one RAII wrapper over a MutexState inside the library
//! (SharedValue's load/store/update without a handle copy, the internal locks of Condition,
//! Barrier and Pipe's holder table).
class MutexScope {
 public:
  MutexScope(MutexState* s, const std::string& what) : s_(s), what_(what) { mutex_lock(s_, what_); }
  //! Also: when a holder died since the guarded data was last marked repaired, runs `repair()`
  //! under the lock before anything else, then marks it repaired. (For state a dead holder may
  //! have left half-updated, which repair() must bring back to something well-formed.)
  template <class Repair>
  MutexScope(MutexState* s, const std::string& what, Repair&& repair) : MutexScope(s, what) {
    if (mutex_inconsistent(s_)) {
      repair();
      mutex_mark_repaired(s_);
    }
  }
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
  const std::uint32_t tid = s->word.load(std::memory_order_relaxed) & FUTEX_TID_MASK;
  return tid != 0 && tid < kNoSuchTid;  // a holder no thread can be: free to take (kNoSuchTid)
}

//! Whether the calling thread holds it.
inline bool mutex_held_by_caller(const MutexState* s) noexcept {
  return s->owner.load(std::memory_order_relaxed) == current_tid();
}

}  // namespace multiproc::detail
