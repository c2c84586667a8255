// The holder table (see multiproc/detail/holder_table.hpp): who holds a shared object, kept
// crash-safe under a robust lock.
#include <multiproc/detail/holder_table.hpp>

#include "../os.hpp"

#include <multiproc/detail/futex.hpp>

#include <algorithm>
#include <chrono>

namespace multiproc::detail {
namespace {

const std::string kWhat = "holder table";

// How long a pending fork entry keeps the table open.
constexpr std::uint64_t kPendingForkNs = 2000000000ull;

//! The table's robust lock. After a holder died mid-update, keep what is well-formed: a count
//! no larger than the table.
struct TableLock : MutexScope {
  explicit TableLock(HolderTable& t)
      : MutexScope(&t.lock, kWhat, [&t] { t.count = std::min(t.count, kMaxHolders); }) {}
};

//! The count, read once (the caller holds the lock) and clamped into the table: a count that
//! another process damaged must not index past it. The clamped value is written back.
std::uint32_t held_count(HolderTable& t) {
  const std::uint32_t n = *static_cast<volatile std::uint32_t*>(&t.count);
  if (n <= kMaxHolders) return n;
  t.count = kMaxHolders;
  return kMaxHolders;
}

std::uint64_t monotonic_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

bool holder_alive(const HolderTable::Holder& h) {
  // A fork in progress, until its deadline — which is never further than kPendingForkNs ahead
  // (a damaged deadline far in the future must not keep the end open forever).
  if (h.pid < 0) {
    const std::uint64_t now = monotonic_ns();
    return now < h.start && h.start - now <= kPendingForkNs;
  }
  return process_liveness(h.pid, h.start) != Liveness::dead;  // unknown: a holder we cannot see
                                                               // keeps the end open; pid 0: dead
}

//! Whether a live holder is in the table, looking up to the first one only: one is enough, and
//! a table of a thousand live holders must not cost a thousand /proc reads per look. The dead
//! ones before it are forgotten: the rest moves forward over them (each live entry is always
//! somewhere below the count, so a death in the middle of the move loses none). Requires the lock.
bool any_alive_locked(HolderTable& t) {
  const std::uint32_t n = held_count(t);
  std::uint32_t dead = 0;
  while (dead < n && !holder_alive(t.holders[dead])) ++dead;
  if (dead > 0) {
    for (std::uint32_t i = dead; i < n; ++i) t.holders[i - dead] = t.holders[i];
    std::atomic_signal_fence(std::memory_order_seq_cst);
    t.count = n - dead;
  }
  return dead < n;
}

//! Forgets every dead holder and lapsed fork (a liveness query each: for a full table only).
//! Returns the new count. Requires the lock.
std::uint32_t forget_dead_locked(HolderTable& t) {
  const std::uint32_t n = held_count(t);
  std::uint32_t kept = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (holder_alive(t.holders[i])) t.holders[kept++] = t.holders[i];
  }
  t.count = kept;
  return kept;
}

}  // namespace

void holder_table_init(HolderTable& t, pid_t pid, std::uint64_t start, const std::string& what) {
  mutex_init(&t.lock, false, what);
  t.count = 1;
  t.holders[0] = {static_cast<std::int32_t>(pid), 0, start};
}

void add_holder(HolderTable& t, pid_t pid, std::uint64_t start) {
  TableLock lock(t);
  std::uint32_t n = held_count(t);
  for (std::uint32_t i = 0; i < n; ++i) {
    if (t.holders[i].pid == pid) {
      t.holders[i].start = start;
      t.closed.store(0, std::memory_order_release);
      return;
    }
  }
  if (n == kMaxHolders) n = forget_dead_locked(t);  // make room
  if (n < kMaxHolders) {
    // The entry first, then the count: a death between the two loses nothing.
    t.holders[n] = {static_cast<std::int32_t>(pid), 0, start};
    std::atomic_signal_fence(std::memory_order_seq_cst);
    t.count = n + 1;
  } else {
    t.overflow.store(1, std::memory_order_relaxed);  // too many to track: never report closed
  }
  t.closed.store(0, std::memory_order_release);
}

bool remove_holder(HolderTable& t, pid_t pid) {
  TableLock lock(t);
  std::uint32_t n = held_count(t);
  for (std::uint32_t i = 0; i < n; ++i) {
    if (t.holders[i].pid == pid) {
      // Move the last entry over this one, then shorten: a death between the two leaves a
      // duplicate, never a lost holder.
      t.holders[i] = t.holders[n - 1];
      std::atomic_signal_fence(std::memory_order_seq_cst);
      t.count = --n;
      break;
    }
  }
  // The others may all be dead (a scan stops at the first live holder, so dead ones can sit
  // behind this one): then the end is closed now, not at the next look of a waiting peer.
  if (!any_alive_locked(t) && t.overflow.load(std::memory_order_relaxed) == 0) {
    t.closed.store(1, std::memory_order_release);
    return true;
  }
  return false;
}

void add_pending_fork(HolderTable& t, pid_t parent) {
  TableLock lock(t);
  std::uint32_t n = held_count(t);
  if (n == kMaxHolders) n = forget_dead_locked(t);  // make room (lapsed forks: failed ones too)
  if (n == kMaxHolders) {
    t.overflow.store(1, std::memory_order_relaxed);
    return;
  }
  t.holders[n] = {-static_cast<std::int32_t>(parent), 0, monotonic_ns() + kPendingForkNs};
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t.count = n + 1;
}

void remove_pending_fork(HolderTable& t, pid_t parent) {
  TableLock lock(t);
  std::uint32_t n = held_count(t);
  for (std::uint32_t i = 0; i < n; ++i) {
    if (t.holders[i].pid == -static_cast<std::int32_t>(parent)) {
      t.holders[i] = t.holders[n - 1];
      std::atomic_signal_fence(std::memory_order_seq_cst);
      t.count = --n;
      return;
    }
  }
}

bool holders_alive(HolderTable& t) {
  if (t.closed.load(std::memory_order_acquire) != 0) return false;
  if (t.overflow.load(std::memory_order_relaxed) != 0) return true;
  TableLock lock(t);
  if (any_alive_locked(t)) return true;
  t.closed.store(1, std::memory_order_release);
  return false;
}

}  // namespace multiproc::detail
