// Curves: how the cost grows with the work, one curve per run (bench/run.py draws them in
// curves.png). Every curve has its multiproc implementations beside Boost.Interprocess and a
// bare limit, built the same way:
//
// - curve_lock_procs: increments/s of a counter under the lock, 1..8 processes on however many
//   cores there are (2 here: oversubscribed from 3 on; a lock that spins must not collapse);
// - curve_queue_procs: 8-byte messages/s through one queue, N producers -> N consumers, N = 1..4
//   (2..8 processes);
// - curve_msg_size: MB/s of messages of 8 B .. 16 MiB, 1 -> 1, through a Queue<std::string>, a
//   Pipe, Boost's message_queue, a kernel pipe; memcpy in one process is the bare limit;
// - curve_latency_pipe / curve_latency_lock: percentiles (50, 99, 99.9) of a round trip of 8
//   bytes, and of a lock hand-off (from the holder's unlock() to the return of the lock() of a
//   process already waiting for it, the holder having held it 5 us), in microseconds;
// - curve_memory: KiB per object, of /dev/shm (st_blocks of the object's files: the pages
//   written; and their apparent size, what they may grow into) and of resident memory (RSS), for
//   named objects that were used once;
// - curve_names: microseconds per object to create 10,000 named objects, open them all in another
//   process, and destroy them (names removed).
//
// Throughput points run for a fixed time (kWindow; after a warm-up for curve_msg_size), not a
// fixed count, so that a curve ends in bounded time even where an implementation collapses: the
// run's processes stop at a shared flag, and only the work done before it counts. Children die
// with the benchmark process (PR_SET_PDEATHSIG), which bench/run.py kills with its whole process
// group at its timeout, then removing the names of that run ("bench.<pid>.") from /dev/shm.
// Named objects are otherwise always removed, on errors too.
#include "harness.hpp"
#include "peers.hpp"

#include <multiproc/multiproc.hpp>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>

#include <algorithm>
#include <csignal>
#include <dirent.h>
#include <exception>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <pthread.h>
#include <sys/prctl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <system_error>
#include <thread>

namespace mp = multiproc;
namespace bip = boost::interprocess;

namespace bench {
namespace {

constexpr double kWindow = 0.15;        // seconds of work per point of a throughput curve
constexpr double kLatencyWindow = 0.3;  // seconds of round trips / hand-offs per latency curve

long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

//! A forked child that dies with the benchmark process (it is killed at run.py's timeout).
pid_t spawn_bound(const std::function<void()>& body) {
  const pid_t parent = ::getpid();
  return spawn([&] {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    body();
  });
}

//! Throws the error of errno (inside guarded(): the names made so far are removed).
[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

//! Runs `what` and turns an exception into a message and exit status 2 — after the unwinding
//! that removes every named object made inside (an uncaught exception might not unwind).
template <class F>
auto guarded(const char* what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "multiproc_bench: %s: %s\n", what, e.what());
    std::exit(2);
  }
}

// ---- a fixed-duration run of n processes -----------------------------------------------------

struct alignas(64) Window {
  StartLine line;
  alignas(64) std::atomic<int> stop{0};
  alignas(64) std::atomic<long> count{0};
  bool stopped() const { return stop.load(std::memory_order_relaxed) != 0; }
};

//! n children run body(k, window), released together, until the parent raises window.stop
//! kWindow seconds later; returns those seconds, and `count` (what the children added to
//! window.count). Dies with `what` when a child fails.
template <class Body>
double for_a_while(const char* what, int n, Body body, long* count) {
  auto* w = shared_new<Window>();
  std::vector<pid_t> pids;
  for (int k = 0; k < n; ++k) {
    pids.push_back(spawn_bound([&] {
      w->line.ready_and_wait();
      body(k, *w);
    }));
  }
  w->line.release(n);
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(kWindow));
  w->stop.store(1);
  const double s = seconds(t0);
  bool ok = true;
  for (pid_t pid : pids) ok = reap(pid) && ok;
  *count = w->count.load();
  shared_delete(w);
  if (!ok) die(what);
  return s;
}

// ---- throughput vs processes: the lock ---------------------------------------------------------

