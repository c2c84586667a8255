// multiproc/detail/manager_containers.hpp — private, included by manager.hpp: DictProxy,
// ListProxy, NamespaceProxy, ValueProxy and Manager's dict/list/Namespace/Value.
//
// Each proxy holds an ObjectRef (manager_object.hpp) and sends (op, arguments) to its object in
// the manager's server, where the object is kept as bytes: keys and values encoded with Codec
// (so two keys are the same key exactly when their encodings are equal bytes — e.g. 0.0 and
// -0.0 are two keys, and so are two strings that differ in any byte). The server never decodes
// them; the proxy checks at open that the object holds the types it was made with (typeid
// names), and decodes replies with Codec (Error(errc::corrupt) on bytes it cannot read).
//
// Read-modify-write (transform, add): the proxy reads the entry and its version, runs f in the
// calling process, and asks the server to store the result only if the entry's version is still
// the one it read (compare-and-swap); otherwise it retries with the value it is sent back. So
// f may run more than once under contention (it must have no side effects worth counting), no
// update is ever lost, and it works from exec'd programs (no code crosses processes).
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/checked_sum.hpp>
#include <multiproc/detail/manager_object.hpp>
#include <multiproc/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

namespace multiproc {

class Manager;

namespace detail::manager {

// Op numbers shared by the proxies below and the objects in src/manager/containers.cpp.
enum class DictOp : std::uint32_t {
  check = 1, set, get, get_versioned, cas, contains, erase, size, keys, values, items, update,
  setdefault, pop, clear
};
enum class ListOp : std::uint32_t {
  check = 1, append, extend, get, get_versioned, set, cas, insert, pop, slice, size, clear
};
enum class NamespaceOp : std::uint32_t { set = 1, get, contains, erase, fields };
enum class ValueOp : std::uint32_t { check = 1, get, get_versioned, set, cas };

template <class E>
constexpr std::uint32_t op(E e) noexcept {
  return static_cast<std::uint32_t>(e);
}

//! A request: ObjectRef::kHeader bytes, then the pieces appended.
class RequestBuilder {
 public:
  explicit RequestBuilder(std::size_t reserve = 0) {
    buf_.reserve(ObjectRef::kHeader + reserve);
    buf_.resize(ObjectRef::kHeader);
  }
  template <class T>
  RequestBuilder& value(const T& v) {  // Codec<T> bytes, no length
    const std::size_t n = Codec<T>::size(v);
    const std::size_t at = buf_.size();
    buf_.resize(at + n);
    Codec<T>::encode(v, reinterpret_cast<std::byte*>(&buf_[at]));
    return *this;
  }
  template <class T>
  RequestBuilder& sized(const T& v) {  // u64 length, then Codec<T> bytes
    const std::size_t n = Codec<T>::size(v);
    u64(n);
    const std::size_t at = buf_.size();
    buf_.resize(at + n);
    Codec<T>::encode(v, reinterpret_cast<std::byte*>(&buf_[at]));
    return *this;
  }
  RequestBuilder& u64(std::uint64_t x) {
    buf_.append(reinterpret_cast<const char*>(&x), 8);
    return *this;
  }
  RequestBuilder& i64(std::int64_t x) {
    buf_.append(reinterpret_cast<const char*>(&x), 8);
    return *this;
  }
  RequestBuilder& bytes(std::string_view b) {
    buf_.append(b.data(), b.size());
    return *this;
  }
  std::string take() { return std::move(buf_); }

