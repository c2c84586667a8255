// multiproc/shared_memory.hpp — a raw block of shared bytes (Python's shared_memory.SharedMemory)
// and a fixed-size typed list in one (Python's shared_memory.ShareableList).
//
//   mp::SharedMemory block(mp::create_only, "frames", 64 << 20);   // 64 MiB of zeros
//   std::memcpy(block.data(), image, n);
//   mp::SharedMemory seen(mp::open_only, "frames");                // elsewhere; size from the segment
//   mp::ShareableList<double> xs{1.5, 2.5};                        // ShareableList([1.5, 2.5])
//   xs[1] = 4.0; double y = xs[0]; xs.index(4.0) == 1;
//
// Both live in one Segment each (see segment.hpp): anonymous ones are shared with children forked
// after their creation, named ones are opened by unrelated processes; opening checks the kind (a
// Queue's name opened as SharedMemory is Error(errc::wrong_kind)) and, for a list, the element type.
// Handles are copyable; copies share one mapping.
//
// How Python's lifetime calls map (names follow multiproc's rule, as for every other primitive):
// - Python's block persists until someone calls unlink(). Here the creating process's last handle
//   (destroyed, or close()d) removes the name, so a C++ user need not call unlink(); create with
//   multiproc::persistent(name) for Python's behaviour (the name stays until unlink()/remove()).
// - close() releases this handle (Python: unmaps it); the memory stays mapped while other copies of
//   the handle in this process exist, and in other processes while they have it open. After
//   close(), data() and buf() throw Error(errc::bad_state); size() and name() still answer.
// - unlink() removes the name early, from any process (as in Python, not only the creator's); the
//   block stays usable by everyone who has it open and is freed when the last of them lets go.
//   unlink() only ever removes this object, never a newer one created under the same name.
//
// No locking, as in Python: concurrent writers of the same bytes race. ShareableList<T> reads and
// writes each element with one relaxed single-copy atomic access when T is 1, 2, 4 or 8 bytes (no
// torn values, but no ordering either: publish with an Event, Barrier, Mutex or Queue), and with a
// plain copy that a concurrent writer may tear otherwise. ShareableList<std::string> holds strings
// of a width fixed at creation (Python's str items), with no atomicity at all.
//
// Crashes: nothing here can be left locked. A process killed while writing leaves the bytes it had
// written (a larger-than-8-byte list element may be half-written). A creator killed before
// releasing its handles leaves the name behind: it stays usable by name, and the next create_only
// of that name reclaims it (unless persistent).
#pragma once

