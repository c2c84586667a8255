// A pre-fork HTTP server on 127.0.0.1, built the way nginx or gunicorn run: a master that owns
// the listening socket and the shared objects, N forked workers and one exec'd worker (this
// program run again with --exec-worker, handed the objects and the socket by key) accepting on
// that one socket, a logger process draining a Queue of log lines, workers replaced when they
// die, and a clean shutdown on SIGTERM or SIGINT that leaves /dev/shm as it was. The master's
// supervisor loop is one mp::wait on its children and a signal pipe.
//
//   prefork_server [port=8080] [forked workers=4]   (port 0: any free port; the one chosen is printed)
//
//   GET /        counts a hit and answers "hit <n> by <pid>": n is this hit's number
//   GET /stats   answers "hits <n> restarts <r>" without counting
//   GET /crash   the worker that takes it kills itself (SIGKILL) before answering, counting nothing
//
// The first line on stdout is "prefork_server: listening on 127.0.0.1:<port> pid <pid>"; the
// logger writes one line per request to stderr. The shared objects are named
// "prefork.<port>.<what>" so that `multiproc-ls`-style tools and other programs can open them;
// a master SIGKILLed and started again reclaims the names (no manual cleanup).
//
// What survives what: a worker SIGKILLed at any point loses at most the request it was serving
// (its client sees the connection reset; if the kill fell after the hit was counted, that hit
// number is never answered): the hit counter stays exact for every answered hit, the master
// starts a replacement, the log queue stays usable. The logger dying loses the lines it held;
// the master starts another. Workers and logger are daemons: SIGKILLed when the master dies.
#include <multiproc/multiproc.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace mp = multiproc;
using namespace std::chrono_literals;

namespace {

volatile std::sig_atomic_t g_stop = 0;
int g_signal_pipe = -1;  // the write end; the supervisor waits on the read end
void on_stop_signal(int) {
  g_stop = 1;
  const int saved = errno;
  const char c = 's';
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe, &c, 1);  // full: a byte is there
  errno = saved;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "prefork_server: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int listen_on(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
  if (::listen(fd, 512) != 0) die("listen");
  return fd;
}

int bound_port(int fd) {
  sockaddr_in a{};
  socklen_t n = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) die("getsockname");
  return ntohs(a.sin_port);
}

bool write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads the request head (up to the blank line, at most 8 KiB); returns its path, or "" if the
// client went away or sent no request line.
std::string read_request_path(int fd) {
  std::string head;
  char buf[2048];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "";
    head.append(buf, static_cast<std::size_t>(n));
  }
  if (head.compare(0, 4, "GET ") != 0) return "";
  const std::size_t end = head.find(' ', 4);
  return end == std::string::npos ? "" : head.substr(4, end - 4);
}

std::string response(int status, const std::string& body) {
  return "HTTP/1.0 " + std::to_string(status) + (status == 200 ? " OK" : " Not Found") +
         "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

// The master's SIGTERM/SIGINT handler only sets its flag: a child that kept it would ignore the
// master's terminate(). mp::ChildOptions' defaults reset handlers and unblock the mask in the
// child; start_child blocks both signals across the fork, so one sent before the child's handlers
// are reset waits until they are, and then ends it. SIGINT (Ctrl-C reaches the whole process
// group) is left to the master, which stops everyone.
mp::ChildOptions child_options() {
  mp::ChildOptions o;
  o.setup = [] { std::signal(SIGINT, SIG_IGN); };
  return o;
}

// Starts p with SIGTERM and SIGINT blocked across the fork (see child_options).
void start_child(mp::Process& p) {
  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  ::sigprocmask(SIG_BLOCK, &stop, &old);
  try {
    p.start();
  } catch (...) {
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    throw;
  }
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
}

// The objects every worker shares; copies of the handles are cheap and stay valid in children.
struct Shared {
  mp::SharedValue<long> hits;
  mp::SharedValue<long> restarts;
  mp::Queue<std::string> log;
};

// A worker: accept, answer, log; forever (until SIGTERM or SIGKILL).
int serve(int listen_fd, const Shared& s) {
  const std::string me = std::to_string(::getpid());
  for (;;) {
    const int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("accept");
    }
    const timeval limit{5, 0};  // a client that sends nothing does not hold the worker for good
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    const std::string path = read_request_path(c);
    std::string line;
    if (path == "/") {
      const long n = s.hits.update([](long& h) { return ++h; });
      char body[64];  // one length for every answer, as load generators (ab) expect
      std::snprintf(body, sizeof body, "hit %012ld by %8s\n", n, me.c_str());
      write_all(c, response(200, body));
      line = me + " GET / hit " + std::to_string(n);
    } else if (path == "/stats") {
      write_all(c, response(200, "hits " + std::to_string(s.hits.load()) + " restarts " +
                                     std::to_string(s.restarts.load()) + "\n"));
      line = me + " GET /stats";
    } else if (path == "/crash") {
      ::kill(::getpid(), SIGKILL);
    } else if (!path.empty()) {
      write_all(c, response(404, "no such page\n"));
      line = me + " GET " + path.substr(0, 200) + " 404";
    }
    ::close(c);
    // A full log queue drops the line rather than slow the answers down.
    if (!line.empty()) s.log.try_put(line);
  }
}

