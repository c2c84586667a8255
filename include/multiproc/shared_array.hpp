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
// next locker; until someone calls Guard::mark_repaired(), guards report previous_owner_died() and
// load(i), store(i, v) and to_vector() throw Error(errc::owner_died); with a shared lock, every
// object guarded by it does, each until it is repaired itself.
#pragma once

#include <multiproc/shared_value.hpp>

#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

namespace multiproc {
namespace detail {

// Body of an array segment: for a SharedArray the LockedHead (its lock, see shared_value.hpp),
// then `count` elements from `data_offset`, then the LockTail (the external lock's name); for a
// RawArray only the elements.
template <class T, bool Locked>
struct ArrayLayout {
  static constexpr std::size_t head_size = Locked ? sizeof(LockedHead) : 0;
  static constexpr std::size_t tail_size = Locked ? sizeof(LockTail) : 0;
  static constexpr std::size_t data_offset = (head_size + alignof(T) - 1) / alignof(T) * alignof(T);

  static std::size_t body_size(std::size_t count, const std::string& what) {
    if (count > (std::numeric_limits<std::size_t>::max() - data_offset - tail_size) / sizeof(T)) {
      throw Error(errc::invalid_argument,
                  what + ": " + std::to_string(count) + " elements of " +
                      std::to_string(sizeof(T)) + " bytes do not fit in memory");
    }
    return data_offset + count * sizeof(T) + tail_size;
  }
  static SegmentLayout layout(Kind kind, std::size_t count, const std::string& what) {
    SegmentLayout l;
    l.kind = kind;
    l.element = ElementType::of<T>();
    l.count = count;
    l.body_size = body_size(count, what);
    l.body_alignment = std::max<std::size_t>({alignof(T), Locked ? alignof(LockedHead) : 1, 64});
    return l;
  }
  static T* data(void* body) noexcept {
    return std::launder(reinterpret_cast<T*>(static_cast<char*>(body) + data_offset));
  }
  static LockTail* tail(void* body, std::size_t count) noexcept {
    return reinterpret_cast<LockTail*>(static_cast<char*>(body) + data_offset + count * sizeof(T));
  }
};

// The initial elements of an array, as bytes (T is trivially copyable; this also serves bool,
// which std::vector cannot hand out as a pointer). Elements of another arithmetic type are
// converted with a range check (detail::cast_checked): a double beyond float's range or a NaN
// into an integer array is an Error, not undefined behaviour.
template <class T, class It>
std::string pack_elements(It first, It last) {
  using V = std::decay_t<decltype(*first)>;
  std::string bytes;
  std::size_t i = 0;
  for (; first != last; ++first, ++i) {
    const T v = [&]() -> T {
      if constexpr (std::is_arithmetic_v<T> && std::is_arithmetic_v<V> && !std::is_same_v<T, V>) {
        return cast_checked<T>(static_cast<V>(*first), "multiproc: SharedArray/RawArray<" +
                                                          ElementType::of<T>().name +
                                                          ">: element " + std::to_string(i));
      } else {
        return static_cast<T>(*first);
      }
    }();
    bytes.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  return bytes;
}

// `lock`: a SharedArray's (nullptr for a RawArray); `data_size`: count * sizeof(T).
inline Segment::Init fill_array(const LockChoice* lock, std::size_t data_offset,
                                std::size_t data_size, std::string bytes) {
  const bool locked = lock != nullptr;
  return [locked, choice = locked ? *lock : LockChoice{}, data_offset, data_size,
          bytes = std::move(bytes)](void* body) {
    char* b = static_cast<char*>(body);
    if (locked) {
      init_lock(static_cast<LockedHead*>(body),
                reinterpret_cast<LockTail*>(b + data_offset + data_size), choice, "SharedArray");
    }
    // The body is zero-filled already: a size-only array needs no writes (and so no pages).
    if (!bytes.empty()) std::memcpy(b + data_offset, bytes.data(), bytes.size());
  };
}

template <class It>
using if_iterator = typename std::iterator_traits<It>::iterator_category;

template <class T>
std::string array_what(Kind kind, const Name* name) {
  return kind_name(kind) + "<" + ElementType::of<T>().name + ">" +
         (name ? " '" + name->str() + "'" : " (anonymous)");
}

[[noreturn]] void throw_index(const Segment& seg, std::size_t i, std::size_t n);

}  // namespace detail

template <class T>
class SharedArray {
  using Layout = detail::ArrayLayout<T, true>;
  template <class Lock>
  using if_lock = std::enable_if_t<detail::is_robust_lock_v<Lock>>;

