// wait(): the ready subset of connections, queues, process sentinels, raw fds and child pids,
// and its timeout.
#include "support/support.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace mptest;

namespace {

// In a forked test child: lowers the open-file limit to the lowest free descriptor, so every
// attempt to open one (pidfd_open, eventfd, pipe) fails with EMFILE; restores it when destroyed.
class NoNewDescriptors {
 public:
  NoNewDescriptors() {
    if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0) return;
    const int lowest_free = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (lowest_free < 0) return;
    ::close(lowest_free);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(lowest_free);
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) return;
    const int probe = ::eventfd(0, EFD_CLOEXEC);
    if (probe >= 0) {
      ::close(probe);
      return;
    }
    active_ = errno == EMFILE;
  }
  ~NoNewDescriptors() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  NoNewDescriptors(const NoNewDescriptors&) = delete;
  NoNewDescriptors& operator=(const NoNewDescriptors&) = delete;
  //! Whether new descriptors really fail with EMFILE now.
  bool active() const noexcept { return active_; }

 private:
  rlimit saved_{};
  bool active_ = false;
};

// Runs a timed wait() on `objects` that must time out; returns false (and says why) if it
// returned something, ended early, or used more than half of the wall time in CPU.
bool times_out_asleep(const std::vector<mp::Waitable>& objects, std::chrono::milliseconds timeout) {
  const double cpu0 = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  const auto ready = mp::wait(objects, timeout);
  const double wall = seconds_since(start);
  const double cpu = cpu_seconds() - cpu0;
  std::fprintf(stderr, "wait(%lld ms): %zu ready, %.3f s wall, %.3f s CPU\n",
               static_cast<long long>(timeout.count()), ready.size(), wall, cpu);
  return ready.empty() && wall >= 0.95 * std::chrono::duration<double>(timeout).count() &&
         cpu < 0.5 * wall;
}

// Two descriptors (a pipe, or a socket pair), closed when destroyed.
class FdPair {
 public:
  enum Kind { pipe, socket_pair };
  explicit FdPair(Kind kind, int pipe_flags = 0) {
    const int rc = kind == pipe ? ::pipe2(fd_, O_CLOEXEC | pipe_flags)
                                : ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd_);
    if (rc != 0) throw std::runtime_error("pipe2/socketpair failed");
  }
  ~FdPair() {
    close(0);
    close(1);
  }
  FdPair(const FdPair&) = delete;
  FdPair& operator=(const FdPair&) = delete;
  int operator[](int i) const { return fd_[i]; }
  void close(int i) {
    if (fd_[i] >= 0) ::close(fd_[i]);
    fd_[i] = -1;
  }

 private:
  int fd_[2] = {-1, -1};
};

// A raw fork()ed child, no Process: exits with `code` once `release` is signalled (3 if it is not
// within 60 s). The test reaps it (reap()).
pid_t fork_raw_child(Gate& release, int code) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(release.wait(60s) ? code : 3);
  return pid;
}

// waitpid(pid) until it succeeds; returns the raw status, or -1 (errno) if it failed.
int reap(pid_t pid) {
  int status = 0;
  for (;;) {
    if (::waitpid(pid, &status, 0) == pid) return status;
    if (errno != EINTR) return -1;
  }
}

// Runs f, which must throw an Error carrying errno `err` in the system category, with a message
// containing every part.
template <class F>
void expect_system_error(F&& f, int err, std::initializer_list<std::string> parts) {
  try {
    f();
    BOOST_ERROR("no error thrown");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == std::error_code(err, std::system_category())),
               "code was " << e.code().message() << ": " << e.what());
    for (const auto& part : parts) BOOST_TEST(message_has(e, part), "missing '" << part << "'");
  }
}

// The write end a SIGUSR1 handler writes one byte to (the self-pipe trick).
volatile std::sig_atomic_t signal_pipe_write_end = -1;

extern "C" void write_to_signal_pipe(int) {
  const int saved = errno;
  const char c = 's';
  if (::write(signal_pipe_write_end, &c, 1) < 0) {
  }  // a full pipe already wakes the waiter
  errno = saved;
}

// Installs write_to_signal_pipe for SIGUSR1 while it exists.
class SignalPipeHandler {
 public:
  explicit SignalPipeHandler(int write_end) {
    signal_pipe_write_end = write_end;
    struct sigaction sa {};
    sa.sa_handler = &write_to_signal_pipe;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGUSR1, &sa, &old_);
  }
  ~SignalPipeHandler() {
    ::sigaction(SIGUSR1, &old_, nullptr);
    signal_pipe_write_end = -1;
  }
  SignalPipeHandler(const SignalPipeHandler&) = delete;
  SignalPipeHandler& operator=(const SignalPipeHandler&) = delete;

 private:
  struct sigaction old_ {};
};

