// multiproc/redis/detail/manager_stores.hpp — private, included by redis/manager.hpp: the byte
// level of redis::Manager's containers. Each store knows its Redis keys and runs one command or
// one Lua script per operation (src/redis/manager.cpp); the proxies in redis/manager.hpp encode
// and decode with Codec around them. Users never name these.
#pragma once

#include <multiproc/error.hpp>
#include <multiproc/redis/client.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

namespace multiproc::redis::detail {

//! A type's name as it is recorded and shown ("long", "std::string", "Point"): demangled, with
//! std::string spelled so. Stable across g++ and clang on the same standard library.
std::string type_name(const std::type_info& t);
template <class T>
const std::string& type_name_of() {
  static const std::string name = type_name(typeid(T));
  return name;
}

//! What every store has: the client, the object's name, and the start of its messages
//! ("multiproc::redis: redis::Manager dict 'words' on redis 127.0.0.1:6379/0").
class StoreBase {
 public:
  StoreBase(Client client, std::string name, std::string what)
      : client_(std::move(client)),
        name_(std::move(name)),
        prefix_("multiproc::redis: " + what + " on " + client_.describe()) {}
  const Client& client() const noexcept { return client_; }
  const std::string& name() const noexcept { return name_; }
  const std::string& prefix() const noexcept { return prefix_; }
  //! Throws Error(errc::corrupt) naming the object, what did not decode (`part`: "a value") and
  //! as which type, with the codec's reason.
  [[noreturn]] void corrupt(const char* part, const std::string& type, const Error& e) const;

 protected:
  Client client_;
  std::string name_;
  std::string prefix_;
};

//! Decodes bytes read from the server as T, or throws as StoreBase::corrupt. An Error other than
//! errc::corrupt from a user's codec passes through unchanged.
template <class T>
T decode_as(const StoreBase& store, std::string_view bytes, const char* part) {
  try {
    return from_bytes<T>(bytes);
  } catch (const Error& e) {
    if (e.code() != make_error_code(errc::corrupt)) throw;
    store.corrupt(part, type_name_of<T>(), e);
  }
}

//! A dict: a hash of encoded key -> encoded value, and a sorted set that keeps the keys'
//! insertion order (score: a sequence number).
class DictStore : public StoreBase {
 public:
  DictStore(Client client, std::string name, std::string what, std::string hash_key,
            std::string order_key)
      : StoreBase(std::move(client), std::move(name), std::move(what)),
        hash_(std::move(hash_key)),
        order_(std::move(order_key)) {}

  void set(const std::string& k, const std::string& v) const;
  std::optional<std::string> get(const std::string& k) const;
  bool contains(const std::string& k) const;
  bool erase(const std::string& k) const;
  std::size_t size() const;
  std::vector<std::string> keys() const;
  std::vector<std::string> values() const;
  std::vector<std::pair<std::string, std::string>> items() const;
  void update(const std::vector<std::pair<std::string, std::string>>& pairs) const;
  //! Returns: the value k had, or nullopt when it had none and is now v.
  std::optional<std::string> setdefault(const std::string& k, const std::string& v) const;
  std::optional<std::string> pop(const std::string& k) const;
  void clear() const;
  //! Sets k to `next` if it still holds `seen` (nullopt: absent); returns true. Otherwise returns
  //! false and sets `seen` to what k holds now. Sent at most once.
  bool compare_and_set(const std::string& k, std::optional<std::string>& seen,
                       const std::string& next) const;

 private:
  std::vector<std::string> listing(const char* mode) const;
  std::string hash_, order_;
};

//! A list: a Redis list of encoded items.
class ListStore : public StoreBase {
 public:
  ListStore(Client client, std::string name, std::string what, std::string list_key)
      : StoreBase(std::move(client), std::move(name), std::move(what)), list_(std::move(list_key)) {}

  void append(const std::string& v) const;
  void extend(const std::vector<std::string>& items) const;
  std::string get(std::int64_t i) const;
  void set(std::int64_t i, const std::string& v) const;
  void insert(std::int64_t i, const std::string& v) const;
  std::string pop(std::int64_t i) const;
  std::vector<std::string> slice(std::int64_t start, std::int64_t stop) const;
  std::vector<std::string> items() const;
  std::size_t size() const;
  void clear() const;
  //! Sets item i to `next` if it still holds `seen`; returns true. Otherwise returns false and
  //! sets `seen` to item i now. Index out of range: Error(errc::invalid_argument). At most once.
  bool compare_and_set(std::int64_t i, std::string& seen, const std::string& next) const;

 private:
  [[noreturn]] void out_of_range(const char* action, std::int64_t i, long long n) const;
  std::string list_;
};

//! A Namespace: a hash of field -> type name, NUL, encoded value.
class NamespaceStore : public StoreBase {
 public:
  NamespaceStore(Client client, std::string name, std::string what, std::string hash_key)
      : StoreBase(std::move(client), std::move(name), std::move(what)), hash_(std::move(hash_key)) {}

  void set(const std::string& field, const std::string& type, const std::string& v) const;
  //! Returns: the field's value bytes, or nullopt. Throws Error(errc::type_mismatch) when it holds
  //! another type than `type`; Error(errc::corrupt) when it was not written by a Namespace.
  std::optional<std::string> get(const std::string& field, const std::string& type) const;
  bool contains(const std::string& field) const;
  bool erase(const std::string& field) const;
  std::vector<std::string> fields() const;

 private:
  std::string hash_;
};

//! A Value: a Redis string holding the encoded value.
class ValueStore : public StoreBase {
 public:
  ValueStore(Client client, std::string name, std::string what, std::string key)
      : StoreBase(std::move(client), std::move(name), std::move(what)), key_(std::move(key)) {}

  std::string get() const;
  void set(const std::string& v) const;
  //! As DictStore::compare_and_set (the Value must exist: Error(errc::not_found) otherwise).
  bool compare_and_set(std::string& seen, const std::string& next) const;

 private:
  [[noreturn]] void missing() const;
  std::string key_;
};

}  // namespace multiproc::redis::detail
