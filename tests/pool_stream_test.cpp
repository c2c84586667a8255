// Pool, imap and imap_unordered streams: order, lazy, endless and failing inputs, a bounded
// window and flat memory, errors at their place, streams destroyed midway, cut by close / join /
// terminate / the pool's destruction, many threads at once.
#include "pool_tasks.hpp"

#include <algorithm>
#include <optional>
#include <set>
#include <thread>

using namespace pooltest;

// One suite, `pool`, over pool_test.cpp, pool_failure_test.cpp and pool_stream_test.cpp.
BOOST_FIXTURE_TEST_SUITE(pool, Clean)

BOOST_AUTO_TEST_CASE(imap_in_order_and_imap_unordered_in_any, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const auto in = range(200);
  std::vector<long> got;
  for (long v : pool.imap(square, in)) got.push_back(v);
  std::vector<long> expected;
  for (long x : in) expected.push_back(x * x);
  BOOST_TEST((got == expected));
  std::multiset<long> unordered;
  auto stream = pool.imap_unordered(square, in, 7);
  BOOST_TEST(stream.total() == 0u);  // nothing taken yet
  for (long v : stream) unordered.insert(v);
  BOOST_TEST(stream.total() == 200u);  // all taken
  BOOST_TEST((unordered == std::multiset<long>(expected.begin(), expected.end())));
  BOOST_CHECK_THROW(stream.begin(), mp::Error);  // single pass
  std::size_t n = 0;
  for (long v : pool.imap(square, std::vector<long>{})) n += static_cast<std::size_t>(v) + 1;
  BOOST_TEST(n == 0u);
}

BOOST_AUTO_TEST_CASE(terminate_ends_a_stream_with_chunks_in_flight, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  NamedEvent never("never");
  std::vector<std::string> names(100, never.name);
  auto stream = pool.imap(wait_for_event, names);
  pool.terminate();
  pool.join();
  BOOST_CHECK_THROW(for (bool b : stream) BOOST_TEST(!b), mp::Error);
}

// ---- lazy imap (item 2) ------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(imap_takes_an_endless_input_and_stops_early, *boost::unit_test::timeout(60)) {
  std::atomic<long> read{0};
  Numbers endless;
  endless.read = &read;
  std::vector<long> got;
  {
    mp::Pool pool(2);
    {
      auto stream = pool.imap(square, endless);
      for (long v : stream) {
        got.push_back(v);
        if (got.size() == 100) break;  // take(100)
      }
    }  // destroys the stream with chunks in flight
    BOOST_TEST(pool.apply(square, 9L) == 81);
    // imap_unordered, with chunks of 5
    std::multiset<long> some;
    for (long v : pool.imap_unordered(square, endless, 5)) {
      some.insert(v);
      if (some.size() == 50) break;
    }
    BOOST_TEST(some.size() == 50u);
    for (long v : some) BOOST_TEST(v >= 0);
  }  // the pool goes while nothing is pending
  BOOST_REQUIRE(got.size() == 100u);
  for (long i = 0; i < 100; ++i) BOOST_TEST(got[static_cast<std::size_t>(i)] == i * i);
  BOOST_TEST(read.load() < 100 + 50 + 2 * 4 * 5 + 5 + 2 * 4 + 1);  // read only about what it used
}

BOOST_AUTO_TEST_CASE(imap_keeps_a_bounded_number_of_chunks_in_flight, *boost::unit_test::timeout(60)) {
  for (bool ordered : {true, false}) {
    mp::Pool pool(2);
    std::atomic<long> read{0};
    Numbers endless;
    endless.read = &read;
    const std::size_t chunksize = 3;
    const long bound = 4 * 2 * static_cast<long>(chunksize);  // a few chunks per worker
    long taken = 0, worst = 0, sum = 0;
    auto stream = ordered ? pool.imap(square, endless, chunksize)
                          : pool.imap_unordered(square, endless, chunksize);
    for (long v : stream) {
      sum += v;
      ++taken;
      // Items read but not yet taken: those in flight (a few chunks) and the rest of this chunk.
      worst = std::max(worst, read.load() - taken);
      if (taken == 10000) break;
    }
    BOOST_TEST_MESSAGE("ordered " << ordered << ": at most " << worst << " items read ahead");
    BOOST_TEST(worst <= bound);
    BOOST_TEST(stream.total() >= 10000u);
    if (ordered) BOOST_TEST(sum == sum_of_squares(10000));
  }
}

