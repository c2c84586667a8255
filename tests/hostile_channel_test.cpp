// Queues and pipes against a hostile writer of the same user: a victim process opens the object,
// an attacker (another process) scribbles its bytes — geometry, cursors, record headers, holder
// tables — and the victim must get Error(errc::corrupt) (or carry on) and recover: never SIGSEGV,
// never hang, never wrong bytes believed, never wedged for good.
//
// The offsets come from the detail structs (offsetof, kChannelHeader), as an attacker's would.
// Built with -DHOSTILE_OLD_LAYOUT, the file compiles against the code before issue 12 (headers
// carried no check), which is how each test was seen to fail there.
#include "support/support.hpp"

#include <multiproc/detail/channel.hpp>
#include <multiproc/detail/holder_table.hpp>
#include <multiproc/detail/queue_segment.hpp>

#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

using namespace mptest;
namespace d = multiproc::detail;

namespace {

d::ChannelState* state_of(const mp::Segment& seg) { return static_cast<d::ChannelState*>(seg.body()); }
unsigned char* ring_of(const mp::Segment& seg) {
  return static_cast<unsigned char*>(seg.body()) + d::kChannelHeader;
}

// A record header as a writer who knows the format writes it.
d::RecordHeader forged_header(std::uint64_t position, std::uint32_t length, std::uint32_t type) {
#ifdef HOSTILE_OLD_LAYOUT
  (void)position;
  return d::RecordHeader{length, type};
#else
  return d::seal_record(position, length, type);
#endif
}

// The pipe segment's header (src/pipe/connection_impl.hpp, which tests cannot include): the
// leading fields of PipeState, then its two holder tables.
struct PipeHeaderView {
  std::uint32_t duplex;
  std::uint32_t reserved;
  std::uint64_t ring_bytes;
  d::HolderTable holders[2];
};

// A victim child: runs f (which opens the object, signals `opened`, waits for `scribbled`, then
// acts), while the test, as the attacker, scribbles in between. finish() returns its exit code
// (-signal if it died of one; -SIGKILL, with a failure reported, if it hung).
class Victim {
 public:
  explicit Victim(std::function<int(Gate& opened, Gate& scribbled)> f)
      : p_([this, f = std::move(f)] {
          try {
            return f(opened_, scribbled_);
          } catch (const std::exception& e) {
            std::fprintf(stderr, "victim: uncaught exception: %s\n", e.what());
            return 3;
          }
        }) {
    p_.start();
  }
  //! Waits until the victim opened the object (false if it failed first).
  bool opened() { return opened_.wait(20s); }
  void scribbled() { scribbled_.signal(); }
  int finish(std::chrono::milliseconds timeout = 20s) {
    if (!p_.join_for(timeout)) {
      BOOST_ERROR("victim " << p_.pid() << " still running after " << timeout.count()
                            << " ms: killed");
      p_.kill();
      p_.join();
      return -SIGKILL;
    }
    return *p_.exitcode();
  }

 private:
  Gate opened_, scribbled_;
  mp::Process p_;
};

//! Child side: 0 when f throws Error(errc::corrupt) whose message has `part`; 2 for another
//! Error, 4 for a corrupt error without `part`, 1 when nothing is thrown.
template <class F>
int child_expect_corrupt(F&& f, const std::string& part = "") {
  try {
    f();
  } catch (const mp::Error& e) {
    if (e.code() != mp::errc::corrupt) {
      std::fprintf(stderr, "victim: expected corrupt, got: %s\n", e.what());
      return 2;
    }
    if (std::string(e.what()).find(part) == std::string::npos) {
      std::fprintf(stderr, "victim: '%s' lacks '%s'\n", e.what(), part.c_str());
      return 4;
    }
    return 0;
  }
  std::fprintf(stderr, "victim: no error\n");
  return 1;
}

#define CHILD_OK(expr)        \
  do {                        \
    const int rc_ = (expr);   \
    if (rc_ != 0) return 10 + rc_; \
  } while (0)

// Child side, after the damage was reported: new messages go through exactly, two at a time, and
// nothing else is left. 0 when they do.
template <class T>
int carries_new_messages_exactly(const mp::Queue<T>& q) {
  for (T i = 100; i < 140; ++i) {
    q.put(i);
    q.put(i + 1000);
    CHILD_REQUIRE(q.size() == 2);
    CHILD_REQUIRE(q.get() == i);
    CHILD_REQUIRE(q.get() == i + 1000);
  }
  CHILD_REQUIRE(!q.try_get());
  return 0;
}

// The ring offset of the k-th variable record from the consumer's cursor (0: the next one).
std::uint64_t record_offset(const mp::Segment& seg, int k) {
  d::ChannelState* c = state_of(seg);
  const std::uint64_t rb = c->ring_bytes;
  std::uint64_t off = d::cursor_bytes(c->consumer.cursor.load()) & (rb - 1);
  for (int i = 0; i < k; ++i) {
    d::RecordHeader h;
    std::memcpy(&h, ring_of(seg) + off, sizeof h);
    off = (off + d::record_span(h.length)) & (rb - 1);
  }
  return off;
}

constexpr std::uint64_t kHuge = std::uint64_t{1} << 30;

}  // namespace

