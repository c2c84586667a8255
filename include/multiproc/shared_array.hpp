// multiproc/shared_array.hpp — a fixed-size typed array in shared memory (Python's Array and
// RawArray).
//
//   mp::SharedArray<int> hist(10);               // Array('i', 10): ten zeros plus a robust lock
//   mp::SharedArray<double> xs{1.5, 2.5, 3.5};   // Array('d', [1.5, 2.5, 3.5])
//   { auto g = hist.lock(); for (int& h : g) h += 1; }
//   std::vector<int> snapshot = hist.to_vector();
//
// SharedArray<T> holds n elements of T next to a robust Mutex in one segment. operator[] and
// data() reach the elements without locking (as fast as a plain array; the caller synchronises);
// load(i) / store(i, v) / to_vector() take the lock; lock() returns a guard with operator[],
// begin/end and size that holds it. RawArray<T> has no lock at all (Python's lock=False).
// Made with a Mutex or RecursiveMutex of the caller's — SharedArray<int>(10, m), Python's
// Array('i', 10, lock=m) — it is guarded by that lock instead, as SharedValue describes (named
// arrays need a named lock, which openers open by the name the array records).
//
// As with std::vector, braces pick the list constructor: SharedArray<int>{5} is one element 5,
// SharedArray<int>(5) is five zeros. The size is fixed at creation; opening a named array takes
// its size from the segment.
//
// T must be trivially copyable and not a pointer. Handles are copyable and their methods const;
// copies share the elements. Crashes: as SharedValue — a holder that dies releases the lock to the
// next locker. An array is RecoveryPolicy::strict by default whatever T is (an update of several
// elements can be half done): until someone calls Guard::mark_repaired(), guards report
// previous_owner_died() and load(i), store(i, v) and to_vector() throw Error(errc::owner_died);
// with a shared lock, every object guarded by it does, each until it is repaired itself. Made with
// RecoveryPolicy::recover (elements of 1, 2, 4 or 8 bytes that each stand alone, e.g. a
// histogram), it carries on instead and counts the death in recoveries() (recovery_policy.hpp).
#pragma once

