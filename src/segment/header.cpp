// Segments: the header at offset 0 — sizing a layout, writing and publishing the header,
// validating it on open, waiting for a creator still initialising — and element type names.
#include "segment_impl.hpp"

#include "../os.hpp"

#include <multiproc/detail/cache_line.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/shared_object.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <ctime>
#include <unistd.h>

namespace multiproc {
namespace detail::seg {
namespace {

constexpr auto kInitWait = std::chrono::seconds(2);

void write_header(SegmentHeader* h, const SegmentLayout& layout, std::size_t body_offset,
                  bool named, bool persistent, std::uint64_t generation) {
  // The region is zero-filled, and state is still kStateInitializing (0).
  h->layout_version = detail::kLayoutVersion;
  h->magic = detail::kSegmentMagic;
  h->kind = static_cast<std::uint32_t>(layout.kind);
  h->type_code = layout.element.code;
  h->flags = static_cast<std::uint8_t>((named ? detail::kFlagNamed : 0) |
                                       (persistent ? detail::kFlagPersistent : 0));
  h->elem_size = layout.element.size;
  h->elem_align = layout.element.alignment;
  h->count = layout.count;
  h->body_offset = body_offset;
  h->body_size = layout.body_size;
  h->type_hash = layout.element.hash;
  h->creator_pid = static_cast<std::int32_t>(::getpid());
  h->creator_start_time = detail::self_start_time();
  h->generation = generation;
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME, &now);
  h->created_ns = static_cast<std::uint64_t>(now.tv_sec) * 1000000000u +
                  static_cast<std::uint64_t>(now.tv_nsec);
  detail::store_type_name(h->type_name, sizeof h->type_name, layout.element.name);
  h->checksum = detail::header_checksum(*h);
}

}  // namespace

std::size_t body_offset_for(const SegmentLayout& layout) {
  // The header and the attach table, then the body on its alignment (a power of two up to 4096,
  // checked by total_size_for).
  const std::size_t align = detail::round_up_to_cache_line(std::max<std::size_t>(layout.body_alignment, 1));
  return (detail::kPrefixSize + align - 1) / align * align;
}

// Total bytes of a segment, or an Error for an absurd layout.
std::size_t total_size_for(const SegmentLayout& layout, const std::string& what) {
  if (layout.body_alignment == 0 || (layout.body_alignment & (layout.body_alignment - 1)) != 0 ||
      layout.body_alignment > 4096) {
    throw Error(errc::invalid_argument,
                what + ": body alignment " + std::to_string(layout.body_alignment) +
                    " is not a power of two up to 4096");
  }
  const std::size_t offset = body_offset_for(layout);
  // Keep sizes far from overflow and from what mmap can ever give: 2^46 bytes (64 TiB).
  constexpr std::size_t kMax = std::size_t{1} << 46;
  if (layout.body_size > kMax - offset) {
    throw Error(errc::invalid_argument,
                what + ": " + std::to_string(layout.body_size) +
                    " bytes is too large for a shared segment");
  }
  return offset + layout.body_size;
}

// Initialises header and body, then publishes the segment.
void initialise(void* base, const SegmentLayout& layout, std::size_t body_offset, bool named,
                bool persistent, const Segment::Init& init, std::uint64_t generation) {
  auto* h = static_cast<SegmentHeader*>(base);
  write_header(h, layout, body_offset, named, persistent, generation);
  if (init) init(static_cast<char*>(base) + body_offset);
  // release: pairs with the acquire in wait_ready(); publishes the header and the body.
  h->state.store(detail::kStateReady, std::memory_order_release);
  detail::futex_wake(&h->state, std::numeric_limits<int>::max());
}

// Checks a ready header against what the opener expects. Throws Error naming the object.
void validate(const SegmentHeader& h, std::size_t mapped, const std::string& what, Kind kind,
              const ElementType* element) {
  if (h.magic != detail::kSegmentMagic) {
    throw Error(errc::corrupt, what + ": not a multiproc segment (bad magic number)");
  }
  if (h.layout_version != detail::kLayoutVersion) {
    throw Error(errc::corrupt, what + ": segment layout version " +
                                   std::to_string(h.layout_version) + ", this build reads " +
                                   std::to_string(detail::kLayoutVersion));
  }
  if (h.checksum != detail::header_checksum(h)) {
    throw Error(errc::corrupt, what + ": the segment header is damaged (checksum mismatch)");
  }
  if ((h.flags & ~(detail::kFlagPersistent | detail::kFlagNamed)) != 0 ||
      (h.elem_align & (h.elem_align - 1)) != 0 ||
      ::strnlen(h.type_name, sizeof h.type_name) == sizeof h.type_name) {
    throw Error(errc::corrupt, what + ": the segment header is damaged (impossible flags, element "
                                      "alignment or type name)");
  }
  if (h.body_offset < detail::kPrefixSize || h.body_offset % detail::kCacheLine != 0 ||
      h.body_size > mapped || h.body_offset > mapped - h.body_size) {
    throw Error(errc::corrupt, what + ": the segment is truncated or damaged (its header promises " +
                                   std::to_string(h.body_offset) + " + " +
                                   std::to_string(h.body_size) + " bytes, it has " +
                                   std::to_string(mapped) + ")");
  }
  // The body must sit on its elements' alignment (the mapping is page-aligned): a forged offset
  // that is only a multiple of 64 would hand out a misaligned T of alignas(128) or more.
  if (h.elem_align > detail::kCacheLine && h.body_offset % h.elem_align != 0) {
    throw Error(errc::corrupt, what + ": the segment header is damaged (its body at offset " +
                                   std::to_string(h.body_offset) + " is not aligned to " +
                                   std::to_string(h.elem_align) + " bytes, as its elements need)");
  }
  if (h.kind != static_cast<std::uint32_t>(kind)) {
    const ElementType e = detail::element_from_header(h);
    const std::string held = detail::object_type_name(static_cast<Kind>(h.kind), &e);
    throw Error(errc::wrong_kind, what + ": the name holds a " + held + ", not a " + kind_name(kind));
  }
  if (element != nullptr &&
      (h.type_code != element->code || h.elem_size != element->size ||
       h.elem_align != element->alignment || h.type_hash != element->hash)) {
    throw Error(errc::type_mismatch, what + ": created with element type " +
                                         detail::element_from_header(h).describe() + ", opened as " +
                                         element->describe());
  }
}

// Waits until the creator publishes the header (bounded), or throws if it never will.
void wait_ready(const SegmentHeader& h, const std::string& what) {
  const auto deadline = detail::Clock::now() + kInitWait;
  for (;;) {
    // acquire: pairs with the release in initialise(); makes header and body visible.
    const std::uint32_t state = h.state.load(std::memory_order_acquire);
    if (state == detail::kStateReady) return;
    if (state != detail::kStateInitializing) {
      throw Error(errc::corrupt, what + ": not a multiproc segment (bad state word)");
    }
    const pid_t creator = relaxed_load(&h.creator_pid);
    // unknown: keep waiting (to the deadline) rather than call a live creator's object dead.
    if (creator != 0 && process_liveness(creator, 0) == Liveness::dead) {
      throw Error(errc::corrupt, what + ": its creator (pid " + std::to_string(creator) +
                                     ") died while initialising it; the next create of the "
                                     "name reclaims it, or multiproc::remove clears it");
    }
    const auto now = detail::Clock::now();
    if (now >= deadline) {
      throw Error(errc::corrupt,
                  what + ": still not initialised after 2 s (is it a multiproc segment?)");
    }
    const auto slice = next_slice(&deadline);
    detail::futex_wait(&h.state, detail::kStateInitializing, &slice);
  }
}

}  // namespace detail::seg

