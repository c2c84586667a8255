// multiproc::redis::Queue / JoinableQueue: the Lua scripts that keep a queue consistent on the
// server, and the client loops around them (multiproc/redis/queue.hpp says what they promise).
//
// Server state of queue <name>, P = "mp:queue:<name>":
//   P:meta           hash  kind, type, capacity, max_deliveries (ensure_meta)
//   P:items          list  entries "<deliveries>:<id>:<payload>": pushed at the left, taken at
//                          the right (FIFO); given-back entries go to the right (next out)
//   P:state          hash  seq (last id), unfinished (JoinableQueue), closed (present = closed)
//   P:consumers      zset  consumer id -> lease expiry (server ms); holds every consumer whose
//                          in-flight list is not empty (every script keeps this true)
//   P:inflight:<cid> list  the entries consumer <cid> took and has not acknowledged, newest left
//   P:dead           list  dead letters (entries delivered max_deliveries times, corrupt ones)
//   P:notify, P:space, P:joined  lists of at most one token: the wake-ups of blocked getters,
//                          putters and joiners (BLPOP); a stale token costs one spurious wake
//
// Every script takes the same KEYS (items, state, consumers, notify, space, joined, dead, and the
// caller's in-flight list when it has one) and ARGV[1..5] (prefix, capacity, max_deliveries,
// joinable, not_after), reads the server's clock, returns {'late', now} without doing anything
// once now > not_after (so an operation whose caller gave up never runs later), and gives back
// the messages of consumers whose lease expired before anything else.
#include <multiproc/redis/detail/renewal.hpp>
#include <multiproc/redis/queue.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include <unistd.h>

