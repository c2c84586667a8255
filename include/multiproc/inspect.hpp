// multiproc/inspect.hpp — looking at the named objects on this machine from outside: what the
// tool multiproc-ls prints (like ipcs), and the stale-name removal it offers (like ipcrm).
//
// Everything here only reads: files in /dev/shm are opened read-only and read with pread(), never
// mapped, so a file truncated or scribbled on meanwhile can give wrong numbers but never a crash,
// and nothing in an object changes — except remove_stale(), which removes a name.
// Any file called mp.* in /dev/shm is looked at; one that is not a multiproc object of this
// build's layout is reported as foreign or corrupt, with the reason.
#pragma once

#include <multiproc/segment.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace multiproc {

//! A process as far as /proc shows it.
enum class ProcessState : int { alive, dead, unknown };
//! "alive", "dead", "unknown".
const char* to_string(ProcessState l) noexcept;

//! A robust lock word in an object (a Mutex, or the lock of a SharedValue/SharedArray/Condition).
struct LockInfo {
  std::uint32_t word = 0;        //!< the raw futex word (holder tid | FUTEX_WAITERS | FUTEX_OWNER_DIED)
  int holder_tid = 0;            //!< 0 when free (or after a holder died and nobody took it)
  int holder_pid = 0;            //!< the holder's process (its thread group), 0 when unknown
  ProcessState holder = ProcessState::dead;  //!< of the holder thread; dead when holder_tid is 0
  bool owner_died = false;       //!< the kernel marked the word: the holder died, nobody took it yet
  bool waiters = false;          //!< someone may sleep on it (FUTEX_WAITERS, or its sleepers mark)
  //! The word names a thread that no longer runs, without the owner-died mark (the kernel did
  //! not release it: e.g. the holder's robust list was lost). The next locker still recovers it.
  bool dead_holder_unmarked = false;
  bool inconsistent = false;     //!< recovered from a dead holder and not yet marked repaired
  std::uint32_t recoveries = 0;  //!< times recovered from a dead holder (mod 2^31)
};

//! One file in /dev/shm.
struct ObjectInfo {
  enum class Status {
    ok,            //!< a multiproc object of this build's layout
    initializing,  //!< its creator has not published it yet (or died doing so)
    foreign,       //!< not a multiproc object, another layout version, or another user's unreadable file
    corrupt,       //!< looks like one, but the header is damaged
  };
  std::string file;     //!< the file name in /dev/shm: "mp." + prefix + name
  std::string name;     //!< the file name without "mp." (prefix included)
  Status status = Status::foreign;
  std::string problem;  //!< why it is not ok
  std::uint32_t uid = 0;
  std::uint32_t mode = 0;      //!< permission bits
  std::uint64_t file_size = 0;

  // From the header (status ok, and creator fields for initializing):
  Kind kind = Kind::user;
  std::string kind_name;  //!< "Queue"
  std::string type;       //!< "Queue<int>"
  ElementType element;    //!< size 0 when the kind has none
  std::uint64_t count = 0;  //!< elements, capacity, 1 for a value
  std::uint64_t body_size = 0;
  bool persistent = false;
  std::uint64_t generation = 0;
  std::uint64_t created_ns = 0;  //!< CLOCK_REALTIME at creation
  int creator_pid = 0;
  ProcessState creator = ProcessState::unknown;
  std::string creator_program;  //!< /proc/<pid>/comm while it runs, else ""
  std::vector<int> attached;    //!< live (or unknown) processes that have it mapped
  std::uint64_t attach_overflow = 0;  //!< attaches past the table's 127 slots (not listed)

  // Kind-specific snapshots, when the kind has them:
  std::optional<std::uint64_t> depth;  //!< queues: messages waiting
  std::optional<bool> closed;          //!< queues: close() was called
  std::optional<std::int64_t> value;   //!< semaphores: units; events: 0 or 1
  std::optional<LockInfo> lock;        //!< Mutex, RecursiveMutex, Condition, and a SharedValue's
                                       //!< or SharedArray's own lock
  std::string external_lock;           //!< a SharedValue/SharedArray guarded by a named Mutex

  //! Whether remove_stale() would remove it now: ok or initializing, not persistent, creator
  //! dead, nobody attached.
  bool stale() const noexcept;
};

//! "ok", "initializing", "foreign", "corrupt".
const char* to_string(ObjectInfo::Status s) noexcept;

//! Every mp.* file in /dev/shm, by file name. Throws: Error if /dev/shm cannot be listed.
std::vector<ObjectInfo> list_objects();

//! The file `file` in /dev/shm ("mp.counter"), whatever it holds. Throws: Error(errc::not_found)
//! when there is no such file; Error(errc::invalid_argument) for a name with '/'.
ObjectInfo inspect_file(const std::string& file);

//! The object `name` would reach in this process (with the current prefix), or nullopt.
std::optional<ObjectInfo> inspect(const Name& name);

//! Removes the file of `info` if, judged again at removal (under the lock of the file every
//! multiproc remover takes, and only while the name is still that file), its creator is dead,
//! it is not persistent and no live process has it mapped. Returns: whether it removed it.
//! Throws: Error if the OS refuses.
bool remove_stale(const ObjectInfo& info);

}  // namespace multiproc
