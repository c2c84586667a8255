// Pipe and Connection across processes: both directions, simplex errors, messages of any size,
// EOF when the peer closes or dies, buffers that are too small, and senders killed mid-message.
#include "support/support.hpp"

#include <atomic>
#include <csignal>
#include <cstring>
#include <numeric>
#include <optional>
#include <random>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>

using namespace mptest;

namespace {

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 2654435761u + seed) >> 13);
  return s;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(pipes, Clean)

BOOST_AUTO_TEST_CASE(duplex_pipe_carries_typed_messages_both_ways, *boost::unit_test::timeout(60)) {
  auto a_b = mp::Pipe();  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  BOOST_TEST(a.can_send());
  BOOST_TEST(a.can_recv());
  mp::Process echo([b] {
    try {
      for (;;) {
        const auto [n, s] = b.recv<std::pair<int, std::string>>();
        b.send(std::make_pair(n + 1, s + "!"));
      }
    } catch (const mp::EOFError&) {
      return 0;
    }
  });
  echo.start();
  b.close();  // the child holds its end now; we do not
  for (int i = 0; i < 1000; ++i) {
    a.send(std::make_pair(i, std::to_string(i)));
    const auto [n, s] = a.recv<std::pair<int, std::string>>();
    BOOST_REQUIRE(n == i + 1);
    BOOST_REQUIRE(s == std::to_string(i) + "!");
  }
  a.close();  // the child sees EOF and exits
  BOOST_REQUIRE(echo.join_for(10s));
  BOOST_TEST(*echo.exitcode() == 0);
}

BOOST_AUTO_TEST_CASE(simplex_pipe_refuses_the_wrong_direction, *boost::unit_test::timeout(60)) {
  auto reader_writer = mp::Pipe(false);  // not a structured binding: lambdas capture the ends
  mp::Connection reader = std::move(reader_writer.first), writer = std::move(reader_writer.second);
  BOOST_TEST(reader.can_recv());
  BOOST_TEST(!reader.can_send());
  BOOST_TEST(writer.can_send());
  BOOST_TEST(!writer.can_recv());
  expect_errc([&] { reader.send(1); }, mp::errc::wrong_direction);
  expect_errc([&] { reader.send_bytes("x"); }, mp::errc::wrong_direction);
  expect_errc([&] { writer.recv<int>(); }, mp::errc::wrong_direction);
  expect_errc([&] { writer.recv_bytes(); }, mp::errc::wrong_direction);
  expect_errc([&] { writer.poll(); }, mp::errc::wrong_direction);
  writer.send(42);
  BOOST_TEST(reader.recv<int>() == 42);
}

BOOST_AUTO_TEST_CASE(bytes_and_typed_messages_interoperate, *boost::unit_test::timeout(60)) {
  auto a_b = mp::Pipe();  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  a.send(std::string("typed"));
  BOOST_TEST(b.recv_bytes() == "typed");
  b.send_bytes("raw bytes");
  BOOST_TEST(a.recv<std::string>() == "raw bytes");
  a.send_bytes("");
  BOOST_TEST(b.recv_bytes().empty());
  a.send(3.25);
  double d = 0;
  BOOST_TEST(b.recv_bytes_into(&d, sizeof d) == sizeof d);
  BOOST_TEST(d == 3.25);
  // A message that is not the type asked for: an error that names the pipe; it is dropped.
  a.send(std::string("abc"));
  a.send(7);
  expect_error([&] { b.recv<int>(); }, mp::errc::corrupt, {"Pipe", "recv", "int", "3 bytes"});
  BOOST_TEST(b.recv<int>() == 7);
}

BOOST_AUTO_TEST_CASE(messages_of_every_size_keep_their_boundaries, *boost::unit_test::timeout(120)) {
  // A small ring, so that most messages stream through it in chunks.
  auto a_b = mp::Pipe(true, 4096);  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  const std::vector<std::size_t> sizes{0, 1, 7, 8, 9, 2040, 2041, 4095, 4096, 5000, 100000, 1 << 20};
  mp::Process sender([a, &sizes] {
    for (std::size_t i = 0; i < sizes.size(); ++i) a.send_bytes(pattern(sizes[i], static_cast<unsigned>(i)));
    a.send(std::string("done"));
  });
  sender.start();
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::string m = b.recv_bytes();
    BOOST_TEST(m.size() == sizes[i]);
    BOOST_TEST((m == pattern(sizes[i], static_cast<unsigned>(i))), "message " << i);
  }
  BOOST_TEST(b.recv<std::string>() == "done");
  BOOST_REQUIRE(sender.join_for(30s));
}

