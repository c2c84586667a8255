// Manager scenarios: a Manager's dict<long, long>, set(k, v) then get(k), beside Python's
// Manager().dict() (bench/peers.py, the same work): the round trip of one client (us per
// operation) and the throughput of 1, 2 and 4 client processes (operations/s). One operation is
// one set or one get, so a pair is two. Each client works on 1024 keys of its own.
//
// Timed: only the set/get calls. The manager's process is started, the dict created, and every
// client connected and warm (a few pairs) before the clock runs.
#include "harness.hpp"

#include <multiproc/manager.hpp>

#include <atomic>

namespace mp = multiproc;

namespace bench {
namespace {

constexpr long kKeys = 1024;

//! n set(k, v) + get(k) pairs on keys base .. base + kKeys - 1; returns the number of bad gets.
template <class Dict>
long dict_pairs(Dict& d, long base, long n) {
  long bad = 0;
  for (long i = 0; i < n; ++i) {
    const long k = base + i % kKeys;
    d.set(k, i);
    const auto got = d.get(k);
    bad += !got || *got != i;
  }
  return bad;
}

// ---- one client (this process): microseconds per operation -------------------------------------

Result dict_roundtrip_multiproc() {
  mp::Manager m;
  auto d = m.dict<long, long>("bench");
  dict_pairs(d, 0, 100);  // connected and warm
  const long n = 100000;
  const auto t0 = Clock::now();
  const long bad = dict_pairs(d, 0, n);
  const double s = seconds(t0);
  if (bad != 0) die("manager_dict_roundtrip: wrong value");
  return {s / (2 * n) * 1e6, "us", false};
}

// ---- procs forked clients, released together: operations per second ---------------------------

Result dict_clients_multiproc(int procs) {
  mp::Manager m;
  auto d = m.dict<long, long>("bench");
  auto* bad = shared_new<std::atomic<long>>();
  const long n = 50000;  // pairs per client
  const double s = timed_prepared_children(
      "manager_dict: a client failed", procs,
      [&](int k) { dict_pairs(d, k * 1000000L, 10); },  // this process's own connection
      [&](int k) { bad->fetch_add(dict_pairs(d, k * 1000000L, n)); });
  const bool ok = bad->load() == 0 && d.size() == static_cast<std::size_t>(procs * kKeys);
  shared_delete(bad);
  if (!ok) die("manager_dict: wrong value or size");
  return {procs * 2.0 * n / s, "ops/s", true};
}

}  // namespace

void add_manager_scenarios(Scenarios& s) {
  s["manager_dict_roundtrip"] = {{"multiproc", dict_roundtrip_multiproc}};
  s["manager_dict_1p"] = {{"multiproc", [] { return dict_clients_multiproc(1); }}};
  s["manager_dict_2p"] = {{"multiproc", [] { return dict_clients_multiproc(2); }}};
  s["manager_dict_4p"] = {{"multiproc", [] { return dict_clients_multiproc(4); }}};
}

}  // namespace bench