namespace multiproc::redis {
namespace detail {
namespace {

constexpr const char* kPrelude = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function num(s) return string.format('%d', s) end
-- An entry "<deliveries>:<id>:<payload>": deliveries (a number), id (a string), the index of
-- the first ':'; nil for bytes that are not an entry.
local function parse(e)
  local a = string.find(e, ':', 1, true)
  if not a or a == 1 or a > 10 then return nil end
  local b = string.find(e, ':', a + 1, true)
  if not b or b == a + 1 or b > a + 20 then return nil end
  local d = string.sub(e, 1, a - 1)
  local id = string.sub(e, a + 1, b - 1)
  if not string.match(d, '^%d+$') or not string.match(id, '^%d+$') then return nil end
  return tonumber(d), id, a
end
local function token(k)
  if redis.call('LLEN', k) == 0 then redis.call('LPUSH', k, '1') end
end
local function untoken(k)
  if redis.call('EXISTS', k) == 1 then redis.call('DEL', k) end
end
local function is_closed() return redis.call('HEXISTS', KEYS[2], 'closed') == 1 end
-- n messages of a JoinableQueue are finished (acknowledged, or dead).
local function done(n)
  if n > 0 and ARGV[4] == '1' then
    local u = redis.call('HINCRBY', KEYS[2], 'unfinished', -n)
    if u <= 0 then
      if u < 0 then redis.call('HSET', KEYS[2], 'unfinished', 0) end
      token(KEYS[6])
    end
  end
end
-- An entry goes back to the front of the queue; `delivered`: count the delivery it had (to the
-- dead letters after max_deliveries). Bytes that are not an entry go to the dead letters.
local function give_back(e, delivered)
  local d, id, a = parse(e)
  if not d then
    redis.call('RPUSH', KEYS[7], e)
    return
  end
  if delivered then
    d = d + 1
    e = num(d) .. string.sub(e, a)
    local maxd = tonumber(ARGV[3])
    if maxd > 0 and d >= maxd then
      redis.call('RPUSH', KEYS[7], e)
      done(1)
      return
    end
  end
  redis.call('RPUSH', KEYS[1], e)
end
-- Gives back the messages of every consumer whose lease expired.
local function reap(now)
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if not first[2] or tonumber(first[2]) > now then return end
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 64)
  for i = 1, #due do
    local fl = ARGV[1] .. ':inflight:' .. due[i]
    local es = redis.call('LRANGE', fl, 0, -1)
    for j = 1, #es do give_back(es[j], true) end  -- newest first: the oldest ends up next out
    redis.call('DEL', fl)
    redis.call('ZREM', KEYS[3], due[i])
  end
  if redis.call('LLEN', KEYS[1]) > 0 or is_closed() then token(KEYS[4]) end
end
local now = now_ms()
if now > tonumber(ARGV[5]) then return {'late', num(now)} end
reap(now)
)lua";

// put: ARGV[6..] payloads. Returns {'ok', k} (k of them put, k >= 1), {'full'}, {'closed'}.
constexpr const char* kPut = R"lua(
if is_closed() then
  token(KEYS[5])  -- the next blocked putter sees it too
  return {'closed'}
end
local n = #ARGV - 5
local len = redis.call('LLEN', KEYS[1])
local cap = tonumber(ARGV[2])
local k = n
if cap > 0 then k = math.min(n, cap - len) end
if k <= 0 then
  untoken(KEYS[5])
  return {'full'}
end
local last = redis.call('HINCRBY', KEYS[2], 'seq', k)
local batch = {}
for i = 1, k do
  batch[#batch + 1] = '0:' .. num(last - k + i) .. ':' .. ARGV[5 + i]
  if #batch == 256 or i == k then
    redis.call('LPUSH', KEYS[1], unpack(batch))
    batch = {}
  end
end
if ARGV[4] == '1' and redis.call('HINCRBY', KEYS[2], 'unfinished', k) == k then
  untoken(KEYS[6])
end
if len == 0 then token(KEYS[4]) end
if cap > 0 and len + k < cap then token(KEYS[5]) end
return {'ok', k}
)lua";

// take (and settle): ARGV[6] consumer id, [7] lease ms, [8] how many to take, then three lists
// of ids, each as a count and the ids: acknowledged, given back (delivered), kept. Entries of the
// consumer's in-flight list in none of them were taken but never received (a lost reply): they
// go back uncounted. Returns {status, corrupt bytes, acknowledged, entries...}; status 'ok',
// 'corrupt' (the first bytes of a non-entry, moved to the dead letters), 'empty', 'wait' (closed,
// but other consumers hold messages that may come back), 'closed'.
constexpr const char* kTake = R"lua(
local fl = KEYS[8]
local cid = ARGV[6]
local acked = 0
local released = false
if redis.call('LLEN', fl) > 0 then
  local i = 9
  local acks, gone, keep = {}, {}, {}
  for j = 1, tonumber(ARGV[i]) do acks[ARGV[i + j]] = true end
  i = i + tonumber(ARGV[i]) + 1
  for j = 1, tonumber(ARGV[i]) do gone[ARGV[i + j]] = true end
  i = i + tonumber(ARGV[i]) + 1
  for j = 1, tonumber(ARGV[i]) do keep[ARGV[i + j]] = true end
  local es = redis.call('LRANGE', fl, 0, -1)
  local kept = {}
  for j = 1, #es do
    local _, id = parse(es[j])
    if id and keep[id] then
      kept[#kept + 1] = es[j]
    elseif id and acks[id] then
      acked = acked + 1
    else
      give_back(es[j], id and gone[id])
    end
  end
  if #kept < #es then
    released = true
    redis.call('DEL', fl)
    for j = 1, #kept do redis.call('RPUSH', fl, kept[j]) end
  end
  done(acked)
end
local want = tonumber(ARGV[8])
local len = redis.call('LLEN', KEYS[1])
local out = {'ok', '', acked}
local taken = 0
while taken < want do
  local e = redis.call('RPOP', KEYS[1])
  if not e then break end
  if not parse(e) then
    if taken > 0 then
      redis.call('RPUSH', KEYS[1], e)  -- the next get reports it
    else
      redis.call('RPUSH', KEYS[7], e)
      out[1] = 'corrupt'
      out[2] = string.sub(e, 1, 24)
    end
    break
  end
  redis.call('LPUSH', fl, e)
  out[#out + 1] = e
  taken = taken + 1
end
if redis.call('LLEN', fl) > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), cid)
else
  redis.call('ZREM', KEYS[3], cid)
end
local closed = is_closed()
if released and closed then token(KEYS[4]) end
if taken > 0 then
  if tonumber(ARGV[2]) > 0 then token(KEYS[5]) end
  if len > taken then token(KEYS[4]) end  -- more left: wake the next getter
  return out
end
if out[1] == 'corrupt' or want == 0 then return out end
if closed then
  local cs = redis.call('ZRANGE', KEYS[3], 0, -1)
  for j = 1, #cs do
    if cs[j] ~= cid and redis.call('LLEN', ARGV[1] .. ':inflight:' .. cs[j]) > 0 then
      untoken(KEYS[4])
      out[1] = 'wait'
      return out
    end
  end
  token(KEYS[4])  -- the next blocked getter sees it too
  out[1] = 'closed'
  return out
end
untoken(KEYS[4])
out[1] = 'empty'
return out
)lua";

