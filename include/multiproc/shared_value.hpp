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
// Crashes: a process killed while holding the lock releases it to the next locker. The value may
// then be half-updated (a killed store() may have copied part of a T), and multiproc never hands it
// out silently: until someone repairs it, lock() returns a guard whose previous_owner_died() is
// true, and load(), exchange() and update() throw Error(errc::owner_died). Repair through the
// guard and call mark_repaired(), or store() a whole new value. With a shared lock, a holder that
// dies makes every value and array guarded by that lock report it (the lock cannot tell which one
// the holder was changing): each one throws and reports previous_owner_died() until it is itself
// repaired or stored; repairing one does not repair the others. A second death concerns them all
// again. An object created after the death (before the lock is next taken) is not concerned.
#pragma once

#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/recursive_mutex.hpp>
#include <multiproc/segment.hpp>
#include <multiproc/typecode.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

namespace multiproc {
namespace detail {

template <class T>
constexpr void check_shareable() {
  static_assert(std::is_trivially_copyable_v<T>,
                "shared values and arrays need a trivially copyable T: it is copied between "
                "processes byte for byte");
  static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                "a pointer means nothing in another process: share the data, or an index into it");
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>, "use an unqualified T");
}

// Single-copy atomic when T is a machine word or smaller; memcpy otherwise.
template <class T>
inline constexpr bool raw_atomic_v = sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 ||
                                     sizeof(T) == 8;

template <class T>
inline constexpr std::size_t raw_alignment_v = raw_atomic_v<T> ? std::max(alignof(T), sizeof(T))
                                                               : alignof(T);

// The unsigned integer as wide as T, for single-copy atomic access to T's bytes. (An atomic
// access through an array type would be 1-byte aligned: clang then calls libatomic.)
template <class T>
using raw_word_t = std::conditional_t<
    sizeof(T) == 1, std::uint8_t,
    std::conditional_t<sizeof(T) == 2, std::uint16_t,
                       std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>>;

template <class T>
T raw_load(const T* p) noexcept {
  T out;
  if constexpr (raw_atomic_v<T>) {
    const raw_word_t<T> w = __atomic_load_n(reinterpret_cast<const raw_word_t<T>*>(p), __ATOMIC_RELAXED);
    std::memcpy(static_cast<void*>(&out), &w, sizeof(T));
  } else {
    std::memcpy(static_cast<void*>(&out), p, sizeof(T));
  }
  return out;
}

template <class T>
void raw_store(T* p, const T& v) noexcept {
  if constexpr (raw_atomic_v<T>) {
    raw_word_t<T> w;
    std::memcpy(&w, &v, sizeof(T));
    __atomic_store_n(reinterpret_cast<raw_word_t<T>*>(p), w, __ATOMIC_RELAXED);
  } else {
    std::memcpy(static_cast<void*>(p), &v, sizeof(T));
  }
}

// ---- the lock of a SharedValue / SharedArray: its own, or a caller's Mutex / RecursiveMutex ----

enum class LockKind : std::uint32_t { own = 0, mutex = 1, recursive_mutex = 2 };
inline constexpr std::size_t kLockNameSize = 208;  // a Name has at most 200 characters

// Head of a locked value's or array's body (48 bytes; the data follows on its own alignment, so
// a small value or an array's first elements share the lock's cache line):
//   mutex        the object's own lock. Initialised, and unused, when the lock is external.
//   repaired_at  the lock's recovery count (mutex_recoveries) when this object's data was last
//                known consistent: created, stored whole, or marked repaired. While the lock's
//                count differs, a holder died since and the data may be half-updated. Written
//                and read under the lock (relaxed: the lock's acquire and release order it).
//   lock_kind    LockKind, immutable
struct LockedHead {
  MutexState mutex;
  std::atomic<std::uint32_t> repaired_at;
  std::uint32_t lock_kind;
};
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
//! Fills a new object's head and tail. Runs in the creator, inside Segment::Init.
void init_lock(LockedHead* head, LockTail* tail, const LockChoice& choice, const char* what);
//! The lock of an object just created (choice) or opened (choice == nullptr: from the segment,
//! opening an external lock by name). Throws: Error(errc::corrupt) for a damaged record, Error as
//! Mutex(open_only, ...) when the recorded lock cannot be opened.
LockChoice resolve_lock(const Segment& seg, LockedHead* head, const LockTail* tail,
                        const LockChoice* choice);