BOOST_FIXTURE_TEST_SUITE(hostile_channel, Clean)

// Finding 1: ring_bytes = 2^30 and both cursors at 2^29, written after the victim opened the
// queue. Before: the victim's put wrote 512 MiB past its ring (SIGSEGV in append_fixed; a memcpy
// past the mapping for strings). Now the victim uses the geometry it copied at open: its put and
// get work. A process that opens the queue afterwards is refused with Error(corrupt).
BOOST_AUTO_TEST_CASE(scribbled_geometry_does_not_move_the_ring, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.geometry");
  mp::Queue<std::uint64_t> q(mp::create_only, mp::Name(name), 16);
  mp::Queue<std::string> qs(mp::create_only, mp::Name(name + "s"), 16);
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::Queue<std::uint64_t> mine(mp::open_only, mp::Name(name));
    mp::Queue<std::string> mine_s(mp::open_only, mp::Name(name + "s"));
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    for (std::uint64_t i = 0; i < 40; ++i) {  // round the ring twice
      mine.put(i);
      mine_s.put(std::string(100, static_cast<char>('a' + i % 26)));
      CHILD_REQUIRE(mine.get() == i);
      CHILD_REQUIRE(mine_s.get() == std::string(100, static_cast<char>('a' + i % 26)));
    }
    CHILD_REQUIRE(mine.size() == 0 && mine_s.size() == 0);
    return 0;
  });
  BOOST_REQUIRE(v.opened());
  for (const mp::Segment* seg : {&q.segment(), &qs.segment()}) {
    d::ChannelState* c = state_of(*seg);
    c->ring_bytes = kHuge;
    c->producer.cursor.store(d::make_cursor(0, kHuge / 2));
    c->consumer.cursor.store(d::make_cursor(0, kHuge / 2));
  }
  v.scribbled();
  BOOST_TEST(v.finish() == 0);
  // Opening now: the header does not fit the mapping.
  BOOST_TEST(run_child([&] {
               return child_expect_corrupt([&] { mp::Queue<std::uint64_t> late(mp::open_only, mp::Name(name)); },
                                           name);
             }) == 0);
}

// Finding 1: a consumer cursor moved ahead of the producer. Before: size() was 16,776,221 on a
// queue of 16 and get() returned zeros. Now size() stays within [0, capacity], get() throws
// Error(corrupt) once (skipping to the producer), and the queue then works.
BOOST_AUTO_TEST_CASE(consumer_cursor_ahead_of_the_producer, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.ahead");
  mp::Queue<std::uint32_t> q(mp::create_only, mp::Name(name), 16);
  for (std::uint32_t i = 1; i <= 3; ++i) q.put(i);
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::Queue<std::uint32_t> mine(mp::open_only, mp::Name(name));
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    CHILD_REQUIRE(mine.size() <= 16);
    CHILD_OK(child_expect_corrupt([&] { (void)mine.get(); }, "skipped"));
    CHILD_REQUIRE(mine.size() == 0);
    // Recovered: the three messages were skipped; the queue carries new ones exactly.
    return carries_new_messages_exactly(mine);
  });
  BOOST_REQUIRE(v.opened());
  d::ChannelState* c = state_of(q.segment());
  const std::uint64_t tail = c->producer.cursor.load();
  c->consumer.cursor.store(d::make_cursor(d::cursor_records(tail) + 5, d::cursor_bytes(tail) + 5 * 4));
  v.scribbled();
  BOOST_TEST(v.finish() == 0);
}