BOOST_AUTO_TEST_CASE(imap_memory_stays_flat_over_a_long_run, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  Numbers numbers;
  numbers.limit = 2500000;  // 20 MB of input and 20 MB of results, had they been kept
  long warm = 0;
  for (long v : pool.imap(square, Numbers{20000, -1, nullptr}, 1000)) warm += v;
  BOOST_TEST(warm == sum_of_squares(20000));
  const long before = resident_bytes();
  long sum = 0, count = 0;
  for (long v : pool.imap(square, numbers, 1000)) {
    sum += v;
    ++count;
  }
  const long grown = resident_bytes() - before;
  BOOST_TEST_MESSAGE("resident memory grew by " << grown / 1024 << " KiB over 2.5 M items");
  BOOST_TEST(count == 2500000);
  BOOST_TEST(sum == sum_of_squares(2500000));
  BOOST_TEST(grown < 12L * 1024 * 1024);  // generous: eager reading would need 40 MB
}

BOOST_AUTO_TEST_CASE(imap_yields_the_items_before_an_input_error_then_rethrows_it, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{2}, std::size_t{4}}) {
    for (bool ordered : {true, false}) {
      Numbers failing{20, 7, nullptr};
      std::vector<long> got;
      try {
        auto stream = ordered ? pool.imap(square, failing, chunksize)
                              : pool.imap_unordered(square, failing, chunksize);
        for (long v : stream) got.push_back(v);
        BOOST_FAIL("the input's error was lost");
      } catch (const std::runtime_error& e) {
        BOOST_TEST(std::string(e.what()) == "no item 7");
      }
      std::sort(got.begin(), got.end());
      BOOST_TEST((got == std::vector<long>{0, 1, 4, 9, 16, 25, 36}), "chunksize " << chunksize);
    }
  }
  // An input that fails at once: no result, then the error.
  std::size_t n = 0;
  BOOST_CHECK_THROW(for (long v : pool.imap(square, Numbers{20, 0, nullptr})) n += v != 0, std::runtime_error);
  BOOST_TEST(n == 0u);
  // map reads everything first: the error leaves map cleanly and the pool carries on.
  BOOST_CHECK_THROW(pool.map(square, Numbers{1000, 500, nullptr}), std::runtime_error);
  BOOST_TEST((pool.map(square, Numbers{4, -1, nullptr}) == std::vector<long>{0, 1, 4, 9}));
}

BOOST_AUTO_TEST_CASE(imap_delivers_a_task_error_at_its_place, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  std::vector<long> got;
  try {
    for (long v : pool.imap(fail_on_three, range(10))) got.push_back(v);
    BOOST_FAIL("no error");
  } catch (const mp::RemoteError& e) {
    BOOST_TEST(e.remote_message() == "three is not welcome");
  }
  BOOST_TEST((got == std::vector<long>{0, 1, 2}));
  // A worker killed running item 7: the results before it, then BrokenPool.
  got.clear();
  try {
    for (long v : pool.imap(kill_myself_on, range(20))) got.push_back(v);
    BOOST_FAIL("no error");
  } catch (const mp::BrokenPool& e) {
    BOOST_TEST(std::string(e.what()).find("signal 9") != std::string::npos, e.what());
  }
  BOOST_TEST((got == std::vector<long>{0, 1, 2, 3, 4, 5, 6}));
  BOOST_TEST(pool.apply(square, 7L) == 49);
}

BOOST_AUTO_TEST_CASE(imap_over_a_large_input_gives_exact_sums, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  const long n = 300000;
  const auto in = range(n);
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{64}, std::size_t{5000}}) {
    const long items = chunksize == 1 ? 5000 : n;
    long sum = 0, count = 0, next = 0;
    bool in_order = true;
    for (long v : pool.imap(square, Numbers{items, -1, nullptr}, chunksize)) {
      in_order = in_order && v == next * next;
      ++next;
      sum += v;
      ++count;
    }
    BOOST_TEST(in_order);
    BOOST_TEST(count == items);
    BOOST_TEST(sum == sum_of_squares(items));
    std::set<long> seen;
    sum = 0;
    for (long v : pool.imap_unordered(square, in, chunksize)) {
      if (seen.size() < static_cast<std::size_t>(items)) seen.insert(v);
      sum += v;
      if (static_cast<long>(seen.size()) == items && chunksize == 1) break;
    }
    if (chunksize != 1) BOOST_TEST(sum == sum_of_squares(n));
    BOOST_TEST(static_cast<long>(seen.size()) == items);  // squares of distinct naturals are distinct
  }
  // A temporary input is kept by the stream.
  long total = 0;
  for (long v : pool.imap(square, range(1000), 7)) total += v;
  BOOST_TEST(total == sum_of_squares(1000));
}