template <class Increment, class Total>
Curve lock_curve(Increment increment, Total total) {
  Curve c{"processes", "M increments/s", true, {}};
  for (int n = 1; n <= 8; ++n) {
    const long before = total();
    long unused = 0;
    const double s = for_a_while(
        "curve_lock_procs: a process failed", n,
        [&](int, Window& w) {
          while (!w.stopped()) increment();
        },
        &unused);
    c.points.emplace_back(std::to_string(n), static_cast<double>(total() - before) / s / 1e6);
  }
  return c;
}

Curve lock_multiproc() {
  mp::SharedValue<long> v(0);  // what a user writes
  return lock_curve([&] { v.update([](long& x) { ++x; }); }, [&] { return v.load(); });
}

Curve lock_multiproc_mutex() {
  mp::Mutex m;
  auto* value = shared_new<long>();
  Curve c = lock_curve(
      [&] {
        m.lock();
        ++*value;
        m.unlock();
      },
      [&] {
        std::lock_guard<mp::Mutex> g(m);
        return *value;
      });
  shared_delete(value);
  return c;
}

Curve lock_boost() {
  auto* c = shared_new<BoostCounter>();
  Curve r = lock_curve(
      [&] {
        c->mutex.lock();
        ++c->value;
        c->mutex.unlock();
      },
      [&] { return c->value; });
  shared_delete(c);
  return r;
}

Curve lock_pthread() {
  auto* c = shared_new<PthreadCounter>();
  Curve r = lock_curve(
      [&] {
        pthread_mutex_lock(&c->mutex);
        ++c->value;
        pthread_mutex_unlock(&c->mutex);
      },
      [&] { return c->value; });
  shared_delete(c);
  return r;
}

// ---- throughput vs processes: the queue, N producers -> N consumers ---------------------------

struct MultiprocLongQueue {
  mp::Queue<long> q{1024};
  void put(long v) { q.put(v); }
  long get() { return q.get(); }
};

struct BoostLongQueue {
  BoostQueue q{unique("cq"), 1024, sizeof(long)};
  void put(long v) { q.put(v); }
  long get() { return q.get(); }
};

// Each producer puts until the stop flag, then one -1; each consumer gets until a -1, counting
// what it got before the stop. As many -1 as consumers: every consumer ends, and a producer that
// is blocked on a full queue is freed by the consumers still draining it.
template <class Q>
Curve queue_curve() {
  Curve c{"processes", "M msgs/s", true, {}};
  for (int pairs = 1; pairs <= 4; ++pairs) {
    Q q;
    long got = 0;
    const double s = for_a_while(
        "curve_queue_procs: a process failed", 2 * pairs,
        [&](int k, Window& w) {
          if (k < pairs) {
            for (long i = 0; !w.stopped(); ++i) q.put(i & 0xffffff);
            q.put(-1);
          } else {
            long mine = 0;
            for (long v; (v = q.get()) >= 0;) mine += !w.stopped();
            w.count.fetch_add(mine);
          }
        },
        &got);
    c.points.emplace_back(std::to_string(2 * pairs), static_cast<double>(got) / s / 1e6);
  }
  return c;
}

// ---- throughput vs message size, 1 -> 1 -------------------------------------------------------

const std::vector<std::size_t>& message_sizes() {
  static const std::vector<std::size_t> sizes = {8,      64,      512,     4096,
                                                 32768,  262144,  2 << 20, 16 << 20};
  return sizes;
}

//! The child calls send() until the stop flag, then end(); the parent calls after_fork(), then
//! recv() until it returns 0 (the end). Warm-up first: two passes through the `buffer` bytes the
//! messages go through (ring, slots), at most 0.5 s — fresh pages cost much more than a copy on
//! a VM (first touch), and a ring is fresh until the first pass is over. The bytes received in
//! the kWindow seconds after that count, and then the parent raises the flag. MB/s.
template <class Send, class End, class AfterFork, class Recv>
double stream_point(std::size_t size, std::size_t buffer, Send send, End end, AfterFork after_fork,
                    Recv recv) {
  auto* w = shared_new<Window>();
  const pid_t pid = spawn_bound([&] {
    w->line.ready_and_wait();
    while (!w->stopped()) send();
    end();
  });
  after_fork();
  w->line.release(1);
  const long check_every = size >= 4096 ? 1 : 64;  // the clock costs ~20 ns
  auto t0 = Clock::now();
  bool warm = false;
  double bytes = 0, s = 0;
  for (long i = 1;; ++i) {
    const std::size_t got = recv();
    if (got == 0) break;
    if (s > 0) continue;  // after the window: drain
    if (got != size) die("curve_msg_size: wrong size");
    bytes += static_cast<double>(got);
    if (i % check_every != 0) continue;
    if (!warm) {
      if (bytes >= 2.0 * static_cast<double>(buffer + size) || seconds(t0) >= 0.5) {
        warm = true;
        bytes = 0;
        t0 = Clock::now();
      }
    } else if (seconds(t0) >= kWindow) {
      s = seconds(t0);
      w->stop.store(1);
    }
  }
  const bool ok = reap(pid);
  shared_delete(w);
  if (!ok || s == 0) die("curve_msg_size: the sender failed");
  return bytes / s / 1e6;
}