 private:
  std::string buf_;
};

using multiproc::from_bytes;  // codec.hpp
using multiproc::to_bytes;
//! Reads a u64 at the front of `s` and drops it. Throws Error(errc::corrupt) if short.
std::uint64_t take_u64(std::string_view& s);
//! The reply of get-like ops: u8 found, then the value's bytes.
std::optional<std::string_view> found_bytes(std::string_view reply);

//! The types a container was made with, for the check at open.
template <class... Ts>
std::string type_names() {
  std::vector<std::string> names{typeid(Ts).name()...};
  return to_bytes(names);
}

//! A compare-and-swap loop: `read` gives (found, version, bytes); `store(version, new)` returns
//! nullopt when stored, else the entry as it is now (found, version, bytes).
struct Versioned {
  bool found = false;
  std::uint64_t version = 0;
  std::string bytes;
};
Versioned parse_versioned(std::string_view reply);

ObjectRef open(const Manager& manager, std::string_view kind, std::string_view name,
               std::string_view create_args);

}  // namespace detail::manager

//! A proxy of a dict in a manager: Python's dict, insertion-ordered, with keys K and values V
//! (both with a Codec; keys are equal iff their encodings are equal bytes). Copyable; usable from
//! threads, forked children and (opened by name) other programs. Every call is one round trip
//! to the manager and is applied whole or not at all. Throws (every call):
//! Error(errc::disconnected) if the manager is gone; Error(errc::corrupt) if a reply does not
//! decode as K or V.
template <class K, class V>
class DictProxy {
  using Op = detail::manager::DictOp;

 public:
  DictProxy() = default;
  explicit DictProxy(detail::manager::ObjectRef ref) : ref_(std::move(ref)) {}

  const std::string& name() const noexcept { return ref_.name(); }

  void set(const K& k, const V& v) const {
    ref_.call_prepared(op(Op::set), detail::manager::RequestBuilder().sized(k).value(v).take());
  }
  //! Returns: the value of k, or nullopt.
  std::optional<V> get(const K& k) const {
    const std::string r = call_key(Op::get, k);
    auto b = detail::manager::found_bytes(r);
    if (!b) return std::nullopt;
    return detail::manager::from_bytes<V>(*b);
  }
  //! Returns: the value of k, or `otherwise`.
  V get(const K& k, const V& otherwise) const {
    std::optional<V> v = get(k);
    return v ? std::move(*v) : otherwise;
  }
  bool contains(const K& k) const { return call_key(Op::contains, k).at(0) != 0; }
  //! Returns: whether k was there.
  bool erase(const K& k) const { return call_key(Op::erase, k).at(0) != 0; }
  std::size_t size() const {
    const std::string r = ref_.call(op(Op::size), {});
    std::string_view v(r);
    return static_cast<std::size_t>(detail::manager::take_u64(v));
  }
  bool empty() const { return size() == 0; }
  //! Snapshots, in insertion order.
  std::vector<K> keys() const { return decode_all<K>(ref_.call(op(Op::keys), {})); }
  std::vector<V> values() const { return decode_all<V>(ref_.call(op(Op::values), {})); }
  std::vector<std::pair<K, V>> items() const {
    auto raw = detail::manager::from_bytes<std::vector<std::pair<std::string, std::string>>>(
        ref_.call(op(Op::items), {}));
    std::vector<std::pair<K, V>> out;
    out.reserve(raw.size());
    for (auto& [k, v] : raw) {
      out.emplace_back(detail::manager::from_bytes<K>(k), detail::manager::from_bytes<V>(v));
    }
    return out;
  }
  //! Effects: sets every (key, value) of `pairs` (any range of pairs), in order, as one call.
  template <class Range>
  void update(const Range& pairs) const {
    std::vector<std::pair<std::string, std::string>> raw;
    for (const auto& [k, v] : pairs) {
      raw.emplace_back(detail::manager::to_bytes<K>(k), detail::manager::to_bytes<V>(v));
    }
    ref_.call(op(Op::update), detail::manager::to_bytes(raw));
  }
  void update(std::initializer_list<std::pair<K, V>> pairs) const {
    update<std::initializer_list<std::pair<K, V>>>(pairs);
  }
  //! Returns: the value of k; if k was absent, sets it to v first (one atomic step).
  V setdefault(const K& k, const V& v) const {
    return detail::manager::from_bytes<V>(ref_.call_prepared(
        op(Op::setdefault), detail::manager::RequestBuilder().sized(k).value(v).take()));
  }
  //! Effects: removes k. Returns: its value, or nullopt if it was absent.
  std::optional<V> pop(const K& k) const {
    const std::string r = call_key(Op::pop, k);
    auto b = detail::manager::found_bytes(r);
    if (!b) return std::nullopt;
    return detail::manager::from_bytes<V>(*b);
  }
  V pop(const K& k, const V& otherwise) const {
    std::optional<V> v = pop(k);
    return v ? std::move(*v) : otherwise;
  }
  void clear() const { ref_.call(op(Op::clear), {}); }

