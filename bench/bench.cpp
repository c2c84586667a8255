// multiproc_bench — one measurement of one scenario with one implementation per run.
//
//   multiproc_bench <scenario> <impl>      prints {"value": ..., "unit": "...", "better": "higher"}
//   multiproc_bench --list                 prints "<scenario> <impl>" lines
//
// bench/run.py runs every (scenario, impl) pair several times, interleaved, together with the
// Python peers in bench/peers.py, and reports medians and ratios. Every implementation of a
// scenario does the same work between processes created the same way (fork), timed the same way:
// processes are started and synchronised first, the clock runs only over the work.
#include <multiproc/multiproc.hpp>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <linux/futex.h>
#include <map>
#include <new>
#include <pthread.h>
#include <sched.h>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace mp = multiproc;
namespace bip = boost::interprocess;
using Clock = std::chrono::steady_clock;

namespace {

// ---- harness -------------------------------------------------------------------------------

struct Result {
  double value;
  const char* unit;
  bool higher_is_better;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "multiproc_bench: %s: %s\n", what, std::strerror(errno));
  std::exit(2);
}

// Anonymous shared memory for a harness's own flags and results.
template <class T>
T* shared_new() {
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  return new (p) T();
}
template <class T>
void shared_delete(T* p) {
  p->~T();
  ::munmap(p, sizeof(T));
}

// Start line: children call ready_and_wait(); the parent calls release() when all are ready.
struct alignas(64) StartLine {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  std::atomic<int> failures{0};
  void ready_and_wait() {
    ready.fetch_add(1);
    while (go.load(std::memory_order_acquire) == 0) sched_yield();
  }
  void release(int n) {
    while (ready.load() < n) sched_yield();
    go.store(1, std::memory_order_release);
  }
};

pid_t spawn(const std::function<void()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    body();
    std::fflush(nullptr);
    ::_exit(0);
  }
  return pid;
}

bool reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string unique(const char* what) {
  return std::string("bench.") + std::to_string(::getpid()) + "." + what;
}

void relax() { __builtin_ia32_pause(); }

long futex(std::atomic<int>* word, int op, int val) {
  return ::syscall(SYS_futex, reinterpret_cast<int*>(word), op, val, nullptr, nullptr, 0);
}

// ---- a bare spinning SPSC ring of longs (the upper bound for a queue) ----------------------

struct alignas(64) BareRing {
  static constexpr std::size_t kCap = 1024;
  alignas(64) std::atomic<std::size_t> head{0};
  alignas(64) std::size_t head_cache = 0;
  alignas(64) std::atomic<std::size_t> tail{0};
  alignas(64) std::size_t tail_cache = 0;
  alignas(64) long slots[kCap];
  void push(long v) {
    const std::size_t t = tail.load(std::memory_order_relaxed);
    while (t - head_cache >= kCap) {
      head_cache = head.load(std::memory_order_acquire);
      if (t - head_cache >= kCap) relax();
    }
    slots[t % kCap] = v;
    tail.store(t + 1, std::memory_order_release);
  }
  long pop() {
    const std::size_t h = head.load(std::memory_order_relaxed);
    while (h == tail_cache) {
      tail_cache = tail.load(std::memory_order_acquire);
      if (h == tail_cache) relax();
    }
    const long v = slots[h % kCap];
    head.store(h + 1, std::memory_order_release);
    return v;
  }
};

// ---- queue: 1 producer -> 1 consumer, 8-byte items -----------------------------------------

template <class Put, class Get>
Result spsc_run(long n, Put put, Get get) {
  auto* line = shared_new<StartLine>();
  const pid_t producer = spawn([&] {
    line->ready_and_wait();
    for (long i = 0; i < n; ++i) put(i);
  });
  line->release(1);
  const auto t0 = Clock::now();
  long sum = 0;
  for (long i = 0; i < n; ++i) sum += get();
  const double s = seconds(t0);
  const bool ok = reap(producer) && sum == n * (n - 1) / 2;
  shared_delete(line);
  if (!ok) die("queue_spsc: wrong sum");
  return {n / s, "msgs/s", true};
}

