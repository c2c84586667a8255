// multiproc/detail/segment_header.hpp — the header at offset 0 of every multiproc segment.
// Private: users never name it; the inspector tool and the tests read it.
#pragma once

#include <multiproc/detail/cache_line.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace multiproc::detail {

inline constexpr std::uint64_t kSegmentMagic = 0x434f5250'49544c55ull;  // "ULTIPROC" little-endian
// 2: MutexState is our own robust futex lock. 3: Condition counts waiters in 64 bits; channel
// cursors count complete messages (a chunked message counts at its Last chunk); ChannelState has
// puts_base and the shutdown bit; value and array bodies record the kind and name of the lock that
// guards them (a caller's Mutex or RecursiveMutex may be shared by several). 4: the header checksum
// covers every byte but the state word and itself (bytes 148..255 were outside it). 5: the header
// records a generation and a creation time; an attach table follows it (bodies start at 1280 or
// later). 6: a channel end keeps its owner's fields (a copy of its cursor, the other end's,
// the pending one, open_message) on a cache line of their own, apart from the cursor. 7: a lock
// (MutexState) marks its sleepers in a field of its own, which its unlock reads after a plain
// store (recursive shrinks to 16 bits to make room). 8: that mark is 32 bits and holds the tid of
// the holder a sleeper waits behind (owner_died shrinks to 16 bits to make room). 9: a pipe's
// holder tables have 1,024 entries (64 before); a Condition's body has departure slots where its
// padding was (a waiter that gives up while another holds the internal lock posts itself there).
inline constexpr std::uint32_t kLayoutVersion = 9;
inline constexpr std::uint32_t kStateInitializing = 0;
inline constexpr std::uint32_t kStateReady = 0x52454459;  // "REDY": any other value is not ready
inline constexpr std::uint8_t kFlagPersistent = 1;
inline constexpr std::uint8_t kFlagNamed = 2;
inline constexpr std::size_t kTypeNameSize = 64;

// Layout (256 bytes; the body starts at body_offset, a multiple of 64):
//
//   off  field               written by / guarded by
//   0    state               creator, once: kStateInitializing until the header and body are
//                            initialised, then kStateReady (release; pairs with the acquire in
//                            open). Never written again.
//   4    layout_version      creator, before state; immutable (all fields below are immutable)
//   8    magic               kSegmentMagic
//   16   kind                multiproc::Kind of the object in the body
//   20   type_code           Python type code of the element, 0 for a type outside the table
//   21   flags               kFlagPersistent, kFlagNamed
//   24   elem_size, elem_align   of the element type (0 when the kind has none)
//   32   count               elements of an array, capacity of a queue, 1 for a value
//   40   body_offset, body_size   where the body is and how long
//   56   type_hash           fingerprint of the element type (its code, or its mangled name)
//   64   creator_pid, creator_start_time   who created it (stale-name detection, inspection)
//   80   type_name           NUL-terminated, for messages ("int", "Point")
//   144  checksum            FNV-1a of bytes [4, 144) then [148, 256): every byte but the state
//                            word and the checksum itself; detects a corrupted or foreign header
//   148  reserved2           zero
//   152  generation          1 for a name created afresh; n + 1 when the create reclaimed the name
//                            from the object of a dead creator whose generation was n
//   160  created_ns          CLOCK_REALTIME at creation, in ns (for the inspector)
//   168  reserved3           zero up to 256 (bytes 148..255 are covered by the checksum)
//
// The attach table (AttachTable, below) follows at offset 256: the one mutable part before the
// body, outside the checksum.
//
// Readers never trust the mapped header after open: Segment keeps a process-local copy, taken
// and validated once (see segment.hpp); an open in a process that maps the segment already shares
// that mapping only while the mapped header still equals its copy.
struct SegmentHeader {
  std::atomic<std::uint32_t> state;
  std::uint32_t layout_version;
  std::uint64_t magic;
  std::uint32_t kind;
  char type_code;
  std::uint8_t flags;
  std::uint16_t reserved0;
  std::uint32_t elem_size;
  std::uint32_t elem_align;
  std::uint64_t count;
  std::uint64_t body_offset;
  std::uint64_t body_size;
  std::uint64_t type_hash;
  std::int32_t creator_pid;
  std::uint32_t reserved1;
  std::uint64_t creator_start_time;
  char type_name[kTypeNameSize];
  std::uint32_t checksum;
  std::uint32_t reserved2;
  std::uint64_t generation;
  std::uint64_t created_ns;
  std::uint8_t reserved3[256 - 168];
};
static_assert(sizeof(SegmentHeader) == 256, "the segment header layout is fixed at 256 bytes");
static_assert(offsetof(SegmentHeader, checksum) == 144 && offsetof(SegmentHeader, reserved2) == 148,
              "the checksum covers bytes [4, 144) and [148, 256)");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free,
              "the header's state word must be a lock-free atomic to be shared between processes");