using Indices = std::vector<std::size_t>;

// Polls until this process's main thread is inside one of the system calls `numbers` (from
// /proc/self/syscall, opened beforehand as `syscall_fd`: this needs no new descriptor, so it works
// at the open-file limit too). Returns false after `timeout`.
bool main_thread_in(int syscall_fd, const std::vector<long>& numbers,
                    std::chrono::milliseconds timeout = 10s) {
  return eventually(
      [&] {
        char buf[256];
        const ssize_t n = ::pread(syscall_fd, buf, sizeof buf - 1, 0);
        if (n <= 0) return false;
        buf[n] = '\0';
        const long number = std::strtol(buf, nullptr, 10);
        return std::find(numbers.begin(), numbers.end(), number) != numbers.end();
      },
      timeout);
}

// The system call a wait() with a queue in its list sleeps in: futex_waitv where the kernel has
// it (Linux 5.16+), else futex. Not both: a thread sleeps on plain futexes elsewhere too (under
// TSan, pthread_create waits on one for the new thread to start), and a reaper that took such a
// sleep for wait() would reap the child before wait() had checked its list.
std::vector<long> futex_sleeps() {
#ifdef SYS_futex_waitv
  errno = 0;
  if (::syscall(SYS_futex_waitv, nullptr, 0, 0, nullptr, 0) == -1 && errno != ENOSYS) {
    return {SYS_futex_waitv};
  }
#endif
  return {SYS_futex};
}

