// wait(): the ready subset of connections, queues and process sentinels, and its timeout.
#include "support/support.hpp"

using namespace mptest;

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

BOOST_AUTO_TEST_SUITE_END()
