// multiproc/segment.hpp — one mapped region of shared memory holding one multiproc object.
//
// Every shared object (a value, a lock, a queue) lives in its own Segment: a validated 256-byte
// header (magic, layout version, kind, element type, count, creator) followed by the object's body.
//
// - Anonymous segments (Segment::create_anonymous) are inherited by forked children: a handle
//   captured by a lambda that a Process runs in its child refers to the same memory.
// - Named segments are opened by unrelated processes with the tags create_only, open_only and
//   open_or_create. Opening validates the header and throws a multiproc::Error that names the
//   object and what was wrong — a missing name, a taken name, another kind or element type, a
//   too-short or corrupted segment — never undefined behaviour.
//
// Lifetime of names (the same for every primitive built on Segment): a named object belongs to the
// process that created it. When the last handle to it in the creating process is destroyed, the
// name is removed; processes that already have it open keep using it, and copies destroyed in
// forked children never remove it. A name made with multiproc::persistent("x") keeps its name until
// multiproc::remove("x"). If the creator died without cleaning up (SIGKILL), the next create of the
// same name notices that the creator is gone and reuses the name, so a crashed server restarts.
//
// Handles are cheap: copies share one mapping (a reference count local to the process). A handle
// may be used from several threads; the objects built on it say what they allow.
//
// Names map to /dev/shm/mp.<prefix><name>; a name is 1..200 characters without '/' or NUL. The
// prefix (empty by default) is the application's: the MULTIPROC_PREFIX environment variable or
// set_name_prefix(), so that two instances or users of one program do not collide.
//
// Introspection (named objects): attach_count()/attached_pids() say which processes have the
// object mapped — from a table of (pid, start time) in the segment, judged by liveness, so a
// SIGKILLed process stops counting; a forked child counts from the fork (it inherits the mapping;
// one that then execs still counts until it exits); at most 127 are tracked. stale() says whether
// the name now refers to another object (a restarted server reclaimed it) or to none;
// generation() counts reclaims of the name. The tool multiproc-ls lists every object.
//
// Opening a name checks its file: it must belong to this process's effective user and not be
// writable by group or others, unless the name is given as trust_owner(name, creator) (the
// creator's user may own it, its group may write it) or allow_foreign(name) (anything goes).
// Sharing across users on purpose: the creator gives the object a mode and group,
// with_permissions(name, {0660, group}); the others open it as trust_owner(name, creator). Locks
// work across users (futexes and the kernel's robust-list release do not look at uids); liveness
// checks of another user's processes use kill(pid, 0) (EPERM counts as alive) and
// /proc/<pid>/stat, so they work unless /proc is mounted with hidepid, where another user's live
// process is "unknown" and its names are never reclaimed as stale. Only the file's owner (or
// root) may remove a name: /dev/shm is sticky.
//
// Hostile writers. The header is read and validated once, when a process maps the segment, and
// kept as a private copy: a later write to the mapped header changes nothing in the handles that
// have it open; a later open (in any process) validates the header as it finds it then. A file
// truncated by another process while it is mapped here does not kill this process: multiproc's
// SIGBUS handler (installed when the first segment is mapped, chaining to any handler installed
// before; MULTIPROC_NO_SIGBUS_HANDLER=1 in the environment keeps it out) maps zero pages over the
// lost part, which then reads as zeros in this process only; truncated() turns true, every open
// of the object in this process is Error(errc::corrupt) "truncated by another process", and the
// last handle says so on stderr (and still removes a name it owns).
#pragma once

#include <multiproc/detail/cache_line.hpp>
#include <multiproc/error.hpp>
#include <multiproc/typecode.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <sys/types.h>
#include <vector>

namespace multiproc {

//! Tags selecting how a named object is reached. create_only fails if the name exists (unless its
//! creator is dead and it is not persistent), open_only fails if it does not, open_or_create does
//! whichever is needed.
struct create_only_t {
  explicit constexpr create_only_t() = default;
};
struct open_only_t {
  explicit constexpr open_only_t() = default;
};
struct open_or_create_t {
  explicit constexpr open_or_create_t() = default;
};
inline constexpr create_only_t create_only{};
inline constexpr open_only_t open_only{};
inline constexpr open_or_create_t open_or_create{};

//! Who may open a named object besides its creator's user, set when it is created: the mode of its
//! file and its group. multiproc opens every object read-write, so group and others get both or
//! neither: the mode is 0600 (the default), 0660, 0606 or 0666. Applied with fchmod/fchown to the
//! new file before its name appears (the umask plays no part; changing the group needs root or
//! membership of it, else Error(EPERM) at creation). Openers of another user still need
//! trust_owner(name, creator) (below).
class Permissions {
 public:
  //! 0600, the creator's group.
  Permissions() noexcept = default;
  //! Throws: Error(errc::invalid_argument) for a mode other than 0600, 0660, 0606, 0666.
  explicit Permissions(unsigned mode);
  //! Also gives the file to `group` (a gid, or a group name resolved now: Error(errc::not_found)
  //! for an unknown name).
  Permissions(unsigned mode, gid_t group);
  Permissions(unsigned mode, const std::string& group);

