// Queue, JoinableQueue and SimpleQueue across processes: bounds, timeouts, close and drain,
// messages of many sizes, MPMC with exact sums, and producers and consumers killed at random.
#include "support/support.hpp"

#include <csignal>
#include <map>
#include <random>
#include <set>
#include <pthread.h>
#include <thread>

using namespace mptest;

namespace {

template <class F>
void expect_errc(F&& f, mp::errc code) {
  try {
    f();
    BOOST_ERROR("no error thrown");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::make_error_code(code)), e.what());
  }
}

// A self-checking message: producer, sequence number, a payload whose length and bytes depend on
// both, and a checksum.
std::string make_message(std::uint32_t producer, std::uint32_t seq) {
  std::string m(8 + (seq * 37 + producer) % 300, '\0');
  std::memcpy(&m[0], &producer, 4);
  std::memcpy(&m[4], &seq, 4);
  for (std::size_t i = 8; i < m.size(); ++i) m[i] = static_cast<char>((producer * 131 + seq * 7 + i) & 0xff);
  std::uint32_t sum = 0;
  for (char c : m) sum = sum * 31 + static_cast<unsigned char>(c);
  m.append(reinterpret_cast<const char*>(&sum), 4);
  return m;
}

bool parse_message(const std::string& m, std::uint32_t& producer, std::uint32_t& seq) {
  if (m.size() < 12) return false;
  std::uint32_t sum = 0, stored;
  for (std::size_t i = 0; i + 4 < m.size(); ++i) sum = sum * 31 + static_cast<unsigned char>(m[i]);
  std::memcpy(&stored, &m[m.size() - 4], 4);
  std::memcpy(&producer, &m[0], 4);
  std::memcpy(&seq, &m[4], 4);
  return sum == stored && m == make_message(producer, seq);
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(queue, Clean)

BOOST_AUTO_TEST_CASE(fifo_in_one_process, *boost::unit_test::timeout(60)) {
  mp::Queue<int> q(8);
  BOOST_TEST(q.empty());
  BOOST_TEST(q.capacity() == 8u);
  for (int i = 0; i < 5; ++i) q.put(i);
  BOOST_TEST(q.size() == 5u);
  for (int i = 0; i < 5; ++i) BOOST_TEST(q.get() == i);
  mp::Queue<std::string> s(4);
  for (const char* w : {"", "a", "bb", "ccc"}) s.put(w);
  for (const char* w : {"", "a", "bb", "ccc"}) BOOST_TEST(s.get() == w);
  mp::Queue<std::vector<double>> v(4);
  v.put({1.5, 2.5});
  BOOST_TEST((v.get() == std::vector<double>{1.5, 2.5}));
}

BOOST_AUTO_TEST_CASE(full_queue_refuses_and_times_out, *boost::unit_test::timeout(60)) {
  mp::Queue<long> q(4);
  for (long i = 0; i < 4; ++i) BOOST_TEST(q.try_put(i));
  BOOST_TEST(q.full());
  BOOST_TEST(!q.try_put(99));
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!q.put_for(99, 50ms));
  BOOST_TEST(seconds_since(start) >= 0.049);
  BOOST_TEST(!q.put_until(99, std::chrono::system_clock::now() + 10ms));
  BOOST_TEST(q.get() == 0);
  BOOST_TEST(q.try_put(4));
  for (long i = 1; i <= 4; ++i) BOOST_TEST(q.get() == i);
}

BOOST_AUTO_TEST_CASE(empty_queue_times_out, *boost::unit_test::timeout(60)) {
  mp::Queue<std::string> q(4);
  BOOST_TEST(!q.try_get().has_value());
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!q.get_for(50ms).has_value());
  const double waited = seconds_since(start);
  BOOST_TEST(waited >= 0.049);
  BOOST_TEST(waited < 2.0);
  BOOST_TEST(!q.get_until(std::chrono::system_clock::now() + 10ms).has_value());
}