Result queue_spsc_multiproc() {
  mp::Queue<long> q(1024);
  return spsc_run(4000000, [&](long v) { q.put(v); }, [&] { return q.get(); });
}

Result queue_spsc_boost() {
  const std::string name = unique("mq");
  bip::message_queue::remove(name.c_str());
  bip::message_queue q(bip::create_only, name.c_str(), 1024, sizeof(long));
  Result r = spsc_run(1000000, [&](long v) { q.send(&v, sizeof v, 0); }, [&] {
    long v;
    bip::message_queue::size_type got;
    unsigned prio;
    q.receive(&v, sizeof v, got, prio);
    return v;
  });
  bip::message_queue::remove(name.c_str());
  return r;
}

Result queue_spsc_bare() {
  auto* ring = shared_new<BareRing>();
  Result r = spsc_run(20000000, [&](long v) { ring->push(v); }, [&] { return ring->pop(); });
  shared_delete(ring);
  return r;
}

// ---- queue: 2 producers -> 2 consumers --------------------------------------------------------

template <class Put, class Get>
Result mpmc_run(long per_producer, Put put, Get get) {
  auto* line = shared_new<StartLine>();
  auto* sum = shared_new<std::atomic<long>>();
  std::vector<pid_t> pids;
  for (int p = 0; p < 2; ++p) {
    pids.push_back(spawn([&] {
      line->ready_and_wait();
      for (long i = 0; i < per_producer; ++i) put(i);
    }));
  }
  for (int c = 0; c < 2; ++c) {
    pids.push_back(spawn([&] {
      line->ready_and_wait();
      long s = 0;
      for (long i = 0; i < per_producer; ++i) s += get();
      sum->fetch_add(s);
    }));
  }
  line->release(4);
  const auto t0 = Clock::now();
  bool ok = true;
  for (pid_t pid : pids) ok = reap(pid) && ok;
  const double s = seconds(t0);
  ok = ok && sum->load() == 2 * (per_producer * (per_producer - 1) / 2);
  shared_delete(line);
  shared_delete(sum);
  if (!ok) die("queue_mpmc: wrong sum");
  return {2 * per_producer / s, "msgs/s", true};
}

Result queue_mpmc_multiproc() {
  mp::Queue<long> q(1024);
  return mpmc_run(1000000, [&](long v) { q.put(v); }, [&] { return q.get(); });
}

Result queue_mpmc_boost() {
  const std::string name = unique("mq");
  bip::message_queue::remove(name.c_str());
  bip::message_queue q(bip::create_only, name.c_str(), 1024, sizeof(long));
  Result r = mpmc_run(300000, [&](long v) { q.send(&v, sizeof v, 0); }, [&] {
    long v;
    bip::message_queue::size_type got;
    unsigned prio;
    q.receive(&v, sizeof v, got, prio);
    return v;
  });
  bip::message_queue::remove(name.c_str());
  return r;
}

// ---- queue of strings: 1 -> 1, MB/s --------------------------------------------------------

template <class Send, class Recv>
Result bytes_run(std::size_t size, long n, Send send, Recv recv) {
  auto* line = shared_new<StartLine>();
  const pid_t producer = spawn([&] {
    line->ready_and_wait();
    for (long i = 0; i < n; ++i) send();
  });
  line->release(1);
  const auto t0 = Clock::now();
  long bad = 0;
  for (long i = 0; i < n; ++i) bad += recv() != size;
  const double s = seconds(t0);
  const bool ok = reap(producer) && bad == 0;
  shared_delete(line);
  if (!ok) die("bytes: wrong sizes");
  return {static_cast<double>(size) * n / s / 1e6, "MB/s", true};
}

Result queue_strings_multiproc(std::size_t size, long n) {
  mp::Queue<std::string> q(256, 256 * (size + 64));
  const std::string msg(size, 'x');
  return bytes_run(size, n, [&] { q.put(msg); }, [&] { return q.get().size(); });
}

