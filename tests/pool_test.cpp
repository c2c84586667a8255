// Pool, calls and their results: map ordering and chunking, starmap, apply, apply_async, async
// results (wait, get_for), progress, callbacks (attached later or given with the call), large
// arguments. Failures: pool_failure_test.cpp; imap streams: pool_stream_test.cpp.
#include "pool_tasks.hpp"

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <numeric>
#include <optional>
#include <thread>

using namespace pooltest;

// One suite, `pool`, over pool_test.cpp, pool_failure_test.cpp and pool_stream_test.cpp.
BOOST_FIXTURE_TEST_SUITE(pool, Clean)

BOOST_AUTO_TEST_CASE(map_keeps_the_order_for_any_chunk_size, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  BOOST_TEST(pool.size() == 2u);
  const auto in = range(10000);
  std::vector<long> expected;
  for (long x : in) expected.push_back(x * x);
  for (std::size_t chunk : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{999},
                            std::size_t{20000}}) {
    BOOST_TEST((pool.map(square, in, chunk) == expected), "chunksize " << chunk);
  }
  BOOST_TEST(pool.map(square, std::vector<long>{}).empty());  // at once
  BOOST_TEST(pool.map([](long x) { return x + 1; }, std::vector<long>{1, 2}).back() == 3);
  std::vector<std::string> words{"a", "bb", "ccc"};
  BOOST_TEST((pool.map([](std::string s) { return s.size(); }, words) ==
              std::vector<std::size_t>{1, 2, 3}));
}

BOOST_AUTO_TEST_CASE(map_sends_chunks_up_to_a_whole_record_from_the_input_and_copies_larger_ones,
                     *boost::unit_test::timeout(120)) {
  // Chunks of up to kBorrowMaxBytes (header included) go from the caller's input straight into
  // the worker's ring; larger ones are copied into messages first. Both sides of the limit, for
  // 8- and 4-byte items, a map_async (always copied) among them, results exact.
  mp::Pool pool(2);
  constexpr std::size_t kLimit = (mp::detail::kBorrowMaxBytes - mp::detail::kTaskHeaderBytes);
  const auto in = range(70000);
  std::vector<long> expected;
  for (long x : in) expected.push_back(x * x);
  std::vector<int> small(70000);
  std::iota(small.begin(), small.end(), -35000);
  std::vector<long> small_expected;
  for (int x : small) small_expected.push_back(static_cast<long>(x) * 3);
  for (std::size_t chunk : {kLimit / 8 - 1, kLimit / 8, kLimit / 8 + 1, std::size_t{70000}}) {
    BOOST_TEST((pool.map(square, in, chunk) == expected), "chunksize " << chunk);
    auto pending = pool.map_async(square, in, chunk);
    BOOST_TEST((pool.map(triple, small, chunk * 2) == small_expected), "chunksize " << chunk * 2);
    BOOST_TEST((pending.get() == expected), "map_async, chunksize " << chunk);
  }
}