// A thread that, once this process's main thread sleeps on a futex (inside a wait() with a queue
// in its list, which has checked its list by then; `seen` tells whether it was seen there),
// releases raw child `pid` and reaps it into `status`. Joined by join() or, should wait() throw,
// by the destructor (a joinable std::thread would end the test run in std::terminate). The caller
// keeps `syscall_fd` (/proc/self/syscall) open until then.
class ReapDuringWait {
 public:
  ReapDuringWait(pid_t pid, Gate& release, int& status, bool& seen, int syscall_fd)
      : thread_([pid, &release, &status, &seen, syscall_fd] {
          seen = main_thread_in(syscall_fd, futex_sleeps());
          release.signal();
          status = reap(pid);
        }) {}
  ~ReapDuringWait() { join(); }
  ReapDuringWait(const ReapDuringWait&) = delete;
  ReapDuringWait& operator=(const ReapDuringWait&) = delete;
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread thread_;
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(wait_any, Clean)

BOOST_AUTO_TEST_CASE(returns_the_ready_subset, *boost::unit_test::timeout(60)) {
  auto [a, b] = mp::Pipe();
  auto [c, d] = mp::Pipe();
  mp::Queue<int> q(4);
  a.send(1);
  q.put(2);
  const auto ready = mp::wait({b, d, q}, 0ms);
  BOOST_TEST((ready == std::vector<std::size_t>{0, 2}));
  BOOST_TEST(b.recv<int>() == 1);
  BOOST_TEST(q.get() == 2);
  (void)c;
}

BOOST_AUTO_TEST_CASE(empty_after_the_timeout, *boost::unit_test::timeout(60)) {
  auto [a, b] = mp::Pipe();
  mp::Queue<int> q(4);
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(mp::wait({b, q}, 50ms).empty());
  BOOST_TEST(seconds_since(start) >= 0.049);
  (void)a;
}

BOOST_AUTO_TEST_CASE(wakes_for_a_message_from_another_process, *boost::unit_test::timeout(60)) {
  auto [a, b] = mp::Pipe();
  mp::Queue<std::string> q(4);
  mp::Process sender([q] { q.put("hi"); });
  sender.start();
  const auto ready = mp::wait({b, q});
  BOOST_TEST((ready == std::vector<std::size_t>{1}));
  BOOST_TEST(q.get() == "hi");
  BOOST_REQUIRE(sender.join_for(10s));
  (void)a;
}

BOOST_AUTO_TEST_CASE(closed_peer_and_closed_queue_count_as_ready, *boost::unit_test::timeout(60)) {
  auto [a, b] = mp::Pipe();
  mp::Queue<int> q(4);
  a.close();
  BOOST_TEST((mp::wait({b}, 5s) == std::vector<std::size_t>{0}));
  q.close();
  BOOST_TEST((mp::wait({q}, 5s) == std::vector<std::size_t>{0}));
}

BOOST_AUTO_TEST_CASE(process_sentinels_are_ready_when_the_child_ends, *boost::unit_test::timeout(60)) {
  Gate release;
  mp::Process quick([] {});
  mp::Process slow([&] { release.wait(60s); });
  mp::Queue<int> q(4);
  quick.start();
  slow.start();
  BOOST_TEST((mp::wait({q, quick, slow}, 30s) == std::vector<std::size_t>{1}));
  release.signal();
  const auto ready = mp::wait({q, slow}, 30s);
  BOOST_TEST((ready == std::vector<std::size_t>{1}));
  BOOST_TEST(*slow.exitcode() == 0);
}

BOOST_AUTO_TEST_CASE(send_only_connection_is_an_error, *boost::unit_test::timeout(60)) {
  auto [reader, writer] = mp::Pipe(false);
  BOOST_CHECK_THROW(mp::wait({writer}, 0ms), mp::Error);
  mp::Process never_started([] {});
  BOOST_CHECK_THROW(mp::wait({never_started}, 0ms), mp::Error);
  (void)reader;
}

// A Connection this process closed is an error, as poll() on it — not "ready" for data left in
// its channel (recv() would throw), nor a wait for data nobody reads (an outside probe hung on it).
BOOST_AUTO_TEST_CASE(a_connection_closed_here_is_an_error, *boost::unit_test::timeout(60)) {
  auto ends = mp::Pipe();  // not structured bindings: clang will not capture them in a lambda
  mp::Connection &a = ends.first, &b = ends.second;
  a.send(1);
  b.close();
  expect_error([&] { (void)mp::wait({b}, 0ms); }, mp::errc::closed, {"closed"});
  auto other = mp::Pipe();
  mp::Connection& d = other.second;
  d.close();
  expect_error([&] { (void)mp::wait({d}); }, mp::errc::closed, {"closed"});
}

// An outside probe: a Connection closed by another thread while wait() slept on it was taken for
// "not ready" at every wake-up, so wait() slept on, for ever without a timeout (poll() throws).
BOOST_AUTO_TEST_CASE(a_connection_closed_by_another_thread_during_wait_is_an_error,
                     *boost::unit_test::timeout(60)) {
  auto ends = mp::Pipe();
  mp::Connection& a = ends.first;
  std::thread closer([&] {
    // Not a synchronisation: whether close() comes before or during the wait, wait() must throw
    // closed at once; the pause only makes "during" the likely case.
    std::this_thread::sleep_for(100ms);
    a.close();
  });
  const auto t0 = std::chrono::steady_clock::now();
  expect_error([&] { (void)mp::wait({a}, 20s); }, mp::errc::closed, {"closed"});
  closer.join();
  BOOST_TEST(seconds_since(t0) < 10.0);
}

// An outside probe: a signal has 8 slots naming its sleepers; a 9th is counted without one, so
// when 9 processes were killed inside wait() on a queue, the count never came back to 0 and every
// later put made a wake-up system call (20x slower for good). Now wake-ups that find nobody
// asleep take the unslotted sleepers off the count too.
BOOST_AUTO_TEST_CASE(sleepers_killed_beyond_the_slots_leave_no_count_behind,
                     *boost::unit_test::timeout(120)) {
  mp::Queue<long> q(1024);
  mp::detail::Signal& data = q.channel().state()->data;
  constexpr int kSleepers = 12;  // more than kSleeperSlots
  std::vector<std::unique_ptr<mp::Process>> sleepers;
  for (int i = 0; i < kSleepers; ++i) {
    sleepers.push_back(std::make_unique<mp::Process>([q] {
      (void)mp::wait({q});  // until killed
      return 1;
    }));
    sleepers.back()->start();
  }
  BOOST_REQUIRE(eventually([&] { return data.observers.load() == kSleepers; }, 30s));
  for (auto& p : sleepers) p->kill();
  for (auto& p : sleepers) BOOST_REQUIRE(p->join_for(30s));
  long sum = 0;
  for (long i = 0; i < 20000; ++i) {  // enough wake-ups that find nobody for the healing
    q.put(i);
    sum += q.get();
  }
  BOOST_TEST(sum == 20000L * 19999 / 2);
  BOOST_TEST(data.observers.load() == 0u);
  BOOST_TEST(data.waiters.load() == 0u);
}

// futex_waitv takes at most 128 words: more queues and connections than that were a busy loop
// (the kernel refused the call, EINVAL, which wait() took for a wake-up). Now it sleeps, and a
// message to any of them, the 129th and the last included, ends the wait.
BOOST_AUTO_TEST_CASE(more_than_128_objects_wait_asleep_and_any_wakes_it,
                     *boost::unit_test::timeout(120)) {
  std::vector<mp::Queue<int>> queues;
  for (int i = 0; i < 200; ++i) queues.emplace_back(4);
  std::vector<mp::Waitable> objects(queues.begin(), queues.end());
  BOOST_TEST(times_out_asleep(objects, 1000ms));
  FdPair fds(FdPair::pipe);  // and with a descriptor too (the helper's word comes first)
  objects.push_back(mp::Waitable::fd(fds[0]));
  BOOST_TEST(times_out_asleep(objects, 500ms));
  for (const std::size_t k : {std::size_t{0}, std::size_t{128}, std::size_t{199}}) {
    mp::Process sender([q = queues[k]] { q.put(7); });
    sender.start();
    BOOST_TEST((mp::wait(objects, 30s) == std::vector<std::size_t>{k}));
    BOOST_TEST(queues[k].get() == 7);
    BOOST_REQUIRE(sender.join_for(30s));
  }
}

BOOST_AUTO_TEST_CASE(without_pidfds_a_process_wait_sleeps, *boost::unit_test::timeout(60)) {
  // pidfd_open fails (EMFILE here; ENOSYS before Linux 5.3): wait() must poll the child's exit
  // status in sleeps, not spin. Run in a child, which alone gets the lowered descriptor limit.
  CHECK_CHILD([] {
    Gate release;
    mp::Queue<int> q(4);
    mp::Process a([&] { return release.wait(60s) ? 0 : 3; });
    mp::Process b([&] { return release.wait(60s) ? 0 : 3; });
    a.set_daemon(true);  // a failed check returns at once: the destructors then end them
    b.set_daemon(true);
    {
      NoNewDescriptors limit;
      CHILD_REQUIRE(limit.active());
      a.start();
      b.start();
      CHILD_REQUIRE(a.sentinel() == -1);  // really the path without pidfds
      CHILD_REQUIRE(b.sentinel() == -1);
      CHILD_REQUIRE(times_out_asleep({a}, 300ms));
      CHILD_REQUIRE(times_out_asleep({a, b}, 200ms));
      CHILD_REQUIRE(times_out_asleep({q, b}, 200ms));  // a channel and an unwatched process
    }
    release.signal();  // one byte: wakes one of them
    const auto first = mp::wait({q, a, b});  // no timeout: must notice the end by polling
    CHILD_REQUIRE(first.size() == 1 && (first[0] == 1 || first[0] == 2));
    release.signal();
    CHILD_REQUIRE(mp::wait({q, first[0] == 1 ? b : a}, 30s).size() == 1);
    CHILD_REQUIRE(a.exitcode() == 0 && b.exitcode() == 0);
    return 0;
  });
}

BOOST_AUTO_TEST_CASE(without_pidfds_a_killed_process_is_noticed, *boost::unit_test::timeout(60)) {
  CHECK_CHILD([] {
    Gate never;
    mp::Process p([&] { never.wait(60s); });
    p.set_daemon(true);
    NoNewDescriptors limit;
    CHILD_REQUIRE(limit.active());
    p.start();
    CHILD_REQUIRE(p.sentinel() == -1);
    CHILD_REQUIRE(times_out_asleep({p}, 100ms));
    ::kill(p.pid(), SIGSTOP);  // a stopped child is not an ended one
    CHILD_REQUIRE(times_out_asleep({p}, 100ms));
    p.kill();
    CHILD_REQUIRE(mp::wait({p}, 30s).size() == 1);
    CHILD_REQUIRE(p.exitcode() == -SIGKILL);
    return 0;
  });
}

BOOST_AUTO_TEST_CASE(without_pidfds_join_for_sleeps_and_join_collects_once, *boost::unit_test::timeout(60)) {
  // The Process side of the path without pidfds: join_for() sleeps between looks, join() blocks
  // in waitid, and a lister on another thread reaping the same children never makes a join fail.
  CHECK_CHILD([] {
    NoNewDescriptors limit;
    CHILD_REQUIRE(limit.active());
    mp::Event go;
    std::vector<mp::Process> ps;
    for (int i = 0; i < 8; ++i) {
      ps.emplace_back([go](int k) { return go.wait_for(60s) ? k : 100; }, i);
      ps.back().set_daemon(true);
      ps.back().start();
      CHILD_REQUIRE(ps.back().sentinel() == -1);
    }
    const double cpu0 = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    CHILD_REQUIRE(!ps[0].join_for(200ms));
    const double wall = seconds_since(start), cpu = cpu_seconds() - cpu0;
    std::fprintf(stderr, "join_for(200 ms): %.3f s wall, %.3f s CPU\n", wall, cpu);
    CHILD_REQUIRE(wall >= 0.19 && cpu < 0.5 * wall);
    std::atomic<bool> stop{false};
    std::atomic<long> listings{0};
    std::thread lister = repeat_until(stop, listings, [] { (void)mp::active_children(); });
    const bool listed = eventually([&] { return listings.load() > 0; });
    go.set();
    int sum = 0;
    for (int i = 0; i < 8; ++i) {
      try {
        if (i % 2 == 0) {
          ps[i].join();
        } else if (!ps[i].join_for(30s)) {
          break;
        }
        sum += ps[i].exitcode().value_or(-1000);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "join of child %d threw: %s\n", i, e.what());
        sum = -1;
        break;
      }
    }
    stop.store(true);
    lister.join();
    CHILD_REQUIRE(listed);
    CHILD_REQUIRE(sum == 7 * 8 / 2);
    CHILD_REQUIRE(mp::active_children().empty());
    return 0;
  });
}