Result queue_strings_boost(std::size_t size, long n) {
  const std::string name = unique("mqs");
  bip::message_queue::remove(name.c_str());
  bip::message_queue q(bip::create_only, name.c_str(), 256, size);
  const std::string msg(size, 'x');
  std::vector<char> buf(size);
  Result r = bytes_run(size, n, [&] { q.send(msg.data(), size, 0); }, [&] {
    bip::message_queue::size_type got;
    unsigned prio;
    q.receive(buf.data(), size, got, prio);
    return static_cast<std::size_t>(got);
  });
  bip::message_queue::remove(name.c_str());
  return r;
}

// ---- pipe round trip of 8 bytes, microseconds --------------------------------------------------

template <class Ping, class Pong>
Result roundtrip_run(long n, Ping ping, Pong pong) {
  auto* line = shared_new<StartLine>();
  const pid_t echo = spawn([&] {
    line->ready_and_wait();
    for (long i = 0; i < n; ++i) pong();
  });
  line->release(1);
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) ping(i);
  const double s = seconds(t0);
  const bool ok = reap(echo);
  shared_delete(line);
  if (!ok) die("roundtrip: echo failed");
  return {s / n * 1e6, "us", false};
}

Result pipe_rt_multiproc() {
  auto ends = mp::Pipe();  // not a structured binding: C++17 lambdas cannot capture one
  mp::Connection &a = ends.first, &b = ends.second;
  return roundtrip_run(
      200000,
      [&](long i) {
        a.send(i);
        if (a.recv<long>() != i) die("pipe_rt: wrong reply");
      },
      [&] { b.send(b.recv<long>()); });
}

Result pipe_rt_fd(bool socket) {
  int ab[2], ba[2];
  if (socket) {
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, ab) != 0) die("socketpair");
    ba[0] = ab[1];
    ba[1] = ab[0];
  } else if (::pipe(ab) != 0 || ::pipe(ba) != 0) {
    die("pipe");
  }
  // For a pipe: ab carries a -> b, ba carries b -> a. For a socketpair one socket each way.
  const int a_out = socket ? ab[0] : ab[1], a_in = socket ? ab[0] : ba[0];
  const int b_in = socket ? ab[1] : ab[0], b_out = socket ? ab[1] : ba[1];
  Result r = roundtrip_run(
      50000,
      [&](long i) {
        long v = i;
        if (::write(a_out, &v, sizeof v) != sizeof v || ::read(a_in, &v, sizeof v) != sizeof v ||
            v != i) {
          die("fd roundtrip");
        }
      },
      [&] {
        long v;
        if (::read(b_in, &v, sizeof v) != sizeof v || ::write(b_out, &v, sizeof v) != sizeof v) {
          die("fd echo");
        }
      });
  for (int fd : {ab[0], ab[1]}) ::close(fd);
  if (!socket) {
    ::close(ba[0]);
    ::close(ba[1]);
  }
  return r;
}

struct alignas(64) PingPong {
  alignas(64) std::atomic<int> to_b{0};
  alignas(64) std::atomic<int> to_a{0};
};

Result pipe_rt_bare_spin() {
  auto* pp = shared_new<PingPong>();
  int seq_b = 0;
  Result r = roundtrip_run(
      1000000,
      [&](long i) {
        pp->to_b.store(static_cast<int>(i) + 1, std::memory_order_release);
        while (pp->to_a.load(std::memory_order_acquire) != static_cast<int>(i) + 1) relax();
      },
      [&] {
        ++seq_b;
        while (pp->to_b.load(std::memory_order_acquire) != seq_b) relax();
        pp->to_a.store(seq_b, std::memory_order_release);
      });
  shared_delete(pp);
  return r;
}

