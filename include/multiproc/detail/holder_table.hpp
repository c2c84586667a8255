// multiproc/detail/holder_table.hpp — which processes hold an object, in shared memory. Private.
//
// A table of (pid, start time) entries under a robust lock, with a `closed` flag for "no live
// process holds it any more". Pipe keeps one per end, which is how "the peer closed or died"
// becomes EOF; anything else whose life is "while some process holds it" (a Manager's objects, a
// server's clients) can keep one the same way. Crash safety: every update writes the entry before
// the count (or moves the last entry over before shortening), so a holder SIGKILLed mid-update
// leaves a duplicate, never a lost holder; the next locker recovers the lock and clamps the count.
// A holder that dies without removing itself is forgotten by a later liveness scan (each looks up
// to the first live holder, forgetting the dead before it; a close looks at the others too).
//
// Damage: another process may write any byte of the table. Every locked operation reads `count`
// once and clamps it to kMaxHolders (writing the clamped value back), so no entry outside the
// table is ever read or written; a damaged entry is a holder like any other: a pid that is not a
// live process (0 and negative pids included) is dead, and a pending fork's deadline further
// than 2 s ahead has lapsed, so damage can at worst keep an end open until the next liveness
// scan, or close it early (as a holder's death would). `closed` and `overflow` are flags: any
// value is a value.
#pragma once

#include <multiproc/detail/cache_line.hpp>
#include <multiproc/detail/mutex_state.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <sys/types.h>

namespace multiproc::detail {

// Enough for every process of a large pre-forked server to hold one end (16 KiB a table): past
// it, an end never reports EOF (`overflow`: holders it does not know of may be alive).
inline constexpr std::uint32_t kMaxHolders = 1024;

// The processes holding one object. Layout (in shared memory):
//   lock      robust mutex guarding count and holders
//   closed    1 once no process holds it (set by the last close, or by a liveness scan that
//             found every holder dead); cleared when a process holds it again. Read
//             unlocked (acquire) on every send and before every sleep.
//   overflow  more holders than slots: it never counts as closed
//   holders   pid and start time of each holding process; an entry with a negative pid is a
//             fork in progress (-parent pid, and a CLOCK_MONOTONIC deadline in ns as `start`):
//             the child replaces it with its own entry, and it lapses if the child never does
struct alignas(kCacheLine) HolderTable {
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

//! Initialises a zero-filled table in place, held by one process.
void holder_table_init(HolderTable& t, pid_t pid, std::uint64_t start, const std::string& what);

//! Records (pid, start) as a holder (updating its start time if pid is there), and reopens the
//! table. Past kMaxHolders live holders, sets `overflow` instead.
void add_holder(HolderTable& t, pid_t pid, std::uint64_t start);

//! Forgets pid. Returns true if no live process holds it any more (and sets `closed`): it looks
//! at the others as holders_alive() does.
bool remove_holder(HolderTable& t, pid_t pid);

//! A fork is about to happen: the child will hold it but registers itself only after fork()
//! returned in the parent. Until it does (or for at most 2 s), this entry keeps the table open.
void add_pending_fork(HolderTable& t, pid_t parent);
//! The child registered itself: drops the entry add_pending_fork(parent) left.
void remove_pending_fork(HolderTable& t, pid_t parent);

//! Whether some live process still holds it: looks (a lock and a liveness query per holder,
//! unless `closed` or `overflow` already answer) up to the first live holder, forgetting the
//! dead ones before it.
bool holders_alive(HolderTable& t);

//! The cheap check: whether the table was seen closed (acquire: pairs with the release stores of
//! `closed`, so whatever the last holder did before closing is visible).
inline bool holder_table_closed(const HolderTable& t) noexcept {
  return t.closed.load(std::memory_order_acquire) != 0;
}

}  // namespace multiproc::detail