 public:
  using value_type = T;

  //! A held lock plus access to the elements. Move-only; unlocks when destroyed, which must happen
  //! in the thread that locked.
  class Guard {
   public:
    Guard(Guard&& other) noexcept
        : seg_(std::move(other.seg_)),
          lock_seg_(std::move(other.lock_seg_)),
          state_(std::exchange(other.state_, nullptr)),
          head_(other.head_),
          data_(other.data_),
          size_(other.size_) {}
    Guard& operator=(Guard&&) = delete;
    ~Guard() {
      if (state_ != nullptr) detail::mutex_unlock_noexcept(state_, seg_.describe());
    }
    T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T* begin() const noexcept { return data_; }
    T* end() const noexcept { return data_ + size_; }
    T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    //! True when a process died holding this array's lock and the elements have not been marked
    //! repaired since: they may be half-updated. Stays true across unlocks until mark_repaired().
    //! With a lock shared by several objects, each reports the death and is repaired on its own.
    bool previous_owner_died() const noexcept { return detail::data_suspect(state_, head_); }
    //! Effects: records that the elements are consistent again (after repairing them).
    void mark_repaired() const noexcept { detail::data_repaired(state_, head_); }

   private:
    friend class SharedArray;
    explicit Guard(const SharedArray& a)
        : seg_(a.seg_), lock_seg_(a.lock_seg_), state_(a.lock_), head_(a.head_), data_(a.data_),
          size_(a.size_) {}
    Segment seg_;       // keeps the mapping while the lock is held, even if the handle goes first
    Segment lock_seg_;  // and the external lock's (the kernel's robust list points into it)
    detail::MutexState* state_;
    detail::LockedHead* head_;
    T* data_;
    std::size_t size_;
  };

  //! Effects: an unnamed array of n zero-filled elements, shared with children forked after this,
  //! with its own lock — or guarded by `lock`, a Mutex or RecursiveMutex of the caller's (Python's
  //! Array('i', n, lock=lock)), which several values and arrays may share.
  //! Throws: Error(errc::invalid_argument) when n elements cannot fit in memory.
  explicit SharedArray(std::size_t n) : SharedArray(n, nullptr) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(std::size_t n, const Lock& lock) : SharedArray(n, choose(lock, nullptr)) {}
  //! Effects: an unnamed array holding `values`, or the elements of [first, last) (converted with
  //! a range check when they are of another arithmetic type: Error(errc::invalid_argument)).
  SharedArray(std::initializer_list<T> values)
      : SharedArray(detail::pack_elements<T>(values.begin(), values.end()), nullptr) {}
  explicit SharedArray(const std::vector<T>& values)
      : SharedArray(detail::pack_elements<T>(values.begin(), values.end()), nullptr) {}
  template <class It, class = detail::if_iterator<It>>
  SharedArray(It first, It last) : SharedArray(detail::pack_elements<T>(first, last), nullptr) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(std::initializer_list<T> values, const Lock& lock)
      : SharedArray(detail::pack_elements<T>(values.begin(), values.end()), choose(lock, nullptr)) {}
  template <class Lock, class = if_lock<Lock>>
  SharedArray(const std::vector<T>& values, const Lock& lock)
      : SharedArray(detail::pack_elements<T>(values.begin(), values.end()), choose(lock, nullptr)) {}
  template <class It, class Lock, class = detail::if_iterator<It>, class = if_lock<Lock>>
  SharedArray(It first, It last, const Lock& lock)
      : SharedArray(detail::pack_elements<T>(first, last), choose(lock, nullptr)) {}

