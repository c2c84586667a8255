// The Manager's containers, server side: dict, list, namespace and value objects (bytes only:
// the server never decodes a key or a value), and the client-side helpers of
// detail/manager_containers.hpp.
#include "transport.hpp"

#include <multiproc/manager.hpp>

#include <cxxabi.h>

#include <cstdlib>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

namespace multiproc::detail::manager {

std::uint64_t take_u64(std::string_view& s) {
  if (s.size() < 8) throw Error(errc::corrupt, "multiproc::Manager: a short message");
  std::uint64_t x = 0;
  std::memcpy(&x, s.data(), 8);
  s.remove_prefix(8);
  return x;
}

std::optional<std::string_view> found_bytes(std::string_view reply) {
  if (reply.empty()) throw Error(errc::corrupt, "multiproc::Manager: a short reply");
  if (reply[0] == 0) return std::nullopt;
  return reply.substr(1);
}

Versioned parse_versioned(std::string_view reply) {
  Versioned v;
  if (reply.empty()) throw Error(errc::corrupt, "multiproc::Manager: a short reply");
  v.found = reply[0] != 0;
  reply.remove_prefix(1);
  v.version = take_u64(reply);
  v.bytes = std::string(reply);
  return v;
}

namespace {

std::string demangle(const std::string& mangled) {
  int status = 0;
  char* p = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  if (p == nullptr) return mangled;
  std::string out(p);
  std::free(p);
  return out;
}

std::string describe_types(std::string_view encoded) {
  std::vector<std::string> names;
  try {
    names = from_bytes<std::vector<std::string>>(encoded);
  } catch (const Error&) {
    return "?";
  }
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + demangle(n);
  return "<" + out + ">";
}

// A request's pieces, read in order; Error(errc::corrupt) when short.
struct Reader {
  std::string_view s;
  std::uint64_t u64() { return take_u64(s); }
  std::int64_t i64() { return static_cast<std::int64_t>(take_u64(s)); }
  std::string_view sized() {
    const std::uint64_t n = take_u64(s);
    if (n > s.size()) throw Error(errc::corrupt, "multiproc::Manager: a short message");
    std::string_view out = s.substr(0, n);
    s.remove_prefix(n);
    return out;
  }
  std::string_view rest() { return std::exchange(s, std::string_view()); }
};

std::string u8(bool b) { return std::string(1, b ? '\1' : '\0'); }
std::string u64s(std::uint64_t x) { return std::string(reinterpret_cast<const char*>(&x), 8); }
std::string found(std::string_view v) {
  std::string out;
  out.reserve(1 + v.size());
  out.push_back('\1');
  out.append(v);
  return out;
}
std::string versioned(bool present, std::uint64_t version, std::string_view v) {
  std::string out;
  out.reserve(9 + v.size());
  out.push_back(present ? '\1' : '\0');
  out.append(u64s(version));
  out.append(v);
  return out;
}

// What each container checks at open: the types its proxy was made with.
class Typed : public Object {
 protected:
  Typed(std::string what, std::string_view create_args) : what_(std::move(what)) {
    std::string types, initial;
    decode_fields(reinterpret_cast<const std::byte*>(create_args.data()), create_args.size(), types,
                  initial);
    types_ = std::move(types);
    initial_ = std::move(initial);
  }
  void check(std::string_view args) const {
    if (args != types_) {
      throw Error(errc::type_mismatch, what_ + " holds " + describe_types(types_) +
                                           ", not " + describe_types(args));
    }
  }
  [[noreturn]] void unknown(std::uint32_t op) const {
    throw Error(errc::invalid_argument, what_ + ": unknown operation " + std::to_string(op));
  }
  std::string what_;  // "dict 'x'"
  std::string types_;
  std::string initial_;
};

class DictObject final : public Typed {
 public:
  DictObject(std::string_view name, std::string_view args)
      : Typed("dict '" + std::string(name) + "'", args) {}

