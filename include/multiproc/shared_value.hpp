// multiproc/shared_value.hpp — one typed value in shared memory (Python's Value and RawValue).
//
//   mp::SharedValue<long> counter(0);            // Value('l', 0): a value plus its own robust lock
//   mp::Process p([=]() mutable { counter.update([](long& x) { x += 1; }); });
//   mp::RawValue<double> ratio(0.5);             // RawValue('d', 0.5): no lock (lock=False)
//   mp::Mutex m;                                 // Value('l', 0, lock=m): values sharing a lock
//   mp::SharedValue<long> hits(0, m), misses(0, m);
//
// SharedValue<T> holds a T next to a robust Mutex in one segment. load() and store() take the lock
// for the copy; update(f) runs f(T&) under it (the way to read-modify-write); lock() returns a
// guard that gives access through * and -> while it holds the lock; mutex() is that lock as a
// Mutex, for std::unique_lock or a Condition. RawValue<T> is the bare T: its load() and store()
// are single relaxed atomic accesses when T is 1, 2, 4 or 8 bytes, otherwise plain copies that a
// concurrent writer may tear.
//
// A caller's lock: made with a Mutex or RecursiveMutex (Python's lock= argument), a value is
// guarded by that lock instead of its own, so that several values and arrays can share one lock:
// load/store/update/lock() of any of them take it, mutex() (recursive_mutex() for a
// RecursiveMutex) returns it. The value's handle holds the lock's, so copies and forked children
// get both. A named value records its lock's name, and open_only opens the lock with it; so a
// named value needs a named lock (Mutex(create_only, "x")) — an anonymous one is an Error, as is
// open_or_create with a lock other than the one the value records. With a shared RecursiveMutex,
// update() of one value may update() another sharing it; with a Mutex that is
// Error(errc::would_deadlock), never a hang.
//
// T must be trivially copyable (it is copied between processes byte for byte) and not a pointer.
// Handles are copyable and their methods are const (a handle is like a pointer): copies share the
// value, so even a non-mutable lambda can capture one by value and update it. Share by fork
// (anonymous) or by name (create_only / open_only / open_or_create, checked against T's type code
// or, for a user's struct, its type name and size).
//
// Crashes: a process killed while holding the lock releases it to the next locker. What happens
// to the value then is its RecoveryPolicy (recovery_policy.hpp), chosen by the creator and stored
// in the object, so every process that opens it behaves alike:
// - recover, the default for an integral or floating-point T of at most 8 bytes with its own lock
//   (SharedValue<long>, <double>, <bool>...): such a value cannot be torn (one aligned word; store()
//   writes it with one atomic store), so whatever the dead holder left is the value. The next
//   operation that takes the lock counts the death in recoveries() and carries on: load() never
//   throws for it. A counter is then short of the increment the holder died inside of, if any.
// - strict, the default for everything else (a struct, a wider type, and any value made with a
//   caller's lock, which exists to keep several objects consistent together): the value may be
//   half-updated (a killed store() may have copied part of a T, a killed update() done half its
//   work), and multiproc never hands it out silently: until someone repairs it, lock() returns a
//   guard whose previous_owner_died() is true, and load(), exchange() and update() throw
//   Error(errc::owner_died). Repair through the guard and call mark_repaired(), or store() a whole
//   new value. With a shared lock, a holder that dies makes every value and array guarded by that
//   lock report it (the lock cannot tell which one the holder was changing): each one throws and
//   reports previous_owner_died() until it is itself repaired or stored; repairing one does not
//   repair the others. A second death concerns them all again. An object created after the death
//   (before the lock is next taken) is not concerned.
#pragma once

#include <multiproc/detail/locked_object.hpp>
#include <multiproc/detail/shared_object.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/recovery_policy.hpp>
#include <multiproc/recursive_mutex.hpp>
#include <multiproc/segment.hpp>

