// SharedMemory: a Segment whose body is the user's bytes (count = body size = the requested size).
// ShareableList<std::string>: count slots of elem_size bytes each, a 4-byte length then the bytes.
#include <multiproc/shared_memory.hpp>

#include <multiproc/detail/segment_header.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

namespace multiproc {
namespace {

SegmentLayout layout_for(std::size_t size, const Name* name) {
  if (size == 0) {
    throw Error(errc::invalid_argument,
                detail::describe_object(Kind::shared_memory, nullptr, name ? name->str() : "") +
                    ": 'size' must be a positive number different from zero");
  }
  SegmentLayout layout;
  layout.kind = Kind::shared_memory;
  layout.count = size;
  layout.body_size = size;  // Segment refuses absurd sizes with Error(errc::invalid_argument)
  layout.body_alignment = detail::kCacheLine;
  return layout;
}

}  // namespace

SharedMemory::SharedMemory(const detail::Placement& where, std::size_t size) {
  // The body of a new segment is zero-filled already: no initialiser, so no page is touched.
  attach(where.make(layout_for(size, where.name()), {}));
}

SharedMemory::SharedMemory(std::size_t size) : SharedMemory(detail::Placement(), size) {}

SharedMemory::SharedMemory(create_only_t t, const Name& name, std::size_t size)
    : SharedMemory(detail::Placement(t, name), size) {}

SharedMemory::SharedMemory(open_only_t, const Name& name) {
  attach(Segment::open(name, Kind::shared_memory, nullptr));
}

SharedMemory::SharedMemory(open_or_create_t t, const Name& name, std::size_t size)
    : SharedMemory(detail::Placement(t, name), size) {}

SharedMemory::SharedMemory(View, Segment seg)
    : seg_(std::move(seg)),
      data_(static_cast<std::byte*>(seg_.body())),
      size_(seg_.body_size()),
      name_(seg_.name()),
      what_(seg_.describe()),
      id_(seg_.file_id()) {}

void SharedMemory::attach(Segment seg) {
  if (seg.count() == 0) seg.fail(errc::corrupt, "its header claims 0 bytes (never created so)");
  seg.expect_body_size(static_cast<std::size_t>(seg.count()));
  seg_ = std::move(seg);
  data_ = static_cast<std::byte*>(seg_.body());
  size_ = seg_.body_size();
  name_ = seg_.name();
  what_ = seg_.describe();
  id_ = seg_.file_id();
}

void SharedMemory::close() noexcept {
  seg_ = Segment();
  data_ = nullptr;
}

bool SharedMemory::unlink() const {
  if (name_.empty()) return false;
  return Segment::unlink(name_, id_);
}

void SharedMemory::fail_closed(const char* call) const {
  // A moved-from handle has no description: say what it is (an outside probe saw ": data()").
  throw Error(errc::bad_state, (what_.empty() ? std::string("SharedMemory (moved from)") : what_) +
                                   ": " + call + " on a closed handle");
}

// ---------------------------------------------------------------------------------------------
// ShareableList<std::string>

namespace {

using StringList = ShareableList<std::string>;
constexpr std::size_t kLength = 4;
constexpr std::size_t kMaxWidth = std::size_t{1} << 30;  // a slot's size must fit elem_size (32 bits)
constexpr const char* kStringKey = "multiproc:ShareableList<std::string>";

// How an element is named in descriptions: "ShareableList<std::string> 'x'".
const ElementType kStringElement = [] {
  ElementType e;
  e.size = 1;  // any non-zero size: describe_object shows the name
  e.name = "std::string";
  return e;
}();

ElementType string_element(std::size_t slot) {
  ElementType e;
  e.size = static_cast<std::uint32_t>(slot);
  e.alignment = static_cast<std::uint32_t>(kLength);
  e.hash = detail::fnv1a64(kStringKey);
  e.name = "std::string";
  return e;
}

std::size_t string_body_size(std::size_t n, std::size_t slot, const std::string& what) {
  if (n > std::numeric_limits<std::size_t>::max() / slot) {
    throw Error(errc::invalid_argument, what + ": " + std::to_string(n) + " elements of " +
                                            std::to_string(slot) + " bytes do not fit in memory");
  }
  return n * slot;
}

std::uint32_t load_length(const char* slot) noexcept {
  // relaxed: the length alone is never torn; the bytes it describes are not ordered with it
  // (no lock, as documented: a concurrent reader may see a mix of two strings).
  return __atomic_load_n(reinterpret_cast<const std::uint32_t*>(slot), __ATOMIC_RELAXED);
}

void store_length(char* slot, std::size_t n) noexcept {
  // relaxed: see load_length().
  __atomic_store_n(reinterpret_cast<std::uint32_t*>(slot), static_cast<std::uint32_t>(n),
                   __ATOMIC_RELAXED);
}

}  // namespace

StringList::ShareableList(const Name* name, const std::vector<std::string_view>& values,
                          std::size_t n, std::size_t width) {
  const std::string what = detail::describe_object(Kind::shareable_list, &kStringElement,
                                                   name != nullptr ? name->str() : "");
  for (std::string_view v : values) width = std::max(width, v.size());
  if (width > kMaxWidth) {
    throw Error(errc::invalid_argument, what + ": an element width of " + std::to_string(width) +
                                            " bytes is too large (at most " +
                                            std::to_string(kMaxWidth) + ")");
  }
  const std::size_t slot = (kLength + width + 7) / 8 * 8;
  SegmentLayout layout;
  layout.kind = Kind::shareable_list;
  layout.element = string_element(slot);
  layout.count = n;
  layout.body_size = string_body_size(n, slot, what);
  layout.body_alignment = detail::kCacheLine;
  const auto init = [&values, slot](void* body) {
    char* p = static_cast<char*>(body);
    for (std::string_view v : values) {
      store_length(p, v.size());
      if (!v.empty()) std::memcpy(p + kLength, v.data(), v.size());
      p += slot;
    }
  };
  attach(name != nullptr ? Segment::create(*name, layout, init)
                         : Segment::create_anonymous(layout, init));
}

StringList::ShareableList(std::size_t n, std::size_t width) : ShareableList(nullptr, {}, n, width) {}

StringList::ShareableList(std::initializer_list<std::string_view> values, std::size_t width)
    : ShareableList(nullptr, std::vector<std::string_view>(values), values.size(), width) {}

StringList::ShareableList(const std::vector<std::string>& values, std::size_t width)
    : ShareableList(nullptr, std::vector<std::string_view>(values.begin(), values.end()),
                    values.size(), width) {}

StringList::ShareableList(create_only_t, const Name& name, std::size_t n, std::size_t width)
    : ShareableList(&name, {}, n, width) {}

StringList::ShareableList(create_only_t, const Name& name,
                          std::initializer_list<std::string_view> values, std::size_t width)
    : ShareableList(&name, std::vector<std::string_view>(values), values.size(), width) {}

StringList::ShareableList(create_only_t, const Name& name, const std::vector<std::string>& values,
                          std::size_t width)
    : ShareableList(&name, std::vector<std::string_view>(values.begin(), values.end()),
                    values.size(), width) {}

StringList::ShareableList(open_only_t, const Name& name) {
  attach(Segment::open(name, Kind::shareable_list, nullptr));
}

void StringList::attach(Segment seg) {
  const auto& h = seg.header();
  if (h.type_code != 0 || h.type_hash != detail::fnv1a64(kStringKey) || h.elem_align != kLength) {
    seg.fail(errc::type_mismatch, "created with element type " +
                                      detail::element_from_header(h).describe() +
                                      ", opened as std::string");
  }
  const std::size_t slot = h.elem_size;
  // The largest slot a creator makes: kMaxWidth bytes and the length, rounded up to 8 (a check
  // of slot - kLength against kMaxWidth refused the lists of the widest 4 widths it accepts).
  constexpr std::size_t kMaxSlot = (kLength + kMaxWidth + 7) / 8 * 8;
  if (slot < 8 || slot % 8 != 0 || slot > kMaxSlot) {
    seg.fail(errc::corrupt, "its header claims string slots of " + std::to_string(slot) + " bytes");
  }
  if (seg.count() > std::numeric_limits<std::size_t>::max() / slot) {  // a damaged header's count
    seg.fail(errc::corrupt, "its header claims " + std::to_string(seg.count()) +
                                " elements, more than fit in memory");
  }
  seg.expect_body_size(string_body_size(static_cast<std::size_t>(seg.count()), slot, seg.describe()));
  seg_ = std::move(seg);
  data_ = static_cast<char*>(seg_.body());
  size_ = static_cast<std::size_t>(seg_.count());
  slot_ = slot;
}

void StringList::check(std::size_t i) const {
  if (i >= size_) detail::throw_index(seg_, i, size_);
}

std::string_view StringList::view(std::size_t i) const noexcept {
  const char* p = data_ + i * slot_;
  // A length beyond the slot (a damaged or torn element) is cut to the slot: never read outside.
  const std::size_t n = std::min<std::size_t>(load_length(p), width());
  return std::string_view(p + kLength, n);
}

std::string StringList::get(std::size_t i) const {
  check(i);
  return std::string(view(i));
}

void StringList::set(std::size_t i, std::string_view v) const {
  check(i);
  if (v.size() > width()) {
    seg_.fail(errc::invalid_argument, "element " + std::to_string(i) + ": a value of " +
                                          std::to_string(v.size()) +
                                          " bytes exceeds the element width of " +
                                          std::to_string(width()) + " bytes");
  }
  char* p = data_ + i * slot_;
  if (!v.empty()) std::memcpy(p + kLength, v.data(), v.size());
  store_length(p, v.size());
}

std::size_t StringList::count(std::string_view v) const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < size_; ++i) n += view(i) == v ? 1 : 0;
  return n;
}

std::optional<std::size_t> StringList::find(std::string_view v) const {
  for (std::size_t i = 0; i < size_; ++i) {
    if (view(i) == v) return i;
  }
  return std::nullopt;
}

std::size_t StringList::index(std::string_view v) const {
  if (auto i = find(v)) return *i;
  seg_.fail(errc::invalid_argument, "index(): the value is not in the list");
}

std::vector<std::string> StringList::to_vector() const {
  std::vector<std::string> out;
  out.reserve(size_);
  for (std::size_t i = 0; i < size_; ++i) out.emplace_back(view(i));
  return out;
}

}  // namespace multiproc
