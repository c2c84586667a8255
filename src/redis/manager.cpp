// multiproc::redis::Manager and the byte level of its containers (redis/manager.hpp,
// redis/detail/manager_stores.hpp): one command or one Lua script per operation.
#include <multiproc/redis/manager.hpp>

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>

namespace multiproc::redis {

namespace detail {

std::string type_name(const std::type_info& t) {
  int status = 0;
  char* p = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
  std::string out = p != nullptr ? std::string(p) : std::string(t.name());
  std::free(p);
  static const std::string long_string =
      "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
  for (std::size_t at; (at = out.find(long_string)) != std::string::npos;) {
    out.replace(at, long_string.size(), "std::string");
  }
  return out;
}

void default_constructed_proxy() {
  throw Error(errc::bad_state, "multiproc::redis: a default-constructed Manager proxy (open one "
                               "with Manager::dict, list, Namespace or Value)");
}

void StoreBase::corrupt(const char* part, const std::string& type, const Error& e) const {
  throw Error(errc::corrupt, prefix_ + ": " + part + " is not a " + type +
                                 " (written by another program, or as another type): " + e.what());
}

namespace {

// Lua helpers shared by the scripts below.

// The dict's put: HSET, and a key new to the hash goes to the end of the order (ZADD without NX,
// so that a key another program deleted with HDEL and that comes back moves to the end too).
const char* const kDictPut = R"lua(
local function put(h, o, f, v)
  if redis.call('HSET', h, f, v) == 1 then
    local last = redis.call('ZRANGE', o, -1, -1, 'WITHSCORES')
    local s = 1
    if last[2] then s = tonumber(last[2]) + 1 end
    redis.call('ZADD', o, s, f)
  end
end
)lua";

// Pushing many items back onto a list, in chunks (Lua's unpack has a limit).
const char* const kListPush = R"lua(
local function push_back(k, items)
  for s = 1, #items, 1000 do
    redis.call('RPUSH', k, unpack(items, s, math.min(s + 999, #items)))
  end
end
local function push_front(k, items)
  local e = #items
  while e >= 1 do
    local s = math.max(1, e - 999)
    local chunk = {}
    for x = e, s, -1 do chunk[#chunk + 1] = items[x] end
    redis.call('LPUSH', k, unpack(chunk))
    e = s - 1
  end
end
)lua";

std::string with(const char* helpers, const char* body) { return std::string(helpers) + body; }

// KEYS: hash, order. ARGV: field, value.
const Script& dict_set() {
  static const Script s(with(kDictPut, "put(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n"), "dict set");
  return s;
}
// ARGV: field, value, field, value...
const Script& dict_update() {
  static const Script s(with(kDictPut, R"lua(
for i = 1, #ARGV, 2 do put(KEYS[1], KEYS[2], ARGV[i], ARGV[i + 1]) end
)lua"),
                        "dict update");
  return s;
}
// ARGV: field, value. Returns {1, existing} or {0} (set to value).
const Script& dict_setdefault() {
  static const Script s(with(kDictPut, R"lua(
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return {1, v} end
put(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return {0}
)lua"),
                        "dict setdefault");
  return s;
}
// ARGV: field. Returns 1 if it was there.
const Script& dict_erase() {
  static const Script s(R"lua(
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
)lua",
                        "dict erase");
  return s;
}
// ARGV: field. Returns {1, value} or {0}.
const Script& dict_pop() {
  static const Script s(R"lua(
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {0} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {1, v}
)lua",
                        "dict pop");
  return s;
}
// ARGV: field, '1' + expected bytes or '0' (expected absent), next. Returns {1} when stored,
// else {0, current} or {0} (absent now).
const Script& dict_cas() {
  static const Script s(with(kDictPut, R"lua(
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local match
if ARGV[2] == '1' then match = (cur == ARGV[3]) else match = (cur == false) end
if match then
  put(KEYS[1], KEYS[2], ARGV[1], ARGV[4])
  return {1}
end
if cur then return {0, cur} end
return {0}
)lua"),
                        "dict compare-and-set");
  return s;
}
// ARGV: 'k', 'v' or 'kv'. The keys, values or both (flat) in insertion order; fields the order
// does not know (HSET by another program) last, in the hash's order.
const Script& dict_listing() {
  static const Script s(R"lua(
local all = redis.call('HGETALL', KEYS[1])
local val = {}
for i = 1, #all, 2 do val[all[i]] = all[i + 1] end
local mode = ARGV[1]
local out = {}
local function emit(f, v)
  if mode ~= 'v' then out[#out + 1] = f end
  if mode ~= 'k' then out[#out + 1] = v end
end
for _, f in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local v = val[f]
  if v then
    emit(f, v)
    val[f] = nil
  end
end
for i = 1, #all, 2 do
  if val[all[i]] then emit(all[i], all[i + 1]) end
end
return out
)lua",
                        "dict listing");
  return s;
}

// Lists. Indexes arrive as decimal strings; every index passed to a command is in [0, n].
// ARGV: i. Returns {1, item} or {0, n} (out of range).
const Script& list_get() {
  static const Script s(R"lua(
local n = redis.call('LLEN', KEYS[1])
local i = tonumber(ARGV[1])
if i < 0 then i = i + n end
if i < 0 or i >= n then return {0, n} end
return {1, redis.call('LINDEX', KEYS[1], i)}
)lua",
                        "list get");
  return s;
}
// ARGV: i, value. Returns {1} or {0, n}.
const Script& list_set() {
  static const Script s(R"lua(
local n = redis.call('LLEN', KEYS[1])
local i = tonumber(ARGV[1])
if i < 0 then i = i + n end
if i < 0 or i >= n then return {0, n} end
redis.call('LSET', KEYS[1], i, ARGV[2])
return {1}
)lua",
                        "list set");
  return s;
}
// ARGV: i, expected, next. Returns {1} (stored), {2, current} or {0, n} (out of range).
const Script& list_cas() {
  static const Script s(R"lua(
local n = redis.call('LLEN', KEYS[1])
local i = tonumber(ARGV[1])
if i < 0 then i = i + n end
if i < 0 or i >= n then return {0, n} end
local cur = redis.call('LINDEX', KEYS[1], i)
if cur ~= ARGV[2] then return {2, cur} end
redis.call('LSET', KEYS[1], i, ARGV[3])
return {1}
)lua",
                        "list compare-and-set");
  return s;
}
// ARGV: i, value. Python's insert (i clamped to [0, n]); moves the shorter side.
const Script& list_insert() {
  static const Script s(with(kListPush, R"lua(
local k = KEYS[1]
local n = redis.call('LLEN', k)
local i = tonumber(ARGV[1])
if i < 0 then i = math.max(0, i + n) end
if i > n then i = n end
if i == n then
  redis.call('RPUSH', k, ARGV[2])
elseif i == 0 then
  redis.call('LPUSH', k, ARGV[2])
elseif i <= n / 2 then
  local head = redis.call('LRANGE', k, 0, i - 1)
  redis.call('LTRIM', k, i, -1)
  redis.call('LPUSH', k, ARGV[2])
  push_front(k, head)
else
  local tail = redis.call('LRANGE', k, i, -1)
  redis.call('LTRIM', k, 0, i - 1)
  redis.call('RPUSH', k, ARGV[2])
  push_back(k, tail)
end
return 1
)lua"),
                        "list insert");
  return s;
}
// ARGV: i. Returns {2, item}, {1, n} (out of range) or {0} (empty).
const Script& list_pop() {
  static const Script s(with(kListPush, R"lua(
local k = KEYS[1]
local n = redis.call('LLEN', k)
if n == 0 then return {0} end
local i = tonumber(ARGV[1])
if i < 0 then i = i + n end
if i < 0 or i >= n then return {1, n} end
if i == n - 1 then return {2, redis.call('RPOP', k)} end
if i == 0 then return {2, redis.call('LPOP', k)} end
local v = redis.call('LINDEX', k, i)
if i < n / 2 then
  local head = redis.call('LRANGE', k, 0, i - 1)
  redis.call('LTRIM', k, i + 1, -1)
  push_front(k, head)
else
  local tail = redis.call('LRANGE', k, i + 1, -1)
  redis.call('LTRIM', k, 0, i - 1)
  push_back(k, tail)
end
return {2, v}
)lua"),
                        "list pop");
  return s;
}
// ARGV: start, stop. Python's l[start:stop].
const Script& list_slice() {
  static const Script s(R"lua(
local n = redis.call('LLEN', KEYS[1])
local function clamp(x)
  if x < 0 then x = x + n end
  return math.min(math.max(x, 0), n)
end
local a = clamp(tonumber(ARGV[1]))
local b = clamp(tonumber(ARGV[2]))
if a >= b then return {} end
return redis.call('LRANGE', KEYS[1], a, b - 1)
)lua",
                        "list slice");
  return s;
}

// Value. ARGV: expected, next. Returns {1}, {0, current} or {0} (the key is gone).
const Script& value_cas() {
  static const Script s(R"lua(
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return {1}
end
if cur then return {0, cur} end
return {0}
)lua",
                        "Value compare-and-set");
  return s;
}