BOOST_AUTO_TEST_CASE(close_refuses_puts_and_drains_then_throws, *boost::unit_test::timeout(60)) {
  mp::Queue<int> q(8);
  q.put(1);
  q.put(2);
  q.close();
  BOOST_TEST(q.closed());
  BOOST_CHECK_THROW(q.put(3), mp::Closed);
  BOOST_CHECK_THROW(q.try_put(3), mp::Closed);
  BOOST_TEST(q.get() == 1);
  BOOST_TEST(*q.try_get() == 2);
  BOOST_CHECK_THROW(q.get(), mp::Closed);
  BOOST_CHECK_THROW(q.try_get(), mp::Closed);
  BOOST_CHECK_THROW(q.get_for(10ms), mp::Closed);
  q.close();  // idempotent
}

BOOST_AUTO_TEST_CASE(consumer_loop_ends_cleanly_on_close, *boost::unit_test::timeout(60)) {
  mp::Queue<long> q(16);
  mp::SharedValue<long> sum(0);
  std::vector<mp::Process> consumers;
  for (int c = 0; c < 3; ++c) {
    consumers.emplace_back([q, sum] {
      try {
        for (;;) {
          const long v = q.get();
          sum.update([v](long& s) { s += v; });
        }
      } catch (const mp::Closed&) {
        return 0;
      }
    });
    consumers.back().start();
  }
  for (long i = 1; i <= 10000; ++i) q.put(i);
  q.close();
  for (auto& c : consumers) {
    BOOST_REQUIRE(c.join_for(30s));
    BOOST_TEST(*c.exitcode() == 0);
  }
  BOOST_TEST(sum.load() == 10000L * 10001 / 2);
}

BOOST_AUTO_TEST_CASE(message_that_can_never_fit_is_rejected_at_put, *boost::unit_test::timeout(60)) {
  mp::Queue<std::string> q(4, 4096);
  BOOST_TEST(q.max_message_bytes() < 4096u);
  q.put(std::string(q.max_message_bytes(), 'x'));  // the largest that fits
  try {
    q.put(std::string(5000, 'x'));
    BOOST_FAIL("accepted a message larger than the ring");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::too_large));
    BOOST_TEST(std::string(e.what()).find("5000") != std::string::npos, e.what());
  }
  BOOST_TEST(q.get().size() == q.max_message_bytes());
  BOOST_CHECK_THROW(mp::Queue<int>(0), mp::Error);
  BOOST_CHECK_THROW(mp::Queue<int>(std::size_t{1} << 30), mp::Error);
}

