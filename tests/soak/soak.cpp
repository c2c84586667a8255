// multiproc_soak — a long-running check of queues and pipes under random kills and restarts.
//
//   multiproc_soak                       # 10^8 messages (the full soak; see docs/soak.md)
//   multiproc_soak --minutes 30          # at least 30 minutes and at least 10^8 messages
//   multiproc_soak --smoke               # about 5 s with a few kills (the ctest entry soak.smoke)
//
// A supervisor (this process) creates the objects and starts 8 worker processes (mp::Process):
//
//   P0, P1 --Queue<Record> "fixed" (64-byte records)------------> C0, C1
//   P2 -----Queue<std::string> "strings" (named; 24 B .. 512 KiB)-> C3
//                                                                 \-> R0 --Pipe (named)--> C2
//
// so "fixed" has two producers and two consumers, "strings" one producer and two consumers (one of
// them a relay that forwards every message it gets through a one-way Pipe to C2). Strings larger
// than half the 64 KiB rings stream through them in chunks. Workers of "strings" and of the pipe
// open them by name in every incarnation; "fixed" is inherited through fork.
//
// Every message carries (producer, incarnation, sequence, checksum of everything else). The
// sequence numbers of a producer go on across its incarnations: an incarnation starts after every
// number its predecessor may have used. Consumers (and the relay) verify the checksum (a mismatch
// is a corruption), mark the number in a shared bitmap (already marked: a duplicate) and check
// that each producer's numbers reach them in increasing order (FIFO per producer). The
// supervisor SIGKILLs a random worker every --kill-every seconds (sometimes SIGSTOPs it for a
// moment instead) and restarts it. A worker publishes whether it is inside an operation (between
// the start of a put/get/send/recv and the moment its message is accounted for); the word of a
// killed worker stays as its death left it, so after reaping the supervisor knows whether the
// kill landed inside an operation, and which message was in flight (a producer's last number; the
// message a consumer or the relay had in hand). README's guarantee: each such kill loses at most
// the one message in flight, so the run fails when the losses exceed the kills inside an
// operation, in total or per queue; the summary attributes each lost message.
//
// Losses are counted exactly from the bitmap: a lagging scan (messages whose put returned more
// than --loss-lag seconds ago) counts unmarked numbers while the run goes, and a final scan after
// the queues were drained counts the rest. The bitmap is a window of 2^26 numbers per producer
// (8 MiB each), cleared behind the scan; a producer does not run more than a window ahead of it.
//
// Exit status: 0 all checks passed; 1 a check failed (duplicate, corruption, disorder, losses
// above the bound, a worker that failed on its own, something left in /dev/shm or a child left);
// 2 a hang (no message moved for --watchdog seconds); 64 bad arguments; 130 interrupted (SIGINT,
// SIGTERM, SIGHUP, SIGPIPE: the workers are killed and reaped, the objects destroyed, then the
// summary is printed). A SIGKILLed supervisor takes its workers along (daemon Processes: parent-
// death signal) but leaves its two names; the next run removes them.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <multiproc/multiproc.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mp = multiproc;

namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

// ---------------------------------------------------------------------------------------------
// Configuration

struct Options {
  std::uint64_t messages = 100'000'000;   // stop once this many were received...
  double min_seconds = 0;                 // ...and at least this long ran
  double max_seconds = 0;                 // stop here even short of the target (0: no limit)
  double kill_min = 0.5, kill_max = 2.0;  // seconds between two kill actions (uniform)
  double stop_share = 0.15;               // share of actions that SIGSTOP/SIGCONT instead of kill
  bool kills = true;
  double interval = 1.0;   // status line period
  double watchdog = 60.0;  // no progress for this long: a hang
  double loss_lag = 30.0;  // the live loss scan looks at puts older than this
  std::uint64_t seed = 0;
  bool seed_given = false;
};

[[noreturn]] void usage(const char* why) {
  if (why != nullptr) std::fprintf(stderr, "multiproc_soak: %s\n", why);
  std::fprintf(
      stderr,
      "usage: multiproc_soak [--smoke] [--messages N] [--minutes M | --seconds S]\n"
      "         [--max-minutes M] [--kill-every MIN:MAX] [--stop-share F] [--no-kills]\n"
      "         [--interval S] [--watchdog S] [--loss-lag S] [--seed N]\n"
      "  defaults: --messages 100000000 --kill-every 0.5:2 --stop-share 0.15\n"
      "            --interval 1 --watchdog 60 --loss-lag 30, seed from the clock\n"
      "  the run ends once N messages were received and the minimum time passed\n"
      "  --smoke = --messages 0 --seconds 5 --kill-every 0.2:0.6 --watchdog 8 --loss-lag 1\n");
  std::exit(64);
}

double parse_double(const char* flag, const char* s) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= 0)) {
    usage((std::string(flag) + ": not a non-negative number: " + s).c_str());
  }
  return v;
}

