// Queue scenarios: 8-byte items 1 -> 1 and 2 -> 2 (messages/s), strings 1 -> 1 (MB/s); multiproc's
// Queue beside Boost.Interprocess's message_queue and a bare spinning SPSC ring.
#include "harness.hpp"
#include "peers.hpp"

#include <multiproc/multiproc.hpp>

#include <boost/interprocess/ipc/message_queue.hpp>

namespace mp = multiproc;
namespace bip = boost::interprocess;

namespace bench {
namespace {

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
  long sum = 0;
  const double s = timed_with_child(
      "queue_spsc: the producer failed", [&] { for (long i = 0; i < n; ++i) put(i); },
      [&] { for (long i = 0; i < n; ++i) sum += get(); });
  if (sum != n * (n - 1) / 2) die("queue_spsc: wrong sum");
  return {n / s, "msgs/s", true};
}

Result queue_spsc_multiproc() {
  mp::Queue<long> q(1024);
  return spsc_run(4000000, [&](long v) { q.put(v); }, [&] { return q.get(); });
}

Result queue_spsc_boost() {
  BoostQueue q(unique("mq"), 1024, sizeof(long));
  return spsc_run(1000000, [&](long v) { q.put(v); }, [&] { return q.get(); });
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
  auto* sum = shared_new<std::atomic<long>>();
  const double s = timed_children("queue_mpmc: a process failed", 4, [&](int k) {
    if (k < 2) {  // two producers
      for (long i = 0; i < per_producer; ++i) put(i);
    } else {  // two consumers
      long part = 0;
      for (long i = 0; i < per_producer; ++i) part += get();
      sum->fetch_add(part);
    }
  });
  const bool ok = sum->load() == 2 * (per_producer * (per_producer - 1) / 2);
  shared_delete(sum);
  if (!ok) die("queue_mpmc: wrong sum");
  return {2 * per_producer / s, "msgs/s", true};
}

Result queue_mpmc_multiproc() {
  mp::Queue<long> q(1024);
  return mpmc_run(1000000, [&](long v) { q.put(v); }, [&] { return q.get(); });
}

Result queue_mpmc_boost() {
  BoostQueue q(unique("mq"), 1024, sizeof(long));
  return mpmc_run(300000, [&](long v) { q.put(v); }, [&] { return q.get(); });
}

// ---- queue of strings: 1 -> 1, MB/s --------------------------------------------------------

Result queue_strings_multiproc(std::size_t size, long n) {
  mp::Queue<std::string> q(256, 256 * (size + 64));
  const std::string msg(size, 'x');
  return bytes_run(size, n, [&] { q.put(msg); }, [&] { return q.get().size(); });
}

Result queue_strings_boost(std::size_t size, long n) {
  BoostQueue q(unique("mqs"), 256, size);
  const std::string msg(size, 'x');
  std::vector<char> buf(size);
  return bytes_run(size, n, [&] { q.send(msg.data(), size); },
                   [&] { return q.receive(buf.data(), size); });
}

}  // namespace

void add_queue_scenarios(Scenarios& s) {
  s["queue_spsc_8B"] = {{"multiproc", queue_spsc_multiproc},
                        {"boost_message_queue", queue_spsc_boost},
                        {"bare_spin_ring", queue_spsc_bare}};
  s["queue_mpmc_2x2"] = {{"multiproc", queue_mpmc_multiproc},
                         {"boost_message_queue", queue_mpmc_boost}};
  s["queue_strings_64B"] = {{"multiproc", [] { return queue_strings_multiproc(64, 1000000); }},
                            {"boost_message_queue", [] { return queue_strings_boost(64, 1000000); }}};
  s["queue_strings_4KiB"] = {
      {"multiproc", [] { return queue_strings_multiproc(4096, 200000); }},
      {"boost_message_queue", [] { return queue_strings_boost(4096, 200000); }}};
}

}  // namespace bench