std::vector<std::string> strings(const Reply& r) {
  std::vector<std::string> out;
  out.reserve(r.size());
  for (const Reply& e : r.elements()) out.push_back(e.str());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// DictStore

void DictStore::set(const std::string& k, const std::string& v) const {
  client_.eval(dict_set(), {hash_, order_}, {k, v});
}

std::optional<std::string> DictStore::get(const std::string& k) const {
  Reply r = client_.command({"HGET", hash_, k});
  if (r.is_nil()) return std::nullopt;
  return r.str();
}

bool DictStore::contains(const std::string& k) const {
  return client_.command({"HEXISTS", hash_, k}).integer() != 0;
}

bool DictStore::erase(const std::string& k) const {
  return client_.eval_once(dict_erase(), {hash_, order_}, {k}).integer() != 0;
}

std::size_t DictStore::size() const {
  return static_cast<std::size_t>(client_.command({"HLEN", hash_}).integer());
}

std::vector<std::string> DictStore::listing(const char* mode) const {
  return strings(client_.eval(dict_listing(), {hash_, order_}, {mode}));
}
std::vector<std::string> DictStore::keys() const { return listing("k"); }
std::vector<std::string> DictStore::values() const { return listing("v"); }
std::vector<std::pair<std::string, std::string>> DictStore::items() const {
  std::vector<std::string> flat = listing("kv");
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(flat.size() / 2);
  for (std::size_t i = 0; i + 1 < flat.size(); i += 2) {
    out.emplace_back(std::move(flat[i]), std::move(flat[i + 1]));
  }
  return out;
}

void DictStore::update(const std::vector<std::pair<std::string, std::string>>& pairs) const {
  if (pairs.empty()) return;
  Argv args;
  args.reserve(2 * pairs.size());
  for (const auto& [k, v] : pairs) {
    args.push_back(k);
    args.push_back(v);
  }
  client_.eval(dict_update(), {hash_, order_}, args);
}

std::optional<std::string> DictStore::setdefault(const std::string& k, const std::string& v) const {
  Reply r = client_.eval(dict_setdefault(), {hash_, order_}, {k, v});
  if (r[0].integer() == 0) return std::nullopt;
  return r[1].str();
}

std::optional<std::string> DictStore::pop(const std::string& k) const {
  Reply r = client_.eval_once(dict_pop(), {hash_, order_}, {k});
  if (r[0].integer() == 0) return std::nullopt;
  return r[1].str();
}

void DictStore::clear() const { client_.command({"DEL", hash_, order_}); }

bool DictStore::compare_and_set(const std::string& k, std::optional<std::string>& seen,
                                const std::string& next) const {
  Reply r = client_.eval_once(dict_cas(), {hash_, order_},
                              {k, seen ? "1" : "0", seen ? *seen : std::string(), next});
  if (r[0].integer() == 1) return true;
  if (r.size() > 1) {
    seen = r[1].str();
  } else {
    seen.reset();
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// ListStore

void ListStore::out_of_range(const char* action, std::int64_t i, long long n) const {
  throw Error(errc::invalid_argument, prefix_ + ": " + action + ": index " + std::to_string(i) +
                                          " out of range for a list of " + std::to_string(n) +
                                          " items");
}

void ListStore::append(const std::string& v) const { client_.command_once({"RPUSH", list_, v}); }

void ListStore::extend(const std::vector<std::string>& items) const {
  if (items.empty()) return;
  Argv argv;
  argv.reserve(items.size() + 2);
  argv.push_back("RPUSH");
  argv.push_back(list_);
  argv.insert(argv.end(), items.begin(), items.end());
  client_.command_once(argv);
}

std::string ListStore::get(std::int64_t i) const {
  Reply r = client_.eval(list_get(), {list_}, {std::to_string(i)});
  if (r[0].integer() == 0) out_of_range("get", i, r[1].integer());
  return r[1].str();
}

void ListStore::set(std::int64_t i, const std::string& v) const {
  Reply r = client_.eval_once(list_set(), {list_}, {std::to_string(i), v});
  if (r[0].integer() == 0) out_of_range("set", i, r[1].integer());
}

void ListStore::insert(std::int64_t i, const std::string& v) const {
  client_.eval_once(list_insert(), {list_}, {std::to_string(i), v});
}

std::string ListStore::pop(std::int64_t i) const {
  Reply r = client_.eval_once(list_pop(), {list_}, {std::to_string(i)});
  switch (r[0].integer()) {
    case 0:
      throw Error(errc::invalid_argument, prefix_ + ": pop from an empty list");
    case 1:
      out_of_range("pop", i, r[1].integer());
    default:
      return r[1].str();
  }
}

std::vector<std::string> ListStore::slice(std::int64_t start, std::int64_t stop) const {
  return strings(
      client_.eval(list_slice(), {list_}, {std::to_string(start), std::to_string(stop)}));
}

std::vector<std::string> ListStore::items() const {
  return strings(client_.command({"LRANGE", list_, "0", "-1"}));
}

std::size_t ListStore::size() const {
  return static_cast<std::size_t>(client_.command({"LLEN", list_}).integer());
}

void ListStore::clear() const { client_.command({"DEL", list_}); }

bool ListStore::compare_and_set(std::int64_t i, std::string& seen, const std::string& next) const {
  Reply r = client_.eval_once(list_cas(), {list_}, {std::to_string(i), seen, next});
  switch (r[0].integer()) {
    case 1:
      return true;
    case 0:
      out_of_range("transform", i, r[1].integer());
    default:
      seen = r[1].str();
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// NamespaceStore

void NamespaceStore::set(const std::string& field, const std::string& type,
                         const std::string& v) const {
  std::string stored;
  stored.reserve(type.size() + 1 + v.size());
  stored.append(type).push_back('\0');
  stored.append(v);
  client_.command({"HSET", hash_, field, stored});
}

std::optional<std::string> NamespaceStore::get(const std::string& field,
                                               const std::string& type) const {
  Reply r = client_.command({"HGET", hash_, field});
  if (r.is_nil()) return std::nullopt;
  const std::string& stored = r.str();
  const std::size_t nul = stored.find('\0');
  if (nul == std::string::npos) {
    throw Error(errc::corrupt, prefix_ + ": field '" + field +
                                   "' was not written by a Namespace (no type name in it)");
  }
  if (stored.compare(0, nul, type) != 0) {
    throw Error(errc::type_mismatch, prefix_ + ": field '" + field + "' holds a " +
                                         stored.substr(0, nul) + ", not a " + type);
  }
  return stored.substr(nul + 1);
}

bool NamespaceStore::contains(const std::string& field) const {
  return client_.command({"HEXISTS", hash_, field}).integer() != 0;
}

bool NamespaceStore::erase(const std::string& field) const {
  return client_.command_once({"HDEL", hash_, field}).integer() != 0;
}

std::vector<std::string> NamespaceStore::fields() const {
  std::vector<std::string> out = strings(client_.command({"HKEYS", hash_}));
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// ValueStore

void ValueStore::missing() const {
  throw Error(errc::not_found, prefix_ + ": it does not exist (removed by Manager::remove or "
                                         "another program)");
}

std::string ValueStore::get() const {
  Reply r = client_.command({"GET", key_});
  if (r.is_nil()) missing();
  return r.str();
}

void ValueStore::set(const std::string& v) const { client_.command({"SET", key_, v}); }

bool ValueStore::compare_and_set(std::string& seen, const std::string& next) const {
  Reply r = client_.eval_once(value_cas(), {key_}, {seen, next});
  if (r[0].integer() == 1) return true;
  if (r.size() < 2) missing();
  seen = r[1].str();
  return false;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Manager

namespace {

std::string checked_app(std::string app) {
  if (app.find(':') != std::string::npos) {
    throw Error(errc::invalid_argument,
                "multiproc::redis::Manager: app '" + app + "' has a ':' (keys would be ambiguous)");
  }
  return app;
}

}  // namespace

Manager::Manager(std::string_view url, ManagerOptions options)
    : Manager(Client(url, options.client), std::move(options.app)) {}

Manager::Manager(std::string_view url, std::string app) : Manager(Client(url), std::move(app)) {}

Manager::Manager(Client client, std::string app)
    : client_(std::move(client)),
      app_(checked_app(std::move(app))),
      base_(app_.empty() ? std::string("mp:manager") : "mp:manager/" + app_) {}

std::string Manager::data_key(const char* part, const std::string& name) const {
  return key(base_, {part, name});
}

Manager::Opened Manager::open(const char* kind, std::string_view name,
                              const std::string& types) const {
  Opened o;
  o.name = name.empty() ? std::string(kind) + "." + unique_id() : std::string(name);
  o.what = "redis::Manager " + std::string(kind) + " '" + o.name + "'" +
           (app_.empty() ? std::string() : " of app '" + app_ + "'");
  o.meta = data_key("meta", o.name);
  std::vector<std::pair<std::string, std::string>> fields{{"kind", kind}};
  if (!types.empty()) fields.emplace_back("types", types);
  ensure_meta(client_, o.meta, o.what, fields);
  return o;
}

void Manager::create_value(const Opened& o, const std::string& initial) const {
  client_.command({"SET", data_key("value", o.name), initial, "NX"});
}

bool Manager::remove(std::string_view name) const {
  const std::string n(name);
  Argv argv{"DEL"};
  for (const char* part : {"meta", "dict", "dict-order", "list", "ns", "value"}) {
    argv.push_back(data_key(part, n));
  }
  return client_.command(argv).integer() != 0;
}

}  // namespace multiproc::redis
