// multiproc/redis/detail/sync_util.hpp — private: what the objects of redis/sync.hpp share
// (src/redis/lock.cpp, semaphore.cpp, sync.cpp). Users never name it.
#pragma once

#include <multiproc/error.hpp>
#include <multiproc/redis/client.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>

namespace multiproc::redis::detail {

//! The first lines of every script that needs the time: `now`, the server's clock in ms.
inline constexpr const char* kNowLua =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

//! "multiproc::redis: <what> on <server>: <message>" for an error about the object `what`.
inline std::string object_message(const Client& c, const std::string& what, const std::string& m) {
  return "multiproc::redis: " + what + " on " + c.describe() + ": " + m;
}

//! Runs f(); an Error it throws is thrown again with the object's name in front (the Client's
//! message already names the server and the command).
template <class F>
decltype(auto) named(const std::string& what, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    std::string_view m = e.what();
    constexpr std::string_view prefix = "multiproc::redis: ";
    if (m.substr(0, prefix.size()) == prefix) m.remove_prefix(prefix.size());
    throw Error(e.code(), "multiproc::redis: " + what + ": " + std::string(m));
  }
}

//! A BLPOP timeout in seconds ("0.250"), at least 1 ms (0 would mean "forever").
inline std::string blpop_seconds(std::chrono::milliseconds d) {
  const long long ms = std::max<long long>(1, d.count());
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", ms / 1000, ms % 1000);
  return buf;
}

//! The time left until `deadline` (none: `cap`), at most `cap`, at least 0.
inline std::chrono::milliseconds left_until(Deadline deadline, std::chrono::milliseconds cap) {
  if (!deadline) return cap;
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now());
  return std::clamp(d, std::chrono::milliseconds(0), cap);
}

//! The wait of Lock and Semaphore. try_once(id, deadline) tries to take the object once, as `id`
//! (one id for the whole wait, so that a try resent after a lost reply is recognised), and
//! returns nullopt (the deadline passed), {true, _} (taken) or {false, ms} (the first holder's
//! lease ends in ms). Between tries it blocks on the server (BLPOP on `wake_key`, which unlock
//! and release push to) until a wake-up, that lease's end (+ 5 ms: a dead holder's lease has
//! then expired and the next try takes over), or the deadline. Returns: whether it was taken.
template <class TryOnce>
bool acquire_loop(const Client& client, const std::string& what, const std::string& wake_key,
                  Deadline deadline, TryOnce&& try_once) {
  const std::string id = unique_id();
  for (;;) {
    auto r = try_once(id, deadline);
    if (!r) return false;
    if (r->first) return true;
    if (deadline && Clock::now() >= *deadline) return false;
    const auto slice = left_until(deadline, std::chrono::milliseconds(r->second + 5));
    const Argv blpop{"BLPOP", wake_key, blpop_seconds(slice)};
    auto w = named(what, [&] { return client.call(blpop, deadline, slice); });
    if (!w) return false;  // the deadline passed while the server did not answer
  }
}

//! Checks a lease option: Error(errc::invalid_argument) naming the object when below 30 ms.
inline void check_lease(const std::string& what, std::chrono::milliseconds lease) {
  if (lease.count() < 30) {
    throw Error(errc::invalid_argument, "multiproc::redis: " + what + ": lease of " +
                                            std::to_string(lease.count()) +
                                            " ms: at least 30 ms");
  }
}

//! Checks an object name: not empty, no whitespace (it becomes part of keys and messages).
void check_name(const std::string& kind, const std::string& name);

}  // namespace multiproc::redis::detail
