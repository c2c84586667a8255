// Links multiproc::redis (and through it hiredis) and uses it without a server: parses a url, and
// finds nobody listening on a port that is closed (a clear error, not a hang).
#include <multiproc/redis.hpp>

#include <cstdio>

namespace rd = multiproc::redis;

int main() {
  const auto url = rd::Url::parse("redis://:pw@127.0.0.1:1/2");
  rd::Options o;
  o.reconnect_for = std::chrono::milliseconds(100);
  rd::Client c("redis://127.0.0.1:1/2", o);
  try {
    c.command({"PING"});
    return 1;
  } catch (const multiproc::Error& e) {
    if (e.code() != multiproc::errc::disconnected) return 2;
  }
  std::printf("multiproc::redis ok: %s\n", url.describe().c_str());
  return 0;
}