  //! Atomic read-modify-write of k: sets k to f(current value, or `initial` if absent) and
  //! returns the new value. f runs in this process and may run more than once when other
  //! processes change k meanwhile (each run on the value then current); no update is lost.
  //! An exception from f propagates and changes nothing.
  template <class F>
  V transform(const K& k, F f, const V& initial = V{}) const {
    const std::string key = detail::manager::to_bytes(k);
    detail::manager::Versioned cur = detail::manager::parse_versioned(
        ref_.call_prepared(op(Op::get_versioned),
                           detail::manager::RequestBuilder().bytes(key).take()));
    for (;;) {
      V next = f(cur.found ? detail::manager::from_bytes<V>(cur.bytes) : initial);
      std::string r = ref_.call_prepared(op(Op::cas), detail::manager::RequestBuilder()
                                                          .u64(key.size())
                                                          .bytes(key)
                                                          .u64(cur.version)
                                                          .value(next)
                                                          .take());
      if (r.at(0) != 0) return next;
      cur = detail::manager::parse_versioned(std::string_view(r).substr(1));
    }
  }
  //! transform(k, v + delta) for an arithmetic V, from V{} when absent. Returns the new value.
  //! Throws: Error(errc::invalid_argument) when an integer sum does not fit in V (nothing is
  //! stored); as transform(). The add() of a list item and of a value does the same.
  V add(const K& k, const V& delta) const {
    return transform(k, [&delta](const V& v) { return multiproc::detail::checked_sum(v, delta); });
  }

 private:
  template <class T>
  static std::vector<T> decode_all(const std::string& reply) {
    auto raw = detail::manager::from_bytes<std::vector<std::string>>(reply);
    std::vector<T> out;
    out.reserve(raw.size());
    for (const std::string& b : raw) out.push_back(detail::manager::from_bytes<T>(b));
    return out;
  }
  std::string call_key(Op o, const K& k) const {
    return ref_.call_prepared(op(o), detail::manager::RequestBuilder().value(k).take());
  }
  using Ref = detail::manager::ObjectRef;
  static constexpr std::uint32_t op(Op o) { return detail::manager::op(o); }
  Ref ref_;
};

//! A proxy of a list in a manager: Python's list of T. Indexes are Python's: -1 is the last item.
//! An index out of range is Error(errc::invalid_argument) naming the list, the index and the
//! size. Otherwise as DictProxy.
template <class T>
class ListProxy {
  using Op = detail::manager::ListOp;

 public:
  ListProxy() = default;
  explicit ListProxy(detail::manager::ObjectRef ref) : ref_(std::move(ref)) {}
  const std::string& name() const noexcept { return ref_.name(); }