#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace multiproc {
namespace detail {

// Body of a SharedValue segment: the head (with the lock and the recovery policy), the value
// (aligned to its size when it is 1, 2, 4 or 8 bytes, for single-copy atomic stores), the external
// lock's name.
template <class T>
struct ValueBody {
  LockedHead head;
  alignas(raw_alignment_v<T>) unsigned char storage[sizeof(T)];  // a word on its own alignment
  LockTail tail;
  T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
};

// Body of a RawValue segment: the value, aligned for single-copy atomic access.
template <class T>
struct RawValueBody {
  alignas(raw_alignment_v<T>) unsigned char storage[sizeof(T)];
  T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
};

}  // namespace detail

template <class T>
class SharedValue : public detail::LockedHandle {
  template <class Lock>
  using if_lock = std::enable_if_t<detail::is_robust_lock_v<Lock>>;

 public:
  using value_type = T;

  //! A held lock plus access to the value (previous_owner_died(), mark_repaired(): see
  //! detail::LockedGuard). Move-only; unlocks when destroyed, which must happen in the thread
  //! that locked. Keeps the shared memory mapped, so it may outlive the handle.
  class Guard : public detail::LockedGuard {
   public:
    Guard(Guard&&) noexcept = default;
    T& operator*() const noexcept { return *value_; }
    T* operator->() const noexcept { return value_; }

   private:
    friend class SharedValue;
    explicit Guard(const SharedValue& v) : LockedGuard(v), value_(v.value_) { detail::settle(value_); }
    T* value_;
  };