  //! Effects: creates the array called `name` with n zero-filled elements, or with `values`; with
  //! its own lock, or guarded by `lock`, which must have been made by name (openers open it).
  //! Throws: Error(errc::invalid_argument) for an anonymous lock; as Segment::create.
  SharedArray(create_only_t, const Name& name, std::size_t n) {
    create(&name, n, {}, nullptr);
  }
  template <class Lock, class = if_lock<Lock>>
  SharedArray(create_only_t, const Name& name, std::size_t n, const Lock& lock) {
    const detail::LockChoice c = choose(lock, &name);
    create(&name, n, {}, &c);
  }
  SharedArray(create_only_t, const Name& name, std::initializer_list<T> values) {
    create(&name, values.size(), detail::pack_elements<T>(values.begin(), values.end()), nullptr);
  }
  template <class Lock, class = if_lock<Lock>>
  SharedArray(create_only_t, const Name& name, std::initializer_list<T> values, const Lock& lock) {
    const detail::LockChoice c = choose(lock, &name);
    create(&name, values.size(), detail::pack_elements<T>(values.begin(), values.end()), &c);
  }
  template <class It, class = detail::if_iterator<It>>
  SharedArray(create_only_t, const Name& name, It first, It last) {
    std::string bytes = detail::pack_elements<T>(first, last);
    create(&name, bytes.size() / sizeof(T), std::move(bytes), nullptr);
  }
  //! Effects: opens the array called `name` and its lock (its own, or the external lock whose
  //! name it recorded); its size comes from the segment.
  //! Throws: Error(errc::type_mismatch) for another element type, as Segment::open otherwise; as
  //! Mutex(open_only, ...) when its external lock no longer exists.
  SharedArray(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, Kind::array, &element), nullptr);
  }
  //! Effects: opens `name` (which must have n elements, and be guarded by `lock` when given), or
  //! creates it with n zeros. Throws: as open_only and create_only; Error(errc::type_mismatch)
  //! when it exists guarded by another lock.
  SharedArray(open_or_create_t, const Name& name, std::size_t n) {
    attach(Segment::open_or_create(name, layout(n, &name),
                                   detail::fill_array(&own_, Layout::data_offset, n * sizeof(T), {})),
           nullptr);
  }
  template <class Lock, class = if_lock<Lock>>
  SharedArray(open_or_create_t, const Name& name, std::size_t n, const Lock& lock) {
    const detail::LockChoice c = choose(lock, &name);
    bool created = false;
    Segment seg = Segment::open_or_create(
        name, layout(n, &name), detail::fill_array(&c, Layout::data_offset, n * sizeof(T), {}),
        &created);
    if (!created) {
      seg.expect_body_size(Layout::body_size(seg.count(), seg.describe()));
      detail::check_same_lock(seg, static_cast<detail::LockedHead*>(seg.body()),
                              Layout::tail(seg.body(), seg.count()), c);
    }
    attach(std::move(seg), created ? &c : nullptr);
  }

  std::size_t size() const noexcept { return size_; }
  //! Unlocked access to element i (no bounds check; see at()).
  T& operator[](std::size_t i) const noexcept { return data_[i]; }
  //! Unlocked access with a bounds check. Throws: Error(errc::invalid_argument) when i >= size().
  T& at(std::size_t i) const {
    if (i >= size_) detail::throw_index(seg_, i, size_);
    return data_[i];
  }
  //! The elements, unlocked.
  T* data() const noexcept { return data_; }

