// multiproc/redis/manager.hpp — the Manager's dict, list, Namespace and Value on a Redis server:
// the same proxies as multiproc::Manager (manager.hpp), reached from any host.
//
//   mp::redis::Manager m("redis://10.0.0.5:6379/0");           // or (url, "app1"), (client)
//   auto words = m.dict<std::string, long>("words");            // same name -> same dict, anywhere
//   words.add("the", 1);                                        // atomic read-modify-write
//   std::optional<long> n = words.get("the");
//   auto jobs = m.list<Job>("jobs");  jobs.append(job);  Job last = jobs.pop();   // pop(-1)
//
// Same API as the local Manager: redis::DictProxy, ListProxy, NamespaceProxy and ValueProxy have
// exactly the methods, signatures, return types and semantics of multiproc::DictProxy, ListProxy,
// NamespaceProxy and ValueProxy (detail/manager_containers.hpp) — Python's dict (insertion
// ordered) and list (negative indexes count from the end; insert and slice clamp; an index out
// of range is Error(errc::invalid_argument) naming the list, the index and the size; pop from an
// empty list too), a Namespace of typed fields (read as another type: Error(errc::type_mismatch)
// naming both), and transform/add as atomic read-modify-writes: f runs in the caller on the value
// it read, and the result is stored only if the value on the server is still those bytes (a Lua
// compare-and-set), else f runs again on the new value — so f may run more than once, and no
// update is lost. A program switches by changing the Manager's constructor. Queue, Lock and Event
// are redis::Queue (redis/queue.hpp) and the objects of redis/sync.hpp.
//
// Storage (keys under "mp:manager" — "mp:manager/<app>" for Manager(url, app), so that several
// applications share a server; <name> is any bytes):
//   mp:manager:meta:<name>         hash {kind, types}: recorded by the first open, checked by every
//                                  later one — dict<std::string, long> "words" opened as
//                                  dict<int, long> is Error(errc::type_mismatch), as a list
//                                  Error(errc::wrong_kind), both naming it
//   mp:manager:dict:<name>         hash: Codec bytes of K -> Codec bytes of V
//   mp:manager:dict-order:<name>   sorted set: the dict's keys by insertion (keys()/items() order;
//                                  fields that another program HSETs come after, in Redis' order)
//   mp:manager:list:<name>         list of Codec bytes of T
//   mp:manager:ns:<name>           hash: field -> type name, a NUL byte, Codec bytes
//   mp:manager:value:<name>        string: Codec bytes of T
// Keys are equal when their encodings are equal bytes (as locally). Bytes that do not decode as
// the type asked for (written by another program, or a buggy codec) are Error(errc::corrupt)
// naming the object.
//
// Cost: every call is one round trip (a command, or one Lua script for multi-step operations:
// setdefault, pop, insert and pop in the middle of a list, the compare-and-set step), except
// transform/add: one read, then one compare-and-set per try. Opening is one round trip (two for a
// Value). Inserting or popping in the middle of a list moves the shorter side (O(n) on the
// server, as in Python); keys()/values()/items() are O(n) and answered whole.
//
// Crashes and connections (what survives what):
//   - Every call is atomic on the server: applied whole or not at all (a command or a script runs
//     alone; with AOF, a script's writes are logged together). A client killed mid-call — before
//     its request is complete, or after — leaves nothing half-done; it holds nothing (no locks).
//   - The data lives in Redis: it survives every client and whoever made it; it survives a
//     restart of the server only with persistence (AOF, or an RDB snapshot: what changed since the
//     last snapshot is lost). A server that does not answer: each call fails within its Options
//     (command_timeout per try, retried for reconnect_for: at most reconnect_for plus one
//     command_timeout in all) with Error(errc::disconnected), never hangs.
//   - A lost connection (server restarted, network cut) is reconnected to, with backoff. Then
//     (at-least-once, Client::command) the calls whose effect and result would be the same if run
//     twice are sent again: get, contains, size, empty, keys, values, items, slice, set, update,
//     setdefault, clear (dict and list), Namespace set/get/contains/fields, Value get/set, the
//     read step of transform/add, and opening. A retried set/update/clear may land after a later
//     write by another client (it takes effect as if issued at the retry). The others would
//     apply twice or answer wrongly, so they go out at most once (Client::command_once), and a
//     connection lost after the request was sent is Error(errc::disconnected) "outcome unknown"
//     (the call may or may not have happened; the caller decides whether to redo it): dict erase,
//     pop, transform and add (the compare-and-set step); list append, extend, set, insert, pop,
//     transform and add; Namespace erase; Value transform and add.
//
// Thread-safety and processes: Manager and proxies are cheap copyable handles, thread-safe;
// a forked child uses the copies it inherited (over connections of its own, Client); another
// program or host opens the same objects by name with a Manager on the same url and app.
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/checked_sum.hpp>
#include <multiproc/error.hpp>
#include <multiproc/redis/client.hpp>
#include <multiproc/redis/detail/manager_stores.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace multiproc::redis {