#include <multiproc/detail/shared_object.hpp>
#include <multiproc/error.hpp>
#include <multiproc/segment.hpp>

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace multiproc {

template <class T>
class ShareableList;

//! A block of bytes in shared memory, zero-filled on creation.
class SharedMemory {
 public:
  //! A pointer and a size: the block's bytes, like Python's `.buf`. Valid while the block is
  //! mapped in this process (a handle that is not closed, or a copy of it, exists).
  class Bytes {
   public:
    Bytes(std::byte* data, std::size_t size) noexcept : data_(data), size_(size) {}
    std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    std::byte* begin() const noexcept { return data_; }
    std::byte* end() const noexcept { return data_ + size_; }
    //! Unchecked, like a plain array.
    std::byte& operator[](std::size_t i) const noexcept { return data_[i]; }

   private:
    std::byte* data_;
    std::size_t size_;
  };

  //! Effects: an unnamed block of `size` zero bytes, shared with children forked after this call.
  //! Throws: Error(errc::invalid_argument) for size 0 or a size this machine cannot hold.
  explicit SharedMemory(std::size_t size);
  //! Effects: creates the block called `name` with `size` zero bytes.
  //! Throws: as above; Error(errc::already_exists) if the name is taken (see Segment::create).
  SharedMemory(create_only_t, const Name& name, std::size_t size);
  //! Effects: opens the block called `name`; its size comes from the segment.
  //! Throws: Error(errc::not_found), Error(errc::wrong_kind) when the name holds another kind of
  //! object, Error(errc::corrupt) for a damaged segment (see Segment::open).
  SharedMemory(open_only_t, const Name& name);
  //! Effects: opens `name` (which must be a block of `size` bytes), or creates it.
  //! Throws: as the two above; Error(errc::type_mismatch) when it exists with another size.
  SharedMemory(open_or_create_t, const Name& name, std::size_t size);

  //! The size asked for at creation, exactly (never rounded up to pages). Also after close().
  std::size_t size() const noexcept { return size_; }
  //! The first byte. Throws: Error(errc::bad_state) after close() (or on a moved-from handle).
  std::byte* data() const {
    if (!seg_) fail_closed("data()");
    return data_;
  }
  //! data() and size() as one view. Throws: as data().
  Bytes buf() const {
    if (!seg_) fail_closed("buf()");
    return Bytes(data_, size_);
  }
  //! The name given at creation or open; empty for an anonymous block. Also after close().
  const std::string& name() const noexcept { return name_; }
  //! "SharedMemory 'frames'" or "SharedMemory (anonymous)": the prefix of every error message.
  const std::string& describe() const noexcept { return what_; }

  //! Effects: releases this handle's reference to the mapping (Python: close()). If it was the
  //! creating process's last handle to a non-persistent block, the name is removed, as for every
  //! multiproc object. Idempotent.
  void close() noexcept;
  //! Whether close() was called (or the handle was moved from).
  bool closed() const noexcept { return !seg_; }
  //! Effects: removes the name now if it still refers to this block (Python: unlink()); allowed
  //! from any process, before or after close(). Everyone who has the block open keeps it.
  //! Returns: true if it removed the name; false for an anonymous block or when the name was
  //! already gone or now names another object. Throws: Error if the OS refuses.
  bool unlink() const;

  //! The segment, while not closed (an empty Segment after close()).
  const Segment& segment() const noexcept { return seg_; }

 private:
  template <class T>
  friend class ShareableList;
  struct View {};
  SharedMemory(View, Segment seg);  // the body of another object's segment (ShareableList::shm)
  SharedMemory(const detail::Placement& where, std::size_t size);  // behind the creating ones
  void attach(Segment seg);
  [[noreturn]] void fail_closed(const char* call) const;

  Segment seg_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string name_;
  std::string what_;
  Segment::FileId id_;
};

//! A fixed-size list of T in shared memory, like Python's ShareableList of fixed-width values, but
//! typed: the element type is recorded at creation and checked on open. Every access is
//! bounds-checked; there is no lock (see the file comment for what each access guarantees).
//!
//! As with std::vector, braces pick the list constructor: ShareableList<int>{5} is one element 5,
//! ShareableList<int>(5) is five zeros. Indices are std::size_t (no negative indices).
template <class T>
class ShareableList : public detail::ArrayHandle<T> {
 public:
  using value_type = T;

  //! What list[i] returns: reads convert to T (get(i)), assignments store (set(i, v)).
  class Reference {
   public:
    operator T() const noexcept { return detail::raw_load(p_); }  // NOLINT: a proxy by design
    const Reference& operator=(const T& v) const noexcept {
      detail::raw_store(p_, v);
      return *this;
    }
    const Reference& operator=(const Reference& other) const noexcept {
      detail::raw_store(p_, detail::raw_load(other.p_));
      return *this;
    }
    Reference(const Reference&) = default;

   private:
    friend class ShareableList;
    explicit Reference(T* p) noexcept : p_(p) {}
    T* p_;
  };

  //! Effects: an unnamed list of n zero-filled elements, shared with children forked after this.
  //! Throws: Error(errc::invalid_argument) when n elements cannot fit in memory.
  explicit ShareableList(std::size_t n) : ShareableList(detail::Placement(), n, {}) {}
  //! Effects: an unnamed list holding `values`.
  ShareableList(std::initializer_list<T> values)
      : ShareableList(detail::Placement(), detail::pack_elements<T>(values.begin(), values.end())) {}
  explicit ShareableList(const std::vector<T>& values)
      : ShareableList(detail::Placement(), detail::pack_elements<T>(values.begin(), values.end())) {}

  //! Effects: creates the list called `name` with n zero-filled elements, or with `values`.
  //! Throws: as Segment::create (Error(errc::already_exists) for a taken name).
  ShareableList(create_only_t t, const Name& name, std::size_t n)
      : ShareableList(detail::Placement(t, name), n, {}) {}
  ShareableList(create_only_t t, const Name& name, std::initializer_list<T> values)
      : ShareableList(detail::Placement(t, name),
                      detail::pack_elements<T>(values.begin(), values.end())) {}
  ShareableList(create_only_t t, const Name& name, const std::vector<T>& values)
      : ShareableList(detail::Placement(t, name),
                      detail::pack_elements<T>(values.begin(), values.end())) {}
  //! Effects: opens the list called `name`; its size comes from the segment.
  //! Throws: Error(errc::type_mismatch) naming both types when it holds another element type;
  //! Error(errc::wrong_kind) when the name holds another kind of object; as Segment::open.
  ShareableList(open_only_t, const Name& name) {
    const ElementType element = ElementType::of<T>();
    this->attach(Segment::open(name, Kind::shareable_list, &element));
  }
  //! Effects: opens `name` (which must have n elements of T), or creates it with n zeros.
  ShareableList(open_or_create_t t, const Name& name, std::size_t n)
      : ShareableList(detail::Placement(t, name), n, {}) {}

  //! Returns: element i. Throws: Error(errc::invalid_argument) naming the list when i >= size().
  T get(std::size_t i) const { return detail::raw_load(this->element(i)); }
  //! Effects: element i = v. Throws: as get().
  void set(std::size_t i, const T& v) const { detail::raw_store(this->element(i), v); }
  //! Returns: a proxy for element i (read it as a T, or assign to it). Throws: as get().
  Reference operator[](std::size_t i) const { return Reference(this->element(i)); }

  //! Returns: how many elements equal v (a snapshot). Requires: T has operator==.
  std::size_t count(const T& v) const {
    static_assert(detail::is_equality_comparable<T>::value,
                  "ShareableList<T>::count needs a T with operator==");
    std::size_t n = 0;
    for (std::size_t i = 0; i < this->size_; ++i) n += detail::raw_load(this->data_ + i) == v ? 1 : 0;
    return n;
  }
  //! Returns: the first index holding v, or nothing. Requires: T has operator==.
  std::optional<std::size_t> find(const T& v) const {
    static_assert(detail::is_equality_comparable<T>::value,
                  "ShareableList<T>::find and index need a T with operator==");
    for (std::size_t i = 0; i < this->size_; ++i) {
      if (detail::raw_load(this->data_ + i) == v) return i;
    }
    return std::nullopt;
  }
  //! Returns: the first index holding v (Python's index). Throws: Error(errc::invalid_argument)
  //! naming the list when no element equals v (Python: ValueError); find() is the non-throwing form.
  std::size_t index(const T& v) const {
    if (auto i = find(v)) return *i;
    this->seg_.fail(errc::invalid_argument, "index(): the value is not in the list");
  }

  //! Returns: a copy of the elements, each read as get() reads it (not one atomic snapshot).
  std::vector<T> to_vector() const {
    std::vector<T> out;
    out.reserve(this->size_);
    for (std::size_t i = 0; i < this->size_; ++i) out.push_back(detail::raw_load(this->data_ + i));
    return out;
  }

  //! The name given at creation or open; empty for an anonymous list.
  const std::string& name() const noexcept { return this->seg_.name(); }
  //! A SharedMemory handle on the same block, whose bytes are the elements (Python's `.shm`):
  //! `list.shm().unlink()` removes the list's name early. Closing it releases that handle only.
  SharedMemory shm() const { return SharedMemory(SharedMemory::View{}, this->seg_); }

 private:
  // The one constructor behind the others but open_only: n zeros, or the packed elements.
  ShareableList(const detail::Placement& where, std::size_t n, std::string&& bytes) {
    this->attach(this->make(Kind::shareable_list, where, n, std::move(bytes),
                            [](void*, char*) {}, nullptr));
  }
  ShareableList(const detail::Placement& where, std::string bytes)
      : ShareableList(where, bytes.size() / sizeof(T), std::move(bytes)) {}
};

//! ShareableList<std::string>: Python's ShareableList of str/bytes items. Each element holds up to
//! width() bytes (any bytes, NULs included), fixed at creation: at least the width asked for and
//! the longest initial value, rounded up so that a slot is a multiple of 8 bytes. Storing a longer
//! value is an Error (Python: ValueError), and so is opening a list of strings as ShareableList<T>
//! of another T, or the reverse (errc::type_mismatch).
//!
//! No lock and no atomicity: a read concurrent with a write of the same element may see a mix of
//! the two strings (never more than width() bytes, never memory outside the element).
template <>
class ShareableList<std::string> {
 public:
  using value_type = std::string;

  //! What list[i] returns: reads convert to std::string (get(i)), assignments store (set(i, v)).
  class Reference {
   public:
    operator std::string() const { return list_->get(i_); }  // NOLINT: a proxy by design
    const Reference& operator=(std::string_view v) const {
      list_->set(i_, v);
      return *this;
    }
    const Reference& operator=(const Reference& other) const {
      list_->set(i_, other.list_->get(other.i_));
      return *this;
    }
    Reference(const Reference&) = default;

   private:
    friend class ShareableList;
    Reference(const ShareableList* list, std::size_t i) noexcept : list_(list), i_(i) {}
    const ShareableList* list_;
    std::size_t i_;
  };

  //! Effects: an unnamed list of n empty strings, each with room for `width` bytes.
  //! Throws: Error(errc::invalid_argument) for an absurd n or width.
  ShareableList(std::size_t n, std::size_t width);
  //! Effects: an unnamed list holding `values`, each element with room for max(width, longest).
  ShareableList(std::initializer_list<std::string_view> values, std::size_t width = 0);
  explicit ShareableList(const std::vector<std::string>& values, std::size_t width = 0);
  //! Effects: creates the list called `name`, as the constructors above.
  ShareableList(create_only_t, const Name& name, std::size_t n, std::size_t width);
  ShareableList(create_only_t, const Name& name, std::initializer_list<std::string_view> values,
                std::size_t width = 0);
  ShareableList(create_only_t, const Name& name, const std::vector<std::string>& values,
                std::size_t width = 0);
  //! Effects: opens the list of strings called `name`; size and width come from the segment.
  //! Throws: Error(errc::type_mismatch) when it holds another element type; as Segment::open.
  ShareableList(open_only_t, const Name& name);

  std::size_t size() const noexcept { return size_; }
  //! The most bytes an element holds.
  std::size_t width() const noexcept { return slot_ - kLengthBytes; }

  //! Returns: element i. Throws: Error(errc::invalid_argument) naming the list when i >= size().
  std::string get(std::size_t i) const;
  //! Effects: element i = v. Throws: as get(); Error(errc::invalid_argument) when v is longer than
  //! width() (the element is then unchanged).
  void set(std::size_t i, std::string_view v) const;
  //! Returns: a proxy for element i. Throws: as get().
  Reference operator[](std::size_t i) const {
    check(i);
    return Reference(this, i);
  }

  std::size_t count(std::string_view v) const;
  std::optional<std::size_t> find(std::string_view v) const;
  //! Throws: Error(errc::invalid_argument) naming the list when no element equals v.
  std::size_t index(std::string_view v) const;
  std::vector<std::string> to_vector() const;

  const std::string& name() const noexcept { return seg_.name(); }
  SharedMemory shm() const { return SharedMemory(SharedMemory::View{}, seg_); }
  const Segment& segment() const noexcept { return seg_; }

 private:
  // Element i is the slot at i * slot_: a 4-byte length, then width() bytes.
  static constexpr std::size_t kLengthBytes = 4;
  ShareableList(const Name* name, const std::vector<std::string_view>& values, std::size_t n,
                std::size_t width);
  void check(std::size_t i) const;
  std::string_view view(std::size_t i) const noexcept;
  void attach(Segment seg);

  Segment seg_;
  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t slot_ = 0;
};

}  // namespace multiproc
