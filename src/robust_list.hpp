// src/robust_list.hpp — how multiproc's robust locks share the thread's kernel robust list with
// glibc (Documentation/locking/robust-futex-ABI.rst). Private to the library: only the inline
// uncontended lock/unlock in include/multiproc/detail/mutex_state.hpp touch the list head from a
// public header, and only its pending slot.
//
// The states this produces (in the slot, on the list, list-only mode, ...) and every transition
// are tabulated in docs/lock-states.md.
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
#pragma once

#include <multiproc/detail/mutex_state.hpp>

#include <cstddef>
#include <cstdint>
#include <pthread.h>
#include <string>

namespace multiproc::detail {

// glibc's offset: from pthread_mutex_t::__data.__list.__next back to __data.__lock. Our MutexState
// puts `word` and `link.next` the same distance apart.
#if !defined(__GLIBC__) || !__PTHREAD_MUTEX_HAVE_PREV
#error "multiproc's robust mutex shares the robust futex list of glibc's 64-bit NPTL"
#endif
inline constexpr long kFutexOffset =
    static_cast<long>(offsetof(pthread_mutex_t, __data.__lock)) -
    static_cast<long>(offsetof(pthread_mutex_t, __data.__list.__next));
static_assert(static_cast<long>(offsetof(MutexState, word)) -
                      static_cast<long>(offsetof(MutexState, link) + offsetof(RobustLink, next)) ==
                  kFutexOffset,
              "MutexState must place word and link.next as glibc places __lock and __list.__next");
static_assert(offsetof(RobustLink, next) - offsetof(RobustLink, prev) == sizeof(void*),
              "glibc keeps prev right before next");

//! Looks up the calling thread's list head and checks it is glibc's (then caches it in
//! tls_robust_head). Throws: Error when the thread has none, or one that is not glibc's.
RobustListHead* robust_head_slow(const std::string& what);
inline RobustListHead* robust_head(const std::string& what) {
  RobustListHead* h = tls_robust_head;
  return h != nullptr ? h : robust_head_slow(what);
}

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

}  // namespace multiproc::detail
