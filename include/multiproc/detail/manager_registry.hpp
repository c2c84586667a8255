// multiproc/detail/manager_registry.hpp — private, included by manager.hpp: your own C++ types
// served by a Manager (Python's BaseManager.register()), called by method NAME from any process,
// exec'd ones included — no function address crosses programs.
//
//   struct Counter {
//     explicit Counter(long start) : n(start) {}
//     long add(long d) { return n += d; }
//     long get() const { return n; }
//     long n;
//   };
//   // In the process that starts the Manager, before it starts (its server is forked from there):
//   mp::register_type<Counter, long>("Counter")        // constructor arguments: (long)
//       .method("add", &Counter::add)
//       .method("get", &Counter::get);
//   mp::Manager mgr;
//   mp::ObjectProxy c = mp::object(mgr, "Counter", "hits", 10L);  // creates, or opens "hits"
//   long v = c.call<long>("add", 5L);                              // 15, from any process
//
// A call sends the method's name, its arguments (Codec-encoded, as a std::tuple of their decayed
// types; a string literal or std::string_view travels as std::string) and the type names of the
// arguments and of the result asked for. The server checks them against the registered method's
// parameter and result types before it decodes anything (call<void> accepts any result and drops
// it), so a call with other types is an Error(errc::type_mismatch), never a misread value. Pass
// exactly the parameter types: add(long) wants 5L, not 5. The type names are the ABI's mangled
// names (typeid), the same in every program built with g++ or clang against the same standard
// library.
//
// Each object's calls are serialised (one at a time, whatever the number of clients; a method
// that blocks holds up the other calls to its object, not the manager). Errors:
//   - an unknown type (not registered where the manager started): Error(errc::not_found);
//   - an unknown method: Error(errc::not_found) naming the type, the object and the method;
//   - other argument or result types: Error(errc::type_mismatch) naming both signatures;
//   - arguments that do not decode: Error(errc::corrupt) naming the method;
//   - an exception thrown by a method (or its result's encoding): RemoteError in the caller, with
//     the exception's type and what(); the object and the manager carry on;
//   - an exception thrown by the constructor: open (object()) throws Error(errc::remote_error)
//     with the type and message, and no object is made.
// A method that throws halfway through leaves the object as the method left it (it is the type's
// own business to be exception-safe); a client killed mid-call does not stop the call, which the
// server runs whole.
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/manager_containers.hpp>  // to_bytes, from_bytes
#include <multiproc/detail/manager_object.hpp>
#include <multiproc/error.hpp>
#include <multiproc/manager.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace multiproc {

