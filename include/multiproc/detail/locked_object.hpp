// multiproc/detail/locked_object.hpp — the lock of a SharedValue or SharedArray: its own robust
// Mutex in the object's segment, or a caller's Mutex / RecursiveMutex (Python's lock= argument),
// and what their handles and guards share. Private: users never name it.
#pragma once

#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/detail/shared_object.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/recovery_policy.hpp>
#include <multiproc/segment.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace multiproc::detail {

enum class LockKind : std::uint32_t { own = 0, mutex = 1, recursive_mutex = 2 };
inline constexpr std::size_t kLockNameSize = 208;  // a Name has at most 200 characters

// Head of a locked value's or array's body (56 bytes, a multiple of 8: the data follows on its own
// alignment, so a small value or an array's first elements share the lock's cache line, and an
// element of 1, 2, 4 or 8 bytes is aligned to its size):
//   mutex        the object's own lock. Initialised, and unused, when the lock is external.
//   repaired_at  the lock's recovery count (mutex_recoveries) when this object's data was last
//                known consistent: created, stored whole, marked repaired, or recovered under
//                RecoveryPolicy::recover. While the lock's count differs, a holder died since and
//                the data may be half-updated. Written and read under the lock (relaxed: the
//                lock's acquire and release order it).
//   lock_kind    LockKind, immutable
//   policy       RecoveryPolicy (1 strict, 2 recover), immutable; every opener validates it and
//                keeps a copy in its handle (any other value, or recover for an element that is
//                not 1, 2, 4 or 8 bytes, is Error(corrupt))
//   recoveries   how many times a holder's death was recovered from silently under `recover`
//                (wraps at 2^32). Incremented under the lock (relaxed: the lock orders it);
//                read without it as a snapshot.
struct LockedHead {
  MutexState mutex;
  std::atomic<std::uint32_t> repaired_at;
  std::uint32_t lock_kind;
  std::uint32_t policy;
  std::atomic<std::uint32_t> recoveries;
};
static_assert(sizeof(LockedHead) == 56 && alignof(LockedHead) == 8,
              "LockedHead's layout is shared between processes: 56 bytes, 8-aligned");
// Tail of the body, after the data: the external lock's name, NUL-terminated, immutable; empty
// for the object's own lock and for an anonymous external lock (which only an anonymous object
// may have: nobody could open it by name).
struct LockTail {
  char name[kLockNameSize];
};

//! The lock an object uses, in this process: its segment (empty for the object's own lock, which
//! lives in the object's segment) and its state.
struct LockChoice {
  Segment seg;
  MutexState* state = nullptr;
  LockKind kind = LockKind::own;
};

//! The choice of a caller's lock for an object called `name` (nullptr: anonymous).
//! Throws: Error(errc::invalid_argument) for a named object and a lock openers could not find by
//! name (an anonymous one, or another object's own lock).
LockChoice choose_lock(const RobustLock& lock, const std::string& what, const Name* name);
//! Fills a new object's head and tail with `choice` (nullptr: its own lock) and `policy`. Runs in
//! the creator, inside Segment::Init.
void init_lock(LockedHead* head, LockTail* tail, const LockChoice* choice, RecoveryPolicy policy,
               const char* what);
//! The policy a new object gets: `asked`, or the default (recover only when `word_default`, the
//! element type's default, and the object has its own lock). Throws: Error(errc::invalid_argument)
//! naming `what` when recover is asked for an element that is not 1, 2, 4 or 8 bytes
//! (`word_sized` false).
RecoveryPolicy choose_policy(std::optional<RecoveryPolicy> asked, bool word_default,
                             bool word_sized, const LockChoice* lock, const std::string& what);
//! The lock of an object just created (choice) or opened (choice == nullptr: from the segment,
//! opening an external lock by name). Throws: Error(errc::corrupt) for a damaged record, Error as
//! Mutex(open_only, ...) when the recorded lock cannot be opened.
LockChoice resolve_lock(const Segment& seg, LockedHead* head, const LockTail* tail,
                        const LockChoice* choice);
//! Throws Error(errc::type_mismatch) unless the object `seg` (opened by open_or_create) records
//! the same lock as `choice`.
void check_same_lock(const Segment& seg, const LockedHead* head, const LockTail* tail,
                     const LockChoice& choice);

//! Whether the object's data may be half-updated by a holder that died (see LockedHead).
inline bool data_suspect(const MutexState* lock, const LockedHead* head) noexcept {
  return mutex_recoveries(lock) != head->repaired_at.load(std::memory_order_relaxed);
}
inline void data_repaired(const MutexState* lock, LockedHead* head) noexcept {
  head->repaired_at.store(mutex_recoveries(lock), std::memory_order_relaxed);
}

