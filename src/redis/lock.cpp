// multiproc::redis::Lock (multiproc/redis/sync.hpp): a leased lock with fencing tokens.
//
// Keys of the lock `n`:
//   mp:lock:n:meta      hash {kind=lock}                          (ensure_meta)
//   mp:lock:n:state     hash {owner=<acquisition id>, until=<server ms>, token=<fence>,
//                             died=0|1}; absent while the lock is free
//   mp:lock:n:fence     the fencing counter (INCR per acquisition; never removed)
//   mp:lock:n:wake      list: one wake-up token pushed by unlock; expires after a lease
//   mp:lock:n:released  the id of the last unlock (so that a resent unlock is recognised)
// Every change is one Lua script, atomic on the server.
#include <multiproc/redis/detail/renewal.hpp>
#include <multiproc/redis/detail/sync_util.hpp>
#include <multiproc/redis/sync.hpp>

#include <map>
#include <mutex>
#include <thread>

#include <unistd.h>

namespace multiproc::redis {
namespace detail {

namespace {

// KEYS: state, fence. ARGV: id, lease ms.
// Returns {1, token, died} when the lock is now held by ARGV[1] (also when it already was: a
// resent acquisition); {0, ms left of the holder's lease} otherwise.
const Script& acquire_script() {
  static const Script s(std::string(kNowLua) + R"lua(
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[1] then
  return {1, tonumber(redis.call('HGET', KEYS[1], 'token')), tonumber(redis.call('HGET', KEYS[1], 'died'))}
end
local died = 0
if owner then
  local left = tonumber(redis.call('HGET', KEYS[1], 'until')) - now
  if left > 0 then return {0, left} end
  died = 1
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'until', now + tonumber(ARGV[2]), 'token', token, 'died', died)
return {1, token, died}
)lua",
                        "lock_acquire");
  return s;
}

// KEYS: state. ARGV: id, lease ms. Returns 1 when the lease was extended, 0 when it is lost.
const Script& renew_script() {
  static const Script s(std::string(kNowLua) + R"lua(
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'until', now + tonumber(ARGV[2]))
return 1
)lua",
                        "lock_renew");
  return s;
}

// KEYS: state, wake, released. ARGV: id, lease ms.
// Returns {1} when released (now or by an earlier send of the same unlock); {0} when the lock
// is free and was not ours; {0, token} when another acquisition (with that token) holds it.
const Script& release_script() {
  static const Script s(R"lua(
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= ARGV[1] then
  if redis.call('GET', KEYS[3]) == ARGV[1] then return {1} end
  if not owner then return {0} end
  return {0, tonumber(redis.call('HGET', KEYS[1], 'token'))}
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {1}
)lua",
                        "lock_release");
  return s;
}

// KEYS: state. Returns 1 when a holder's lease runs now.
const Script& locked_script() {
  static const Script s(std::string(kNowLua) + R"lua(
local u = redis.call('HGET', KEYS[1], 'until')
if u and tonumber(u) > now then return 1 end
return 0
)lua",
                        "lock_locked");
  return s;
}

}  // namespace

struct LockState {
  Client client;
  std::string name, what;
  std::string state_key, fence_key, wake_key, released_key;
  std::chrono::milliseconds lease;
  std::string lease_ms;

  // One hold of this handle: by one thread of this process.
  struct Held {
    std::string id;
    std::uint64_t token = 0;
    bool died = false;
    Renewal renewal;
  };
  std::mutex mutex;                      // guards pid and held
  pid_t pid = ::getpid();
  std::map<std::thread::id, Held> held;  // at most one in practice (see unlock())

  LockState(const Client& c, std::string n, LockOptions o)
      : client(c), name(std::move(n)), what("redis::Lock '" + name + "'"), lease(o.lease) {
    check_name("redis::Lock", name);
    check_lease(what, lease);
    const std::string prefix = key("mp:lock", {name});
    state_key = prefix + ":state";
    fence_key = prefix + ":fence";
    wake_key = prefix + ":wake";
    released_key = prefix + ":released";
    lease_ms = std::to_string(lease.count());
    ensure_meta(client, prefix + ":meta", what, {{"kind", "lock"}});
  }

  // Requires: mutex held. A forked child holds nothing of what its parent holds (the parent's
  // renewals are not running in the child: Renewal says so).
  void forget_if_forked() {
    if (pid == ::getpid()) return;
    held.clear();
    pid = ::getpid();
  }