// renew: ARGV[6] consumer id, [7] lease ms.
constexpr const char* kRenew = R"lua(
if redis.call('LLEN', KEYS[8]) > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[6])
end
return {'ok'}
)lua";

// join: returns {'ok', unfinished}.
constexpr const char* kJoin = R"lua(
local u = tonumber(redis.call('HGET', KEYS[2], 'unfinished') or '0')
if u <= 0 then
  token(KEYS[6])  -- the next blocked joiner sees it too
else
  untoken(KEYS[6])
end
return {'ok', num(u)}
)lua";

// stats: {'ok', waiting, dead, unfinished, closed (0/1)}.
constexpr const char* kStats = R"lua(
return {'ok', redis.call('LLEN', KEYS[1]), redis.call('LLEN', KEYS[7]),
        tonumber(redis.call('HGET', KEYS[2], 'unfinished') or '0'), is_closed() and 1 or 0}
)lua";

constexpr const char* kClose = R"lua(
redis.call('HSET', KEYS[2], 'closed', '1')
token(KEYS[4])
token(KEYS[5])
return {'ok'}
)lua";

// The scripts, built once (static storage, thread-safe).
struct Scripts {
  Script put{std::string(kPrelude) + kPut, "queue.put"};
  Script take{std::string(kPrelude) + kTake, "queue.take"};
  Script renew{std::string(kPrelude) + kRenew, "queue.renew"};
  Script join{std::string(kPrelude) + kJoin, "queue.join"};
  Script stats{std::string(kPrelude) + kStats, "queue.stats"};
  Script close{std::string(kPrelude) + kClose, "queue.close"};
};
const Scripts& scripts() {
  static const Scripts s;
  return s;
}