// chunk_all copies the bytes of a contiguous range of the function's own argument type at once,
// and reads any other range item by item: each kind of input must give the same results.
BOOST_AUTO_TEST_CASE(map_reads_every_kind_of_input_range_alike, *boost::unit_test::timeout(120)) {
  using mp::detail::is_contiguous_of_v;
  static_assert(is_contiguous_of_v<long, std::vector<long>>);
  static_assert(is_contiguous_of_v<long, std::array<long, 3>>);
  static_assert(is_contiguous_of_v<long, long[3]>);
  static_assert(!is_contiguous_of_v<long, std::vector<int>>);  // converted one by one
  static_assert(!is_contiguous_of_v<long, std::list<long>>);
  static_assert(!is_contiguous_of_v<std::string, std::vector<std::string>>);  // not plain
  mp::Pool pool(2);
  const long n = 30011;  // not a multiple of any chunk size used below
  std::vector<long> longs(n);
  std::iota(longs.begin(), longs.end(), -100L);
  std::vector<long> expected;
  for (long x : longs) expected.push_back(x * x);
  const std::vector<int> ints(longs.begin(), longs.end());
  const std::list<long> list(longs.begin(), longs.end());
  const std::deque<long> deque(longs.begin(), longs.end());
  for (std::size_t chunk : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{70000}}) {
    BOOST_TEST((pool.map(square, longs, chunk) == expected), "vector<long>, chunksize " << chunk);
    BOOST_TEST((pool.map(square, ints, chunk) == expected), "vector<int>, chunksize " << chunk);
    BOOST_TEST((pool.map(square, list, chunk) == expected), "list, chunksize " << chunk);
    BOOST_TEST((pool.map(square, deque, chunk) == expected), "deque, chunksize " << chunk);
  }
  const long c_array[5] = {3, -4, 5, 0, 7};
  BOOST_TEST((pool.map(square, c_array) == std::vector<long>{9, 16, 25, 0, 49}));
  const std::array<long, 4> array{1, 2, 3, 4};
  BOOST_TEST((pool.map(square, array, 3) == std::vector<long>{1, 4, 9, 16}));
  // A range with a data() that its iteration does not start at: read by its iterators.
  struct Shifted {
    std::vector<long> v{10, 20, 30, 40};
    const long* data() const { return v.data(); }
    std::size_t size() const { return 3; }
    auto begin() const { return v.begin() + 1; }
    auto end() const { return v.end(); }
  } shifted;
  static_assert(is_contiguous_of_v<long, Shifted>);
  BOOST_TEST((pool.map(square, shifted, 2) == std::vector<long>{400, 900, 1600}));
  // One whose data() is of the argument type but whose items are not: read by its iterators.
  struct Narrow {
    std::vector<long> wide{7, 8};
    std::vector<int> v{5, 6, 7};
    const long* data() const { return wide.data(); }
    auto begin() const { return v.begin(); }
    auto end() const { return v.end(); }
  } narrow;
  BOOST_TEST((pool.map(square, narrow) == std::vector<long>{25, 36, 49}));
}

BOOST_AUTO_TEST_CASE(default_chunksize_follows_python, *boost::unit_test::timeout(60)) {
  BOOST_TEST(mp::detail::default_chunksize(100000, 2) == 12500u);
  BOOST_TEST(mp::detail::default_chunksize(100001, 2) == 12501u);
  BOOST_TEST(mp::detail::default_chunksize(3, 4) == 1u);
  BOOST_TEST(mp::detail::default_chunksize(0, 4) == 1u);
}

BOOST_AUTO_TEST_CASE(starmap_apply_and_apply_async, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  BOOST_TEST((pool.starmap(add, pairs) == std::vector<int>{3, 7, 11}));
  const std::vector<std::tuple<std::string, int>> tuples{{"ab", 2}, {"c", 3}};
  BOOST_TEST((pool.starmap(shout, tuples) == std::vector<std::string>{"abab!", "ccc!"}));
  BOOST_TEST(pool.apply(add, 20, 22) == 42);
  BOOST_TEST(pool.apply(shout, std::string("x"), 3) == "xxx!");
  auto r = pool.apply_async(square, 12L);
  BOOST_TEST(r.get() == 144);
  BOOST_TEST(r.ready());
  BOOST_TEST(r.successful());
  pool.apply(nothing);  // void works too
  auto v = pool.apply_async(nothing);
  v.get();
  BOOST_TEST(v.successful());
}

BOOST_AUTO_TEST_CASE(starmap_spreads_plain_and_encoded_items_alike, *boost::unit_test::timeout(60)) {
  // std::array items are plain (sent as their bytes, results written in place); std::pair items
  // are encoded (a vector in between): map and starmap share the worker's code for both.
  mp::Pool pool(2);
  std::vector<std::array<int, 2>> arrays;
  std::vector<std::pair<int, int>> pairs;
  for (int i = 0; i < 1000; ++i) {
    arrays.push_back({i, 2 * i});
    pairs.emplace_back(i, 2 * i);
  }
  for (std::size_t chunk : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
    const auto from_arrays = pool.starmap(add, arrays, chunk);
    BOOST_TEST((from_arrays == pool.starmap(add, pairs, chunk)), "chunksize " << chunk);
    BOOST_REQUIRE(from_arrays.size() == 1000u);
    BOOST_TEST(std::accumulate(from_arrays.begin(), from_arrays.end(), 0) == 3 * 999 * 1000 / 2);
    BOOST_TEST(from_arrays[999] == 2997);
  }
}

