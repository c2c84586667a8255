// multiproc/manager.hpp — a server process that owns shared containers and objects, reached
// through proxies from any process (Python's multiprocessing.Manager()).
//
// SKELETON (issue 14, being built): the declarations below fix the shape. The containers (dict,
// list, Namespace, Value) are defined in detail/manager_containers.hpp; Queue, Lock, Event and
// registered types in detail/manager_sync.hpp and detail/manager_registry.hpp. The transport is in
// src/manager/. The header comment is completed with the implementation.
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
  //! Effects: starts an anonymous manager: its process is forked from this one; children forked
  //! later reach it through copies of this Manager and of its proxies.
  Manager();
  //! Effects: starts a manager under `name`; unrelated processes open it with (open_only, name).
  Manager(create_only_t, std::string name);
  //! Effects: connects to the manager `name` started by another process.
  Manager(open_only_t, std::string name);
  //! In the process that started it: shutdown(). Elsewhere: disconnects. Never throws.
  ~Manager();

  //! Effects (starting process only): stops the server, reaps it, removes its names; proxies then
  //! fail with Error(errc::disconnected). Idempotent.
  void shutdown();
  const std::string& name() const noexcept;
  //! The manager's server process.
  pid_t pid() const noexcept;

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