  //! Effects: an unnamed value initialised to `initial` (T{} by default), shared with children
  //! forked after this call, with its own lock.
  SharedValue() : SharedValue(T{}) {}
  explicit SharedValue(const T& initial) : SharedValue(detail::Placement(), initial, nullptr, {}) {}
  //! Effects: as above, with the recovery policy `policy` instead of default_recovery_v<T>
  //! (recovery_policy.hpp; every constructor that creates takes one last). Throws:
  //! Error(errc::invalid_argument) for recover and a T that is not 1, 2, 4 or 8 bytes.
  SharedValue(const T& initial, RecoveryPolicy policy)
      : SharedValue(detail::Placement(), initial, nullptr, policy) {}
  //! Effects: an unnamed value guarded by `lock`, a Mutex or RecursiveMutex of the caller's
  //! (Python's Value('i', 0, lock=lock)): several values may share one lock. The value keeps the
  //! lock alive and hands it to forked children with its handle.
  template <class Lock, class = if_lock<Lock>>
  SharedValue(const T& initial, const Lock& lock)
      : SharedValue(detail::Placement(), initial, &lock, {}) {}
  template <class Lock, class = if_lock<Lock>>
  SharedValue(const T& initial, const Lock& lock, RecoveryPolicy policy)
      : SharedValue(detail::Placement(), initial, &lock, policy) {}
  //! Effects: creates the value called `name`, initialised to `initial`, with its own lock or
  //! guarded by `lock`, which must then have been made by name (Mutex(create_only, "x")): the
  //! value records the lock's name, and processes that open the value open the lock too.
  //! Throws: Error(errc::invalid_argument) for an anonymous lock; as Segment::create.
  SharedValue(create_only_t t, const Name& name, const T& initial = T{})
      : SharedValue(detail::Placement(t, name), initial, nullptr, {}) {}
  SharedValue(create_only_t t, const Name& name, const T& initial, RecoveryPolicy policy)
      : SharedValue(detail::Placement(t, name), initial, nullptr, policy) {}
  template <class Lock, class = if_lock<Lock>>
  SharedValue(create_only_t t, const Name& name, const T& initial, const Lock& lock)
      : SharedValue(detail::Placement(t, name), initial, &lock, {}) {}
  template <class Lock, class = if_lock<Lock>>
  SharedValue(create_only_t t, const Name& name, const T& initial, const Lock& lock,
              RecoveryPolicy policy)
      : SharedValue(detail::Placement(t, name), initial, &lock, policy) {}
  //! Effects: opens the value called `name`, and its lock: its own, or the external lock whose
  //! name it recorded; its recovery policy is the one its creator chose. Throws:
  //! Error(errc::type_mismatch) when it holds another type, Error(errc::wrong_kind) when it is
  //! not a SharedValue, as Segment::open; as Mutex(open_only, ...) when its external lock no
  //! longer exists; Error(errc::corrupt) for a recovery policy no creator could have stored.
  SharedValue(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, Kind::value, &element), nullptr, false, {});
  }
  //! Effects: opens `name` (as open_only), or creates it initialised to `initial` (with `lock`
  //! and `policy` when given). Throws: as those, and Error(errc::type_mismatch) when it exists
  //! guarded by another lock than `lock`, or with another policy than `policy`.
  SharedValue(open_or_create_t t, const Name& name, const T& initial = T{})
      : SharedValue(detail::Placement(t, name), initial, nullptr, {}) {}
  SharedValue(open_or_create_t t, const Name& name, const T& initial, RecoveryPolicy policy)
      : SharedValue(detail::Placement(t, name), initial, nullptr, policy) {}
  template <class Lock, class = if_lock<Lock>>
  SharedValue(open_or_create_t t, const Name& name, const T& initial, const Lock& lock)
      : SharedValue(detail::Placement(t, name), initial, &lock, {}) {}
  template <class Lock, class = if_lock<Lock>>
  SharedValue(open_or_create_t t, const Name& name, const T& initial, const Lock& lock,
              RecoveryPolicy policy)
      : SharedValue(detail::Placement(t, name), initial, &lock, policy) {}

  // load/store/exchange/update stay inline: an uncontended call is the lock's inline fast path
  // plus one copy of T.

  //! Returns: a copy of the value, taken under the lock.
  //! Throws: under RecoveryPolicy::strict, Error(errc::owner_died) while the value may be
  //! half-updated by a process that died holding the lock (see Guard::mark_repaired); the same
  //! goes for exchange() and update(). Under recover they recover (see recoveries()).
  T load() const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
    return detail::read_value(value_);
  }
  //! Effects: replaces the value under the lock (which also repairs one left half-updated).
  void store(const T& v) const {
    detail::MutexScope scope(lock_, seg_.describe());
    detail::raw_store(value_, v);  // one atomic store for a T of 1, 2, 4 or 8 bytes: never torn
    stored_whole();
  }
  //! Effects: replaces the value under the lock. Returns: the previous value.
  T exchange(const T& v) const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
    const T old = detail::read_value(value_);
    detail::raw_store(value_, v);
    return old;
  }
  //! Effects: runs f(T&) under the lock. Returns: what f returns. With a shared RecursiveMutex,
  //! f may update another value guarded by the same lock; with a shared Mutex that throws
  //! Error(errc::would_deadlock).
  template <class F>
  decltype(auto) update(F&& f) const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
    detail::settle(value_);
    return std::forward<F>(f)(*value_);
  }
  //! Effects: blocks until the lock is held. Returns: a guard giving access to the value. The
  //! guard keeps the shared memory mapped, so it may outlive this handle.
  Guard lock() const {
    detail::mutex_lock(lock_, seg_.describe());
    return Guard(*this);
  }
  //! The value's lock as a Mutex handle (for std::unique_lock, a Condition, ...): its own, or the
  //! caller's Mutex it was made with. Throws: Error(errc::wrong_kind) when it is guarded by a
  //! RecursiveMutex (see recursive_mutex()).
  Mutex mutex() const { return Mutex(lock_segment(false), lock_); }
  //! The RecursiveMutex the value was made with. Throws: Error(errc::wrong_kind) otherwise.
  RecursiveMutex recursive_mutex() const { return RecursiveMutex(lock_segment(true), lock_); }
  //! The policy its creator chose (recovery_policy.hpp).
  RecoveryPolicy recovery_policy() const noexcept { return policy_; }
  //! Returns: how many times a process died holding its lock and the value was recovered from
  //! silently (RecoveryPolicy::recover; always 0 under strict), counted by whichever process
  //! took the lock next, shared by every process (a snapshot; wraps at 2^32).
  std::uint32_t recoveries() const noexcept {
    // relaxed: a snapshot; the increments are made under the lock
    return head_->recoveries.load(std::memory_order_relaxed);
  }

 private:
  using Body = detail::ValueBody<T>;
  static_assert((detail::check_shareable<T>(), true));

  // The one constructor behind the anonymous, create_only and open_or_create ones.
  // `lock`: the caller's lock, nullptr for its own.
  SharedValue(const detail::Placement& where, const T& initial, const detail::RobustLock* lock,
              std::optional<RecoveryPolicy> asked) {
    std::optional<detail::LockChoice> choice;
    if (lock != nullptr) {
      choice = detail::choose_lock(
          *lock, detail::describe_object<T>(Kind::value, where.name()), where.name());
    }
    const detail::LockChoice* c = choice ? &*choice : nullptr;
    const RecoveryPolicy policy = detail::choose_policy(
        asked, default_recovery_v<T> == RecoveryPolicy::recover, detail::raw_atomic_v<T>, c,
        detail::describe_object<T>(Kind::value, where.name()));
    bool created = true;
    Segment seg = where.make(detail::body_layout<Body>(Kind::value, ElementType::of<T>(), 1),
                             [&](void* p) {
                               auto* body = static_cast<Body*>(p);
                               detail::init_lock(&body->head, &body->tail, c, policy, "SharedValue");
                               ::new (static_cast<void*>(body->storage)) T(initial);
                             },
                             &created);
    attach(std::move(seg), c, created, asked);
  }
  void attach(Segment seg, const detail::LockChoice* lock, bool created,
              std::optional<RecoveryPolicy> asked) {
    seg.expect_body_size(sizeof(Body));
    seg_ = std::move(seg);
    auto* body = static_cast<Body*>(seg_.body());
    attach_lock(&body->head, &body->tail, lock, created, asked, detail::raw_atomic_v<T>);
    value_ = body->value();
  }

  T* value_ = nullptr;
};