template <class K, class V>
class DictProxy;
template <class T>
class ListProxy;
class NamespaceProxy;
template <class T>
class ValueProxy;

struct ManagerOptions {
  //! Keys go under "mp:manager/<app>" instead of "mp:manager": applications that share a server
  //! each see their own objects. No ':' in it.
  std::string app;
  Options client;  //!< the connection's timeouts and reconnects
};

class Manager {
 public:
  //! Effects: a Manager of the objects on the server at `url` (connects at the first call, so the
  //! server may come up later). Throws: Error(errc::invalid_argument) for a malformed url or an
  //! app with ':'.
  explicit Manager(std::string_view url, ManagerOptions options = {});
  Manager(std::string_view url, std::string app);
  //! Effects: as above, on `client`'s server with its options (its connections are shared).
  explicit Manager(Client client, std::string app = {});

  const Client& client() const noexcept { return client_; }
  const std::string& app() const noexcept { return app_; }

  //! Opens the dict `name`, recording (first open) or checking its kind and types. An empty name:
  //! a new dict with a fresh unique name (proxy.name()).
  //! Throws: Error(errc::wrong_kind) if `name` is another kind of object (list, Namespace, Value);
  //! Error(errc::type_mismatch) if it is a dict of other types; Error(errc::disconnected).
  template <class K, class V>
  DictProxy<K, V> dict(std::string_view name = {}) const;
  template <class T>
  ListProxy<T> list(std::string_view name = {}) const;
  NamespaceProxy Namespace(std::string_view name = {}) const;
  //! A Value that does not exist yet starts as `initial` (an existing one keeps its value).
  template <class T>
  ValueProxy<T> Value(std::string_view name = {}, const T& initial = T{}) const;

  //! Effects: deletes the object `name` (its data and its record: the name may then be opened
  //! as any kind). Proxies still open on it see an empty object (an empty dict, list or
  //! Namespace; a Value's get throws Error(errc::not_found)). Returns: whether there was one.
  bool remove(std::string_view name) const;

 private:
  struct Opened {
    std::string name, what, meta;
  };
  Opened open(const char* kind, std::string_view name, const std::string& types) const;
  std::string data_key(const char* part, const std::string& name) const;
  void create_value(const Opened& o, const std::string& initial) const;

  Client client_;
  std::string app_;
  std::string base_;  // "mp:manager" or "mp:manager/<app>"
};

namespace detail {
[[noreturn]] void default_constructed_proxy();  // Error(errc::bad_state)
inline const std::string& no_name() noexcept {  // a default-constructed proxy's name()
  static const std::string none;
  return none;
}
}  // namespace detail

//! A dict on the server: Python's dict of K -> V, insertion-ordered. Every method as
//! multiproc::DictProxy (the same names, signatures and semantics); the header comment says
//! which calls are retried after a lost connection. Throws (every call):
//! Error(errc::disconnected); Error(errc::corrupt) if bytes do not decode as K or V.
template <class K, class V>
class DictProxy {
 public:
  DictProxy() = default;
  explicit DictProxy(std::shared_ptr<const detail::DictStore> store) : s_(std::move(store)) {}