//! Throws Error(errc::type_mismatch) unless the object `seg` (opened by open_or_create) records
//! the same lock as `choice`.
void check_same_lock(const Segment& seg, const LockedHead* head, const LockTail* tail,
                     const LockChoice& choice);
//! Error(errc::wrong_kind) for mutex() on an object guarded by a RecursiveMutex, or the reverse.
[[noreturn]] void throw_lock_kind(const Segment& seg, bool recursive);

//! Whether the object's data may be half-updated by a holder that died (see LockedHead).
inline bool data_suspect(const MutexState* lock, const LockedHead* head) noexcept {
  return mutex_recoveries(lock) != head->repaired_at.load(std::memory_order_relaxed);
}
inline void data_repaired(const MutexState* lock, LockedHead* head) noexcept {
  head->repaired_at.store(mutex_recoveries(lock), std::memory_order_relaxed);
}

// Body of a SharedValue segment: the head (with the lock), the value on its own alignment, the
// external lock's name.
template <class T>
struct ValueBody {
  LockedHead head;
  alignas(T) unsigned char storage[sizeof(T)];
  LockTail tail;
  T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
};

// Body of a RawValue segment: the value, aligned for single-copy atomic access.
template <class T>
struct RawValueBody {
  alignas(raw_alignment_v<T>) unsigned char storage[sizeof(T)];
  T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
};

template <class Body>
SegmentLayout body_layout(Kind kind, const ElementType& element, std::uint64_t count) {
  SegmentLayout layout;
  layout.kind = kind;
  layout.element = element;
  layout.count = count;
  layout.body_size = sizeof(Body);
  layout.body_alignment = std::max<std::size_t>(alignof(Body), 64);
  return layout;
}

}  // namespace detail

template <class T>
class SharedValue {
 public:
  using value_type = T;

  //! A held lock plus access to the value. Move-only; unlocks when destroyed, which must happen in
  //! the thread that locked.
  class Guard {
   public:
    Guard(Guard&& other) noexcept
        : seg_(std::move(other.seg_)),
          lock_seg_(std::move(other.lock_seg_)),
          state_(std::exchange(other.state_, nullptr)),
          head_(other.head_),
          value_(other.value_) {}
    Guard& operator=(Guard&&) = delete;
    ~Guard() {
      if (state_ != nullptr) detail::mutex_unlock_noexcept(state_, seg_.describe());
    }
    T& operator*() const noexcept { return *value_; }
    T* operator->() const noexcept { return value_; }
    //! True when a process died holding this value's lock and the value has not been marked
    //! repaired since: it may be half-updated. Stays true across unlocks until mark_repaired().
    //! With a lock shared by several values, a death makes every one of them report it, and each
    //! is repaired on its own.
    bool previous_owner_died() const noexcept { return detail::data_suspect(state_, head_); }
    //! Effects: records that this value is consistent again (after repairing it).
    void mark_repaired() const noexcept { detail::data_repaired(state_, head_); }

   private:
    friend class SharedValue;
    Guard(const SharedValue& v)
        : seg_(v.seg_), lock_seg_(v.lock_seg_), state_(v.lock_), head_(v.head_), value_(v.value_) {}
    Segment seg_;       // keeps the mapping while the lock is held, even if the handle goes first
    Segment lock_seg_;  // and the external lock's (the kernel's robust list points into it)
    detail::MutexState* state_;
    detail::LockedHead* head_;
    T* value_;
  };