BOOST_AUTO_TEST_CASE(sentinel_watcher_without_an_eventfd_fails_cleanly, *boost::unit_test::timeout(60)) {
  // The process has its pidfd, but the helper thread that watches it cannot get its eventfd
  // (EMFILE): wait() must still time out, and still notice the end, without hanging in cleanup.
  const int code = run_child(
      [] {
        Gate release;
        mp::Process p([&] { return release.wait(60s) ? 0 : 3; });
        p.set_daemon(true);
        p.start();
        CHILD_REQUIRE(p.sentinel() >= 0);
        {
          NoNewDescriptors limit;
          CHILD_REQUIRE(limit.active());
          CHILD_REQUIRE(times_out_asleep({p}, 300ms));
          release.signal();
          CHILD_REQUIRE(mp::wait({p}, 30s).size() == 1);
        }
        CHILD_REQUIRE(p.exitcode() == 0);
        return 0;
      },
      10s);
  BOOST_TEST(code == 0);
}

BOOST_AUTO_TEST_CASE(an_empty_list_waits_out_its_timeout_asleep, *boost::unit_test::timeout(60)) {
  BOOST_TEST(times_out_asleep({}, 100ms));
}

// ---- raw fds and pids (Waitable::fd, Waitable::pid) ----------------------------------------