BOOST_AUTO_TEST_CASE(async_result_waits_times_out_and_reports, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  NamedEvent go("go");
  auto r = pool.apply_async(wait_for_event, go.name);
  BOOST_TEST(!r.ready());
  BOOST_CHECK_THROW(r.successful(), mp::Error);  // not ready yet
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!r.wait_for(50ms));
  BOOST_TEST(seconds_since(start) >= 0.049);
  go.set();
  BOOST_TEST(r.wait_for(30s));
  BOOST_TEST(r.get());
  BOOST_TEST(r.successful());
}

BOOST_AUTO_TEST_CASE(callbacks_run_in_the_parent_before_the_result_is_ready, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const pid_t me = ::getpid();
  std::atomic<long> seen{0};
  std::atomic<pid_t> where{0};
  auto r = pool.apply_async(square, 9L);
  r.on_success([&](const long& v) {
    seen = v;
    where = ::getpid();
  });
  BOOST_TEST(r.get() == 81);
  BOOST_TEST(seen.load() == 81);  // ran before get() returned (or at registration, if later)
  BOOST_TEST(where.load() == me);
  std::string error;
  auto bad = pool.map_async(fail_on_three, range(5), 1);
  bad.on_error([&](const mp::Error& e) { error = e.what(); });
  bad.wait();
  BOOST_TEST(!bad.successful());
  BOOST_TEST(error.find("three is not welcome") != std::string::npos, error);
  int late = 0;
  r.on_success([&](const long&) { ++late; });  // already done: runs at once, here
  BOOST_TEST(late == 1);
}

BOOST_AUTO_TEST_CASE(progress_is_reported_chunk_by_chunk, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  const auto out = pool.map(square, range(1000), 100,
                            [&](std::size_t done, std::size_t total) { calls.emplace_back(done, total); });
  BOOST_TEST(out.size() == 1000u);
  BOOST_REQUIRE(calls.size() == 10u);
  for (std::size_t i = 0; i < calls.size(); ++i) {
    BOOST_TEST(calls[i].first == i + 1);
    BOOST_TEST(calls[i].second == 10u);
  }
}

BOOST_AUTO_TEST_CASE(large_arguments_and_results_stream_through, *boost::unit_test::timeout(120)) {
  mp::Pool pool(2);
  std::vector<std::string> big(8, std::string(3 << 20, 'x'));  // larger than a worker's ring
  const auto sizes = pool.map([](std::string s) { return s.size() + 1; }, big, 1);
  for (std::size_t n : sizes) BOOST_TEST(n == (3u << 20) + 1);
  const auto echoed = pool.apply([](std::string s) { return s + s; }, std::string(2 << 20, 'y'));
  BOOST_TEST(echoed.size() == (4u << 20));
}

// ---- get_for (item 4) --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(get_for_returns_empty_at_the_deadline_and_the_result_after, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  NamedEvent go("go");
  auto r = pool.apply_async(wait_for_event, go.name);
  const auto start = std::chrono::steady_clock::now();
  const std::optional<bool> early = r.get_for(50ms);  // no exception for the timeout
  BOOST_TEST(!early.has_value());
  BOOST_TEST(seconds_since(start) >= 0.049);
  BOOST_TEST(!r.get_for(0ms).has_value());
  go.set();
  const auto late = r.get_for(30s);
  BOOST_REQUIRE(late.has_value());
  BOOST_TEST(*late);
  BOOST_TEST(r.get_for(0s).value());  // ready: at once
  // void: a bool
  auto v = pool.apply_async(nothing);
  BOOST_TEST(v.get_for(30s));
  // A failed call throws its error, not a timeout.
  auto bad = pool.map_async(fail_on_three, range(5), 1);
  BOOST_CHECK_THROW(bad.get_for(30s), mp::RemoteError);
  const auto squares = pool.map_async(square, range(100)).get_for(30s);
  BOOST_REQUIRE(squares.has_value());
  BOOST_TEST(squares->size() == 100u);
  // A call cut by terminate throws bad_state.
  NamedEvent never("never");
  auto cut = pool.apply_async(wait_for_event, never.name);
  BOOST_TEST(!cut.get_for(10ms).has_value());
  pool.terminate();
  try {
    (void)cut.get_for(30s);
    BOOST_FAIL("no error");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::bad_state));
  }
}

// ---- callbacks given with the call (item 5) ----------------------------------------------------