  //! Effects: an unnamed value initialised to `initial` (T{} by default), shared with children
  //! forked after this call, with its own lock.
  SharedValue() : SharedValue(T{}) {}
  explicit SharedValue(const T& initial) {
    attach(Segment::create_anonymous(layout(), initialiser(initial, {})), nullptr);
  }
  //! Effects: an unnamed value guarded by `lock`, a Mutex or RecursiveMutex of the caller's
  //! (Python's Value('i', 0, lock=lock)): several values may share one lock. The value keeps the
  //! lock alive and hands it to forked children with its handle.
  template <class Lock, class = std::enable_if_t<detail::is_robust_lock_v<Lock>>>
  SharedValue(const T& initial, const Lock& lock) {
    const detail::LockChoice c = detail::choose_lock(lock, what(nullptr), nullptr);
    attach(Segment::create_anonymous(layout(), initialiser(initial, c)), &c);
  }
  //! Effects: creates the value called `name`, initialised to `initial`, with its own lock or
  //! guarded by `lock`, which must then have been made by name (Mutex(create_only, "x")): the
  //! value records the lock's name, and processes that open the value open the lock too.
  //! Throws: Error(errc::invalid_argument) for an anonymous lock; as Segment::create.
  SharedValue(create_only_t, const Name& name, const T& initial = T{}) {
    attach(Segment::create(name, layout(), initialiser(initial, {})), nullptr);
  }
  template <class Lock, class = std::enable_if_t<detail::is_robust_lock_v<Lock>>>
  SharedValue(create_only_t, const Name& name, const T& initial, const Lock& lock) {
    const detail::LockChoice c = detail::choose_lock(lock, what(&name), &name);
    attach(Segment::create(name, layout(), initialiser(initial, c)), &c);
  }
  //! Effects: opens the value called `name`, and its lock: its own, or the external lock whose
  //! name it recorded. Throws: Error(errc::type_mismatch) when it holds another type,
  //! Error(errc::wrong_kind) when it is not a SharedValue, as Segment::open; as
  //! Mutex(open_only, ...) when its external lock no longer exists.
  SharedValue(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, Kind::value, &element), nullptr);
  }
  //! Effects: opens `name` (as open_only), or creates it initialised to `initial` (with `lock`
  //! when given). Throws: as those, and Error(errc::type_mismatch) when it exists guarded by
  //! another lock than `lock`.
  SharedValue(open_or_create_t, const Name& name, const T& initial = T{}) {
    bool created = false;
    Segment seg = Segment::open_or_create(name, layout(), initialiser(initial, {}), &created);
    attach(std::move(seg), nullptr);  // its own lock if just created, else what it records
  }
  template <class Lock, class = std::enable_if_t<detail::is_robust_lock_v<Lock>>>
  SharedValue(open_or_create_t, const Name& name, const T& initial, const Lock& lock) {
    const detail::LockChoice c = detail::choose_lock(lock, what(&name), &name);
    bool created = false;
    Segment seg = Segment::open_or_create(name, layout(), initialiser(initial, c), &created);
    if (!created) {
      seg.expect_body_size(sizeof(Body));
      auto* body = static_cast<Body*>(seg.body());
      detail::check_same_lock(seg, &body->head, &body->tail, c);
    }
    attach(std::move(seg), created ? &c : nullptr);
  }

  //! Returns: a copy of the value, taken under the lock.
  //! Throws: Error(errc::owner_died) while the value may be half-updated by a process that died
  //! holding the lock (see Guard::mark_repaired); the same goes for exchange() and update().
  T load() const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
    return *value_;
  }
  //! Effects: replaces the value under the lock (which also repairs one left half-updated).
  void store(const T& v) const {
    detail::MutexScope scope(lock_, seg_.describe());
    *value_ = v;
    detail::data_repaired(lock_, head_);
  }
  //! Effects: replaces the value under the lock. Returns: the previous value.
  T exchange(const T& v) const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
    return std::exchange(*value_, v);
  }
  //! Effects: runs f(T&) under the lock. Returns: what f returns. With a shared RecursiveMutex,
  //! f may update another value guarded by the same lock; with a shared Mutex that throws
  //! Error(errc::would_deadlock).
  template <class F>
  decltype(auto) update(F&& f) const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
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
  Mutex mutex() const {
    if (lock_->recursive != 0) detail::throw_lock_kind(seg_, true);
    return Mutex(lock_seg_ ? lock_seg_ : seg_, lock_);
  }
  //! The RecursiveMutex the value was made with. Throws: Error(errc::wrong_kind) otherwise.
  RecursiveMutex recursive_mutex() const {
    if (lock_->recursive == 0) detail::throw_lock_kind(seg_, false);
    return RecursiveMutex(lock_seg_, lock_);
  }

  const Segment& segment() const noexcept { return seg_; }

 private:
  using Body = detail::ValueBody<T>;
  static_assert((detail::check_shareable<T>(), true));

  static std::string what(const Name* name) {
    return kind_name(Kind::value) + "<" + ElementType::of<T>().name + ">" +
           (name ? " '" + name->str() + "'" : " (anonymous)");
  }
  static SegmentLayout layout() {
    return detail::body_layout<Body>(Kind::value, ElementType::of<T>(), 1);
  }
  static Segment::Init initialiser(const T& initial, detail::LockChoice choice) {
    return [initial, choice = std::move(choice)](void* p) {
      auto* body = static_cast<Body*>(p);
      detail::init_lock(&body->head, &body->tail, choice, "SharedValue");
      ::new (static_cast<void*>(body->storage)) T(initial);
    };
  }
  // `created`: the lock the object was just created with; nullptr: read it from the segment.
  void attach(Segment seg, const detail::LockChoice* created) {
    seg.expect_body_size(sizeof(Body));
    auto* body = static_cast<Body*>(seg.body());
    detail::LockChoice c = detail::resolve_lock(seg, &body->head, &body->tail, created);
    seg_ = std::move(seg);
    head_ = &body->head;
    value_ = body->value();
    lock_ = c.state;
    lock_seg_ = std::move(c.seg);
    if (!lock_seg_) seg_.track_lock_owner(&lock_->owner);
  }
  void require_consistent() const {
    if (detail::data_suspect(lock_, head_)) detail::throw_inconsistent(seg_.describe());
  }

  Segment seg_;
  Segment lock_seg_;  // the external lock's segment; empty for the value's own lock
  detail::MutexState* lock_ = nullptr;
  detail::LockedHead* head_ = nullptr;
  T* value_ = nullptr;
};

