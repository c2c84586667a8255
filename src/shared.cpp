// Non-template parts of the shared objects (detail/shared_object.hpp, detail/locked_object.hpp),
// SharedArray and AnyValue/AnyArray.
#include <multiproc/any_value.hpp>
#include <multiproc/detail/locked_object.hpp>
#include <multiproc/detail/segment_header.hpp>
#include <multiproc/detail/shared_object.hpp>
#include <multiproc/shared_array.hpp>

#include <cstring>

namespace multiproc::detail {

std::string object_type_name(Kind kind, const ElementType* element) {
  std::string s = kind_name(kind);
  if (element != nullptr && element->size != 0) s += "<" + element->name + ">";
  return s;
}

std::string describe_object(Kind kind, const ElementType* element, std::string_view name) {
  std::string s = object_type_name(kind, element);
  if (name.empty()) return s + " (anonymous)";
  s += " '";
  s += name;
  return s + "'";
}

ElementType element_from_header(const SegmentHeader& h) {
  ElementType e;
  e.code = h.type_code;
  e.size = h.elem_size;
  e.alignment = h.elem_align;
  e.hash = h.type_hash;
  e.name = std::string(h.type_name, ::strnlen(h.type_name, sizeof h.type_name));
  return e;
}

Segment Placement::make(const SegmentLayout& layout, const Segment::Init& init,
                        bool* created) const {
  if (created != nullptr) *created = true;
  if (name_ == nullptr) return Segment::create_anonymous(layout, init);
  if (!open_existing_) return Segment::create(*name_, layout, init);
  return Segment::open_or_create(*name_, layout, init, created);
}

void LockedHandle::attach_lock(LockedHead* head, const LockTail* tail, const LockChoice* lock,
                               bool created, std::optional<RecoveryPolicy> asked,
                               bool word_sized) {
  if (lock != nullptr && !created) check_same_lock(seg_, head, tail, *lock);
  // The policy as this process reads it once: a later scribble on the head changes nothing here.
  const std::uint32_t stored = head->policy;
  const auto policy = static_cast<RecoveryPolicy>(stored);
  if (policy != RecoveryPolicy::strict && policy != RecoveryPolicy::recover) {
    seg_.fail(errc::corrupt, "unknown recovery policy " + std::to_string(stored) + " in its body");
  }
  if (policy == RecoveryPolicy::recover && !word_sized) {
    seg_.fail(errc::corrupt, "its body records the recovery policy recover, which no creator can "
                             "choose for an element of " +
                                 std::to_string(seg_.header().elem_size) + " bytes");
  }
  if (asked && *asked != policy && !created) {
    seg_.fail(errc::type_mismatch, std::string("it exists with the recovery policy ") +
                                       policy_name(policy) + ", not " + policy_name(*asked));
  }
  LockChoice c = resolve_lock(seg_, head, tail, created ? lock : nullptr);
  head_ = head;
  lock_ = c.state;
  lock_seg_ = std::move(c.seg);
  policy_ = policy;
  if (!lock_seg_) seg_.track_lock_owner(&lock_->owner);
}

RecoveryPolicy choose_policy(std::optional<RecoveryPolicy> asked, bool word_default,
                             bool word_sized, const LockChoice* lock, const std::string& what) {
  if (!asked) {
    const bool own = lock == nullptr || lock->kind == LockKind::own;
    return word_default && own ? RecoveryPolicy::recover : RecoveryPolicy::strict;
  }
  if (*asked != RecoveryPolicy::strict && *asked != RecoveryPolicy::recover) {
    throw Error(errc::invalid_argument,
                what + ": unknown recovery policy " +
                    std::to_string(static_cast<std::uint32_t>(*asked)));
  }
  if (*asked == RecoveryPolicy::recover && !word_sized) {
    throw Error(errc::invalid_argument,
                what + ": RecoveryPolicy::recover needs an element of 1, 2, 4 or 8 bytes, which "
                       "a dying holder cannot leave half-written; use strict and repair it "
                       "through a guard (mark_repaired())");
  }
  return *asked;
}

const Segment& LockedHandle::lock_segment(bool recursive) const {
  if ((lock_->recursive != 0) != recursive) {
    seg_.fail(errc::wrong_kind, recursive
                                    ? "it is not guarded by a RecursiveMutex: use mutex()"
                                    : "it is guarded by a RecursiveMutex: use recursive_mutex()");
  }
  return lock_seg_ ? lock_seg_ : seg_;
}

void throw_index(const Segment& seg, std::size_t i, std::size_t n) {
  seg.fail(errc::invalid_argument,
           "index " + std::to_string(i) + " out of range (size " + std::to_string(n) + ")");
}

char stored_typecode(const Name& name, Kind kind) {
  const Segment seg = Segment::open(name, kind, nullptr);
  const char code = seg.header().type_code;
  if (code == 0) {
    seg.fail(errc::type_mismatch,
             "its element type has no type code, so it cannot be opened as an AnyValue/AnyArray");
  }
  return code;
}

LockChoice choose_lock(const RobustLock& lock, const std::string& what, const Name* name) {
  LockChoice c;
  c.seg = lock.segment();
  c.state = LockAccess::state(lock);
  c.kind = c.state->recursive != 0 ? LockKind::recursive_mutex : LockKind::mutex;
  if (name != nullptr) {
    const Kind k = c.seg.kind();
    if (!c.seg.named() || (k != Kind::mutex && k != Kind::recursive_mutex)) {
      throw Error(errc::invalid_argument,
                  what + ": a named object needs a lock made by name (Mutex(create_only, \"...\") "
                         "or a RecursiveMutex), so that processes opening it can open its lock "
                         "too; got " + c.seg.describe());
    }
  }
  return c;
}

void init_lock(LockedHead* head, LockTail* tail, const LockChoice* lock, RecoveryPolicy policy,
               const char* what) {
  mutex_init(&head->mutex, false, what);
  head->policy = static_cast<std::uint32_t>(policy);
  head->recoveries.store(0, std::memory_order_relaxed);  // before publication: no partner
  if (lock == nullptr || lock->kind == LockKind::own) {
    head->lock_kind = static_cast<std::uint32_t>(LockKind::own);
    head->repaired_at.store(0, std::memory_order_relaxed);
    return;
  }
  const LockChoice& choice = *lock;
  head->lock_kind = static_cast<std::uint32_t>(choice.kind);
  // Start consistent with the lock as it is now. If its holder died and nobody has taken it
  // since, the next locker will count that recovery: it cannot concern data made after it. (Read
  // the count first: a recovery in between then makes the new object look suspect, never the
  // reverse.)
  const std::uint32_t recoveries = mutex_recoveries(choice.state);
  const std::uint32_t word = choice.state->word.load(std::memory_order_relaxed);
  // (A holder no thread can be is taken over as from a dead one, too: kNoSuchTid.)
  const bool pending = ((word & FUTEX_OWNER_DIED) != 0 && (word & FUTEX_TID_MASK) == 0) ||
                       (word & FUTEX_TID_MASK) >= kNoSuchTid;
  // The lock counts recoveries in 31 bits (mutex_recoveries): the next one after 2^31 - 1 is 0.
  // Unwrapped, repaired_at would become 2^31, which the count never equals: the object would read
  // as half-updated for ever (an outside probe).
  const std::uint32_t next = (recoveries + 1) & 0x7fffffffu;
  head->repaired_at.store(pending ? next : recoveries, std::memory_order_relaxed);
  if (choice.seg.named()) {
    const std::string& n = choice.seg.name();
    std::memcpy(tail->name, n.data(), std::min(n.size(), kLockNameSize - 1));
  }
}

LockChoice resolve_lock(const Segment& seg, LockedHead* head, const LockTail* tail,
                        const LockChoice* choice) {
  const std::uint32_t kind = head->lock_kind;
  if (kind > static_cast<std::uint32_t>(LockKind::recursive_mutex)) {
    seg.fail(errc::corrupt, "unknown lock kind " + std::to_string(kind) + " in its header");
  }
  if (kind == static_cast<std::uint32_t>(LockKind::own)) {
    LockChoice own;
    own.state = &head->mutex;
    return own;
  }
  if (choice != nullptr) return *choice;  // just created with it
  const std::size_t len = ::strnlen(tail->name, kLockNameSize);
  if (len == 0 || len == kLockNameSize) {
    seg.fail(errc::corrupt, "it records an external lock without a valid name");
  }
  const std::string lock_name(tail->name, len);
  try {
    LockChoice c;
    c.kind = static_cast<LockKind>(kind);
    if (c.kind == LockKind::mutex) {
      const Mutex m(open_only, lock_name);
      c.seg = m.segment();
      c.state = LockAccess::state(m);
    } else {
      const RecursiveMutex m(open_only, lock_name);
      c.seg = m.segment();
      c.state = LockAccess::state(m);
    }
    return c;
  } catch (const Error& e) {
    const errc code = e.code().category() == error_category() ? static_cast<errc>(e.code().value())
                                                               : errc::bad_state;
    seg.fail(code,
             std::string("cannot open the lock it is guarded by: ") + e.what());
  }
}

void check_same_lock(const Segment& seg, const LockedHead* head, const LockTail* tail,
                     const LockChoice& choice) {
  const std::size_t len = ::strnlen(tail->name, kLockNameSize);
  const std::string recorded(tail->name, len == kLockNameSize ? 0 : len);
  if (head->lock_kind != static_cast<std::uint32_t>(choice.kind) || recorded != choice.seg.name()) {
    seg.fail(errc::type_mismatch,
             "it exists guarded by " +
                 (head->lock_kind == 0 ? std::string("its own lock")
                                       : "the lock '" + recorded + "'") +
                 ", not by " + choice.seg.describe());
  }
}

}  // namespace multiproc::detail