  //! Returns: element i, read under the lock. Throws: as at(); Error(errc::owner_died) while the
  //! elements may be half-updated by a process that died holding the lock (see
  //! Guard::mark_repaired) — the same goes for store(i, v) and to_vector().
  T load(std::size_t i) const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
    return at(i);
  }
  //! Effects: writes element i under the lock. Throws: as load().
  void store(std::size_t i, const T& v) const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
    at(i) = v;
  }
  //! Returns: a copy of all elements, taken under the lock. Throws: as load().
  std::vector<T> to_vector() const {
    detail::MutexScope scope(lock_, seg_.describe());
    require_consistent();
    return std::vector<T>(data_, data_ + size_);
  }
  //! Effects: blocks until the lock is held. Returns: a guard giving access to the elements. The
  //! guard keeps the shared memory mapped, so it may outlive this handle.
  Guard lock() const {
    detail::mutex_lock(lock_, seg_.describe());
    return Guard(*this);
  }
  //! The array's lock as a Mutex handle: its own, or the caller's Mutex it was made with.
  //! Throws: Error(errc::wrong_kind) when it is guarded by a RecursiveMutex.
  Mutex mutex() const {
    if (lock_->recursive != 0) detail::throw_lock_kind(seg_, true);
    return Mutex(lock_seg_ ? lock_seg_ : seg_, lock_);
  }
  //! The RecursiveMutex the array was made with. Throws: Error(errc::wrong_kind) otherwise.
  RecursiveMutex recursive_mutex() const {
    if (lock_->recursive == 0) detail::throw_lock_kind(seg_, false);
    return RecursiveMutex(lock_seg_, lock_);
  }

  const Segment& segment() const noexcept { return seg_; }

 private:
  static_assert((detail::check_shareable<T>(), true));
  static inline const detail::LockChoice own_{};

  static SegmentLayout layout(std::size_t n, const Name* name) {
    return Layout::layout(Kind::array, n, detail::array_what<T>(Kind::array, name));
  }
  template <class Lock>
  static detail::LockChoice choose(const Lock& lock, const Name* name) {
    return detail::choose_lock(lock, detail::array_what<T>(Kind::array, name), name);
  }
  // Anonymous, n zeros or the packed elements; `lock`: nullptr for its own.
  SharedArray(std::size_t n, const detail::LockChoice* lock) { create(nullptr, n, {}, lock); }
  SharedArray(std::size_t n, detail::LockChoice lock) { create(nullptr, n, {}, &lock); }
  SharedArray(std::string bytes, const detail::LockChoice* lock) {
    const std::size_t n = bytes.size() / sizeof(T);
    create(nullptr, n, std::move(bytes), lock);
  }
  SharedArray(std::string bytes, detail::LockChoice lock) {
    const std::size_t n = bytes.size() / sizeof(T);
    create(nullptr, n, std::move(bytes), &lock);
  }
  void create(const Name* name, std::size_t n, std::string bytes, const detail::LockChoice* lock) {
    const SegmentLayout l = layout(n, name);
    Segment::Init init =
        detail::fill_array(lock ? lock : &own_, Layout::data_offset, n * sizeof(T), std::move(bytes));
    attach(name ? Segment::create(*name, l, init) : Segment::create_anonymous(l, init), lock);
  }
  // `created`: the lock the array was just created with; nullptr: read it from the segment.
  void attach(Segment seg, const detail::LockChoice* created) {
    seg.expect_body_size(Layout::body_size(seg.count(), seg.describe()));
    auto* head = static_cast<detail::LockedHead*>(seg.body());
    detail::LockChoice c =
        detail::resolve_lock(seg, head, Layout::tail(seg.body(), seg.count()), created);
    seg_ = std::move(seg);
    head_ = head;
    lock_ = c.state;
    lock_seg_ = std::move(c.seg);
    if (!lock_seg_) seg_.track_lock_owner(&lock_->owner);
    data_ = Layout::data(seg_.body());
    size_ = static_cast<std::size_t>(seg_.count());
  }
  void require_consistent() const {
    if (detail::data_suspect(lock_, head_)) detail::throw_inconsistent(seg_.describe());
  }

  Segment seg_;
  Segment lock_seg_;  // the external lock's segment; empty for the array's own lock
  detail::MutexState* lock_ = nullptr;
  detail::LockedHead* head_ = nullptr;
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

