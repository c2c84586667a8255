// Private to src/redis/pool_*.cpp: the keys, the messages and the Lua scripts of redis::Pool
// (multiproc/redis/pool.hpp says what they guarantee).
//
// Keys of the pool <name>, all under P = "mp:pool:<name>":
//   P:queue            list of jobs; clients LPUSH, workers take from the right (RPOP, BLMOVE);
//                      a retried job is pushed back on the right, so it runs next.
//   P:workers          zset: worker id -> lease expiry (ms, the server's clock).
//   P:inflight:<wid>   list: the jobs worker <wid> holds (moved there atomically as it takes them).
//   P:call:<cid>       "1" while call <cid> is alive (PX result_ttl, renewed by its client).
//   P:result:<cid>     stream of result elements of call <cid> (field "r"); same TTL as the call.
//   P:shutdown         counter: Pool::shutdown_workers() increments it.
//
// A job (one apply, or one chunk of a map):
//   "<cid> <jobno> <tries> <max_retries> <task>\n" + to_bytes(JobBody)
// where tries counts the workers that died holding it (the reaper rewrites it) and JobBody is
// {args type, wanted result type ("" = any), the encoded argument tuples}.
// A result element: "<jobno> <status>\n" + body, status one of
//   ok        to_bytes(OkBody{result type, encoded results}), one per item of the job
//   err       to_bytes(ErrBody{exception type, message})      the task threw
//   mismatch  text                                            wrong argument / result types
//   unknown   text                                            no such task
//   corrupt   text                                            the job's bytes cannot be read
//   broken    text (written by the reaper)                    workers died holding it too often
#pragma once

#include <multiproc/redis/client.hpp>

#include <string>
#include <tuple>
#include <vector>

namespace multiproc::redis::detail {

using JobBody = std::tuple<std::string, std::string, std::vector<std::string>>;
using OkBody = std::tuple<std::string, std::vector<std::string>>;
using ErrBody = std::tuple<std::string, std::string>;

inline std::string pool_prefix(const std::string& name) { return "mp:pool:" + name; }

//! Throws Error(errc::invalid_argument) unless `name` is a usable pool or task name (non-empty,
//! at most 200 bytes, no blanks or control characters).
void check_pool_name(const std::string& name, const char* what);

// The reaper, shared by the scripts below: every worker whose lease expired (up to 16 per run)
// is removed; each job it held goes back to the queue with tries + 1, or, past its max_retries,
// fails its call with a "broken" element. Jobs of calls that expired are dropped.
inline const char* const kReapLua = R"lua(
local function reap(prefix, queue, workers, now, self)
  local dead = redis.call('ZRANGEBYSCORE', workers, '-inf', now, 'LIMIT', 0, 16)
  local n = 0
  for _, wid in ipairs(dead) do
    if wid ~= self then
      local inflight = prefix .. ':inflight:' .. wid
      local jobs = redis.call('LRANGE', inflight, 0, -1)
      for _, job in ipairs(jobs) do
        local eol = string.find(job, '\n', 1, true)
        local cid, jno, tries, maxr, task
        if eol then
          cid, jno, tries, maxr, task = string.match(string.sub(job, 1, eol - 1),
                                                     '^(%S+) (%d+) (%d+) (%d+) (%S+)$')
        end
        if cid then
          local ttl = redis.call('PTTL', prefix .. ':call:' .. cid)
          if ttl > 0 then
            tries = tonumber(tries) + 1
            if tries > tonumber(maxr) then
              local rkey = prefix .. ':result:' .. cid
              redis.call('XADD', rkey, '*', 'r', jno .. ' broken\ntask \'' .. task .. '\' was held by ' ..
                         tries .. ' worker(s) that died before finishing it (max_retries = ' ..
                         maxr .. '; the last was ' .. wid .. ')')
              redis.call('PEXPIRE', rkey, ttl)
            else
              redis.call('RPUSH', queue, cid .. ' ' .. jno .. ' ' .. tries .. ' ' .. maxr .. ' ' ..
                         task .. string.sub(job, eol))
            end
          end
        end
      end
      redis.call('DEL', inflight)
      redis.call('ZREM', workers, wid)
      n = n + 1
    end
  end
  return n
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
)lua";

