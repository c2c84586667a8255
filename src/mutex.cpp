// Robust process-shared mutexes: Mutex and RecursiveMutex share this code.
#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/detail/fork_hooks.hpp>
#include <multiproc/error.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/recursive_mutex.hpp>

#include "robust_list.hpp"

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace multiproc::detail {
namespace {

constexpr std::uint32_t kTidMask = FUTEX_TID_MASK;
constexpr std::uint32_t kWaiters = FUTEX_WAITERS;
constexpr std::uint32_t kOwnerDied = FUTEX_OWNER_DIED;
// A contended lock's bounded spin (lock_impl): looks at the word, and pauses between looks
// (a pause is 10-40 ns on current x86: about 5-10 us between looks, 40-80 us in all).
constexpr int kSpinLooks = 8;
constexpr int kPausesPerLook = 256;
// A sleeper's announcement (lock_impl) is confirmed by a look after a membarrier; this many
// unconfirmed rounds, and it spins for the word instead.
constexpr int kAnnounceRounds = 4;

// A word naming a holder no thread can be (kNoSuchTid): lock_impl and mutex_try_lock take it over
// as from a dead holder.
bool impossible_holder(std::uint32_t v) noexcept { return (v & kTidMask) >= kNoSuchTid; }

// The robust_slot stage of every fork (fork_hooks.hpp says where it runs, and why there).
const bool g_fork_hooks_registered =
    (register_fork_hooks(ForkStage::robust_slot, {nullptr, nullptr, &after_fork_child}), true);

// ---- asymmetric fences (mutex_state.hpp) -----------------------------------------------------

long membarrier(int cmd) noexcept { return ::syscall(__NR_membarrier, cmd, 0, 0); }

// Whether this process may call MEMBARRIER_CMD_GLOBAL_EXPEDITED, registered or not (the kernel
// asks no registration of the caller, only of the processes whose CPUs it interrupts).
std::atomic<bool> g_can_fence_others{false};

void register_now() noexcept {
  const long supported = membarrier(MEMBARRIER_CMD_QUERY);
  const bool can = supported > 0 && (supported & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0;
  g_can_fence_others.store(can, std::memory_order_relaxed);
  const bool ok = can && (supported & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0 &&
                  membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
  g_fence_mode.store(ok ? kFenceMembarrier : kFenceFull, std::memory_order_release);
}

void reregister_in_child() noexcept { register_now(); }

std::atomic<std::uint64_t> g_slices_found_free{0};

}  // namespace

void fence_register() noexcept {
  static const bool atfork = [] {  // the fences stage of every fork (see fork_hooks.hpp)
    register_fork_hooks(ForkStage::fences, {nullptr, nullptr, &reregister_in_child});
    return true;
  }();
  (void)atfork;
  if (g_fence_mode.load(std::memory_order_acquire) == kFenceUnknown) register_now();
}

void heavy_fence() noexcept {
  if (g_fence_mode.load(std::memory_order_relaxed) == kFenceMembarrier &&
      membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0) {
    return;
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // This process is not registered (its own unlocks are exchanges, full barriers), but the others
  // sharing the lock may be, and their unlocks are plain stores that only a membarrier orders
  // against this sleeper's mark. So run one when the kernel lets this process: without it, such an
  // unlock could miss this sleeper, which then waits for its liveness slice (100 ms). When the
  // call is refused too (a seccomp filter), that is what remains: README, Limits.
  if (g_can_fence_others.load(std::memory_order_relaxed)) {
    (void)membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
  }
}

std::uint64_t mutex_slices_found_free() noexcept {
  return g_slices_found_free.load(std::memory_order_relaxed);
}

void mutex_wake_sleeper(MutexState* s, std::uint32_t mark) noexcept {
  // Someone announced itself behind another holder (a newer one, or one whose unlock was delayed
  // between its store and its look at the mark): that holder's unlock wakes it, and this one must
  // not clear the mark it needs (mutex_state.hpp, `sleepers`).
  if (mark != static_cast<std::uint32_t>(current_tid())) return;
  // Cleared before the wake, and only if it still names this thread: a sleeper that announces
  // itself behind a newer holder meanwhile keeps its mark, and the one woken writes its own tid
  // there again if it takes the lock (lock_impl), or announces itself again if it does not.
  std::uint32_t expected = mark;
  (void)s->sleepers.compare_exchange_strong(expected, 0, std::memory_order_relaxed,
                                            std::memory_order_relaxed);
  futex_wake(&s->word, 1);
}

RobustListHead* robust_head_slow(const std::string& what) {
  RobustListHead* head = nullptr;
  std::size_t len = 0;
  if (::syscall(SYS_get_robust_list, 0, &head, &len) != 0) {
    throw Error::from_errno(errno, what + ": lock: cannot read this thread's robust futex list");
  }
  if (head == nullptr || len != sizeof(RobustListHead) || head->futex_offset != kFutexOffset) {
    throw Error(errc::bad_state,
                what + ": lock: this thread has no robust futex list registered by glibc (a "
                       "thread not started by pthread_create?), so a lock it held could not be "
                       "recovered if it died");
  }
  // Before this thread's first lock: the unlock's plain store needs this process registered
  // for asymmetric fences, and a sleeper needs to know whether to pay with a membarrier.
  fence_register();
  tls_robust_head = head;
  return head;
}

namespace {

// ---- the lock -----------------------------------------------------------------------------------

// Records the new holder (after the word was taken with `prev` as its previous value).
void on_acquired(MutexState* s, pid_t me, std::uint32_t prev) {
  s->owner.store(me, std::memory_order_relaxed);
  s->depth = 1;
  if ((prev & kOwnerDied) != 0) {
    // The previous holder died holding it (the kernel said so). Tell the new holder, who may have
    // to repair the data it guards. For a RecursiveMutex the dead owner's whole recursion is gone.
    s->owner_died.store(1, std::memory_order_relaxed);
    // One more recovery (bits 1-31), and the data inconsistent (bit 0): see MutexState.
    const std::uint32_t was = s->inconsistent.load(std::memory_order_relaxed);
    s->inconsistent.store((((was >> 1) + 1) << 1) | 1u, std::memory_order_relaxed);
  }
}

// A thread that takes the word with FUTEX_WAITERS in it (it found the bit on a free word: a
// sleeper's fetch_or that met an unlock, or a holder the kernel found dead) keeps the bit, so its
// tenure looks to a sleeper like one it may sleep behind: it must then wake one at its unlock, and
// writes its own tid into the mark (lock_impl's announcement says why).
void mark_if_waiters(MutexState* s, std::uint32_t mine, std::uint32_t prev) noexcept {
  if ((prev & kWaiters) != 0) s->sleepers.store(mine, std::memory_order_relaxed);
}

[[noreturn]] void throw_would_deadlock(const std::string& what) {
  throw Error(errc::would_deadlock,
              what + ": lock: the calling thread already holds it (use a RecursiveMutex to lock it "
                     "again)");
}

// Something else (glibc's robust pthread mutexes) cleared the pending slot while a lock of ours
// was in it: from now on this process keeps every lock on the list (see mutex_state.hpp).
void slot_was_cleared() noexcept { g_list_only.store(true, std::memory_order_relaxed); }

// Moves the lock this thread holds through list_op_pending (if any) onto the list, so that a slow
// path may use the slot for its own entry. If glibc cleared the slot in the meantime, this also
// puts that lock back under the kernel's care.
void vacate_pending(RobustListHead* head) noexcept {
  MutexState* held = tls_pending_lock;
  if (held == nullptr) return;
  robust_enqueue(head, held);  // this thread holds it: its node is ours to write
  tls_pending_lock = nullptr;
  compiler_barrier();
  if (head->list_op_pending == &held->link.next) {
    head->list_op_pending = nullptr;
  } else {
    slot_was_cleared();
  }
}

// Makes s this thread's pending entry for a slow operation on it (after moving a lock held through
// the slot onto the list): the kernel then releases the word if the thread dies mid-operation.
void borrow_slot(RobustListHead* head, MutexState* s) noexcept {
  vacate_pending(head);
  head->list_op_pending = &s->link.next;
  compiler_barrier();
}

// Registers a lock just taken while its entry is pending: it stays in the slot (the common case),
// or goes onto the list when this process keeps every lock there, or when it was recovered from a
// dead holder (the inline unlock takes a lock in the slot to be held once and not recovered:
// mutex_state.hpp). `keep` says whether the slot must stay as it is.
void register_taken(RobustListHead* head, MutexState* s, bool& keep) noexcept {
  if (g_list_only.load(std::memory_order_relaxed) ||
      s->owner_died.load(std::memory_order_relaxed) != 0) {
    robust_enqueue(head, s);
    keep = false;  // the caller clears the slot
    return;
  }
  s->link.prev = nullptr;  // held through the slot, not on the list
  tls_pending_lock = s;
  keep = true;
}

// Takes the lock, sleeping until `deadline` (nullptr: none). Returns false on timeout; throws
// would_deadlock for a Mutex its holder relocks. Handles recursion for a RecursiveMutex. A lock
// taken here is registered through list_op_pending, as on the fast path. `seen`: the word as the
// caller's failed compare-and-swap found it, or nullptr to read it here.
//
// Shaped like glibc's lll_lock_wait, with one access to the word fewer where it can: under
// contention each access is a cache-line transfer made while the holder wants the line back, and
// the hold time is what decides how often a locker has to sleep. So the word is read once, marked
// FUTEX_WAITERS only when not marked yet (one atomic that also says whether it is still held), and
// taken with one compare-and-swap when free.
bool lock_impl(MutexState* s, const Clock::time_point* deadline, const std::uint32_t* seen,
               const std::string& what) {
  const pid_t me = current_tid();
  const auto mine = static_cast<std::uint32_t>(me);
  RobustListHead* head = robust_head(what);
  borrow_slot(head, s);
  // Until taken, the slot is only borrowed: cleared on every way out but success.
  struct Pending {
    RobustListHead* h;
    bool keep = false;
    ~Pending() {
      if (keep) return;
      compiler_barrier();
      h->list_op_pending = nullptr;
    }
  } pending{head};
  // Set once this thread may have been counted as a sleeper: from then on it takes the word with
  // FUTEX_WAITERS (for the kernel), and having taken it writes its own tid into `sleepers`, since
  // it cannot know whether others still sleep (the unlock that woke it cleared the mark, which
  // named that holder for everyone behind it). Before that it takes the word as the fast path does
  // (keeping the bit if it was there, and then marking itself too: mark_if_waiters).
  bool waited = false;
  auto taken = [&](std::uint32_t prev) {
    on_acquired(s, me, prev);
    if (waited) {
      s->sleepers.store(mine, std::memory_order_relaxed);
    } else {
      mark_if_waiters(s, mine, prev);
    }
    register_taken(head, s, pending.keep);
    return true;
  };

  std::uint32_t v = seen != nullptr ? *seen : s->word.load(std::memory_order_relaxed);
  // Held by another thread: look again a few times, far apart, before announcing a sleeper.
  // Under contention the holder's critical section is short and it relocks at once, so a futex
  // sleep mostly fails (the word changed) and each announced sleeper costs the holder a futex_wake
  // system call for nobody: those calls, not the lock, were most of the time of two processes
  // hammering one lock. Looking only every kPausesPerLook pauses keeps the line with the holder
  // in between; the whole spin is bounded (tens of microseconds), so an oversubscribed machine or
  // a long hold costs little more than before. (bench: lock_contention_*, curve_lock_procs.)
  // A deadline ends the looks too: try_lock_for(0) or a passed deadline answers at once.
  for (int look = 0; look < kSpinLooks && (v & kTidMask) != 0 && (v & kTidMask) != mine &&
                     !impossible_holder(v);
       ++look) {
    if (deadline != nullptr && Clock::now() >= *deadline) break;
    for (int i = 0; i < kPausesPerLook; ++i) cpu_relax();
    v = s->word.load(std::memory_order_relaxed);
  }
  for (;;) {
    if ((v & kTidMask) == 0) {
      // Free (perhaps released by a holder the kernel found dead: FUTEX_OWNER_DIED).
      const std::uint32_t want = mine | (waited ? kWaiters : (v & kWaiters));
      if (s->word.compare_exchange_strong(v, want, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
        return taken(v);
      }
      continue;  // v holds what is there now
    }
    if (impossible_holder(v)) {
      // Held by no thread at all (kNoSuchTid): taken over as from a dead holder.
      const std::uint32_t want = mine | (waited ? kWaiters : (v & kWaiters));
      if (s->word.compare_exchange_strong(v, want, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
        return taken(v | kOwnerDied);
      }
      continue;
    }
    if ((v & kTidMask) == mine) {
      // A RecursiveMutex's holder (vacate_pending put it on the list if it was in the slot).
      if (s->recursive == 0) throw_would_deadlock(what);
      if (s->depth == UINT32_MAX) {
        throw Error(errc::bad_state, what + ": lock: too many recursive locks");
      }
      ++s->depth;
      return true;
    }
    if (!waited && deadline != nullptr && Clock::now() >= *deadline) {
      // Held, and the deadline has passed before this thread announced itself: fail without
      // marking the word, which would cost the holder a futex_wake for nobody.
      return false;
    }
    // Announce a sleeper behind the holder: mark the word FUTEX_WAITERS if it is not marked yet
    // (for the kernel, which wakes a sleeper when it finds the holder dead only if the word says
    // there is one), write the holder's tid into `sleepers`, run the heavy fence, then take a
    // last look at the word: release_word says why that holder's unlock cannot miss this sleeper
    // then. The look must show the same holder WITH the bit: only the holder named in the mark is
    // sure to wake someone (an older holder's unlock may clear the mark at any time: it may have
    // freed the word long before and been preempted before it looked), and the same tid without
    // the bit is a later tenure of that holder (it took the word from 0, after its unlock of the
    // earlier one had cleared the mark), whose unlock may already have looked. A tenure that has
    // the bit either began with it (its holder then writes its own tid into the mark: `taken`)
    // or got it from a sleeper that goes on to write the mark and look again. Otherwise: announce
    // again behind what the look found — at most kAnnounceRounds times: a lock that changes hands
    // faster than a membarrier runs (a holder that unlocks and relocks at once) is never seen the
    // same twice, and the rounds went on by the hundred (up to 923 in one announcement, each a
    // membarrier and a futex_wake for nobody at the holder's next unlock). Then spin for it instead
    // (below): its holds are short.
    waited = true;
    if ((v & kWaiters) == 0) v = s->word.fetch_or(kWaiters, std::memory_order_acquire) | kWaiters;
    bool confirmed = false;
    int rounds = 0;
    for (std::uint32_t holder = v & kTidMask; holder != 0;) {
      if (++rounds > kAnnounceRounds) break;
      s->sleepers.store(holder, std::memory_order_seq_cst);
      heavy_fence();
      v = s->word.load(std::memory_order_seq_cst);
      if ((v & kWaiters) == 0 && (v & kTidMask) != 0) {
        v = s->word.fetch_or(kWaiters, std::memory_order_acquire) | kWaiters;
      } else if ((v & kTidMask) == holder) {
        confirmed = true;  // the same tenure, or one whose holder marked itself: it wakes one
        break;
      }
      holder = v & kTidMask;
    }
    if ((v & kTidMask) == 0) continue;  // freed meanwhile: take it (with the bit)
    if (!confirmed) {
      // Out of rounds: look for a free word as the first spin does, then take it (with the bit:
      // this thread then marks itself, and its unlock wakes whoever an abandoned announcement may
      // have left behind its mark), or announce again behind whoever holds it then.
      for (int look = 0; look < kSpinLooks && (v & kTidMask) != 0; ++look) {
        for (int i = 0; i < kPausesPerLook; ++i) cpu_relax();
        v = s->word.load(std::memory_order_relaxed);
      }
      continue;
    }
    // Sleep in liveness slices even without a deadline: a thread that released the lock and died
    // before its wake-up (or a woken waiter that died before taking it) wakes nobody, and the
    // kernel cannot tell once another thread holds the word. Looking again every slice means no
    // death leaves this thread asleep on a free lock for good.
    const Clock::time_point slice = next_slice(deadline);
    const bool woken = futex_wait(&s->word, v, &slice);
    if (!woken && (s->word.load(std::memory_order_relaxed) & kTidMask) == 0) {
      // A slice ran out on a free word: its unlock woke nobody (a waker that died, or a lost
      // wake-up). Counted for the tests (mutex_slices_found_free).
      g_slices_found_free.fetch_add(1, std::memory_order_relaxed);
    }
    if (!woken && deadline != nullptr && Clock::now() >= *deadline) {
      // Timed out; one last look, so that a lock freed at the deadline is not missed.
      v = s->word.load(std::memory_order_relaxed);
      while ((v & kTidMask) == 0) {
        if (s->word.compare_exchange_weak(v, mine | kWaiters, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
          return taken(v);
        }
      }
      // Leaving. This thread last announced itself behind the holder it slept on, after any
      // wake-up it took from the others; that mark stands (or that holder's unlock found it and
      // woke whoever else is queued), so the others are not left unannounced.
      return false;
    }
    // Woken (or the word changed before the sleep): try to take it at once, as glibc's exchange(2)
    // does. A load first would be one more transfer of the line on the way to the usual outcome.
    v = 0;
    if (s->word.compare_exchange_strong(v, mine | kWaiters, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
      return taken(0);
    }
  }
}

}  // namespace

void after_fork_child() noexcept {
  if (MutexState* held = tls_pending_lock) {
    // Held by the parent's thread, not by this child; glibc does not clear the slot at fork (it
    // assumes it is empty then), and the kernel must not find the parent's lock in it here.
    tls_pending_lock = nullptr;
    RobustListHead* head = tls_robust_head;
    if (head != nullptr && head->list_op_pending == &held->link.next) {
      head->list_op_pending = nullptr;
    }
  }
}

void mutex_init(MutexState* s, bool recursive, const std::string& /*what*/) noexcept {
  s->word.store(0, std::memory_order_relaxed);
  s->owner.store(0, std::memory_order_relaxed);
  s->depth = 0;
  s->owner_died.store(0, std::memory_order_relaxed);
  s->inconsistent.store(0, std::memory_order_relaxed);
  s->recursive = recursive ? 1 : 0;
  s->sleepers.store(0, std::memory_order_relaxed);
  s->link.prev = nullptr;
  s->link.next = nullptr;
}

void mutex_lock_slow(MutexState* s, const std::string& what) {
  lock_impl(s, nullptr, nullptr, what);
}

void mutex_lock_contended(MutexState* s, std::uint32_t seen, const std::string& what) {
  lock_impl(s, nullptr, &seen, what);
}

bool mutex_try_lock(MutexState* s, const std::string& what) {
  const pid_t me = current_tid();
  const auto mine = static_cast<std::uint32_t>(me);
  RobustListHead* head = robust_head(what);
  borrow_slot(head, s);
  std::uint32_t v = 0;
  for (;;) {
    // Free, or named a holder no thread can be (kNoSuchTid): taken over as from a dead one.
    if ((v & kTidMask) == 0 || impossible_holder(v)) {
      if (s->word.compare_exchange_strong(v, mine | (v & kWaiters), std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
        if (impossible_holder(v)) v |= kOwnerDied;
        on_acquired(s, me, v);
        mark_if_waiters(s, mine, v);
        bool keep = false;
        register_taken(head, s, keep);
        if (!keep) {
          compiler_barrier();
          head->list_op_pending = nullptr;
        }
        return true;
      }
      continue;
    }
    break;
  }
  compiler_barrier();
  head->list_op_pending = nullptr;
  if ((v & kTidMask) == mine && s->recursive != 0 && s->depth != UINT32_MAX) {
    ++s->depth;
    return true;
  }
  // Held by the caller (a Mutex): not available, as for any other holder (Python's
  // acquire(False) says False too). Only the blocking forms report the deadlock.
  return false;
}

bool mutex_lock_until(MutexState* s, Clock::time_point deadline, const std::string& what) {
  if (deadline == Clock::time_point::max()) return lock_impl(s, nullptr, nullptr, what);
  return lock_impl(s, &deadline, nullptr, what);
}

void mutex_unlock_slow(MutexState* s, const std::string& what) {
  const pid_t me = current_tid();
  if ((s->word.load(std::memory_order_relaxed) & kTidMask) != static_cast<std::uint32_t>(me)) {
    throw Error(errc::not_owner, what + ": unlock by a thread that does not hold it");
  }
  RobustListHead* head = robust_head(what);  // before any change: it may throw
  if (tls_pending_lock == s && head->list_op_pending != &s->link.next) {
    // glibc cleared the slot under this lock: put it back before anything else, so that the
    // kernel knows the lock again for the rest of this unlock.
    head->list_op_pending = &s->link.next;
    compiler_barrier();
    slot_was_cleared();
  }
  if (--s->depth > 0) return;  // RecursiveMutex: still held at an outer level
  if (s->owner_died.load(std::memory_order_relaxed) != 0) {
    s->owner_died.store(0, std::memory_order_relaxed);
  }
  s->owner.store(0, std::memory_order_relaxed);
  if (s->link.prev != nullptr) {
    // On the list. Unlink it while it is pending, so that a death between unlinking and
    // releasing still lets the kernel free the word; the slot must be ours for that.
    borrow_slot(head, s);
    robust_dequeue(s);
    s->link.prev = nullptr;
    compiler_barrier();
    release_word(s);
    compiler_barrier();
    head->list_op_pending = nullptr;
    return;
  }
  // Held through the slot (put back above if glibc had cleared it).
  const bool in_slot = tls_pending_lock == s;
  if (in_slot) tls_pending_lock = nullptr;
  release_word(s);
  compiler_barrier();
  if (in_slot) head->list_op_pending = nullptr;
}

void throw_inconsistent(const std::string& what) {
  throw Error(errc::owner_died,
              what + ": a process died while holding its lock, so the data may be half-updated; "
                     "take lock(), repair it and call mark_repaired() on the guard (or store a "
                     "whole new value)");
}

Released mutex_release_all(MutexState* s, const std::string& what) {
  if (s->owner.load(std::memory_order_relaxed) != current_tid()) {
    throw Error(errc::not_owner, what + ": release by a thread that does not hold it");
  }
  const Released held{s->depth, s->owner_died.load(std::memory_order_relaxed) != 0};
  for (unsigned i = 0; i < held.depth; ++i) mutex_unlock(s, what);
  return held;
}

void mutex_reacquire(MutexState* s, Released held, const std::string& what) {
  mutex_lock(s, what);
  for (unsigned i = 1; i < held.depth; ++i) mutex_lock(s, what);  // recursive: immediate
  if (held.owner_died) {
    s->owner_died.store(1, std::memory_order_relaxed);
    // A recovered lock is kept on the list, never in the slot (register_taken says why).
    vacate_pending(robust_head(what));
  }
}

void mutex_unlock_slow_noexcept(MutexState* s, const std::string& what) noexcept {
  try {
    mutex_unlock_slow(s, what);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "multiproc: fatal: %s\n", e.what());
    std::abort();
  }
}

}  // namespace multiproc::detail

// ---------------------------------------------------------------------------------------------
// Mutex and RecursiveMutex handles

namespace multiproc {

std::optional<pid_t> detail::RobustLock::holder_tid() const noexcept {
  const std::uint32_t tid = h_.state()->word.load(std::memory_order_relaxed) & FUTEX_TID_MASK;
  if (tid == 0 || tid >= detail::kNoSuchTid) return std::nullopt;  // free, or held by no thread
  return static_cast<pid_t>(tid);
}

std::optional<pid_t> detail::RobustLock::holder_pid() const {
  const std::optional<pid_t> tid = holder_tid();
  if (!tid) return std::nullopt;
  // /proc/<tid> exists for every thread id of this PID namespace (unlisted, but reachable), and
  // its Tgid line names the thread group: the process.
  const std::string path = "/proc/" + std::to_string(*tid) + "/status";
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return std::nullopt;
  std::optional<pid_t> pid;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    long tgid = 0;
    if (std::sscanf(line, "Tgid: %ld", &tgid) == 1) {
      if (tgid > 0) pid = static_cast<pid_t>(tgid);
      break;
    }
  }
  std::fclose(f);
  return pid;
}

}  // namespace multiproc