BOOST_AUTO_TEST_CASE(messages_around_the_chunk_size_arrive_whole_through_a_large_ring,
                     *boost::unit_test::timeout(120)) {
  // A 4 MiB ring could carry a 2 MiB message in one record, yet everything above kStreamChunk
  // (128 KiB) streams in chunks (ChannelRef::max_whole_payload). Each size around that edge and
  // around the ring's record limit, sent as bytes and typed, read with recv_bytes,
  // recv_bytes_into, recv<std::string> and recv<std::vector>, checked byte for byte.
  auto a_b = mp::Pipe(true, 4 << 20);
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  constexpr std::size_t K = mp::detail::kStreamChunk;
  constexpr std::size_t R = (std::size_t{2} << 20) - 8;  // the most one record of the ring holds
  const std::vector<std::size_t> sizes{K - 9, K - 8, K - 1, K, K + 1, K + 8, 3 * K + 5,
                                       R - 1, R, R + 1, 5 << 20};
  auto words = [](std::size_t n, unsigned seed) {
    std::vector<std::uint32_t> v(n / 4);
    std::iota(v.begin(), v.end(), seed * 1000003u);
    return v;
  };
  mp::Process sender([a, &sizes, words] {
    for (unsigned i = 0; i < sizes.size(); ++i) {
      a.send_bytes(pattern(sizes[i], i));
      a.send_bytes(pattern(sizes[i], i + 100));
      a.send(pattern(sizes[i], i + 200));
      a.send(words(sizes[i], i));
    }
    a.send(std::string("done"));
  });
  sender.start();
  std::vector<char> buffer((5 << 20) + 64);
  for (unsigned i = 0; i < sizes.size(); ++i) {
    const std::size_t n = sizes[i];
    const std::string m = b.recv_bytes();
    BOOST_TEST((m == pattern(n, i)), "recv_bytes of " << n << " bytes");
    BOOST_TEST(b.recv_bytes_into(buffer.data(), buffer.size()) == n);
    BOOST_TEST((std::string(buffer.data(), n) == pattern(n, i + 100)), "recv_bytes_into of " << n);
    BOOST_TEST((b.recv<std::string>() == pattern(n, i + 200)), "recv<std::string> of " << n);
    BOOST_TEST((b.recv<std::vector<std::uint32_t>>() == words(n, i)), "recv<std::vector> of " << n);
  }
  BOOST_TEST(b.recv<std::string>() == "done");
  BOOST_REQUIRE(sender.join_for(60s));
  BOOST_TEST(sender.exitcode().value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(a_streamed_message_that_completes_while_the_receiver_looks_is_kept,
                     *boost::unit_test::timeout(120)) {
  // Regression: a receiver mid-message that found the ring empty asked "no data?" before "is the
  // sender gone or done?"; a sender finishing the message between the two questions looked done
  // with nothing left to read, and the receiver dropped the whole message (then skipped its Last
  // chunk as an orphan). Many two-chunk messages through a 4 KiB ring, every one must arrive.
  auto a_b = mp::Pipe(false, 4096);
  mp::Connection rx = std::move(a_b.first), tx = std::move(a_b.second);
  constexpr std::uint32_t kMessages = 20000;
  mp::Process sender([tx] {
    for (std::uint32_t i = 0; i < kMessages; ++i) {
      std::string m = pattern(4500 + i % 64, i);
      std::memcpy(m.data(), &i, sizeof i);
      tx.send_bytes(m);
    }
  });
  sender.start();
  tx.close();
  std::uint32_t wrong = 0;
  for (std::uint32_t i = 0; i < kMessages; ++i) {
    const std::string m = rx.recv_bytes();
    std::uint32_t n = 0;
    std::memcpy(&n, m.data(), sizeof n);
    if (n != i) {
      BOOST_TEST_REQUIRE(n == i, "message " << n << " came when " << i << " was due");
    }
    std::string want = pattern(4500 + i % 64, i);
    std::memcpy(want.data(), &i, sizeof i);
    wrong += m == want ? 0 : 1;
  }
  BOOST_TEST(wrong == 0u);
  BOOST_CHECK_THROW(rx.recv_bytes(), mp::EOFError);
  BOOST_REQUIRE(sender.join_for(60s));
  BOOST_TEST(sender.exitcode().value_or(-1) == 0);
}

// Where the last message taken from a pipe's receiving channel ended in its ring (the consumer
// cursor's offset; with nothing left to take, also the producer's).
std::uint64_t consumer_offset(const mp::Connection& c) {
  const mp::detail::ChannelRef* ch = c.receive_channel();
  const std::uint64_t cursor = ch->state()->consumer.cursor.load();
  return mp::detail::cursor_bytes(cursor) & (ch->ring_bytes() - 1);
}

// A sender whose receiver has taken everything starts again from the ring's beginning once past
// its first quarter (ChannelRef::set_rewind): messages then cycle through warm memory. Try to
// break it: 3,000 round trips of every size from 1 byte to 300 KiB (whole records, records that
// end just short of or just past the check points, and streamed messages), in both directions,
// each checked byte for byte; then a receiver that keeps up must never have seen a message end
// past rb/4 + rb/16 + the largest record, and a lagging receiver (the ring never empty) still
// gets everything in order.
BOOST_AUTO_TEST_CASE(a_pipe_whose_receiver_keeps_up_cycles_through_the_start_of_its_ring,
                     *boost::unit_test::timeout(180)) {
  constexpr std::size_t kRing = std::size_t{1} << 20;
  auto a_b = mp::Pipe(true, kRing);  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  constexpr int kRounds = 3000;
  auto size_of = [](int i) -> std::size_t {
    std::mt19937 r(static_cast<unsigned>(i));
    switch (i % 4) {
      case 0: return 1 + r() % 64;
      case 1: return 1 + r() % (64 << 10);
      case 2: return (kRing / 16) - 64 + r() % 128;  // around a check point's distance
      default: return 1 + r() % (300 << 10);         // up to two streamed chunks and more
    }
  };
  mp::Process echo([b, size_of] {
    std::uint64_t worst = 0;
    for (int i = 0; i < kRounds; ++i) {
      const std::string m = b.recv_bytes();
      if (m != pattern(size_of(i), static_cast<unsigned>(i))) return 10;
      worst = std::max(worst, consumer_offset(b));
      b.send_bytes(pattern(size_of(i), static_cast<unsigned>(i) + 7));
    }
    b.send(worst);
    // Lagging: the whole burst is sent before this side reads it.
    std::vector<std::string> got;
    for (int i = 0; i < 400; ++i) got.push_back(b.recv_bytes());
    for (int i = 0; i < 400; ++i) {
      if (got[static_cast<std::size_t>(i)] != pattern(size_of(i), static_cast<unsigned>(i) + 3)) return 11;
    }
    return 0;
  });
  echo.start();
  std::uint64_t worst = 0;
  int wrong = 0;
  for (int i = 0; i < kRounds; ++i) {
    a.send_bytes(pattern(size_of(i), static_cast<unsigned>(i)));
    wrong += a.recv_bytes() == pattern(size_of(i), static_cast<unsigned>(i) + 7) ? 0 : 1;
    worst = std::max(worst, consumer_offset(a));
  }
  BOOST_TEST(wrong == 0);
  // A message's first record starts before the first check point past the quarter (there the
  // ring is empty: the echo took the message before); a streamed message's later chunks may go on
  // without a rewind (the receiver is still copying the chunk before). Without rewinds, 270 MB of
  // round trips would have ended messages all over the ring.
  constexpr std::uint64_t bound = kRing / 4 + kRing / 16 + (300 << 10) + 256;
  BOOST_TEST(worst <= bound);
  BOOST_TEST(a.recv<std::uint64_t>() <= bound);
  for (int i = 0; i < 400; ++i) a.send_bytes(pattern(size_of(i), static_cast<unsigned>(i) + 3));
  BOOST_REQUIRE(echo.join_for(60s));
  BOOST_TEST(echo.exitcode().value_or(-1) == 0);
}

// What a rewind costs: until the receiver takes the message after the skip, the sender has room
// only before it. The promise is at least a quarter of the ring (what Pool relies on to send
// without waiting). A receiver takes everything, with the tail left just past the quarter, then
// stops (SIGSTOP): a quarter of the ring in messages must still go in without waiting; after
// SIGCONT it gets every one, in order.
BOOST_AUTO_TEST_CASE(a_rewound_pipe_holds_a_quarter_of_its_ring_for_a_stopped_receiver,
                     *boost::unit_test::timeout(120)) {
  constexpr std::size_t kRing = std::size_t{256} << 10;
  auto a_b = mp::Pipe(false, kRing);
  mp::Connection rx = std::move(a_b.first), tx = std::move(a_b.second);
  auto back_b = mp::Pipe(false);
  mp::Connection back_rx = std::move(back_b.first), back_tx = std::move(back_b.second);
  constexpr std::size_t kPayload = 1000;
  constexpr std::size_t kRecord = 1008;  // its record: header and payload
  // The tail ends past the first quarter and within one record before a check point (a
  // sixteenth of the ring), so that the next record crosses it with the ring empty.
  int first = 0;
  while (first * kRecord < kRing / 4 ||
         (first * kRecord) / (kRing / 16) == ((first + 1) * kRecord) / (kRing / 16)) {
    ++first;
  }
  const int kFirst = first;
  constexpr int kBurst = static_cast<int>((kRing / 4) / kRecord);  // a quarter of the ring
  mp::Process receiver([rx, back_tx, kFirst] {
    for (int i = 0; i < kFirst; ++i) {
      if (rx.recv_bytes() != pattern(kPayload, static_cast<unsigned>(i))) return 10;
      back_tx.send(i);  // taken: the ring is empty again
    }
    ::raise(SIGSTOP);
    for (int i = 0; i < kBurst; ++i) {
      if (rx.recv_bytes() != pattern(kPayload, 1000u + static_cast<unsigned>(i))) return 11;
    }
    return 0;
  });
  receiver.start();
  ContinueAtExit cont{{receiver.pid()}};
  for (int i = 0; i < kFirst; ++i) {
    tx.send_bytes(pattern(kPayload, static_cast<unsigned>(i)));
    BOOST_REQUIRE(back_rx.recv<int>() == i);
  }
  BOOST_REQUIRE(consumer_offset(rx) >= kRing / 4);  // where the rewind will start from
  BOOST_REQUIRE(eventually([&] { return is_stopped(receiver.pid()); }));
  // The first of these crosses a check point with the ring empty: a skip, then everything fits
  // before it. Sent from a thread, so that a send that waits fails the test instead of hanging.
  std::atomic<int> sent{0};
  std::thread sender([&] {
    for (int i = 0; i < kBurst; ++i) {
      tx.send_bytes(pattern(kPayload, 1000u + static_cast<unsigned>(i)));
      ++sent;
    }
  });
  const bool all_in = eventually([&] { return sent.load() == kBurst; }, 20s);
  BOOST_TEST(all_in, "sent " << sent.load() << " of " << kBurst << " to a stopped receiver");
  BOOST_REQUIRE(::kill(receiver.pid(), SIGCONT) == 0);
  sender.join();
  // It did start again from the beginning: the burst ends a quarter into the ring.
  const mp::detail::ChannelRef* ch = rx.receive_channel();
  BOOST_TEST((mp::detail::cursor_bytes(ch->state()->producer.cursor.load()) & (kRing - 1)) ==
             kBurst * kRecord);
  BOOST_REQUIRE(receiver.join_for(60s));
  BOOST_TEST(receiver.exitcode().value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(a_64_mib_message_streams_through, *boost::unit_test::timeout(120)) {
  auto a_b = mp::Pipe();  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  constexpr std::size_t kSize = std::size_t{64} << 20;
  mp::Process sender([a] {
    std::vector<std::uint32_t> big(kSize / 4);
    std::iota(big.begin(), big.end(), 7u);
    a.send(big);
  });
  sender.start();
  const auto start = std::chrono::steady_clock::now();
  const auto got = b.recv<std::vector<std::uint32_t>>();
  const double seconds = seconds_since(start);
  BOOST_REQUIRE(got.size() == kSize / 4);
  bool ok = true;
  for (std::size_t i = 0; i < got.size() && ok; ++i) ok = got[i] == static_cast<std::uint32_t>(i + 7);
  BOOST_TEST(ok);
  BOOST_TEST_MESSAGE("64 MiB in " << seconds << " s");
  BOOST_REQUIRE(sender.join_for(30s));
}

BOOST_AUTO_TEST_CASE(a_large_value_that_is_not_its_own_bytes_streams_through,
                     *boost::unit_test::timeout(120)) {
  // A pair of a string and a vector of strings is encoded aside (its codec writes lengths between
  // the parts), then streamed through a ring far smaller than it; a string is sent from its own
  // bytes. Both arrive whole, in order.
  auto a_b = mp::Pipe(true, 4096);
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  using Big = std::pair<std::string, std::vector<std::string>>;
  auto make = [] {
    Big v{pattern(3 << 20, 5), {}};
    for (unsigned i = 0; i < 300; ++i) v.second.push_back(pattern(1000 + i, i));
    return v;
  };
  mp::Process sender([a, make] {
    a.send(make());
    a.send(pattern(5 << 20, 9));
  });
  sender.start();
  const Big got = b.recv<Big>();
  BOOST_TEST((got == make()));
  BOOST_TEST((b.recv<std::string>() == pattern(5 << 20, 9)));
  BOOST_REQUIRE(sender.join_for(30s));
  BOOST_TEST(sender.exitcode().value_or(-1) == 0);
}

// The receiver of the test below: a fresh process (a forked one may have free heap, left by
// earlier tests, to allocate from under any address-space limit).
MPTEST_SCENARIO(pipe_recv_without_memory) {
  mp::Connection b(mp::open_only, args.at(0), mp::PipeEnd::second);
  auto fails = [&] {
    try {
      (void)b.recv_bytes();
    } catch (const std::bad_alloc&) {
      return true;
    }
    return false;
  };
  CHILD_REQUIRE(limit_address_space(32 << 20));
  CHILD_REQUIRE(fails());
  CHILD_REQUIRE(b.recv<std::string>() == "second");
  CHILD_REQUIRE(limit_address_space(100 << 20));
  CHILD_REQUIRE(fails());
  CHILD_REQUIRE(lift_address_space_limit());
  CHILD_REQUIRE(b.recv_bytes() == pattern(3 << 20, 3));
  return 0;
}

BOOST_AUTO_TEST_CASE(a_message_there_is_no_memory_for_is_dropped_and_the_next_one_arrives,
                     *boost::unit_test::timeout(120) *
                         boost::unit_test::precondition(not_under_sanitizers)) {
  // The receiver, with its address space limited, cannot hold a 60 MiB message (its first chunk
  // already asks for all of it) nor a 200 MiB one (it fails halfway, growing past 64 MiB). Each
  // recv throws std::bad_alloc and takes that message: the next recv gets the next message, not
  // a retry of the failed one, nor its remaining chunks.
  const std::string name = unique_name("pipe");
  auto a_b = mp::Pipe(mp::create_only, name);
  mp::Connection a = std::move(a_b.first);
  mp::Process sender([a] {
    a.send_bytes(pattern(60 << 20, 1));
    a.send(std::string("second"));
    a.send_bytes(pattern(200 << 20, 2));
    a.send_bytes(pattern(3 << 20, 3));
  });
  sender.start();
  Spawned receiver("pipe_recv_without_memory", {name});
  BOOST_TEST(receiver.wait(60s) == 0);
  BOOST_REQUIRE(sender.join_for(60s));
  BOOST_TEST(sender.exitcode().value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(eof_comes_after_a_hundred_holders_at_once_let_go, *boost::unit_test::timeout(120)) {
  // An outside probe: the parent and 64 children holding one end at once overflowed its holder
  // table (64 entries then), and EOF never came, even after all of them had exited.
  auto a_b = mp::Pipe();
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  mp::Semaphore ready(0);
  mp::Event go;
  constexpr int kKids = 100;
  std::vector<mp::Process> kids;
  kids.reserve(kKids);
  for (int i = 0; i < kKids; ++i) {
    kids.emplace_back([a, ready, go](long k) {
      ready.release();
      if (!go.wait_for(60s)) return 1;
      a.send(k);
      return 0;
    }, static_cast<long>(i));
    kids.back().start();
  }
  for (int i = 0; i < kKids; ++i) BOOST_REQUIRE(ready.try_acquire_for(30s));  // all hold it now
  go.set();
  a.close();
  long sum = 0;
  for (int i = 0; i < kKids; ++i) sum += b.recv<long>();
  BOOST_TEST(sum == long{kKids} * (kKids - 1) / 2);
  for (auto& k : kids) {
    BOOST_REQUIRE(k.join_for(30s));
    BOOST_TEST(k.exitcode().value_or(-1) == 0);
  }
  BOOST_REQUIRE(b.poll(30s));  // EOF is ready
  BOOST_CHECK_THROW(b.recv<long>(), mp::EOFError);
}

BOOST_AUTO_TEST_CASE(close_wakes_other_threads_of_this_process_blocked_on_the_end,
                     *boost::unit_test::timeout(60)) {
  // An outside probe: close() left a thread of the same process blocked in recv() (or poll(), or
  // a send waiting for room) on that end until the peer went away. They now get Error(closed).
  for (const char* what : {"recv", "poll", "send"}) {
    auto a_b = mp::Pipe(true, 4096);
    mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
    std::atomic<pid_t> tid{0};
    std::atomic<int> outcome{0};  // 1: Error(closed)
    std::thread waiter([&] {
      tid = static_cast<pid_t>(::syscall(SYS_gettid));
      try {
        if (std::string(what) == "recv") {
          (void)b.recv_bytes();
        } else if (std::string(what) == "poll") {
          (void)b.poll(60s);
        } else {
          for (;;) b.send_bytes(std::string(1000, 'x'));  // until the ring is full
        }
        outcome = 3;
      } catch (const mp::Error& e) {
        outcome = e.code() == mp::errc::closed ? 1 : 2;
      } catch (...) {
        outcome = 4;
      }
    });
    BOOST_TEST(eventually([&] { return tid.load() != 0; }));
    BOOST_TEST(wait_until_in_futex(tid.load()), what << ": asleep on the end");
    b.close();
    waiter.join();  // hung before the fix (the suite's timeout fails it)
    BOOST_TEST(outcome.load() == 1, what << ": outcome " << outcome.load());
  }
}

BOOST_AUTO_TEST_CASE(close_lets_a_recv_in_the_middle_of_a_message_finish_it,
                     *boost::unit_test::timeout(60)) {
  // A review: a recv that close() woke in the middle of a chunked message threw, and the rest of
  // the message was lost for every holder of the end (another process holds it here). It
  // finishes the message instead.
  auto a_b = mp::Pipe(true, 4096);
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  const std::string big = pattern(64 << 20, 21);  // through 4 KiB: far longer than a stop takes
  mp::Event go;
  mp::Process holder([b, go] { return go.wait_for(60s) ? 0 : 1; });
  holder.start();
  mp::Process sender([a, &big] { a.send_bytes(big); });
  sender.start();
  ContinueAtExit cont{{sender.pid()}};
  std::atomic<pid_t> tid{0};
  std::atomic<int> outcome{0};  // 1: the whole message
  std::thread receiver([&] {
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    try {
      outcome = b.recv_bytes() == big ? 1 : 2;
    } catch (const std::exception& e) {
      BOOST_TEST_MESSAGE("recv threw: " << e.what());
      outcome = 3;
    }
  });
  const auto& consumed = b.receive_channel()->state()->consumer.cursor;
  BOOST_TEST(eventually([&] { return mp::detail::cursor_bytes(consumed.load()) > 0; }, 30s));
  ::kill(sender.pid(), SIGSTOP);  // in the middle of the message: the receiver waits for the rest
  BOOST_REQUIRE(eventually([&] { return is_stopped(sender.pid()); }));
  BOOST_REQUIRE(outcome.load() == 0);  // still receiving it
  BOOST_TEST(eventually([&] { return tid.load() != 0; }));
  // Usually asleep by now (between liveness looks it may be out of the futex: not required).
  (void)wait_until_in_futex(tid.load(), 2s);
  b.close();
  ::kill(sender.pid(), SIGCONT);
  receiver.join();
  BOOST_TEST(outcome.load() == 1);
  BOOST_REQUIRE(sender.join_for(30s));
  BOOST_TEST(sender.exitcode().value_or(-1) == 0);
  go.set();
  BOOST_REQUIRE(holder.join_for(30s));
  BOOST_TEST(holder.exitcode().value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(close_ends_a_recv_in_the_middle_of_a_message_that_can_no_longer_arrive,
                     *boost::unit_test::timeout(60)) {
  // With nobody else holding the end, close() makes the sender's next chunk fail (Closed): its
  // stream now marks the message given up as the exception leaves, and the recv woken in the
  // middle of it ends with Error(closed). It waited for good: the sender's end, released as the
  // exception left, had no holder whose death would tell.
  auto a_b = mp::Pipe(true, 4096);
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  const std::string big = pattern(64 << 20, 22);  // through 4 KiB: far longer than a stop takes
  mp::Process sender([a, &big] { a.send_bytes(big); });
  sender.start();
  ContinueAtExit cont{{sender.pid()}};
  std::atomic<int> outcome{0};  // 1: Error(closed)
  std::thread receiver([&] {
    try {
      (void)b.recv_bytes();
      outcome = 2;
    } catch (const mp::Error& e) {
      outcome = e.code() == mp::errc::closed ? 1 : 3;
    }
  });
  const auto& consumed = b.receive_channel()->state()->consumer.cursor;
  BOOST_TEST(eventually([&] { return mp::detail::cursor_bytes(consumed.load()) > 0; }, 30s));
  ::kill(sender.pid(), SIGSTOP);  // in the middle of the message
  BOOST_REQUIRE(eventually([&] { return is_stopped(sender.pid()); }));
  BOOST_REQUIRE(outcome.load() == 0);  // still receiving it
  b.close();
  ::kill(sender.pid(), SIGCONT);
  receiver.join();  // hung before the fix (the suite's timeout fails it)
  BOOST_TEST(outcome.load() == 1);
  BOOST_REQUIRE(sender.join_for(30s));
  BOOST_TEST(sender.exitcode().value_or(0) == 1);  // its send: Closed
}

BOOST_AUTO_TEST_CASE(too_small_buffer_keeps_the_message, *boost::unit_test::timeout(60)) {
  auto a_b = mp::Pipe(true, 4096);  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  mp::Process sender([a] {
    a.send_bytes(pattern(100, 1));
    a.send_bytes(pattern(10000, 2));  // chunked: streams while the receiver reads
  });
  sender.start();
  BOOST_REQUIRE(b.poll(30s));
  char small[50];
  expect_errc([&] { b.recv_bytes_into(small, sizeof small); }, mp::errc::too_large);
  std::vector<char> buf(100);
  BOOST_TEST(b.recv_bytes_into(buf.data(), buf.size()) == 100u);
  BOOST_TEST((std::string(buf.begin(), buf.end()) == pattern(100, 1)));
  expect_errc([&] { b.recv_bytes_into(buf.data(), buf.size()); }, mp::errc::too_large);
  std::vector<char> big(20000);
  BOOST_TEST(b.recv_bytes_into(big.data(), big.size()) == 10000u);
  BOOST_TEST((std::string(big.data(), 10000) == pattern(10000, 2)));
  BOOST_REQUIRE(sender.join_for(30s));
}

BOOST_AUTO_TEST_CASE(eof_after_the_peer_closes_and_everything_was_received, *boost::unit_test::timeout(60)) {
  auto reader_writer = mp::Pipe(false);  // not a structured binding: lambdas capture the ends
  mp::Connection reader = std::move(reader_writer.first), writer = std::move(reader_writer.second);
  mp::Process child([writer] {
    for (int i = 0; i < 3; ++i) writer.send(i);
    writer.close();
  });
  child.start();
  writer.close();  // only the child holds the writing end now
  BOOST_TEST(reader.recv<int>() == 0);
  BOOST_TEST(reader.recv<int>() == 1);
  BOOST_TEST(reader.recv<int>() == 2);
  BOOST_CHECK_THROW(reader.recv<int>(), mp::EOFError);
  BOOST_TEST(reader.poll());  // EOF counts as ready
  BOOST_REQUIRE(child.join_for(10s));
  expect_errc([&] { writer.send(1); }, mp::errc::closed);  // our own end, closed
}

BOOST_AUTO_TEST_CASE(eof_when_the_peer_process_dies, *boost::unit_test::timeout(60)) {
  auto a_b = mp::Pipe();  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  Gate ready, never;
  mp::Process child([b, &ready, &never] {
    b.send(std::string("last words"));
    ready.signal();
    never.wait(60s);
  });
  child.start();
  b.close();
  BOOST_REQUIRE(ready.wait());
  child.kill();  // no close, no destructor: the kernel's death is all the pipe learns
  child.join();
  BOOST_TEST(a.recv<std::string>() == "last words");
  const auto start = std::chrono::steady_clock::now();
  BOOST_CHECK_THROW(a.recv<std::string>(), mp::EOFError);
  BOOST_TEST(seconds_since(start) < 5.0);
  expect_errc([&] {
    for (int i = 0; i < 100000; ++i) a.send(std::string(1000, 'x'));  // fills, then finds out
  }, mp::errc::closed);
}

BOOST_AUTO_TEST_CASE(child_holds_only_the_ends_it_captured, *boost::unit_test::timeout(60)) {
  // The child inherits both ends with the parent's memory but captures only its own: when the
  // parent closes its end, the child's recv sees EOF (with file descriptors it would hang).
  auto parent_end_child_end = mp::Pipe();  // not a structured binding: lambdas capture the ends
  mp::Connection parent_end = std::move(parent_end_child_end.first), child_end = std::move(parent_end_child_end.second);
  mp::Process child([child_end] {
    try {
      child_end.recv<int>();
    } catch (const mp::EOFError&) {
      return 0;
    }
    return 1;
  });
  child.start();
  child_end.close();
  parent_end.close();
  BOOST_REQUIRE(child.join_for(10s));
  BOOST_TEST(*child.exitcode() == 0);
}

BOOST_AUTO_TEST_CASE(two_handles_on_one_end_in_a_process_hold_it_together, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("dup");
  auto first_second = mp::Pipe(mp::create_only, name);  // not a structured binding: lambdas capture the ends
  mp::Connection first = std::move(first_second.first), second = std::move(first_second.second);
  second.close();
  mp::Connection keep(mp::open_only, name, mp::PipeEnd::second);
  { mp::Connection other(mp::open_only, name, mp::PipeEnd::second); }  // dropped at once
  keep.send(42);
  BOOST_TEST(first.recv<int>() == 42);
  BOOST_TEST(!first.poll(200ms));  // no EOF: `keep` still holds the end
  BOOST_TEST(!first.peer_closed());
  keep.close();
  BOOST_CHECK_THROW(first.recv<int>(), mp::EOFError);
}

BOOST_AUTO_TEST_CASE(raw_fork_child_holds_what_it_inherited_from_the_start, *boost::unit_test::timeout(120)) {
  // The child of a plain fork() registers itself only when its atfork handler runs; the parent
  // left a pending entry before forking, so closing its own copy at once cannot give EOF early.
  int premature = 0;
  for (int trial = 0; trial < 30; ++trial) {
    auto reader_writer = mp::Pipe(false);  // not a structured binding: lambdas capture the ends
    mp::Connection reader = std::move(reader_writer.first), writer = std::move(reader_writer.second);
    const pid_t child = ::fork();
    if (child == 0) {
      try {
        writer.send(42);
      } catch (...) {
        ::_exit(1);
      }
      ::_exit(0);
    }
    writer.close();
    try {
      if (reader.recv<int>() != 42) ++premature;
    } catch (const mp::EOFError&) {
      ++premature;
    }
    int status = 0;
    ::waitpid(child, &status, 0);
  }
  BOOST_TEST(premature == 0);
}

BOOST_AUTO_TEST_CASE(poll_waits_for_a_message, *boost::unit_test::timeout(60)) {
  auto a_b = mp::Pipe();  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  BOOST_TEST(!b.poll());
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!b.poll(50ms));
  BOOST_TEST(seconds_since(start) >= 0.049);
  mp::Process sender([a] { a.send(1); });
  sender.start();
  BOOST_TEST(b.poll(30s));
  BOOST_TEST(b.recv<int>() == 1);
  BOOST_REQUIRE(sender.join_for(10s));
}

// On one CPU a thread waiting for the answer to what it sent yields to its partner before it
// sleeps (ChannelRef::sleep_until). Try to break that wait: round trips with exact answers, a
// partner that keeps the only CPU busy (a poll's deadline still ends it), one that is stopped
// (SIGSTOP: the wait sleeps, and the answer after SIGCONT arrives), and one killed while the
// waiter is asleep in recv() (EOFError, not a hang).
BOOST_AUTO_TEST_CASE(answer_waits_on_one_cpu_outlast_busy_stopped_and_killed_peers,
                     *boost::unit_test::timeout(120)) {
  PinnedToOneCpu pin;  // the echo, forked below, inherits the mask
  BOOST_REQUIRE(pin.ok());
  auto a_b = mp::Pipe();  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  mp::Process echo([b] {
    for (;;) {
      const long v = b.recv<long>();
      if (v < 0) {  // keeps the CPU busy for -v ms, then answers
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(-v);
        while (std::chrono::steady_clock::now() < until) {
        }
      }
      b.send(v);
    }
  });
  echo.start();
  b.close();
  ContinueAtExit cont{{echo.pid()}};
  long sum = 0;
  for (long i = 1; i <= 5000; ++i) {
    a.send(i);
    sum += a.recv<long>();
  }
  BOOST_TEST(sum == 5000L * 5001 / 2);

  // Busy on the same CPU for 2 s: the poll ends at its deadline, however the CPU is shared.
  a.send(-2000L);
  auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!a.poll(30ms));
  BOOST_TEST(seconds_since(start) >= 0.029);
  BOOST_TEST(a.poll(60s));
  BOOST_TEST(a.recv<long>() == -2000);

  // Stopped: nothing runs in its place, so every yield returns at once; the poll sleeps to its
  // deadline, and the answer comes once the echo continues.
  BOOST_REQUIRE(::kill(echo.pid(), SIGSTOP) == 0);
  BOOST_REQUIRE(eventually([&] { return is_stopped(echo.pid()); }));
  a.send(7L);
  start = std::chrono::steady_clock::now();
  BOOST_TEST(!a.poll(50ms));
  BOOST_TEST(seconds_since(start) >= 0.049);
  BOOST_REQUIRE(::kill(echo.pid(), SIGCONT) == 0);
  BOOST_TEST(a.poll(60s));
  BOOST_TEST(a.recv<long>() == 7);

  // Killed while this thread is asleep in recv(), waiting for an answer that never comes.
  a.send(-100000L);
  std::atomic<bool> asleep{false};
  std::thread killer([&] {
    asleep = wait_until_in_futex(::getpid());  // this process's main thread: asleep in recv()
    echo.kill();
  });
  start = std::chrono::steady_clock::now();
  BOOST_CHECK_THROW(a.recv<long>(), mp::EOFError);
  BOOST_TEST(seconds_since(start) < 30.0);
  killer.join();
  BOOST_TEST(asleep.load());
  BOOST_REQUIRE(echo.join_for(30s));
  BOOST_TEST(echo.exitcode().value_or(0) == -SIGKILL);
}

MPTEST_SCENARIO(pipe_second_end_echo) {
  mp::Connection c(mp::open_only, args.at(0), mp::PipeEnd::second);
  try {
    for (;;) c.send(c.recv<long>() * 2);
  } catch (const mp::EOFError&) {
  }
  return 0;
}

BOOST_AUTO_TEST_CASE(named_pipe_between_unrelated_processes, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("pipe");
  auto first_second = mp::Pipe(mp::create_only, name);  // not a structured binding: lambdas capture the ends
  mp::Connection first = std::move(first_second.first), second = std::move(first_second.second);
  Spawned echo("pipe_second_end_echo", {name});
  for (long i = 1; i <= 100; ++i) {
    first.send(i);
    BOOST_TEST(first.recv<long>() == 2 * i);
    if (i == 1) second.close();  // the echo process, which answered, holds the second end
  }
  first.close();
  BOOST_TEST(echo.wait() == 0);
}

namespace {

// Senders stream large, self-checking messages (`size` bytes and up) through a ring of `ring`
// bytes and are killed at random moments, mid-message often. The receiver must only ever see
// whole, correct messages: the next sender marks the dead one's partial message aborted.
void kill_senders_mid_message(std::size_t ring, std::size_t size, unsigned rounds) {
  auto message = [](unsigned seed, std::size_t n) {
    std::string m(reinterpret_cast<const char*>(&seed), sizeof seed);
    return m + pattern(n, seed);
  };
  auto valid = [](const std::string& m) {
    if (m.size() < sizeof(unsigned)) return false;
    unsigned seed;
    std::memcpy(&seed, m.data(), sizeof seed);
    return m.compare(sizeof seed, std::string::npos, pattern(m.size() - sizeof seed, seed)) == 0;
  };
  auto reader_writer = mp::Pipe(false, ring);  // not a structured binding: lambdas capture the ends
  mp::Connection reader = std::move(reader_writer.first), writer = std::move(reader_writer.second);
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  int good = 0;
  for (unsigned round = 0; round < rounds; ++round) {
    mp::Process sender([writer, round, message, size] {
      for (unsigned i = 0;; ++i) writer.send_bytes(message(round * 1000 + i, size + i % 7));
    });
    sender.start();
    const int take = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < take; ++k) {
      BOOST_REQUIRE(valid(reader.recv_bytes()));
      ++good;
    }
    // A random moment to die at — often in the middle of a message (not a synchronisation point).
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    sender.kill();
    sender.join();
  }
  mp::Process last([writer] { writer.send_bytes("end"); });
  last.start();
  for (;;) {  // whole messages the last killed sender left, then ours
    const std::string m = reader.recv_bytes();
    if (m == "end") break;
    BOOST_REQUIRE(valid(m));
    ++good;
  }
  BOOST_REQUIRE(last.join_for(10s));
  BOOST_TEST_MESSAGE(good << " whole messages received around " << rounds << " killed senders");
}

}  // namespace

BOOST_AUTO_TEST_CASE(senders_killed_mid_message_never_corrupt_the_stream, *boost::unit_test::timeout(180)) {
  kill_senders_mid_message(8192, 20000, 20);  // messages of 3 chunks and more
}

BOOST_AUTO_TEST_CASE(senders_killed_mid_message_through_a_large_ring, *boost::unit_test::timeout(180)) {
  // A 1 MiB ring could hold each message in one record; they stream in 128 KiB chunks.
  kill_senders_mid_message(1 << 20, 300 * 1000, 12);
}

BOOST_AUTO_TEST_CASE(send_bytes_with_offset_and_size_as_python, *boost::unit_test::timeout(60)) {
  auto a_b = mp::Pipe(true, 4096);  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  const std::string big = pattern(100000, 5);  // larger than the ring: streamed
  mp::Process sender([a, big] {
    const std::string buf = "hello world";
    a.send_bytes(buf, 6, std::nullopt);  // "world"
    a.send_bytes(buf, 0, 5);             // "hello"
    a.send_bytes(buf, 11, std::nullopt); // "" (offset == length is allowed)
    a.send_bytes(buf, 3, 0);             // ""
    a.send_bytes(big.data(), big.size(), 1, static_cast<std::ptrdiff_t>(big.size() - 2));
    a.send_bytes("end", 3);              // two arguments: (pointer, length), as before
  });
  sender.start();
  BOOST_TEST(b.recv_bytes() == "world");
  BOOST_TEST(b.recv_bytes() == "hello");
  BOOST_TEST(b.recv_bytes() == "");
  BOOST_TEST(b.recv_bytes() == "");
  BOOST_TEST((b.recv_bytes() == big.substr(1, big.size() - 2)));
  BOOST_TEST(b.recv_bytes() == "end");
  BOOST_REQUIRE(sender.join_for(30s));
  BOOST_TEST(*sender.exitcode() == 0);
  // Python's checks and words; nothing is sent.
  const std::string buf = "0123456789";
  auto expect_invalid = [&](std::ptrdiff_t offset, std::optional<std::ptrdiff_t> size,
                            const std::string& words) {
    try {
      b.send_bytes(buf, offset, size);
      BOOST_ERROR("no error for offset " << offset);
    } catch (const mp::Error& e) {
      BOOST_TEST((e.code() == mp::errc::invalid_argument));
      BOOST_TEST(std::string(e.what()).find(words) != std::string::npos, e.what());
      BOOST_TEST(std::string(e.what()).find("Pipe") != std::string::npos, e.what());
    }
  };
  expect_invalid(-1, std::nullopt, "offset is negative");
  expect_invalid(11, std::nullopt, "buffer length < offset");
  expect_invalid(0, -1, "size is negative");
  expect_invalid(6, 5, "buffer length < offset + size");
  expect_invalid(PTRDIFF_MAX, 1, "buffer length < offset");
  b.send_bytes(buf, 10, 0);
  BOOST_TEST(a.recv_bytes() == "");  // the refused ones sent nothing
  BOOST_TEST(!a.poll());
}

BOOST_AUTO_TEST_CASE(blocked_receiver_uses_no_cpu, *boost::unit_test::timeout(60)) {
  auto a_b = mp::Pipe();  // not a structured binding: lambdas capture the ends
  mp::Connection a = std::move(a_b.first), b = std::move(a_b.second);
  CHECK_CHILD([b] {
    const double cpu0 = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    if (b.poll(500ms)) return 2;
    const double wall = seconds_since(start), cpu = cpu_seconds() - cpu0;
    return cpu < 0.1 * wall ? 0 : 1;
  });
  (void)a;
}

BOOST_AUTO_TEST_SUITE_END()