  void append(const T& v) const {
    ref_.call_prepared(op(Op::append), detail::manager::RequestBuilder().value(v).take());
  }
  //! Effects: appends every item of `items` (any range), as one call.
  template <class Range>
  void extend(const Range& items) const {
    std::vector<std::string> raw;
    for (const auto& v : items) raw.push_back(detail::manager::to_bytes<T>(v));
    ref_.call(op(Op::extend), detail::manager::to_bytes(raw));
  }
  void extend(std::initializer_list<T> items) const { extend<std::initializer_list<T>>(items); }
  T get(std::ptrdiff_t i) const {
    return detail::manager::from_bytes<T>(ref_.call_prepared(
        op(Op::get), detail::manager::RequestBuilder().i64(static_cast<std::int64_t>(i)).take()));
  }
  void set(std::ptrdiff_t i, const T& v) const {
    ref_.call_prepared(op(Op::set), detail::manager::RequestBuilder()
                                        .i64(static_cast<std::int64_t>(i))
                                        .value(v)
                                        .take());
  }
  //! Python's insert: before index i, clamped to [0, size] (never out of range).
  void insert(std::ptrdiff_t i, const T& v) const {
    ref_.call_prepared(op(Op::insert), detail::manager::RequestBuilder()
                                           .i64(static_cast<std::int64_t>(i))
                                           .value(v)
                                           .take());
  }
  //! Removes and returns item i (the last by default). An empty list: invalid_argument.
  T pop(std::ptrdiff_t i = -1) const {
    return detail::manager::from_bytes<T>(ref_.call_prepared(
        op(Op::pop), detail::manager::RequestBuilder().i64(static_cast<std::int64_t>(i)).take()));
  }
  //! Python's l[start:stop] (negative counts from the end; clamped, never out of range).
  std::vector<T> slice(std::ptrdiff_t start, std::ptrdiff_t stop) const {
    auto raw = detail::manager::from_bytes<std::vector<std::string>>(
        ref_.call_prepared(op(Op::slice), detail::manager::RequestBuilder()
                                              .i64(static_cast<std::int64_t>(start))
                                              .i64(static_cast<std::int64_t>(stop))
                                              .take()));
    std::vector<T> out;
    out.reserve(raw.size());
    for (const std::string& b : raw) out.push_back(detail::manager::from_bytes<T>(b));
    return out;
  }
  //! Every item (a snapshot).
  std::vector<T> items() const { return slice(0, PTRDIFF_MAX); }
  std::size_t size() const {
    const std::string r = ref_.call(op(Op::size), {});
    std::string_view v(r);
    return static_cast<std::size_t>(detail::manager::take_u64(v));
  }
  bool empty() const { return size() == 0; }
  void clear() const { ref_.call(op(Op::clear), {}); }

  //! Atomic read-modify-write of item i: sets it to f(item) and returns the new value. As
  //! DictProxy::transform (f runs here, maybe more than once). Each item has its own version, so
  //! when others insert or remove items meanwhile, f is rerun on the item index i holds then.
  template <class F>
  T transform(std::ptrdiff_t i, F f) const {
    const auto idx = static_cast<std::int64_t>(i);
    detail::manager::Versioned cur = detail::manager::parse_versioned(ref_.call_prepared(
        op(Op::get_versioned), detail::manager::RequestBuilder().i64(idx).take()));
    for (;;) {
      T next = f(detail::manager::from_bytes<T>(cur.bytes));
      std::string r = ref_.call_prepared(
          op(Op::cas),
          detail::manager::RequestBuilder().i64(idx).u64(cur.version).value(next).take());
      if (r.at(0) != 0) return next;
      cur = detail::manager::parse_versioned(std::string_view(r).substr(1));
    }
  }
  T add(std::ptrdiff_t i, const T& delta) const {
    return transform(i, [&delta](const T& v) { return multiproc::detail::checked_sum(v, delta); });
  }

 private:
  static constexpr std::uint32_t op(Op o) { return detail::manager::op(o); }
  detail::manager::ObjectRef ref_;
};

//! A proxy of a Namespace in a manager: named fields, each of its own type. A field read as
//! another type than it was set with is Error(errc::type_mismatch) naming both. Fields are
//! listed sorted by name. Otherwise as DictProxy.
class NamespaceProxy {
  using Op = detail::manager::NamespaceOp;

 public:
  NamespaceProxy() = default;
  explicit NamespaceProxy(detail::manager::ObjectRef ref) : ref_(std::move(ref)) {}
  const std::string& name() const noexcept { return ref_.name(); }