namespace detail::manager {

//! How an argument travels: its decayed type; C strings and string views as std::string.
template <class A, class D = std::decay_t<A>>
using wire_t = std::conditional_t<std::is_same_v<D, const char*> || std::is_same_v<D, char*> ||
                                      std::is_same_v<D, std::string_view>,
                                  std::string, D>;

//! One registered method, type-erased. invoke(self, args) decodes the arguments (throwing
//! Error(errc::corrupt)), calls the method and returns the reply: status 0 then the encoded
//! result, or what remote_error_reply makes of an exception the method threw.
struct Method {
  std::string args_type;    // mangled std::tuple<parameter types, decayed>
  std::string result_type;  // mangled result type, decayed ("v" for void)
  std::function<std::string(void* self, std::string_view args)> invoke;
};

//! A registered type: its name, constructor and methods (built by register_type, read by the
//! server, which is forked after registration).
struct TypeTable {
  std::string type;
  std::string ctor_args_type;  // mangled std::tuple<constructor parameter types>
  //! Decodes the constructor's arguments (Error(errc::corrupt)) and makes the object (throws
  //! what the constructor throws).
  std::function<std::shared_ptr<void>(std::string_view args)> construct;
  std::map<std::string, Method, std::less<>> methods;
};

//! The reply for an exception a method threw: status 1, then encode_fields(type, what()).
std::string remote_error_reply(std::exception_ptr e);
//! The reply of a method that returned: status 0, then `result`.
std::string ok_reply(std::string_view result = {});

//! The Object of a registered type (src/manager/registry_objects.cpp): creates the object from
//! `create_args` (encode_fields(args type, encoded arguments)).
std::unique_ptr<Object> make_registered_object(std::shared_ptr<const TypeTable> table,
                                               std::string_view name, std::string_view create_args);
//! The wire request of a call: encode_fields(method, args type, result type, encoded arguments).
std::string call_request(std::string_view method, const char* args_type, const char* result_type,
                         std::string_view args);
//! The create arguments of object(): encode_fields(args type, encoded arguments).
std::string create_request(const char* args_type, std::string_view args);
//! Operation numbers of a registered type's object.
inline constexpr std::uint32_t kCallMethod = 1;

//! Checks the type's name and registers the table as a kind (src/manager/registry.cpp).
void register_table(const std::shared_ptr<TypeTable>& table);
void add_method(TypeTable& table, std::string name, Method m);
//! Sends a call; returns the encoded result. Throws: RemoteError for an exception in the method;
//! the Errors listed at the top.
std::string call_method(const ObjectRef& ref, std::string_view method, const char* args_type,
                        const char* result_type, std::string_view args);

template <class T, class R, class... P, class F, std::size_t... I>
decltype(auto) apply_method(T& self, F f, std::tuple<std::decay_t<P>...>& args,
                            std::index_sequence<I...>) {
  return (self.*f)(static_cast<P&&>(std::get<I>(args))...);  // by value and && params: moved
}

template <class T, class R, class... P, class F>
Method make_method(F f) {
  static_assert((has_codec_v<std::decay_t<P>> && ...),
                "register_type: every parameter of a method needs a multiproc::Codec (codec.hpp)");
  static_assert(std::is_void_v<R> || has_codec_v<std::decay_t<R>>,
                "register_type: a method's result needs a multiproc::Codec (codec.hpp), or void");
  using Args = std::tuple<std::decay_t<P>...>;
  Method m;
  m.args_type = typeid(Args).name();
  m.result_type = typeid(std::conditional_t<std::is_void_v<R>, void, std::decay_t<R>>).name();
  m.invoke = [f](void* self, std::string_view bytes) -> std::string {
    Args args = from_bytes<Args>(bytes);
    T& obj = *static_cast<T*>(self);
    try {
      if constexpr (std::is_void_v<R>) {
        apply_method<T, R, P...>(obj, f, args, std::index_sequence_for<P...>{});
        return ok_reply();
      } else {
        const std::decay_t<R> r =
            apply_method<T, R, P...>(obj, f, args, std::index_sequence_for<P...>{});
        return ok_reply(to_bytes(r));
      }
    } catch (...) {
      return remote_error_reply(std::current_exception());
    }
  };
  return m;
}

template <class T, class... CtorArgs>
std::shared_ptr<TypeTable> make_table(std::string type) {
  static_assert(std::is_constructible_v<T, std::decay_t<CtorArgs>&...>,
                "register_type<T, CtorArgs...>: T must be constructible from CtorArgs...");
  static_assert((has_codec_v<std::decay_t<CtorArgs>> && ...),
                "register_type<T, CtorArgs...>: every constructor argument needs a "
                "multiproc::Codec (codec.hpp)");
  using Args = std::tuple<std::decay_t<CtorArgs>...>;
  auto table = std::make_shared<TypeTable>();
  table->type = std::move(type);
  table->ctor_args_type = typeid(Args).name();
  table->construct = [](std::string_view bytes) -> std::shared_ptr<void> {
    Args args = from_bytes<Args>(bytes);
    return std::apply([](auto&... a) { return std::shared_ptr<void>(std::make_shared<T>(a...)); },
                      args);
  };
  return table;
}

}  // namespace detail::manager

//! What register_type returns: adds methods to a registered type (chainable).
template <class T>
class TypeRegistration {
 public:
  explicit TypeRegistration(std::shared_ptr<detail::manager::TypeTable> table)
      : table_(std::move(table)) {}