template <class Point>
Curve size_curve(Point point) {
  Curve c{"message bytes", "MB/s", true, {}};
  for (std::size_t size : message_sizes()) c.points.emplace_back(std::to_string(size), point(size));
  return c;
}

Curve size_multiproc_queue() {
  return size_curve([](std::size_t size) {
    const std::size_t ring = std::clamp<std::size_t>(256 * (size + 64), 64 << 10, 8 << 20);
    mp::Queue<std::string> q(256, ring);
    const std::string msg(size, 'x');
    return stream_point(
        size, ring, [&] { q.put(msg); }, [&] { q.put(std::string()); }, [] {},
        [&] { return q.get().size(); });
  });
}

Curve size_multiproc_pipe() {
  return size_curve([](std::size_t size) {
    auto ends = mp::Pipe(true, 4 << 20);  // as pipe_bandwidth_1MiB
    mp::Connection &a = ends.first, &b = ends.second;
    const std::string msg(size, 'x');
    std::vector<char> buf(size);
    return stream_point(
        size, 4 << 20, [&] { a.send_bytes(msg); }, [&] { a.send_bytes(std::string_view()); }, [] {},
        [&] { return b.recv_bytes_into(buf.data(), buf.size()); });
  });
}

Curve size_boost() {
  return size_curve([](std::size_t size) {
    // Preallocated slots: up to 256, at most 8 MiB of them (as the Queue's ring), at least 2.
    const std::size_t capacity = std::clamp<std::size_t>((8 << 20) / size, 2, 256);
    BoostQueue q(unique("cqs"), capacity, size);
    const std::string msg(size, 'x');
    std::vector<char> buf(size);
    return stream_point(
        size, capacity * size, [&] { q.send(msg.data(), size); }, [&] { q.send(msg.data(), 0); }, [] {},
        [&] { return q.receive(buf.data(), size); });
  });
}

Curve size_kernel_pipe() {
  return size_curve([](std::size_t size) {
    int fds[2];
    if (::pipe(fds) != 0) die("pipe");
    ::fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);  // the largest an unprivileged pipe gets
    const std::string msg(size, 'x');
    std::vector<char> buf(size);
    const double r = stream_point(
        size, 1 << 20,
        [&] {
          if (!transfer_all(size, [&](std::size_t off, std::size_t left) {
                return ::write(fds[1], msg.data() + off, left);
              })) {
            die("write");
          }
        },
        [&] { ::close(fds[1]); },  // the end: EOF
        [&] { ::close(fds[1]); },  // the parent's copy of the write end
        [&]() -> std::size_t {
          return transfer_all(size, [&](std::size_t off, std::size_t left) {
                   return ::read(fds[0], buf.data() + off, left);
                 })
                     ? size
                     : 0;
        });
    ::close(fds[0]);
    return r;
  });
}

Curve size_memcpy() {
  return size_curve([](std::size_t size) {
    std::vector<char> src(size, 'x'), dst(size);
    const auto t0 = Clock::now();
    double bytes = 0, s = 0;
    const std::size_t batch = std::max<std::size_t>(1, (256 << 10) / size);  // between clock reads
    do {
      for (std::size_t i = 0; i < batch; ++i) {
        std::memcpy(dst.data(), src.data(), size);
        asm volatile("" : : "r"(dst.data()) : "memory");
      }
      bytes += static_cast<double>(batch * size);
    } while ((s = seconds(t0)) < kWindow);
    return bytes / s / 1e6;
  });
}