Result pipe_rt_bare_futex() {
  auto* pp = shared_new<PingPong>();
  int seq_b = 0;
  Result r = roundtrip_run(
      50000,
      [&](long i) {
        const int want = static_cast<int>(i) + 1;
        pp->to_b.store(want, std::memory_order_release);
        futex(&pp->to_b, FUTEX_WAKE, 1);
        int v;
        while ((v = pp->to_a.load(std::memory_order_acquire)) != want) futex(&pp->to_a, FUTEX_WAIT, v);
      },
      [&] {
        ++seq_b;
        int v;
        while ((v = pp->to_b.load(std::memory_order_acquire)) != seq_b) futex(&pp->to_b, FUTEX_WAIT, v);
        pp->to_a.store(seq_b, std::memory_order_release);
        futex(&pp->to_a, FUTEX_WAKE, 1);
      });
  shared_delete(pp);
  return r;
}

// ---- pipe bandwidth with 1 MiB messages, MB/s ------------------------------------------------

constexpr std::size_t kMiB = std::size_t{1} << 20;

Result bandwidth_multiproc() {
  auto ends = mp::Pipe(true, 4 * kMiB);  // not a structured binding (see pipe_rt_multiproc)
  mp::Connection &a = ends.first, &b = ends.second;
  const std::string msg(kMiB, 'x');
  std::vector<char> buf(kMiB);
  return bytes_run(kMiB, 512, [&] { a.send_bytes(msg); },
                   [&] { return b.recv_bytes_into(buf.data(), buf.size()); });
}

Result bandwidth_kernel_pipe() {
  int fds[2];
  if (::pipe(fds) != 0) die("pipe");
  ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(kMiB));  // the largest an unprivileged pipe gets
  const std::string msg(kMiB, 'x');
  std::vector<char> buf(kMiB);
  Result r = bytes_run(
      kMiB, 512,
      [&] {
        std::size_t off = 0;
        while (off < kMiB) {
          const ssize_t w = ::write(fds[1], msg.data() + off, kMiB - off);
          if (w <= 0) die("write");
          off += static_cast<std::size_t>(w);
        }
      },
      [&] {
        std::size_t off = 0;
        while (off < kMiB) {
          const ssize_t got = ::read(fds[0], buf.data() + off, kMiB - off);
          if (got <= 0) die("read");
          off += static_cast<std::size_t>(got);
        }
        return off;
      });
  ::close(fds[0]);
  ::close(fds[1]);
  return r;
}

Result bandwidth_memcpy() {
  // The bare limit: one process copying 1 MiB blocks (a message crosses memory twice through a
  // ring, once here), on buffers of the same sizes as the pipe's.
  std::vector<char> src(4 * kMiB, 'x'), dst(kMiB);
  const long n = 2048;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    std::memcpy(dst.data(), src.data() + (i % 4) * kMiB, kMiB);
    asm volatile("" : : "r"(dst.data()) : "memory");
  }
  return {static_cast<double>(kMiB) * n / seconds(t0) / 1e6, "MB/s", true};
}

// ---- lock contention: N processes incrementing one shared counter under the lock ------------

template <class Increment>
Result contention_run(int procs, long per_proc, Increment increment, const std::function<long()>& total) {
  auto* line = shared_new<StartLine>();
  std::vector<pid_t> pids;
  for (int p = 0; p < procs; ++p) {
    pids.push_back(spawn([&] {
      line->ready_and_wait();
      for (long i = 0; i < per_proc; ++i) increment();
    }));
  }
  line->release(procs);
  const auto t0 = Clock::now();
  bool ok = true;
  for (pid_t pid : pids) ok = reap(pid) && ok;
  const double s = seconds(t0);
  shared_delete(line);
  if (!ok || total() != procs * per_proc) die("lock_contention: wrong count");
  return {procs * per_proc / s, "increments/s", true};
}

Result contention_multiproc(int procs) {
  // What a user writes: a SharedValue<long> and its own robust lock.
  mp::SharedValue<long> counter(0);
  return contention_run(
      procs, 10000000, [&] { counter.update([](long& v) { ++v; }); }, [&] { return counter.load(); });
}