class LockedGuard;

//! What a SharedValue and a SharedArray handle share: the segment, the lock and the head.
class LockedHandle : public SegmentHandle {
 protected:
  //! Takes the lock of seg_ (already attached), whose body has `head` and `tail`. `lock`: the
  //! caller's lock the constructor was given (nullptr: none). `created`: whether this constructor
  //! created the object — then it was made with `lock` — or opened it (open_only, or
  //! open_or_create of an existing object, which must then record `lock` when one is given).
  //! `asked`: the recovery policy the constructor was given (checked against an existing object
  //! like `lock`); `word_sized`: whether the element may be recovered (1, 2, 4 or 8 bytes).
  //! Throws: as resolve_lock(); Error(errc::type_mismatch) for another lock than `lock` or
  //! another policy than `asked`; Error(errc::corrupt) for a policy no creator could have written.
  void attach_lock(LockedHead* head, const LockTail* tail, const LockChoice* lock, bool created,
                   std::optional<RecoveryPolicy> asked, bool word_sized);
  //! The segment of the lock, for mutex() (recursive = false) or recursive_mutex(). Throws:
  //! Error(errc::wrong_kind) when the lock is of the other kind.
  const Segment& lock_segment(bool recursive) const;
  //! Whether the data is consistent, after recovering it silently when a holder died and the
  //! policy is recover (counted in recoveries, marked consistent). Requires: the lock held.
  bool settle() const noexcept { return !data_suspect(lock_, head_) || recover_silently(); }
  //! Throws Error(errc::owner_died) while the data may be half-updated (strict policy only).
  //! Requires: the lock held.
  void require_consistent() const {
    if (!settle()) throw_inconsistent(seg_.describe());
  }
  //! After a store of the whole data: consistent again (a death it covers is counted under
  //! recover). Requires: the lock held.
  void stored_whole() const noexcept {
    if (data_suspect(lock_, head_) && !recover_silently()) data_repaired(lock_, head_);
  }
  bool recover_silently() const noexcept {
    if (policy_ != RecoveryPolicy::recover) return false;
    // relaxed: under the lock, whose release publishes it; recoveries() reads a snapshot.
    head_->recoveries.fetch_add(1, std::memory_order_relaxed);
    data_repaired(lock_, head_);
    return true;
  }

  Segment lock_seg_;  // the external lock's segment; empty for the object's own lock
  MutexState* lock_ = nullptr;
  LockedHead* head_ = nullptr;
  RecoveryPolicy policy_ = RecoveryPolicy::strict;  // validated copy of head_->policy

 private:
  friend class LockedGuard;
};

//! What SharedValue::Guard and SharedArray::Guard share: a held lock, kept mapped.
class LockedGuard {
 public:
  LockedGuard(LockedGuard&& other) noexcept
      : seg_(std::move(other.seg_)),
        lock_seg_(std::move(other.lock_seg_)),
        state_(std::exchange(other.state_, nullptr)),
        head_(other.head_) {}
  LockedGuard& operator=(LockedGuard&&) = delete;
  ~LockedGuard() {
    if (state_ != nullptr) mutex_unlock_noexcept(state_, seg_.describe());
  }
  //! True when a process died holding this object's lock and its data has not been marked
  //! repaired since: it may be half-updated. Stays true across unlocks until mark_repaired().
  //! With a lock shared by several objects, a death makes every one of them report it, and each
  //! is repaired on its own. Never true under RecoveryPolicy::recover (the guard recovers when
  //! it takes the lock).
  bool previous_owner_died() const noexcept { return data_suspect(state_, head_); }
  //! Effects: records that the data is consistent again (after repairing it).
  void mark_repaired() const noexcept { data_repaired(state_, head_); }

 protected:
  //! Requires: h's lock held by this thread; the guard unlocks it.
  //! Under RecoveryPolicy::recover, a holder's death since the data was last consistent is
  //! recovered from here (counted, marked consistent): previous_owner_died() is then false.
  explicit LockedGuard(const LockedHandle& h)
      : seg_(h.seg_), lock_seg_(h.lock_seg_), state_(h.lock_), head_(h.head_) {
    (void)h.settle();
  }

 private:
  Segment seg_;       // keeps the mapping while the lock is held, even if the handle goes first
  Segment lock_seg_;  // and the external lock's (the kernel's robust list points into it)
  MutexState* state_;
  LockedHead* head_;
};

}  // namespace multiproc::detail
