// Round-trip latency of a Pipe between two processes, compared with an OS pipe.
//
//   pipe_ping [round_trips=100000] [message_bytes=8]
//
// A child echoes every message back; the parent measures each round trip and prints the median,
// the 99th percentile and the mean, for multiproc's Pipe and for a pair of kernel pipes.
#include "args.hpp"

#include <multiproc/multiproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>
#include <vector>

namespace mp = multiproc;
using Clock = std::chrono::steady_clock;

namespace {

void report(const char* label, std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double u : us) sum += u;
  std::printf("  %-22s median %7.2f us   p99 %7.2f us   mean %7.2f us\n", label, us[us.size() / 2],
              us[us.size() * 99 / 100], sum / static_cast<double>(us.size()));
}

// Repeats io(p + done, left) — a read or a write — until n bytes went through; false on an error
// or end of file.
template <class Io, class Byte>
bool transfer_all(Io io, Byte* p, std::size_t n) {
  for (std::size_t done = 0; done < n;) {
    const ssize_t r = io(p + done, n - done);
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}
bool write_all(int fd, const char* p, std::size_t n) {
  return transfer_all([fd](const char* at, std::size_t left) { return ::write(fd, at, left); }, p, n);
}
bool read_all(int fd, char* p, std::size_t n) {
  return transfer_all([fd](char* at, std::size_t left) { return ::read(fd, at, left); }, p, n);
}

}  // namespace

int main(int argc, char** argv) {
  const sample::Args args(argc, argv, "usage: pipe_ping [round_trips>=1] [message_bytes>=0]");
  const long n = args.get(1, 100000, 1);
  const auto size = static_cast<std::size_t>(args.get(2, 8, 0));
  const std::string msg(size, 'p');
  std::printf("round trips of %zu-byte messages between two processes, %ld each:\n", size, n);

  {  // multiproc
    auto [here, there_] = mp::Pipe();
    mp::Connection there = there_;  // a lambda may not capture a structured binding in C++17
    mp::Process echo([there] {
      try {
        for (;;) there.send_bytes(there.recv_bytes());
      } catch (const mp::EOFError&) {
      }
    });
    echo.start();
    there.close();
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
      const auto t0 = Clock::now();
      here.send_bytes(msg);
      if (here.recv_bytes().size() != size) return 1;
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    here.close();
    echo.join();
    report("multiproc::Pipe", us);
  }
  {  // two kernel pipes
    int to_child[2], to_parent[2];
    if (::pipe(to_child) != 0 || ::pipe(to_parent) != 0) return 1;
    mp::Process echo([&] {
      ::close(to_child[1]);  // file descriptors are inherited whole: drop the parent's ends
      ::close(to_parent[0]);
      std::string buf(size, '\0');
      while (read_all(to_child[0], buf.data(), size) && write_all(to_parent[1], buf.data(), size)) {
      }
    });
    echo.start();
    ::close(to_child[0]);
    ::close(to_parent[1]);
    std::string buf(size, '\0');
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
      const auto t0 = Clock::now();
      if (!write_all(to_child[1], msg.data(), size) || !read_all(to_parent[0], buf.data(), size)) return 1;
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    ::close(to_child[1]);
    echo.join();
    ::close(to_parent[0]);
    report("kernel pipe (2 fds)", us);
  }
  return 0;
}