  template <class T>
  void set(const std::string& field, const T& v) const {
    ref_.call_prepared(op(Op::set), detail::manager::RequestBuilder()
                                        .sized(field)
                                        .sized(std::string(typeid(T).name()))
                                        .value(v)
                                        .take());
  }
  //! Returns: the field's value, or nullopt if there is no such field.
  template <class T>
  std::optional<T> get(const std::string& field) const {
    const std::string r = ref_.call_prepared(op(Op::get), detail::manager::RequestBuilder()
                                                              .sized(field)
                                                              .value(std::string(typeid(T).name()))
                                                              .take());
    auto b = detail::manager::found_bytes(r);
    if (!b) return std::nullopt;
    return detail::manager::from_bytes<T>(*b);
  }
  bool contains(const std::string& field) const;
  //! Returns: whether the field was there.
  bool erase(const std::string& field) const;
  std::vector<std::string> fields() const;

 private:
  static constexpr std::uint32_t op(Op o) { return detail::manager::op(o); }
  detail::manager::ObjectRef ref_;
};

//! A proxy of a Value in a manager: one T. Otherwise as DictProxy.
template <class T>
class ValueProxy {
  using Op = detail::manager::ValueOp;

 public:
  ValueProxy() = default;
  explicit ValueProxy(detail::manager::ObjectRef ref) : ref_(std::move(ref)) {}
  const std::string& name() const noexcept { return ref_.name(); }

  T get() const { return detail::manager::from_bytes<T>(ref_.call(op(Op::get), {})); }
  void set(const T& v) const {
    ref_.call_prepared(op(Op::set), detail::manager::RequestBuilder().value(v).take());
  }
  //! Atomic read-modify-write, as DictProxy::transform. Returns the new value.
  template <class F>
  T transform(F f) const {
    detail::manager::Versioned cur =
        detail::manager::parse_versioned(ref_.call(op(Op::get_versioned), {}));
    for (;;) {
      T next = f(detail::manager::from_bytes<T>(cur.bytes));
      std::string r = ref_.call_prepared(
          op(Op::cas), detail::manager::RequestBuilder().u64(cur.version).value(next).take());
      if (r.at(0) != 0) return next;
      cur = detail::manager::parse_versioned(std::string_view(r).substr(1));
    }
  }
  T add(const T& delta) const {
    return transform([&delta](const T& v) { return multiproc::detail::checked_sum(v, delta); });
  }

 private:
  static constexpr std::uint32_t op(Op o) { return detail::manager::op(o); }
  detail::manager::ObjectRef ref_;
};

namespace detail::manager {
//! Opens (or makes) a container and checks the types it holds. Throws as open(), and
//! Error(errc::type_mismatch) naming both types if `name` holds other types.
ObjectRef open_checked(const Manager& m, std::string_view kind, std::string_view name,
                       const std::string& types, std::string_view initial = {});
}  // namespace detail::manager

template <class K, class V>
DictProxy<K, V> Manager::dict(std::string_view name) const {
  static_assert(has_codec_v<K> && has_codec_v<V>, "dict<K, V> needs a Codec for K and V");
  return DictProxy<K, V>(
      detail::manager::open_checked(*this, "dict", name, detail::manager::type_names<K, V>()));
}
template <class T>
ListProxy<T> Manager::list(std::string_view name) const {
  static_assert(has_codec_v<T>, "list<T> needs a Codec for T");
  return ListProxy<T>(
      detail::manager::open_checked(*this, "list", name, detail::manager::type_names<T>()));
}
inline NamespaceProxy Manager::Namespace(std::string_view name) const {
  return NamespaceProxy(detail::manager::open_checked(*this, "namespace", name, {}));
}
template <class T>
ValueProxy<T> Manager::Value(std::string_view name, const T& initial) const {
  static_assert(has_codec_v<T>, "Value<T> needs a Codec for T");
  return ValueProxy<T>(detail::manager::open_checked(
      *this, "value", name, detail::manager::type_names<T>(), detail::manager::to_bytes(initial)));
}

}  // namespace multiproc
