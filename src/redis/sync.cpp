// multiproc::redis::Value<T> and Event (multiproc/redis/sync.hpp), and what the objects of
// sync.hpp share (detail/sync_util.hpp).
//
// Keys of the Value `n`:
//   mp:value:n:meta      hash {kind=value, type=<C type>}              (ensure_meta)
//   mp:value:n           the integer, in decimal (INCRBY's format)
// Keys of the Event `n`:
//   mp:event:n:meta      hash {kind=event}
//   mp:event:n:flag      "1" while set; absent while clear
//   mp:event:n:waiters   sorted set: waiting call id -> registration end (server ms); set()
//                        empties it, pushing to each waiter's list; lapsed ones are pruned
//   mp:event:n:w:<id>    one waiting call's wake-up list (created by set(), expires after 30 s)
#include <multiproc/redis/detail/sync_util.hpp>
#include <multiproc/redis/sync.hpp>

#include <charconv>
#include <limits>

namespace multiproc::redis {
namespace detail {

void check_name(const std::string& kind, const std::string& name) {
  if (name.empty() || name.find_first_of(" \t\r\n") != std::string::npos) {
    throw Error(errc::invalid_argument, "multiproc::redis: " + kind + " '" + name +
                                            "': a name must be non-empty, without whitespace");
  }
}

// ---------------------------------------------------------------------------------------------
// Value

namespace {

// KEYS: value. ARGV: delta, min, max. Returns {1, after} or {0, what it would have been}
// (then nothing changed). Only for types narrower than 64 bits: Lua's numbers are doubles,
// exact for them.
const Script& add_checked_script() {
  static const Script s(R"lua(
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if v < tonumber(ARGV[2]) or v > tonumber(ARGV[3]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return {0, v}
end
return {1, v}
)lua",
                        "value_add");
  return s;
}

// KEYS: value. ARGV: expected, desired (decimal). Returns {1|0, the value found}.
const Script& cas_script() {
  static const Script s(R"lua(
local v = redis.call('GET', KEYS[1]) or '0'
if v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return {1, v}
end
return {0, v}
)lua",
                        "value_cas");
  return s;
}

}  // namespace

struct ValueState {
  Client client;
  std::string name, what, key;
  long long min, max;
};

namespace {

long long parse_value(const ValueState& s, const std::string& text) {
  long long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < s.min || v > s.max) {
    throw Error(errc::corrupt, object_message(s.client, s.what,
                                              "the key " + s.key + " holds '" + text.substr(0, 40) +
                                                  "', not an integer of the value's type"));
  }
  return v;
}

[[noreturn]] void out_of_range(const ValueState& s, long long delta, const std::string& result) {
  throw Error(errc::invalid_argument,
              object_message(s.client, s.what,
                             "add(" + std::to_string(delta) + "): the result (" + result +
                                 ") is outside the type's range [" + std::to_string(s.min) +
                                 ", " + std::to_string(s.max) + "]; nothing was changed"));
}

}  // namespace

ValueCore::ValueCore(const Client& client, std::string name, std::string type_name, long long min,
                     long long max, long long initial) {
  check_name("redis::Value", name);
  const std::string what = "redis::Value<" + type_name + "> '" + name + "'";
  const std::string k = key("mp:value", {name});
  s_ = std::make_shared<ValueState>(ValueState{client, std::move(name), what, k, min, max});
  ensure_meta(client, k + ":meta", what, {{"kind", "value"}, {"type", type_name}});
  named(what, [&] { return client.command({"SET", k, std::to_string(initial), "NX"}); });
}

long long ValueCore::load() const {
  Reply r = named(s_->what, [&] { return s_->client.command({"GET", s_->key}); });
  if (r.is_nil()) return 0;
  return parse_value(*s_, r.str());
}

void ValueCore::store(long long v) const {
  named(s_->what, [&] { return s_->client.command({"SET", s_->key, std::to_string(v)}); });
}

long long ValueCore::add(long long delta) const {
  const ValueState& s = *s_;
  const std::string d = std::to_string(delta);
  if (s.min == std::numeric_limits<long long>::min() &&
      s.max == std::numeric_limits<long long>::max()) {
    try {
      return named(s.what, [&] { return s.client.command({"INCRBY", s.key, d}); }).integer();
    } catch (const Error& e) {
      if (std::string_view(e.what()).find("overflow") == std::string_view::npos) throw;
      out_of_range(s, delta, "beyond 64 bits");
    }
  }
  Reply r = named(s.what, [&] {
    return s.client.eval(add_checked_script(), {s.key},
                         {d, std::to_string(s.min), std::to_string(s.max)});
  });
  if (r[0].integer() == 0) out_of_range(s, delta, std::to_string(r[1].integer()));
  return r[1].integer();
}