std::int64_t steady_ms(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string seconds_arg(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

}  // namespace

struct QueueShared {
  Client client;
  std::string name, prefix, what;
  std::size_t capacity = 0;
  QueueOptions options;
  bool joinable = false;
  Argv keys;  // items, state, consumers, notify, space, joined, dead
  Argv common;  // ARGV[1..5]; [5] (not_after) filled per call
  std::atomic<std::int64_t> offset{0};  // server ms - steady ms

  explicit QueueShared(Client c) : client(std::move(c)) {}

  std::chrono::milliseconds slice() const {
    return std::clamp(options.lease / 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  }

  void measure_offset() {
    const auto t0 = Clock::now();
    const std::int64_t server = client.server_time_ms();
    const auto t1 = Clock::now();
    offset.store(server - steady_ms(t0 + (t1 - t0) / 2));
  }

  // Runs `s` (ARGV from [6]: extra) until it answers, or nullopt when `deadline` passed. Each try
  // has a deadline (the caller's, or command_timeout) that the script honours on the server.
  // Throws: Error(disconnected) when no try has answered for reconnect_for.
  std::optional<Reply> run(const Script& s, const Argv& keys, const Argv& extra, Deadline deadline) {
    Argv args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    std::optional<Clock::time_point> give_up;
    for (;;) {
      const auto now = Clock::now();
      auto try_deadline = now + client.options().command_timeout;
      if (deadline && *deadline < try_deadline) try_deadline = *deadline;
      // 20 ms of grace: the reply still reaches a caller that waits 50 ms past its deadline.
      args[4] = std::to_string(offset.load() + steady_ms(try_deadline) + 20);
      std::optional<Reply> r = client.eval_call(s, keys, args, try_deadline);
      if (r) {
        if (r->size() == 2 && (*r)[0].str() == "late") {
          // The server's clock moved against ours: measure again from its answer.
          offset.store(std::stoll((*r)[1].str()) - steady_ms(Clock::now()));
        } else {
          return r;
        }
      }
      if (deadline && Clock::now() >= *deadline) return std::nullopt;
      if (!give_up) give_up = now + client.options().reconnect_for;
      if (Clock::now() >= *give_up) {
        throw Error(errc::disconnected,
                    "multiproc::redis: " + what + " on " + client.describe() + ": " + s.name() +
                        ": no answer for " + std::to_string(client.options().reconnect_for.count()) +
                        " ms");
      }
    }
  }

  // Blocks on a token list for one slice at most (or until `deadline`). Returns false when the
  // deadline passed.
  bool wait_token(const std::string& list, Deadline deadline) {
    auto slice = this->slice();
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) return false;
      slice = std::min(slice, left);
    }
    auto r = client.call({"BLPOP", list, seconds_arg(slice)}, deadline, slice);
    return r.has_value() || !deadline || Clock::now() < *deadline;
  }
};

struct QueueConsumer {
  pid_t pid;
  std::string cid;
  Argv keys;
  std::mutex mutex;  // one take/settle script at a time: `held` matches the in-flight list
  std::deque<std::string> held;  // ids received and not acknowledged, oldest first
  std::atomic<std::size_t> holding{0};
  Renewal renewal;  // started with the first message held

  explicit QueueConsumer(const QueueShared& s)
      : pid(::getpid()), cid(unique_id()), keys(s.keys) {
    keys.push_back(s.prefix + ":inflight:" + cid);
  }
  ~QueueConsumer() { renewal.reset(); }
};

namespace {

Argv id_list(std::deque<std::string>::const_iterator b, std::deque<std::string>::const_iterator e) {
  Argv a{std::to_string(e - b)};
  a.insert(a.end(), b, e);
  return a;
}

RawMessage parse_entry(const std::string& e, const std::string& what) {
  RawMessage m;
  const auto a = e.find(':');
  const auto b = a == std::string::npos ? a : e.find(':', a + 1);
  unsigned d = 0;
  bool ok = b != std::string::npos;
  if (ok) ok = std::from_chars(e.data(), e.data() + a, d).ec == std::errc();
  if (ok) ok = std::from_chars(e.data() + a + 1, e.data() + b, m.id).ec == std::errc();
  if (!ok) throw Error(errc::corrupt, "multiproc::redis: " + what + ": a malformed entry in flight");
  m.deliveries = d + 1;
  m.payload = e.substr(b + 1);
  return m;
}

}  // namespace

QueueCore::QueueCore(Client client, std::string name, std::size_t capacity,
                     const QueueOptions& options, Kind kind, const char* type_id,
                     const std::string& type_name)
    : shared_(std::make_shared<QueueShared>(std::move(client))) {
  QueueShared& s = *shared_;
  const bool joinable = kind == Kind::joinable;
  s.what = std::string(joinable ? "redis::JoinableQueue<" : "redis::Queue<") + type_name + "> '" +
           name + "'";
  if (name.empty() || name.find_first_of(" \t\r\n") != std::string::npos) {
    throw Error(errc::invalid_argument,
                "multiproc::redis: " + s.what + ": a queue name must be non-empty, without spaces");
  }
  if (options.lease.count() < 10) {
    throw Error(errc::invalid_argument, "multiproc::redis: " + s.what + ": lease " +
                                            std::to_string(options.lease.count()) +
                                            " ms is too short (10 ms at least)");
  }
  s.name = std::move(name);
  s.prefix = "mp:queue:" + s.name;
  s.capacity = capacity;
  s.options = options;
  s.joinable = joinable;
  for (const char* k : {"items", "state", "consumers", "notify", "space", "joined", "dead"}) {
    s.keys.push_back(s.prefix + ":" + k);
  }
  s.common = {s.prefix, std::to_string(capacity), std::to_string(options.max_deliveries),
              joinable ? "1" : "0", "0"};
  ensure_meta(s.client, s.prefix + ":meta", s.what,
              {{"kind", joinable ? "joinable_queue" : "queue"},
               {"type", type_id},
               {"capacity", std::to_string(capacity)},
               {"max_deliveries", std::to_string(options.max_deliveries)}});
  s.measure_offset();
}