BOOST_AUTO_TEST_CASE(a_signal_pipe_written_by_a_handler_wakes_wait, *boost::unit_test::timeout(60)) {
  // Another process signals this one while it sleeps in wait(); the handler writes to a pipe
  // that wait() watches. Once with the pipe alone (this thread polls it), once beside a queue
  // (the helper thread polls it, while this thread sleeps on the queue's futex word).
  FdPair signal_pipe(FdPair::pipe, O_NONBLOCK);
  SignalPipeHandler handler(signal_pipe[1]);
  mp::Queue<int> q(4);
  const pid_t self = ::getpid();
  for (const bool beside_a_queue : {false, true}) {
    Gate go;
    mp::Process sender([&go, self] {
      if (!go.wait(30s)) return 3;
      (void)wait_until_sleeping(self);  // best effort: the signal should find wait() asleep
      return ::kill(self, SIGUSR1) == 0 ? 0 : 4;
    });
    sender.start();
    go.signal();
    const auto fd = mp::Waitable::fd(signal_pipe[0]);
    const auto ready = beside_a_queue ? mp::wait({q, fd}, 30s) : mp::wait({fd}, 30s);
    BOOST_TEST((ready == Indices{beside_a_queue ? 1u : 0u}));
    char c = 0;
    BOOST_TEST(::read(signal_pipe[0], &c, 1) == 1);
    BOOST_TEST(c == 's');
    BOOST_REQUIRE(sender.join_for(30s));
    BOOST_TEST(*sender.exitcode() == 0);
  }
  BOOST_TEST(mp::wait({q, mp::Waitable::fd(signal_pipe[0])}, 0ms).empty());  // drained
}

BOOST_AUTO_TEST_CASE(a_socket_is_ready_for_data_and_for_its_peer_closing, *boost::unit_test::timeout(60)) {
  FdPair s(FdPair::socket_pair);  // s[0] here, s[1] in the peer process
  auto [a, b] = mp::Pipe();
  mp::Queue<int> q(4);
  Gate go;
  mp::Process peer([&] {
    ::close(s[0]);
    if (!go.wait(30s)) return 3;
    if (::send(s[1], "ping", 4, MSG_NOSIGNAL) != 4) return 4;
    return go.wait(30s) ? 0 : 5;  // then it exits, and its end of the socket closes
  });
  peer.start();
  s.close(1);
  const std::vector<mp::Waitable> list{q, b, mp::Waitable::fd(s[0])};
  BOOST_TEST(times_out_asleep(list, 200ms));
  BOOST_TEST(times_out_asleep({mp::Waitable::fd(s[0])}, 100ms));
  go.signal();
  BOOST_TEST((mp::wait(list, 30s) == Indices{2}));
  char buf[8];
  BOOST_TEST(::recv(s[0], buf, sizeof buf, 0) == 4);
  BOOST_TEST(std::string(buf, 4) == "ping");
  BOOST_TEST(times_out_asleep(list, 100ms));  // drained: not ready any more
  go.signal();
  BOOST_TEST((mp::wait(list, 30s) == Indices{2}));  // end of file is ready too
  BOOST_TEST(::recv(s[0], buf, sizeof buf, 0) == 0);
  BOOST_REQUIRE(peer.join_for(30s));
  BOOST_TEST(*peer.exitcode() == 0);
  (void)a;
}

