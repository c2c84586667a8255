// redis_primes_worker <url> [pool=primes] [lease_ms=1000] — serves "count_primes" to the pool
// until SIGTERM / SIGINT (or the coordinator's shutdown_workers()). Start any number of them, on
// any hosts that reach the server: redis_primes (the coordinator) starts its own.
#include <multiproc/redis.hpp>

#include "primes.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <unistd.h>

namespace rd = multiproc::redis;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s redis://host:port[/db] [pool=primes] [lease_ms=1000]\n", argv[0]);
    return 2;
  }
  // The clean way to stop: the handler asks serve() to return (async-signal-safe).
  std::signal(SIGTERM, [](int) { rd::stop_serving(); });
  std::signal(SIGINT, [](int) { rd::stop_serving(); });
  rd::ServeOptions options;
  options.name = argc > 2 ? argv[2] : "primes";
  options.lease = std::chrono::milliseconds(argc > 3 ? std::atol(argv[3]) : 1000);
  options.idle_wait = std::chrono::milliseconds(100);
  try {
    const std::size_t jobs = rd::serve(argv[1], {{"count_primes", &primes::count_primes}}, options);
    std::fprintf(stderr, "redis_primes_worker %d: served %zu jobs\n", static_cast<int>(getpid()), jobs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "redis_primes_worker: %s\n", e.what());
    return 1;
  }
  return 0;
}
