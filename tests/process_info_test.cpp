// Process: what a process knows of itself and its relatives — current_process(), parent_process()
// and active_children() — in the main process, children, grandchildren and orphans. (Split from
// process_test.cpp, same suite.)
#include "support/support.hpp"

#include "../src/process/liveness.hpp"  // the liveness query (private)

#include <multiproc/detail/fork_hooks.hpp>
#include <multiproc/detail/this_process.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdexcept>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>

using namespace mptest;

namespace {

// What a process sees of itself, sent back over a Connection.
struct Identity {
  pid_t pid = 0;
  std::string name;
  bool daemon = false;
  pid_t parent_pid = -1;  // -1: parent_process() is nullopt
  std::string parent_name;
  bool parent_alive = false;
  std::size_t children = 0;  // active_children().size()
};

void send_identity(const mp::Connection& c) {
  const mp::ProcessInfo self = mp::current_process();
  const std::optional<mp::ProcessInfo> parent = mp::parent_process();
  c.send(static_cast<int>(self.pid()));
  c.send(self.name());
  c.send(static_cast<int>(self.daemon()));
  c.send(static_cast<int>(parent ? parent->pid() : -1));
  c.send(parent ? parent->name() : std::string());
  c.send(static_cast<int>(parent && parent->is_alive()));
  c.send(static_cast<int>(mp::active_children().size()));
}

Identity recv_identity(const mp::Connection& c) {
  BOOST_REQUIRE(c.poll(30s));
  Identity id;
  id.pid = c.recv<int>();
  id.name = c.recv<std::string>();
  id.daemon = c.recv<int>() != 0;
  id.parent_pid = c.recv<int>();
  id.parent_name = c.recv<std::string>();
  id.parent_alive = c.recv<int>() != 0;
  id.children = static_cast<std::size_t>(c.recv<int>());
  return id;
}

std::vector<pid_t> pids_of(const std::vector<mp::ProcessInfo>& infos) {
  std::vector<pid_t> out;
  for (const auto& i : infos) out.push_back(i.pid());
  return out;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(process, Clean)

// ---- current_process, parent_process, active_children ------------------------------------------

BOOST_AUTO_TEST_CASE(the_main_process_is_MainProcess_without_a_parent, *boost::unit_test::timeout(60)) {
  const mp::ProcessInfo self = mp::current_process();
  BOOST_TEST(self.pid() == ::getpid());
  BOOST_TEST(self.name() == "MainProcess");
  BOOST_TEST(!self.daemon());
  BOOST_TEST(self.is_alive());
  BOOST_TEST(!mp::parent_process().has_value());
  BOOST_TEST(mp::active_children().empty());
}

BOOST_AUTO_TEST_CASE(a_child_sees_itself_and_its_parent, *boost::unit_test::timeout(60)) {
  auto [r, w] = mp::Pipe(false);
  mp::Process p([w = w] { send_identity(w); });
  p.set_name("indexer");
  mp::Process d([w = w] { send_identity(w); });
  d.set_daemon(true);
  p.start();
  const Identity id = recv_identity(r);
  BOOST_TEST(id.pid == p.pid());
  BOOST_TEST(id.name == "indexer");
  BOOST_TEST(!id.daemon);
  BOOST_TEST(id.parent_pid == ::getpid());
  BOOST_TEST(id.parent_name == "MainProcess");
  BOOST_TEST(id.parent_alive);
  BOOST_TEST(id.children == 0u);
  d.start();
  const Identity did = recv_identity(r);
  BOOST_TEST(did.pid == d.pid());
  BOOST_TEST(did.name == d.name());  // the default "Process-<n>"
  BOOST_TEST(did.name.rfind("Process-", 0) == 0);
  BOOST_TEST(did.daemon);
  BOOST_TEST(did.parent_pid == ::getpid());
  BOOST_REQUIRE(p.join_for(30s));
  BOOST_REQUIRE(d.join_for(30s));
  BOOST_TEST(*p.exitcode() == 0);
  BOOST_TEST(*d.exitcode() == 0);
  w.close();
}

BOOST_AUTO_TEST_CASE(a_grandchild_sees_its_parent, *boost::unit_test::timeout(60)) {
  auto [r, w] = mp::Pipe(false);
  mp::RawValue<int> inner_pid(0);
  mp::Process outer([w = w, inner_pid]() mutable {
    send_identity(w);
    mp::Process inner([w] { send_identity(w); });
    inner.set_name("inner");
    inner.start();
    inner_pid.store(inner.pid());
    // While the grandchild runs, it is this process's one active child.
    const auto children = mp::active_children();
    CHILD_REQUIRE(children.size() == 1 || (children.empty() && !inner.is_alive()));
    CHILD_REQUIRE(children.empty() || (children[0].pid() == inner.pid() && children[0].name() == "inner"));
    inner.join();
    CHILD_REQUIRE(inner.exitcode() == 0);
    CHILD_REQUIRE(mp::active_children().empty());
    return 0;
  });
  outer.set_name("outer");
  outer.start();
  const Identity o = recv_identity(r);
  const Identity g = recv_identity(r);
  BOOST_REQUIRE(outer.join_for(30s));
  BOOST_TEST(*outer.exitcode() == 0);
  BOOST_TEST(o.name == "outer");
  BOOST_TEST(o.parent_pid == ::getpid());
  BOOST_TEST(g.pid == inner_pid.load());
  BOOST_TEST(g.name == "inner");
  BOOST_TEST(g.parent_pid == outer.pid());
  BOOST_TEST(g.parent_name == "outer");
  BOOST_TEST(g.children == 0u);
  w.close();
}

BOOST_AUTO_TEST_CASE(an_orphan_sees_its_dead_parent_as_not_alive, *boost::unit_test::timeout(60)) {
  auto [r, w] = mp::Pipe(false);
  Gate parent_gone;
  mp::Process outer([w = w, &parent_gone] {
    mp::Process inner([w, &parent_gone] {
      const auto before = mp::parent_process();
      w.send(static_cast<int>(before && before->is_alive()));
      if (!parent_gone.wait(30s)) return 1;
      const auto after = mp::parent_process();  // the same snapshot: reparenting changes nothing
      w.send(static_cast<int>(after ? after->pid() : -1));
      w.send(static_cast<int>(after && after->is_alive()));
      return 0;
    });
    inner.start();
    inner.join();  // killed in here
    return 0;
  });
  outer.start();
  BOOST_REQUIRE(r.poll(30s));
  BOOST_TEST(r.recv<int>() == 1);
  outer.kill();  // the grandchild is orphaned
  outer.join();
  parent_gone.signal();
  BOOST_REQUIRE(r.poll(30s));
  BOOST_TEST(r.recv<int>() == outer.pid());
  BOOST_REQUIRE(r.poll(30s));
  BOOST_TEST(r.recv<int>() == 0);
  w.close();
}

BOOST_AUTO_TEST_CASE(children_do_not_inherit_the_parents_children, *boost::unit_test::timeout(60)) {
  Gate release;
  std::vector<mp::Process> busy;
  for (int i = 0; i < 3; ++i) {
    busy.emplace_back([&] { return release.wait(60s) ? 0 : 3; });
    busy.back().set_daemon(true);  // ended by the destructor should a check below throw
    busy.back().start();
  }
  BOOST_REQUIRE(mp::active_children().size() == 3u);
  // A Process child: it starts with no children of its own, then has the one it starts.
  CHECK_CHILD([] {
    CHILD_REQUIRE(mp::active_children().empty());
    mp::Process own([] { return 4; });
    own.start();
    const auto listed = mp::active_children();
    CHILD_REQUIRE(listed.size() <= 1);
    CHILD_REQUIRE(listed.empty() || listed[0].pid() == own.pid());
    own.join();
    CHILD_REQUIRE(own.exitcode() == 4);
    return 0;
  });
  // A raw fork() child: no children either; it keeps its parent's name, and its parent is us.
  std::fflush(nullptr);
  const pid_t forker = ::getpid();
  const pid_t raw = ::fork();
  BOOST_REQUIRE(raw >= 0);
  if (raw == 0) {
    int code = 0;
    if (!mp::active_children().empty()) code |= 1;
    if (mp::current_process().name() != "MainProcess" || mp::current_process().pid() != ::getpid()) code |= 2;
    const auto parent = mp::parent_process();
    if (!parent || parent->pid() != forker || parent->name() != "MainProcess") code |= 4;
    ::_exit(code);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(raw, &status, 0) == raw);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);  // bits: 1 children, 2 self, 4 parent
  BOOST_TEST(mp::active_children().size() == 3u);  // the forks did not disturb ours
  for (int i = 0; i < 3; ++i) release.signal();
  for (auto& p : busy) BOOST_REQUIRE(p.join_for(30s));
  BOOST_TEST(mp::active_children().empty());
}

BOOST_AUTO_TEST_CASE(active_children_lists_live_ones_and_reaps_the_rest, *boost::unit_test::timeout(60)) {
  constexpr int n = 32;
  Gate release;
  mp::Event go;
  std::vector<mp::Process> ps;
  for (int i = 0; i < n; ++i) {
    // Even ones end with exit code i as soon as told; odd ones wait for the gate.
    ps.emplace_back([&, i] {
      if (i % 2 == 0) return go.wait_for(60s) ? i : 100;
      return release.wait(60s) ? i : 100;
    });
    ps.back().set_daemon(true);
    ps.back().start();
  }
  ps[1].set_name("renamed after start");
  std::vector<pid_t> all;
  for (const auto& p : ps) all.push_back(p.pid());
  const auto listed = mp::active_children();
  BOOST_TEST(pids_of(listed) == all, boost::test_tools::per_element());  // in start order
  BOOST_TEST(listed[1].name() == "renamed after start");
  BOOST_TEST(listed[2].name() == ps[2].name());
  BOOST_TEST(std::all_of(listed.begin(), listed.end(), [](const auto& c) { return c.is_alive(); }));
  BOOST_TEST(std::all_of(listed.begin(), listed.end(), [](const auto& c) { return c.daemon(); }));

  go.set();
  for (int i = 0; i < n; i += 2) {
    const pid_t pid = ps[i].pid();
    BOOST_REQUIRE(eventually([&] { return is_zombie(pid); }, 30s));
    BOOST_TEST(!listed[i].is_alive());  // the snapshot looks again, reaping nothing
    BOOST_TEST(is_zombie(pid));
  }
  const auto after = mp::active_children();
  std::vector<pid_t> odd;
  for (int i = 1; i < n; i += 2) odd.push_back(ps[i].pid());
  BOOST_TEST(pids_of(after) == odd, boost::test_tools::per_element());
  int sum = 0;
  for (int i = 0; i < n; i += 2) {
    BOOST_TEST(!still_our_child(ps[i].pid()));  // reaped: no zombie left
    BOOST_TEST(!ps[i].is_alive());
    sum += ps[i].exitcode().value();  // the Process objects kept the exit codes
    ps[i].join();                     // and joining again is fine
  }
  BOOST_TEST(sum == 2 * (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15));
  for (int i = 1; i < n; i += 2) release.signal();
  for (int i = 1; i < n; i += 2) BOOST_REQUIRE(ps[i].join_for(30s));
  BOOST_TEST(mp::active_children().empty());
  int odd_sum = 0;
  for (int i = 1; i < n; i += 2) odd_sum += *ps[i].exitcode();
  BOOST_TEST(odd_sum == 16 * 16);
}

BOOST_AUTO_TEST_CASE(active_children_after_kill_stop_move_and_destroy, *boost::unit_test::timeout(60)) {
  Gate never;
  std::vector<mp::Process> ps;
  for (int i = 0; i < 4; ++i) {
    ps.emplace_back([&] { never.wait(60s); });
    ps.back().set_daemon(true);
    ps.back().start();
  }
  const pid_t killed = ps[0].pid(), stopped = ps[1].pid(), moved = ps[2].pid(), destroyed = ps[3].pid();
  ::kill(stopped, SIGSTOP);
  ps[0].kill();
  BOOST_REQUIRE(eventually([&] { return is_zombie(killed); }, 30s));
  mp::Process target = std::move(ps[2]);
  std::vector<mp::ProcessInfo> listed = mp::active_children();
  BOOST_TEST((pids_of(listed) == std::vector<pid_t>{stopped, moved, destroyed}));
  BOOST_TEST(!still_our_child(killed));
  BOOST_TEST(*ps[0].exitcode() == -SIGKILL);
  ps.pop_back();  // a daemon: its destructor terminates and reaps it
  BOOST_TEST(!still_our_child(destroyed));
  BOOST_TEST(!listed[2].is_alive());  // a snapshot outlives the Process it described
  BOOST_TEST(listed[2].name().rfind("Process-", 0) == 0);
  BOOST_TEST((pids_of(mp::active_children()) == std::vector<pid_t>{stopped, moved}));
  target.kill();
  ps[1].kill();  // SIGKILL ends a stopped process too
  BOOST_REQUIRE(target.join_for(30s));
  BOOST_REQUIRE(ps[1].join_for(30s));
  BOOST_TEST(mp::active_children().empty());
}

BOOST_AUTO_TEST_CASE(active_children_on_another_thread_while_joining, *boost::unit_test::timeout(120)) {
  // active_children() may reap a child that another thread is joining: the join must still
  // return, with the right exit code (the status is collected once, under one lock).
  for (int round = 0; round < 4; ++round) {
    mp::Event go;
    std::vector<mp::Process> ps;
    for (int i = 0; i < 16; ++i) {
      ps.emplace_back([go](int k) { return go.wait_for(60s) ? k : 100; }, i);
      ps.back().start();
    }
    std::atomic<bool> stop{false};
    std::atomic<long> listings{0};
    std::thread lister = repeat_until(stop, listings, [] { (void)mp::active_children(); });
    int sum = 0;
    try {
      BOOST_REQUIRE(eventually([&] { return listings.load() > 0; }));
      go.set();  // they all end now, while the lister reaps what it finds ended
      for (int i = 0; i < 16; ++i) {
        if (i % 2 == 0) {
          ps[i].join();
        } else {
          BOOST_REQUIRE(ps[i].join_for(30s));
        }
        sum += ps[i].exitcode().value();
      }
    } catch (...) {
      stop.store(true);
      lister.join();
      throw;
    }
    stop.store(true);
    lister.join();
    BOOST_TEST(sum == 15 * 16 / 2);
    BOOST_TEST(mp::active_children().empty());
  }
}

BOOST_AUTO_TEST_SUITE_END()