  unsigned mode() const noexcept { return mode_; }
  //! The group the file is given, or none (the creator's effective group).
  std::optional<gid_t> group() const noexcept { return group_; }

 private:
  unsigned mode_ = 0600;
  std::optional<gid_t> group_;
};

//! The name of a shared object, e.g. "web.jobs". Implicit from strings; persistent("x") marks a name
//! that outlives its creator's handles, allow_foreign(name) one that may be opened although another
//! user owns it or others may write it. Throws Error(errc::invalid_argument) for an empty name, one
//! longer than 200 characters, or one containing '/' or NUL.
class Name {
 public:
  Name(const char* name) : Name(std::string_view(name ? name : "")) {}  // NOLINT: implicit by design
  Name(const std::string& name) : Name(std::string_view(name)) {}       // NOLINT
  Name(std::string_view name);                                          // NOLINT

  const std::string& str() const noexcept { return name_; }
  bool persistent() const noexcept { return persistent_; }
  bool foreign_allowed() const noexcept { return foreign_allowed_; }
  //! What a create through this name applies (with_permissions; default 0600).
  const Permissions& permissions() const noexcept { return permissions_; }
  //! The other user whose objects an open through this name accepts (trust_owner), if any.
  std::optional<uid_t> trusted_owner() const noexcept { return trusted_owner_; }
  //! The prefix this name is spelled with (with_prefix), or nullptr: the one in effect.
  const std::string* fixed_prefix() const noexcept { return prefix_ ? &*prefix_ : nullptr; }

 private:
  friend Name persistent(std::string_view name);
  friend Name allow_foreign(Name name);
  friend Name with_permissions(Name name, const Permissions& permissions);
  friend Name trust_owner(Name name, uid_t owner);
  friend Name with_prefix(Name name, std::string_view prefix);
  std::string name_;
  std::optional<std::string> prefix_;
  bool persistent_ = false;
  bool foreign_allowed_ = false;
  Permissions permissions_;
  std::optional<uid_t> trusted_owner_;
};

//! The same name, created with `permissions` when a create_only / open_or_create through it
//! creates the object (an open ignores them). Composes with persistent() and trust_owner().
//!   mp::SharedValue<long> hits(mp::create_only,
//!                              mp::with_permissions("web.hits", {0660, "www-data"}));
Name with_permissions(Name name, const Permissions& permissions);

//! The same name, also opening an object whose file belongs to `owner` (a uid, or a user name
//! resolved now: Error(errc::not_found) for an unknown one) and that its group may write — what
//! with_permissions makes. A file others may write (mode o+w) is still refused, as is one of any
//! third user. Composes with persistent() and with_permissions():
//!   mp::SharedValue<long> hits(mp::open_only, mp::trust_owner("web.hits", "root"));
Name trust_owner(Name name, uid_t owner);
Name trust_owner(Name name, const std::string& user);

//! A name whose object stays in /dev/shm after its creator's handles are gone, until remove(name).
Name persistent(std::string_view name);

//! The same name, allowed to open an object whose file another user owns or that is writable by
//! group or others. Without it, opening such a name (open_only, and open_or_create finding it) is
//! an Error with code EACCES (std::errc::permission_denied) naming the owner and the mode: such a
//! user can read everything the object holds and, by writing it, make operations on it fail with
//! Error(errc::corrupt). Objects multiproc creates are the creator's, mode 0600 unless made with
//! with_permissions(); trust_owner() is the narrower opt-in for one other owner. Composes with
//! persistent: allow_foreign(persistent("x")).
Name allow_foreign(Name name);

//! The same name, spelled with `prefix` rather than the prefix in effect when it is used: a name
//! made under one prefix, reached after set_name_prefix() changed it (a Manager's connections do
//! this). Throws: as set_name_prefix for an invalid prefix.
Name with_prefix(Name name, std::string_view prefix);

//! Sets the application's name prefix: names reached from now on in this process are spelled
//! /dev/shm/mp.<prefix><name> (handles already open keep their file). The default is the
//! MULTIPROC_PREFIX environment variable, read at the first use of a name, else empty. A child
//! exec'd by Process gets the prefix in effect at its start() as its MULTIPROC_PREFIX (unless its
//! Command's environment sets one), so it reaches the objects handed to it. Every named object — values, arrays, locks, queues, SharedMemory, the
//! lock a value records by name — goes through it. Include a separator of your own: "blue." gives
//! mp.blue.counter. Throws: Error(errc::invalid_argument) for a prefix longer than 48 characters
//! or containing '/' or NUL (an invalid MULTIPROC_PREFIX: at the first use of a name).
void set_name_prefix(std::string_view prefix);
//! The prefix in effect. Throws: as set_name_prefix, for an invalid MULTIPROC_PREFIX.
std::string name_prefix();

//! Removes the name (processes that have the object open keep using it).
//! Returns: true if a name was removed, false if there was none. Throws: Error if the OS refuses.
bool remove(const Name& name);

//! Whether an object of that name exists now (a snapshot).
bool exists(const Name& name);

//! The kinds of object a segment can hold; stored in its header and checked on open.
enum class Kind : std::uint32_t {
  value = 1,
  raw_value,
  array,
  raw_array,
  mutex,
  recursive_mutex,
  semaphore,
  bounded_semaphore,
  condition,
  event,
  barrier,
  queue,
  joinable_queue,
  simple_queue,
  pipe,
  shared_memory = 17,  //!< 16 was Pool, never stored; the numbers are on disk, so keep them
  shareable_list,
  user = 1000,  //!< first value free for objects users build on Segment themselves
};

//! "SharedValue", "Mutex", "Queue", ... ; "Segment#<n>" for a kind this build does not know.
std::string kind_name(Kind kind);

//! The element type of a shared object: its Python type code (0 outside the table), size,
//! alignment, a fingerprint that tells types apart across processes, and a readable name.
struct ElementType {
  char code = 0;
  std::uint32_t size = 0;
  std::uint32_t alignment = 0;
  std::uint64_t hash = 0;
  std::string name;

