// multiproc/detail/manager_object.hpp — private: the seam between a Manager's transport and the
// objects it serves.
//
// A Manager's server process holds named objects, each of a *kind*: "dict", "list", "namespace",
// "value", "queue", "lock", "event", or a C++ type registered by the user. The transport
// (src/manager/) receives a client's request, finds the object and calls Object::call on the
// client's own server thread; the object never sees the transport. On the client side a proxy
// (DictProxy, QueueProxy, ...) holds an ObjectRef and sends (op, Codec-encoded arguments) through
// it. So a kind is two small pieces: an Object subclass registered with register_kind (server
// side) and a proxy class over ObjectRef (client side), agreeing on op numbers and encodings.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <sys/types.h>

namespace multiproc {
class Manager;
}

namespace multiproc::detail::manager {

//! A client connection as the server sees it.
class Session {
 public:
  virtual ~Session() = default;
  //! Unique within the manager's life, never 0.
  virtual std::uint64_t id() const noexcept = 0;
  //! The client's process.
  virtual pid_t pid() const noexcept = 0;
  //! Whether the client is gone (closed its connection, or died). A blocking operation (a queue
  //! get, a lock acquire, an event wait) waits in slices of at most 100 ms and gives up, with
  //! nothing taken, when this turns true.
  virtual bool gone() const = 0;
  //! gone() as it was lately: a look that may be some milliseconds old, shared with the client's
  //! other sessions — for the periodic looks of a wait that has nothing to take. Right before an
  //! operation takes anything, it asks gone().
  virtual bool gone_lately() const { return gone(); }
  //! Called by an operation with a deadline right before it changes anything (takes an item,
  //! puts one, takes a lock), under its own lock. Returns false when the client has given up on
  //! this request (its deadline passed while the server did not answer: a server stopped, or
  //! starved of CPU): the operation must then change nothing and answer as at its deadline. Once
  //! it returned true, the client waits for the answer.
  virtual bool claim() { return true; }
  //! Whether the client has given up on the request being served (see claim()): a blocking
  //! operation stops waiting when this turns true, as when gone() does.
  virtual bool abandoned() const { return false; }
};

//! A named object in the manager.
class Object {
 public:
  virtual ~Object() = default;
  //! Applies operation `op` to this object with Codec-encoded `args`, on behalf of `from`.
  //! Returns: the Codec-encoded reply. Several sessions call at once, each on its own thread: the
  //! object serialises itself. A call is applied whole or not at all — check everything, and
  //! throw, before changing anything. May block (see Session::gone).
  //! Throws: multiproc::Error, sent back to the caller, who throws an Error with the same code and
  //! message (name the object and the problem in it; the server puts "multiproc::Manager '<m>': "
  //! in front). Another exception reaches the caller as Error(errc::remote_error) with its what().
  virtual std::string call(Session& from, std::uint32_t op, std::string_view args) = 0;
  //! The session ended (closed or died): release what it held (a lock it had acquired).
  virtual void session_ended(Session& /*who*/) {}
  //! For Manager::save: the object's state as bytes (one consistent snapshot), or nullopt for a
  //! kind that is not saved (the default).
  virtual std::optional<std::string> save_state() { return std::nullopt; }
  //! For Manager::load: replaces the object's state with bytes save_state returned (in another
  //! manager, maybe). Returns false for a kind that is not saved (the default). Throws:
  //! Error(errc::corrupt) for bytes it cannot read, Error(errc::type_mismatch) for another
  //! type's; nothing is changed then.
  virtual bool load_state(std::string_view /*state*/) { return false; }
};

//! Makes an object of a kind: `name` is the object's name, `create_args` what the proxy sent
//! when it asked for the object first (e.g. a queue's capacity). Throws: multiproc::Error.
using Factory =
    std::function<std::unique_ptr<Object>(std::string_view name, std::string_view create_args)>;

//! Registers a kind in this process. Built-in kinds (the library's own) are registered the same
//! way, before the first manager starts: the containers' by Manager's constructors
//! (register_container_kinds, src/manager/); a kind whose proxy lives in a header can register at
//! static initialisation, through an inline variable of that header initialised by a call into
//! the library, so that every program that includes it has the kind before main(). A manager's
//! server serves the kinds registered in the
//! process that started it, at the time it started it (it is forked from there). Thread-safe.
//! Throws: Error(errc::already_exists) if `kind` is taken; Error(errc::invalid_argument) for an
//! empty kind.
void register_kind(std::string kind, Factory make);
//! Returns: the factory of `kind`, or nullptr. Thread-safe.
std::shared_ptr<const Factory> find_kind(std::string_view kind);

struct ClientState;  // the transport's per-manager client state (src/manager/)

//! A client's handle on one named object of a manager: what proxies hold. Copyable; copies may be
//! used from several threads and from forked children (each process talks to the manager over
//! its own connection).
class ObjectRef {
 public:
  ObjectRef() = default;
  //! Sends (op, args) to the object and returns its reply.
  //! Throws: the Error the object threw (same code and message); Error(errc::disconnected) naming
  //! the manager if its process died or shut down — within 100 ms, never a hang.
  std::string call(std::uint32_t op, std::string_view args) const;
  //! Bytes a request starts with; call_prepared fills them.
  static constexpr std::size_t kHeader = 12;
  //! As call(op, args) with `request` = kHeader bytes (any) followed by the args: saves a copy
  //! of the arguments (the proxies build their requests in place).
  std::string call_prepared(std::uint32_t op, std::string request) const;
  //! As call_prepared, giving up at `give_up` if the server has not claimed the request by then
  //! (Session::claim): returns nullopt, and the request is never applied. A request the server
  //! claimed is waited for to its answer.
  std::optional<std::string> call_until(std::uint32_t op, std::string request,
                                        std::chrono::steady_clock::time_point give_up) const;
  //! The manager's name (for messages).
  const std::string& manager_name() const noexcept;
  const std::string& name() const noexcept { return name_; }
  const std::string& kind() const noexcept { return kind_; }

 private:
  friend ObjectRef open(const Manager&, std::string_view, std::string_view, std::string_view);
  friend class multiproc::Manager;  // save() and load() talk to the server itself (id 0)
  std::shared_ptr<ClientState> client_;
  std::uint64_t id_ = 0;  // the server's id of the object
  std::string kind_;
  std::string name_;
};

//! Returns: a reference to the object `name` of `kind` in `manager`, created with `create_args`
//! if it does not exist yet (an empty name: a new object with a fresh unique name).
//! Throws: Error(errc::wrong_kind) if `name` holds another kind; Error(errc::not_found) for a kind
//! the manager's server does not know; Error(errc::disconnected) as ObjectRef::call.
ObjectRef open(const Manager& manager, std::string_view kind, std::string_view name,
               std::string_view create_args);

}  // namespace multiproc::detail::manager