template <class T>
class RawValue {
 public:
  using value_type = T;

  RawValue() : RawValue(T{}) {}
  explicit RawValue(const T& initial) {
    attach(Segment::create_anonymous(layout(), initialiser(initial)));
  }
  RawValue(create_only_t, const Name& name, const T& initial = T{}) {
    attach(Segment::create(name, layout(), initialiser(initial)));
  }
  RawValue(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, Kind::raw_value, &element));
  }
  RawValue(open_or_create_t, const Name& name, const T& initial = T{}) {
    attach(Segment::open_or_create(name, layout(), initialiser(initial)));
  }

  //! Returns: the value (a single relaxed atomic load when T is 1, 2, 4 or 8 bytes).
  T load() const noexcept { return detail::raw_load(value_); }
  //! Effects: writes the value (a single relaxed atomic store when T is 1, 2, 4 or 8 bytes).
  void store(const T& v) const noexcept { detail::raw_store(value_, v); }
  //! The value in place, unsynchronised.
  T& get() const noexcept { return *value_; }

  const Segment& segment() const noexcept { return seg_; }

 private:
  using Body = detail::RawValueBody<T>;
  static_assert((detail::check_shareable<T>(), true));

  static SegmentLayout layout() {
    return detail::body_layout<Body>(Kind::raw_value, ElementType::of<T>(), 1);
  }
  static Segment::Init initialiser(const T& initial) {
    return [initial](void* p) {
      ::new (static_cast<void*>(static_cast<Body*>(p)->storage)) T(initial);
    };
  }
  void attach(Segment seg) {
    seg.expect_body_size(sizeof(Body));
    seg_ = std::move(seg);
    value_ = static_cast<Body*>(seg_.body())->value();
  }

  Segment seg_;
  T* value_ = nullptr;
};

}  // namespace multiproc
