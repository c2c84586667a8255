// The pre-fork server sample (samples/prefork_server) end to end: the real binary on 127.0.0.1,
// real sockets, workers SIGKILLed under load, and the hit counter checked against the answers.
#include "support/support.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <cstdio>
#include <fcntl.h>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <set>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#ifndef MULTIPROC_PREFORK_SERVER
#error "tests/CMakeLists.txt defines MULTIPROC_PREFORK_SERVER as the sample's path"
#endif

extern char** environ;

using namespace mptest;

namespace {

std::vector<std::string> shm_entries_of(int port);

// One running prefork_server (port 0: any), its port and pid read from its first line.
class Server {
 public:
  explicit Server(int workers, int port = 0) {
    int out[2];
    BOOST_TEST_REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);  // the request log
    const std::string w = std::to_string(workers), at = std::to_string(port);
    const char* argv[] = {MULTIPROC_PREFORK_SERVER, at.c_str(), w.c_str(), nullptr};
    const int r = ::posix_spawn(&pid_, MULTIPROC_PREFORK_SERVER, &fa, nullptr,
                                const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    BOOST_TEST_REQUIRE(r == 0, "posix_spawn " MULTIPROC_PREFORK_SERVER ": " << std::strerror(r));
    // "prefork_server: listening on 127.0.0.1:<port> pid <pid>", within 30 s.
    std::string line;
    pollfd p{out[0], POLLIN, 0};
    while (line.find('\n') == std::string::npos && ::poll(&p, 1, 30000) == 1) {
      char buf[256];
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    int server_pid = 0;
    BOOST_TEST_REQUIRE(std::sscanf(line.c_str(), "prefork_server: listening on 127.0.0.1:%d pid %d",
                                   &port_, &server_pid) == 2,
                       "first line: " << line);
    BOOST_TEST_REQUIRE(server_pid == pid_);
  }
  ~Server() {
    if (pid_ > 0) {  // a failed test: kill it and remove what it leaves (its daemons die with it)
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      if (!kept_) remove_names();
    }
  }
  //! The names stay when the master is SIGKILLed (the restart test checks them).
  void keep_names() { kept_ = true; }
  void remove_names() const;
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  //! SIGTERM, then the exit status within 30 s (-1 if it did not end: then it is killed).
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    const bool ended = eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, 30s);
    if (!ended) return -1;
    pid_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = 0;
  int port_ = 0;
  bool kept_ = false;
};

// GET path over a new connection; the whole response (headers and body), or "" if the
// connection failed, was reset or ended early.
std::string get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  const timeval limit{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buf[1024];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == 0) break;  // the server closed: the response is complete
      if (n < 0) {
        reply.clear();  // reset or timed out: a failed request
        break;
      }
      reply.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  // Complete only if the body has the announced length.
  const std::size_t body = reply.find("\r\n\r\n");
  const std::size_t cl = reply.find("Content-Length: ");
  if (body == std::string::npos || cl == std::string::npos ||
      reply.size() - body - 4 != std::stoul(reply.substr(cl + 16))) {
    return "";
  }
  return reply;
}

struct Hit {
  long n = 0;
  int pid = 0;
};
// The "hit <n> by <pid>" body of a GET / response.
bool parse_hit(const std::string& reply, Hit& h) {
  const std::size_t body = reply.find("\r\n\r\n");
  return body != std::string::npos &&
         std::sscanf(reply.c_str() + body + 4, "hit %ld by %d", &h.n, &h.pid) == 2;
}

long stats_hits(int port, long* restarts = nullptr) {
  const std::string r = get(port, "/stats");
  const std::size_t body = r.find("\r\n\r\n");
  long hits = -1, rs = -1;
  if (body != std::string::npos) std::sscanf(r.c_str() + body + 4, "hits %ld restarts %ld", &hits, &rs);
  if (restarts != nullptr) *restarts = rs;
  return hits;
}