  //! Describes T: table types by their code, other types by their mangled name.
  template <class T>
  static ElementType of();
  //! "int ('i', 4 bytes)" or "Point (16 bytes)".
  std::string describe() const;
};

namespace detail {
struct SegmentHeader;
class SegmentImpl;
ElementType make_element_type(char code, std::size_t size, std::size_t alignment,
                              const std::type_info& type);
}  // namespace detail

template <class T>
ElementType ElementType::of() {
  if constexpr (std::is_void_v<T>) {
    return {};
  } else {
    return detail::make_element_type(detail::typecode_or_zero<T>(), sizeof(T), alignof(T),
                                     typeid(T));
  }
}

//! What a segment holds: used to create one, and (kind and element) to check one on open.
struct SegmentLayout {
  Kind kind = Kind::user;
  ElementType element;           //!< empty (size 0) for kinds without an element type
  std::uint64_t count = 0;       //!< elements, capacity, or 1 for a value
  std::size_t body_size = 0;     //!< bytes of the body
  std::size_t body_alignment = detail::kCacheLine;
};

//! A handle to one mapped segment. Default-constructed handles are empty.
class Segment {
 public:
  //! Initialises the body in place. Runs once, in the creator, before anyone can open the object;
  //! the body is zero-filled when it runs. If it throws, the object is not created.
  using Init = std::function<void(void* body)>;

  Segment() noexcept = default;

  //! Creates an unnamed segment, shared with children forked after this call.
  //! Throws: Error(errc::invalid_argument) for an absurd size; Error from errno if mapping fails.
  static Segment create_anonymous(const SegmentLayout& layout, const Init& init);

  //! Creates a named segment. Throws: Error(errc::already_exists) if the name is taken by a live
  //! creator or a persistent object (the message names the creator's pid and program, and whether
  //! it runs), Error(errc::invalid_argument) for an absurd size or too little space in /dev/shm,
  //! Error from errno otherwise.
  static Segment create(const Name& name, const SegmentLayout& layout, const Init& init);

  //! Opens a named segment and validates its header against `kind` and, when `element` is given,
  //! its element type. (Names are linked only once their object is complete, so a segment still
  //! marked as initialising is foreign or damaged: it is waited for up to 2 s, then refused.)
  //! Throws: Error(errc::not_found), Error(errc::wrong_kind), Error(errc::type_mismatch),
  //! Error(errc::corrupt) for a short, foreign or damaged segment, Error from errno otherwise.
  static Segment open(const Name& name, Kind kind, const ElementType* element);

