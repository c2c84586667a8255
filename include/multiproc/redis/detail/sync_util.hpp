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