  std::string call(Session&, std::uint32_t o, std::string_view args) override {
    Reader in{args};
    std::lock_guard<std::mutex> lock(m_);
    switch (static_cast<DictOp>(o)) {
      case DictOp::check:
        check(args);
        return {};
      case DictOp::set: {
        const std::string_view k = in.sized();
        put(k, in.rest());
        return {};
      }
      case DictOp::get: {
        auto it = index_.find(args);
        return it == index_.end() ? u8(false) : found(it->second->value);
      }
      case DictOp::get_versioned: {
        auto it = index_.find(args);
        return it == index_.end() ? versioned(false, 0, {})
                                  : versioned(true, it->second->version, it->second->value);
      }
      case DictOp::cas: {
        const std::string_view k = in.sized();
        const std::uint64_t expected = in.u64();
        auto it = index_.find(k);
        const std::uint64_t now = it == index_.end() ? 0 : it->second->version;
        if (now != expected) {
          return std::string(1, '\0') + (it == index_.end() ? versioned(false, 0, {})
                                            : versioned(true, now, it->second->value));
        }
        put(k, in.rest());
        return u8(true);
      }
      case DictOp::contains:
        return u8(index_.count(args) != 0);
      case DictOp::erase: {
        auto it = index_.find(args);
        if (it == index_.end()) return u8(false);
        auto item = it->second;
        index_.erase(it);
        items_.erase(item);
        return u8(true);
      }
      case DictOp::size:
        return u64s(items_.size());
      case DictOp::keys:
      case DictOp::values: {
        std::vector<std::string> out;
        out.reserve(items_.size());
        for (const Item& i : items_) out.push_back(o == op(DictOp::keys) ? i.key : i.value);
        return to_bytes(out);
      }
      case DictOp::items: {
        std::vector<std::pair<std::string, std::string>> out;
        out.reserve(items_.size());
        for (const Item& i : items_) out.emplace_back(i.key, i.value);
        return to_bytes(out);
      }
      case DictOp::update: {
        auto pairs = from_bytes<std::vector<std::pair<std::string, std::string>>>(args);
        for (const auto& [k, v] : pairs) put(k, v);  // decoded whole first: all or nothing
        return {};
      }
      case DictOp::setdefault: {
        const std::string_view k = in.sized();
        auto it = index_.find(k);
        if (it != index_.end()) return it->second->value;
        const std::string_view v = in.rest();
        put(k, v);
        return std::string(v);
      }
      case DictOp::pop: {
        auto it = index_.find(args);
        if (it == index_.end()) return u8(false);
        auto item = it->second;
        std::string out = found(item->value);
        index_.erase(it);
        items_.erase(item);
        return out;
      }
      case DictOp::clear:
        index_.clear();
        items_.clear();
        return {};
    }
    unknown(o);
  }

 private:
  struct Item {
    std::string key;
    std::string value;
    std::uint64_t version;
  };
  void put(std::string_view k, std::string_view v) {
    auto it = index_.find(k);
    if (it != index_.end()) {
      it->second->value.assign(v.data(), v.size());
      it->second->version = ++clock_;
      return;
    }
    items_.push_back(Item{std::string(k), std::string(v), 0});
    auto last = std::prev(items_.end());
    try {
      index_.emplace(std::string_view(last->key), last);
    } catch (...) {
      items_.pop_back();
      throw;
    }
    last->version = ++clock_;
  }

  std::mutex m_;
  std::list<Item> items_;  // insertion order
  std::unordered_map<std::string_view, std::list<Item>::iterator> index_;  // views of items_' keys
  std::uint64_t clock_ = 0;  // versions: every change of an entry takes the next one (never 0)
};

class ListObject final : public Typed {
 public:
  ListObject(std::string_view name, std::string_view args)
      : Typed("list '" + std::string(name) + "'", args) {}

  std::string call(Session&, std::uint32_t o, std::string_view args) override {
    Reader in{args};
    std::lock_guard<std::mutex> lock(m_);
    switch (static_cast<ListOp>(o)) {
      case ListOp::check:
        check(args);
        return {};
      case ListOp::append:
        items_.push_back(Item{std::string(args), ++clock_});
        return {};
      case ListOp::extend: {
        auto raw = from_bytes<std::vector<std::string>>(args);
        items_.reserve(items_.size() + raw.size());
        for (std::string& r : raw) items_.push_back(Item{std::move(r), ++clock_});
        return {};
      }
      case ListOp::get:
        return items_[at(in.i64(), "get")].value;
      case ListOp::get_versioned: {
        const Item& i = items_[at(in.i64(), "transform")];
        return versioned(true, i.version, i.value);
      }
      case ListOp::set: {
        Item& i = items_[at(in.i64(), "set")];
        i.value.assign(in.rest());
        i.version = ++clock_;
        return {};
      }
      case ListOp::cas: {
        Item& i = items_[at(in.i64(), "transform")];
        const std::uint64_t expected = in.u64();
        if (i.version != expected) return std::string(1, '\0') + versioned(true, i.version, i.value);
        i.value.assign(in.rest());
        i.version = ++clock_;
        return u8(true);
      }
      case ListOp::insert: {
        const std::int64_t n = static_cast<std::int64_t>(items_.size());
        std::int64_t i = in.i64();
        if (i < 0) i = std::max<std::int64_t>(0, i + n);
        if (i > n) i = n;
        items_.insert(items_.begin() + i, Item{std::string(in.rest()), ++clock_});
        return {};
      }
      case ListOp::pop: {
        if (items_.empty()) throw Error(errc::invalid_argument, what_ + ": pop from an empty list");
        const std::size_t i = at(in.i64(), "pop");
        std::string out = std::move(items_[i].value);
        items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(i));
        return out;
      }
      case ListOp::slice: {
        const std::int64_t n = static_cast<std::int64_t>(items_.size());
        auto clamp = [n](std::int64_t x) {
          if (x < 0) x += n;
          return std::min(std::max<std::int64_t>(x, 0), n);
        };
        const std::int64_t a = clamp(in.i64());
        const std::int64_t b = clamp(in.i64());
        std::vector<std::string> out;
        for (std::int64_t i = a; i < b; ++i) out.push_back(items_[static_cast<std::size_t>(i)].value);
        return to_bytes(out);
      }
      case ListOp::size:
        return u64s(items_.size());
      case ListOp::clear:
        items_.clear();
        return {};
    }
    unknown(o);
  }

