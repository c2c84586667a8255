// tests/fuzz/segment_header_fuzz.cpp — libFuzzer target: the header another process wrote at
// offset 0 of a segment, as Segment::open reads it (src/segment/header.cpp).
//
// Input: [control][mapping bytes]. The mapping bytes are the whole segment — header, then body —
// held in a heap buffer of exactly that size (ASan: nothing may be read past the "mapping"; no
// shared memory and no names are involved, so nothing is left behind). The control byte makes
// deep inputs reachable despite the header's integrity checks:
//   bit 0  first write the current magic number and layout version and recompute the checksum
//          over the (mutated) header, as a buggy or hostile writer of the same user can (this
//          also keeps the seeds useful across layout versions);
//   bit 1  expect the kind the header states (else the kind picked by bits 4..7);
//   bit 2  expect an element type: the header's own (bit 3) or int's (bit 3 clear);
// open_header() below does what open does with the bytes. It must accept the header (a copy)
// or throw multiproc::Error with errc::corrupt, wrong_kind or type_mismatch; when it returns, the
// header's promises must hold: the body at a cache-line multiple >= 256, inside the mapping, of the kind
// and element type expected (the body's first and last bytes are read to prove it to ASan).
// The bounded wait for a creator still initialising (state word 0) is not fuzzed: open waits up
// to 2 s there by design, so such inputs stop before it.
#include "segment/segment_impl.hpp"

#include <multiproc/detail/shared_object.hpp>
#include <multiproc/error.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace {

namespace mp = multiproc;
using mp::detail::SegmentHeader;

constexpr mp::Kind kKinds[16] = {
    mp::Kind::value,          mp::Kind::raw_value,     mp::Kind::array,
    mp::Kind::raw_array,      mp::Kind::mutex,         mp::Kind::recursive_mutex,
    mp::Kind::semaphore,      mp::Kind::condition,     mp::Kind::event,
    mp::Kind::barrier,        mp::Kind::queue,         mp::Kind::joinable_queue,
    mp::Kind::pipe,           mp::Kind::shared_memory, mp::Kind::shareable_list,
    mp::Kind::user};

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "segment_header_fuzz: %s\n", what);
  std::abort();
}

// What Segment::open does with a mapping of `mapped` bytes at `base` (segment.cpp try_open): a
// size check before mapping, the state word, a private copy of the header, then validate() of the
// copy. The one call into the library's header code: when that code changes, this is the
// function to follow it. On return, *out is the accepted copy.
void open_header(const void* base, std::size_t mapped, mp::Kind kind,
                 const mp::ElementType* element, SegmentHeader* out) {
  const std::string what = mp::detail::describe_object(kind, element, "fuzz");
  if (mapped < mp::detail::kHeaderSize) {
    throw mp::Error(mp::errc::corrupt, what + ": too short to be a multiproc segment");
  }
  const auto& live = *static_cast<const SegmentHeader*>(base);
  if (live.state.load(std::memory_order_acquire) == mp::detail::kStateInitializing) {
    throw mp::Error(mp::errc::corrupt, what + ": (not fuzzed) still initialising");
  }
  mp::detail::seg::wait_ready(live, what);  // ready: returns at once; any other word: throws
  std::memcpy(static_cast<void*>(out), base, sizeof *out);
  mp::detail::seg::validate(*out, mapped, what, kind, element);
}

struct AlignedFree {
  void operator()(unsigned char* p) const { ::operator delete[](p, std::align_val_t{64}); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const std::size_t mapped = size - 1;
  // A mapping is page-aligned: 64 is what the header's layout relies on.
  std::unique_ptr<unsigned char[], AlignedFree> map(
      static_cast<unsigned char*>(::operator new[](mapped == 0 ? 1 : mapped, std::align_val_t{64})));
  std::memcpy(map.get(), data + 1, mapped);

  mp::Kind kind = kKinds[control >> 4];
  mp::ElementType element = mp::ElementType::of<int>();
  if (mapped >= mp::detail::kHeaderSize) {
    auto& h = *reinterpret_cast<SegmentHeader*>(map.get());
    if ((control & 1) != 0) {
      h.magic = mp::detail::kSegmentMagic;
      h.layout_version = mp::detail::kLayoutVersion;
      h.checksum = mp::detail::header_checksum(h);
    }
    if ((control & 2) != 0) kind = static_cast<mp::Kind>(h.kind);
    if ((control & 8) != 0) element = mp::detail::element_from_header(h);
  }
  const mp::ElementType* expected = (control & 4) != 0 ? &element : nullptr;

  SegmentHeader h;
  try {
    open_header(map.get(), mapped, kind, expected, &h);
  } catch (const mp::Error& e) {
    const auto c = e.code();
    if (c != mp::errc::corrupt && c != mp::errc::wrong_kind && c != mp::errc::type_mismatch) {
      finding("open threw an Error other than corrupt, wrong_kind or type_mismatch");
    }
    if (std::strlen(e.what()) == 0) finding("open threw an Error without a message");
    return 0;
  }

  // Accepted: its promises hold.
  if (h.body_offset < mp::detail::kHeaderSize || h.body_offset % 64 != 0) {
    finding("accepted a body offset that is not a cache-line multiple past the header");
  }
  if (h.body_offset > mapped || h.body_size > mapped - h.body_offset) {
    finding("accepted a body that does not fit the mapping");
  }
  if (h.kind != static_cast<std::uint32_t>(kind)) finding("accepted the wrong kind");
  if (expected != nullptr &&
      (h.elem_size != expected->size || h.elem_align != expected->alignment ||
       h.type_hash != expected->hash || h.type_code != expected->code)) {
    finding("accepted the wrong element type");
  }
  if (h.body_size != 0) {
    volatile unsigned char first = map[h.body_offset];
    volatile unsigned char last = map[h.body_offset + h.body_size - 1];
    (void)first;
    (void)last;
  }
  // What error messages and the inspector print from an accepted header.
  const mp::ElementType e = mp::detail::element_from_header(h);
  if (e.describe().empty() || mp::kind_name(static_cast<mp::Kind>(h.kind)).empty()) {
    finding("empty description of an accepted header");
  }
  return 0;
}