struct BoostCounter {
  bip::interprocess_mutex mutex;
  long value = 0;
};

Result contention_boost(int procs) {
  auto* c = shared_new<BoostCounter>();
  Result r = contention_run(
      procs, 10000000,
      [&] {
        c->mutex.lock();
        ++c->value;
        c->mutex.unlock();
      },
      [&] { return c->value; });
  shared_delete(c);
  return r;
}

struct PthreadCounter {
  pthread_mutex_t mutex;
  long value = 0;
  PthreadCounter() {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&mutex, &a);
    pthread_mutexattr_destroy(&a);
  }
  ~PthreadCounter() { pthread_mutex_destroy(&mutex); }
};

Result contention_pthread(int procs) {
  // The bare limit: a plain (not robust) process-shared pthread mutex.
  auto* c = shared_new<PthreadCounter>();
  Result r = contention_run(
      procs, 10000000,
      [&] {
        pthread_mutex_lock(&c->mutex);
        ++c->value;
        pthread_mutex_unlock(&c->mutex);
      },
      [&] { return c->value; });
  shared_delete(c);
  return r;
}

// ---- uncontended lock + unlock, nanoseconds -----------------------------------------------------

template <class Lock, class Unlock>
Result uncontended_run(Lock lock, Unlock unlock) {
  const long n = 20000000;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    lock();
    asm volatile("" ::: "memory");
    unlock();
  }
  return {seconds(t0) / n * 1e9, "ns", false};
}

Result uncontended_multiproc() {
  mp::Mutex m;
  return uncontended_run([&] { m.lock(); }, [&] { m.unlock(); });
}

Result uncontended_boost() {
  auto* c = shared_new<BoostCounter>();
  Result r = uncontended_run([&] { c->mutex.lock(); }, [&] { c->mutex.unlock(); });
  shared_delete(c);
  return r;
}

Result uncontended_pthread() {
  auto* c = shared_new<PthreadCounter>();
  Result r = uncontended_run([&] { pthread_mutex_lock(&c->mutex); },
                             [&] { pthread_mutex_unlock(&c->mutex); });
  shared_delete(c);
  return r;
}

// ---- process start + join, microseconds ---------------------------------------------------------

Result process_multiproc() {
  const long n = 2000;
  long bad = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    mp::Process p([] {});
    p.start();
    p.join();
    bad += p.exitcode() != 0;
  }
  const double s = seconds(t0);
  if (bad != 0) die("process: a child failed");
  return {s / n * 1e6, "us", false};
}

Result process_bare() {
  const long n = 2000;
  long bad = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) die("fork");
    if (pid == 0) ::_exit(0);
    bad += !reap(pid);
  }
  const double s = seconds(t0);
  if (bad != 0) die("fork: a child failed");
  return {s / n * 1e6, "us", false};
}

// ---- pool: map of 100,000 tiny tasks (ms), apply_async round trip (us) --------------------------

long square(long x) { return x * x; }

Result pool_map_multiproc() {
  // The mean of `maps` consecutive maps on one warm pool (as peers.py): the first map of a
  // process also pays for growing its heap, which says little about a pool in use.
  const int maps = 10;
  mp::Pool pool(2);
  pool.map(square, std::vector<long>{1, 2, 3});  // workers up and warm, as in the Python peer
  std::vector<long> in(100000);
  long expect = 0;
  for (long i = 0; i < 100000; ++i) {
    in[i] = i;
    expect += i * i;
  }
  std::vector<std::vector<long>> outs;  // kept, as the Python peer keeps its lists
  const auto t0 = Clock::now();
  for (int m = 0; m < maps; ++m) outs.push_back(pool.map(square, in));
  const double s = seconds(t0) / maps;
  long bad = 0;
  for (const auto& out : outs) {
    long sum = 0;
    for (long v : out) sum += v;
    bad += out.size() != in.size() || sum != expect;
  }
  pool.close();
  pool.join();
  if (bad != 0) die("pool_map: wrong sum");
  return {s * 1e3, "ms", false};
}

