// Exec'd children (Process(Command)) and the handover (multiproc/handover.hpp): the test binary
// re-executes itself (/proc/self/exe --scenario ...) as the program, which takes back by key what
// the parent passed — objects, a pipe end, a listening socket — and reports through them.
#include "support/support.hpp"

#include <multiproc/handover.hpp>

#include <arpa/inet.h>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace mptest;

namespace {

std::uint64_t status_mask(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  }
  return ~0ull;
}
bool has(std::uint64_t mask, int sig) { return (mask >> (sig - 1)) & 1u; }

std::vector<int> open_fd_numbers() {
  std::vector<int> out;
  for (int fd = 0; fd < 1024; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) out.push_back(fd);
  }
  return out;
}

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

mp::Command self_command(const std::string& scenario, std::vector<std::string> args = {}) {
  mp::Command c;
  c.path = "/proc/self/exe";
  c.argv = {"multiproc_tests", "--scenario", scenario};
  c.argv.insert(c.argv.end(), args.begin(), args.end());
  return c;
}

// A listening TCP socket on 127.0.0.1 (an ephemeral port), closed at the end of the scope.
struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    BOOST_REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof a;
    BOOST_REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
  std::string fetch() const {  // connects, reads everything the peer writes
    const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    std::string out;
    if (::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      char buf[256];
      ssize_t n;
      while ((n = ::read(c, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(c);
    return out;
  }
};

}  // namespace

// ---- the programs (this binary, re-executed) ----------------------------------------------------

// Takes everything back, sums the jobs, serves one connection, reports.
MPTEST_SCENARIO(exec_worker) {
  if (args.size() != 1 || args[0] != "arg with spaces") return 10;
  if (std::getenv("EXEC_TEST_VAR") == nullptr || std::string(std::getenv("EXEC_TEST_VAR")) != "42")
    return 11;
  auto jobs = mp::inherited<mp::Queue<int>>("jobs");
  auto total = mp::inherited<mp::SharedValue<long>>("total");
  auto counts = mp::inherited<mp::SharedArray<int>>("counts");
  auto lock = mp::inherited<mp::Mutex>("lock");
  auto done = mp::inherited<mp::Semaphore>("done");
  auto results = mp::inherited<mp::Connection>("results");
  const int listen_fd = mp::inherited_fd("listen");
  // Wrong uses are clear errors.
  if (child_expect_errc([] { mp::inherited<mp::Queue<int>>("missing"); }, mp::errc::not_found)) return 12;
  if (child_expect_errc([] { mp::inherited_fd("jobs"); }, mp::errc::wrong_kind)) return 13;
  if (child_expect_errc([] { mp::inherited<mp::SharedValue<int>>("total"); }, mp::errc::type_mismatch))
    return 14;
  if (child_expect_errc([] { mp::inherited<mp::Connection>("jobs"); }, mp::errc::wrong_kind)) return 15;
  if (mp::inherited_keys() !=
      std::vector<std::string>{"jobs", "total", "counts", "lock", "done", "results", "listen"})
    return 16;
  long n = 0;
  for (;;) {
    const int v = jobs.get();
    if (v < 0) break;
    total.update([v](long& t) { t += v; });
    {
      std::lock_guard<mp::Mutex> g(lock);
      counts.lock()[0] += 1;
    }
    ++n;
  }
  const int c = ::accept(listen_fd, nullptr, nullptr);
  if (c < 0) return 17;
  const std::string hello = "hello from " + std::to_string(::getpid());
  if (::write(c, hello.data(), hello.size()) != static_cast<ssize_t>(hello.size())) return 18;
  ::close(c);
  char cwd[512];
  results.send(std::string(::getcwd(cwd, sizeof cwd)));
  results.send(n);
  done.release();
  return 0;
}

// Reports what it started with, then exits.
MPTEST_SCENARIO(exec_report_setup) {
  (void)args;
  const std::vector<int> fds = open_fd_numbers();  // before anything here opens one
  auto results = mp::inherited<mp::Connection>("results");
  int pdeath = -1;
  ::prctl(PR_GET_PDEATHSIG, &pdeath, 0, 0, 0);
  results.send(join_ints(fds));
  results.send(static_cast<long>(status_mask("SigBlk")));
  results.send(has(status_mask("SigIgn"), SIGUSR2) ? 1 : 0);
  results.send(pdeath);
  results.send(mp::inherited_fd("kept"));
  return 0;
}

// Opens its pipe end, says so, and waits to be killed.
MPTEST_SCENARIO(exec_block) {
  (void)args;
  auto results = mp::inherited<mp::Connection>("results");
  results.send(1);
  for (;;) ::pause();
}

// Never opens what it was handed; waits to be killed.
MPTEST_SCENARIO(exec_sleep) {
  (void)args;
  for (;;) ::pause();
}

// Sums jobs into a shared total until it gets a negative one.
MPTEST_SCENARIO(exec_queue_worker) {
  (void)args;
  auto jobs = mp::inherited<mp::Queue<int>>("jobs");
  auto total = mp::inherited<mp::SharedValue<long>>("total");
  auto ready = mp::inherited<mp::Semaphore>("ready");
  ready.release();
  for (;;) {
    const int v = jobs.get();
    if (v < 0) return 0;
    total.update([v](long& t) { t += v; });
  }
}

MPTEST_SCENARIO(exec_exit) { return std::stoi(args.at(0)); }

// Takes an int from the handed-over queue and exits with it.
MPTEST_SCENARIO(exec_take_one) {
  (void)args;
  return mp::inherited<mp::Queue<int>>("q").get();
}

// Returns the sum of the two handed-over values "a" and "b".
MPTEST_SCENARIO(exec_sum_two) {
  (void)args;
  return static_cast<int>(mp::inherited<mp::SharedValue<long>>("a").load() +
                          mp::inherited<mp::SharedValue<long>>("b").load());
}

// ---- the tests ------------------------------------------------------------------------------------

BOOST_FIXTURE_TEST_SUITE(exec_child, Clean)

BOOST_AUTO_TEST_CASE(exec_child_takes_back_objects_a_pipe_end_and_a_socket_exact_counts,
                     *boost::unit_test::timeout(90)) {
  constexpr int kJobs = 1000;
  mp::Queue<int> jobs(mp::create_only, unique_name("jobs"), 64);
  mp::SharedValue<long> total(mp::create_only, unique_name("total"), 0);
  mp::SharedArray<int> counts(mp::create_only, unique_name("counts"), 4);
  mp::Mutex lock(mp::create_only, unique_name("lock"));
  mp::Semaphore done(mp::create_only, unique_name("done"), 0);
  auto mine_theirs = mp::Pipe(mp::create_only, unique_name("results"));
  mp::Connection& mine = mine_theirs.first;
  mp::Connection& theirs = mine_theirs.second;
  Listener listener;

  mp::Command cmd = self_command("exec_worker", {"arg with spaces"});
  cmd.env = std::vector<std::string>{"EXEC_TEST_VAR=42", "MULTIPROC_HANDOVER=stale"};
  cmd.cwd = "/tmp";
  mp::Process w(cmd);
  w.pass("jobs", jobs)
      .pass("total", total)
      .pass("counts", counts)
      .pass("lock", lock)
      .pass("done", done)
      .pass("results", theirs)
      .pass_fd("listen", listener.fd);
  w.start();
  theirs.close();  // only the child holds it now
  BOOST_TEST(w.sentinel() >= 0);
  for (int i = 1; i <= kJobs; ++i) jobs.put(i);
  jobs.put(-1);
  const std::string hello = listener.fetch();
  BOOST_TEST(hello == "hello from " + std::to_string(w.pid()));
  BOOST_TEST(mine.recv<std::string>() == "/tmp");
  BOOST_TEST(mine.recv<long>() == kJobs);
  BOOST_TEST(done.try_acquire_for(30s));
  BOOST_TEST(w.join_for(30s));
  BOOST_TEST(w.exitcode().value_or(-999) == 0);
  BOOST_TEST(total.load() == static_cast<long>(kJobs) * (kJobs + 1) / 2);
  BOOST_TEST(counts[0] == kJobs);
  expect_errc([&] { mine.recv<long>(); }, mp::errc::eof);  // the program's exit closed its end
}

BOOST_AUTO_TEST_CASE(exec_workers_share_a_queue_and_one_killed_while_idle_loses_nothing,
                     *boost::unit_test::timeout(90)) {
  constexpr int kWorkers = 3, kJobs = 3000;
  mp::Queue<int> jobs(mp::create_only, unique_name("jobs"), 128);
  mp::SharedValue<long> total(mp::create_only, unique_name("total"), 0);
  mp::Semaphore ready(mp::create_only, unique_name("ready"), 0);
  std::vector<mp::Process> workers;
  for (int i = 0; i < kWorkers; ++i) {
    workers.emplace_back(self_command("exec_queue_worker"));
    workers.back().pass("jobs", jobs).pass("total", total).pass("ready", ready);
    workers.back().start();
  }
  for (int i = 0; i < kWorkers; ++i) BOOST_REQUIRE(ready.try_acquire_for(30s));
  // Worker 0 is blocked in get() (idle): SIGKILL it there.
  BOOST_REQUIRE(wait_until_in_futex(workers[0].pid()));
  workers[0].kill();
  BOOST_TEST(workers[0].join_for(30s));
  BOOST_TEST(workers[0].exitcode().value_or(-999) == -SIGKILL);
  for (int i = 1; i <= kJobs; ++i) jobs.put(i);
  for (int i = 1; i < kWorkers; ++i) jobs.put(-1);
  for (int i = 1; i < kWorkers; ++i) {
    BOOST_TEST(workers[i].join_for(30s));
    BOOST_TEST(workers[i].exitcode().value_or(-999) == 0);
  }
  BOOST_TEST(total.load() == static_cast<long>(kJobs) * (kJobs + 1) / 2);
  BOOST_TEST(jobs.empty());
}

// An outside probe: a child forked by another thread while start() waited for its exec kept the
// failure pipe's write end, and start() waited for that unrelated child to exit. The siblings
// here live until the starts are over (or 20 s): the old code's start() waited that long (in
// most runs of this test: the sibling must fork while a start waits for its exec).
BOOST_AUTO_TEST_CASE(a_start_does_not_wait_for_siblings_forked_meanwhile,
                     *boost::unit_test::timeout(120)) {
  mp::Event release;
  std::atomic<bool> done{false};
  std::vector<std::unique_ptr<mp::Process>> siblings;
  std::thread forker([&] {
    while (!done.load() && siblings.size() < 100) {
      siblings.push_back(std::make_unique<mp::Process>([release] {
        release.wait_for(std::chrono::seconds(20));
        return 0;
      }));
      siblings.back()->start();
    }
  });
  double slowest = 0;
  for (int k = 0; k < 30; ++k) {
    mp::Process p(mp::Command{"/bin/true", {}, std::nullopt, ""});
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    slowest = std::max(slowest, seconds_since(t0));
    BOOST_REQUIRE(p.join_for(std::chrono::seconds(20)));
    BOOST_TEST((p.exitcode() == std::optional<int>(0)));
  }
  done = true;
  forker.join();
  release.set();
  for (auto& s : siblings) BOOST_REQUIRE(s->join_for(std::chrono::seconds(20)));
  BOOST_TEST(slowest < 10.0, "the slowest start() took " << slowest << " s");
}

BOOST_AUTO_TEST_CASE(exec_failures_are_errors_from_start, *boost::unit_test::timeout(60)) {
  {
    mp::Process p(mp::Command{"/nonexistent/program", {}, std::nullopt, ""});
    p.set_name("ghost");
    try {
      p.start();
      BOOST_ERROR("no error");
    } catch (const mp::Error& e) {
      BOOST_TEST((e.code() == std::error_code(ENOENT, std::system_category())), e.what());
      BOOST_TEST(message_has(e, "ghost"));
      BOOST_TEST(message_has(e, "/nonexistent/program"));
    }
    BOOST_TEST(p.pid() == 0);  // back to not started; the child was reaped (Clean checks)
    BOOST_TEST(p.sentinel() == -1);
    BOOST_TEST(!p.is_alive());
  }
  {
    const std::string path = "/tmp/" + unique_name("not-executable");
    { std::ofstream(path) << "#!/bin/sh\nexit 0\n"; }
    ::chmod(path.c_str(), 0644);
    mp::Process p(mp::Command{path, {}, std::nullopt, ""});
    try {
      p.start();
      BOOST_ERROR("no error");
    } catch (const mp::Error& e) {
      BOOST_TEST((e.code() == std::error_code(EACCES, std::system_category())), e.what());
      BOOST_TEST(message_has(e, path));
    }
    ::unlink(path.c_str());
  }
  {
    mp::Command c = self_command("exec_exit", {"0"});
    c.cwd = "/nonexistent/dir";
    mp::Process p(c);
    try {
      p.start();
      BOOST_ERROR("no error");
    } catch (const mp::Error& e) {
      BOOST_TEST((e.code() == std::error_code(ENOENT, std::system_category())), e.what());
      BOOST_TEST(message_has(e, "/nonexistent/dir"));
    }
  }
  {
    mp::Process p(self_command("exec_exit", {"0"}));
    mp::ChildOptions o;
    o.setup = [] { throw std::runtime_error("no setup today"); };
    p.set_options(o);
    expect_error([&] { p.start(); }, mp::errc::remote_error, {"setup hook", "runtime_error", "no setup today"});
    // A failed start can be retried once the cause is gone.
    p.set_options({});
    p.start();
    BOOST_TEST(p.join_for(30s));
    BOOST_TEST(p.exitcode().value_or(-999) == 0);
  }
  expect_errc([] { mp::Process p(mp::Command{}); }, mp::errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(an_object_made_under_a_prefix_set_in_the_program_is_found_by_the_child,
                     *boost::unit_test::timeout(60)) {
  // set_name_prefix(), not MULTIPROC_PREFIX: the child spelled the name with its own (empty)
  // prefix and found nothing (an outside probe).
  const std::string before = mp::name_prefix();
  mp::set_name_prefix(before + "handed.");
  struct Restore {
    std::string p;
    ~Restore() { mp::set_name_prefix(p); }
  } restore{before};
  mp::Queue<int> q(mp::create_only, unique_name("q"), 4);
  q.put(42);
  mp::Process p(self_command("exec_take_one"));
  p.pass("q", q);
  p.start();
  BOOST_REQUIRE(p.join_for(30s));
  BOOST_TEST(p.exitcode().value_or(-1) == 42);
}

BOOST_AUTO_TEST_CASE(objects_made_under_other_prefixes_are_found_by_the_child,
                     *boost::unit_test::timeout(60)) {
  // The handover carried only the name, which the child spelled with the prefix in effect at
  // start(): an object made before set_name_prefix() changed it, or under with_prefix(), was "not
  // found" there (an outside probe). Now each entry says its file's prefix.
  const std::string before = mp::name_prefix();
  mp::SharedValue<long> a(mp::create_only, unique_name("a"), 30);  // the prefix in effect now
  mp::SharedValue<long> b(mp::create_only, mp::with_prefix(unique_name("b"), before + "other."), 12);
  BOOST_TEST(a.segment().prefix() == before);
  BOOST_TEST(b.segment().prefix() == before + "other.");
  mp::set_name_prefix(before + "later.");
  struct Restore {
    std::string p;
    ~Restore() { mp::set_name_prefix(p); }
  } restore{before};
  mp::Process p(self_command("exec_sum_two"));
  p.pass("a", a).pass("b", b);
  p.start();
  BOOST_REQUIRE(p.join_for(30s));
  BOOST_TEST(p.exitcode().value_or(-1) == 42);
}

BOOST_AUTO_TEST_CASE(handing_over_wrong_things_is_refused, *boost::unit_test::timeout(60)) {
  mp::Queue<int> anonymous(4);
  mp::SharedValue<int> named(mp::create_only, unique_name("v"), 0);
  mp::Process p(self_command("exec_exit", {"0"}));
  p.set_name("hand");
  expect_error([&] { p.pass("q", anonymous); }, mp::errc::invalid_argument, {"hand", "anonymous", "'q'"});
  expect_error([&] { p.pass("", named); }, mp::errc::invalid_argument, {"empty key"});
  p.pass("v", named);
  expect_error([&] { p.pass("v", named); }, mp::errc::invalid_argument, {"'v'", "already"});
  try {
    p.pass_fd("bad", 987);
    BOOST_ERROR("no error");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == std::error_code(EBADF, std::system_category())), e.what());
  }
  mp::Process forked([] { return 0; });
  expect_error([&] { forked.pass("v", named); }, mp::errc::bad_state, {"Command"});
  p.start();
  expect_error([&] { p.pass("w", named); }, mp::errc::bad_state, {"after start"});
  BOOST_TEST(p.join_for(30s));
}

BOOST_AUTO_TEST_CASE(terminate_kill_join_for_and_exit_codes_of_exec_children,
                     *boost::unit_test::timeout(60)) {
  {
    mp::Process p(self_command("exec_exit", {"7"}));
    p.start();
    pollfd pfd{p.sentinel(), POLLIN, 0};
    BOOST_TEST(::poll(&pfd, 1, 30000) == 1);  // the sentinel works as for a forked child
    BOOST_TEST(p.join_for(30s));
    BOOST_TEST(p.exitcode().value_or(-999) == 7);
  }
  for (const int sig : {SIGTERM, SIGKILL}) {
    auto mine_theirs = mp::Pipe(mp::create_only, unique_name("block"));
    mp::Connection& mine = mine_theirs.first;
    mp::Connection& theirs = mine_theirs.second;
    mp::Process p(self_command("exec_block"));
    p.pass("results", theirs);
    p.start();
    theirs.close();
    BOOST_TEST(mine.recv<int>() == 1);
    BOOST_TEST(!p.join_for(50ms));
    BOOST_TEST(p.is_alive());
    BOOST_TEST(!p.exitcode().has_value());
    if (sig == SIGTERM) p.terminate(); else p.kill();
    BOOST_TEST(p.join_for(30s));
    BOOST_TEST(p.exitcode().value_or(-999) == -sig);
    expect_errc([&] { mine.recv<int>(); }, mp::errc::eof);  // its death is EOF
  }
}

BOOST_AUTO_TEST_CASE(a_pipe_end_the_program_never_opened_gives_eof_when_it_is_killed,
                     *boost::unit_test::timeout(60)) {
  auto mine_theirs = mp::Pipe(mp::create_only, unique_name("unopened"));
  mp::Connection& mine = mine_theirs.first;
  mp::Connection& theirs = mine_theirs.second;
  mp::Process p(self_command("exec_sleep"));
  p.pass("results", theirs);
  p.start();
  theirs.close();
  BOOST_TEST(!mine.poll(50ms));  // the child holds it: no EOF yet
  p.kill();
  BOOST_TEST(p.join_for(30s));
  BOOST_TEST(mine.poll(30s));
  expect_errc([&] { mine.recv<int>(); }, mp::errc::eof);
}

BOOST_AUTO_TEST_CASE(child_setup_options_reach_an_exec_child, *boost::unit_test::timeout(60)) {
  // The parent ignores SIGUSR2 and blocks SIGTERM on this thread.
  struct sigaction ign {}, old_usr2 {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  ::sigaction(SIGUSR2, &ign, &old_usr2);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  int kept[2], dropped[2];
  BOOST_REQUIRE(::pipe(kept) == 0);  // not close-on-exec: only close_fds can keep them out
  BOOST_REQUIRE(::pipe(dropped) == 0);
  auto mine_theirs = mp::Pipe(mp::create_only, unique_name("setup"));
  mp::Connection& mine = mine_theirs.first;
  mp::Connection& theirs = mine_theirs.second;
  mp::SharedValue<int> hook_pid(mp::create_only, unique_name("hook"), 0);

  mp::Process p(self_command("exec_report_setup"));
  mp::ChildOptions o;
  o.parent_death_signal = SIGUSR1;
  o.close_fds = true;
  o.keep_fds = {kept[1]};
  o.setup = [hook_pid] { hook_pid.store(::getpid()); };
  p.set_options(o);
  p.pass("results", theirs).pass_fd("kept", kept[0]);
  p.start();
  theirs.close();
  const std::string fds = mine.recv<std::string>();
  const long blocked = mine.recv<long>();
  const int usr2_ignored = mine.recv<int>();
  const int pdeath = mine.recv<int>();
  const int handed = mine.recv<int>();
  BOOST_TEST(p.join_for(30s));
  BOOST_TEST(p.exitcode().value_or(-999) == 0);
  const int lo = std::min(kept[1], handed), hi = std::max(kept[1], handed);
  BOOST_TEST(fds == "0,1,2," + std::to_string(lo) + "," + std::to_string(hi));
  BOOST_TEST(blocked == 0);
  BOOST_TEST(usr2_ignored == 1);  // ignored stays ignored (the default)
  BOOST_TEST(pdeath == SIGUSR1);
  BOOST_TEST(hook_pid.load() == p.pid());  // the hook ran in the child, before exec
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGUSR2, &old_usr2, nullptr);
  for (int fd : {kept[0], kept[1], dropped[0], dropped[1]}) ::close(fd);
}

BOOST_AUTO_TEST_CASE(the_handover_format_round_trips_any_key_and_name, *boost::unit_test::timeout(30)) {
  std::vector<mp::detail::HandoverEntry> in(3);
  in[0].kind = 'o';
  in[0].key = "jobs;1,%x y";
  in[0].name = "web.jobs,\xc3\xa9;%";
  in[1].kind = 'c';
  in[1].key = "r";
  in[1].end = 1;
  in[1].name = "pipe.x";
  in[2].kind = 'f';
  in[2].key = "listen";
  in[2].fd = 5;
  const std::string text = mp::detail::encode_handover(in);
  BOOST_TEST(text == "1;o,jobs%3B1%2C%25x%20y,web.jobs%2C%C3%A9%3B%25;c,r,1,pipe.x;f,listen,5");
  const auto out = mp::detail::decode_handover(text);
  BOOST_REQUIRE(out.size() == 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    BOOST_TEST(out[i].kind == in[i].kind);
    BOOST_TEST(out[i].key == in[i].key);
    BOOST_TEST(out[i].name == in[i].name);
    BOOST_TEST(out[i].end == in[i].end);
    BOOST_TEST(out[i].fd == in[i].fd);
  }
  // The prefix field: optional on objects and pipe ends (empty is a prefix too), never more.
  const auto prefixed = mp::detail::decode_handover("1;o,a,b,p.x;c,c,0,d,;o,e,f");
  BOOST_REQUIRE(prefixed.size() == 3u);
  BOOST_TEST((prefixed[0].prefix == std::optional<std::string>("p.x")));
  BOOST_TEST((prefixed[1].prefix == std::optional<std::string>("")));
  BOOST_TEST(!prefixed[2].prefix.has_value());
  BOOST_TEST(mp::detail::encode_handover(prefixed) == "1;o,a,b,p.x;c,c,0,d,;o,e,f");
  for (const char* bad : {"2;o,a,b", "1;x,a,b", "1;o,a", "1;o,,b", "1;f,a,-1", "1;f,a,9x",
                          "1;c,a,2,b", "1;o,a%4,b", "1;o,a%zz,b", "1;o,a,b,p,q", "1;f,a,5,p",
                          "1;c,a,0,b,p,q"}) {
    expect_errc([&] { mp::detail::decode_handover(bad); }, mp::errc::corrupt);
  }
  BOOST_TEST(mp::detail::decode_handover("1").empty());
}

BOOST_AUTO_TEST_SUITE_END()