// The same damage to ends leased to the victim's thread. A leased owner works from its own copy
// of its cursor (EndState::mine) and only stores the shared one, so it must put a scribbled cursor
// right itself: here the producer's cache of the consumer cursor is used up, so the first put
// reads the scribble and fails — and the consumer, with nothing to take, would never store its
// cursor again: every later put would fail too.
BOOST_AUTO_TEST_CASE(a_leased_owner_repairs_its_scribbled_cursor, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.leased");
  mp::Queue<std::uint64_t> q(mp::create_only, mp::Name(name), 16);
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::Queue<std::uint64_t> mine(mp::open_only, mp::Name(name));
    for (std::uint64_t i = 0; i < 200; ++i) {  // both ends leased to this thread
      mine.put(i);
      CHILD_REQUIRE(mine.get() == i);
    }
    for (std::uint64_t i = 0; i < 16; ++i) mine.put(i);  // the producer's cache now says full
    for (std::uint64_t i = 0; i < 16; ++i) CHILD_REQUIRE(mine.get() == i);
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    CHILD_OK(child_expect_corrupt([&] { mine.put(7); }, "cursors cannot be right"));
    CHILD_REQUIRE(!mine.get_for(10ms));  // nothing to take: the consumer stores its cursor again
    return carries_new_messages_exactly(mine);
  });
  BOOST_REQUIRE(v.opened());
  d::ChannelState* c = state_of(q.segment());
  const std::uint64_t tail = c->producer.cursor.load();
  BOOST_REQUIRE_EQUAL(c->producer.mode.load(), d::kEndLeased);
  BOOST_REQUIRE_EQUAL(c->consumer.mode.load(), d::kEndLeased);
  c->consumer.cursor.store(d::make_cursor(d::cursor_records(tail) + 2, d::cursor_bytes(tail) + 16));
  v.scribbled();
  BOOST_TEST(v.finish(10s) == 0);
  BOOST_TEST(c->consumer.cursor.load() == c->producer.cursor.load());
}

// An untimed put on a full queue whose consumer cursor was scribbled ahead: before, it waited
// for room forever; now it throws Error(corrupt) (the cursors say the wait could never end).
// The same for an untimed get on an empty queue whose producer cursor went behind the consumer.
BOOST_AUTO_TEST_CASE(untimed_calls_do_not_hang_on_scribbled_cursors, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.hang");
  mp::Queue<std::uint64_t> q(mp::create_only, mp::Name(name), 8);
  mp::Queue<std::string> qs(mp::create_only, mp::Name(name + "s"), 8);
  for (std::uint64_t i = 0; i < 8; ++i) q.put(i);
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::Queue<std::uint64_t> mine(mp::open_only, mp::Name(name));
    mp::Queue<std::string> mine_s(mp::open_only, mp::Name(name + "s"));
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    CHILD_OK(child_expect_corrupt([&] { mine.put(99); }, "cursors cannot be right"));
    CHILD_OK(child_expect_corrupt([&] { (void)mine_s.get(); }, "skipped"));
    mine_s.put("fine");
    CHILD_REQUIRE(mine_s.get() == "fine");
    return 0;
  });
  BOOST_REQUIRE(v.opened());
  d::ChannelState* c = state_of(q.segment());
  const std::uint64_t tail = c->producer.cursor.load();
  c->consumer.cursor.store(d::make_cursor(d::cursor_records(tail) + 2, d::cursor_bytes(tail) + 16));
  d::ChannelState* cs = state_of(qs.segment());
  cs->producer.cursor.store(d::make_cursor(0, (std::uint64_t{1} << 40) - 64));  // "behind" 0
  v.scribbled();
  BOOST_TEST(v.finish(10s) == 0);
}