BOOST_AUTO_TEST_CASE(destroying_a_stream_midway_leaves_the_pool_usable, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  NamedEvent go("go");
  for (int round = 0; round < 3; ++round) {
    auto stream = pool.imap(square, Numbers{}, 2);
    auto it = stream.begin();
    for (int k = 0; k < 10; ++k, ++it) BOOST_TEST(*it == static_cast<long>(k) * k);
  }  // each destroyed with chunks queued and running
  {
    // Destroyed while its tasks are blocked in the workers.
    auto blocked = pool.imap(wait_for_event, std::vector<std::string>(100, go.name));
  }
  go.set();
  const auto squares = pool.map(square, range(10000));
  BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(10000));
  BOOST_TEST(pool.apply(add, 2, 3) == 5);
  long sum = 0;
  for (long v : pool.imap_unordered(square, range(500), 3)) sum += v;
  BOOST_TEST(sum == sum_of_squares(500));
}

BOOST_AUTO_TEST_CASE(a_stream_outlives_close_until_join, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  auto stream = pool.imap(square, Numbers{300, -1, nullptr});
  pool.close();
  BOOST_CHECK_THROW(pool.imap(square, range(3)), mp::Error);  // no new call
  long sum = 0;
  for (long v : stream) sum += v;  // but the open stream reads all its input
  BOOST_TEST(sum == sum_of_squares(300));
  pool.join();
  // join() cuts a stream that is not done: what was submitted arrives, then bad_state.
  mp::Pool other(2);
  auto cut = other.imap(square, Numbers{});
  other.close();
  other.join();
  long taken = 0;
  try {
    for (long v : cut) taken += v >= 0;
    BOOST_FAIL("an endless stream ended");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
  }
  BOOST_TEST(taken <= 4 * 2);
  // The pool destroyed under a stream: the stream ends with an error, no hang.
  std::optional<mp::ResultStream<long>> orphan;
  {
    mp::Pool gone(1);
    orphan.emplace(gone.imap(square, Numbers{}));
  }
  BOOST_CHECK_THROW(for (long v : *orphan) taken += v, mp::Error);
}

BOOST_AUTO_TEST_CASE(a_stream_cut_by_join_hands_out_what_was_submitted_first, *boost::unit_test::timeout(60)) {
  // The stream has chunks in flight when the pool is closed and joined: join() lets them run,
  // and the stream delivers every one of them, in order, before its bad_state. (It once threw
  // at the next refill, dropping the results already computed.)
  mp::Pool pool(2);
  auto stream = pool.imap(square, Numbers{});
  auto it = stream.begin();
  BOOST_REQUIRE(it != stream.end());
  BOOST_TEST(*it == 0);
  pool.close();
  pool.join();
  long next = 1, more = 0;
  try {
    for (++it; it != stream.end(); ++it, ++next, ++more) BOOST_TEST(*it == next * next);
    BOOST_FAIL("an endless stream ended");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
  }
  BOOST_TEST(more >= 1);  // the window held more than the one taken
}

BOOST_AUTO_TEST_CASE(many_threads_wait_on_one_result_and_stream_at_once, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  NamedEvent go("go");
  auto shared = pool.apply_async(wait_for_event, go.name);
  std::atomic<int> timed_out{0}, got{0};
  std::vector<std::thread> waiters;
  for (int t = 0; t < 6; ++t) {
    waiters.emplace_back([&] {
      timed_out += !shared.get_for(10ms).has_value();
      got += shared.get_for(60s).value_or(false);
    });
  }
  // Meanwhile, other threads run their own streams and maps on the same pool.
  std::atomic<long> bad{0};
  std::vector<std::thread> users;
  for (int t = 0; t < 3; ++t) {
    users.emplace_back([&, t] {
      long sum = 0;
      for (long v : pool.imap(square, Numbers{3000 + t, -1, nullptr}, 1 + t)) sum += v;
      bad += sum != sum_of_squares(3000 + t);
      long unordered = 0;
      for (long v : pool.imap_unordered(square, range(2000), 7)) unordered += v;
      bad += unordered != sum_of_squares(2000);
      const auto m = pool.map(square, range(1000 * (t + 1)));
      bad += std::accumulate(m.begin(), m.end(), 0L) != sum_of_squares(1000 * (t + 1));
    });
  }
  for (auto& u : users) u.join();
  BOOST_TEST(bad.load() == 0);
  go.set();
  for (auto& w : waiters) w.join();
  BOOST_TEST(timed_out.load() == 6);
  BOOST_TEST(got.load() == 6);
}

BOOST_AUTO_TEST_SUITE_END()