std::vector<std::string> shm_entries_of(int port) {
  std::vector<std::string> out;
  const std::string prefix = "mp.prefork." + std::to_string(port) + ".";
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) out.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  return out;
}

void Server::remove_names() const {
  for (const std::string& e : shm_entries_of(port_)) ::shm_unlink(("/" + e).c_str());
}

// The children of `pid` (from its main thread's /proc children list).
std::vector<int> children_of(pid_t pid) {
  std::vector<int> out;
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children").c_str(), "r");
  if (f == nullptr) return out;
  int c = 0;
  while (std::fscanf(f, "%d", &c) == 1) out.push_back(c);
  std::fclose(f);
  return out;
}

// /proc/<pid>/cmdline with its NULs as spaces ("" if unreadable).
std::string cmdline_of(int pid) {
  std::string s;
  if (FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/cmdline").c_str(), "r")) {
    for (int c; (c = std::fgetc(f)) != EOF;) s += c == 0 ? ' ' : static_cast<char>(c);
    std::fclose(f);
  }
  return s;
}

// Whether the port can be bound again (nobody listens on it any more).
bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(prefork_server, Clean)

BOOST_AUTO_TEST_CASE(serves_counts_and_shuts_down_clean, *boost::unit_test::timeout(120)) {
  Server s(2);
  BOOST_TEST(shm_entries_of(s.port()).size() == 3u);  // hits, restarts, log
  std::set<long> seen;
  for (int i = 0; i < 50; ++i) {
    Hit h;
    BOOST_TEST_REQUIRE(parse_hit(get(s.port(), "/"), h));
    seen.insert(h.n);
  }
  BOOST_TEST(seen.size() == 50u);
  BOOST_TEST(*seen.begin() == 1);
  BOOST_TEST(*seen.rbegin() == 50);
  // One worker is exec'd (the program run again, handed the objects and the socket): it is there,
  // and it answers and counts in the same counter.
  int exec_worker = 0;  // polled: /proc shows the new command line a moment after the exec
  std::string seen_children;
  const bool found = eventually([&] {
    seen_children.clear();
    for (int child : children_of(s.pid())) {
      const std::string cmd = cmdline_of(child);
      seen_children += std::to_string(child) + ": " + cmd + "; ";
      if (cmd.find("--exec-worker") != std::string::npos) exec_worker = child;
    }
    return exec_worker > 0;
  }, 20s);
  BOOST_TEST_REQUIRE(found, "children: " << seen_children);
  long extra = 0;
  BOOST_TEST(eventually([&] {
    Hit h;
    if (!parse_hit(get(s.port(), "/"), h)) return false;
    ++extra;
    return h.pid == exec_worker && h.n == 50 + extra;
  }, 20s));
  BOOST_TEST(get(s.port(), "/nope").find("404") != std::string::npos);
  BOOST_TEST(stats_hits(s.port()) == 50 + extra);
  BOOST_TEST(s.stop() == 0);
  BOOST_TEST(shm_entries_of(s.port()).empty());
}