BOOST_AUTO_TEST_CASE(callbacks_given_with_the_call_run_in_the_parent, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  const pid_t me = ::getpid();
  std::atomic<long> value{0};
  std::atomic<pid_t> where{0};
  std::atomic<int> errors{0};
  auto r = pool.apply_async(
      square,
      mp::callbacks([&](const long& v) { value = v, where = ::getpid(); },
                    [&](const mp::Error&) { ++errors; }),
      9L);
  BOOST_TEST(r.get() == 81);
  BOOST_TEST(value.load() == 81);  // ran before get() returned
  BOOST_TEST(where.load() == me);
  BOOST_TEST(errors.load() == 0);

  std::string error;
  std::atomic<int> successes{0};
  auto bad = pool.map_async(fail_on_three, mp::callbacks([&](const std::vector<long>&) { ++successes; },
                                                         [&](const mp::Error& e) { error = e.what(); }),
                            range(5), 1);
  BOOST_TEST(bad.wait_for(30s));
  BOOST_TEST(error.find("three is not welcome") != std::string::npos, error);
  BOOST_TEST(successes.load() == 0);

  std::vector<int> sums;
  auto star = pool.starmap_async(add, mp::callbacks([&](const std::vector<int>& v) { sums = v; }),
                                 std::vector<std::pair<int, int>>{{1, 2}, {3, 4}});
  star.wait();
  BOOST_TEST((sums == std::vector<int>{3, 7}));

  // Only an error callback; a void task with a no-argument success callback.
  std::atomic<int> failed{0};
  auto only_error = pool.apply_async(fail_on_three, mp::callbacks(nullptr, [&](const mp::Error& e) {
                                       failed += dynamic_cast<const mp::RemoteError*>(&e) != nullptr;
                                     }),
                                     3L);
  only_error.wait();
  BOOST_TEST(failed.load() == 1);
  std::atomic<int> voids{0};
  pool.apply_async(nothing, mp::callbacks([&] { ++voids; })).wait();
  BOOST_TEST(voids.load() == 1);
  // A worker's death reaches the error callback as BrokenPool.
  std::atomic<int> broken{0};
  auto dead = pool.map_async(kill_myself_on, mp::callbacks(nullptr, [&](const mp::Error& e) {
                               broken += dynamic_cast<const mp::BrokenPool*>(&e) != nullptr;
                             }),
                             range(10), 1);
  dead.wait();
  BOOST_TEST(broken.load() == 1);
  // An empty map succeeds at once, callbacks included.
  std::atomic<int> empty{0};
  pool.map_async(square, mp::callbacks([&](const std::vector<long>& v) { empty += v.empty(); }),
                 std::vector<long>{}).wait();
  BOOST_TEST(empty.load() == 1);
}

BOOST_AUTO_TEST_CASE(callbacks_given_with_the_call_never_miss_a_fast_call, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  std::atomic<int> ok{0}, failed{0};
  std::vector<mp::AsyncResult<long>> results;
  for (long i = 0; i < 300; ++i) {
    results.push_back(pool.apply_async(fail_on_three,
                                       mp::callbacks([&](const long&) { ++ok; },
                                                     [&](const mp::Error&) { ++failed; }),
                                       i % 10));
  }
  for (auto& r : results) r.wait();
  BOOST_TEST(ok.load() == 270);  // every callback ran before its call was ready
  BOOST_TEST(failed.load() == 30);
  // Attached after the call finished: runs at once, on this thread.
  const auto me = std::this_thread::get_id();
  std::thread::id ran_on;
  int late = 0;
  results[3].on_error([&](const mp::Error&) { ++late, ran_on = std::this_thread::get_id(); });
  BOOST_TEST(late == 1);
  BOOST_TEST((ran_on == me));
  results[4].on_success([&](const long& v) { late += static_cast<int>(v); });
  BOOST_TEST(late == 5);
  // A refused call runs no callback.
  pool.close();
  BOOST_CHECK_THROW(pool.apply_async(square, mp::callbacks([&](const long&) { ++late; }), 1L), mp::Error);
  pool.join();
  BOOST_TEST(late == 5);
}

// ---- a lone call sent straight to an idle worker, collected by its waiter (issue 16) -----------

