// multiproc/manager.hpp — a server process that owns shared containers and objects, reached
// through proxies from any process (Python's multiprocessing.Manager()).
//
//   mp::Manager m;                                        // forks the manager's server process
//   auto words = m.dict<std::string, long>("words");      // same name -> same dict, anywhere
//   mp::Process p([words] { words.add("the", 1); });     // proxies copy into forked children
//   p.start(); p.join();
//   words.transform("the", [](long n) { return n * 2; }); // atomic read-modify-write
//   std::optional<long> n = words.get("the");             // 2
//   // An unrelated program: mp::Manager(mp::open_only, m.name()).dict<std::string, long>("words")
//
// Manager() and Manager(create_only, name) fork the server from the calling process; it holds
// every object, each under a name, and serves each client thread on a connection of its own (a
// shared-memory Pipe: one round trip per call, one to two microseconds on an idle machine).
// Manager(open_only, name) connects to a manager started by another process, e.g. an exec'd
// program. Containers (detail/manager_containers.hpp): dict<K, V>, list<T>, Namespace,
// Value<T>, with Python's operations and keys and values of any type with a Codec (codec.hpp),
// kept in the server as their encodings (two keys are the same key iff their encodings are
// equal bytes). Each opens the object `name`, making it if needed (an empty name: a new object
// with a fresh name, which proxy.name() tells). The proxies' transform(key, f) / add(key, delta)
// are atomic read-modify-writes (compare-and-swap on a per-entry version; f runs in the caller
// and may run more than once under contention), so `d[k] += 1` needs no lock. Queue, Lock and
// Event: detail/manager_sync.hpp; your own types: detail/manager_registry.hpp.
//
// Who may use it: proxies and Manager copies are copyable and thread-safe; a forked child (by
// Process or a raw fork) uses the copies it inherited, over a connection of its own made at its
// first call; an unrelated process opens the manager by name. A thread's connection (a Pipe
// named <name>.c.<pid>.<start>.<n> only while it is set up) closes when the thread ends.
//
// Names: a manager `m` uses the names `m` and `m.listen` (the creator's; removed by shutdown()
// or its last handle, as for any named object), and no other name once connections are set up.
// The manager belongs to the process that started it: shutdown(), or destroying the last copy of
// the Manager there, stops and reaps the server. Kinds (containers, registered types) are those
// registered in the starting process when it starts the manager.
//
// Crashes (what survives what):
//   - A client killed (SIGKILL) at any instruction, mid-call or mid-send of a large value: its
//     call is applied whole or not at all (the server acts only on complete messages; an object
//     checks everything before it changes anything), other clients are not held up, and what it
//     held in the server (a lock) is released when its session ends (the server looks every
//     100 ms). A stopped client (SIGSTOP) holds up nobody but itself.
//   - The manager's server killed: every call waiting for a reply, and every later call, throws
//     Error(errc::disconnected) naming the manager — within about 20 ms (one waiting thread of a
//     process looks that often and wakes the others; at most about 120 ms, when that thread has
//     just had its answer), never a hang. Its data is lost. shutdown() then reaps it and removes
//     the names.
//   - The starting process killed: the server notices within about 100 ms, removes the names and
//     exits (its data is lost); clients then get errc::disconnected.
//   - A client killed while setting up its connection: the pipe's name is removed by the server
//     within about a second (the pid and start time in the name tell that its creator is gone).
//
// Persistence: the data lives in the server process: a manager that stops (shutdown, a crash)
// loses it. save(path) writes its dicts, lists, Namespaces, Values, Queues and Events to a file
// (atomically: temporary file + rename); load(path) puts them into a manager (a new one, after a
// restart). Saving is explicit (call it as often as you can afford): what changed since the last
// save dies with the manager.
//
// Errors: Error(errc::disconnected) as above; Error(errc::wrong_kind) opening a name that holds
// another kind (naming both); Error(errc::type_mismatch) opening a container with other types
// than it was made with, or reading a Namespace field as another type;
// Error(errc::invalid_argument) for a list index out of range (naming the list, the index and
// the size); Error(errc::not_found) opening a manager nobody started; an Error an object throws
// in the server comes back with its code and message. Limits: a message (a value, a whole
// keys()/items() reply) of any size streams through the connection; everything is held in the
// server's memory.
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/manager_object.hpp>
#include <multiproc/error.hpp>
#include <multiproc/segment.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <sys/types.h>