template <class T>
class RawArray {
  using Layout = detail::ArrayLayout<T, false>;

 public:
  using value_type = T;

  explicit RawArray(std::size_t n) {
    attach(Segment::create_anonymous(
        Layout::layout(Kind::raw_array, n, detail::array_what<T>(Kind::raw_array, nullptr)),
        detail::fill_array(nullptr, Layout::data_offset, 0, {})));
  }
  RawArray(std::initializer_list<T> values)
      : RawArray(detail::pack_elements<T>(values.begin(), values.end())) {}
  explicit RawArray(const std::vector<T>& values)
      : RawArray(detail::pack_elements<T>(values.begin(), values.end())) {}
  template <class It, class = detail::if_iterator<It>>
  RawArray(It first, It last) : RawArray(detail::pack_elements<T>(first, last)) {}
  RawArray(create_only_t, const Name& name, std::size_t n) {
    attach(Segment::create(
        name, Layout::layout(Kind::raw_array, n, detail::array_what<T>(Kind::raw_array, &name)),
        detail::fill_array(nullptr, Layout::data_offset, 0, {})));
  }
  RawArray(create_only_t, const Name& name, std::initializer_list<T> values)
      : RawArray(name, detail::pack_elements<T>(values.begin(), values.end())) {}
  template <class It, class = detail::if_iterator<It>>
  RawArray(create_only_t, const Name& name, It first, It last)
      : RawArray(name, detail::pack_elements<T>(first, last)) {}
  RawArray(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    attach(Segment::open(name, Kind::raw_array, &element));
  }
  RawArray(open_or_create_t, const Name& name, std::size_t n) {
    attach(Segment::open_or_create(
        name, Layout::layout(Kind::raw_array, n, detail::array_what<T>(Kind::raw_array, &name)),
        detail::fill_array(nullptr, Layout::data_offset, 0, {})));
  }

  std::size_t size() const noexcept { return size_; }
  T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T& at(std::size_t i) const {
    if (i >= size_) detail::throw_index(seg_, i, size_);
    return data_[i];
  }
  T* data() const noexcept { return data_; }
  T* begin() const noexcept { return data_; }
  T* end() const noexcept { return data_ + size_; }
  //! Returns: a copy of all elements (unsynchronised).
  std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }

  const Segment& segment() const noexcept { return seg_; }

 private:
  static_assert((detail::check_shareable<T>(), true));

  explicit RawArray(std::string bytes) {
    const std::size_t n = bytes.size() / sizeof(T);
    attach(Segment::create_anonymous(
        Layout::layout(Kind::raw_array, n, detail::array_what<T>(Kind::raw_array, nullptr)),
        detail::fill_array(nullptr, Layout::data_offset, 0, std::move(bytes))));
  }
  RawArray(const Name& name, std::string bytes) {
    const std::size_t n = bytes.size() / sizeof(T);
    attach(Segment::create(
        name, Layout::layout(Kind::raw_array, n, detail::array_what<T>(Kind::raw_array, &name)),
        detail::fill_array(nullptr, Layout::data_offset, 0, std::move(bytes))));
  }
  void attach(Segment seg) {
    seg.expect_body_size(Layout::body_size(seg.count(), seg.describe()));
    seg_ = std::move(seg);
    data_ = Layout::data(seg_.body());
    size_ = static_cast<std::size_t>(seg_.count());
  }

  Segment seg_;
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace multiproc