BOOST_AUTO_TEST_CASE(a_callback_added_after_a_direct_call_runs_with_no_one_waiting, *boost::unit_test::timeout(60)) {
  // The call goes straight to the idle worker and no thread waits for it: the callback added
  // afterwards must make the pool read the reply itself (else it would sit in the pipe).
  mp::Pool pool(1);
  BOOST_TEST(pool.apply(square, 2L) == 4);  // the worker is up and idle
  for (long i = 0; i < 20; ++i) {
    std::atomic<long> seen{-1};
    auto r = pool.apply_async(square, i);
    r.on_success([&seen](const long& v) { seen = v; });
    BOOST_REQUIRE(eventually([&] { return seen.load() != -1; }, 30s));
    BOOST_TEST(seen.load() == i * i);
  }
}

BOOST_AUTO_TEST_CASE(successful_alone_sees_a_direct_call_finish, *boost::unit_test::timeout(60)) {
  // As ready(): successful() reads the reply of a call its caller sent straight to a worker, so a
  // thread that only asks successful() (which throws until the result is ready) sees it finish.
  mp::Pool pool(2);
  BOOST_TEST(pool.apply(square, 2L) == 4);
  const auto finished = [](const auto& r) {
    try {
      return r.successful();
    } catch (const mp::Error&) {  // not ready yet
      return false;
    }
  };
  for (int round = 0; round < 20; ++round) {
    auto r = pool.apply_async(square, 3L + round);
    BOOST_REQUIRE(eventually([&] { return finished(r); }, 30s));
    BOOST_TEST(r.get() == (3L + round) * (3L + round));
    auto m = pool.map_async(square, std::vector<long>{1, 2, 3});
    BOOST_REQUIRE(eventually([&] { return finished(m); }, 30s));
    BOOST_TEST((m.get() == std::vector<long>{1, 4, 9}));
  }
}

BOOST_AUTO_TEST_CASE(ready_alone_sees_a_direct_call_finish, *boost::unit_test::timeout(60)) {
  mp::Pool pool(2);
  BOOST_TEST(pool.apply(square, 2L) == 4);
  for (long i = 0; i < 20; ++i) {
    auto r = pool.apply_async(square, i);
    BOOST_REQUIRE(eventually([&] { return r.ready(); }, 30s));  // no get(), no wait()
    BOOST_TEST(r.successful());
    BOOST_TEST(r.get() == i * i);
  }
  auto failing = pool.apply_async(wait_for_event, std::string("no-such-event"));  // throws at once
  BOOST_REQUIRE(eventually([&] { return failing.ready(); }, 30s));
  BOOST_TEST(!failing.successful());
}

BOOST_AUTO_TEST_CASE(direct_calls_from_many_threads_each_get_their_own_result, *boost::unit_test::timeout(120)) {
  // Callers race each other (and the manager, which dispatches the map meanwhile) for the idle
  // workers; every call must come back to its own caller, once.
  mp::Pool pool(2);
  constexpr long kThreads = 4;
  constexpr long kCalls = 1500;
  std::atomic<long> sum{0};
  std::atomic<long> wrong{0};
  std::vector<std::thread> threads;
  for (long t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (long i = 0; i < kCalls; ++i) {
        const long x = t * kCalls + i;
        long v = 0;
        if (i % 3 == 0) {
          v = pool.apply_async(square, x).get();
        } else if (i % 3 == 1) {
          auto r = pool.apply_async(square, x);
          while (!r.ready()) {
          }
          v = r.get();
        } else {
          auto r = pool.apply_async(square, x);
          while (!r.get_for(std::chrono::microseconds(50))) {
          }
          v = *r.get_for(0s);
        }
        if (v != x * x) ++wrong;
        sum += v;
      }
    });
  }
  const auto squares = pool.map(square, range(20000), 7);  // queued work beside them
  for (auto& t : threads) t.join();
  BOOST_TEST(wrong.load() == 0);
  BOOST_TEST(sum.load() == sum_of_squares(kThreads * kCalls));
  BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(20000));
}