BOOST_AUTO_TEST_CASE(workers_killed_under_load_are_replaced_and_every_answered_hit_counted,
                     *boost::unit_test::timeout(180)) {
  // Four clients hammer GET /; meanwhile one worker is SIGKILLed from outside (wherever it is:
  // accepting, counting, answering) and one kills itself on /crash before counting. Every hit
  // answered has its own number; the counter ends at the number of answered hits plus at most
  // one per kill (a worker killed after counting, before its answer got out); workers that
  // answer after the kills include replacements.
  Server s(3);
  constexpr int kClients = 4;
  constexpr long kPerClient = 1500;
  std::mutex m;
  std::vector<Hit> answered;
  std::set<int> pids;
  long failed = 0;
  std::atomic<long> done{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (long i = 0; i < kPerClient; ++i) {
        Hit h;
        const bool ok = parse_hit(get(s.port(), "/"), h);
        std::lock_guard<std::mutex> g(m);
        if (ok) {
          answered.push_back(h);
          pids.insert(h.pid);
        } else {
          ++failed;
        }
        done.fetch_add(1);
      }
    });
  }
  // Kill one worker seen answering, once a quarter of the load is through.
  const bool quarter = eventually([&] { return done.load() >= kClients * kPerClient / 4; }, 60s);
  int victim = 0;
  std::set<int> before;
  {
    std::lock_guard<std::mutex> g(m);
    before = pids;
    if (!pids.empty()) victim = *pids.begin();
  }
  if (quarter && victim > 0) ::kill(victim, SIGKILL);
  // Dead before /crash goes out (a dying process may still take one connection from accept).
  BOOST_TEST(eventually([&] { return !pid_running(victim); }, 20s));
  const std::string crash = get(s.port(), "/crash");  // fails: that worker dies instead
  for (std::thread& t : clients) t.join();
  BOOST_TEST_REQUIRE(quarter);
  BOOST_TEST_REQUIRE(victim > 0);
  BOOST_TEST(crash.empty());

  std::set<long> numbers;
  for (const Hit& h : answered) numbers.insert(h.n);
  BOOST_TEST(numbers.size() == answered.size());  // no hit number answered twice
  BOOST_TEST(static_cast<long>(answered.size() + failed) == kClients * kPerClient);
  BOOST_TEST(failed <= 1);  // the request the killed worker was serving, if any
  long restarts = 0, hits = 0;
  BOOST_TEST(eventually([&] {
    hits = stats_hits(s.port(), &restarts);
    return restarts == 2;
  }, 20s), "restarts: " << restarts);
  BOOST_TEST_REQUIRE(!numbers.empty());
  BOOST_TEST(*numbers.rbegin() <= hits);
  // /crash counts nothing; the outside kill may have cost one counted hit.
  BOOST_TEST(hits >= static_cast<long>(answered.size()));
  BOOST_TEST(hits <= static_cast<long>(answered.size()) + 1);
  std::size_t new_workers = 0;
  for (int p : pids) new_workers += before.count(p) == 0 ? 1 : 0;
  BOOST_TEST(new_workers >= 1u, "no answer came from a worker started after the kill");
  BOOST_TEST(s.stop() == 0);
  BOOST_TEST(shm_entries_of(s.port()).empty());
}

BOOST_AUTO_TEST_CASE(a_master_sigkilled_is_restarted_without_cleanup,
                     *boost::unit_test::timeout(120)) {
  // The master is SIGKILLed: its workers and logger (daemons) die with it, its names stay in
  // /dev/shm, and a new master on the same port reclaims them (their creator is dead) with no
  // manual cleanup; stopped, it removes them.
  int port = 0;
  struct Leftovers {  // whatever happens below, the names do not outlive the test
    const int& port;
    ~Leftovers() {
      for (const std::string& e : shm_entries_of(port)) ::shm_unlink(("/" + e).c_str());
    }
  } leftovers{port};
  {
    Server s(2);
    port = s.port();
    Hit h;
    BOOST_TEST_REQUIRE(parse_hit(get(port, "/"), h));
    s.keep_names();
    ::kill(s.pid(), SIGKILL);
  }  // reaped
  BOOST_TEST(shm_entries_of(port).size() == 3u);
  // The daemons die by their parent-death signal; the port is free once none holds the socket.
  BOOST_TEST_REQUIRE(eventually([&] { return port_free(port); }, 20s));
  Server again(2, port);
  BOOST_TEST(again.port() == port);
  Hit h;
  BOOST_TEST_REQUIRE(parse_hit(get(port, "/"), h));
  BOOST_TEST(h.n == 1);  // a new counter, not the dead master's
  BOOST_TEST(again.stop() == 0);
  BOOST_TEST(shm_entries_of(port).empty());
}

BOOST_AUTO_TEST_SUITE_END()
