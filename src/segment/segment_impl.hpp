// Private to src/segment/: the per-process state of one mapped segment, and the steps the
// segment files share. One job per file:
//   segment.cpp   the Segment handle: anonymous create, open (map + validate), open_or_create
//   header.cpp    the header: sizing, writing, validating, waiting for publication; type names
//   publish.cpp   named create: build in an unnamed file, link under the name; stale-name reclaim
//   registry.cpp  one mapping per named object per process; mappings kept while a lock is held
//   name.cpp      Name, persistent(), allow_foreign(), remove(), exists(), Segment::unlink, the
//                 name prefix and the /dev/shm spelling of names
//   attach.cpp    the attach table: which processes have a named object mapped
//   fault_guard.cpp  the SIGBUS handler and table of mappings that survive a truncated file
#pragma once

#include <multiproc/segment.hpp>

#include <multiproc/detail/segment_header.hpp>

#include "../process/liveness.hpp"

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <sys/stat.h>
#include <sys/types.h>
#include <vector>

namespace multiproc::detail {

namespace seg {
struct FaultSlot;
}

class SegmentImpl {
 public:
  boost::interprocess::mapped_region region;
  // The header as validated when this process mapped the segment: what header(), count() and
  // body_size() answer from. Never re-read from the mapping, which any process can scribble on.
  SegmentHeader header;
  seg::FaultSlot* guard = nullptr;  // this mapping's entry in the SIGBUS table (fault_guard.cpp)
  std::string name;      // the user's name; empty when anonymous
  std::string file;      // its file in /dev/shm as reached ("mp." + prefix + name): removal and
                         // stale() use it, whatever the prefix is later
  int attach_slot = -1;  // this process's slot in the attach table (attach.cpp), -1: none
  std::uint64_t attach_word = 0;  // what this process wrote there
  std::string what;      // describe(): "SharedValue<int> 'counter'"
  bool owns_name = false;
  pid_t owner_pid = 0;   // the process whose last handle removes the name
  dev_t dev = 0;         // identity of the named object, so we never remove a successor and
  ino_t ino = 0;         // so opens in one process share one mapping
  std::vector<const std::atomic<std::int32_t>*> lock_owners;  // tid words of robust locks inside
  std::mutex lock_owners_mutex;