BOOST_AUTO_TEST_CASE(a_raw_forked_child_is_ready_when_it_ends_and_is_left_unreaped, *boost::unit_test::timeout(60)) {
  Gate release;
  mp::Queue<int> q(4);
  auto [a, b] = mp::Pipe();
  const pid_t pid = fork_raw_child(release, 7);
  BOOST_REQUIRE(pid > 0);
  const std::vector<mp::Waitable> list{q, b, mp::Waitable::pid(pid)};
  BOOST_TEST(times_out_asleep(list, 200ms));
  BOOST_TEST(times_out_asleep({mp::Waitable::pid(pid)}, 100ms));
  ::kill(pid, SIGSTOP);  // a stopped child has not ended
  BOOST_TEST(times_out_asleep(list, 100ms));
  ::kill(pid, SIGCONT);
  release.signal();
  BOOST_TEST((mp::wait(list, 30s) == Indices{2}));
  BOOST_TEST(is_zombie(pid));  // wait() did not reap it
  BOOST_TEST((mp::wait({mp::Waitable::pid(pid)}, 0ms) == Indices{0}));  // and it stays ready
  const int status = reap(pid);
  BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 7), "status " << status);
  // Reaped now: no longer a child to wait for.
  expect_system_error([&] { mp::wait({mp::Waitable::pid(pid)}, 0ms); }, ECHILD,
                      {"pid " + std::to_string(pid), "not a child of this process",
                       "already reaped"});
  (void)a;
}

BOOST_AUTO_TEST_CASE(a_raw_child_killed_is_ready_and_its_status_is_the_callers, *boost::unit_test::timeout(60)) {
  Gate never;
  const pid_t pid = fork_raw_child(never, 0);
  BOOST_REQUIRE(pid > 0);
  mp::Queue<int> q(4);
  BOOST_TEST(times_out_asleep({q, mp::Waitable::pid(pid)}, 100ms));
  ::kill(pid, SIGKILL);
  BOOST_TEST((mp::wait({q, mp::Waitable::pid(pid)}, 30s) == Indices{1}));
  const int status = reap(pid);
  BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "status " << status);
}

BOOST_AUTO_TEST_CASE(a_child_reaped_by_another_thread_during_wait_counts_as_ended, *boost::unit_test::timeout(60)) {
  Gate release;
  const pid_t pid = fork_raw_child(release, 9);
  BOOST_REQUIRE(pid > 0);
  mp::Queue<int> q(4);
  int status = -1;
  bool seen = false;
  const int syscall_fd = ::open("/proc/self/syscall", O_RDONLY | O_CLOEXEC);
  ReapDuringWait reaper(pid, release, status, seen, syscall_fd);
  const auto ready = mp::wait({q, mp::Waitable::pid(pid)}, 30s);
  reaper.join();
  ::close(syscall_fd);
  BOOST_TEST(seen);
  BOOST_TEST((ready == Indices{1}));
  BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 9), "status " << status);
}

BOOST_AUTO_TEST_CASE(a_supervisor_loop_is_one_wait_call, *boost::unit_test::timeout(60)) {
  // Five kinds of event from five processes, handled by one loop over one wait() call: each
  // exactly once, with its value.
  mp::Queue<int> q(4);
  auto ends = mp::Pipe();  // not a structured binding: a lambda captures one end
  mp::Connection& parent_end = ends.first;
  mp::Connection& child_end = ends.second;
  FdPair pipe(FdPair::pipe);
  mp::Event go;
  Gate release_raw;
  mp::Process producer([q, go] { return go.wait_for(30s) && q.put_for(10, 30s) ? 0 : 3; });
  mp::Process sender([&child_end, go] {
    if (!go.wait_for(30s)) return 3;
    child_end.send(20);
    return 0;
  });
  mp::Process writer([&pipe, go] {
    const char c = 30;
    return go.wait_for(30s) && ::write(pipe[1], &c, 1) == 1 ? 0 : 3;
  });
  mp::Process worker([go] { return go.wait_for(30s) ? 50 : 3; });
  for (mp::Process* p : {&producer, &sender, &writer, &worker}) p->start();
  const pid_t raw = fork_raw_child(release_raw, 40);
  BOOST_REQUIRE(raw > 0);

  std::vector<mp::Waitable> list{q, parent_end, mp::Waitable::fd(pipe[0]), mp::Waitable::pid(raw),
                                 worker};
  std::vector<int> kind{0, 1, 2, 3, 4};  // what list[i] is
  BOOST_TEST(times_out_asleep(list, 200ms));
  go.set();
  release_raw.signal();
  int sum = 0, events = 0, rounds = 0;
  std::vector<int> seen(5, 0);
  while (!list.empty() && rounds++ < 50) {
    const auto ready = mp::wait(list, 30s);
    if (ready.empty()) break;
    for (auto it = ready.rbegin(); it != ready.rend(); ++it) {  // erase from the back
      const int k = kind[*it];
      ++seen[k];
      ++events;
      if (k == 0) {
        sum += q.get();
      } else if (k == 1) {
        sum += parent_end.recv<int>();
      } else if (k == 2) {
        char c = 0;
        if (::read(pipe[0], &c, 1) == 1) sum += c;
      } else if (k == 3) {
        const int status = reap(raw);
        if (WIFEXITED(status)) sum += WEXITSTATUS(status);
      } else {
        BOOST_REQUIRE(worker.join_for(30s));
        sum += worker.exitcode().value_or(-1000);
      }
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(*it));
      kind.erase(kind.begin() + static_cast<std::ptrdiff_t>(*it));
    }
  }
  BOOST_TEST(list.empty());
  BOOST_TEST((seen == std::vector<int>{1, 1, 1, 1, 1}));
  BOOST_TEST(events == 5);
  BOOST_TEST(sum == 10 + 20 + 30 + 40 + 50);
  for (mp::Process* p : {&producer, &sender, &writer}) {
    BOOST_REQUIRE(p->join_for(30s));
    BOOST_TEST(*p->exitcode() == 0);
  }
  if (!list.empty() && still_our_child(raw)) {  // a failed loop: do not leave it behind
    ::kill(raw, SIGKILL);
    (void)reap(raw);
  }
}