namespace multiproc {

template <class K, class V>
class DictProxy;
template <class T>
class ListProxy;
class NamespaceProxy;
template <class T>
class ValueProxy;
template <class T>
class QueueProxy;
class LockProxy;
class EventProxy;
class ObjectProxy;

namespace detail::manager {
struct ManagerState;  // src/manager/
}

class Manager {
 public:
  //! Effects: starts a manager under a fresh name ("manager.<pid>.<n>", see name()): its server
  //! process is forked from this one; children forked later reach it through copies of this
  //! Manager and of its proxies, other programs by that name.
  //! Throws: Error as Process::start and as creating a named object.
  Manager();
  //! Effects: starts a manager under `name`; unrelated processes open it with (open_only, name).
  //! Throws: Error(errc::already_exists) if `name` (or `name`.listen) is taken; as Manager().
  Manager(create_only_t, std::string name);
  //! Effects: connects to the manager `name` started by another process.
  //! Throws: Error(errc::not_found) if there is none; Error(errc::disconnected) if its server is
  //! gone; Error as opening a named object (permissions).
  Manager(open_only_t, std::string name);
  //! Copies share the manager (a copy in a forked child connects on its own).
  //! The last copy in the process that started it: shutdown(). Elsewhere: disconnects. Never
  //! throws.
  ~Manager();
  Manager(const Manager&) = default;
  Manager& operator=(const Manager&) = default;
  Manager(Manager&&) noexcept = default;
  Manager& operator=(Manager&&) noexcept = default;

  //! Effects (starting process only): stops the server, reaps it, removes its names; proxies then
  //! fail with Error(errc::disconnected). Idempotent.
  void shutdown();
  const std::string& name() const noexcept;
  //! The manager's server process.
  pid_t pid() const noexcept;

  //! Effects: writes every dict, list, Namespace, Value, Queue (its items) and Event (its flag)
  //! of the manager (their names, types
  //! and contents) to the file `path`, atomically: a temporary file next to it, then a rename,
  //! so `path` holds the old file or the new one, whole. Each object is one consistent snapshot
  //! (taken under its own lock); objects are not frozen together, so a save while others write
  //! may catch one object before and another after a change. Locks and registered types are not
  //! saved.
  //! Throws: Error from errno naming the file; Error(errc::disconnected).
  void save(const std::string& path) const;
  //! Effects: for each object in the file `path` (written by save(), by any manager): opens or
  //! makes the object of that name and replaces its contents with the saved ones. The whole file
  //! is read and checked first; then objects are loaded one by one, each whole.
  //! Throws: Error from errno naming the file; Error(errc::corrupt) for a file save() did not
  //! write, or one changed since (a 64-bit check of its contents; nothing loaded);
  //! Error(errc::wrong_kind) / Error(errc::type_mismatch) when a name
  //! holds another kind or types (the objects before it in the file are loaded).
  void load(const std::string& path) const;

  // Containers (detail/manager_containers.hpp). Same name -> same object, from any process;
  // an empty name makes a new object with a fresh unique name (proxy.name() tells it).
  template <class K, class V>
  DictProxy<K, V> dict(std::string_view name = {}) const;
  template <class T>
  ListProxy<T> list(std::string_view name = {}) const;
  NamespaceProxy Namespace(std::string_view name = {}) const;
  template <class T>
  ValueProxy<T> Value(std::string_view name = {}, const T& initial = T{}) const;

  // Synchronisation (detail/manager_sync.hpp).
  template <class T>
  QueueProxy<T> Queue(std::string_view name = {}, std::size_t maxsize = 0) const;
  LockProxy Lock(std::string_view name = {}) const;
  EventProxy Event(std::string_view name = {}) const;

  // Registered types: see detail/manager_registry.hpp (register_type, object()).

 private:
  friend detail::manager::ObjectRef detail::manager::open(const Manager&, std::string_view,
                                                         std::string_view, std::string_view);
  std::shared_ptr<detail::manager::ManagerState> state_;
};

}  // namespace multiproc

#include <multiproc/detail/manager_containers.hpp>
#include <multiproc/detail/manager_registry.hpp>
#include <multiproc/detail/manager_sync.hpp>
