// multiproc/redis/detail/renewal.hpp — private: one background thread per process that renews
// leases (a held Lock, a consumer's in-flight messages, a worker's heartbeat) at their periods.
// Users never name it.
//
//   detail::Renewal r(1s, [client, key, token] { return renew(client, key, token); });
//   // ... renewed every second until r is destroyed or the function returns false
//
// The thread starts with the first registration and runs for the life of the process. A renewal
// that throws (the server is down) is retried at its next period: a lease only lapses when its
// holder cannot reach the server for the whole lease, which is what a lease is for. A forked
// child has no renewals: what its parent registered stays the parent's (a lock the parent holds
// is not held by the child); the child's own registrations start the child's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace multiproc::redis::detail {

class Renewal {
 public:
  Renewal() = default;
  //! Effects: runs `renew` every `period` (the first time one period from now) on the renewal
  //! thread until this Renewal is destroyed or reset, or `renew` returns false.
  Renewal(std::chrono::milliseconds period, std::function<bool()> renew);
  //! Effects: reset().
  ~Renewal();
  Renewal(Renewal&& other) noexcept;
  Renewal& operator=(Renewal&& other) noexcept;
  Renewal(const Renewal&) = delete;
  Renewal& operator=(const Renewal&) = delete;

  //! Effects: stops the renewals; if one is running on the renewal thread, waits for it to end
  //! (so that nothing renews after this returns). Must not be called from inside `renew`.
  void reset() noexcept;
  //! Effects: runs the renewal now (on the renewal thread) instead of at its next period.
  void poke() const noexcept;
  bool active() const noexcept { return id_ != 0; }

 private:
  std::uint64_t id_ = 0;
};

}  // namespace multiproc::redis::detail
