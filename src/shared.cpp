// Non-template parts of SharedArray and AnyValue/AnyArray.
#include <multiproc/any_value.hpp>
#include <multiproc/detail/segment_header.hpp>
#include <multiproc/shared_array.hpp>

#include <cstring>

namespace multiproc::detail {

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

void init_lock(LockedHead* head, LockTail* tail, const LockChoice& choice, const char* what) {
  mutex_init(&head->mutex, false, what);
  head->lock_kind = static_cast<std::uint32_t>(choice.kind);
  if (choice.kind == LockKind::own) {
    head->repaired_at.store(0, std::memory_order_relaxed);
    return;
  }
  // Start consistent with the lock as it is now. If its holder died and nobody has taken it
  // since, the next locker will count that recovery: it cannot concern data made after it. (Read
  // the count first: a recovery in between then makes the new object look suspect, never the
  // reverse.)
  const std::uint32_t recoveries = mutex_recoveries(choice.state);
  const std::uint32_t word = choice.state->word.load(std::memory_order_relaxed);
  const bool pending = (word & FUTEX_OWNER_DIED) != 0 && (word & FUTEX_TID_MASK) == 0;
  head->repaired_at.store(pending ? recoveries + 1 : recoveries, std::memory_order_relaxed);
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

void throw_lock_kind(const Segment& seg, bool recursive) {
  seg.fail(errc::wrong_kind, recursive ? "it is guarded by a RecursiveMutex: use recursive_mutex()"
                                       : "it is not guarded by a RecursiveMutex: use mutex()");
}

}  // namespace multiproc::detail
