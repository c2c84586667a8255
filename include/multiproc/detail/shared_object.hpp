// multiproc/detail/shared_object.hpp — what SharedValue, RawValue, SharedArray, RawArray,
// ShareableList, SharedMemory and the queues share: where a new object's segment comes from (one
// Placement for the anonymous, create_only and open_or_create constructors), the one builder of
// the "Kind<T> 'name'" descriptions that prefix their errors, element layouts and unlocked element
// access. Private: users never name it.
#pragma once

#include <multiproc/detail/cache_line.hpp>
#include <multiproc/segment.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace multiproc::detail {

struct SegmentHeader;

// ---- descriptions -------------------------------------------------------------------------

//! "SharedValue<int>", "Queue<std::string>", "SharedMemory" (no element type, or one of size 0).
std::string object_type_name(Kind kind, const ElementType* element);
//! "SharedValue<int> 'counter'" or "Queue<std::string> (anonymous)" (empty name): the prefix of
//! every message about an object. The one place these descriptions are built.
std::string describe_object(Kind kind, const ElementType* element, std::string_view name);
//! The same for a T-typed object placed under `name` (nullptr: anonymous).
template <class T>
std::string describe_object(Kind kind, const Name* name) {
  const ElementType element = ElementType::of<T>();
  return describe_object(kind, &element, name != nullptr ? std::string_view(name->str()) : "");
}
//! The element type a segment header records (code, size, alignment, hash and name).
ElementType element_from_header(const SegmentHeader& h);
//! Writes `name` NUL-terminated into a header's fixed field of `size` bytes; a name that does not
//! fit is cut visibly: its first bytes, then "…" (UTF-8), so that messages built from another
//! process's header show the cut. Messages about this process's own objects use the whole name.
inline void store_type_name(char* out, std::size_t size, std::string_view name) noexcept {
  static constexpr char kEllipsis[] = "\xe2\x80\xa6";  // U+2026, 3 bytes
  constexpr std::size_t kMark = sizeof kEllipsis - 1;
  if (size == 0) return;
  if (name.size() < size) {
    std::memcpy(out, name.data(), name.size());
    out[name.size()] = '\0';
  } else if (size > kMark) {
    const std::size_t keep = size - 1 - kMark;
    std::memcpy(out, name.data(), keep);
    std::memcpy(out + keep, kEllipsis, kMark + 1);  // with its NUL
  } else {
    out[0] = '\0';
  }
}

// ---- where a new object's segment comes from ----------------------------------------------

//! Anonymous (default), create_only `name` or open_or_create `name`: the three ways a constructor
//! makes an object, so that each class writes its construction once. Holds a pointer to the
//! name: use it within the constructor's full expression.
class Placement {
 public:
  Placement() noexcept = default;  //!< anonymous: shared with children forked after this
  Placement(create_only_t, const Name& name) noexcept : name_(&name) {}
  Placement(open_or_create_t, const Name& name) noexcept : name_(&name), open_existing_(true) {}

  //! nullptr when anonymous.
  const Name* name() const noexcept { return name_; }
  //! Returns: the segment, created by Segment::create_anonymous / Segment::create, or by
  //! Segment::open_or_create (which validates an existing one against `layout`). Sets *created
  //! (true unless an existing object was opened) when given. Throws: as those.
  Segment make(const SegmentLayout& layout, const Segment::Init& init,
               bool* created = nullptr) const;

 private:
  const Name* name_ = nullptr;
  bool open_existing_ = false;
};

//! The segment behind a handle: what every shared object's handle holds.
class SegmentHandle {
 public:
  const Segment& segment() const noexcept { return seg_; }
  //! Segment::stale(): whether the name now refers to another object or none.
  bool stale() const { return seg_.stale(); }
  //! Segment::attach_count(): processes that have the named object mapped now (a snapshot).
  std::size_t attach_count() const { return seg_.attach_count(); }

 protected:
  Segment seg_;
};

// ---- element types ------------------------------------------------------------------------