Result pool_apply_multiproc() {
  mp::Pool pool(2);
  pool.apply(square, 1L);
  const long n = 50000;
  long bad = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) bad += pool.apply_async(square, i).get() != i * i;
  const double s = seconds(t0);
  pool.close();
  pool.join();
  if (bad != 0) die("pool_apply_async: wrong result");
  return {s / n * 1e6, "us", false};
}

// ---- registry --------------------------------------------------------------------------------

const std::map<std::string, std::map<std::string, std::function<Result()>>>& scenarios() {
  static const std::map<std::string, std::map<std::string, std::function<Result()>>> s = {
      {"queue_spsc_8B",
       {{"multiproc", queue_spsc_multiproc},
        {"boost_message_queue", queue_spsc_boost},
        {"bare_spin_ring", queue_spsc_bare}}},
      {"queue_mpmc_2x2",
       {{"multiproc", queue_mpmc_multiproc}, {"boost_message_queue", queue_mpmc_boost}}},
      {"queue_strings_64B",
       {{"multiproc", [] { return queue_strings_multiproc(64, 1000000); }},
        {"boost_message_queue", [] { return queue_strings_boost(64, 1000000); }}}},
      {"queue_strings_4KiB",
       {{"multiproc", [] { return queue_strings_multiproc(4096, 200000); }},
        {"boost_message_queue", [] { return queue_strings_boost(4096, 200000); }}}},
      {"pipe_roundtrip_8B",
       {{"multiproc", pipe_rt_multiproc},
        {"kernel_pipe", [] { return pipe_rt_fd(false); }},
        {"socketpair", [] { return pipe_rt_fd(true); }},
        {"bare_spin", pipe_rt_bare_spin},
        {"bare_futex", pipe_rt_bare_futex}}},
      {"pipe_bandwidth_1MiB",
       {{"multiproc", bandwidth_multiproc},
        {"kernel_pipe", bandwidth_kernel_pipe},
        {"memcpy", bandwidth_memcpy}}},
      {"lock_contention_2p",
       {{"multiproc", [] { return contention_multiproc(2); }},
        {"boost_interprocess_mutex", [] { return contention_boost(2); }},
        {"bare_pthread_mutex", [] { return contention_pthread(2); }}}},
      {"lock_contention_4p",
       {{"multiproc", [] { return contention_multiproc(4); }},
        {"boost_interprocess_mutex", [] { return contention_boost(4); }},
        {"bare_pthread_mutex", [] { return contention_pthread(4); }}}},
      {"lock_uncontended",
       {{"multiproc", uncontended_multiproc},
        {"boost_interprocess_mutex", uncontended_boost},
        {"bare_pthread_mutex", uncontended_pthread}}},
      {"process_start_join", {{"multiproc", process_multiproc}, {"bare_fork_waitpid", process_bare}}},
      {"pool_map_100k", {{"multiproc", pool_map_multiproc}}},
      {"pool_apply_async", {{"multiproc", pool_apply_multiproc}}},
  };
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (const auto& [scenario, impls] : scenarios()) {
      for (const auto& [impl, fn] : impls) std::printf("%s %s\n", scenario.c_str(), impl.c_str());
    }
    return 0;
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: multiproc_bench <scenario> <impl> | --list\n");
    return 2;
  }
  const auto s = scenarios().find(argv[1]);
  if (s == scenarios().end()) {
    std::fprintf(stderr, "unknown scenario %s\n", argv[1]);
    return 2;
  }
  const auto i = s->second.find(argv[2]);
  if (i == s->second.end()) {
    std::fprintf(stderr, "unknown implementation %s for %s\n", argv[2], argv[1]);
    return 2;
  }
  const Result r = i->second();
  std::printf("{\"value\": %.6g, \"unit\": \"%s\", \"better\": \"%s\"}\n", r.value, r.unit,
              r.higher_is_better ? "higher" : "lower");
  return 0;
}