  SegmentImpl() = default;
  SegmentImpl(const SegmentImpl&) = delete;
  SegmentImpl& operator=(const SegmentImpl&) = delete;
  ~SegmentImpl();
  bool lock_held_in_this_process();
  //! Whether the segment's file was found shorter than this mapping (see fault_guard.cpp).
  bool truncated() const noexcept;
};

namespace seg {

namespace bip = boost::interprocess;

inline constexpr std::size_t kMaxNameLength = 200;
inline constexpr int kCreateAttempts = 8;

//! The shared-memory object name of a user's name ("mp.<prefix><name>"; Boost adds the '/').
//! Throws: Error(errc::invalid_argument) for an invalid MULTIPROC_PREFIX.
std::string shm_name(const std::string& name);
//! As above, with the name's own prefix if it has one (with_prefix).
std::string shm_name(const Name& name);
std::string shm_path(const Name& name);
//! Its path under /dev/shm.
std::string shm_path(const std::string& name);
//! The path of a file in /dev/shm ("mp.x" -> "/dev/shm/mp.x").
std::string file_path(const std::string& file);
//! Removes the file ("mp.<prefix><name>") while it is (dev, ino), serialised with the other
//! removers that check identity (name.cpp). Returns: 1 removed, 0 not (gone, or another object),
//! -errno.
int remove_if_same(const std::string& file, dev_t dev, ino_t ino);

//! Translates a Boost.Interprocess exception into an Error naming the object. (segment.cpp)
[[noreturn]] void rethrow_boost(const bip::interprocess_exception& e, const std::string& what,
                                const char* action);
inline bool is_boost_error(const bip::interprocess_exception& e, bip::error_code_t code) {
  return e.get_error_code() == code;
}

//! Copies the header at `mapped` (256 bytes) into `out`, byte for byte, without trusting it.
void copy_header(const void* mapped, SegmentHeader* out) noexcept;

//! Refuses a file (`st`: its fstat) another user owns or others may write, unless the name allows
//! it. Throws: Error(EACCES) naming the object, the owner (uid and user name) and the mode.
void check_owner(const struct stat& st, const Name& name, const std::string& what);
//! Gives a new segment's file (`fd`, not yet linked under its name) the mode and group of
//! name.permissions(). Throws: Error from errno naming the object (EPERM for a group the
//! creator may not give files to).
void apply_permissions(int fd, const Name& name, const std::string& what);

// header.cpp
std::size_t body_offset_for(const SegmentLayout& layout);
//! Total bytes of a segment, or an Error for an absurd layout.
std::size_t total_size_for(const SegmentLayout& layout, const std::string& what);
//! Initialises header and body, then publishes the segment (state word, release).
//! `generation` goes into the header (see segment_header.hpp).
void initialise(void* base, const SegmentLayout& layout, std::size_t body_offset, bool named,
                bool persistent, const Segment::Init& init, std::uint64_t generation = 1);
//! Checks a ready header against what the opener expects. Throws Error naming the object.
void validate(const SegmentHeader& h, std::size_t mapped, const std::string& what, Kind kind,
              const ElementType* element);
//! Waits until the creator publishes the header (bounded), or throws if it never will.
void wait_ready(const SegmentHeader& h, const std::string& what);

//! creator_pid is written before the header is published: read it without tearing or ordering.
inline std::int32_t relaxed_load(const std::int32_t* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}

// fault_guard.cpp
//! Enters [base, base + size) in the SIGBUS table (installing the handler on first use).
//! Throws: std::bad_alloc only.
FaultSlot* guard_mapping(void* base, std::size_t size);
//! Removes the entry; call before the range is unmapped.
void unguard_mapping(FaultSlot* slot) noexcept;
bool mapping_truncated(const FaultSlot* slot) noexcept;
void mark_truncated(FaultSlot* slot) noexcept;
//! Whether the handler is installed (not opted out with MULTIPROC_NO_SIGBUS_HANDLER).
bool fault_handler_installed() noexcept;

// registry.cpp
//! The SegmentImpl this process already maps for file (dev, ino), or nullptr.
std::shared_ptr<SegmentImpl> registered(dev_t dev, ino_t ino);
void register_impl(const std::shared_ptr<SegmentImpl>& impl);
//! A new, empty SegmentImpl whose deleter keeps the mapping while a lock in it is held.
std::shared_ptr<SegmentImpl> new_impl();

// attach.cpp
//! Claims a slot of the attach table of the mapped named segment for this process (pid and start
//! time), reusing a dead process's slot when none is free; records it in impl. Counts an overflow
//! when every slot is held by a live process. Never throws.
void attach(SegmentImpl& impl) noexcept;
//! Frees this process's slot (if this process claimed it; a forked child claims its own).
void detach(SegmentImpl& impl) noexcept;
//! Whether the process an attach word names still runs (unknown: /proc does not tell).
Liveness attach_liveness(std::uint64_t word) noexcept;
//! The live (and unknown) attached pids in a table, ascending and distinct. With `reap`, frees
//! the slots of dead processes (CAS; the table must be mapped writable).
std::vector<int> attached_pids(AttachTable& table, bool reap);

// publish.cpp
//! A sentence on who holds the name now, for the "name is taken" error: "pid 1234 (server),
//! alive", or what else is there. Never throws but std::bad_alloc.
std::string taken_by(const std::string& file);
//! The program of a process: /proc/<pid>/comm, or "" when unknown.
std::string program_of(int pid);
//! Removes the file ("mp.<...>") if it is a multiproc object whose creator is dead, not
//! persistent, and no live process has attached: checked under the same flock and identity
//! check as every remover. Returns: 1 removed, 0 not stale (or gone), -errno.
int remove_if_stale(const std::string& file);

// publish.cpp
//! Sizes that mmap could not back are an Error now, not a SIGBUS on first touch.
void check_memory(const std::string& what, std::size_t total);
//! Creates and publishes a named object; nullptr when the name is taken by a live object (or a
//! persistent one).
std::shared_ptr<SegmentImpl> try_create(const Name& name, const SegmentLayout& layout,
                                        const Segment::Init& init, const std::string& what);

}  // namespace seg
}  // namespace multiproc::detail