// A worker's round trip. KEYS: queue, workers, inflight, shutdown. ARGV: prefix, wid, lease_ms,
// max jobs to take, k, then k triples (job key "<cid> <jobno>", cid, result element).
// Renews the worker's lease, stores the finished results (of live calls) and removes their jobs
// from the inflight list, reaps dead workers, takes up to its fair share of the queue (at most
// max), drops held jobs of calls that expired. Returns {shutdown counter, every job held}.
inline const char* const kTakeLua = R"lua(
local prefix, wid = ARGV[1], ARGV[2]
local now = now_ms()
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), wid)
local k = tonumber(ARGV[5])
local done = {}
for i = 0, k - 1 do
  local jkey, cid, elem = ARGV[6 + 3 * i], ARGV[7 + 3 * i], ARGV[8 + 3 * i]
  done[jkey] = true
  local ttl = redis.call('PTTL', prefix .. ':call:' .. cid)
  if ttl > 0 then
    local rkey = prefix .. ':result:' .. cid
    redis.call('XADD', rkey, '*', 'r', elem)
    redis.call('PEXPIRE', rkey, ttl)
  end
end
reap(prefix, KEYS[1], KEYS[2], now, wid)
local held = redis.call('LRANGE', KEYS[3], 0, -1)
local want = tonumber(ARGV[4])
if want > 0 then
  local fair = math.floor(redis.call('LLEN', KEYS[1]) / math.max(1, redis.call('ZCARD', KEYS[2])))
  want = math.min(want, math.max(1, fair))
  local taken = redis.call('RPOP', KEYS[1], want)
  if taken then
    for _, job in ipairs(taken) do held[#held + 1] = job end
  end
end
local keep = {}
local changed = k > 0 or want > 0
for _, job in ipairs(held) do
  local cid, jno = string.match(job, '^(%S+) (%d+) ')
  if cid and not done[cid .. ' ' .. jno] and redis.call('EXISTS', prefix .. ':call:' .. cid) == 1 then
    keep[#keep + 1] = job
  else
    changed = true
  end
end
if changed then
  redis.call('DEL', KEYS[3])
  for i = 1, #keep, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(keep, i, math.min(i + 999, #keep)))
  end
end
local counter = redis.call('GET', KEYS[4]) or '0'
local out = {counter}
for _, job in ipairs(keep) do out[#out + 1] = job end
return out
)lua";

// A client's reap while it waits. KEYS: queue, workers. ARGV: prefix, cid. Returns the PTTL of
// the call (-2: it expired).
inline const char* const kClientReapLua = R"lua(
reap(ARGV[1], KEYS[1], KEYS[2], now_ms(), '')
return redis.call('PTTL', ARGV[1] .. ':call:' .. ARGV[2])
)lua";

// Heartbeat. KEYS: workers. ARGV: lease_ms, wid... Renews the leases that are still there (a
// worker reaped while it stalled registers again with its next take). Returns the count renewed.
inline const char* const kBeatLua = R"lua(
local t = now_ms() + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', t, ARGV[i]) end
return n
)lua";

// A worker leaving. KEYS: queue, workers, inflight. ARGV: wid. Jobs still held go back to the
// queue (unchanged tries); the lease goes.
inline const char* const kLeaveLua = R"lua(
local held = redis.call('LRANGE', KEYS[3], 0, -1)
for _, job in ipairs(held) do redis.call('RPUSH', KEYS[1], job) end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return #held
)lua";

// Live workers. KEYS: workers. Returns the count of unexpired leases.
inline const char* const kLiveLua = R"lua(
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms(), '+inf')
)lua";

const Script& take_script();
const Script& client_reap_script();
const Script& beat_script();
const Script& leave_script();
const Script& live_script();

}  // namespace multiproc::redis::detail