  const std::string& name() const noexcept { return s_ ? s_->name() : detail::no_name(); }

  void set(const K& k, const V& v) const { s().set(redis::to_bytes(k), redis::to_bytes(v)); }
  //! Returns: the value of k, or nullopt.
  std::optional<V> get(const K& k) const {
    auto b = s().get(redis::to_bytes(k));
    if (!b) return std::nullopt;
    return value(*b);
  }
  //! Returns: the value of k, or `otherwise`.
  V get(const K& k, const V& otherwise) const {
    std::optional<V> v = get(k);
    return v ? std::move(*v) : otherwise;
  }
  bool contains(const K& k) const { return s().contains(redis::to_bytes(k)); }
  //! Returns: whether k was there.
  bool erase(const K& k) const { return s().erase(redis::to_bytes(k)); }
  std::size_t size() const { return s().size(); }
  bool empty() const { return size() == 0; }
  //! Snapshots, in insertion order.
  std::vector<K> keys() const {
    std::vector<K> out;
    for (const std::string& b : s().keys()) out.push_back(key(b));
    return out;
  }
  std::vector<V> values() const {
    std::vector<V> out;
    for (const std::string& b : s().values()) out.push_back(value(b));
    return out;
  }
  std::vector<std::pair<K, V>> items() const {
    std::vector<std::pair<K, V>> out;
    for (const auto& [k, v] : s().items()) out.emplace_back(key(k), value(v));
    return out;
  }
  //! Effects: sets every (key, value) of `pairs` (any range of pairs), in order, as one call.
  template <class Range>
  void update(const Range& pairs) const {
    std::vector<std::pair<std::string, std::string>> raw;
    for (const auto& [k, v] : pairs) {
      raw.emplace_back(redis::to_bytes<K>(k), redis::to_bytes<V>(v));
    }
    s().update(raw);
  }
  void update(std::initializer_list<std::pair<K, V>> pairs) const {
    update<std::initializer_list<std::pair<K, V>>>(pairs);
  }
  //! Returns: the value of k; if k was absent, sets it to v first (one atomic step).
  V setdefault(const K& k, const V& v) const {
    auto had = s().setdefault(redis::to_bytes(k), redis::to_bytes(v));
    return had ? value(*had) : v;
  }
  //! Effects: removes k. Returns: its value, or nullopt if it was absent.
  std::optional<V> pop(const K& k) const {
    auto b = s().pop(redis::to_bytes(k));
    if (!b) return std::nullopt;
    return value(*b);
  }
  V pop(const K& k, const V& otherwise) const {
    std::optional<V> v = pop(k);
    return v ? std::move(*v) : otherwise;
  }
  void clear() const { s().clear(); }

  //! Atomic read-modify-write of k: sets k to f(current value, or `initial` if absent) and
  //! returns the new value. f runs in this process and may run more than once when other
  //! processes change k meanwhile (each run on the value then current); no update is lost.
  //! An exception from f propagates and changes nothing.
  template <class F>
  V transform(const K& k, F f, const V& initial = V{}) const {
    const std::string kb = redis::to_bytes(k);
    std::optional<std::string> seen = s().get(kb);
    for (;;) {
      V next = f(seen ? value(*seen) : initial);
      if (s().compare_and_set(kb, seen, redis::to_bytes(next))) return next;
    }
  }
  //! transform(k, v + delta) for an arithmetic V, from V{} when absent. Returns the new value.
  //! Throws: Error(errc::invalid_argument) when an integer sum does not fit in V (nothing is
  //! stored); as transform(). The add() of a list item and of a value does the same.
  V add(const K& k, const V& delta) const {
    return transform(k, [&delta](const V& v) { return multiproc::detail::checked_sum(v, delta); });
  }