QueueCore::QueueCore(const QueueCore& other) : shared_(other.shared_) {}

QueueCore& QueueCore::operator=(const QueueCore& other) {
  if (this != &other) {
    leave();
    shared_ = other.shared_;
  }
  return *this;
}

// A moved-from handle stays a handle on the queue, without a consumer (as a fresh copy).
QueueCore::QueueCore(QueueCore&& other) noexcept
    : shared_(other.shared_), consumer_(other.consumer_.exchange(nullptr)) {}

QueueCore& QueueCore::operator=(QueueCore&& other) noexcept {
  if (this != &other) {
    leave();
    shared_ = other.shared_;
    consumer_.store(other.consumer_.exchange(nullptr));
  }
  return *this;
}

QueueCore::~QueueCore() { leave(); }

QueueConsumer& QueueCore::me() const {
  QueueConsumer* c = consumer_.load(std::memory_order_acquire);
  if (c != nullptr && c->pid == ::getpid()) return *c;
  // None yet, or our parent's (this is a forked child): a consumer of our own. The parent's is
  // left alone (its mutex may be held by a thread the child does not have; never freed here).
  auto* fresh = new QueueConsumer(*shared_);
  if (consumer_.compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread of this process made one first
  return *c;
}

void QueueCore::leave() noexcept {
  QueueConsumer* c = consumer_.exchange(nullptr);
  if (c == nullptr) return;
  if (c->pid != ::getpid()) return;  // our parent's: not ours to settle or free
  c->renewal.reset();
  try {
    std::lock_guard<std::mutex> lock(c->mutex);
    if (!c->held.empty()) {
      // Queue: done with them; JoinableQueue: not marked done, so back to the queue.
      Argv none{"0"};
      Argv extra{c->cid, std::to_string(shared_->options.lease.count()), "0"};
      Argv ids = id_list(c->held.begin(), c->held.end());
      if (shared_->joinable) {
        extra.insert(extra.end(), none.begin(), none.end());
        extra.insert(extra.end(), ids.begin(), ids.end());
      } else {
        extra.insert(extra.end(), ids.begin(), ids.end());
        extra.insert(extra.end(), none.begin(), none.end());
      }
      extra.insert(extra.end(), none.begin(), none.end());
      const auto budget = std::min(shared_->client.options().command_timeout,
                                   std::chrono::milliseconds(2000));
      shared_->run(scripts().take, c->keys, extra, Clock::now() + budget);
    }
  } catch (...) {
    // The server is unreachable: the lease lapses and the messages come back (counted).
  }
  delete c;
}

std::size_t QueueCore::put(const std::vector<std::string>& payloads, Deadline deadline,
                           bool wait) const {
  QueueShared& s = *shared_;
  if (payloads.empty()) return 0;
  for (;;) {
    std::optional<Reply> r = s.run(scripts().put, s.keys, payloads, deadline);
    if (!r) return 0;
    const std::string& status = (*r)[0].str();
    if (status == "ok") return static_cast<std::size_t>((*r)[1].integer());
    if (status == "closed") throw Closed("multiproc::redis: " + s.what + ": put on a closed queue");
    if (!wait) return 0;
    if (!s.wait_token(s.keys[4], deadline)) return 0;
  }
}

std::vector<RawMessage> QueueCore::get(std::size_t max, Deadline deadline, bool wait) const {
  QueueShared& s = *shared_;
  QueueConsumer& c = me();
  for (;;) {
    std::vector<RawMessage> out;
    std::string status;
    std::string bad;
    {
      std::lock_guard<std::mutex> lock(c.mutex);
      Argv extra{c.cid, std::to_string(s.options.lease.count()), std::to_string(max)};
      Argv none{"0"};
      Argv ids = id_list(c.held.begin(), c.held.end());
      if (s.joinable) {  // keep what is held (task_done acknowledges)
        extra.insert(extra.end(), none.begin(), none.end());
        extra.insert(extra.end(), none.begin(), none.end());
        extra.insert(extra.end(), ids.begin(), ids.end());
      } else {  // acknowledge what is held: the consumer is back for more
        extra.insert(extra.end(), ids.begin(), ids.end());
        extra.insert(extra.end(), none.begin(), none.end());
        extra.insert(extra.end(), none.begin(), none.end());
      }
      std::optional<Reply> r = s.run(scripts().take, c.keys, extra, deadline);
      if (!r) return {};  // unanswered: held stays held (acknowledged again next time)
      status = (*r)[0].str();
      if (!s.joinable) c.held.clear();
      for (std::size_t i = 3; i < r->size(); ++i) {
        out.push_back(parse_entry((*r)[i].str(), s.what));
        c.held.push_back(std::to_string(out.back().id));
      }
      if (status == "corrupt") bad = (*r)[1].str();
      c.holding.store(c.held.size());
      if (!c.held.empty() && !c.renewal.active()) {
        auto shared = shared_;
        QueueConsumer* self = &c;
        const auto period = std::max(s.options.lease / 3, std::chrono::milliseconds(1));
        c.renewal = Renewal(period, [shared, self, period] {
          if (self->holding.load() == 0) return true;
          Argv args = shared->common;
          args[4] = std::to_string(shared->offset.load() + steady_ms(Clock::now() + period));
          args.push_back(self->cid);
          args.push_back(std::to_string(shared->options.lease.count()));
          shared->client.eval_call(scripts().renew, self->keys, args, Clock::now() + period);
          return true;
        });
      }
    }
    if (!out.empty()) return out;
    if (status == "corrupt") {
      std::string shown;
      for (unsigned char ch : bad) {
        char hex[8];
        if (ch >= 32 && ch < 127 && ch != '\\') {
          shown += static_cast<char>(ch);
        } else {
          std::snprintf(hex, sizeof hex, "\\x%02x", ch);
          shown += hex;
        }
      }
      throw Error(errc::corrupt, "multiproc::redis: " + s.what + ": a message in " + s.keys[0] +
                                     " is not one of this queue's entries ('" + shown +
                                     "...'); moved to " + s.prefix + ":dead");
    }
    if (status == "closed") {
      throw Closed("multiproc::redis: " + s.what + ": get on a closed and drained queue");
    }
    if (!wait || max == 0) return {};
    if (deadline && Clock::now() >= *deadline) return {};
    if (!s.wait_token(s.keys[3], deadline)) return {};
  }
}

void QueueCore::reject(const RawMessage& m, const char* why) const {
  QueueShared& s = *shared_;
  QueueConsumer& c = me();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    const std::string id = std::to_string(m.id);
    auto it = std::find(c.held.begin(), c.held.end(), id);
    if (it != c.held.end()) {
      // Acknowledged (for a JoinableQueue: counted done, as every dead letter is), then its
      // entry is pushed to the dead letters.
      c.held.erase(it);
      Argv extra{c.cid, std::to_string(s.options.lease.count()), "0", "1", id, "0"};
      Argv keep = id_list(c.held.begin(), c.held.end());
      extra.insert(extra.end(), keep.begin(), keep.end());
      s.run(scripts().take, c.keys, extra, {});
      s.client.command({"RPUSH", s.prefix + ":dead",
                        std::to_string(m.deliveries - 1) + ":" + id + ":" + m.payload});
      c.holding.store(c.held.size());
    }
  }
  throw Error(errc::corrupt, "multiproc::redis: " + s.what + ": message " + std::to_string(m.id) +
                                 " is not a value of this queue's type (" + why + "); moved to " +
                                 s.prefix + ":dead");
}