template <class T>
class RawValue : public detail::SegmentHandle {
 public:
  using value_type = T;

  RawValue() : RawValue(T{}) {}
  explicit RawValue(const T& initial) : RawValue(detail::Placement(), initial) {}
  RawValue(create_only_t t, const Name& name, const T& initial = T{})
      : RawValue(detail::Placement(t, name), initial) {}
  RawValue(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, Kind::raw_value, &element));
  }
  RawValue(open_or_create_t t, const Name& name, const T& initial = T{})
      : RawValue(detail::Placement(t, name), initial) {}

  // Inline on purpose: one plain load or store.
  //! Returns: the value (a single relaxed atomic load when T is 1, 2, 4 or 8 bytes).
  T load() const noexcept { return detail::raw_load(value_); }
  //! Effects: writes the value (a single relaxed atomic store when T is 1, 2, 4 or 8 bytes).
  void store(const T& v) const noexcept { detail::raw_store(value_, v); }
  //! The value in place, unsynchronised.
  T& get() const noexcept { return *value_; }

 private:
  using Body = detail::RawValueBody<T>;
  static_assert((detail::check_shareable<T>(), true));

  RawValue(const detail::Placement& where, const T& initial) {
    attach(where.make(detail::body_layout<Body>(Kind::raw_value, ElementType::of<T>(), 1),
                      [&initial](void* p) {
                        ::new (static_cast<void*>(static_cast<Body*>(p)->storage)) T(initial);
                      }));
  }
  void attach(Segment seg) {
    seg.expect_body_size(sizeof(Body));
    seg_ = std::move(seg);
    value_ = static_cast<Body*>(seg_.body())->value();
  }

  T* value_ = nullptr;
};

}  // namespace multiproc