// ---- latency percentiles -----------------------------------------------------------------------

//! p50, p99, p99.9 of `ns`, in microseconds.
Curve percentiles(std::vector<long>& ns) {
  if (ns.empty()) die("latency: no samples");
  Curve c{"percentile", "us", false, {}};
  static const std::pair<const char*, double> kPoints[] = {
      {"50", 0.5}, {"99", 0.99}, {"99.9", 0.999}};
  for (const auto& [label, q] : kPoints) {
    const auto k =
        std::min(ns.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ns.size())));
    std::nth_element(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(k), ns.end());
    c.points.emplace_back(label, static_cast<double>(ns[k]) / 1e3);
  }
  return c;
}

//! Round trips for kLatencyWindow seconds (at most 200,000): the parent times each ping(i)
//! (i = 0, 1, ...); the child answers with pong() until it returns false, after end().
template <class Ping, class Pong, class End>
Curve roundtrip_latency(Ping ping, Pong pong, End end) {
  auto* line = shared_new<StartLine>();
  const pid_t pid = spawn_bound([&] {
    line->ready_and_wait();
    while (pong()) {
    }
  });
  line->release(1);
  std::vector<long> ns;
  ns.reserve(200000);
  const auto t0 = Clock::now();
  for (long i = 0; ns.size() < 200000 && (i % 64 != 0 || seconds(t0) < kLatencyWindow); ++i) {
    const long a = now_ns();
    ping(i);
    ns.push_back(now_ns() - a);
  }
  end();
  const bool ok = reap(pid);
  shared_delete(line);
  if (!ok) die("curve_latency_pipe: the echo failed");
  return percentiles(ns);
}

Curve rt_multiproc() {
  auto ends = mp::Pipe();
  mp::Connection &a = ends.first, &b = ends.second;
  return roundtrip_latency(
      [&](long i) {
        a.send(i);
        if (a.recv<long>() != i) die("pipe: wrong reply");
      },
      [&] {
        const long v = b.recv<long>();
        if (v < 0) return false;
        b.send(v);
        return true;
      },
      [&] { a.send(-1L); });
}

Curve rt_kernel_pipe() {
  int ab[2], ba[2];
  if (::pipe(ab) != 0 || ::pipe(ba) != 0) die("pipe");
  auto put = [](int fd, long v) {
    if (::write(fd, &v, sizeof v) != sizeof v) die("write");
  };
  auto take = [](int fd) {
    long v;
    if (::read(fd, &v, sizeof v) != sizeof v) die("read");
    return v;
  };
  Curve c = roundtrip_latency(
      [&](long i) {
        put(ab[1], i);
        if (take(ba[0]) != i) die("kernel pipe: wrong reply");
      },
      [&] {
        const long v = take(ab[0]);
        if (v < 0) return false;
        put(ba[1], v);
        return true;
      },
      [&] { put(ab[1], -1); });
  for (int fd : {ab[0], ab[1], ba[0], ba[1]}) ::close(fd);
  return c;
}

struct alignas(64) PingPong {
  alignas(64) std::atomic<long> to_b{-2};
  alignas(64) std::atomic<long> to_a{-2};
};

Curve rt_bare_spin() {
  auto* pp = shared_new<PingPong>();
  long seen = -2;
  Curve c = roundtrip_latency(
      [&](long i) {
        pp->to_b.store(i, std::memory_order_release);
        while (pp->to_a.load(std::memory_order_acquire) != i) relax();
      },
      [&] {
        long v;
        while ((v = pp->to_b.load(std::memory_order_acquire)) == seen) relax();
        seen = v;
        if (v < 0) return false;
        pp->to_a.store(v, std::memory_order_release);
        return true;
      },
      [&] { pp->to_b.store(-1, std::memory_order_release); });
  shared_delete(pp);
  return c;
}

// Lock hand-off: hand-off i (1, 2, ...): the parent locks, raises `turn`, waits for the child to
// say it is about to lock, holds the lock 5 us more, notes the time and unlocks; the child,
// waiting in lock(), notes how long after that time its lock() returned.
struct alignas(64) HandOff {
  static constexpr long kMax = 100000;
  StartLine line;
  alignas(64) std::atomic<long> turn{0};
  alignas(64) std::atomic<long> waiting{0};
  alignas(64) std::atomic<long> done{0};
  alignas(64) std::atomic<long> released_at{0};
  long ns[kMax];
};