  //! Opens the name if it exists (validating kind, element type and count/body size against
  //! `layout`), else creates it. Sets *created when given. Throws as open() and create().
  static Segment open_or_create(const Name& name, const SegmentLayout& layout, const Init& init,
                                bool* created = nullptr);

  explicit operator bool() const noexcept { return impl_ != nullptr; }

  void* body() const noexcept { return body_; }
  const detail::SegmentHeader& header() const noexcept;
  Kind kind() const noexcept;
  std::uint64_t count() const noexcept;
  std::size_t body_size() const noexcept;
  //! Maps every page of the body into this process now, writable, instead of one page fault at a
  //! time on first use (a hint: does nothing on kernels before 5.14). For buffers about to stream
  //! a lot of data, like a Pool's task pipes.
  void prefault() const noexcept;
  bool named() const noexcept;
  //! The name given at creation or open; empty for an anonymous segment.
  const std::string& name() const noexcept;
  //! The prefix its file is spelled with (/dev/shm/mp.<prefix><name>): its Name's with_prefix,
  //! else the one in effect when it was created or opened; empty for an anonymous segment.
  std::string prefix() const;
  //! Whether destroying the last handle in this process removes the name.
  bool owns_name() const noexcept;

  //! Which file a named segment is (device and inode; zeros when anonymous), so that its name can
  //! later be removed only while it still refers to this object.
  struct FileId {
    std::uint64_t dev = 0;
    std::uint64_t ino = 0;
  };
  FileId file_id() const noexcept;

  //! Removes `name` now if it still refers to the object `id`, not a successor created under the
  //! same name since (the check and the removal are one step for every remover that uses
  //! multiproc: they serialise on a lock of the file). Processes that have the object open keep
  //! using it; its creator's last handle then has no name to remove. Returns: true if it removed
  //! the name, false if the name was gone or refers to another object. Throws: Error if the OS
  //! refuses.
  static bool unlink(const Name& name, FileId id);

  //! Whether the name no longer refers to this object: it was removed, or it now holds another
  //! object (e.g. a restarted server reclaimed it from its dead creator, and a process still
  //! using this handle would work on memory nobody else opens). False for an anonymous segment.
  //! A snapshot: one stat() of the name. Throws: Error if the OS refuses the stat (not ENOENT).
  bool stale() const;
  //! 1 when the name was created afresh; n + 1 when its create reclaimed the name from a dead
  //! creator's object of generation n. 1 for an anonymous segment, 0 for an empty handle.
  std::uint64_t generation() const noexcept;
  //! The processes that have this named object mapped now, ascending (a snapshot): creators,
  //! openers and their forked children, until their last handle goes or they die (a SIGKILLed
  //! one is dropped, and its slot freed, here). A process /proc does not show counts as attached.
  //! At most 127 are tracked. Empty for an anonymous segment (it is shared only by forking).
  //! Throws: std::bad_alloc only.
  std::vector<int> attached_pids() const;
  //! attached_pids().size().
  std::size_t attach_count() const { return attached_pids().size(); }

  //! "SharedValue<int> 'counter'" or "Queue<std::string> (anonymous)": used in every message.
  const std::string& describe() const noexcept;

  //! Throws Error(code, describe() + ": " + message).
  [[noreturn]] void fail(errc code, const std::string& message) const;

  //! Throws Error(errc::corrupt) unless the header's body size is `expected` (a check primitives
  //! make after open: the count in the header must agree with the body it claims).
  void expect_body_size(std::size_t expected) const;

  //! Whether this process found the segment's file shorter than its mapping (another process
  //! truncated it): the lost part of the body reads as zeros here, written bytes stay private.
  bool truncated() const noexcept;
  //! Throws Error(errc::corrupt) naming the object when truncated().
  void check_intact() const;

  //! Records that the body holds a robust lock whose holder's thread id is kept in `owner`. While
  //! a thread of this process holds such a lock, destroying the last handle keeps the mapping
  //! (with a warning) instead of unmapping it: glibc's robust-lock list points into it, and the
  //! kernel walks that list to release the thread's locks when it dies.
  void track_lock_owner(const std::atomic<std::int32_t>* owner) const;

 private:
  explicit Segment(std::shared_ptr<detail::SegmentImpl> impl);
  std::shared_ptr<detail::SegmentImpl> impl_;
  void* body_ = nullptr;
};

}  // namespace multiproc