BOOST_AUTO_TEST_CASE(many_threads_dealing_out_large_maps_at_once_each_get_their_own,
                     *boost::unit_test::timeout(180)) {
  // Eight threads on a Pool(4) start each round together, half with maps of thousands of tasks,
  // half with maps of two: whoever finds a worker idle and nothing queued deals its map out itself
  // (so several callers hold backlogs at once, each topping up the workers that answer it and the
  // ones that free up), the others queue theirs for the manager, which takes backlogs over when
  // they are handed to it. Each map must come back whole, in its order, to its own caller;
  // blocking maps beside async ones and starmaps, chunks of 1, 7 and the default.
  mp::Pool pool(4);
  constexpr int kThreads = 8;
  constexpr int kRounds = 30;
  std::atomic<long> wrong{0};
  std::atomic<long> maps{0};
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0, generation = 0;
  const auto all_start_together = [&] {
    std::unique_lock<std::mutex> lock(m);
    const int mine = generation;
    if (++arrived == kThreads) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != mine; });
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        const long n = (round + t) % 2 == 0 ? 1000 + 100 * t + round : 2;
        const std::size_t chunk = t % 3 == 0 ? 1 : t % 3 == 1 ? 7 : 0;  // 0: the default
        all_start_together();
        std::vector<long> got;
        if (t % 4 == 3) {
          got = pool.map_async(square, range(n), chunk).get();
        } else if (t % 4 == 2) {
          std::vector<std::tuple<long>> items;
          for (long i = 0; i < n; ++i) items.emplace_back(i);
          got = pool.starmap(square, items, chunk);
        } else {
          got = pool.map(square, range(n), chunk);
        }
        bool ok = got.size() == static_cast<std::size_t>(n);
        for (long i = 0; ok && i < n; ++i) ok = got[static_cast<std::size_t>(i)] == i * i;
        if (!ok) ++wrong;
        ++maps;
      }
    });
  }
  for (auto& th : threads) th.join();
  BOOST_TEST(wrong.load() == 0);
  BOOST_TEST(maps.load() == kThreads * kRounds);
  BOOST_TEST((pool.map(square, std::vector<long>{1, 2, 3}) == std::vector<long>{1, 4, 9}));
}

BOOST_AUTO_TEST_CASE(small_maps_sent_straight_to_the_workers_keep_their_order, *boost::unit_test::timeout(120)) {
  // A map of at most two tasks per idle worker, with nothing queued, skips the manager: its
  // caller deals the tasks out and reads the replies (pool_core.hpp). Sizes on both sides of
  // that bound, plain and encoded values, while other threads race it for the idle workers with
  // apply_async and small maps of their own.
  mp::Pool pool(2);
  std::atomic<long> wrong{0};
  std::atomic<long> done{0};
  auto small_maps = [&](long seed, int rounds) {
    for (int round = 0; round < rounds; ++round) {
      const long n = 1 + (seed + round) % 9;
      std::vector<long> in(static_cast<std::size_t>(n));
      for (long i = 0; i < n; ++i) in[static_cast<std::size_t>(i)] = seed * 1000 + round * 10 + i;
      const std::vector<long> out = pool.map(square, in);
      if (out.size() != in.size()) ++wrong;
      for (std::size_t i = 0; i < in.size() && i < out.size(); ++i) {
        if (out[i] != in[i] * in[i]) ++wrong;
      }
      const auto words = pool.starmap(shout, std::vector<std::tuple<std::string, int>>{
                                                 {"a", static_cast<int>(round % 3)}, {"bc", 1}});
      if (words != std::vector<std::string>{std::string(static_cast<std::size_t>(round % 3), 'a') + "!",
                                            "bc!"}) {
        ++wrong;
      }
      ++done;
    }
  };
  std::vector<std::thread> threads;
  for (long t = 1; t <= 2; ++t) threads.emplace_back(small_maps, t, 300);
  threads.emplace_back([&] {
    for (long i = 0; i < 2000; ++i) {
      if (pool.apply_async(square, i).get() != i * i) ++wrong;
    }
  });
  small_maps(0, 300);
  for (auto& t : threads) t.join();
  BOOST_TEST(wrong.load() == 0);
  BOOST_TEST(done.load() == 900);
  // Two tasks on two idle workers run on both.
  BOOST_TEST(eventually([&] {
    const auto pids = pool.map(my_pid, std::vector<int>{0, 0});
    return pids.size() == 2 && pids[0] != pids[1];
  }, 30s));
}