  // One acquisition try. Returns: held (true) or the ms left of the holder's lease; nullopt when
  // the deadline passed first.
  std::optional<std::pair<bool, long long>> try_once(const std::string& id, Deadline deadline) {
    auto r = named(what, [&] {
      return client.eval_call(acquire_script(), {state_key, fence_key}, {id, lease_ms}, deadline);
    });
    if (!r) return std::nullopt;
    if ((*r)[0].integer() == 0) return std::make_pair(false, (*r)[1].integer());
    Held h;
    h.id = id;
    h.token = static_cast<std::uint64_t>((*r)[1].integer());
    h.died = (*r)[2].integer() != 0;
    Client c = client;
    std::string k = state_key, l = lease_ms;
    h.renewal = Renewal(std::max(lease / 3, std::chrono::milliseconds(1)), [c, k, id, l] {
      return c.eval(renew_script(), {k}, {id, l}).integer() == 1;
    });
    std::lock_guard<std::mutex> g(mutex);
    forget_if_forked();
    held[std::this_thread::get_id()] = std::move(h);
    return std::make_pair(true, 0LL);
  }

  bool holds_now() {
    std::lock_guard<std::mutex> g(mutex);
    forget_if_forked();
    return held.count(std::this_thread::get_id()) != 0;
  }
};

}  // namespace detail

Lock::Lock(std::string_view url, std::string name, LockOptions options)
    : Lock(Client(url), std::move(name), options) {}

Lock::Lock(const Client& client, std::string name, LockOptions options)
    : s_(std::make_shared<detail::LockState>(client, std::move(name), options)) {}

void Lock::lock() const { lock_until(std::nullopt); }

bool Lock::try_lock() const {
  if (s_->holds_now()) return false;
  auto r = s_->try_once(unique_id(), std::nullopt);
  return r && r->first;
}

bool Lock::lock_until(Deadline deadline) const {
  detail::LockState& s = *s_;
  if (s.holds_now()) {
    throw Error(errc::would_deadlock,
                detail::object_message(s.client, s.what,
                                       "lock: the calling thread holds it already (through "
                                       "this handle); it is not recursive"));
  }
  return detail::acquire_loop(s.client, s.what, s.wake_key, deadline,
                              [&](const std::string& id, Deadline d) { return s.try_once(id, d); });
}

void Lock::unlock() const {
  detail::LockState& s = *s_;
  detail::LockState::Held h;
  {
    std::lock_guard<std::mutex> g(s.mutex);
    s.forget_if_forked();
    auto it = s.held.find(std::this_thread::get_id());
    if (it == s.held.end()) {
      throw Error(errc::not_owner,
                  detail::object_message(s.client, s.what,
                                         "unlock by a thread that does not hold it (through "
                                         "this handle)"));
    }
    h = std::move(it->second);
    s.held.erase(it);
  }
  h.renewal.reset();  // nothing renews the lease from here on
  auto r = detail::named(s.what, [&] {
    return s.client.eval(detail::release_script(), {s.state_key, s.wake_key, s.released_key},
                         {h.id, s.lease_ms});
  });
  if (r[0].integer() == 1) return;
  std::string why = "unlock: this holder's lease (" + s.lease_ms +
                    " ms) expired without a renewal reaching the server, and ";
  if (r.size() > 1) {
    why += "another holder took the lock (its fencing token " + std::to_string(r[1].integer()) +
           ", this holder's " + std::to_string(h.token) + ")";
  } else {
    why += "the lock is free now (taken and released by another holder since, or the server "
           "lost its data in a restart)";
  }
  throw Error(errc::not_owner, detail::object_message(s.client, s.what, why));
}

bool Lock::locked() const {
  return detail::named(s_->what, [&] {
    return s_->client.eval(detail::locked_script(), {s_->state_key}, {}).integer() == 1;
  });
}

bool Lock::previous_owner_died() const noexcept {
  std::lock_guard<std::mutex> g(s_->mutex);
  if (s_->pid != ::getpid()) return false;
  auto it = s_->held.find(std::this_thread::get_id());
  return it != s_->held.end() && it->second.died;
}

std::uint64_t Lock::fencing_token() const {
  std::lock_guard<std::mutex> g(s_->mutex);
  s_->forget_if_forked();
  auto it = s_->held.find(std::this_thread::get_id());
  if (it == s_->held.end()) {
    throw Error(errc::not_owner,
                detail::object_message(s_->client, s_->what,
                                       "fencing_token: the calling thread does not hold it"));
  }
  return it->second.token;
}

const std::string& Lock::name() const noexcept { return s_->name; }
const Client& Lock::client() const noexcept { return s_->client; }

}  // namespace multiproc::redis