void QueueCore::unget(const std::vector<RawMessage>& ms) const {
  QueueShared& s = *shared_;
  QueueConsumer& c = me();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (const RawMessage& m : ms) {
    auto it = std::find(c.held.begin(), c.held.end(), std::to_string(m.id));
    if (it != c.held.end()) c.held.erase(it);
  }
  // What is in flight and neither acknowledged nor kept goes back uncounted.
  Argv extra{c.cid, std::to_string(s.options.lease.count()), "0", "0", "0"};
  Argv keep = id_list(c.held.begin(), c.held.end());
  extra.insert(extra.end(), keep.begin(), keep.end());
  s.run(scripts().take, c.keys, extra, {});
  c.holding.store(c.held.size());
}

std::size_t QueueCore::ack() const {
  QueueShared& s = *shared_;
  QueueConsumer& c = me();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.held.empty()) return 0;
  Argv extra{c.cid, std::to_string(s.options.lease.count()), "0"};
  Argv ids = id_list(c.held.begin(), c.held.end());
  extra.insert(extra.end(), ids.begin(), ids.end());
  extra.push_back("0");
  extra.push_back("0");
  std::optional<Reply> r = s.run(scripts().take, c.keys, extra, {});
  c.held.clear();
  c.holding.store(0);
  return static_cast<std::size_t>((*r)[2].integer());
}