template <class Lock, class Unlock>
Curve handoff_latency(Lock lock, Unlock unlock) {
  auto* h = shared_new<HandOff>();
  const pid_t pid = spawn_bound([&] {
    h->line.ready_and_wait();
    for (long i = 1;; ++i) {
      long t;
      while ((t = h->turn.load()) != i) {
        if (t < 0) return;
        sched_yield();
      }
      h->waiting.store(i);
      lock();
      h->ns[i - 1] = now_ns() - h->released_at.load();
      unlock();
      h->done.store(i);
    }
  });
  h->line.release(1);
  const auto t0 = Clock::now();
  long i = 1;
  for (; i <= HandOff::kMax && seconds(t0) < kLatencyWindow; ++i) {
    lock();
    h->turn.store(i);
    while (h->waiting.load() != i) sched_yield();
    const long held = now_ns();
    while (now_ns() - held < 5000) relax();
    h->released_at.store(now_ns());
    unlock();
    while (h->done.load() != i) sched_yield();
  }
  h->turn.store(-1);
  const bool ok = reap(pid);
  std::vector<long> ns(h->ns, h->ns + (i - 1));
  shared_delete(h);
  if (!ok) die("curve_latency_lock: the child failed");
  return percentiles(ns);
}

Curve handoff_multiproc() {
  mp::Mutex m;
  return handoff_latency([&] { m.lock(); }, [&] { m.unlock(); });
}

Curve handoff_boost() {
  auto* c = shared_new<BoostCounter>();
  Curve r = handoff_latency([&] { c->mutex.lock(); }, [&] { c->mutex.unlock(); });
  shared_delete(c);
  return r;
}

Curve handoff_pthread() {
  auto* c = shared_new<PthreadCounter>();
  Curve r = handoff_latency([&] { pthread_mutex_lock(&c->mutex); },
                            [&] { pthread_mutex_unlock(&c->mutex); });
  shared_delete(c);
  return r;
}

// ---- memory per object ------------------------------------------------------------------------

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

//! Bytes allocated (st_blocks: the pages written) to the files of /dev/shm whose names contain
//! `token`, and their apparent size (what they may grow into) in `*size`.
long shm_bytes(const std::string& token, long* size) {
  long bytes = 0;
  *size = 0;
  DIR* dir = ::opendir("/dev/shm");
  if (!dir) die("opendir /dev/shm");
  while (const dirent* e = ::readdir(dir)) {
    struct stat st;
    if (std::strstr(e->d_name, token.c_str()) &&
        ::stat((std::string("/dev/shm/") + e->d_name).c_str(), &st) == 0) {
      bytes += static_cast<long>(st.st_blocks) * 512;
      *size += static_cast<long>(st.st_size);
    }
  }
  ::closedir(dir);
  return bytes;
}

using Made = std::shared_ptr<void>;  // an object of any kind; destroying it removes its name

//! /dev/shm and RSS per object, KiB: 64 objects made by make(name), each used once, after one
//! made and destroyed first (one-time costs: the library's own tables, the first mappings).
template <class Make>
Curve memory_curve(Make make) {
  return guarded("curve_memory", [&] {
    constexpr int kObjects = 64;
    const std::string base = unique("mem") + ".";
    make(base + "warm");
    long size0 = 0, size1 = 0;
    const long rss0 = resident_bytes(), shm0 = shm_bytes(base, &size0);
    std::vector<Made> made;
    for (int k = 0; k < kObjects; ++k) made.push_back(make(base + std::to_string(k)));
    const long rss1 = resident_bytes(), shm1 = shm_bytes(base, &size1);
    Curve c{"memory", "KiB per object", false, {}};
    c.points.emplace_back("dev_shm_used", (shm1 - shm0) / 1024.0 / kObjects);
    c.points.emplace_back("dev_shm_size", (size1 - size0) / 1024.0 / kObjects);
    c.points.emplace_back("rss", (rss1 - rss0) / 1024.0 / kObjects);
    return c;
  });
}

