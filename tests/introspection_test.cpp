// Introspection of named objects (issue 13, item 4): which processes have an object open (across
// forks, opens by name and a SIGKILLed attacher), stale() after a restarted creator reclaimed the
// name, the "name is taken" error naming the creator, and the application's name prefix.
#include "support/support.hpp"

#include <multiproc/detail/segment_header.hpp>
#include <multiproc/detail/this_process.hpp>
#include <multiproc/inspect.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace mptest;

namespace {

bool has(const std::vector<int>& v, pid_t p) {
  return std::find(v.begin(), v.end(), static_cast<int>(p)) != v.end();
}

// A pipe whose write end the parent closes to release every child blocked on the read end.
struct Release {
  int fds[2] = {-1, -1};
  Release() { BOOST_REQUIRE(::pipe(fds) == 0); }
  ~Release() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
  void child_wait() {  // in a child: block until the parent releases (or dies)
    ::close(fds[1]);
    char c;
    while (::read(fds[0], &c, 1) < 0 && errno == EINTR) {
    }
  }
  void release() {
    ::close(fds[1]);
    fds[1] = -1;
  }
};

// Reaps a child with a deadline (SIGKILL on timeout); returns its wait status.
int reap(pid_t pid) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 30000);
    ::close(pidfd);
    if (ready == 0) {
      ::kill(pid, SIGKILL);
      BOOST_ERROR("child " << pid << " did not exit in 30 s");
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Whether the process is stopped (state T in /proc/<pid>/stat).
bool stopped(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(f, stat);
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T';
}

bool exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string own_comm() {
  std::ifstream f("/proc/self/comm");
  std::string s;
  std::getline(f, s);
  return s;
}

// Restores the prefix this process had, however a test ends.
struct PrefixGuard {
  std::string saved = mp::name_prefix();
  ~PrefixGuard() { mp::set_name_prefix(saved); }
};

}  // namespace

MPTEST_SCENARIO(prefix_from_environment) {
  // args: name, expected prefix. MULTIPROC_PREFIX is set in this process's environment.
  if (args.size() != 2) return 10;
  if (mp::name_prefix() != args[1]) return 11;
  mp::SharedValue<int> v(mp::create_only, args[0], 5);
  if (!file_exists("/dev/shm/mp." + args[1] + args[0])) return 12;
  if (file_exists("/dev/shm/mp." + args[0])) return 13;
  mp::SharedValue<int> again(mp::open_only, args[0]);
  return again.load() == 5 ? 0 : 14;
}

BOOST_FIXTURE_TEST_SUITE(introspection, Clean)