#include <multiproc/detail/locked_object.hpp>
#include <multiproc/detail/shared_object.hpp>
#include <multiproc/shared_value.hpp>

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace multiproc {
namespace detail {

// Body of a SharedArray segment: its LockedHead (see locked_object.hpp), the elements, its
// LockTail (the external lock's name).
template <class T>
using LockedArrayLayout = ArrayLayout<T, sizeof(LockedHead), sizeof(LockTail), alignof(LockedHead)>;

}  // namespace detail

template <class T>
class SharedArray
    : public detail::ArrayHandle<T, detail::LockedArrayLayout<T>, detail::LockedHandle> {
  using Layout = detail::LockedArrayLayout<T>;
  using Base = detail::ArrayHandle<T, Layout, detail::LockedHandle>;
  template <class Lock>
  using if_lock = std::enable_if_t<detail::is_robust_lock_v<Lock>>;
  struct Make {};  // tags the private constructors

 public:
  using value_type = T;

  //! A held lock plus access to the elements (previous_owner_died(), mark_repaired(): see
  //! detail::LockedGuard). Move-only; unlocks when destroyed, which must happen in the thread
  //! that locked. Keeps the shared memory mapped, so it may outlive the handle.
  class Guard : public detail::LockedGuard {
   public:
    Guard(Guard&&) noexcept = default;
    T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T* begin() const noexcept { return data_; }
    T* end() const noexcept { return data_ + size_; }
    T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

   private:
    friend class SharedArray;
    explicit Guard(const SharedArray& a) : LockedGuard(a), data_(a.data_), size_(a.size_) {}
    T* data_;
    std::size_t size_;
  };

  //! Effects: an unnamed array of n zero-filled elements, shared with children forked after this,
  //! with its own lock — or guarded by `lock`, a Mutex or RecursiveMutex of the caller's (Python's
  //! Array('i', n, lock=lock)), which several values and arrays may share.
  //! Throws: Error(errc::invalid_argument) when n elements cannot fit in memory.
  explicit SharedArray(std::size_t n) : SharedArray(Make{}, {}, n, {}, nullptr) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(std::size_t n, const Lock& lock) : SharedArray(Make{}, {}, n, {}, &lock) {}
  //! Effects: as above, with the recovery policy `policy` instead of strict (recovery_policy.hpp:
  //! recover when every element stands alone, e.g. a histogram; the n-element and list forms
  //! take one last). Throws: Error(errc::invalid_argument) for recover and a T that is not 1, 2,
  //! 4 or 8 bytes.
  SharedArray(std::size_t n, RecoveryPolicy policy)
      : SharedArray(Make{}, {}, n, {}, nullptr, policy) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(std::size_t n, const Lock& lock, RecoveryPolicy policy)
      : SharedArray(Make{}, {}, n, {}, &lock, policy) {}
  SharedArray(std::initializer_list<T> values, RecoveryPolicy policy)
      : SharedArray(Make{}, {}, detail::pack_elements<T>(values.begin(), values.end()), nullptr,
                    policy) {}
  //! Effects: an unnamed array holding `values`, or the elements of [first, last) (converted with
  //! a range check when they are of another arithmetic type: Error(errc::invalid_argument)).
  SharedArray(std::initializer_list<T> values)
      : SharedArray(Make{}, {}, detail::pack_elements<T>(values.begin(), values.end()),
                    nullptr) {}
  explicit SharedArray(const std::vector<T>& values)
      : SharedArray(Make{}, {}, detail::pack_elements<T>(values.begin(), values.end()),
                    nullptr) {}
  template <class It, class = detail::if_iterator<It>>
  SharedArray(It first, It last)
      : SharedArray(Make{}, {}, detail::pack_elements<T>(first, last), nullptr) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(std::initializer_list<T> values, const Lock& lock)
      : SharedArray(Make{}, {}, detail::pack_elements<T>(values.begin(), values.end()),
                    &lock) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(const std::vector<T>& values, const Lock& lock)
      : SharedArray(Make{}, {}, detail::pack_elements<T>(values.begin(), values.end()),
                    &lock) {}
  template <class It, class Lock, class = detail::if_iterator<It>, class = if_lock<Lock>>
  SharedArray(It first, It last, const Lock& lock)
      : SharedArray(Make{}, {}, detail::pack_elements<T>(first, last), &lock) {}

  //! Effects: creates the array called `name` with n zero-filled elements, or with `values`; with
  //! its own lock, or guarded by `lock`, which must have been made by name (openers open it).
  //! Throws: Error(errc::invalid_argument) for an anonymous lock; as Segment::create.
  SharedArray(create_only_t t, const Name& name, std::size_t n)
      : SharedArray(Make{}, {t, name}, n, {}, nullptr) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(create_only_t t, const Name& name, std::size_t n, const Lock& lock)
      : SharedArray(Make{}, {t, name}, n, {}, &lock) {}
  SharedArray(create_only_t t, const Name& name, std::size_t n, RecoveryPolicy policy)
      : SharedArray(Make{}, {t, name}, n, {}, nullptr, policy) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(create_only_t t, const Name& name, std::size_t n, const Lock& lock,
              RecoveryPolicy policy)
      : SharedArray(Make{}, {t, name}, n, {}, &lock, policy) {}
  SharedArray(create_only_t t, const Name& name, std::initializer_list<T> values,
              RecoveryPolicy policy)
      : SharedArray(Make{}, {t, name}, detail::pack_elements<T>(values.begin(), values.end()),
                    nullptr, policy) {}
  SharedArray(create_only_t t, const Name& name, std::initializer_list<T> values)
      : SharedArray(Make{}, {t, name}, detail::pack_elements<T>(values.begin(), values.end()),
                    nullptr) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(create_only_t t, const Name& name, std::initializer_list<T> values, const Lock& lock)
      : SharedArray(Make{}, {t, name}, detail::pack_elements<T>(values.begin(), values.end()),
                    &lock) {}
  template <class It, class = detail::if_iterator<It>>
  SharedArray(create_only_t t, const Name& name, It first, It last)
      : SharedArray(Make{}, {t, name}, detail::pack_elements<T>(first, last), nullptr) {}
  //! Effects: opens the array called `name` and its lock (its own, or the external lock whose
  //! name it recorded); its size comes from the segment.
  //! Throws: Error(errc::type_mismatch) for another element type, as Segment::open otherwise; as
  //! Mutex(open_only, ...) when its external lock no longer exists.
  SharedArray(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, Kind::array, &element), nullptr, false, {});
  }
  //! Effects: opens `name` (which must have n elements, and be guarded by `lock` when given), or
  //! creates it with n zeros. Throws: as open_only and create_only; Error(errc::type_mismatch)
  //! when it exists guarded by another lock.
  SharedArray(open_or_create_t t, const Name& name, std::size_t n)
      : SharedArray(Make{}, {t, name}, n, {}, nullptr) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(open_or_create_t t, const Name& name, std::size_t n, const Lock& lock)
      : SharedArray(Make{}, {t, name}, n, {}, &lock) {}
  //! As above with `policy`: Error(errc::type_mismatch) when it exists with another policy.
  SharedArray(open_or_create_t t, const Name& name, std::size_t n, RecoveryPolicy policy)
      : SharedArray(Make{}, {t, name}, n, {}, nullptr, policy) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(open_or_create_t t, const Name& name, std::size_t n, const Lock& lock,
              RecoveryPolicy policy)
      : SharedArray(Make{}, {t, name}, n, {}, &lock, policy) {}

  //! Unlocked access to element i (no bounds check; see at()).
  T& operator[](std::size_t i) const noexcept { return this->data_[i]; }
  //! Unlocked access with a bounds check. Throws: Error(errc::invalid_argument) when i >= size().
  T& at(std::size_t i) const { return *this->element(i); }
  //! The elements, unlocked.
  T* data() const noexcept { return this->data_; }

  //! Returns: element i, read under the lock. Throws: as at(); under RecoveryPolicy::strict,
  //! Error(errc::owner_died) while the elements may be half-updated by a process that died
  //! holding the lock (see Guard::mark_repaired) — the same goes for store(i, v) and
  //! to_vector(). Under recover they recover (see recoveries()).
  T load(std::size_t i) const {
    detail::MutexScope scope(this->lock_, this->seg_.describe());
    this->require_consistent();
    return detail::read_value(this->element(i));
  }
  //! Effects: writes element i under the lock. Throws: as load().
  void store(std::size_t i, const T& v) const {
    detail::MutexScope scope(this->lock_, this->seg_.describe());
    this->require_consistent();
    detail::raw_store(this->element(i), v);  // one atomic store for a T of 1, 2, 4 or 8 bytes
  }
  //! Returns: a copy of all elements, taken under the lock. Throws: as load().
  std::vector<T> to_vector() const {
    detail::MutexScope scope(this->lock_, this->seg_.describe());
    this->require_consistent();
    if constexpr (std::is_same_v<T, bool>) {  // each byte read as a bool (detail::read_value)
      std::vector<T> out(this->size_);
      for (std::size_t i = 0; i < this->size_; ++i) out[i] = detail::read_value(this->data_ + i);
      return out;
    } else {
      return std::vector<T>(this->data_, this->data_ + this->size_);
    }
  }
  //! Effects: blocks until the lock is held. Returns: a guard giving access to the elements. The
  //! guard keeps the shared memory mapped, so it may outlive this handle.
  Guard lock() const {
    detail::mutex_lock(this->lock_, this->seg_.describe());
    return Guard(*this);
  }
  //! The array's lock as a Mutex handle: its own, or the caller's Mutex it was made with.
  //! Throws: Error(errc::wrong_kind) when it is guarded by a RecursiveMutex.
  Mutex mutex() const { return Mutex(this->lock_segment(false), this->lock_); }
  //! The RecursiveMutex the array was made with. Throws: Error(errc::wrong_kind) otherwise.
  RecursiveMutex recursive_mutex() const {
    return RecursiveMutex(this->lock_segment(true), this->lock_);
  }
  //! The policy its creator chose (recovery_policy.hpp).
  RecoveryPolicy recovery_policy() const noexcept { return this->policy_; }
  //! Returns: how many times a process died holding its lock and the array was recovered from
  //! silently (RecoveryPolicy::recover; always 0 under strict), counted by whichever process took
  //! the lock next, shared by every process (a snapshot; wraps at 2^32).
  std::uint32_t recoveries() const noexcept {
    // relaxed: a snapshot; the increments are made under the lock
    return this->head_->recoveries.load(std::memory_order_relaxed);
  }

 private:
  // The one constructor behind the others but open_only: n zeros, or the packed elements
  // `bytes` (n = their count); `lock`: the caller's lock, nullptr for its own. (bytes is taken by
  // rvalue reference so that bytes.size() / sizeof(T), computed in the same call, sees it whole.)
  SharedArray(Make, const detail::Placement& where, std::string bytes,
              const detail::RobustLock* lock, std::optional<RecoveryPolicy> asked = {})
      : SharedArray(Make{}, where, bytes.size() / sizeof(T), std::move(bytes), lock, asked) {}
  SharedArray(Make, const detail::Placement& where, std::size_t n, std::string&& bytes,
              const detail::RobustLock* lock, std::optional<RecoveryPolicy> asked = {}) {
    std::optional<detail::LockChoice> choice;
    if (lock != nullptr) {
      choice = detail::choose_lock(*lock, detail::describe_object<T>(Kind::array, where.name()),
                                   where.name());
    }
    const detail::LockChoice* c = choice ? &*choice : nullptr;
    const RecoveryPolicy policy =
        detail::choose_policy(asked, false, detail::raw_atomic_v<T>, c,
                              detail::describe_object<T>(Kind::array, where.name()));
    bool created = true;
    Segment seg = this->make(
        Kind::array, where, n, std::move(bytes),
        [c, policy](void* body, char* tail) {
          detail::init_lock(static_cast<detail::LockedHead*>(body),
                            reinterpret_cast<detail::LockTail*>(tail), c, policy,
                            "SharedArray");
        },
        &created);
    attach(std::move(seg), c, created, asked);
  }
  void attach(Segment seg, const detail::LockChoice* lock, bool created,
              std::optional<RecoveryPolicy> asked) {
    Base::attach(std::move(seg));
    void* body = this->seg_.body();
    this->attach_lock(static_cast<detail::LockedHead*>(body),
                      reinterpret_cast<const detail::LockTail*>(Layout::tail(body, this->size_)),
                      lock, created, asked, detail::raw_atomic_v<T>);
  }
};