bool QueueCore::task_done() const {
  QueueShared& s = *shared_;
  QueueConsumer& c = me();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.held.empty()) {
    throw Error(errc::bad_state, "multiproc::redis: " + s.what +
                                     ": task_done() called more times than this handle took "
                                     "messages");
  }
  Argv extra{c.cid, std::to_string(s.options.lease.count()), "0", "1", c.held.front(), "0"};
  Argv keep = id_list(c.held.begin() + 1, c.held.end());
  extra.insert(extra.end(), keep.begin(), keep.end());
  std::optional<Reply> r = s.run(scripts().take, c.keys, extra, {});
  c.held.pop_front();
  c.holding.store(c.held.size());
  return (*r)[2].integer() == 1;
}

bool QueueCore::join(Deadline deadline) const {
  QueueShared& s = *shared_;
  for (;;) {
    std::optional<Reply> r = s.run(scripts().join, s.keys, {}, deadline);
    if (!r) return false;
    if (std::stoll((*r)[1].str()) <= 0) return true;
    if (deadline && Clock::now() >= *deadline) return false;
    if (!s.wait_token(s.keys[5], deadline)) return false;
  }
}

std::size_t QueueCore::held() const noexcept {
  QueueConsumer* c = consumer_.load(std::memory_order_acquire);
  return c != nullptr && c->pid == ::getpid() ? c->holding.load() : 0;
}

namespace {
Reply stats(QueueShared& s) {
  return *s.run(scripts().stats, s.keys, {}, {});
}
}  // namespace

std::size_t QueueCore::size() const { return static_cast<std::size_t>(stats(*shared_)[1].integer()); }
std::size_t QueueCore::dead_size() const {
  return static_cast<std::size_t>(stats(*shared_)[2].integer());
}
std::uint64_t QueueCore::unfinished() const {
  return static_cast<std::uint64_t>(stats(*shared_)[3].integer());
}
bool QueueCore::closed() const { return stats(*shared_)[4].integer() == 1; }
void QueueCore::close() const { shared_->run(scripts().close, shared_->keys, {}, {}); }
std::size_t QueueCore::capacity() const noexcept { return shared_->capacity; }
const std::string& QueueCore::name() const noexcept { return shared_->name; }
const std::string& QueueCore::describe() const noexcept { return shared_->what; }
const Client& QueueCore::client() const noexcept { return shared_->client; }

}  // namespace detail
}  // namespace multiproc::redis