// An end's lock word scribbled with a thread id no Linux thread can have (2^22 and up): nobody's
// unlock or death would ever free it. Old code: the next untimed put() and get() (and a pipe's
// send and recv) waited for good. Now the lock is taken over as from a dead holder.
BOOST_AUTO_TEST_CASE(end_locks_naming_no_possible_thread_do_not_wedge, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.lockword");
  mp::Queue<std::uint64_t> q(mp::create_only, mp::Name(name), 128);
  auto ends = mp::Pipe();
  mp::Connection &a = ends.first, &b = ends.second;
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::Queue<std::uint64_t> mine(mp::open_only, mp::Name(name));
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    for (std::uint64_t i = 0; i < 100; ++i) mine.put(i);  // shared, then leased
    std::uint64_t sum = 0;
    for (int i = 0; i < 100; ++i) sum += mine.get();
    CHILD_REQUIRE(sum == 4950u);
    a.send(std::string("ping"));
    CHILD_REQUIRE(b.recv<std::string>() == "ping");
    return 0;
  });
  BOOST_REQUIRE(v.opened());
  // Every end's lock: the queue's, and those of both of the pipe's channels (after its header:
  // the channel towards the first end, its ring, the channel towards the second end).
  auto* view = static_cast<PipeHeaderView*>(a.segment().body());
  auto* pipe0 = reinterpret_cast<unsigned char*>(view) + d::round_up_to_cache_line(sizeof(PipeHeaderView));
  auto* pipe1 = pipe0 + d::round_up_to_cache_line(sizeof(d::ChannelState)) + view->ring_bytes;
  for (d::ChannelState* s : {state_of(q.segment()), reinterpret_cast<d::ChannelState*>(pipe0),
                             reinterpret_cast<d::ChannelState*>(pipe1)}) {
    for (d::EndState* e : {&s->producer, &s->consumer}) {
      BOOST_REQUIRE(e->lock.word.load() == 0u);  // nobody used them yet
      e->lock.word.store(0x3fffffffu);
    }
  }
  v.scribbled();
  BOOST_TEST(v.finish(20s) == 0);
}

// Finding 4: a record whose length was changed. Before: get() returned the wrong bytes ("b" for
// "bb") silently. Now the header's check fails: Error(corrupt) once, naming how many messages
// were skipped, and the queue goes on.
BOOST_AUTO_TEST_CASE(a_record_whose_length_changed_is_not_believed, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.length");
  mp::Queue<std::string> q(mp::create_only, mp::Name(name), 16);
  for (const char* m : {"a", "bb", "ccc"}) q.put(m);
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::Queue<std::string> mine(mp::open_only, mp::Name(name));
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    CHILD_REQUIRE(mine.get() == "a");
    CHILD_OK(child_expect_corrupt([&] { (void)mine.get(); }, "skipped the 2 message(s)"));
    CHILD_REQUIRE(!mine.try_get());
    mine.put("dddd");
    CHILD_REQUIRE(mine.get() == "dddd");
    return 0;
  });
  BOOST_REQUIRE(v.opened());
  const std::uint64_t off = record_offset(q.segment(), 1);
  d::RecordHeader h;
  std::memcpy(&h, ring_of(q.segment()) + off, sizeof h);
  BOOST_REQUIRE_EQUAL(h.length, 2u);
  h.length = 1;  // the type and its check left as they were
  std::memcpy(ring_of(q.segment()) + off, &h, sizeof h);
  v.scribbled();
  BOOST_TEST(v.finish() == 0);
}

// Finding 4: a record type made garbage. Before: every later get() threw the same corrupt error
// (the queue was wedged for good). Now one get() throws, having skipped what was published, and
// the next ones work — with a Pipe too.
BOOST_AUTO_TEST_CASE(a_garbage_record_type_does_not_wedge_the_queue, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.type");
  mp::Queue<std::string> q(mp::create_only, mp::Name(name), 16);
  for (const char* m : {"a", "bb", "ccc"}) q.put(m);
  auto [first, second] = mp::Pipe(mp::create_only, mp::Name(name + "p"), false, 4096);
  second.send_bytes("one", 3);
  second.send_bytes("two", 3);
  Gate skipped;  // the victim's recv has thrown: what is sent from now on arrives
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::Queue<std::string> mine(mp::open_only, mp::Name(name));
    mp::Connection reader(mp::open_only, mp::Name(name + "p"), mp::PipeEnd::first);
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    CHILD_OK(child_expect_corrupt([&] { (void)mine.get(); }, "damaged"));
    CHILD_REQUIRE(!mine.try_get());
    CHILD_REQUIRE(!mine.get_for(10ms));
    mine.put("after");
    CHILD_REQUIRE(mine.get() == "after");
    CHILD_OK(child_expect_corrupt([&] { (void)reader.recv_bytes(); }, "skipped the 2 message(s)"));
    skipped.signal();
    CHILD_REQUIRE(reader.recv_bytes() == "three");
    return 0;
  });
  BOOST_REQUIRE(v.opened());
  d::RecordHeader garbage{1, 0x77};
  std::memcpy(ring_of(q.segment()) + record_offset(q.segment(), 0), &garbage, sizeof garbage);
  // The pipe's channel 0 (towards the first end) begins after its header.
  auto* pipe_channel = reinterpret_cast<unsigned char*>(first.segment().body()) +
                       d::round_up_to_cache_line(sizeof(PipeHeaderView));
  std::memcpy(pipe_channel + d::round_up_to_cache_line(sizeof(d::ChannelState)), &garbage,
              sizeof garbage);
  v.scribbled();
  BOOST_REQUIRE(skipped.wait(20s));
  second.send_bytes("three", 5);
  BOOST_TEST(v.finish() == 0);
}