template <class T>
class RawArray : public detail::ArrayHandle<T> {
  using Base = detail::ArrayHandle<T>;

 public:
  using value_type = T;

  explicit RawArray(std::size_t n) : RawArray(detail::Placement(), n, {}) {}
  RawArray(std::initializer_list<T> values)
      : RawArray(detail::Placement(), detail::pack_elements<T>(values.begin(), values.end())) {}
  explicit RawArray(const std::vector<T>& values)
      : RawArray(detail::Placement(), detail::pack_elements<T>(values.begin(), values.end())) {}
  template <class It, class = detail::if_iterator<It>>
  RawArray(It first, It last) : RawArray(detail::Placement(), detail::pack_elements<T>(first, last)) {}
  RawArray(create_only_t t, const Name& name, std::size_t n)
      : RawArray(detail::Placement(t, name), n, {}) {}
  RawArray(create_only_t t, const Name& name, std::initializer_list<T> values)
      : RawArray(detail::Placement(t, name), detail::pack_elements<T>(values.begin(), values.end())) {}
  template <class It, class = detail::if_iterator<It>>
  RawArray(create_only_t t, const Name& name, It first, It last)
      : RawArray(detail::Placement(t, name), detail::pack_elements<T>(first, last)) {}
  RawArray(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    this->attach(Segment::open(name, Kind::raw_array, &element));
  }
  RawArray(open_or_create_t t, const Name& name, std::size_t n)
      : RawArray(detail::Placement(t, name), n, {}) {}

  T& operator[](std::size_t i) const noexcept { return this->data_[i]; }
  T& at(std::size_t i) const { return *this->element(i); }
  T* data() const noexcept { return this->data_; }
  T* begin() const noexcept { return this->data_; }
  T* end() const noexcept { return this->data_ + this->size_; }
  //! Returns: a copy of all elements (unsynchronised).
  std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }

 private:
  // The one constructor behind the others but open_only: n zeros, or the packed elements.
  RawArray(const detail::Placement& where, std::size_t n, std::string&& bytes) {
    this->attach(this->make(Kind::raw_array, where, n, std::move(bytes), [](void*, char*) {},
                            nullptr));
  }
  RawArray(const detail::Placement& where, std::string bytes)
      : RawArray(where, bytes.size() / sizeof(T), std::move(bytes)) {}
};

}  // namespace multiproc