BOOST_AUTO_TEST_CASE(many_processes_wait_on_one_pipe, *boost::unit_test::timeout(60)) {
  // Readiness is a level: one byte nobody reads wakes every waiter, in every process.
  FdPair pipe(FdPair::pipe);
  mp::Queue<int> q(4);
  std::vector<mp::Process> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&pipe, q] {
      return mp::wait({q, mp::Waitable::fd(pipe[0])}, 30s) == Indices{1} ? 0 : 3;
    });
    waiters.back().start();
  }
  for (auto& w : waiters) BOOST_TEST(wait_until_sleeping(w.pid()));
  const char c = 1;
  BOOST_REQUIRE(::write(pipe[1], &c, 1) == 1);
  int ok = 0;
  for (auto& w : waiters) {
    BOOST_REQUIRE(w.join_for(30s));
    ok += w.exitcode() == 0 ? 1 : 0;
  }
  BOOST_TEST(ok == 4);
  char back = 0;
  BOOST_TEST(::read(pipe[0], &back, 1) == 1);  // the byte is still there: nobody read it
  BOOST_TEST(mp::wait({mp::Waitable::fd(pipe[0])}, 0ms).empty());
}

BOOST_AUTO_TEST_CASE(timeouts_with_fds_and_pids_return_empty_asleep, *boost::unit_test::timeout(60)) {
  FdPair pipe(FdPair::pipe);
  FdPair sockets(FdPair::socket_pair);
  Gate release;
  const pid_t pid = fork_raw_child(release, 0);
  BOOST_REQUIRE(pid > 0);
  mp::Queue<int> q(4);
  BOOST_TEST(times_out_asleep({mp::Waitable::fd(pipe[0]), mp::Waitable::fd(sockets[0]),
                               mp::Waitable::pid(pid)},
                              200ms));
  BOOST_TEST(times_out_asleep({q, mp::Waitable::fd(pipe[0]), mp::Waitable::pid(pid)}, 200ms));
  BOOST_TEST(mp::wait({q, mp::Waitable::fd(sockets[0]), mp::Waitable::pid(pid)}, 0ms).empty());
  release.signal();
  BOOST_TEST((mp::wait({mp::Waitable::pid(pid)}, 30s) == Indices{0}));
  BOOST_TEST(reap(pid) == 0);
}