 private:
  struct Item {
    std::string value;
    std::uint64_t version;
  };
  std::size_t at(std::int64_t i, const char* action) const {
    const std::int64_t n = static_cast<std::int64_t>(items_.size());
    const std::int64_t j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) {
      throw Error(errc::invalid_argument, what_ + ": " + action + ": index " + std::to_string(i) +
                                              " out of range for a list of " + std::to_string(n) +
                                              " items");
    }
    return static_cast<std::size_t>(j);
  }
  std::mutex m_;
  std::vector<Item> items_;
  std::uint64_t clock_ = 0;
};

class NamespaceObject final : public Object {
 public:
  explicit NamespaceObject(std::string_view name) : what_("Namespace '" + std::string(name) + "'") {}

  std::string call(Session&, std::uint32_t o, std::string_view args) override {
    Reader in{args};
    std::lock_guard<std::mutex> lock(m_);
    switch (static_cast<NamespaceOp>(o)) {
      case NamespaceOp::set: {
        const std::string_view field = in.sized();
        const std::string_view type = in.sized();
        Field& f = fields_[std::string(field)];
        f.type.assign(type);
        f.value.assign(in.rest());
        return {};
      }
      case NamespaceOp::get: {
        const std::string field(in.sized());
        const std::string_view type = in.rest();
        auto it = fields_.find(field);
        if (it == fields_.end()) return u8(false);
        if (it->second.type != type) {
          throw Error(errc::type_mismatch, what_ + ": field '" + field + "' holds a " +
                                               demangle(it->second.type) + ", not a " +
                                               demangle(std::string(type)));
        }
        return found(it->second.value);
      }
      case NamespaceOp::contains:
        return u8(fields_.count(std::string(args)) != 0);
      case NamespaceOp::erase:
        return u8(fields_.erase(std::string(args)) != 0);
      case NamespaceOp::fields: {
        std::vector<std::string> out;
        for (const auto& [k, v] : fields_) out.push_back(k);
        return to_bytes(out);
      }
    }
    throw Error(errc::invalid_argument, what_ + ": unknown operation " + std::to_string(o));
  }

 private:
  struct Field {
    std::string type;
    std::string value;
  };
  std::string what_;
  std::mutex m_;
  std::map<std::string, Field, std::less<>> fields_;
};

class ValueObject final : public Typed {
 public:
  ValueObject(std::string_view name, std::string_view args)
      : Typed("Value '" + std::string(name) + "'", args), value_(initial_) {}

  std::string call(Session&, std::uint32_t o, std::string_view args) override {
    Reader in{args};
    std::lock_guard<std::mutex> lock(m_);
    switch (static_cast<ValueOp>(o)) {
      case ValueOp::check:
        check(args);
        return {};
      case ValueOp::get:
        return value_;
      case ValueOp::get_versioned:
        return versioned(true, version_, value_);
      case ValueOp::set:
        value_.assign(args);
        ++version_;
        return {};
      case ValueOp::cas: {
        const std::uint64_t expected = in.u64();
        if (expected != version_) return std::string(1, '\0') + versioned(true, version_, value_);
        value_.assign(in.rest());
        ++version_;
        return u8(true);
      }
    }
    unknown(o);
  }

 private:
  std::mutex m_;
  std::string value_;
  std::uint64_t version_ = 1;
};

}  // namespace

void register_container_kinds() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_kind("dict", [](std::string_view name, std::string_view args) {
      return std::make_unique<DictObject>(name, args);
    });
    register_kind("list", [](std::string_view name, std::string_view args) {
      return std::make_unique<ListObject>(name, args);
    });
    register_kind("namespace", [](std::string_view name, std::string_view) {
      return std::make_unique<NamespaceObject>(name);
    });
    register_kind("value", [](std::string_view name, std::string_view args) {
      return std::make_unique<ValueObject>(name, args);
    });
  });
}

ObjectRef open_checked(const Manager& m, std::string_view kind, std::string_view name,
                       const std::string& types, std::string_view initial) {
  const std::string init(initial);
  std::string args(encoded_size(types, init), '\0');
  encode_fields(reinterpret_cast<std::byte*>(args.data()), types, init);
  ObjectRef ref = open(m, kind, name, args);
  if (!types.empty()) ref.call(1, types);  // every typed kind's op 1 is `check`
  return ref;
}

}  // namespace multiproc::detail::manager

namespace multiproc {

bool NamespaceProxy::contains(const std::string& field) const {
  return ref_.call(op(Op::contains), field).at(0) != 0;
}
bool NamespaceProxy::erase(const std::string& field) const {
  return ref_.call(op(Op::erase), field).at(0) != 0;
}
std::vector<std::string> NamespaceProxy::fields() const {
  return detail::manager::from_bytes<std::vector<std::string>>(ref_.call(op(Op::fields), {}));
}

}  // namespace multiproc
