// multiproc::redis::Semaphore (multiproc/redis/sync.hpp): a bounded semaphore of leased permits.
//
// Keys of the semaphore `n`:
//   mp:semaphore:n:meta     hash {kind=semaphore, bound=<initial>}     (ensure_meta)
//   mp:semaphore:n:holders  sorted set: permit id -> lease end (server ms), or 0 once released;
//                           a permit is held while its id is there with a lease end in the
//                           future. Free permits = bound - live members: expired and released
//                           members are removed by the next acquisition (that is how a dead
//                           holder's permits come back).
//   mp:semaphore:n:wake     list of wake-up tokens pushed by release (at most `bound`); expires
//                           after a lease
// Every change is one Lua script, atomic on the server.
#include <multiproc/redis/detail/renewal.hpp>
#include <multiproc/redis/detail/sync_util.hpp>
#include <multiproc/redis/sync.hpp>

#include <mutex>
#include <vector>

#include <unistd.h>

namespace multiproc::redis {
namespace detail {

namespace {

// KEYS: holders. ARGV: id, lease ms, bound.
// Returns {1} when the permit ARGV[1] is held now (also when it already was: a resent
// acquisition); {0, ms until the first lease ends} when every permit is held.
const Script& acquire_script() {
  static const Script s(std::string(kNowLua) + R"lua(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1} end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return {1}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
)lua",
                        "semaphore_acquire");
  return s;
}

// KEYS: holders. ARGV: lease ms, id... Extends the lease of each id still held (an expired one
// that nobody removed yet is still held: nobody needed it; a released one, score 0, is not).
// Returns how many were extended.
const Script& renew_script() {
  static const Script s(std::string(kNowLua) + R"lua(
local n = 0
for i = 2, #ARGV do
  local sc = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if sc and tonumber(sc) ~= 0 then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
    n = n + 1
  end
end
return n
)lua",
                        "semaphore_renew");
  return s;
}

// KEYS: holders, wake. ARGV: id, lease ms, bound. Returns 1 when the permit was held and is
// returned now (its score becomes 0: free, removed by the next acquisition; a resent release
// finds it so and returns 1 too), 0 when it was not held (its lease expired and it was taken
// back).
const Script& release_script() {
  static const Script s(R"lua(
local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not sc then return 0 end
if tonumber(sc) == 0 then return 1 end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('RPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
)lua",
                        "semaphore_release");
  return s;
}

// KEYS: holders. Returns the live permits held.
const Script& count_script() {
  static const Script s(std::string(kNowLua) + R"lua(
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
)lua",
                        "semaphore_count");
  return s;
}

}  // namespace

struct SemaphoreState {
  Client client;
  std::string name, what;
  long bound;
  std::string holders_key, wake_key, bound_str;
  std::chrono::milliseconds lease;
  std::string lease_ms;

  // The permits this handle holds, shared with the renewal function.
  struct Permits {
    std::mutex mutex;
    pid_t pid = ::getpid();
    std::vector<std::string> ids;
  };
  std::shared_ptr<Permits> permits = std::make_shared<Permits>();
  std::mutex renewal_mutex;  // guards renewal and renewal_pid; taken before permits->mutex
  Renewal renewal;
  pid_t renewal_pid = 0;     // the process whose renewal thread runs `renewal`

  SemaphoreState(const Client& c, std::string n, long initial, SemaphoreOptions o)
      : client(c),
        name(std::move(n)),
        what("redis::Semaphore '" + name + "'"),
        bound(initial),
        lease(o.lease) {
    check_name("redis::Semaphore", name);
    check_lease(what, lease);
    if (initial < 1 || initial > 0x7fffffffL) {
      throw Error(errc::invalid_argument, "multiproc::redis: " + what + ": initial value " +
                                              std::to_string(initial) +
                                              " is outside [1, 2^31 - 1]");
    }
    const std::string prefix = key("mp:semaphore", {name});
    holders_key = prefix + ":holders";
    wake_key = prefix + ":wake";
    bound_str = std::to_string(bound);
    lease_ms = std::to_string(lease.count());
    ensure_meta(client, prefix + ":meta", what, {{"kind", "semaphore"}, {"bound", bound_str}});
  }

  ~SemaphoreState() { renewal.reset(); }