BOOST_AUTO_TEST_CASE(a_map_its_caller_deals_out_feeds_the_workers_that_free_up, *boost::unit_test::timeout(120)) {
  // The caller of a map deals its tasks out itself while it waits (two per worker at a time, the
  // rest as replies come back), as the manager would: one worker held by a long task must not
  // hold back the others' share. Item 0 blocks until the last item runs.
  mp::Pool pool(2);
  BOOST_TEST(pool.apply(square, 2L) == 4);
  for (long n : {5L, 41L}) {
    NamedEvent last_ran("last");
    std::vector<std::tuple<long, long, std::string>> items;
    for (long i = 0; i < n; ++i) items.emplace_back(i, n - 1, last_ran.name);
    const auto start = std::chrono::steady_clock::now();
    const std::vector<bool> ok = pool.starmap(first_waits_for_last, items, 1);
    BOOST_TEST((std::chrono::steady_clock::now() - start < 30s));
    BOOST_TEST(ok.size() == static_cast<std::size_t>(n));
    BOOST_TEST(std::count(ok.begin(), ok.end(), true) == n);
  }
  // map_async returns at once: what its caller could not send at once is the manager's, and runs
  // with nobody asking for the result.
  {
    const std::string name = unique_name("total");
    mp::SharedValue<long> total(mp::create_only, name, 0);
    std::vector<std::tuple<long, std::string>> items;
    for (long i = 1; i <= 200; ++i) items.emplace_back(i, name);
    auto r = pool.starmap_async(add_into, items, 1);
    BOOST_TEST(eventually([&] { return total.load() == 200 * 201 / 2; }, 30s));
    BOOST_TEST(r.get().size() == 200u);
  }
  // A waiter that gives up hands the rest to the manager, which finishes the call.
  for (int round = 0; round < 20; ++round) {
    auto r = pool.map_async(square, range(300), 1);
    (void)r.get_for(std::chrono::microseconds(20 * round));
    if (round % 2 == 0) BOOST_REQUIRE(eventually([&] { return r.ready(); }, 30s));
    const auto squares = r.get();
    BOOST_TEST(std::accumulate(squares.begin(), squares.end(), 0L) == sum_of_squares(300));
  }
}

BOOST_AUTO_TEST_CASE(map_results_placed_in_place_are_whole_and_can_be_read_twice, *boost::unit_test::timeout(120)) {
  // Plain results go straight into the result vector at their chunk's place.
  mp::Pool pool(2);
  for (long n : {0L, 1L, 7L, 12501L, 100000L}) {
    for (std::size_t chunk : {std::size_t{0}, std::size_t{1}, std::size_t{13}, std::size_t{100000}}) {
      if (n > 20000 && chunk == 1) continue;  // slow, and says nothing more
      auto r = pool.map_async(square, range(n), chunk);
      const auto a = r.get();
      const auto b = r.get();  // a copy each time: map_async's result is shared
      BOOST_TEST(a.size() == static_cast<std::size_t>(n));
      BOOST_TEST((a == b));
      BOOST_TEST(std::accumulate(a.begin(), a.end(), 0L) == sum_of_squares(n), n << "/" << chunk);
      const auto c = pool.map(square, range(n), chunk);  // moved out
      BOOST_TEST((c == a));
    }
  }
  std::vector<std::array<int, 2>> pairs{{1, 2}, {3, 4}};
  BOOST_TEST((pool.starmap(add, pairs) == std::vector<int>{3, 7}));
}

BOOST_AUTO_TEST_CASE(tasks_larger_and_smaller_than_a_workers_buffer_alternate, *boost::unit_test::timeout(120)) {
  // A worker reads tasks into one buffer that grows for a large one, and replies from another.
  mp::Pool pool(1);
  for (std::size_t bytes : {std::size_t{10}, std::size_t{200} << 10, std::size_t{5},
                            std::size_t{3} << 20, std::size_t{64} << 10, std::size_t{1}}) {
    const std::string s(bytes, 'q');
    BOOST_TEST(pool.apply(shout, s, 2) == s + s + "!");
    BOOST_TEST(pool.apply(square, 3L) == 9);
  }
  const auto sizes = pool.map([](std::string s) { return s.size(); },
                              std::vector<std::string>{std::string(300 << 10, 'a'), "b"}, 1);
  BOOST_TEST((sizes == std::vector<std::size_t>{300u << 10, 1u}));
}

BOOST_AUTO_TEST_SUITE_END()
