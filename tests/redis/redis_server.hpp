// tests/redis/redis_server.hpp — a redis-server of the test's own: started on 127.0.0.1 with a
// free port and a temporary directory, stopped (and the directory removed) by its destructor.
// Tests restart it (AOF on: acknowledged writes survive), SIGKILL it, SIGSTOP and SIGCONT it.
// The server gets SIGKILL when the THREAD that started it ends (PR_SET_PDEATHSIG), so that a test
// binary that crashes or times out leaves no server running: call start() and restart() from
// the test's own thread, never from a helper thread that ends before the test does.
#pragma once

#include "../support/support.hpp"

#include <multiproc/redis/client.hpp>

#include <string>

#include <sys/types.h>

namespace mptest {

// kAddressSanitizer: support.hpp.

class RedisServer {
 public:
  struct Config {
    bool aof = false;       //!< appendonly yes, appendfsync always: a restart keeps every write
    std::string password;   //!< requirepass
  };
  RedisServer() : RedisServer(Config{}) {}
  explicit RedisServer(Config config);
  ~RedisServer();  // stop(), in the process that started it
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  //! redis://[:password@]127.0.0.1:<port>/0
  std::string url() const;
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  bool running() const { return pid_ > 0; }

  void start();   //!< (again) on the same port and directory; waits until it answers PING
  void stop();    //!< SIGTERM (SIGCONT first if paused), waits; SIGKILL after 10 s
  void kill();    //!< SIGKILL, reaped
  void pause();   //!< SIGSTOP
  void resume();  //!< SIGCONT
  //! start() after stop()/kill(): the same data if AOF is on.
  void restart() { stop(); start(); }

 private:
  Config config_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  pid_t owner_;
};

//! Client options for the fault tests: `timeouts` to connect and for each reply, `reconnect_for`
//! in all, so that a dead or stopped server is reported within about a second or two.
inline multiproc::redis::Options redis_options(std::chrono::milliseconds timeouts,
                                               std::chrono::milliseconds reconnect_for) {
  multiproc::redis::Options o;
  o.connect_timeout = timeouts;
  o.command_timeout = timeouts;
  o.reconnect_for = reconnect_for;
  return o;
}

//! The fixture of every redis suite: a fresh server per test (`redis`), then Clean's checks
//! (nothing left in /dev/shm, no child left running or unreaped) once it is stopped.
struct RedisClean : Clean {
  RedisServer redis;
  void setup() {}
  void teardown() {
    redis.stop();
    Clean::teardown();
  }
};

}  // namespace mptest