std::pair<bool, long long> ValueCore::exchange_if(long long expected, long long desired) const {
  Reply r = named(s_->what, [&] {
    return s_->client.eval(cas_script(), {s_->key},
                           {std::to_string(expected), std::to_string(desired)});
  });
  return {r[0].integer() == 1, parse_value(*s_, r[1].str())};
}

bool ValueCore::compare_exchange(long long expected, long long desired) const {
  return exchange_if(expected, desired).first;
}

const std::string& ValueCore::name() const noexcept { return s_->name; }
const Client& ValueCore::client() const noexcept { return s_->client; }

// ---------------------------------------------------------------------------------------------
// Event

namespace {

constexpr std::chrono::milliseconds kEventSlice{5000};   // longest BLPOP of a waiter
constexpr std::chrono::milliseconds kEventGrace{5000};   // a registration outlives its slice so
const char* const kWakeTtlMs = "30000";                  // a waiter's list, once pushed to

// KEYS: flag, waiters. ARGV: waiter list prefix, list ttl ms. Returns the waiters woken.
// (It writes the waiters' lists, named from ARGV: fine on one server, not in a Redis Cluster.)
const Script& set_script() {
  static const Script s(std::string(kNowLua) + R"lua(
redis.call('SET', KEYS[1], '1')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, id in ipairs(ids) do
  local k = ARGV[1] .. id
  redis.call('RPUSH', k, '1')
  redis.call('PEXPIRE', k, ARGV[2])
end
redis.call('DEL', KEYS[2])
return #ids
)lua",
                        "event_set");
  return s;
}

// KEYS: flag, waiters. ARGV: waiter id, registration ms. Returns 1 when the flag is set (nothing
// registered), 0 when the waiter is registered until now + ARGV[2].
const Script& register_script() {
  static const Script s(std::string(kNowLua) + R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 0
)lua",
                        "event_register");
  return s;
}

}  // namespace

struct EventState {
  Client client;
  std::string name, what, flag_key, waiters_key, wake_prefix;

  EventState(const Client& c, std::string n)
      : client(c), name(std::move(n)), what("redis::Event '" + name + "'") {
    check_name("redis::Event", name);
    const std::string prefix = key("mp:event", {name});
    flag_key = prefix + ":flag";
    waiters_key = prefix + ":waiters";
    wake_prefix = prefix + ":w:";
    ensure_meta(client, prefix + ":meta", what, {{"kind", "event"}});
  }
};

}  // namespace detail

Event::Event(std::string_view url, std::string name) : Event(Client(url), std::move(name)) {}

Event::Event(const Client& client, std::string name)
    : s_(std::make_shared<detail::EventState>(client, std::move(name))) {}

void Event::set() const {
  detail::named(s_->what, [&] {
    return s_->client.eval(detail::set_script(), {s_->flag_key, s_->waiters_key},
                           {s_->wake_prefix, detail::kWakeTtlMs});
  });
}

void Event::clear() const {
  detail::named(s_->what, [&] { return s_->client.command({"DEL", s_->flag_key}); });
}

bool Event::is_set() const {
  return detail::named(s_->what, [&] {
    return s_->client.command({"EXISTS", s_->flag_key}).integer() == 1;
  });
}

void Event::wait() const { wait_until_(std::nullopt); }

bool Event::wait_until_(Deadline deadline) const {
  detail::EventState& s = *s_;
  const std::string id = unique_id();
  const std::string list = s.wake_prefix + id;
  for (;;) {
    const auto slice = detail::left_until(deadline, detail::kEventSlice);
    const std::string hold = std::to_string((slice + detail::kEventGrace).count());
    auto r = detail::named(s.what, [&] {
      return s.client.eval_call(detail::register_script(), {s.flag_key, s.waiters_key},
                                {id, hold}, deadline);
    });
    if (!r) return false;
    if (r->integer() == 1) return true;
    if (deadline && Clock::now() >= *deadline) return false;
    const Argv blpop{"BLPOP", list, detail::blpop_seconds(slice)};
    auto w = detail::named(s.what, [&] { return s.client.call(blpop, deadline, slice); });
    if (!w) return false;
    if (!w->is_nil()) return true;  // set() pushed to this call's list
  }
}

const std::string& Event::name() const noexcept { return s_->name; }
const Client& Event::client() const noexcept { return s_->client; }

}  // namespace multiproc::redis