std::uint64_t parse_count(const char* flag, const char* s) {
  // Accepts 100000000, 1e8.
  const double v = parse_double(flag, s);
  if (v > 1e18 || v != static_cast<double>(static_cast<std::uint64_t>(v))) {
    usage((std::string(flag) + ": not a whole number: " + s).c_str());
  }
  return static_cast<std::uint64_t>(v);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage((std::string(a) + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--smoke") {
      o.messages = 0;
      o.min_seconds = 5;
      o.kill_min = 0.2;
      o.kill_max = 0.6;
      o.watchdog = 8;
      o.loss_lag = 1;
    } else if (a == "--messages") {
      o.messages = parse_count("--messages", value());
    } else if (a == "--minutes") {
      o.min_seconds = 60 * parse_double("--minutes", value());
    } else if (a == "--seconds") {
      o.min_seconds = parse_double("--seconds", value());
    } else if (a == "--max-minutes") {
      o.max_seconds = 60 * parse_double("--max-minutes", value());
    } else if (a == "--kill-every") {
      const std::string v = value();
      const auto colon = v.find(':');
      if (colon == std::string::npos) usage("--kill-every takes MIN:MAX (seconds)");
      o.kill_min = parse_double("--kill-every", v.substr(0, colon).c_str());
      o.kill_max = parse_double("--kill-every", v.substr(colon + 1).c_str());
      if (o.kill_max < o.kill_min || o.kill_max <= 0)
        usage("--kill-every: need 0 < MAX, MIN <= MAX");
    } else if (a == "--stop-share") {
      o.stop_share = parse_double("--stop-share", value());
      if (o.stop_share > 1) usage("--stop-share: a share between 0 and 1");
    } else if (a == "--no-kills") {
      o.kills = false;
    } else if (a == "--interval") {
      o.interval = std::max(0.05, parse_double("--interval", value()));
    } else if (a == "--watchdog") {
      o.watchdog = std::max(1.0, parse_double("--watchdog", value()));
    } else if (a == "--loss-lag") {
      o.loss_lag = parse_double("--loss-lag", value());
    } else if (a == "--seed") {
      o.seed = parse_count("--seed", value());
      o.seed_given = true;
    } else if (a == "--help" || a == "-h") {
      usage(nullptr);
    } else {
      usage(("unknown argument " + std::string(a)).c_str());
    }
  }
  if (!o.seed_given) {
    o.seed = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) % 1'000'000'007;
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Messages

constexpr int kWorkers = 8;
constexpr int kProducers = 3;  // P0, P1 (fixed records), P2 (strings)

// splitmix64: the payload bytes and the message sizes are a function of (seed, producer, seq).
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The header every message starts with. checksum covers the other header fields and the payload:
// a 64-bit hash of the payload bytes (std::hash of a string_view; length included) mixed with the
// header, so that a header of one message with the payload of another does not verify either.
struct Header {
  std::uint32_t producer;
  std::uint32_t incarnation;
  std::uint64_t seq;
  std::uint64_t checksum;
};
static_assert(sizeof(Header) == 24, "Header layout: 4 + 4 + 8 + 8 bytes");

std::uint64_t checksum_of(const Header& h, const void* payload, std::size_t n) {
  const std::uint64_t body =
      std::hash<std::string_view>{}(std::string_view(static_cast<const char*>(payload), n));
  return body ^
         mix(h.seq ^ (std::uint64_t{h.producer} << 56) ^ (std::uint64_t{h.incarnation} << 24));
}

void fill_payload(std::uint64_t seed, std::uint32_t producer, std::uint64_t seq, unsigned char* p,
                  std::size_t n) {
  std::uint64_t x = mix(seed ^ mix((std::uint64_t{producer} << 48) ^ seq));
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x = mix(x);
    std::memcpy(p + i, &x, 8);
  }
  x = mix(x);
  for (; i < n; ++i) p[i] = static_cast<unsigned char>(x >> (8 * (i % 8)));
}

// The fixed-size message of the "fixed" queue: 64 bytes, carried byte for byte.
struct Record {
  Header h;
  unsigned char payload[40];
};
static_assert(sizeof(Record) == 64, "Record: a 24-byte header and 40 bytes of payload");

// String sizes: 70% 24..255 B, 25% 256 B..8 KiB, 4.5% 8..32 KiB, 0.5% 32..512 KiB (more than half
// the 64 KiB ring: streamed in chunks).
std::size_t string_size(std::uint64_t seed, std::uint64_t seq) {
  const std::uint64_t r = mix(seed ^ 0x5eed ^ mix(seq));
  const std::uint64_t pick = r % 1000, v = r >> 20;
  if (pick < 700) return 24 + v % 232;
  if (pick < 950) return 256 + v % (8192 - 256);
  if (pick < 995) return 8192 + v % (32768 - 8192);
  return 32768 + v % (512 * 1024 - 32768);
}

// ---------------------------------------------------------------------------------------------
// Shared state (one anonymous SharedMemory block, inherited by every worker through fork)
//
// Layout: Shared, then kProducers bitmaps of kWindow bits (kWindowWords 64-bit words each).
// Every field is an std::atomic (lock-free, standard layout); the block is zero-filled when made.

constexpr std::uint64_t kWindow = std::uint64_t{1} << 26;  // sequence numbers per bitmap
constexpr std::uint64_t kWindowWords = kWindow / 64;

// kInOp: inside a put, get, send or recv (a producer: until its `completed` is stored);
// kHolding: a consumer's or the relay's call returned and `held` names the message it has in hand,
// until that message is accounted for (marked and counted; the relay: sent on).
enum Phase : std::uint32_t { kIdle = 0, kInOp = 1, kHolding = 2 };

struct alignas(64) WorkerStats {
  // Written by the worker only (seq_cst, so that no store of the operation moves across it):
  // kInOp from before its put/get/send/recv, kHolding once its message is in hand, kIdle once it
  // is accounted for. Read by the supervisor after reaping a killed worker (the reap orders it).
  std::atomic<std::uint32_t> phase;
  // The message in hand, (producer << 56) | seq: stored (relaxed) before phase = kHolding (seq_cst,
  // which orders it); read with phase after the reap.
  std::atomic<std::uint64_t> held;
  std::atomic<std::uint32_t> incarnation;  // by the supervisor before each start
  // Written by the worker (one writer at a time: the next incarnation starts after the previous
  // one was reaped), read by the supervisor for the status lines: relaxed, statistics only.
  std::atomic<std::uint64_t> received;   // terminal consumers: messages verified and marked
  std::atomic<std::uint64_t> bytes;      // bytes of those messages (producers: bytes put)
  std::atomic<std::uint64_t> relayed;    // R0: messages forwarded to the pipe
  std::atomic<std::uint64_t> corrupt;    // checksum mismatch or impossible header
  std::atomic<std::uint64_t> duplicate;  // a sequence number already marked
  std::atomic<std::uint64_t> disorder;   // a producer's numbers not increasing at this consumer
  std::atomic<std::uint64_t> late;       // marked after the loss scan had counted it lost
  std::atomic<std::uint64_t> throttled;  // producers: waits for the loss scan (window full)
  std::atomic<std::uint32_t> failed;     // the worker ended on an exception (text in `error`)
  char error[256];                       // first problem seen (written before `failed` / counters)
};

struct alignas(64) ProducerState {
  // Written by the producer (one incarnation at a time), read by consumers and the supervisor.
  // attempted = s + 1 is stored (release) before the put of s; completed = s + 1 after it returned.
  // Consumers read attempted (acquire) after getting s: the queue's publish/consume (release /
  // acquire on its cursor) orders it, so a genuine s always finds s < attempted.
  std::atomic<std::uint64_t> attempted;
  std::atomic<std::uint64_t> completed;
  std::atomic<std::uint32_t> incarnation;  // the producer's worker incarnation (supervisor)
  // The loss scan (supervisor only writes): `announced` is stored before the bitmap words of
  // [old, announced) are read and cleared, `cleared` after. Consumers read `announced` after
  // marking (both seq_cst: see mark()); producers wait while seq >= cleared + kWindow.
  std::atomic<std::uint64_t> announced;
  std::atomic<std::uint64_t> cleared;
};

struct Shared {
  std::atomic<std::uint32_t> stop;  // supervisor -> producers: finish (seq_cst, polled per message)
  WorkerStats workers[kWorkers];
  ProducerState producers[kProducers];
};

std::atomic<std::uint64_t>* bitmap(const mp::SharedMemory& bits, std::uint32_t producer) {
  return reinterpret_cast<std::atomic<std::uint64_t>*>(bits.data()) + producer * kWindowWords;
}