  // Starts the renewal of this handle's permits (once per process).
  void ensure_renewal() {
    std::lock_guard<std::mutex> g(renewal_mutex);
    // A Renewal inherited across fork() is the parent's: it does not run in the child.
    if (renewal.active() && renewal_pid == ::getpid()) return;
    renewal_pid = ::getpid();
    renewal = Renewal(std::max(lease / 3, std::chrono::milliseconds(1)),
                      [c = client, k = holders_key, l = lease_ms, p = permits] {
                        Argv args{l};
                        {
                          std::lock_guard<std::mutex> g(p->mutex);
                          if (p->pid != ::getpid()) return false;
                          args.insert(args.end(), p->ids.begin(), p->ids.end());
                        }
                        if (args.size() > 1) c.eval(renew_script(), {k}, args);
                        return true;
                      });
  }

  void forget_if_forked() {  // requires permits->mutex
    if (permits->pid == ::getpid()) return;
    permits->ids.clear();
    permits->pid = ::getpid();
  }

  // One try. Returns: held (true) or the ms until the first lease ends; nullopt at the deadline.
  std::optional<std::pair<bool, long long>> try_once(const std::string& id, Deadline deadline) {
    {
      std::lock_guard<std::mutex> g(permits->mutex);
      forget_if_forked();
    }
    ensure_renewal();
    auto r = named(what, [&] {
      return client.eval_call(acquire_script(), {holders_key}, {id, lease_ms, bound_str},
                              deadline);
    });
    if (!r) return std::nullopt;
    if ((*r)[0].integer() == 0) return std::make_pair(false, (*r)[1].integer());
    std::lock_guard<std::mutex> g(permits->mutex);
    forget_if_forked();
    permits->ids.push_back(id);
    return std::make_pair(true, 0LL);
  }
};

}  // namespace detail

Semaphore::Semaphore(std::string_view url, std::string name, long initial, SemaphoreOptions options)
    : Semaphore(Client(url), std::move(name), initial, options) {}

Semaphore::Semaphore(const Client& client, std::string name, long initial,
                     SemaphoreOptions options)
    : s_(std::make_shared<detail::SemaphoreState>(client, std::move(name), initial, options)) {}

void Semaphore::acquire() const { acquire_until(std::nullopt); }

bool Semaphore::try_acquire() const {
  auto r = s_->try_once(unique_id(), std::nullopt);
  return r && r->first;
}

bool Semaphore::acquire_until(Deadline deadline) const {
  detail::SemaphoreState& s = *s_;
  return detail::acquire_loop(s.client, s.what, s.wake_key, deadline,
                              [&](const std::string& id, Deadline d) { return s.try_once(id, d); });
}

void Semaphore::release() const {
  detail::SemaphoreState& s = *s_;
  std::string id;
  {
    std::lock_guard<std::mutex> g(s.permits->mutex);
    s.forget_if_forked();
    if (s.permits->ids.empty()) {
      throw Error(errc::bad_state,
                  detail::object_message(s.client, s.what,
                                         "release: this handle holds no permit (released more "
                                         "often than acquired)"));
    }
    id = std::move(s.permits->ids.back());
    s.permits->ids.pop_back();
  }
  auto r = detail::named(s.what, [&] {
    return s.client.eval(detail::release_script(), {s.holders_key, s.wake_key},
                         {id, s.lease_ms, s.bound_str});
  });
  if (r.integer() == 0) {
    throw Error(errc::not_owner,
                detail::object_message(s.client, s.what,
                                       "release: the permit's lease (" + s.lease_ms +
                                           " ms) expired without a renewal reaching the "
                                           "server; it was returned to the semaphore already"));
  }
}

long Semaphore::value() const {
  const long long held = detail::named(s_->what, [&] {
    return s_->client.eval(detail::count_script(), {s_->holders_key}, {}).integer();
  });
  return std::max(0L, s_->bound - static_cast<long>(held));
}

long Semaphore::held() const {
  std::lock_guard<std::mutex> g(s_->permits->mutex);
  s_->forget_if_forked();
  return static_cast<long>(s_->permits->ids.size());
}

long Semaphore::bound() const noexcept { return s_->bound; }
const std::string& Semaphore::name() const noexcept { return s_->name; }
const Client& Semaphore::client() const noexcept { return s_->client; }

}  // namespace multiproc::redis
