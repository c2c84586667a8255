// Pipe scenarios: the round trip of 8 bytes (microseconds) beside kernel pipes, a socketpair and
// bare spinning and futex ping-pongs; 1 MiB messages (MB/s) beside a kernel pipe, a bare
// two-process ring, the kernel's single copy between two processes and memcpy.
#include "harness.hpp"

#include <multiproc/multiproc.hpp>

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>

namespace mp = multiproc;

namespace bench {
namespace {

// ---- pipe round trip of 8 bytes, microseconds --------------------------------------------------

template <class Ping, class Pong>
Result roundtrip_run(long n, Ping ping, Pong pong) {
  const double s = timed_with_child(
      "roundtrip: echo failed", [&] { for (long i = 0; i < n; ++i) pong(); },
      [&] { for (long i = 0; i < n; ++i) ping(i); });
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

// Not a peer but a floor: the work of one round trip (two sends and two receives) done by one
// thread, so that no cache line crosses cores. A round trip between processes costs about this
// plus the bare spinning ping-pong: what part of multiproc's round trip is its own instructions.
Result pipe_rt_one_thread() {
  auto ends = mp::Pipe();
  mp::Connection &a = ends.first, &b = ends.second;
  const long n = 400000;
  for (long i = 0; i < 1000; ++i) {  // warm: both ends leased, as in the round trip
    a.send(i);
    if (b.recv<long>() != i) die("pipe_rt_one_thread: wrong message");
    b.send(i);
    if (a.recv<long>() != i) die("pipe_rt_one_thread: wrong reply");
  }
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    a.send(i);
    b.send(b.recv<long>());
    if (a.recv<long>() != i) die("pipe_rt_one_thread: wrong reply");
  }
  return {seconds(t0) / n * 1e6, "us", false};
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

// roundtrip_run over a PingPong in shared memory: round trip k (1, 2, ...) is ping(pp, k) in the
// parent and pong(pp, k) in the child.
template <class Ping, class Pong>
Result pingpong_run(long n, Ping ping, Pong pong) {
  auto* pp = shared_new<PingPong>();
  int seq_b = 0;
  Result r = roundtrip_run(
      n, [&](long i) { ping(*pp, static_cast<int>(i) + 1); }, [&] { pong(*pp, ++seq_b); });
  shared_delete(pp);
  return r;
}

Result pipe_rt_bare_spin() {
  return pingpong_run(
      1000000,
      [](PingPong& pp, int k) {
        pp.to_b.store(k, std::memory_order_release);
        while (pp.to_a.load(std::memory_order_acquire) != k) relax();
      },
      [](PingPong& pp, int k) {
        while (pp.to_b.load(std::memory_order_acquire) != k) relax();
        pp.to_a.store(k, std::memory_order_release);
      });
}

Result pipe_rt_bare_futex() {
  return pingpong_run(
      50000,
      [](PingPong& pp, int k) {
        pp.to_b.store(k, std::memory_order_release);
        futex(&pp.to_b, FUTEX_WAKE, 1);
        int v;
        while ((v = pp.to_a.load(std::memory_order_acquire)) != k) futex(&pp.to_a, FUTEX_WAIT, v);
      },
      [](PingPong& pp, int k) {
        int v;
        while ((v = pp.to_b.load(std::memory_order_acquire)) != k) futex(&pp.to_b, FUTEX_WAIT, v);
        pp.to_a.store(k, std::memory_order_release);
        futex(&pp.to_a, FUTEX_WAKE, 1);
      });
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
        if (!transfer_all(kMiB, [&](std::size_t off, std::size_t left) {
              return ::write(fds[1], msg.data() + off, left);
            })) {
          die("write");
        }
      },
      [&] {
        if (!transfer_all(kMiB, [&](std::size_t off, std::size_t left) {
              return ::read(fds[0], buf.data() + off, left);
            })) {
          die("read");
        }
        return kMiB;
      });
  ::close(fds[0]);
  ::close(fds[1]);
  return r;
}

// The bare limit of the same transfer between two processes: the sender copies each message in
// 128 KiB chunks into the slots of a 4 MiB shared ring (as big as the Pipe's) and bumps a
// counter after each, the receiver spins on it and copies each chunk out — what a pipe does,
// without a record, a check or a wake-up. Chunks, because whole 1 MiB slots (the receiver
// starting only once the whole message is in) ran at a third of the speed (AMD EPYC VM: 7 GB/s
// against 22 GB/s). memcpy in one process reads and writes one core's cache; this crosses cores,
// as every pipe must.
struct BareBytesRing {
  static constexpr std::size_t kChunk = std::size_t{128} << 10;
  static constexpr long kSlots = 32;
  alignas(64) std::atomic<long> put{0};  // chunks published (written by the sender)
  alignas(64) std::atomic<long> got{0};  // chunks taken (written by the receiver)
  alignas(64) char slots[kSlots][kChunk];
};

Result bandwidth_bare_ring() {
  auto* ring = shared_new<BareBytesRing>();
  const std::string msg(kMiB, 'x');
  std::vector<char> buf(kMiB);
  constexpr std::size_t kChunk = BareBytesRing::kChunk;
  long sent = 0, taken = 0;  // each process's own count of chunks
  Result r = bytes_run(
      kMiB, 512,
      [&] {
        for (std::size_t off = 0; off < kMiB; off += kChunk) {
          while (sent - ring->got.load(std::memory_order_acquire) >= BareBytesRing::kSlots) relax();
          std::memcpy(ring->slots[sent % BareBytesRing::kSlots], msg.data() + off, kChunk);
          ring->put.store(++sent, std::memory_order_release);
        }
      },
      [&] {
        for (std::size_t off = 0; off < kMiB; off += kChunk) {
          while (ring->put.load(std::memory_order_acquire) == taken) relax();
          std::memcpy(buf.data() + off, ring->slots[taken % BareBytesRing::kSlots], kChunk);
          ring->got.store(++taken, std::memory_order_release);
        }
        return kMiB;
      });
  shared_delete(ring);
  return r;
}

// The bare limit of a single copy between two processes: the sender posts where its message is
// and waits; the receiver copies it straight out of the sender's memory with process_vm_readv
// (the kernel's one copy, no shared ring in between) and says it is done, so that the sender may
// reuse its buffer. What a pipe moving large messages without copying them twice could reach at
// best (it needs ptrace rights over the sender: here a parent reading its child). Whole
// messages: 128 KiB reads ran slower (AMD EPYC VM: 11 GB/s against 18-19 GB/s).
struct OneCopyPost {
  alignas(64) std::atomic<long> posted{0};  // messages posted (written by the sender)
  alignas(64) std::atomic<long> taken{0};   // messages copied (written by the receiver)
  std::atomic<pid_t> pid{0};
  std::atomic<std::uintptr_t> address{0};
};

Result bandwidth_one_copy_kernel() {
  auto* post = shared_new<OneCopyPost>();
  const std::string msg(kMiB, 'x');
  std::vector<char> buf(kMiB);
  long sent = 0, got = 0;
  Result r = bytes_run(
      kMiB, 512,
      [&] {
        post->pid.store(::getpid(), std::memory_order_relaxed);
        post->address.store(reinterpret_cast<std::uintptr_t>(msg.data()), std::memory_order_relaxed);
        post->posted.store(++sent, std::memory_order_release);
        while (post->taken.load(std::memory_order_acquire) != sent) relax();
      },
      [&] {
        while (post->posted.load(std::memory_order_acquire) == got) relax();
        iovec local{buf.data(), kMiB};
        iovec remote{reinterpret_cast<void*>(post->address.load(std::memory_order_relaxed)), kMiB};
        const ssize_t n =
            ::process_vm_readv(post->pid.load(std::memory_order_relaxed), &local, 1, &remote, 1, 0);
        if (n != static_cast<ssize_t>(kMiB)) die("process_vm_readv (ptrace rights over the sender?)");
        post->taken.store(++got, std::memory_order_release);
        return kMiB;
      });
  shared_delete(post);
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

}  // namespace

void add_pipe_scenarios(Scenarios& s) {
  s["pipe_roundtrip_8B"] = {{"multiproc", pipe_rt_multiproc},
                            {"kernel_pipe", [] { return pipe_rt_fd(false); }},
                            {"socketpair", [] { return pipe_rt_fd(true); }},
                            {"bare_spin", pipe_rt_bare_spin},
                            {"one_thread_floor", pipe_rt_one_thread},
                            {"bare_futex", pipe_rt_bare_futex}};
  s["pipe_bandwidth_1MiB"] = {{"multiproc", bandwidth_multiproc},
                              {"kernel_pipe", bandwidth_kernel_pipe},
                              {"bare_ring", bandwidth_bare_ring},
                              {"one_copy_kernel", bandwidth_one_copy_kernel},
                              {"memcpy", bandwidth_memcpy}};
}

}  // namespace bench