enum class Role {
  producer_fixed,
  producer_string,
  consumer_fixed,
  consumer_string,
  relay,
  consumer_pipe
};

struct WorkerSpec {
  const char* name;
  Role role;
  int producer;  // producers: its producer number
};
constexpr WorkerSpec kSpecs[kWorkers] = {
    {"P0", Role::producer_fixed, 0},  {"P1", Role::producer_fixed, 1},
    {"C0", Role::consumer_fixed, -1}, {"C1", Role::consumer_fixed, -1},
    {"P2", Role::producer_string, 2}, {"R0", Role::relay, -1},
    {"C2", Role::consumer_pipe, -1},  {"C3", Role::consumer_string, -1}};

bool is_producer(Role r) { return r == Role::producer_fixed || r == Role::producer_string; }

const char* role_name(Role r) {
  switch (r) {
    case Role::producer_fixed:
      return "producer of fixed";
    case Role::producer_string:
      return "producer of strings";
    case Role::consumer_fixed:
      return "consumer of fixed";
    case Role::consumer_string:
      return "consumer of strings";
    case Role::relay:
      return "relay strings -> pipe";
    case Role::consumer_pipe:
      return "consumer of the pipe";
  }
  return "?";
}

// What a worker needs: handles (copied into each child by its Process's callable).
struct Context {
  Options opt;
  mp::SharedMemory state;  // Shared
  mp::SharedMemory bits;   // the bitmaps
  mp::Queue<Record> fixed;
  std::string strings_name;
  std::string pipe_name;
  Shared* sh() const { return reinterpret_cast<Shared*>(state.data()); }
};

// ---------------------------------------------------------------------------------------------
// Workers

void note_error(WorkerStats& me, const std::string& what) {
  if (me.error[0] == '\0') std::snprintf(me.error, sizeof me.error, "%s", what.c_str());
}

// A consumer's checks of one message; true when it counts as received.
class Checker {
 public:
  Checker(const Context& ctx, WorkerStats& me) : ctx_(ctx), me_(me) { last_.fill(kNone); }