 private:
  const detail::DictStore& s() const {
    if (!s_) detail::default_constructed_proxy();
    return *s_;
  }
  K key(std::string_view b) const { return detail::decode_as<K>(*s_, b, "a key"); }
  V value(std::string_view b) const { return detail::decode_as<V>(*s_, b, "a value"); }
  std::shared_ptr<const detail::DictStore> s_;
};

//! A list on the server: Python's list of T. Indexes are Python's: -1 is the last item. An index
//! out of range is Error(errc::invalid_argument) naming the list, the index and the size.
//! Otherwise as DictProxy (and multiproc::ListProxy).
template <class T>
class ListProxy {
 public:
  ListProxy() = default;
  explicit ListProxy(std::shared_ptr<const detail::ListStore> store) : s_(std::move(store)) {}
  const std::string& name() const noexcept { return s_ ? s_->name() : detail::no_name(); }

  void append(const T& v) const { s().append(redis::to_bytes(v)); }
  //! Effects: appends every item of `items` (any range), as one call.
  template <class Range>
  void extend(const Range& items) const {
    std::vector<std::string> raw;
    for (const auto& v : items) raw.push_back(redis::to_bytes<T>(v));
    s().extend(raw);
  }
  void extend(std::initializer_list<T> items) const { extend<std::initializer_list<T>>(items); }
  T get(std::ptrdiff_t i) const { return item(s().get(static_cast<std::int64_t>(i))); }
  void set(std::ptrdiff_t i, const T& v) const {
    s().set(static_cast<std::int64_t>(i), redis::to_bytes(v));
  }
  //! Python's insert: before index i, clamped to [0, size] (never out of range).
  void insert(std::ptrdiff_t i, const T& v) const {
    s().insert(static_cast<std::int64_t>(i), redis::to_bytes(v));
  }
  //! Removes and returns item i (the last by default). An empty list: invalid_argument.
  T pop(std::ptrdiff_t i = -1) const { return item(s().pop(static_cast<std::int64_t>(i))); }
  //! Python's l[start:stop] (negative counts from the end; clamped, never out of range).
  std::vector<T> slice(std::ptrdiff_t start, std::ptrdiff_t stop) const {
    return all(s().slice(static_cast<std::int64_t>(start), static_cast<std::int64_t>(stop)));
  }
  //! Every item (a snapshot).
  std::vector<T> items() const { return all(s().items()); }
  std::size_t size() const { return s().size(); }
  bool empty() const { return size() == 0; }
  void clear() const { s().clear(); }

  //! Atomic read-modify-write of item i: sets it to f(item) and returns the new value. As
  //! DictProxy::transform (f runs here, maybe more than once). The index is taken again at each
  //! try: when others insert or remove items meanwhile, f is rerun on the item index i holds then.
  template <class F>
  T transform(std::ptrdiff_t i, F f) const {
    const auto idx = static_cast<std::int64_t>(i);
    std::string seen = s().get(idx);
    for (;;) {
      T next = f(item(seen));
      if (s().compare_and_set(idx, seen, redis::to_bytes(next))) return next;
    }
  }
  T add(std::ptrdiff_t i, const T& delta) const {
    return transform(i, [&delta](const T& v) { return multiproc::detail::checked_sum(v, delta); });
  }

 private:
  const detail::ListStore& s() const {
    if (!s_) detail::default_constructed_proxy();
    return *s_;
  }
  T item(std::string_view b) const { return detail::decode_as<T>(*s_, b, "an item"); }
  std::vector<T> all(const std::vector<std::string>& raw) const {
    std::vector<T> out;
    out.reserve(raw.size());
    for (const std::string& b : raw) out.push_back(item(b));
    return out;
  }
  std::shared_ptr<const detail::ListStore> s_;
};

//! A Namespace on the server: named fields, each of its own type. A field read as another type
//! than it was set with is Error(errc::type_mismatch) naming both. Fields are listed sorted by
//! name. Otherwise as DictProxy (and multiproc::NamespaceProxy).
class NamespaceProxy {
 public:
  NamespaceProxy() = default;
  explicit NamespaceProxy(std::shared_ptr<const detail::NamespaceStore> store)
      : s_(std::move(store)) {}
  const std::string& name() const noexcept { return s_ ? s_->name() : detail::no_name(); }