template <class T>
constexpr void check_shareable() {
  static_assert(std::is_trivially_copyable_v<T>,
                "shared values, arrays and lists need a trivially copyable T: it is copied between "
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

// A bool in shared memory may hold any byte (another process wrote 5 there): reading it as a bool
// would be undefined behaviour (UBSan: "load of value 5, which is not a valid value for type
// 'bool'"; at -O2, b and !b both true). So a bool is read as its byte, any nonzero one true, as
// Python's c_bool reads it.
template <class T>
T read_value(const T* p) noexcept {
  if constexpr (std::is_same_v<T, bool>) {
    unsigned char b;
    std::memcpy(&b, p, 1);
    return b != 0;
  } else {
    return *p;
  }
}
//! Before a reference to a bool in shared memory is handed out (update(), a guard), under its
//! lock: puts a byte other than 0 or 1 back to 1. Other types: nothing.
template <class T>
void settle(T* p) noexcept {
  if constexpr (std::is_same_v<T, bool>) {
    unsigned char b;
    std::memcpy(&b, p, 1);
    if (b > 1) {
      b = 1;
      std::memcpy(static_cast<void*>(p), &b, 1);
    }
  } else {
    (void)p;
  }
}

// RawValue::load/store and ShareableList's element access: inline on purpose, they compile to
// one plain load or store (this is why RawValue is as fast as a local variable).
template <class T>
T raw_load(const T* p) noexcept {
  if constexpr (std::is_same_v<T, bool>) {
    // relaxed: as below; any nonzero byte is true (see read_value)
    return __atomic_load_n(reinterpret_cast<const std::uint8_t*>(p), __ATOMIC_RELAXED) != 0;
  }
  T out;
  if constexpr (raw_atomic_v<T>) {
    // relaxed: a single-copy atomic read, deliberately unordered (RawValue has no lock, and says so)
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
    // relaxed: pairs with nothing; see raw_load()
    __atomic_store_n(reinterpret_cast<raw_word_t<T>*>(p), w, __ATOMIC_RELAXED);
  } else {
    std::memcpy(static_cast<void*>(p), &v, sizeof(T));
  }
}

//! The layout of a segment whose body is one `Body` struct.
template <class Body>
SegmentLayout body_layout(Kind kind, const ElementType& element, std::uint64_t count) {
  SegmentLayout layout;
  layout.kind = kind;
  layout.element = element;
  layout.count = count;
  layout.body_size = sizeof(Body);
  layout.body_alignment = std::max<std::size_t>(alignof(Body), kCacheLine);
  return layout;
}

// ---- arrays -------------------------------------------------------------------------------

//! Body of an array segment: `head_size` bytes (a SharedArray's LockedHead, see
//! locked_object.hpp; none for RawArray and ShareableList), then `count` elements of T from
//! `data_offset`, then `tail_size` bytes (a SharedArray's LockTail: its external lock's name).
template <class T, std::size_t HeadSize = 0, std::size_t TailSize = 0, std::size_t HeadAlign = 1>
struct ArrayLayout {
  static constexpr std::size_t head_size = HeadSize;
  static constexpr std::size_t tail_size = TailSize;
  static constexpr std::size_t data_offset = (head_size + alignof(T) - 1) / alignof(T) * alignof(T);

  //! Throws: Error(errc::invalid_argument) naming `what` when count elements cannot fit in memory.
  static std::size_t body_size(std::size_t count, const std::string& what) {
    if (count > (std::numeric_limits<std::size_t>::max() - data_offset - tail_size) / sizeof(T)) {
      throw Error(errc::invalid_argument,
                  what + ": " + std::to_string(count) + " elements of " +
                      std::to_string(sizeof(T)) + " bytes do not fit in memory");
    }
    return data_offset + count * sizeof(T) + tail_size;
  }
  static SegmentLayout layout(Kind kind, std::size_t count, const Name* name) {
    SegmentLayout l;
    l.kind = kind;
    l.element = ElementType::of<T>();
    l.count = count;
    l.body_size = body_size(count, describe_object(kind, &l.element, name ? name->str() : ""));
    l.body_alignment = std::max<std::size_t>({alignof(T), HeadAlign, kCacheLine});
    return l;
  }
  static T* data(void* body) noexcept {
    return std::launder(reinterpret_cast<T*>(static_cast<char*>(body) + data_offset));
  }
  static char* tail(void* body, std::size_t count) noexcept {
    return static_cast<char*>(body) + data_offset + count * sizeof(T);
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

template <class T, class = void>
struct is_equality_comparable : std::false_type {};
template <class T>
struct is_equality_comparable<
    T, std::void_t<decltype(std::declval<const T&>() == std::declval<const T&>())>>
    : std::true_type {};

template <class It>
using if_iterator = typename std::iterator_traits<It>::iterator_category;

//! Throws Error(errc::invalid_argument): index i out of range of n elements, naming the object.
[[noreturn]] void throw_index(const Segment& seg, std::size_t i, std::size_t n);

//! The segment and elements of an array of T whose body is laid out by `Layout`: what RawArray,
//! ShareableList and SharedArray share (Root: SegmentHandle, or SharedArray's LockedHandle).
//! Elements are reached through data_, size_ is the segment's count.
template <class T, class Layout = ArrayLayout<T>, class Root = SegmentHandle>
class ArrayHandle : public Root {
 public:
  //! Number of elements, fixed at creation.
  std::size_t size() const noexcept { return size_; }

 protected:
  static_assert((check_shareable<T>(), true));

  ArrayHandle() = default;
  //! Creates the array of n elements at `where`: zeros, or `bytes` (n packed elements) when not
  //! empty; `init_head(body, tail)` initialises what precedes and follows the elements. Sets
  //! *created as Placement::make does. Returns: the segment, not yet attached.
  template <class InitHead>
  Segment make(Kind kind, const Placement& where, std::size_t n, std::string bytes,
               InitHead init_head, bool* created) {
    const SegmentLayout layout = Layout::layout(kind, n, where.name());
    return where.make(layout,
                      [&init_head, &bytes, n](void* body) {
                        init_head(body, Layout::tail(body, n));
                        // The body is zero-filled already: a size-only array needs no writes
                        // (and so no pages).
                        if (!bytes.empty()) {
                          std::memcpy(static_cast<char*>(body) + Layout::data_offset,
                                      bytes.data(), bytes.size());
                        }
                      },
                      created);
  }
  //! Takes the segment, after checking its body holds count() elements.
  void attach(Segment seg) {
    const auto count = seg.count();
    if (count > (std::numeric_limits<std::size_t>::max() - Layout::data_offset - Layout::tail_size) /
                    sizeof(T)) {  // a damaged header's count: not the caller's argument
      seg.fail(errc::corrupt,
               "its header claims " + std::to_string(count) + " elements, more than fit in memory");
    }
    seg.expect_body_size(Layout::body_size(static_cast<std::size_t>(count), seg.describe()));
    this->seg_ = std::move(seg);
    data_ = Layout::data(this->seg_.body());
    size_ = static_cast<std::size_t>(this->seg_.count());
  }
  //! Element i. Throws: Error(errc::invalid_argument) naming the object when i >= size().
  T* element(std::size_t i) const {
    if (i >= size_) throw_index(this->seg_, i, size_);
    return data_ + i;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace multiproc::detail