//! A name in /dev/shm of Boost's or of shm_open, removed by the destructor.
struct ShmName {
  std::string name;
  explicit ShmName(std::string n) : name(std::move(n)) {
    bip::shared_memory_object::remove(name.c_str());  // a leftover of a killed run
  }
  ~ShmName() { bip::shared_memory_object::remove(name.c_str()); }
  ShmName(const ShmName&) = delete;
  ShmName& operator=(const ShmName&) = delete;
};

struct BoostMq : ShmName {
  bip::message_queue q;
  BoostMq(const std::string& n, std::size_t capacity)
      : ShmName(n), q(bip::create_only, n.c_str(), capacity, sizeof(long)) {}
};

struct BoostManaged : ShmName {
  bip::managed_shared_memory segment;
  BoostCounter* counter;
  explicit BoostManaged(const std::string& n)
      : ShmName(n),
        segment(bip::create_only, n.c_str(), 65536),  // the size Boost's examples use
        counter(segment.construct<BoostCounter>("v")()) {}
};

//! The bare limit for a value with its lock: shm_open, ftruncate, mmap, a process-shared pthread
//! mutex and a long in it.
struct BareShmValue : ShmName {
  PthreadCounter* counter = nullptr;
  explicit BareShmValue(const std::string& n) : ShmName(n) {
    const int fd = ::shm_open(n.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) fail("shm_open");
    if (::ftruncate(fd, sizeof(PthreadCounter)) != 0) {
      ::close(fd);
      fail("ftruncate");
    }
    void* p = ::mmap(nullptr, sizeof(PthreadCounter), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) fail("mmap");
    counter = new (p) PthreadCounter();
  }
  ~BareShmValue() { ::munmap(counter, sizeof(PthreadCounter)); }
};

Made used_queue_long(const std::string& n) {
  auto q = std::make_shared<mp::Queue<long>>(mp::create_only, n, 1024);
  q->put(1);
  q->get();
  return q;
}

Made used_queue_string(const std::string& n) {
  auto q = std::make_shared<mp::Queue<std::string>>(mp::create_only, n, 1024);
  q->put("x");
  q->get();
  return q;
}

Made used_pipe(const std::string& n) {
  auto p =
      std::make_shared<std::pair<mp::Connection, mp::Connection>>(mp::Pipe(mp::create_only, n));
  p->first.send(1L);
  p->second.recv<long>();
  p->second.send(1L);
  p->first.recv<long>();
  return p;
}

Made used_shared_value(const std::string& n) {
  auto v = std::make_shared<mp::SharedValue<long>>(mp::create_only, n, 0L);
  v->update([](long& x) { ++x; });
  return v;
}

Made used_boost_mq(const std::string& n) {
  auto q = std::make_shared<BoostMq>(n, 1024);
  long v = 1;
  q->q.send(&v, sizeof v, 0);
  bip::message_queue::size_type got;
  unsigned prio;
  q->q.receive(&v, sizeof v, got, prio);
  return q;
}

Made used_boost_managed(const std::string& n) {
  auto m = std::make_shared<BoostManaged>(n);
  bip::scoped_lock<bip::interprocess_mutex> g(m->counter->mutex);
  ++m->counter->value;
  return m;
}

Made used_bare_value(const std::string& n) {
  auto v = std::make_shared<BareShmValue>(n);
  pthread_mutex_lock(&v->counter->mutex);
  ++v->counter->value;
  pthread_mutex_unlock(&v->counter->mutex);
  return v;
}

// ---- creating, opening and removing 10,000 named objects --------------------------------------

//! us per object: create 10,000 objects with make(name), open them all in a child with
//! open(name), destroy them in the creator (which removes the names).
template <class Make, class Open>
Curve names_curve(Make make, Open open) {
  return guarded("curve_names", [&] {
    constexpr int kObjects = 10000;
    const std::string base = unique("names") + ".";
    std::vector<std::string> names;
    for (int k = 0; k < kObjects; ++k) names.push_back(base + std::to_string(k));
    Curve c{"operation", "us per object", false, {}};
    std::vector<Made> made;
    made.reserve(kObjects);
    auto t0 = Clock::now();
    for (const auto& n : names) made.push_back(make(n));
    c.points.emplace_back("create", seconds(t0) / kObjects * 1e6);
    auto* opened = shared_new<std::atomic<double>>();
    const pid_t pid = spawn_bound([&] {
      std::vector<Made> mine;  // left to _exit: the timing ends with the last open
      mine.reserve(kObjects);
      const auto t1 = Clock::now();
      for (const auto& n : names) mine.push_back(open(n));
      opened->store(seconds(t1));
      std::fflush(nullptr);
      ::_exit(0);
    });
    const bool ok = reap(pid);
    c.points.emplace_back("open", opened->load() / kObjects * 1e6);
    shared_delete(opened);
    t0 = Clock::now();
    made.clear();
    c.points.emplace_back("remove", seconds(t0) / kObjects * 1e6);
    if (!ok) die("curve_names: opening failed");
    return c;
  });
}

