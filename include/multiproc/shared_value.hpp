// multiproc/shared_value.hpp — one typed value in shared memory (Python's Value and RawValue).
//
//   mp::SharedValue<long> counter(0);            // Value('l', 0): a value plus its own robust lock
//   mp::Process p([=]() mutable { counter.update([](long& x) { x += 1; }); });
//   mp::RawValue<double> ratio(0.5);             // RawValue('d', 0.5): no lock
//
// SharedValue<T> holds a T next to a robust Mutex in one segment. load() and store() take the lock
// for the copy; update(f) runs f(T&) under it (the way to read-modify-write); lock() returns a
// guard that gives access through * and -> while it holds the lock; mutex() is that lock as a
// Mutex, for std::unique_lock or a Condition. RawValue<T> is the bare T: its load() and store()
// are single relaxed atomic accesses when T is 1, 2, 4 or 8 bytes, otherwise plain copies that a
// concurrent writer may tear.
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
// guard and call mark_repaired(), or store() a whole new value.
#pragma once

#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/segment.hpp>
#include <multiproc/typecode.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
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

// Body of a SharedValue segment: the lock, then the value on its own alignment.
template <class T>
struct ValueBody {
  MutexState mutex;
  alignas(T) unsigned char storage[sizeof(T)];
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
          state_(std::exchange(other.state_, nullptr)),
          value_(other.value_) {}
    Guard& operator=(Guard&&) = delete;
    ~Guard() {
      if (state_ != nullptr) detail::mutex_unlock_noexcept(state_, seg_.describe());
    }
    T& operator*() const noexcept { return *value_; }
    T* operator->() const noexcept { return value_; }
    //! True when a process died holding this lock and the value has not been marked repaired
    //! since: it may be half-updated. Stays true across unlocks until mark_repaired().
    bool previous_owner_died() const noexcept { return detail::mutex_inconsistent(state_); }
    //! Effects: records that the value is consistent again (after repairing it).
    void mark_repaired() const noexcept { detail::mutex_mark_repaired(state_); }

   private:
    friend class SharedValue;
    Guard(const Segment& seg, detail::MutexState* state, T* value)
        : seg_(seg), state_(state), value_(value) {}
    Segment seg_;  // keeps the mapping while the lock is held, even if the handle goes first
    detail::MutexState* state_;
    T* value_;
  };

  //! Effects: an unnamed value initialised to `initial` (T{} by default), shared with children
  //! forked after this call.
  SharedValue() : SharedValue(T{}) {}
  explicit SharedValue(const T& initial) {
    attach(Segment::create_anonymous(layout(), initialiser(initial)));
  }
  //! Effects: creates the value called `name`, initialised to `initial`.
  SharedValue(create_only_t, const Name& name, const T& initial = T{}) {
    attach(Segment::create(name, layout(), initialiser(initial)));
  }
  //! Effects: opens the value called `name`. Throws: Error(errc::type_mismatch) when it holds
  //! another type, Error(errc::wrong_kind) when it is not a SharedValue, as Segment::open.
  SharedValue(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, Kind::value, &element));
  }
  //! Effects: opens `name`, or creates it initialised to `initial`.
  SharedValue(open_or_create_t, const Name& name, const T& initial = T{}) {
    attach(Segment::open_or_create(name, layout(), initialiser(initial)));
  }

  //! Returns: a copy of the value, taken under the lock.
  //! Throws: Error(errc::owner_died) while the value may be half-updated by a process that died
  //! holding the lock (see Guard::mark_repaired); the same goes for exchange() and update().
  T load() const {
    detail::MutexScope scope(&body_->mutex, seg_.describe());
    scope.require_consistent();
    return *value_;
  }
  //! Effects: replaces the value under the lock (which also repairs one left half-updated).
  void store(const T& v) const {
    detail::MutexScope scope(&body_->mutex, seg_.describe());
    *value_ = v;
    detail::mutex_mark_repaired(&body_->mutex);
  }
  //! Effects: replaces the value under the lock. Returns: the previous value.
  T exchange(const T& v) const {
    detail::MutexScope scope(&body_->mutex, seg_.describe());
    scope.require_consistent();
    return std::exchange(*value_, v);
  }
  //! Effects: runs f(T&) under the lock. Returns: what f returns.
  template <class F>
  decltype(auto) update(F&& f) const {
    detail::MutexScope scope(&body_->mutex, seg_.describe());
    scope.require_consistent();
    return std::forward<F>(f)(*value_);
  }
  //! Effects: blocks until the lock is held. Returns: a guard giving access to the value. The
  //! guard keeps the shared memory mapped, so it may outlive this handle.
  Guard lock() const {
    detail::mutex_lock(&body_->mutex, seg_.describe());
    return Guard(seg_, &body_->mutex, value_);
  }
  //! The value's lock, as a Mutex handle (for std::unique_lock, a Condition, ...).
  Mutex mutex() const { return Mutex(seg_, &body_->mutex); }

  const Segment& segment() const noexcept { return seg_; }

 private:
  using Body = detail::ValueBody<T>;
  static_assert((detail::check_shareable<T>(), true));

  static SegmentLayout layout() {
    return detail::body_layout<Body>(Kind::value, ElementType::of<T>(), 1);
  }
  static Segment::Init initialiser(const T& initial) {
    return [initial](void* p) {
      auto* body = static_cast<Body*>(p);
      detail::mutex_init(&body->mutex, false, "SharedValue");
      ::new (static_cast<void*>(body->storage)) T(initial);
    };
  }
  void attach(Segment seg) {
    seg.expect_body_size(sizeof(Body));
    seg_ = std::move(seg);
    body_ = static_cast<Body*>(seg_.body());
    value_ = body_->value();
    seg_.track_lock_owner(&body_->mutex.owner);
  }

  Segment seg_;
  Body* body_ = nullptr;
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