  template <class T>
  void set(const std::string& field, const T& v) const {
    s().set(field, detail::type_name_of<T>(), redis::to_bytes(v));
  }
  //! Returns: the field's value, or nullopt if there is no such field.
  template <class T>
  std::optional<T> get(const std::string& field) const {
    auto b = s().get(field, detail::type_name_of<T>());
    if (!b) return std::nullopt;
    return detail::decode_as<T>(*s_, *b, "a field");
  }
  bool contains(const std::string& field) const { return s().contains(field); }
  //! Returns: whether the field was there.
  bool erase(const std::string& field) const { return s().erase(field); }
  std::vector<std::string> fields() const { return s().fields(); }

 private:
  const detail::NamespaceStore& s() const {
    if (!s_) detail::default_constructed_proxy();
    return *s_;
  }
  std::shared_ptr<const detail::NamespaceStore> s_;
};

//! A Value on the server: one T. Otherwise as DictProxy (and multiproc::ValueProxy). A Value
//! deleted behind the Manager's back (Manager::remove, DEL) is Error(errc::not_found).
template <class T>
class ValueProxy {
 public:
  ValueProxy() = default;
  explicit ValueProxy(std::shared_ptr<const detail::ValueStore> store) : s_(std::move(store)) {}
  const std::string& name() const noexcept { return s_ ? s_->name() : detail::no_name(); }

  T get() const { return value(s().get()); }
  void set(const T& v) const { s().set(redis::to_bytes(v)); }
  //! Atomic read-modify-write, as DictProxy::transform. Returns the new value.
  template <class F>
  T transform(F f) const {
    std::string seen = s().get();
    for (;;) {
      T next = f(value(seen));
      if (s().compare_and_set(seen, redis::to_bytes(next))) return next;
    }
  }
  T add(const T& delta) const {
    return transform([&delta](const T& v) { return multiproc::detail::checked_sum(v, delta); });
  }

 private:
  const detail::ValueStore& s() const {
    if (!s_) detail::default_constructed_proxy();
    return *s_;
  }
  T value(std::string_view b) const { return detail::decode_as<T>(*s_, b, "the value"); }
  std::shared_ptr<const detail::ValueStore> s_;
};

template <class K, class V>
DictProxy<K, V> Manager::dict(std::string_view name) const {
  static_assert(has_codec_v<K> && has_codec_v<V>, "dict<K, V> needs a Codec for K and V");
  Opened o = open("dict", name,
                  detail::type_name_of<K>() + ", " + detail::type_name_of<V>());
  return DictProxy<K, V>(std::make_shared<const detail::DictStore>(
      client_, o.name, o.what, data_key("dict", o.name), data_key("dict-order", o.name)));
}
template <class T>
ListProxy<T> Manager::list(std::string_view name) const {
  static_assert(has_codec_v<T>, "list<T> needs a Codec for T");
  Opened o = open("list", name, detail::type_name_of<T>());
  return ListProxy<T>(
      std::make_shared<const detail::ListStore>(client_, o.name, o.what, data_key("list", o.name)));
}
inline NamespaceProxy Manager::Namespace(std::string_view name) const {
  Opened o = open("Namespace", name, {});
  return NamespaceProxy(
      std::make_shared<const detail::NamespaceStore>(client_, o.name, o.what, data_key("ns", o.name)));
}
template <class T>
ValueProxy<T> Manager::Value(std::string_view name, const T& initial) const {
  static_assert(has_codec_v<T>, "Value<T> needs a Codec for T");
  Opened o = open("Value", name, detail::type_name_of<T>());
  create_value(o, redis::to_bytes(initial));
  return ValueProxy<T>(
      std::make_shared<const detail::ValueStore>(client_, o.name, o.what, data_key("value", o.name)));
}

}  // namespace multiproc::redis