BOOST_AUTO_TEST_CASE(spsc_between_processes_keeps_order_and_sum, *boost::unit_test::timeout(60)) {
  constexpr long kN = 200000;
  mp::Queue<long> q(64);
  mp::Process producer([q] {
    for (long i = 0; i < kN; ++i) q.put(i);
  });
  producer.start();
  long sum = 0, out_of_order = 0;
  for (long i = 0; i < kN; ++i) {
    const long v = q.get();
    if (v != i) ++out_of_order;
    sum += v;
  }
  BOOST_REQUIRE(producer.join_for(30s));
  BOOST_TEST(out_of_order == 0);
  BOOST_TEST(sum == kN * (kN - 1) / 2);
  BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(mpmc_gives_exact_counts_and_per_producer_order, *boost::unit_test::timeout(120)) {
  constexpr int kProducers = 3, kConsumers = 3;
  constexpr std::uint32_t kPerProducer = 20000;
  mp::Queue<std::pair<std::uint32_t, std::uint32_t>> q(32);
  mp::RawArray<std::uint32_t> seen(kProducers * kPerProducer);
  mp::SharedValue<long> disorder(0);
  std::vector<mp::Process> ps;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    ps.emplace_back([q, p] {
      for (std::uint32_t s = 0; s < kPerProducer; ++s) q.put({p, s});
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    ps.emplace_back([q, seen, disorder] {
      std::uint32_t last[kProducers];
      std::fill(std::begin(last), std::end(last), UINT32_MAX);
      try {
        for (;;) {
          const auto [p, s] = q.get();
          __atomic_fetch_add(&seen[p * kPerProducer + s], 1u, __ATOMIC_RELAXED);
          if (last[p] != UINT32_MAX && s <= last[p]) disorder.update([](long& d) { ++d; });
          last[p] = s;
        }
      } catch (const mp::Closed&) {
      }
    });
  }
  for (auto& p : ps) p.start();
  for (int p = 0; p < kProducers; ++p) BOOST_REQUIRE(ps[p].join_for(60s));
  q.close();
  for (auto& p : ps) {
    BOOST_REQUIRE(p.join_for(60s));
    BOOST_TEST(*p.exitcode() == 0);
  }
  long once = 0, other = 0;
  for (std::size_t i = 0; i < seen.size(); ++i) (seen[i] == 1 ? once : other) += 1;
  BOOST_TEST(once == long{kProducers} * kPerProducer);
  BOOST_TEST(other == 0);
  BOOST_TEST(disorder.load() == 0);  // each consumer saw every producer's messages in order
}

BOOST_AUTO_TEST_CASE(contended_ends_pass_leases_without_sharing_them, *boost::unit_test::timeout(120)) {
  // Two producers and two consumers in tight loops: each end's lease moves between threads
  // constantly (granted after a streak, revoked by the other). A thread preempted right after
  // checking that it held a lease must not disturb the next holder (it once cleared the new
  // holder's "active" flag, letting two consumers take the same records).
  constexpr long kN = 400000;
  mp::Queue<long> q(1024);
  mp::RawArray<unsigned char> seen(2 * kN);
  std::vector<mp::Process> ps;
  for (long p = 0; p < 2; ++p) {
    ps.emplace_back([q, p] {
      for (long i = 0; i < kN; ++i) q.put(p * kN + i);
    });
  }
  for (int c = 0; c < 2; ++c) {
    ps.emplace_back([q, seen] {
      for (long i = 0; i < kN; ++i) {
        const auto v = q.get_for(30s);
        if (!v || *v < 0 || *v >= 2 * kN) return 1;
        __atomic_fetch_add(&seen[static_cast<std::size_t>(*v)], 1, __ATOMIC_RELAXED);
      }
      return 0;
    });
  }
  for (auto& p : ps) p.start();
  for (auto& p : ps) {
    BOOST_REQUIRE(p.join_for(90s));
    BOOST_TEST(*p.exitcode() == 0);
  }
  long once = 0;
  for (std::size_t i = 0; i < seen.size(); ++i) once += seen[i] == 1;
  BOOST_TEST(once == 2 * kN);
  BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(threads_and_processes_share_one_queue, *boost::unit_test::timeout(120)) {
  mp::Queue<long> q(16);
  mp::SharedValue<long> sum(0);
  auto consume = [q, sum] {
    try {
      for (;;) {
        const long v = q.get();
        sum.update([v](long& s) { s += v; });
      }
    } catch (const mp::Closed&) {
    }
  };
  mp::Process child([&] {
    std::thread t1(consume), t2(consume);
    t1.join();
    t2.join();
  });
  child.start();
  std::thread producers[2];
  for (int t = 0; t < 2; ++t) {
    producers[t] = std::thread([q, t] {
      for (long i = 1; i <= 20000; ++i) q.put(i * 2 + t);
    });
  }
  for (auto& t : producers) t.join();
  q.close();
  BOOST_REQUIRE(child.join_for(60s));
  BOOST_TEST(*child.exitcode() == 0);
  long expected = 0;
  for (long i = 1; i <= 20000; ++i) expected += (i * 2) + (i * 2 + 1);
  BOOST_TEST(sum.load() == expected);
}

BOOST_AUTO_TEST_CASE(strings_and_vectors_of_many_sizes, *boost::unit_test::timeout(120)) {
  mp::Queue<std::string> q(64, 1 << 16);
  mp::Queue<std::vector<int>> v(64, 1 << 16);
  mp::Process producer([q, v] {
    for (std::uint32_t i = 0; i < 5000; ++i) {
      q.put(make_message(1, i));
      v.put(std::vector<int>(i % 700, static_cast<int>(i)));
    }
  });
  producer.start();
  int bad = 0;
  for (std::uint32_t i = 0; i < 5000; ++i) {
    std::uint32_t p, s;
    if (!parse_message(q.get(), p, s) || p != 1 || s != i) ++bad;
    const auto vec = v.get();
    if (vec.size() != i % 700 || (!vec.empty() && vec.back() != static_cast<int>(i))) ++bad;
  }
  BOOST_REQUIRE(producer.join_for(30s));
  BOOST_TEST(bad == 0);
}

BOOST_AUTO_TEST_CASE(blocked_producer_wakes_when_a_consumer_takes, *boost::unit_test::timeout(60)) {
  mp::Queue<int> q(1);
  q.put(1);
  mp::Process producer([q] {
    q.put(2);  // blocks: the queue is full
    return 0;
  });
  producer.start();
  BOOST_REQUIRE(wait_until_in_futex(producer.pid()));
  BOOST_TEST(q.get() == 1);
  BOOST_REQUIRE(producer.join_for(30s));
  BOOST_TEST(q.get() == 2);
}

BOOST_AUTO_TEST_CASE(blocked_consumer_uses_no_cpu, *boost::unit_test::timeout(60)) {
  mp::Queue<long> q(4);
  CHECK_CHILD([q] {
    const double cpu0 = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    if (q.get_for(500ms)) return 2;
    const double wall = seconds_since(start), cpu = cpu_seconds() - cpu0;
    std::fprintf(stderr, "blocked get_for(500ms): %.3f s wall, %.4f s CPU\n", wall, cpu);
    return cpu < 0.1 * wall ? 0 : 1;
  });
}

MPTEST_SCENARIO(drain_named_queue) {
  mp::Queue<std::string> q(mp::open_only, args.at(0));
  mp::SharedValue<long> total(mp::open_only, args.at(1));
  try {
    for (;;) {
      const std::string s = q.get();
      total.update([&](long& t) { t += static_cast<long>(s.size()); });
    }
  } catch (const mp::Closed&) {
  }
  return 0;
}

BOOST_AUTO_TEST_CASE(named_queue_between_unrelated_processes, *boost::unit_test::timeout(60)) {
  const std::string qn = unique_name("jobs"), tn = unique_name("total");
  mp::Queue<std::string> q(mp::create_only, qn, 32);
  mp::SharedValue<long> total(mp::create_only, tn, 0);
  Spawned a("drain_named_queue", {qn, tn}), b("drain_named_queue", {qn, tn});
  long expected = 0;
  for (int i = 0; i < 3000; ++i) {
    q.put(std::string(i % 100, 'x'));
    expected += i % 100;
  }
  q.close();
  BOOST_TEST(a.wait() == 0);
  BOOST_TEST(b.wait() == 0);
  BOOST_TEST(total.load() == expected);
  expect_errc([&] { mp::Queue<long>(mp::open_only, qn); }, mp::errc::type_mismatch);
  expect_errc([&] { mp::JoinableQueue<std::string>(mp::open_only, qn); }, mp::errc::wrong_kind);
  expect_errc([&] { mp::Queue<std::string>(mp::open_or_create, qn, 64); }, mp::errc::type_mismatch);
  BOOST_TEST(mp::Queue<std::string>(mp::open_or_create, qn, 32).capacity() == 32u);
}

BOOST_AUTO_TEST_CASE(joinable_queue_join_waits_for_every_task_done, *boost::unit_test::timeout(60)) {
  mp::JoinableQueue<int> q(64);
  mp::SharedValue<int> handled(0);
  std::vector<mp::Process> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([q, handled] {
      try {
        for (;;) {
          q.get();
          handled.update([](int& h) { ++h; });
          q.task_done();
        }
      } catch (const mp::Closed&) {
      }
    });
    workers.back().start();
  }
  for (int i = 0; i < 500; ++i) q.put(i);
  q.join();
  BOOST_TEST(handled.load() == 500);  // join returned only after every task_done
  BOOST_TEST(q.join_for(0ms));
  q.close();
  for (auto& w : workers) BOOST_REQUIRE(w.join_for(30s));
  expect_errc([&] { q.task_done(); }, mp::errc::bad_state);  // more task_done than puts
}

BOOST_AUTO_TEST_CASE(joinable_queue_join_for_times_out_while_tasks_are_open, *boost::unit_test::timeout(60)) {
  mp::JoinableQueue<int> q(4);
  q.put(1);
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!q.join_for(50ms));
  BOOST_TEST(seconds_since(start) >= 0.049);
  q.get();
  q.task_done();
  BOOST_TEST(q.join_for(1s));
}

BOOST_AUTO_TEST_CASE(simple_queue_between_processes, *boost::unit_test::timeout(60)) {
  mp::SimpleQueue<std::string> q;
  BOOST_TEST(q.empty());
  CHECK_CHILD([q] {
    q.put("from the child");
    return 0;
  });
  BOOST_TEST(q.get() == "from the child");
  q.close();
  BOOST_CHECK_THROW(q.get(), mp::Closed);
}

BOOST_AUTO_TEST_CASE(consumer_killed_while_asleep_is_taken_off_the_sleeper_count, *boost::unit_test::timeout(60)) {
  // A dead sleeper must not leave every later put paying for a wake-up system call.
  mp::Queue<long> q(64);
  mp::Process sleeper([q] { q.get(); });
  sleeper.start();
  BOOST_REQUIRE(wait_until_in_futex(sleeper.pid()));
  sleeper.kill();
  sleeper.join();
  const auto& data = q.channel().state()->data;
  BOOST_TEST(data.waiters.load() == 1u);  // still counted: nobody can know yet
  for (long i = 0; i < 1000; ++i) {
    q.put(i);
    BOOST_REQUIRE(q.get() == i);
  }
  BOOST_TEST(data.waiters.load() == 0u);  // healed by the wakers that found nobody
}

mp::Queue<std::string>* g_zombie_queue = nullptr;

MPTEST_SCENARIO(put_from_a_thread_after_main_exits) {
  // main() of this process ends its own thread; the process lives on in the worker.
  static mp::Queue<std::string> q(mp::open_only, args.at(0));
  g_zombie_queue = &q;
  pthread_t t;
  ::pthread_create(&t, nullptr, [](void*) -> void* {
    for (std::uint32_t s = 0; s < 5000; ++s) g_zombie_queue->put(make_message(0, s));
    ::_exit(0);
  }, nullptr);
  ::pthread_exit(nullptr);
}

BOOST_AUTO_TEST_CASE(producer_whose_main_thread_exited_is_alive, *boost::unit_test::timeout(120)) {
  // A process whose main thread called pthread_exit while another thread keeps putting must not
  // be taken for dead by another producer (which would then write over its messages).
  constexpr std::uint32_t kN = 5000;
  const std::string name = unique_name("zombie");
  mp::Queue<std::string> q(mp::create_only, name, 64, 1 << 20);
  Spawned zombie_leader("put_from_a_thread_after_main_exits", {name});
  mp::Process other([q] {
    for (std::uint32_t s = 0; s < kN; ++s) q.put(make_message(1, s));
  });
  other.start();
  std::uint32_t next[2] = {0, 0};
  long bad = 0;
  for (std::uint32_t i = 0; i < 2 * kN; ++i) {
    const auto m = q.get_for(30s);
    BOOST_REQUIRE(m.has_value());
    std::uint32_t p, s;
    if (!parse_message(*m, p, s) || p > 1 || s != next[p]) {
      ++bad;
      continue;
    }
    ++next[p];
  }
  BOOST_TEST(bad == 0);
  BOOST_TEST(zombie_leader.wait() == 0);
  BOOST_REQUIRE(other.join_for(30s));
}

BOOST_AUTO_TEST_CASE(producers_and_consumers_killed_at_random_lose_only_their_message, *boost::unit_test::timeout(240)) {
  // Producers put self-checking messages; consumers count each one they get in `delivered`.
  // Processes are SIGKILLed at random moments — inside put and get included — and replaced.
  constexpr int kSlots = 48;                // producer processes over the whole test
  constexpr std::uint32_t kMaxSeq = 20000;  // messages per producer at most
  constexpr int kRounds = 40;
  mp::Queue<std::string> q(8, 4096);        // small: producers often block on a full queue
  mp::RawArray<std::uint32_t> delivered(static_cast<std::size_t>(kSlots) * kMaxSeq);
  mp::RawArray<std::int64_t> completed(kSlots);  // last seq whose put() returned, per slot
  mp::RawValue<int> corrupt(0);
  for (auto& c : completed) c = -1;

  auto producer = [=](int slot) {
    for (std::uint32_t s = 0; s < kMaxSeq; ++s) {
      q.put(make_message(static_cast<std::uint32_t>(slot), s));
      __atomic_store_n(&completed[slot], static_cast<std::int64_t>(s), __ATOMIC_RELEASE);
    }
  };
  auto consumer = [=] {
    for (;;) {
      const std::string m = q.get();
      std::uint32_t p, s;
      if (!parse_message(m, p, s) || p >= static_cast<std::uint32_t>(kSlots) || s >= kMaxSeq) {
        __atomic_fetch_add(&corrupt.get(), 1, __ATOMIC_RELAXED);
        continue;
      }
      __atomic_fetch_add(&delivered[p * kMaxSeq + s], 1u, __ATOMIC_RELAXED);
    }
  };

  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  std::vector<mp::Process> producers, consumers;
  int next_slot = 0, consumer_kills = 0;
  auto spawn_producer = [&] {
    producers.emplace_back(producer, next_slot++);
    producers.back().start();
  };
  auto spawn_consumer = [&] {
    consumers.emplace_back(consumer);
    consumers.back().start();
  };
  for (int i = 0; i < 3; ++i) spawn_producer();
  for (int i = 0; i < 3; ++i) spawn_consumer();
  for (int round = 0; round < kRounds && next_slot < kSlots - 3; ++round) {
    // A random moment (not a synchronisation point: any moment is a valid one to die at).
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    const bool kill_consumer = rng() % 2 == 0;
    auto& pool = kill_consumer ? consumers : producers;
    const std::size_t victim = rng() % pool.size();
    pool[victim].kill();
    pool[victim].join();
    pool.erase(pool.begin() + static_cast<long>(victim));
    if (kill_consumer) {
      ++consumer_kills;
      spawn_consumer();
    } else {
      spawn_producer();
    }
  }
  // End the chaos: every process dies by SIGKILL, wherever it is.
  for (auto* pool : {&producers, &consumers}) {
    for (auto& p : *pool) p.kill();
    for (auto& p : *pool) p.join();
    if (pool == &consumers) consumer_kills += static_cast<int>(pool->size());
    pool->clear();
  }
  // Whatever is left in the queue is delivered by a fresh consumer, exactly once.
  while (auto m = q.try_get()) {
    std::uint32_t p, s;
    if (!parse_message(*m, p, s) || p >= static_cast<std::uint32_t>(kSlots) || s >= kMaxSeq) {
      corrupt.store(corrupt.load() + 1);
      continue;
    }
    ++delivered[p * kMaxSeq + s];
  }

  long lost = 0, duplicated = 0, beyond = 0, checked = 0;
  for (int slot = 0; slot < next_slot; ++slot) {
    const std::int64_t done = completed[slot];
    for (std::uint32_t s = 0; s < kMaxSeq; ++s) {
      const std::uint32_t d = delivered[slot * kMaxSeq + s];
      if (d > 1) ++duplicated;
      if (static_cast<std::int64_t>(s) <= done) {
        ++checked;
        if (d == 0) ++lost;
      } else if (d != 0 && static_cast<std::int64_t>(s) != done + 1) {
        ++beyond;  // delivered although its put never started
      }
    }
  }
  BOOST_TEST_MESSAGE(checked << " messages put, " << lost << " lost with " << consumer_kills
                             << " consumer kills, " << next_slot << " producers");
  BOOST_TEST(corrupt.load() == 0);
  BOOST_TEST(duplicated == 0);
  BOOST_TEST(beyond == 0);
  BOOST_TEST(lost <= consumer_kills);  // only a message in flight in a killed consumer
  BOOST_TEST(checked > 1000);

  // The queue is fully usable afterwards: every new message arrives exactly once.
  mp::Process fresh([q] {
    for (std::uint32_t s = 0; s < 5000; ++s) q.put(make_message(999, s));
  });
  fresh.start();
  std::vector<int> got(5000, 0);
  for (int i = 0; i < 5000; ++i) {
    const auto m = q.get_for(30s);
    BOOST_REQUIRE(m.has_value());
    std::uint32_t p, s;
    BOOST_REQUIRE(parse_message(*m, p, s));
    BOOST_REQUIRE(p == 999u);
    ++got[s];
  }
  BOOST_REQUIRE(fresh.join_for(30s));
  BOOST_TEST(std::count(got.begin(), got.end(), 1) == 5000);
  BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_SUITE_END()