  //! Effects: serves `f` as the method `name` of the type (overloads: take the one you mean with
  //! static_cast). Requires: a Codec for every parameter and the result (decayed), or a void
  //! result. Only methods added before the Manager starts are served.
  //! Throws: Error(errc::already_exists) if `name` is taken; Error(errc::invalid_argument) if
  //! it is empty.
  template <class R, class... P>
  TypeRegistration& method(std::string name, R (T::*f)(P...)) {
    return add<R, P...>(std::move(name), f);
  }
  template <class R, class... P>
  TypeRegistration& method(std::string name, R (T::*f)(P...) const) {
    return add<R, P...>(std::move(name), f);
  }
  template <class R, class... P>
  TypeRegistration& method(std::string name, R (T::*f)(P...) noexcept) {
    return add<R, P...>(std::move(name), f);
  }
  template <class R, class... P>
  TypeRegistration& method(std::string name, R (T::*f)(P...) const noexcept) {
    return add<R, P...>(std::move(name), f);
  }

  const std::string& type() const noexcept { return table_->type; }

 private:
  template <class R, class... P, class F>
  TypeRegistration& add(std::string name, F f) {
    detail::manager::add_method(*table_, std::move(name),
                                detail::manager::make_method<T, R, P...>(f));
    return *this;
  }

  std::shared_ptr<detail::manager::TypeTable> table_;
};

//! Requires: T constructible from CtorArgs... (each with a Codec, decayed).
//! Effects: registers T as the type `type` of every Manager this process starts from now on
//! (their servers are forked from it); object() makes one with constructor arguments of exactly
//! the types CtorArgs... (decayed; C strings as std::string). Not thread-safe with other
//! registrations of methods: register at start-up.
//! Throws: Error(errc::already_exists) if `type` is registered already or is a built-in kind
//! ("dict", "list", "namespace", "value", "queue", "lock", "event"); Error(errc::invalid_argument)
//! for an empty name.
template <class T, class... CtorArgs>
TypeRegistration<T> register_type(std::string type) {
  auto table = detail::manager::make_table<T, CtorArgs...>(std::move(type));
  detail::manager::register_table(table);
  return TypeRegistration<T>(std::move(table));
}

//! A proxy to an object of a registered type in a Manager. Copyable; copies refer to the same
//! object, and work in forked children.
class ObjectProxy {
 public:
  //! Made by object().
  explicit ObjectProxy(detail::manager::ObjectRef ref) : ref_(std::move(ref)) {}

  //! Returns: method `method` called on the object with `args` (R = void: the result is
  //! dropped). Throws: RemoteError if the method threw; the Errors listed at the top of
  //! manager_registry.hpp; Error(errc::disconnected) if the manager is gone.
  template <class R = void, class... A>
  R call(std::string_view method, const A&... args) const {
    static_assert(std::is_void_v<R> || has_codec_v<R>, "ObjectProxy::call<R>: R needs a Codec");
    using Args = std::tuple<detail::manager::wire_t<A>...>;
    static_assert((has_codec_v<detail::manager::wire_t<A>> && ...),
                  "ObjectProxy::call: every argument needs a multiproc::Codec (codec.hpp)");
    const Args t{args...};
    const std::string result = detail::manager::call_method(
        ref_, method, typeid(Args).name(), typeid(R).name(), detail::manager::to_bytes(t));
    if constexpr (!std::is_void_v<R>) return detail::manager::from_bytes<R>(result);
  }

  const std::string& name() const noexcept { return ref_.name(); }
  //! The registered type's name.
  const std::string& type() const noexcept { return ref_.kind(); }

 private:
  detail::manager::ObjectRef ref_;
};

//! Returns: a proxy to the object `name` of the registered type `type` in `manager`, created with
//! T(ctor_args...) if it does not exist yet (an existing object ignores them; an empty name makes
//! a new object with a fresh unique name).
//! Throws: Error(errc::not_found) if the manager does not know `type`; Error(errc::type_mismatch)
//! if the constructor takes other types; Error(errc::remote_error) if it threw;
//! Error(errc::wrong_kind) if `name` holds another kind of object; Error(errc::disconnected).
template <class... A>
ObjectProxy object(const Manager& manager, std::string_view type, std::string_view name,
                   const A&... ctor_args) {
  using Args = std::tuple<detail::manager::wire_t<A>...>;
  static_assert((has_codec_v<detail::manager::wire_t<A>> && ...),
                "multiproc::object: every constructor argument needs a multiproc::Codec");
  const Args t{ctor_args...};
  return ObjectProxy(detail::manager::open(
      manager, type, name,
      detail::manager::create_request(typeid(Args).name(), detail::manager::to_bytes(t))));
}

}  // namespace multiproc
