// tests/redis/redis_server.cpp — see redis_server.hpp.
#include "redis_server.hpp"

#include <boost/test/unit_test.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MULTIPROC_REDIS_SERVER
#define MULTIPROC_REDIS_SERVER "redis-server"
#endif

namespace mptest {
namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// Whether something answers "+PONG" on the port within one short try.
bool answers_ping(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  timeval tv{0, 200000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const char ping[] = "PING\r\n";
    char buf[64] = {};
    if (::write(fd, ping, sizeof ping - 1) == static_cast<ssize_t>(sizeof ping - 1)) {
      const ssize_t n = ::read(fd, buf, sizeof buf - 1);
      // A password-protected server answers -NOAUTH: it is up all the same.
      ok = n > 0 && (std::strncmp(buf, "+PONG", 5) == 0 || std::strncmp(buf, "-NOAUTH", 7) == 0);
    }
  }
  ::close(fd);
  return ok;
}

}  // namespace

RedisServer::RedisServer(Config config) : config_(std::move(config)), owner_(::getpid()) {
  char tmpl[] = "/tmp/multiproc-redis.XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  port_ = free_port();
  start();
}

RedisServer::~RedisServer() {
  if (::getpid() != owner_) return;  // a forked child's copy: the server is not its own
  stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string RedisServer::url() const {
  std::string auth = config_.password.empty() ? "" : ":" + config_.password + "@";
  return "redis://" + auth + "127.0.0.1:" + std::to_string(port_) + "/0";
}

void RedisServer::start() {
  if (pid_ > 0) return;
  for (int attempt = 0;; ++attempt) {
    std::vector<std::string> args = {MULTIPROC_REDIS_SERVER, "--port", std::to_string(port_),
                                     "--bind", "127.0.0.1", "--dir", dir_, "--save", "",
                                     "--daemonize", "no", "--logfile", dir_ + "/redis.log",
                                     "--appendonly", config_.aof ? "yes" : "no",
                                     "--appendfsync", "always", "--databases", "4"};
    if (!config_.password.empty()) {
      args.push_back("--requirepass");
      args.push_back(config_.password);
    }
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      // The server dies with the thread that started it, so that a test binary that crashes or
      // is killed (a timeout) leaves no redis-server behind; and if that happened already
      // between fork and here, at once.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != owner_) ::_exit(127);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited = true;
        break;
      }
      if (answers_ping(port_)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a server's start
    }
    if (!exited) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    if (attempt >= 3) {
      throw std::runtime_error("redis-server did not start on port " + std::to_string(port_) +
                               " (log: " + dir_ + "/redis.log)");
    }
    port_ = free_port();  // taken in the meantime: another one
  }
}

void RedisServer::stop() {
  if (pid_ <= 0 || ::getpid() != owner_) return;
  ::kill(pid_, SIGCONT);
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // waiting for its exit
  }
  pid_ = -1;
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void RedisServer::pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void RedisServer::resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

}  // namespace mptest