namespace detail {

ElementType make_element_type(char code, std::size_t size, std::size_t alignment,
                              const std::type_info& type) {
  ElementType e;
  e.code = code;
  e.size = static_cast<std::uint32_t>(size);
  e.alignment = static_cast<std::uint32_t>(alignment);
  if (code != 0) {
    const char key[] = {'t', 'c', ':', code, '\0'};
    e.hash = fnv1a64(key);
    e.name = type_info(code).c_type;
  } else {
    e.hash = fnv1a64(type.name());
    e.name = demangle(type.name());
  }
  return e;
}

}  // namespace detail

std::string kind_name(Kind kind) {
  switch (kind) {
    case Kind::value: return "SharedValue";
    case Kind::raw_value: return "RawValue";
    case Kind::array: return "SharedArray";
    case Kind::raw_array: return "RawArray";
    case Kind::mutex: return "Mutex";
    case Kind::recursive_mutex: return "RecursiveMutex";
    case Kind::semaphore: return "Semaphore";
    case Kind::bounded_semaphore: return "BoundedSemaphore";
    case Kind::condition: return "Condition";
    case Kind::event: return "Event";
    case Kind::barrier: return "Barrier";
    case Kind::queue: return "Queue";
    case Kind::joinable_queue: return "JoinableQueue";
    case Kind::simple_queue: return "SimpleQueue";
    case Kind::pipe: return "Pipe";
    case Kind::shared_memory: return "SharedMemory";
    case Kind::shareable_list: return "ShareableList";
    case Kind::user: break;
  }
  return "Segment#" + std::to_string(static_cast<std::uint32_t>(kind));
}

std::string ElementType::describe() const {
  std::string s = name.empty() ? "?" : name;
  s += " (";
  if (code != 0) s += std::string("'") + code + "', ";
  s += std::to_string(size) + (size == 1 ? " byte)" : " bytes)");
  return s;
}

}  // namespace multiproc