inline constexpr std::size_t kHeaderSize = sizeof(SegmentHeader);

// Which processes have a named object open. Layout (1024 bytes at offset kHeaderSize; every byte
// may be written by any process that maps the segment, so readers trust none of it):
//   slots     one per attached process: pid << 32 | (the low 32 bits of its start time), 0 when
//             free. A process claims a free slot with one CAS when it maps the object (open,
//             create, or fork of a process that has it mapped) and frees it with one CAS when
//             its last handle goes; a process SIGKILLed in between leaves its slot, which every
//             reader judges by the liveness of (pid, start time) and frees (CAS) when it is dead.
//             A slot is claimed or not: no instruction leaves half of one.
//   overflow  attaches that found every slot held by a live process (they are not counted)
inline constexpr std::size_t kAttachSlots = 127;
struct AttachTable {
  std::atomic<std::uint64_t> slots[kAttachSlots];
  std::atomic<std::uint64_t> overflow;
};
static_assert(sizeof(AttachTable) == 1024 && std::atomic<std::uint64_t>::is_always_lock_free,
              "the attach table is 1024 bytes of lock-free 64-bit words");
inline constexpr std::size_t kAttachOffset = kHeaderSize;
//! Bytes before the earliest possible body: the header and the attach table.
inline constexpr std::size_t kPrefixSize = kHeaderSize + sizeof(AttachTable);
inline constexpr std::uint64_t attach_word(std::int32_t pid, std::uint64_t start_time) noexcept {
  return static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 32 |
         (start_time & 0xffffffffu);
}
inline constexpr std::size_t kChecksumBegin = 4;                                // after state
inline constexpr std::size_t kChecksumEnd = offsetof(SegmentHeader, checksum);  // first part ends
inline constexpr std::size_t kChecksumResume = offsetof(SegmentHeader, reserved2);  // second begins

//! FNV-1a, 32 bits, over [p, p + n), continuing from `h` (the FNV offset basis by default).
inline std::uint32_t fnv1a32(const void* p, std::size_t n, std::uint32_t h = 2166136261u) noexcept {
  auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 16777619u;
  }
  return h;
}

//! FNV-1a, 64 bits, over a NUL-terminated string.
inline std::uint64_t fnv1a64(const char* s) noexcept {
  std::uint64_t h = 14695981039346656037ull;
  for (; *s; ++s) {
    h ^= static_cast<unsigned char>(*s);
    h *= 1099511628211ull;
  }
  return h;
}

//! The checksum of every header byte but the state word and the checksum field.
inline std::uint32_t header_checksum(const SegmentHeader& h) noexcept {
  auto* p = reinterpret_cast<const unsigned char*>(&h);
  const std::uint32_t first = fnv1a32(p + kChecksumBegin, kChecksumEnd - kChecksumBegin);
  return fnv1a32(p + kChecksumResume, kHeaderSize - kChecksumResume, first);
}

}  // namespace multiproc::detail