  bool accept(const Header& h, const void* payload, std::size_t payload_bytes, std::size_t bytes,
              bool strings) {
    Shared* sh = ctx_.sh();
    const bool producer_ok = strings ? h.producer == 2 : (h.producer == 0 || h.producer == 1);
    if (!producer_ok || checksum_of(h, payload, payload_bytes) != h.checksum) {
      me_.corrupt.fetch_add(1);
      note_error(me_, "corrupt message: producer " + std::to_string(h.producer) + " seq " +
                          std::to_string(h.seq) + " incarnation " + std::to_string(h.incarnation) +
                          " size " + std::to_string(bytes));
      return false;
    }
    ProducerState& ps = sh->producers[h.producer];
    if (h.seq >= ps.attempted.load(std::memory_order_acquire) ||
        h.incarnation > ps.incarnation.load()) {
      me_.corrupt.fetch_add(1);
      note_error(me_, "impossible header (never sent): producer " + std::to_string(h.producer) +
                          " seq " + std::to_string(h.seq));
      return false;
    }
    if (last_[h.producer] != kNone && h.seq <= last_[h.producer]) {
      me_.disorder.fetch_add(1);
      note_error(me_, "out of order: producer " + std::to_string(h.producer) + " seq " +
                          std::to_string(h.seq) + " after " + std::to_string(last_[h.producer]));
    }
    last_[h.producer] = h.seq;
    if (!mark(h.producer, h.seq)) {
      me_.duplicate.fetch_add(1);
      note_error(me_, "duplicate: producer " + std::to_string(h.producer) + " seq " +
                          std::to_string(h.seq));
      return false;
    }
    me_.received.store(me_.received.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    me_.bytes.store(me_.bytes.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
    return true;
  }

 private:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

  // Returns false for a duplicate. All seq_cst: with the scan's order (announce, then read and
  // clear), a mark after the scan read the word is seen here as announced > seq with the bit
  // still set, and undone, and counted as late; a mark before it was counted by the scan.
  bool mark(std::uint32_t producer, std::uint64_t seq) {
    std::atomic<std::uint64_t>& word = bitmap(ctx_.bits, producer)[(seq % kWindow) / 64];
    const std::uint64_t bit = std::uint64_t{1} << (seq % 64);
    if (word.fetch_or(bit) & bit) return false;
    if (seq < ctx_.sh()->producers[producer].announced.load()) {
      if (word.fetch_and(~bit) & bit) me_.late.fetch_add(1);
    }
    return true;
  }

  const Context& ctx_;
  WorkerStats& me_;
  std::array<std::uint64_t, kProducers> last_{};
};

// The first number this incarnation may use, after waiting while the window is full.
bool wait_for_window(Shared* sh, WorkerStats& me, std::uint64_t seq, std::uint32_t producer) {
  bool counted = false;
  while (seq >= sh->producers[producer].cleared.load() + kWindow - 64) {
    if (sh->stop.load() != 0) return false;
    if (!counted) {
      me.throttled.fetch_add(1);
      counted = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling the scan's progress
  }
  return true;
}

int run_producer(const Context& ctx, int w) {
  Shared* sh = ctx.sh();
  WorkerStats& me = sh->workers[w];
  const auto p = static_cast<std::uint32_t>(kSpecs[w].producer);
  ProducerState& ps = sh->producers[p];
  const std::uint32_t inc = me.incarnation.load();
  std::uint64_t seq = ps.attempted.load();  // after every number a dead predecessor may have used
  if (kSpecs[w].role == Role::producer_fixed) {
    const mp::Queue<Record>& q = ctx.fixed;
    Record r{};
    while (sh->stop.load() == 0) {
      if (!wait_for_window(sh, me, seq, p)) break;
      r.h = Header{p, inc, seq, 0};
      fill_payload(ctx.opt.seed, p, seq, r.payload, sizeof r.payload);
      r.h.checksum = checksum_of(r.h, r.payload, sizeof r.payload);
      me.phase.store(kInOp);
      ps.attempted.store(seq + 1);
      q.put(r);
      ps.completed.store(seq + 1);
      me.phase.store(kIdle);
      me.bytes.store(me.bytes.load(std::memory_order_relaxed) + sizeof r,
                     std::memory_order_relaxed);
      ++seq;
    }
  } else {
    mp::Queue<std::string> q(mp::open_only, ctx.strings_name);
    std::string m;
    while (sh->stop.load() == 0) {
      if (!wait_for_window(sh, me, seq, p)) break;
      const std::size_t n = string_size(ctx.opt.seed, seq);
      m.resize(n);
      Header h{p, inc, seq, 0};
      auto* bytes = reinterpret_cast<unsigned char*>(m.data());
      fill_payload(ctx.opt.seed, p, seq, bytes + sizeof h, n - sizeof h);
      h.checksum = checksum_of(h, bytes + sizeof h, n - sizeof h);
      std::memcpy(bytes, &h, sizeof h);
      me.phase.store(kInOp);
      ps.attempted.store(seq + 1);
      q.put(m);
      ps.completed.store(seq + 1);
      me.phase.store(kIdle);
      me.bytes.store(me.bytes.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
      ++seq;
    }
  }
  return 0;
}

// Notes the message in hand (see WorkerStats::held).
void hold(WorkerStats& me, const Header& h) {
  me.held.store((std::uint64_t{h.producer} << 56) | (h.seq & ((std::uint64_t{1} << 56) - 1)),
                std::memory_order_relaxed);
  me.phase.store(kHolding);
}

// Splits a string message into its header and payload; false if it is too short to have one.
bool split(const std::string& m, Header& h) {
  if (m.size() < sizeof h) return false;
  std::memcpy(&h, m.data(), sizeof h);
  return true;
}

// A string consumer's loop: takes messages with `next()` until it throws End (the queue closed,
// the pipe's peer gone), checking each.
template <class End, class Check, class Short, class Next>
int consume_strings(WorkerStats& me, Check& check, Short& short_message, Next next) {
  for (;;) {
    me.phase.store(kInOp);
    std::string m;
    try {
      m = next();
    } catch (const End&) {
      me.phase.store(kIdle);
      return 0;
    }
    Header h;
    if (!split(m, h)) {
      short_message(m.size());
    } else {
      hold(me, h);
      check.accept(h, m.data() + sizeof h, m.size() - sizeof h, m.size(), true);
    }
    me.phase.store(kIdle);
  }
}

int run_consumer(const Context& ctx, int w) {
  Shared* sh = ctx.sh();
  WorkerStats& me = sh->workers[w];
  Checker check(ctx, me);
  const Role role = kSpecs[w].role;
  auto short_message = [&](std::size_t n) {
    me.corrupt.fetch_add(1);
    note_error(me, "corrupt: a message of " + std::to_string(n) + " bytes, shorter than a header");
  };
  if (role == Role::consumer_fixed) {
    const mp::Queue<Record>& q = ctx.fixed;
    for (;;) {
      me.phase.store(kInOp);
      Record r;
      try {
        r = q.get();
      } catch (const mp::Closed&) {
        me.phase.store(kIdle);
        return 0;
      }
      hold(me, r.h);
      check.accept(r.h, r.payload, sizeof r.payload, sizeof r, false);
      me.phase.store(kIdle);
    }
  } else if (role == Role::consumer_string) {
    mp::Queue<std::string> q(mp::open_only, ctx.strings_name);
    return consume_strings<mp::Closed>(me, check, short_message, [&] { return q.get(); });
  } else {  // consumer_pipe
    mp::Connection in(mp::open_only, ctx.pipe_name, mp::PipeEnd::first);
    return consume_strings<mp::EOFError>(me, check, short_message, [&] { return in.recv_bytes(); });
  }
}

int run_relay(const Context& ctx, int w) {
  Shared* sh = ctx.sh();
  WorkerStats& me = sh->workers[w];
  mp::Queue<std::string> q(mp::open_only, ctx.strings_name);
  mp::Connection out(mp::open_only, ctx.pipe_name, mp::PipeEnd::second);
  for (;;) {
    me.phase.store(kInOp);
    std::string m;
    try {
      m = q.get();
    } catch (const mp::Closed&) {
      me.phase.store(kIdle);
      out.close();
      return 0;
    }
    Header h;
    if (split(m, h)) hold(me, h);
    if (!split(m, h) || h.producer != 2 ||
        checksum_of(h, m.data() + sizeof h, m.size() - sizeof h) != h.checksum) {
      me.corrupt.fetch_add(1);
      note_error(me, "relay: corrupt message of " + std::to_string(m.size()) + " bytes");
    } else {
      out.send_bytes(m);
      me.relayed.store(me.relayed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    me.phase.store(kIdle);
  }
}

// SIGPIPE too: a supervisor whose output pipe closed (`| head`) still tears down.
constexpr int kInterrupts[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
pid_t g_supervisor = 0;
volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_interrupt(int sig) {
  if (::getpid() != g_supervisor) {  // a worker forked before it reset the handler
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_interrupted = sig;
}

int worker_main(const Context& ctx, int w) {
  for (int sig : kInterrupts) std::signal(sig, SIG_DFL);  // the handler is the supervisor's
  WorkerStats& me = ctx.sh()->workers[w];
  try {
    switch (kSpecs[w].role) {
      case Role::producer_fixed:
      case Role::producer_string:
        return run_producer(ctx, w);
      case Role::relay:
        return run_relay(ctx, w);
      default:
        return run_consumer(ctx, w);
    }
  } catch (const std::exception& e) {
    note_error(me, std::string(kSpecs[w].name) + " failed: " + e.what());
    me.failed.store(1);
    return 3;
  }
}

// ---------------------------------------------------------------------------------------------
// The supervisor

std::set<std::string> list_dev_shm() {
  std::set<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.insert(n);
    }
    ::closedir(d);
  }
  return names;
}

// A supervisor killed by SIGKILL cannot remove its names (the workers die with it: parent-death
// signal). Removes the names of such earlier runs: mp.soak.<pid>.* whose pid no longer exists.
void remove_stale_names() {
  std::size_t removed = 0;
  for (const std::string& n : list_dev_shm()) {
    unsigned long pid = 0;
    char rest[32] = {};
    if (std::sscanf(n.c_str(), "mp.soak.%lu.%31s", &pid, rest) != 2) continue;
    if (std::strcmp(rest, "strings") != 0 && std::strcmp(rest, "pipe") != 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // still runs
    try {
      if (mp::remove(n.substr(3))) ++removed;
    } catch (const mp::Error& e) {  // another user's, say: leave it
      std::printf("# left %s: %s\n", n.c_str(), e.what());
    }
  }
  if (removed != 0) {
    std::printf(
        "# removed %zu names left in /dev/shm by earlier runs whose supervisor was killed\n",
        removed);
  }
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one;
  f >> one;
  return one.empty() ? "?" : one;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

struct Totals {
  std::uint64_t received = 0, bytes = 0, relayed = 0, corrupt = 0, duplicate = 0, disorder = 0,
                late = 0, throttled = 0, attempted = 0, completed = 0;
};

class Soak {
 public:
  explicit Soak(const Options& o)
      : opt_(o),
        rng_(o.seed),
        tag_("soak." + std::to_string(::getpid())),
        strings_(mp::create_only, tag_ + ".strings", 256, 64 * 1024),
        pipe_(mp::Pipe(mp::create_only, tag_ + ".pipe", false, 64 * 1024)),
        ctx_{o,
             mp::SharedMemory(sizeof(Shared)),
             mp::SharedMemory(kProducers * kWindowWords * sizeof(std::uint64_t)),
             mp::Queue<Record>(1024),
             tag_ + ".strings",
             tag_ + ".pipe"} {
    new (ctx_.state.data()) Shared();  // all zero; the block is zero-filled too
    std::uninitialized_default_construct_n(bitmap(ctx_.bits, 0), kProducers * kWindowWords);
  }

  const std::string& tag() const { return tag_; }

  int run() {
    sh_ = ctx_.sh();
    t0_ = Clock::now();
    std::printf(
        "# objects: fixed Queue<Record>(1024), 64-byte records; strings Queue<std::string>"
        " '%s' (256 messages, 64 KiB ring: over %zu bytes streams); Pipe '%s' (one-way, "
        "64 KiB ring)\n",
        ctx_.strings_name.c_str(), strings_.max_message_bytes(), ctx_.pipe_name.c_str());
    for (int w = 0; w < kWorkers; ++w) start(w);
    std::printf("# workers:");
    for (int w = 0; w < kWorkers; ++w) {
      std::printf(" %s=%d (%s)%s", kSpecs[w].name, static_cast<int>(procs_[w]->pid()),
                  role_name(kSpecs[w].role), w + 1 < kWorkers ? "," : "\n");
    }
    std::printf("%8s %12s %10s %8s %6s %6s %6s %8s %6s %4s %4s %4s %5s\n", "elapsed", "messages",
                "msg/s", "MB/s", "kills", "stops", "restart", "lost", "late", "dup", "corr", "ord",
                "load");
    std::fflush(stdout);

    next_kill_ = t0_ + pick_interval();
    next_print_ = t0_ + to_dur(opt_.interval);
    last_progress_ = t0_;
    int rc = main_loop();
    if (rc == 0) rc = drain();
    teardown();
    return summary(rc);
  }

 private:
  static Clock::duration to_dur(double s) {
    return std::chrono::duration_cast<Clock::duration>(Seconds(s));
  }
  double elapsed(Clock::time_point t) const { return Seconds(t - t0_).count(); }
  Clock::duration pick_interval() {
    return to_dur(std::uniform_real_distribution<double>(opt_.kill_min, opt_.kill_max)(rng_));
  }

  void start(int w) {
    WorkerStats& me = sh_->workers[w];
    me.incarnation.store(me.incarnation.load() + 1);
    if (kSpecs[w].producer >= 0) {
      sh_->producers[kSpecs[w].producer].incarnation.store(me.incarnation.load());
    }
    me.phase.store(kIdle);
    const Context ctx = ctx_;
    procs_[w].emplace([ctx, w] { return worker_main(ctx, w); });
    procs_[w]->set_name(std::string("soak.") + kSpecs[w].name).set_daemon(true);
    procs_[w]->start();
  }

  // Reaps worker w (already ended or killed), notes how it ended, and restarts it unless draining.
  void reaped(int w, bool killed, bool restart) {
    WorkerStats& me = sh_->workers[w];
    const std::optional<int> code = procs_[w]->exitcode();
    if (killed && code == -SIGKILL) {
      ++kills_;
      const std::uint32_t phase = me.phase.load();
      if (phase != kIdle) {
        if (kSpecs[w].producer >= 0) {  // the number it was putting (or the one before: no loss)
          const auto p = static_cast<std::uint32_t>(kSpecs[w].producer);
          const std::uint64_t a = sh_->producers[p].attempted.load();
          if (a > 0) in_flight_at_kill_.insert({p, a - 1});
        } else if (phase == kHolding) {  // the message it had in hand
          const std::uint64_t held = me.held.load();
          in_hand_at_kill_.insert(
              {static_cast<std::uint32_t>(held >> 56), held & ((std::uint64_t{1} << 56) - 1)});
          ++kills_holding_by_role_[static_cast<int>(kSpecs[w].role)];
        }
        ++kills_in_op_;
        ++kills_in_op_of_[w];
        ++kills_in_op_by_role_[static_cast<int>(kSpecs[w].role)];
      }
      ++kills_by_role_[static_cast<int>(kSpecs[w].role)];
    } else {
      ++failures_;
      std::printf(
          "# FAILURE: worker %s (pid %d, incarnation %u) ended by itself with exit code %s"
          "%s%s\n",
          kSpecs[w].name, static_cast<int>(procs_[w]->pid()), me.incarnation.load(),
          code ? std::to_string(*code).c_str() : "?", me.error[0] ? ": " : "", me.error);
      std::fflush(stdout);
    }
    procs_[w]->close();
    procs_[w].reset();
    if (restart) {
      start(w);
      ++restarts_;
    }
  }

  void kill_action() {
    const int w = std::uniform_int_distribution<int>(0, kWorkers - 1)(rng_);
    const bool stop = std::uniform_real_distribution<double>(0, 1)(rng_) < opt_.stop_share;
    const double pause = std::uniform_real_distribution<double>(0.02, 0.4)(rng_);
    if (stop && !stopped_until_[w]) {
      if (::kill(procs_[w]->pid(), SIGSTOP) == 0) {
        stopped_until_[w] = Clock::now() + to_dur(pause);
        ++stops_;
      }
      return;
    }
    procs_[w]->kill();  // SIGKILL ends a stopped process too
    if (!procs_[w]->join_for(std::chrono::seconds(10))) {
      std::printf("# FAILURE: worker %s (pid %d) still runs 10 s after SIGKILL\n", kSpecs[w].name,
                  static_cast<int>(procs_[w]->pid()));
      hang_ = true;
      return;
    }
    stopped_until_[w].reset();
    reaped(w, true, true);
  }

  void resume_stopped(Clock::time_point now, bool all) {
    for (int w = 0; w < kWorkers; ++w) {
      if (stopped_until_[w] && (all || now >= *stopped_until_[w])) {
        ::kill(procs_[w]->pid(), SIGCONT);
        stopped_until_[w].reset();
      }
    }
  }

  Totals totals() const {
    Totals t;
    for (const WorkerStats& s : sh_->workers) {
      t.received += s.received.load(std::memory_order_relaxed);
      t.corrupt += s.corrupt.load(std::memory_order_relaxed);
      t.duplicate += s.duplicate.load(std::memory_order_relaxed);
      t.disorder += s.disorder.load(std::memory_order_relaxed);
      t.late += s.late.load(std::memory_order_relaxed);
      t.throttled += s.throttled.load(std::memory_order_relaxed);
      t.relayed += s.relayed.load(std::memory_order_relaxed);
    }
    for (int w = 0; w < kWorkers; ++w) {
      if (!is_producer(kSpecs[w].role)) {
        t.bytes += sh_->workers[w].bytes.load(std::memory_order_relaxed);
      }
    }
    for (const ProducerState& p : sh_->producers) {
      t.attempted += p.attempted.load();
      t.completed += p.completed.load();
    }
    return t;
  }

  // Counts the unmarked numbers of [announced, hi) of producer p and clears their bits.
  void scan(std::uint32_t p, std::uint64_t hi) {
    ProducerState& ps = sh_->producers[p];
    const std::uint64_t lo = ps.announced.load();
    if (hi <= lo) return;
    ps.announced.store(hi);  // before reading the words: see Checker::mark
    std::atomic<std::uint64_t>* words = bitmap(ctx_.bits, p);
    std::uint64_t s = lo;
    while (s < hi) {
      const std::uint64_t first = s % 64;
      const std::uint64_t count = std::min<std::uint64_t>(64 - first, hi - s);
      const std::uint64_t mask =
          (count == 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << count) - 1)) << first;
      const std::uint64_t old = words[(s % kWindow) / 64].fetch_and(~mask);
      for (std::uint64_t missing = mask & ~old; missing != 0; missing &= missing - 1) {
        const std::uint64_t seq = s - first + static_cast<std::uint64_t>(__builtin_ctzll(missing));
        ++lost_;
        ++lost_by_queue_[p == 2 ? 1 : 0];
        if (in_flight_at_kill_.count({p, seq}) != 0) {
          ++lost_at_producer_kill_;
        } else if (in_hand_at_kill_.count({p, seq}) != 0) {
          ++lost_in_hand_;
        } else {
          ++lost_otherwise_[p == 2 ? 1 : 0];
        }
        if (lost_examples_.size() < 20) {
          lost_examples_.push_back("producer " + std::to_string(p) + " seq " + std::to_string(seq));
        }
      }
      s += count;
    }
    ps.cleared.store(hi);
  }

  // The live scan: numbers whose put returned more than loss_lag seconds ago.
  void lagging_scan(Clock::time_point now) {
    std::array<std::uint64_t, kProducers> snap{};
    for (int p = 0; p < kProducers; ++p) snap[p] = sh_->producers[p].completed.load();
    history_.push_back({now, snap});
    const auto horizon = now - to_dur(opt_.loss_lag);
    std::optional<std::array<std::uint64_t, kProducers>> upto;
    while (!history_.empty() && history_.front().first <= horizon) {
      upto = history_.front().second;
      history_.pop_front();
    }
    if (!upto) return;
    for (int p = 0; p < kProducers; ++p) scan(static_cast<std::uint32_t>(p), (*upto)[p]);
  }

  void print_line(Clock::time_point now) {
    const Totals t = totals();
    const double dt = Seconds(now - last_print_at_).count();
    const double rate = dt > 0 ? static_cast<double>(t.received - last_received_) / dt : 0;
    const double mbps = dt > 0 ? static_cast<double>(t.bytes - last_bytes_) / dt / 1e6 : 0;
    const std::uint64_t late = t.late;
    std::printf("%8.1f %12llu %10.0f %8.1f %6llu %6llu %6llu %8lld %6llu %4llu %4llu %4llu %5s\n",
                elapsed(now), static_cast<unsigned long long>(t.received), rate, mbps,
                static_cast<unsigned long long>(kills_), static_cast<unsigned long long>(stops_),
                static_cast<unsigned long long>(restarts_),
                static_cast<long long>(lost_) - static_cast<long long>(late),
                static_cast<unsigned long long>(late), static_cast<unsigned long long>(t.duplicate),
                static_cast<unsigned long long>(t.corrupt),
                static_cast<unsigned long long>(t.disorder), load_average().c_str());
    std::fflush(stdout);
    peak_rate_ = std::max(peak_rate_, rate);
    last_print_at_ = now;
    last_received_ = t.received;
    last_bytes_ = t.bytes;
  }

  int main_loop() {
    last_print_at_ = t0_;
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the supervisor's tick
      const Clock::time_point now = Clock::now();
      if (g_interrupted != 0) {
        std::printf("# interrupted by signal %d: killing the workers\n", int(g_interrupted));
        return 130;
      }
      resume_stopped(now, false);
      for (int w = 0; w < kWorkers; ++w) {
        if (!procs_[w]->is_alive()) reaped(w, false, true);  // it ended on its own: a failure
      }
      if (opt_.kills && now >= next_kill_) {
        kill_action();
        if (hang_) return 2;
        next_kill_ = now + pick_interval();
      }
      const Totals t = totals();
      const std::uint64_t progress = t.received + t.completed + t.relayed;
      if (progress != last_progress_value_) {
        last_progress_value_ = progress;
        last_progress_ = now;
      } else if (Seconds(now - last_progress_).count() > opt_.watchdog) {
        report_hang("no message moved");
        return 2;
      }
      if (now >= next_print_) {
        lagging_scan(now);
        print_line(now);
        next_print_ += to_dur(opt_.interval);
        if (next_print_ < now) next_print_ = now + to_dur(opt_.interval);
      }
      const double e = elapsed(now);
      if (t.received >= opt_.messages && e >= opt_.min_seconds) return 0;
      if (opt_.max_seconds > 0 && e >= opt_.max_seconds) {
        std::printf("# --max-minutes reached before the message target\n");
        return 0;
      }
    }
  }

  void report_hang(const char* what) {
    hang_ = true;
    std::printf("# HANG: %s for %.0f s (watchdog). Workers:\n", what, opt_.watchdog);
    for (int w = 0; w < kWorkers; ++w) {
      const WorkerStats& s = sh_->workers[w];
      std::printf("#   %s pid %d incarnation %u phase %s%s\n", kSpecs[w].name,
                  procs_[w] ? static_cast<int>(procs_[w]->pid()) : 0, s.incarnation.load(),
                  s.phase.load() == kInOp      ? "in-op"
                  : s.phase.load() == kHolding ? "holding"
                                               : "idle",
                  stopped_until_[w] ? " (stopped)" : "");
    }
    std::printf("#   fixed: size %zu; strings: size %zu\n", ctx_.fixed.size(), strings_.size());
    for (int p = 0; p < kProducers; ++p) {
      const ProducerState& ps = sh_->producers[p];
      std::printf("#   producer %d: attempted %llu completed %llu cleared %llu\n", p,
                  static_cast<unsigned long long>(ps.attempted.load()),
                  static_cast<unsigned long long>(ps.completed.load()),
                  static_cast<unsigned long long>(ps.cleared.load()));
    }
    std::fflush(stdout);
  }

  // Joins the given workers within the watchdog's time; false (a hang) otherwise.
  bool join_all(std::initializer_list<int> which, const char* stage) {
    const auto deadline = Clock::now() + to_dur(opt_.watchdog);
    for (int w : which) {
      if (!procs_[w]->join_until(deadline)) {
        report_hang(stage);
        return false;
      }
    }
    return true;
  }

  // Stops the producers, closes the queues and the supervisor's pipe ends, lets the consumers
  // drain.
  int drain() {
    resume_stopped(Clock::now(), true);
    const double at = elapsed(Clock::now());
    sh_->stop.store(1);
    if (!join_all({0, 1, 4}, "producers did not finish after the stop")) return 2;
    ctx_.fixed.close();
    strings_.close();
    pipe_.first.close();
    pipe_.second.close();
    if (!join_all({2, 3, 5, 6, 7}, "consumers did not drain")) return 2;
    drained_in_ = elapsed(Clock::now()) - at;
    for (int w = 0; w < kWorkers; ++w) {
      const std::optional<int> code = procs_[w]->exitcode();
      if (code != 0) {
        reaped(w, false, false);
      } else {
        procs_[w]->close();
        procs_[w].reset();
      }
    }
    for (int p = 0; p < kProducers; ++p) {  // everything put has been received or is lost
      scan(static_cast<std::uint32_t>(p), sh_->producers[p].attempted.load());
    }
    return 0;
  }

  // Kills and reaps whatever still runs (after a hang or an interruption; nothing after a drain).
  void teardown() {
    for (int w = 0; w < kWorkers; ++w) {
      if (!procs_[w]) continue;
      procs_[w]->kill();
      if (stopped_until_[w]) ::kill(procs_[w]->pid(), SIGCONT);
      procs_[w]->join();
      procs_[w]->close();
      procs_[w].reset();
    }
  }

  int summary(int rc) {
    const Clock::time_point end = Clock::now();
    const Totals t = totals();
    const double secs = elapsed(end);
    const std::int64_t lost = static_cast<std::int64_t>(lost_) - static_cast<std::int64_t>(t.late);
    const std::int64_t unaccounted =
        static_cast<std::int64_t>(t.attempted) - static_cast<std::int64_t>(t.received);
    std::printf("\n# summary (seed %llu)\n", static_cast<unsigned long long>(opt_.seed));
    std::printf("elapsed            %.1f s (drain %.2f s)\n", secs, drained_in_);
    std::printf("messages received  %llu (%.0f msg/s average, peak interval %.0f msg/s)\n",
                static_cast<unsigned long long>(t.received), t.received / std::max(secs, 1e-9),
                peak_rate_);
    std::printf("bytes received     %.1f MB (%.1f MB/s average)\n", t.bytes / 1e6,
                t.bytes / 1e6 / std::max(secs, 1e-9));
    std::printf("relayed (R0->pipe) %llu\n", static_cast<unsigned long long>(t.relayed));
    std::printf("messages put       %llu (sequence numbers used; %llu puts returned)\n",
                static_cast<unsigned long long>(t.attempted),
                static_cast<unsigned long long>(t.completed));
    std::printf("kills (SIGKILL)    %llu, %llu of them inside an operation\n",
                static_cast<unsigned long long>(kills_),
                static_cast<unsigned long long>(kills_in_op_));
    for (int r = 0; r < 6; ++r) {
      if (kills_by_role_[r] == 0) continue;
      std::printf("  %-22s %llu (%llu inside an operation", role_name(static_cast<Role>(r)),
                  static_cast<unsigned long long>(kills_by_role_[r]),
                  static_cast<unsigned long long>(kills_in_op_by_role_[r]));
      if (!is_producer(static_cast<Role>(r))) {
        std::printf(", %llu of them with a message in hand",
                    static_cast<unsigned long long>(kills_holding_by_role_[r]));
      }
      std::printf(")\n");
    }
    std::printf("stops (SIGSTOP/CONT) %llu\n", static_cast<unsigned long long>(stops_));
    std::printf("restarts           %llu\n", static_cast<unsigned long long>(restarts_));
    std::printf("lost               %lld (never received; late arrivals %llu already deducted)\n",
                static_cast<long long>(lost), static_cast<unsigned long long>(t.late));
    std::printf("  the message a killed producer was putting      %llu\n",
                static_cast<unsigned long long>(lost_at_producer_kill_));
    std::printf("  the message a killed consumer or relay had     %llu\n",
                static_cast<unsigned long long>(lost_in_hand_));
    std::printf("  otherwise, fixed queue                         %llu\n",
                static_cast<unsigned long long>(lost_otherwise_[0]));
    std::printf("  otherwise, strings and pipe                    %llu\n",
                static_cast<unsigned long long>(lost_otherwise_[1]));
    std::printf(
        "  (otherwise: a consumer or relay killed inside get/recv, which loses a streamed "
        "message it had begun, or killed in the few instructions between the call's return "
        "and its note of the message in hand)\n");
    std::printf(
        "begun - received   %lld (lost, plus any counted as lost by a consumer killed "
        "between marking and counting)\n",
        static_cast<long long>(unaccounted));
    std::printf("duplicates         %llu\n", static_cast<unsigned long long>(t.duplicate));
    std::printf("corruptions        %llu\n", static_cast<unsigned long long>(t.corrupt));
    std::printf("out of order       %llu\n", static_cast<unsigned long long>(t.disorder));
    std::printf("worker failures    %llu\n", static_cast<unsigned long long>(failures_));
    std::printf("producer throttles %llu (waits for the loss scan's window)\n",
                static_cast<unsigned long long>(t.throttled));
    if (!lost_examples_.empty()) {
      std::printf("lost, first ones  ");
      for (const std::string& e : lost_examples_) std::printf(" [%s]", e.c_str());
      std::printf("\n");
    }
    for (int w = 0; w < kWorkers; ++w) {
      if (sh_->workers[w].error[0] != '\0') {
        std::printf("first problem at %s: %s\n", kSpecs[w].name, sh_->workers[w].error);
      }
    }
    std::vector<std::string> failed;
    if (rc == 2 || hang_) failed.push_back("hang");
    if (rc == 130) failed.push_back("interrupted");
    if (t.duplicate != 0) failed.push_back("duplicates");
    if (t.corrupt != 0) failed.push_back("corruptions");
    if (t.disorder != 0) failed.push_back("out-of-order messages");
    if (failures_ != 0) failed.push_back("workers that failed on their own");
    // The same bound per queue: messages of P0 and P1 are lost only by kills of P0, P1, C0, C1;
    // those of P2 only by kills of P2, R0, C2, C3. Late arrivals are taken off per queue too.
    auto in_op = [&](std::initializer_list<int> workers) {
      std::uint64_t n = 0;
      for (int w : workers) n += kills_in_op_of_[w];
      return n;
    };
    auto late_of = [&](std::initializer_list<int> workers) {
      std::uint64_t n = 0;
      for (int w : workers) n += sh_->workers[w].late.load();
      return n;
    };
    const std::int64_t lost_fixed =
        static_cast<std::int64_t>(lost_by_queue_[0]) - static_cast<std::int64_t>(late_of({2, 3}));
    const std::int64_t lost_strings =
        static_cast<std::int64_t>(lost_by_queue_[1]) - static_cast<std::int64_t>(late_of({6, 7}));
    const std::uint64_t bound_fixed = in_op({0, 1, 2, 3}), bound_strings = in_op({4, 5, 6, 7});
    if (rc == 0) {  // the loss bound holds only once drained
      if (lost < 0 || unaccounted < 0) failed.push_back("more received than sent");
      if (lost > static_cast<std::int64_t>(kills_in_op_) ||
          unaccounted > static_cast<std::int64_t>(kills_in_op_) ||
          lost_fixed > static_cast<std::int64_t>(bound_fixed) ||
          lost_strings > static_cast<std::int64_t>(bound_strings)) {
        failed.push_back("losses above the bound");
      }
    }
    std::printf(
        "bound per queue    fixed: lost %lld <= %llu kills of P0, P1, C0, C1 inside an "
        "operation; strings and pipe: lost %lld <= %llu kills of P2, R0, C2, C3 inside "
        "an operation\n",
        static_cast<long long>(lost_fixed), static_cast<unsigned long long>(bound_fixed),
        static_cast<long long>(lost_strings), static_cast<unsigned long long>(bound_strings));
    std::printf(
        "bound              lost <= kills inside an operation (README: a killed producer "
        "or consumer loses at most its in-flight message): %lld <= %llu %s\n",
        static_cast<long long>(std::max(lost, unaccounted)),
        static_cast<unsigned long long>(kills_in_op_),
        rc == 0
            ? (std::max(lost, unaccounted) <= static_cast<std::int64_t>(kills_in_op_) ? "holds"
                                                                                      : "VIOLATED")
            : "(not checked: not drained)");
    failed_ = failed;
    if (failed.empty()) return 0;
    return rc != 0 ? rc : 1;
  }

 public:
  const std::vector<std::string>& failed() const { return failed_; }

 private:
  Options opt_;
  std::mt19937_64 rng_;
  std::string tag_;
  mp::Queue<std::string> strings_;
  std::pair<mp::Connection, mp::Connection> pipe_;
  Context ctx_;
  Shared* sh_ = nullptr;
  std::array<std::optional<mp::Process>, kWorkers> procs_;
  std::array<std::optional<Clock::time_point>, kWorkers> stopped_until_;
  Clock::time_point t0_, next_kill_, next_print_, last_progress_, last_print_at_;
  std::uint64_t last_progress_value_ = 0, last_received_ = 0, last_bytes_ = 0;
  std::deque<std::pair<Clock::time_point, std::array<std::uint64_t, kProducers>>> history_;
  std::uint64_t kills_ = 0, kills_in_op_ = 0, stops_ = 0, restarts_ = 0, failures_ = 0, lost_ = 0;
  std::array<std::uint64_t, 6> kills_by_role_{}, kills_in_op_by_role_{};
  std::vector<std::string> lost_examples_;
  std::set<std::pair<std::uint32_t, std::uint64_t>> in_flight_at_kill_;  // (producer, seq)
  std::set<std::pair<std::uint32_t, std::uint64_t>> in_hand_at_kill_;    // (producer, seq)
  std::uint64_t lost_at_producer_kill_ = 0, lost_in_hand_ = 0;
  std::array<std::uint64_t, 2> lost_otherwise_{};  // fixed, strings
  std::array<std::uint64_t, 2> lost_by_queue_{};   // fixed (P0, P1), strings (P2, via R0 too)
  std::array<std::uint64_t, 6> kills_holding_by_role_{};
  std::array<std::uint64_t, kWorkers> kills_in_op_of_{};
  std::vector<std::string> failed_;
  double peak_rate_ = 0, drained_in_ = 0;
  bool hang_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_options(argc, argv);
  g_supervisor = ::getpid();
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  for (int sig : kInterrupts) ::sigaction(sig, &sa, nullptr);

  std::printf(
      "# multiproc_soak: seed %llu, target %llu messages, at least %.0f s%s, kills every "
      "%.2f..%.2f s%s (%.0f%% of actions SIGSTOP/SIGCONT instead), watchdog %.0f s, loss "
      "lag %.0f s\n",
      static_cast<unsigned long long>(opt.seed), static_cast<unsigned long long>(opt.messages),
      opt.min_seconds,
      opt.max_seconds > 0
          ? (", at most " + std::to_string(std::llround(opt.max_seconds)) + " s").c_str()
          : "",
      opt.kill_min, opt.kill_max, opt.kills ? "" : " (disabled)", 100 * opt.stop_share,
      opt.watchdog, opt.loss_lag);
  std::printf("# cpu: %s x %u, nice %d, pid %d, load %s\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), ::getpriority(PRIO_PROCESS, 0),
              static_cast<int>(::getpid()), load_average().c_str());
  std::fflush(stdout);

  remove_stale_names();
  const std::set<std::string> shm_before = list_dev_shm();
  int rc;
  std::vector<std::string> failed;
  std::string tag;
  try {
    Soak soak(opt);
    tag = soak.tag();
    rc = soak.run();
    failed = soak.failed();
  } catch (const std::exception& e) {
    std::printf("# FAILURE: the supervisor failed: %s\n", e.what());
    return 1;
  }
  // Nothing left behind: our names are gone from /dev/shm, and no child remains (all reaped).
  std::vector<std::string> left;
  for (const std::string& n : list_dev_shm()) {
    if (n.find(tag) != std::string::npos) left.push_back(n);
  }
  const std::set<std::string> shm_after = list_dev_shm();
  std::size_t other_new = 0;
  for (const std::string& n : shm_after) other_new += shm_before.count(n) == 0 ? 1 : 0;
  const bool child_left = ::waitpid(-1, nullptr, WNOHANG) != -1 || errno != ECHILD;
  std::printf("/dev/shm           %zu of our names left (%zu new entries of other processes)\n",
              left.size(), other_new);
  std::printf("children left      %s\n", child_left ? "yes" : "none");
  if (!left.empty()) failed.push_back("names left in /dev/shm");
  if (child_left) failed.push_back("children left");
  if (failed.empty()) {
    std::printf("RESULT: PASS\n");
    return 0;
  }
  std::printf("RESULT: FAIL (");
  for (std::size_t i = 0; i < failed.size(); ++i) {
    std::printf("%s%s", i ? ", " : "", failed[i].c_str());
  }
  std::printf(")\n");
  return rc != 0 ? rc : 1;
}