BOOST_AUTO_TEST_CASE(attach_count_follows_forks_opens_exits_and_a_sigkill,
                     *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("attached");
  mp::Mutex m(mp::create_only, name);
  BOOST_TEST(m.segment().attach_count() == 1u);
  BOOST_TEST(m.segment().attached_pids() == std::vector<int>{static_cast<int>(::getpid())});

  Release go;
  int ready[2];
  BOOST_REQUIRE(::pipe(ready) == 0);
  // 0, 1: open by name; 2: uses the handle it inherited; 3: opens, takes the lock and is
  // SIGKILLed holding it (busy); 4: opens and is SIGKILLed idle.
  constexpr int kChildren = 5;
  std::vector<pid_t> kids;
  for (int i = 0; i < kChildren; ++i) {
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(ready[0]);
      {
        std::optional<mp::Mutex> mine;
        if (i != 2) mine.emplace(mp::open_only, name);
        mp::Mutex& use = i == 2 ? m : *mine;
        if (i == 3) use.lock();  // killed holding it
        (void)!::write(ready[1], "r", 1);
        go.child_wait();
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  ::close(ready[1]);
  for (int i = 0; i < kChildren; ++i) {
    char c;
    BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
  }
  ::close(ready[0]);
  std::vector<int> pids = m.segment().attached_pids();
  BOOST_TEST(pids.size() == static_cast<std::size_t>(kChildren + 1));
  BOOST_TEST(has(pids, ::getpid()));
  for (pid_t k : kids) BOOST_TEST(has(pids, k));

  // SIGKILL two attachers (one holding the lock): they stop counting at once.
  ::kill(kids[3], SIGKILL);
  ::kill(kids[4], SIGKILL);
  BOOST_TEST(WIFSIGNALED(reap(kids[3])));
  BOOST_TEST(WIFSIGNALED(reap(kids[4])));
  pids = m.segment().attached_pids();
  BOOST_TEST(pids.size() == static_cast<std::size_t>(kChildren - 1));
  BOOST_TEST(!has(pids, kids[3]));
  BOOST_TEST(!has(pids, kids[4]));

  // The rest finish normally (their handles go): only the creator is left.
  go.release();
  for (int i = 0; i < 3; ++i) BOOST_TEST(exited_ok(reap(kids[i])));
  BOOST_TEST(m.segment().attach_count() == 1u);
  // The lock the killed attacher held is recovered as usual.
  BOOST_TEST(m.try_lock_for(10s));
  BOOST_TEST(m.previous_owner_died());
  m.unlock();
}

BOOST_AUTO_TEST_CASE(many_processes_attaching_at_once_are_each_counted_once,
                     *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("crowd");
  mp::Queue<int> q(mp::create_only, name, 4);
  Release start, finish;
  int ready[2];
  BOOST_REQUIRE(::pipe(ready) == 0);
  constexpr int kChildren = 24;
  std::vector<pid_t> kids;
  for (int i = 0; i < kChildren; ++i) {
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(ready[0]);
      start.child_wait();  // all open at once
      {
        mp::Queue<int> mine(mp::open_only, name);
        mp::Queue<int> twice(mp::open_only, name);  // one process, one mapping, one slot
        (void)!::write(ready[1], "r", 1);
        finish.child_wait();
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  ::close(ready[1]);
  start.release();
  for (int i = 0; i < kChildren; ++i) {
    char c;
    BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
  }
  ::close(ready[0]);
  BOOST_TEST(q.segment().attach_count() == static_cast<std::size_t>(kChildren + 1));
  // A stopped attacher still has it open; once killed, it does not.
  ::kill(kids[0], SIGSTOP);
  BOOST_TEST(eventually([&] { return stopped(kids[0]); }));
  BOOST_TEST(q.segment().attach_count() == static_cast<std::size_t>(kChildren + 1));
  ::kill(kids[0], SIGKILL);
  BOOST_TEST(WIFSIGNALED(reap(kids[0])));
  BOOST_TEST(q.segment().attach_count() == static_cast<std::size_t>(kChildren));
  finish.release();
  for (int i = 1; i < kChildren; ++i) BOOST_TEST(exited_ok(reap(kids[i])));
  BOOST_TEST(q.segment().attached_pids() == std::vector<int>{static_cast<int>(::getpid())});
}

BOOST_AUTO_TEST_CASE(dead_slots_are_reused_so_the_table_never_fills_up,
                     *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("churn");
  mp::Mutex m(mp::create_only, name);
  auto* table = reinterpret_cast<mp::detail::AttachTable*>(
      static_cast<char*>(m.segment().body()) - m.segment().header().body_offset +
      mp::detail::kAttachOffset);
  // Every free slot taken by a process that has died (as SIGKILLed attachers leave them).
  const pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  reap(gone);
  for (auto& slot : table->slots) {
    std::uint64_t free_slot = 0;
    slot.compare_exchange_strong(free_slot, mp::detail::attach_word(gone, 1));
  }
  // New attachers (SIGKILLed in turn) still get a slot: a dead one's.
  for (int i = 0; i < 8; ++i) {
    int ready[2];
    BOOST_REQUIRE(::pipe(ready) == 0);
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(ready[0]);
      mp::Mutex mine(mp::open_only, name);
      const auto pids = mine.segment().attached_pids();
      const bool counted = std::find(pids.begin(), pids.end(), ::getpid()) != pids.end();
      (void)!::write(ready[1], counted ? "y" : "n", 1);
      ::pause();
      ::_exit(0);
    }
    ::close(ready[1]);
    char c = 0;
    BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
    BOOST_TEST(c == 'y');
    BOOST_TEST(m.segment().attach_count() == 2u);
    ::kill(pid, SIGKILL);
    reap(pid);
  }
  // Looking frees the dead slots: only the creator's is left.
  BOOST_TEST(m.segment().attached_pids() == std::vector<int>{static_cast<int>(::getpid())});
  std::size_t used = 0;
  for (auto& slot : table->slots) used += slot.load() != 0 ? 1 : 0;
  BOOST_TEST(used == 1u);
  BOOST_TEST(table->overflow.load() == 0u);
}

BOOST_AUTO_TEST_CASE(a_full_table_of_live_attachers_counts_the_overflow,
                     *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("full");
  mp::Event e(mp::create_only, name);
  auto* table = reinterpret_cast<mp::detail::AttachTable*>(
      static_cast<char*>(e.segment().body()) - e.segment().header().body_offset +
      mp::detail::kAttachOffset);
  // Every free slot held by a live process (this one, as a stand-in for 126 others).
  const std::uint64_t live = mp::detail::attach_word(::getpid(), mp::detail::current_start_time());
  for (auto& slot : table->slots) {
    std::uint64_t free_slot = 0;
    slot.compare_exchange_strong(free_slot, live);
  }
  CHECK_CHILD([&] {
    mp::Event mine(mp::open_only, name);  // finds no slot: counted as overflow, not listed
    const auto pids = mine.segment().attached_pids();
    CHILD_REQUIRE(pids == std::vector<int>{static_cast<int>(::getppid())});
    CHILD_REQUIRE(table->overflow.load() == 1u);
    return 0;
  });
  const auto info = mp::inspect(name);
  BOOST_TEST_REQUIRE(info.has_value());
  BOOST_TEST(info->attach_overflow == 1u);
  BOOST_TEST(!info->stale());
  BOOST_TEST(e.segment().attach_count() == 1u);  // the dead child was never listed
}

BOOST_AUTO_TEST_CASE(stale_turns_true_in_a_process_still_using_a_reclaimed_name,
                     *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("split");
  Release go_master, go_worker;
  int ready[2];
  BOOST_REQUIRE(::pipe(ready) == 0);
  // The old master: creates the counter and stays until SIGKILLed.
  const pid_t master = ::fork();
  BOOST_REQUIRE(master >= 0);
  if (master == 0) {
    ::close(ready[0]);
    mp::SharedValue<long> counter(mp::create_only, name, 100);
    (void)!::write(ready[1], "m", 1);
    go_master.child_wait();
    ::_exit(0);
  }
  char c;
  BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
  // The orphan-to-be: a worker that keeps the old counter across the restart.
  int result[2];
  BOOST_REQUIRE(::pipe(result) == 0);
  const pid_t worker = ::fork();
  BOOST_REQUIRE(worker >= 0);
  if (worker == 0) {
    ::close(ready[0]);
    ::close(result[0]);
    char verdict = 'x';
    {
      mp::SharedValue<long> counter(mp::open_only, name);
      const bool before = counter.stale();
      const std::uint64_t gen = counter.segment().generation();
      (void)!::write(ready[1], "w", 1);
      go_worker.child_wait();
      counter.update([](long& x) { x += 1; });  // still works, on the old object
      verdict = !before && counter.stale() && gen == 1 && counter.load() == 101 ? 'y' : 'n';
    }
    (void)!::write(result[1], &verdict, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(result[1]);
  BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);

  ::kill(master, SIGKILL);
  BOOST_TEST(WIFSIGNALED(reap(master)));
  {
    // The restarted master reclaims the name: a new object, generation 2.
    mp::SharedValue<long> fresh(mp::create_only, name, 0);
    BOOST_TEST(!fresh.stale());
    BOOST_TEST(fresh.segment().generation() == 2u);
    BOOST_TEST(fresh.attach_count() == 1u);  // the worker is on the old object
    go_worker.release();
    BOOST_REQUIRE(::read(result[0], &c, 1) == 1);
    BOOST_TEST(c == 'y');
    BOOST_TEST(exited_ok(reap(worker)));
    BOOST_TEST(fresh.load() == 0);  // the worker's update went to the old object
  }
  ::close(result[0]);
}

BOOST_AUTO_TEST_CASE(stale_after_remove_and_never_for_anonymous, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("removed");
  mp::SharedValue<int> v(mp::create_only, name, 1);
  mp::Queue<int> q(mp::create_only, unique_name("q"), 4);
  BOOST_TEST(!v.stale());
  BOOST_TEST(!q.segment().stale());
  BOOST_TEST(mp::remove(name));
  BOOST_TEST(v.stale());
  mp::SharedValue<int> anon(3);
  BOOST_TEST(!anon.stale());
  BOOST_TEST(anon.attach_count() == 0u);
  BOOST_TEST(anon.segment().generation() == 1u);
}

BOOST_AUTO_TEST_CASE(name_taken_error_names_the_creators_pid_and_program,
                     *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("taken");
  mp::SharedValue<int> v(mp::create_only, name, 1);
  const std::string pid = "pid " + std::to_string(::getpid());
  const std::string comm = own_comm();
  BOOST_REQUIRE(!comm.empty());
  expect_error([&] { mp::Semaphore s(mp::create_only, name); }, mp::errc::already_exists,
               {pid, "(" + comm + ")", "alive", name});
  // From another process too.
  CHECK_CHILD([&] {
    try {
      mp::SharedValue<int> again(mp::create_only, name, 2);
    } catch (const mp::Error& e) {
      const std::string what = e.what();
      CHILD_REQUIRE(what.find(pid + " (" + comm + "), alive") != std::string::npos);
      return 0;
    }
    return 1;
  });
  // A persistent object whose creator has exited.
  const std::string kept = unique_name("kept");
  pid_t creator = 0;
  {
    int p[2];
    BOOST_REQUIRE(::pipe(p) == 0);
    creator = ::fork();
    BOOST_REQUIRE(creator >= 0);
    if (creator == 0) {
      { mp::SharedValue<int> k(mp::create_only, mp::persistent(kept), 1); }
      ::_exit(0);
    }
    ::close(p[0]);
    ::close(p[1]);
    BOOST_TEST(exited_ok(reap(creator)));
  }
  expect_error([&] { mp::SharedValue<int> k(mp::create_only, kept, 1); }, mp::errc::already_exists,
               {"a persistent object created by pid " + std::to_string(creator), "which has exited"});
  BOOST_TEST(mp::remove(kept));
}

BOOST_AUTO_TEST_CASE(prefix_set_by_the_api_isolates_two_instances, *boost::unit_test::timeout(60)) {
  PrefixGuard restore;
  const std::string a = run_prefix() + std::to_string(::getpid()) + ".A.";
  const std::string b = run_prefix() + std::to_string(::getpid()) + ".B.";
  const std::string name = "jobs";
  mp::set_name_prefix(a);
  BOOST_TEST(mp::name_prefix() == a);
  // Every kind of named object, and the lock a value records by name, go under the prefix.
  mp::Mutex lock(mp::create_only, name + ".lock");
  mp::SharedValue<long> hits(mp::create_only, name + ".hits", 0, lock);
  mp::Queue<int> q(mp::create_only, name, 8);
  mp::SharedArray<int> arr(mp::create_only, name + ".arr", 4);
  for (const char* suffix : {"", ".lock", ".hits", ".arr"}) {
    BOOST_TEST(file_exists("/dev/shm/mp." + a + name + suffix));
    BOOST_TEST(!file_exists("/dev/shm/mp." + name + suffix));
  }
  q.put(1);
  // Instance B (a child with its own prefix) uses the same names without colliding.
  CHECK_CHILD([&] {
    mp::set_name_prefix(b);
    CHILD_REQUIRE(!mp::exists(name));
    mp::Queue<int> mine(mp::create_only, name, 8);
    CHILD_REQUIRE(mine.size() == 0);
    mp::Mutex l(mp::create_only, name + ".lock");
    mp::SharedValue<long> h(mp::open_or_create, name + ".hits", 0, l);
    h.update([](long& x) { x += 7; });
    CHILD_REQUIRE(file_exists("/dev/shm/mp." + b + name));
    mp::set_name_prefix(a);  // and back to A: A's objects, with A's lock found by name
    mp::SharedValue<long> theirs(mp::open_only, name + ".hits");
    CHILD_REQUIRE(theirs.load() == 0);
    mp::set_name_prefix(b);
    return 0;  // B's objects are removed by their handles, under B's prefix
  });
  BOOST_TEST(!file_exists("/dev/shm/mp." + b + name));
  BOOST_TEST(!file_exists("/dev/shm/mp." + b + name + ".hits"));
  BOOST_TEST(q.size() == 1u);
  BOOST_TEST(hits.load() == 0);
  // Handles keep their file when the prefix changes: removal still finds it.
  mp::set_name_prefix("");
  BOOST_TEST(!q.segment().stale());
  expect_errc([] { mp::set_name_prefix("a/b"); }, mp::errc::invalid_argument);
  expect_errc([] { mp::set_name_prefix(std::string(49, 'p')); }, mp::errc::invalid_argument);
  BOOST_TEST(mp::name_prefix().empty());
}

BOOST_AUTO_TEST_CASE(prefix_comes_from_the_environment, *boost::unit_test::timeout(60)) {
  const std::string prefix = run_prefix() + std::to_string(::getpid()) + ".env.";
  const std::string name = "counter";
  ::setenv("MULTIPROC_PREFIX", prefix.c_str(), 1);
  Spawned child("prefix_from_environment", {name, prefix});
  ::unsetenv("MULTIPROC_PREFIX");
  BOOST_TEST(child.wait() == 0);
  BOOST_TEST(!file_exists("/dev/shm/mp." + prefix + name));
}

BOOST_AUTO_TEST_SUITE_END()