// The logger: one line per request on stderr, until the queue is closed and drained.
int drain_log(const mp::Queue<std::string>& log) {
  try {
    for (;;) {
      const std::string line = log.get();
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  } catch (const mp::Closed&) {
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--exec-worker") == 0) {
    // The exec'd worker: everything it needs comes from the master's handover, by key.
    std::signal(SIGINT, SIG_IGN);
    const Shared s{mp::inherited<mp::SharedValue<long>>("hits"),
                   mp::inherited<mp::SharedValue<long>>("restarts"),
                   mp::inherited<mp::Queue<std::string>>("log")};
    return serve(mp::inherited_fd("listen"), s);
  }
  const int port = argc > 1 ? std::atoi(argv[1]) : 8080;
  const int forked = argc > 2 ? std::atoi(argv[2]) : 4;
  if (argc > 3 || port < 0 || port > 65535 || forked < 1 || forked > 256) {
    std::fprintf(stderr, "usage: prefork_server [port=8080] [forked workers=4, 1..256]\n");
    return 2;
  }
  int sig_pipe[2];
  if (::pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) die("pipe2");
  g_signal_pipe = sig_pipe[1];
  struct sigaction sa{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  const int listen_fd = listen_on(port);
  const std::string prefix = "prefork." + std::to_string(bound_port(listen_fd)) + ".";
  Shared s{mp::SharedValue<long>(mp::create_only, prefix + "hits", 0),
           mp::SharedValue<long>(mp::create_only, prefix + "restarts", 0),
           mp::Queue<std::string>(mp::create_only, prefix + "log", 4096)};


  // Children are daemons (SIGKILLed when the master dies), named (ps and pgrep show the name),
  // and start with default signal handlers (child_options).
  auto start_logger = [&] {
    mp::Process p(drain_log, s.log);
    p.set_name("prefork-logger").set_daemon(true).set_options(child_options());
    start_child(p);
    return p;
  };
  auto start_worker = [&](int i) {
    mp::Process p(serve, listen_fd, s);
    mp::ChildOptions o = child_options();
    o.close_fds = true;  // nothing the master opened but the socket (multiproc objects need none)
    o.keep_fds = {listen_fd};
    p.set_name("prefork-worker-" + std::to_string(i)).set_daemon(true).set_options(o);
    start_child(p);
    return p;
  };
  auto start_exec_worker = [&](int i) {
    // This program again, as its exec'd worker (by its own path: ps then shows its name).
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    mp::Process p(mp::Command{n > 0 ? std::string(self, static_cast<std::size_t>(n)) : "/proc/self/exe",
                              {argv[0], "--exec-worker"}});
    p.pass("hits", s.hits).pass("restarts", s.restarts).pass("log", s.log);
    p.pass_fd("listen", listen_fd);
    p.set_name("prefork-worker-" + std::to_string(i)).set_daemon(true).set_options(child_options());
    start_child(p);
    return p;
  };
  auto start = [&](int i) { return i < forked ? start_worker(i) : start_exec_worker(i); };
  mp::Process logger = start_logger();
  std::vector<mp::Process> pool;
  for (int i = 0; i <= forked; ++i) pool.push_back(start(i));  // the last one exec'd
  // Ready: every child started (the exec'd one has exec'd).
  std::printf("prefork_server: listening on 127.0.0.1:%d pid %d\n", bound_port(listen_fd),
              static_cast<int>(::getpid()));
  std::fflush(stdout);

  // Supervise: one wait on every child and the signal pipe; a child that ended is replaced.
  while (g_stop == 0) {
    std::vector<mp::Waitable> children(pool.begin(), pool.end());
    children.emplace_back(logger);
    children.push_back(mp::Waitable::fd(sig_pipe[0]));
    for (std::size_t i : mp::wait(children)) {
      if (g_stop != 0 || i > pool.size()) break;  // the signal pipe: stop
      mp::Process& dead = i < pool.size() ? pool[i] : logger;
      dead.join();
      const int code = dead.exitcode().value_or(0);
      s.log.try_put("master: " + dead.name() + " (pid " + std::to_string(dead.pid()) + ") " +
                    (code < 0 ? "killed by signal " + std::to_string(-code)
                              : "exited with " + std::to_string(code)) +
                    "; starting another");
      s.restarts.update([](long& r) { ++r; });
      dead = i < pool.size() ? start(static_cast<int>(i)) : start_logger();
    }
  }

  // Shutdown: workers first (SIGTERM, then reaped), then the logger drains what they logged.
  for (mp::Process& w : pool) w.terminate();
  for (mp::Process& w : pool) w.join();
  s.log.try_put("master: stopped; " + std::to_string(s.hits.load()) + " hits");
  s.log.close();
  if (!logger.join_for(10s)) {
    logger.kill();
    logger.join();
  }
  ::close(listen_fd);
  ::close(sig_pipe[0]);
  ::close(sig_pipe[1]);
  return 0;  // the shared objects' names go with their handles
}