BOOST_AUTO_TEST_CASE(bad_fds_and_pids_are_clear_errors, *boost::unit_test::timeout(60)) {
  using mp::errc;
  FdPair pipe(FdPair::pipe);
  expect_error([] { mp::wait({mp::Waitable::fd(-1)}, 0ms); }, errc::invalid_argument,
               {"multiproc::wait", "fd -1", "not an open file descriptor"});
  const int closed = ::dup(pipe[0]);
  BOOST_REQUIRE(closed >= 0);
  ::close(closed);
  expect_error([&] { mp::wait({mp::Waitable::fd(closed)}, 0ms); }, errc::invalid_argument,
               {"fd " + std::to_string(closed), "not an open file descriptor"});
  expect_error([&] { mp::wait({mp::Waitable::fd(pipe[1])}, 0ms); }, errc::invalid_argument,
               {"fd " + std::to_string(pipe[1]), "writing only"});
  expect_error([] { mp::wait({mp::Waitable::pid(0)}, 0ms); }, errc::invalid_argument,
               {"pid 0", "not a process id"});
  expect_error([] { mp::wait({mp::Waitable::pid(-1)}, 0ms); }, errc::invalid_argument,
               {"pid -1", "not a process id"});
  // Not children of this process: its parent, itself.
  for (const pid_t other : {::getppid(), ::getpid()}) {
    expect_system_error([&] { mp::wait({mp::Waitable::pid(other)}, 0ms); }, ECHILD,
                        {"pid " + std::to_string(other), "not a child of this process"});
  }
  // Checked before anything is looked at: a ready queue beside a bad fd still throws.
  mp::Queue<int> q(4);
  q.put(1);
  expect_errc([] { mp::wait({mp::Waitable::fd(-1)}, 0ms); }, errc::invalid_argument);
  expect_errc([&] { mp::wait({q, mp::Waitable::fd(-7)}); }, errc::invalid_argument);
  BOOST_TEST(q.get() == 1);
}

BOOST_AUTO_TEST_CASE(an_fd_closed_during_wait_is_an_error_not_a_hang, *boost::unit_test::timeout(60)) {
  FdPair pipe(FdPair::pipe);
  const int fd = ::dup(pipe[0]);
  BOOST_REQUIRE(fd >= 0);
  const int syscall_fd = ::open("/proc/self/syscall", O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(syscall_fd >= 0);
  bool seen = false;
  std::thread closer([&] {
    seen = main_thread_in(syscall_fd, {SYS_ppoll});  // inside wait(), past its checks
    ::close(fd);
  });
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { mp::wait({mp::Waitable::fd(fd)}, 30s); }, mp::errc::bad_state,
               {"fd " + std::to_string(fd), "closed while wait() ran"});
  closer.join();
  ::close(syscall_fd);
  BOOST_TEST(seen);
  BOOST_TEST(seconds_since(start) < 10.0);
}

BOOST_AUTO_TEST_CASE(without_descriptors_fds_and_pids_are_polled_asleep, *boost::unit_test::timeout(60)) {
  // At the open-file limit neither a pidfd for a pid nor the helper thread's eventfd can be had:
  // pids are polled through their exit status, fds and sentinels between short sleeps.
  CHECK_CHILD([] {
    FdPair pipe(FdPair::pipe);
    mp::Queue<int> q(4);
    Gate release_g, release_h, release_p;
    const int syscall_fd = ::open("/proc/self/syscall", O_RDONLY | O_CLOEXEC);
    const pid_t g = fork_raw_child(release_g, 5);
    const pid_t h = fork_raw_child(release_h, 6);
    CHILD_REQUIRE(g > 0 && h > 0 && syscall_fd >= 0);
    mp::Process p([&] { return release_p.wait(60s) ? 0 : 3; });
    p.set_daemon(true);
    p.start();
    CHILD_REQUIRE(p.sentinel() >= 0);
    {
      NoNewDescriptors limit;
      CHILD_REQUIRE(limit.active());
      const auto fd = mp::Waitable::fd(pipe[0]);
      CHILD_REQUIRE(times_out_asleep({mp::Waitable::pid(g)}, 200ms));
      CHILD_REQUIRE(times_out_asleep({q, mp::Waitable::pid(g), fd}, 200ms));
      CHILD_REQUIRE(times_out_asleep({q, p}, 200ms));  // a sentinel, but no watcher thread
      const char c = 1;
      CHILD_REQUIRE(::write(pipe[1], &c, 1) == 1);
      CHILD_REQUIRE((mp::wait({q, mp::Waitable::pid(g), fd}, 30s) == Indices{2}));
      char back = 0;
      CHILD_REQUIRE(::read(pipe[0], &back, 1) == 1);
      release_g.signal();
      CHILD_REQUIRE((mp::wait({q, mp::Waitable::pid(g), fd}) == Indices{1}));
      const int status = reap(g);
      CHILD_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 5);
      // Reaped by another thread while wait() polls it: ended.
      int h_status = -1;
      bool seen = false;
      ReapDuringWait reaper(h, release_h, h_status, seen, syscall_fd);
      const auto ready = mp::wait({q, mp::Waitable::pid(h)}, 30s);
      reaper.join();
      ::close(syscall_fd);
      CHILD_REQUIRE(seen);
      CHILD_REQUIRE((ready == Indices{1}));
      CHILD_REQUIRE(WIFEXITED(h_status) && WEXITSTATUS(h_status) == 6);
      release_p.signal();
      CHILD_REQUIRE((mp::wait({q, p}, 30s) == Indices{1}));
    }
    CHILD_REQUIRE(p.exitcode() == 0);
    return 0;
  });
}

BOOST_AUTO_TEST_SUITE_END()