// The messages a damaged record made a get() skip count as done for a JoinableQueue: join()
// does not wait for messages nobody can take any more.
BOOST_AUTO_TEST_CASE(skipped_messages_count_as_done_for_join, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.join");
  mp::JoinableQueue<std::string> q(mp::create_only, mp::Name(name), 16);
  q.put("a");
  q.put("bb");
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::JoinableQueue<std::string> mine(mp::open_only, mp::Name(name));
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    CHILD_OK(child_expect_corrupt([&] { (void)mine.get(); }, "skipped the 2 message(s)"));
    CHILD_REQUIRE(mine.join_for(5s));
    mine.put("c");
    CHILD_REQUIRE(mine.get() == "c");
    CHILD_REQUIRE(!mine.join_for(10ms));
    mine.task_done();
    CHILD_REQUIRE(mine.join_for(5s));
    return 0;
  });
  BOOST_REQUIRE(v.opened());
  const d::RecordHeader garbage{1, 0x77};
  std::memcpy(ring_of(q.segment()) + record_offset(q.segment(), 0), &garbage, sizeof garbage);
  v.scribbled();
  BOOST_TEST(v.finish() == 0);
}

// A First chunk announcing 1 TiB. Before: the consumer zero-filled (or failed to allocate) the
// announced length at once. Now memory grows with the bytes that arrive: the message, whose
// sender never streams it, is dropped, and the queue goes on.
BOOST_AUTO_TEST_CASE(a_forged_huge_message_length_allocates_nothing, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.total");
  mp::Queue<std::string> q(mp::create_only, mp::Name(name), 16, 4096);
  q.put("x");
  Victim v([&](Gate& opened, Gate& scribbled) {
    mp::Queue<std::string> mine(mp::open_only, mp::Name(name));
    opened.signal();
    CHILD_REQUIRE(scribbled.wait(20s));
    // The forged message never completes: dropped. (Its First chunk counted no message, where
    // the record it replaced counted one: the cursors then disagree by one message, which a
    // get() may report once as Error(corrupt) while it resynchronises.)
    try {
      CHILD_REQUIRE(!mine.get_for(50ms));
    } catch (const mp::Error& e) {
      CHILD_REQUIRE(e.code() == mp::errc::corrupt);
    }
    CHILD_REQUIRE(!mine.get_for(50ms));
    CHILD_REQUIRE(mine.size() == 0);
    mine.put("y");
    CHILD_REQUIRE(mine.get() == "y");
    return 0;
  });
  BOOST_REQUIRE(v.opened());
  // Overwrite the record "x" with a First chunk of a 1 TiB message (its length in the payload).
  d::ChannelState* c = state_of(q.segment());
  const std::uint64_t head = d::cursor_bytes(c->consumer.cursor.load());
  const d::RecordHeader first = forged_header(head, 8, d::kRecordFirst);
  const std::uint64_t total = std::uint64_t{1} << 40;
  std::memcpy(ring_of(q.segment()) + record_offset(q.segment(), 0), &first, sizeof first);
  std::memcpy(ring_of(q.segment()) + record_offset(q.segment(), 0) + sizeof first, &total, 8);
  v.scribbled();
  BOOST_TEST(v.finish() == 0);
}

