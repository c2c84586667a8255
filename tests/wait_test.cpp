// wait(): the ready subset of connections, queues and process sentinels, and its timeout.
#include "support/support.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
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

BOOST_AUTO_TEST_SUITE_END()