Made opened_shared_value(const std::string& n) {
  return std::make_shared<mp::SharedValue<long>>(mp::open_only, n);
}

Made made_queue(const std::string& n) {
  return std::make_shared<mp::Queue<long>>(mp::create_only, n, 16);
}

Made opened_queue(const std::string& n) {
  return std::make_shared<mp::Queue<long>>(mp::open_only, n);
}

Made made_boost_managed(const std::string& n) { return std::make_shared<BoostManaged>(n); }

//! Opens a managed segment and finds its counter (never removes the name).
Made opened_boost_managed(const std::string& n) {
  auto m = std::make_shared<bip::managed_shared_memory>(bip::open_only, n.c_str());
  if (!m->find<BoostCounter>("v").first) throw std::runtime_error("boost: no counter in " + n);
  return m;
}

Made made_bare_value(const std::string& n) { return std::make_shared<BareShmValue>(n); }

//! Maps a bare value by name (never removes it).
Made opened_bare_value(const std::string& n) {
  const int fd = ::shm_open(n.c_str(), O_RDWR, 0600);
  if (fd < 0) fail("shm_open");
  void* p = ::mmap(nullptr, sizeof(PthreadCounter), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) fail("mmap");
  return Made(p, [](void* q) { ::munmap(q, sizeof(PthreadCounter)); });
}

}  // namespace

void add_curve_scenarios(Curves& c) {
  c["curve_lock_procs"] = {{"multiproc_shared_value", lock_multiproc},
                           {"multiproc_mutex", lock_multiproc_mutex},
                           {"boost_interprocess_mutex", lock_boost},
                           {"bare_pthread_mutex", lock_pthread}};
  c["curve_queue_procs"] = {{"multiproc", queue_curve<MultiprocLongQueue>},
                            {"boost_message_queue", queue_curve<BoostLongQueue>}};
  c["curve_msg_size"] = {{"multiproc_queue", size_multiproc_queue},
                         {"multiproc_pipe", size_multiproc_pipe},
                         {"boost_message_queue", size_boost},
                         {"kernel_pipe", size_kernel_pipe},
                         {"memcpy", size_memcpy}};
  c["curve_latency_pipe"] = {{"multiproc", rt_multiproc},
                             {"kernel_pipe", rt_kernel_pipe},
                             {"bare_spin", rt_bare_spin}};
  c["curve_latency_lock"] = {{"multiproc", handoff_multiproc},
                             {"boost_interprocess_mutex", handoff_boost},
                             {"bare_pthread_mutex", handoff_pthread}};
  c["curve_memory"] = {{"multiproc_queue", [] { return memory_curve(used_queue_long); }},
                       {"multiproc_queue_string", [] { return memory_curve(used_queue_string); }},
                       {"multiproc_pipe", [] { return memory_curve(used_pipe); }},
                       {"multiproc_shared_value", [] { return memory_curve(used_shared_value); }},
                       {"boost_message_queue", [] { return memory_curve(used_boost_mq); }},
                       {"boost_managed_value", [] { return memory_curve(used_boost_managed); }},
                       {"bare_shm_value", [] { return memory_curve(used_bare_value); }}};
  c["curve_names"] = {
      {"multiproc_shared_value", [] {
         return names_curve([](const std::string& n) -> Made {
           return std::make_shared<mp::SharedValue<long>>(mp::create_only, n, 0L);
         }, opened_shared_value);
       }},
      {"multiproc_queue", [] { return names_curve(made_queue, opened_queue); }},
      {"boost_managed_value", [] { return names_curve(made_boost_managed, opened_boost_managed); }},
      {"bare_shm_value", [] { return names_curve(made_bare_value, opened_bare_value); }}};
}

}  // namespace bench