// Finding 1: a holder table's count set to 0x7fffffff. Before: the next opener segfaulted in
// add_holder, and the creator at its next fork() in add_pending_fork. Now the count is clamped
// to the table: both go on, and the pipe still carries messages and reports EOF.
BOOST_AUTO_TEST_CASE(a_huge_holder_count_is_clamped, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.holders");
  // The creator's side runs in a child (so that the test binary survives the old code).
  const int creator = run_child([&] {
    auto [first, second] = mp::Pipe(mp::create_only, mp::Name(name), true, 4096);
    auto* view = static_cast<PipeHeaderView*>(first.segment().body());
    for (d::HolderTable& t : view->holders) t.count = 0x7fffffff;
    const pid_t pid = ::fork();  // a raw fork: the creator adds pending entries for its child
    if (pid == 0) _exit(0);
    int status = 0;
    CHILD_REQUIRE(pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    // Another process opens an end (add_holder) and talks.
    mp::Process opener([name] {
      mp::Connection c(mp::open_only, mp::Name(name), mp::PipeEnd::second);
      c.send(std::string("through"));
      return c.recv<std::string>() == "back" ? 0 : 1;
    });
    opener.start();
    CHILD_REQUIRE(first.recv<std::string>() == "through");
    first.send(std::string("back"));
    CHILD_REQUIRE(opener.join_for(20s) && opener.exitcode() == 0);
    for (d::HolderTable& t : view->holders) CHILD_REQUIRE(t.count <= d::kMaxHolders);
    return 0;
  });
  BOOST_TEST(creator == 0);
  mp::remove(mp::Name(name));  // left behind only if the creator crashed (the old code)
}

// An outside probe: a fork() that failed left its pending entry, which lapses after 2 s but was
// never pruned to make room, so 64 failed forks filled the table, set `overflow` for good, and
// the end never reported EOF again. A full table of lapsed forks now makes room.
BOOST_AUTO_TEST_CASE(a_table_full_of_lapsed_forks_makes_room_for_another, *boost::unit_test::timeout(60)) {
  auto table = std::make_unique<d::HolderTable>();
  std::memset(static_cast<void*>(table.get()), 0, sizeof *table);
  d::holder_table_init(*table, ::getpid(), 0, "test table");
  for (std::uint32_t i = 1; i < d::kMaxHolders; ++i) d::add_pending_fork(*table, ::getpid());
  BOOST_REQUIRE(table->count == d::kMaxHolders);
  for (std::uint32_t i = 1; i < d::kMaxHolders; ++i) table->holders[i].start = 1;  // lapsed
  d::add_pending_fork(*table, ::getpid());
  BOOST_TEST(table->overflow.load() == 0u);
  BOOST_TEST(table->count == 2u);  // this process, and the new pending fork
  BOOST_TEST(d::holders_alive(*table));
  BOOST_TEST(d::remove_holder(*table, ::getpid()) == false);  // the fork still counts
  d::remove_pending_fork(*table, ::getpid());
  BOOST_TEST(!d::holders_alive(*table));
}

// Finding 7: Connection(open_only, name, PipeEnd(7)) segfaulted; now Error(invalid_argument)
// naming the pipe.
BOOST_AUTO_TEST_CASE(an_invalid_pipe_end_is_refused, *boost::unit_test::timeout(60)) {
  const auto name = unique_name("hq.end7");
  auto ends = mp::Pipe(mp::create_only, mp::Name(name), true, 4096);
  const int code = run_child([&] {
    try {
      mp::Connection c(mp::open_only, mp::Name(name), static_cast<mp::PipeEnd>(7));
    } catch (const mp::Error& e) {
      const std::string what = e.what();
      CHILD_REQUIRE(e.code() == mp::errc::invalid_argument);
      CHILD_REQUIRE(what.find(name) != std::string::npos && what.find("PipeEnd(7)") != std::string::npos);
      return 0;
    }
    return 1;
  });
  BOOST_TEST(code == 0);
}

// Trying to break it: an attacker scribbles random bytes over the rings and the cursors of a
// string queue and a fixed-record queue for a second while a victim keeps putting and getting
// (timed calls). The victim may see Error(corrupt) and damaged payloads, nothing else: no crash,
// no hang, no other exception. Once the attacker stops, the victim recovers within a few
// Error(corrupt) (the consumer skips ahead, a misaligned producer cursor is realigned) and then
// every message arrives exactly.
BOOST_AUTO_TEST_CASE(random_scribbles_while_in_use_never_crash_or_hang, *boost::unit_test::timeout(90)) {
  const auto name = unique_name("hq.random");
  mp::Queue<std::string> q(mp::create_only, mp::Name(name), 64, 4096);
  mp::Queue<std::uint64_t> qf(mp::create_only, mp::Name(name + "f"), 64);
  mp::Event stop;
  Victim v([&](Gate& opened, Gate& scribbled) {
    (void)scribbled;
    mp::Queue<std::string> mine(mp::open_only, mp::Name(name));
    mp::Queue<std::uint64_t> mine_f(mp::open_only, mp::Name(name + "f"));
    opened.signal();
    long corrupt = 0, rounds = 0;
    while (!stop.is_set()) {
      ++rounds;
      try {
        (void)mine.put_for(std::string(1 + rounds % 90, 'm'), 50ms);
      } catch (const mp::Error& e) {
        CHILD_REQUIRE(e.code() == mp::errc::corrupt);
        ++corrupt;
      }
      try {
        (void)mine.get_for(50ms);
      } catch (const mp::Error& e) {
        CHILD_REQUIRE(e.code() == mp::errc::corrupt);
        ++corrupt;
      }
      try {
        (void)mine_f.put_for(static_cast<std::uint64_t>(rounds), 50ms);
        (void)mine_f.get_for(50ms);
      } catch (const mp::Error& e) {
        CHILD_REQUIRE(e.code() == mp::errc::corrupt);
        ++corrupt;
      }
    }
    std::fprintf(stderr, "victim: %ld rounds under attack, %ld Error(corrupt)\n", rounds, corrupt);
    // Recovery: a few rounds may still report the damage; then everything is exact.
    auto round_trip = [&](std::uint64_t i) {
      const std::string m = "message " + std::to_string(i);
      mine.put(m);
      mine_f.put(i);
      const auto got = mine.get_for(5s);
      const auto got_f = mine_f.get_for(5s);
      return got && *got == m && got_f && *got_f == i;
    };
    int settled = -1;
    for (int attempt = 0; attempt < 8 && settled < 0; ++attempt) {
      try {
        while (mine.try_get()) {
        }
        while (mine_f.try_get()) {
        }
        if (round_trip(attempt)) settled = attempt;
      } catch (const mp::Error& e) {
        CHILD_REQUIRE(e.code() == mp::errc::corrupt);
      }
    }
    CHILD_REQUIRE(settled >= 0);
    for (std::uint64_t i = 0; i < 200; ++i) CHILD_REQUIRE(round_trip(1000 + i));
    CHILD_REQUIRE(mine.size() == 0 && mine_f.size() == 0);
    return 0;
  });
  BOOST_REQUIRE(v.opened());
  const std::uint64_t seed = std::random_device{}();
  BOOST_TEST_MESSAGE("seed " << seed);
  std::mt19937_64 rng(seed);
  const auto until = std::chrono::steady_clock::now() + 1s;
  long writes = 0;
  while (std::chrono::steady_clock::now() < until) {
    for (const mp::Segment* seg : {&q.segment(), &qf.segment()}) {
      d::ChannelState* c = state_of(*seg);
      const std::uint64_t rb = seg->body_size() - d::kChannelHeader;
      const std::uint64_t r = rng();
      if (r % 16 == 0) {  // a cursor: near its place, or anywhere
        auto& end = (r >> 4) % 2 ? c->producer : c->consumer;
        const std::uint64_t now = end.cursor.load();
        const std::uint64_t v2 = (r >> 5) % 2 ? rng() : now + (rng() % (2 * rb)) - rb;
        end.cursor.store(v2);
      } else if (r % 16 == 1) {
        ((r >> 4) % 2 ? c->producer : c->consumer).other = rng();
      } else {  // 8 bytes anywhere in the ring
        const std::uint64_t word = rng();
        std::memcpy(ring_of(*seg) + (r >> 8) % (rb - 7), &word, 8);
      }
      ++writes;
    }
    std::this_thread::yield();
  }
  stop.set();
  BOOST_TEST_MESSAGE(writes << " hostile writes");
  BOOST_TEST(v.finish(60s) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
