// Process child setup (ChildOptions): signal dispositions and mask, closing inherited
// descriptors, the parent-death signal, the setup hook and the process title — each checked from
// inside the child (/proc/self/status, /proc/self/fd, PR_GET_PDEATHSIG) or from the parent
// (/proc/<pid>/comm and cmdline).
#include "support/support.hpp"

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <pthread.h>
#include <sstream>
#include <string>
#include <sys/prctl.h>
#include <unistd.h>
#include <vector>

using namespace mptest;

namespace {

// One hex mask line of /proc/self/status ("SigBlk", "SigIgn", "SigCgt").
std::uint64_t status_mask(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  }
  return ~0ull;
}
bool has(std::uint64_t mask, int sig) { return (mask >> (sig - 1)) & 1u; }

// What each open descriptor of this process is (readlink of /proc/self/fd/N), but the one the
// listing itself uses.
std::vector<std::pair<int, std::string>> open_fds() {
  std::vector<std::pair<int, std::string>> out;
  const int dir = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return out;
  for (int fd = 0; fd < 1024; ++fd) {
    if (fd == dir) continue;
    char link[256] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(path.c_str(), link, sizeof link - 1);
    if (n >= 0) out.emplace_back(fd, std::string(link, static_cast<std::size_t>(n)));
  }
  ::close(dir);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Installs a handler for SIGUSR1 and SIGTERM, ignores SIGUSR2 and blocks SIGTERM on this thread;
// restores them at the end of the scope.
void count_usr1(int) {}
struct ParentSignals {
  struct sigaction old_usr1 {}, old_usr2 {}, old_term {};
  sigset_t old_mask;
  ParentSignals() {
    struct sigaction sa {};
    sa.sa_handler = &count_usr1;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGUSR1, &sa, &old_usr1);
    ::sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    ::sigaction(SIGUSR2, &sa, &old_usr2);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  }
  ~ParentSignals() {
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    ::sigaction(SIGUSR1, &old_usr1, nullptr);
    ::sigaction(SIGUSR2, &old_usr2, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
  }
};

int run_with(mp::ChildOptions o, std::function<int()> f, const std::string& name = "") {
  mp::Process p([f = std::move(f)] { return f(); });
  if (!name.empty()) p.set_name(name);
  p.set_options(std::move(o));
  p.start();
  if (!p.join_for(30s)) {
    p.kill();
    p.join();
    BOOST_ERROR("child still running after 30 s: killed");
  }
  return *p.exitcode();
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(process_setup, Clean)

BOOST_AUTO_TEST_CASE(defaults_reset_handlers_keep_ignored_and_unblock_the_mask,
                     *boost::unit_test::timeout(60)) {
  ParentSignals parent;
  BOOST_REQUIRE(has(status_mask("SigCgt"), SIGUSR1));
  BOOST_REQUIRE(has(status_mask("SigBlk"), SIGTERM));
  const int code = run_with({}, [] {
    CHILD_REQUIRE(!has(status_mask("SigCgt"), SIGUSR1));  // handler -> SIG_DFL
    CHILD_REQUIRE(has(status_mask("SigIgn"), SIGUSR2));   // ignored stays ignored
    CHILD_REQUIRE(status_mask("SigBlk") == 0);            // nothing blocked
    return 0;
  });
  BOOST_TEST(code == 0);
}

BOOST_AUTO_TEST_CASE(terminate_ends_a_child_whose_parent_blocks_and_handles_sigterm,
                     *boost::unit_test::timeout(60)) {
  // The lost-SIGTERM case: the parent handles SIGTERM and blocks it; its child must still die.
  ParentSignals parent;
  mp::Event started;
  mp::Process p([started] {
    started.set();
    for (;;) ::pause();
  });
  p.start();
  BOOST_REQUIRE(started.wait_for(30s));
  p.terminate();
  BOOST_TEST(p.join_for(30s));
  BOOST_TEST(p.exitcode().value_or(-999) == -SIGTERM);
}

BOOST_AUTO_TEST_CASE(signal_options_can_keep_or_reset_everything, *boost::unit_test::timeout(60)) {
  ParentSignals parent;
  mp::ChildOptions keep;
  keep.reset_signal_handlers = false;
  keep.unblock_signals = false;
  BOOST_TEST(run_with(keep, [] {
               CHILD_REQUIRE(has(status_mask("SigCgt"), SIGUSR1));
               CHILD_REQUIRE(has(status_mask("SigIgn"), SIGUSR2));
               CHILD_REQUIRE(has(status_mask("SigBlk"), SIGTERM));
               return 0;
             }) == 0);
  mp::ChildOptions all;
  all.reset_ignored_signals = true;
  BOOST_TEST(run_with(all, [] {
               CHILD_REQUIRE(!has(status_mask("SigCgt"), SIGUSR1));
               CHILD_REQUIRE(!has(status_mask("SigIgn"), SIGUSR2));
               CHILD_REQUIRE(status_mask("SigBlk") == 0);
               return 0;
             }) == 0);
}

BOOST_AUTO_TEST_CASE(older_siblings_sentinels_are_closed_in_a_child, *boost::unit_test::timeout(60)) {
  mp::Event release;
  std::vector<mp::Process> older;
  for (int i = 0; i < 3; ++i) {
    older.emplace_back([release] { return release.wait_for(30s) ? 0 : 1; });
    older.back().start();
    BOOST_REQUIRE(older.back().sentinel() >= 0);
  }
  const int code = run_with({}, [&older] {
    for (const auto& [fd, what] : open_fds()) {
      if (what.find("pidfd") != std::string::npos) {
        std::fprintf(stderr, "child still holds fd %d: %s\n", fd, what.c_str());
        return 1;
      }
    }
    for (const auto& p : older) CHILD_REQUIRE(p.sentinel() == -1);
    return 0;
  });
  BOOST_TEST(code == 0);
  release.set();
  for (auto& p : older) {
    BOOST_TEST(p.join_for(30s));
    BOOST_TEST(p.exitcode().value_or(-999) == 0);
    BOOST_TEST(p.sentinel() >= 0);  // still the parent's
  }
}

BOOST_AUTO_TEST_CASE(close_fds_keeps_only_the_listed_ones_and_multiproc_handles_still_work,
                     *boost::unit_test::timeout(60)) {
  int a[2], b[2];
  BOOST_REQUIRE(::pipe(a) == 0);
  BOOST_REQUIRE(::pipe(b) == 0);
  mp::SharedValue<long> total(0);
  auto rx_tx = mp::Pipe(false);
  mp::Connection& rx = rx_tx.first;
  mp::Connection& tx = rx_tx.second;
  mp::ChildOptions o;
  o.close_fds = true;
  o.keep_fds = {a[1]};
  const int kept = a[1];
  mp::Process p([total, tx, kept] {
    std::vector<int> fds;
    for (const auto& e : open_fds()) fds.push_back(e.first);
    CHILD_REQUIRE((fds == std::vector<int>{0, 1, 2, kept}));
    CHILD_REQUIRE(::write(kept, "k", 1) == 1);
    for (int i = 1; i <= 100; ++i) total.update([i](long& t) { t += i; });
    tx.send(std::string("through the pipe"));
    return 0;
  });
  p.set_options(o);
  p.start();
  tx.close();
  BOOST_TEST(rx.recv<std::string>() == "through the pipe");
  BOOST_TEST(p.join_for(30s));
  BOOST_TEST(p.exitcode().value_or(-999) == 0);
  BOOST_TEST(total.load() == 5050);
  char c = 0;
  BOOST_TEST(::read(a[0], &c, 1) == 1);
  BOOST_TEST(c == 'k');
  expect_errc([&] { rx.recv<std::string>(); }, mp::errc::eof);
  for (int fd : {a[0], a[1], b[0], b[1]}) ::close(fd);
}

BOOST_AUTO_TEST_CASE(parent_death_signal_defaults_and_choice, *boost::unit_test::timeout(60)) {
  auto pdeath = [] {
    int sig = -1;
    ::prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
    return sig;
  };
  BOOST_TEST(run_with({}, [&] { return pdeath(); }) == 0);  // non-daemon: none
  {
    mp::Process d([&] { return pdeath(); });
    d.set_daemon(true);
    d.start();
    BOOST_TEST(d.join_for(30s));
    BOOST_TEST(d.exitcode().value_or(-999) == SIGKILL);  // daemon: SIGKILL
  }
  mp::ChildOptions o;
  o.parent_death_signal = SIGTERM;
  BOOST_TEST(run_with(o, [&] { return pdeath(); }) == SIGTERM);
  {
    mp::Process d([&] { return pdeath(); });
    o.parent_death_signal = 0;
    d.set_daemon(true).set_options(o);
    d.start();
    BOOST_TEST(d.join_for(30s));
    BOOST_TEST(d.exitcode().value_or(-999) == 0);  // a daemon without one, on request
  }
}

BOOST_AUTO_TEST_CASE(a_grandchild_gets_its_parent_death_signal_when_its_parent_exits,
                     *boost::unit_test::timeout(60)) {
  mp::SharedValue<int> grandchild(0);
  mp::Event forever;
  mp::Process middle([grandchild, forever] {
    mp::Process g([forever] { return forever.wait_for(60s) ? 0 : 1; });
    mp::ChildOptions o;
    o.parent_death_signal = SIGTERM;
    g.set_options(o);
    g.start();
    grandchild.store(g.pid());
    ::_exit(0);  // without joining: the grandchild is orphaned, and gets SIGTERM
  });
  middle.start();
  BOOST_TEST(middle.join_for(30s));
  const pid_t g = grandchild.load();
  BOOST_REQUIRE(g > 0);
  BOOST_TEST(eventually([g] { return !pid_running(g); }, 30s));
}

BOOST_AUTO_TEST_CASE(setup_hook_runs_in_the_child_before_the_target, *boost::unit_test::timeout(60)) {
  mp::SharedValue<int> hook_pid(0);
  static int ran_in_this_process = 0;  // the child's copy
  mp::ChildOptions o;
  o.setup = [hook_pid] {
    ran_in_this_process = 1;
    hook_pid.store(::getpid());
  };
  mp::Process p([] { return ran_in_this_process == 1 ? 0 : 1; });
  p.set_options(o);
  p.start();
  BOOST_TEST(p.join_for(30s));
  BOOST_TEST(p.exitcode().value_or(-999) == 0);
  BOOST_TEST(hook_pid.load() == p.pid());
  BOOST_TEST(ran_in_this_process == 0);  // never in the parent

  // A hook that throws: the target never runs, the child exits with 1.
  mp::SharedValue<int> target_ran(0);
  mp::ChildOptions bad;
  bad.setup = [] { throw std::runtime_error("setup failed"); };
  BOOST_TEST(run_with(bad, [target_ran] {
               target_ran.store(1);
               return 0;
             }) == 1);
  BOOST_TEST(target_ran.load() == 0);
}

BOOST_AUTO_TEST_CASE(the_name_is_the_title_ps_and_pgrep_show, *boost::unit_test::timeout(60)) {
  const std::string parent_comm = read_file("/proc/self/comm");
  mp::Event started, release;
  mp::Process p([started, release] {
    // From inside, too.
    CHILD_REQUIRE(read_file("/proc/self/comm") == "mp-title-worker\n");
    started.set();
    return release.wait_for(30s) ? 0 : 1;
  });
  p.set_name("mp-title-worker-with-a-long-name");
  p.start();
  BOOST_REQUIRE(started.wait_for(30s));
  const std::string dir = "/proc/" + std::to_string(p.pid());
  BOOST_TEST(read_file(dir + "/comm") == "mp-title-worker\n");  // 15 bytes kept
  // The whole command-line area: the title (cut to the area, keeping its last byte NUL), then
  // NULs — so `ps -o args` shows the title alone.
  const std::string cmdline = read_file(dir + "/cmdline");
  const std::string title = "mp-title-worker-with-a-long-name";
  BOOST_REQUIRE(cmdline.size() > 1);
  const std::string shown = title.substr(0, std::min(title.size(), cmdline.size() - 1));
  BOOST_TEST(cmdline.compare(0, shown.size(), shown) == 0, cmdline);
  BOOST_TEST(cmdline.find_first_not_of('\0', shown.size()) == std::string::npos);
  BOOST_TEST(read_file("/proc/self/comm") == parent_comm);  // the parent's is untouched
  release.set();
  BOOST_TEST(p.join_for(30s));
  BOOST_TEST(p.exitcode().value_or(-999) == 0);

  // An explicit title wins over the name; no set_name() and no title: the comm is inherited.
  mp::ChildOptions o;
  o.title = "mp-explicit";
  BOOST_TEST(run_with(o, [] { return read_file("/proc/self/comm") == "mp-explicit\n" ? 0 : 1; },
                      "ignored-name") == 0);
  BOOST_TEST(run_with({}, [parent_comm] { return read_file("/proc/self/comm") == parent_comm ? 0 : 1; }) ==
             0);
}

BOOST_AUTO_TEST_CASE(bad_options_are_errors, *boost::unit_test::timeout(60)) {
  mp::Process p([] { return 0; });
  p.set_name("opts");
  mp::ChildOptions o;
  o.parent_death_signal = 999;
  expect_error([&] { p.set_options(o); }, mp::errc::invalid_argument, {"opts", "999"});
  o.parent_death_signal.reset();
  o.keep_fds = {-3};
  expect_error([&] { p.set_options(o); }, mp::errc::invalid_argument, {"opts", "-3"});
  p.start();
  expect_error([&] { p.set_options({}); }, mp::errc::bad_state, {"opts", "after start"});
  p.join();
}

BOOST_AUTO_TEST_SUITE_END()
