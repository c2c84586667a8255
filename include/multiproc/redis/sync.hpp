// multiproc/redis/sync.hpp — Lock, Value<T>, Event and Semaphore on a Redis server: the local
// Mutex, SharedValue, Event and BoundedSemaphore for processes on many hosts.
//
//   namespace rd = multiproc::redis;
//   rd::Lock lock("redis://10.0.0.5:6379/0", "accounts");      // any host, same name: same lock
//   {
//     std::lock_guard<rd::Lock> g(lock);
//     store.write(data, lock.fencing_token());                 // storage rejects older tokens
//   }
//   rd::Value<long> hits(url, "hits");  hits.add(1);
//   rd::Event ready(url, "ready");       ready.wait_for(5s);
//   rd::Semaphore slots(url, "gpu", 4);  if (slots.try_acquire_for(1s)) { ...; slots.release(); }
//
// Names: an object is its name on its server; the same name from any process on any host is the
// same object. Keys live under "mp:<kind>:<name>:..." (mp:lock:accounts:state); a ":meta" hash
// records the kind and type on first use, and opening it later as another type (a Value<int> as
// Value<long>, a Semaphore with another bound) is Error(errc::type_mismatch). Nothing here is
// removed by a destructor: the state is the server's (an unlocked lock keeps its meta hash and
// its fencing counter, plus two keys that expire a lease after the unlock; a semaphore nobody
// holds, its meta hash and the ids of released permits until the next acquisition).
//
// Handles: every object is a cheap handle (copies share one state; methods are const), usable
// from many threads, and copied into forked children, which open connections of their own.
// Every call is a few round trips to the server: microseconds to a millisecond, not the local
// objects' nanoseconds (README, "Beyond one machine").
//
// Waiting never polls the server: a waiter blocks on the server (BLPOP on a wake-up list that
// unlock / release / set push to) in slices no longer than the lease it waits for (so that a dead
// holder's lease running out is noticed at once), and every timed wait gives its deadline to the
// Client, so a server that stops answering (SIGSTOP, partition) still returns false on time.
//
// Leases (Lock, Semaphore): a holder's claim is leased (LockOptions::lease, default 10 s) and
// renewed by the process's renewal thread (detail::Renewal) every lease/3 while held, so a live
// holder keeps it as long as it likes. Leases run on the SERVER's clock (TIME inside the Lua
// scripts): client clocks never matter. What survives what:
//   - A holder killed (SIGKILL, host gone, cut off from the server) keeps the lock for at most
//     one lease, then the next locker takes it over and sees previous_owner_died(); a Semaphore's
//     permits come back the same way. A holder paused (SIGSTOP) or cut off for longer than its
//     lease is treated the same: when it resumes it no longer holds the lock, and cannot know
//     until it asks (its unlock() throws Error(errc::not_owner) saying the lease expired) —
//     which is why fencing_token() exists: pass it to the storage you guard, which rejects a
//     writer whose token is older than one it has seen.
//   - A holder whose lease ran out but that nobody took over still holds it: its renewals
//     resume and its unlock() succeeds (mutual exclusion was never broken).
//   - A waiter killed while blocked leaves nothing behind: waiters register nothing on the
//     server (an Event waiter's registration expires by itself). A waiter killed just after
//     taking a wake-up can delay the next waiter by one slice (at most one lease).
//   - The server restarted: with AOF (appendfsync always) every acquisition was logged before it
//     was answered, so the holder still holds the lock and its lease goes on from the time it had
//     (the holder's renewal reconnects within Options::reconnect_for; a restart longer than the
//     lease may let a waiter take the lock first, with previous_owner_died()). WITHOUT
//     persistence a restart frees every lock and permit and resets the fencing counter (tokens
//     start again at 1: fencing needs persistence); the next locker sees a free lock
//     (previous_owner_died() false) and the old holder's unlock() throws not_owner.
//   - The server paused (SIGSTOP) longer than a lease: nothing expires while it is paused (its
//     clock is read only when a script runs), and every timed call returns at its deadline.
//   - Values and Events are single keys changed atomically by the server: no crash of a client
//     leaves them half-changed; they survive restarts as the server's persistence does.
// Failures: a server that cannot be reached is Error(errc::disconnected) after the Client's
// Options::reconnect_for (or at the caller's deadline, as a false/empty result); every error
// names the object ("redis::Lock 'accounts'") and the server.
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/error.hpp>
#include <multiproc/redis/client.hpp>
#include <multiproc/typecode.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

namespace multiproc::redis {

namespace detail {
struct LockState;
struct ValueState;
struct EventState;
struct SemaphoreState;

//! A caller's deadline in steady time, or none for time_point::max() ("wait forever").
inline Deadline to_deadline(Clock::time_point t) {
  if (t == Clock::time_point::max()) return std::nullopt;
  return t;
}
}  // namespace detail

struct LockOptions {
  //! How long a holder keeps the lock without reaching the server (renewed every lease/3 while
  //! held). At least 30 ms. Shorter: a dead holder is replaced sooner; longer: a holder survives
  //! longer outages and pauses.
  std::chrono::milliseconds lease{10000};
};

//! A lock shared by every process that names it on the server (Python's Lock, across hosts).
//! Lockable and TimedLockable: std::lock_guard, std::unique_lock and std::scoped_lock work.
//!
//! Holder: the calling thread through this handle (and its copies). The thread that locked
//! unlocks; another thread of the process using the same handle blocks in lock() as another
//! process would. A thread locking again through the same handle gets Error(would_deadlock); a
//! thread that holds it through one handle and locks through a second handle of the same name
//! waits like anyone else (until its deadline). A forked child does not hold what its parent
//! holds. Each acquisition is a fresh random id on the server.
//!
//! Destroying the last handle while holding the lock stops its renewals: the lock is taken over
//! after its lease, with previous_owner_died(). A try_lock_for() whose deadline passes while its
//! acquisition is in flight (a server that stops answering) may have taken the lock on the
//! server without knowing: nobody renews it, so it is free again one lease later (the next
//! holder sees previous_owner_died()).
//!
//! Cost: lock() + unlock() uncontended are two round trips (two scripts): ~5,000 pairs a second
//! on one connection to a local server.
class Lock {
 public:
  //! Effects: opens the lock `name` on the server at `url` (created on first use; records its
  //! kind). Throws: Error(errc::invalid_argument) for a bad url, name or lease;
  //! Error(errc::disconnected) when the server cannot be reached; Error(errc::type_mismatch).
  Lock(std::string_view url, std::string name, LockOptions options = {});
  //! As above, on `client`'s server and with its Options.
  Lock(const Client& client, std::string name, LockOptions options = {});

  //! Effects: blocks until the calling thread holds the lock; takes it over from a holder whose
  //! lease expired (then previous_owner_died() is true). Throws: Error(errc::would_deadlock) if
  //! the calling thread holds it through this handle; Error(errc::disconnected) when the server
  //! cannot be reached for Options::reconnect_for.
  void lock() const;
  //! Returns: true if it took the lock at once; false if anyone (the caller included) holds it.
  bool try_lock() const;
  //! Returns: true if it took the lock before the timeout / deadline; false otherwise, also when
  //! the server does not answer by then. Throws: as lock().
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return lock_until(detail::to_deadline(multiproc::detail::deadline_after(timeout)));
  }
  template <class C, class D>
  bool try_lock_until(const std::chrono::time_point<C, D>& deadline) const {
    return lock_until(detail::to_deadline(multiproc::detail::to_steady(deadline)));
  }
  //! Requires: the calling thread holds the lock through this handle. Effects: releases it and
  //! wakes one waiter. Throws: Error(errc::not_owner) naming the lock when the calling thread
  //! does not hold it, or when its lease expired and another holder took the lock since (the
  //! message says so); the local hold ends either way.
  void unlock() const;

  //! Returns: whether anyone holds the lock now, on the server (a snapshot). A lock whose
  //! holder's lease expired reads false: the next locker takes it at once.
  bool locked() const;
  //! Returns: true while the calling thread holds the lock after taking it over from a holder
  //! whose lease expired (dead, paused or cut off) instead of unlocking; false otherwise.
  bool previous_owner_died() const noexcept;
  //! Returns: the fencing token of the calling thread's hold: strictly greater than that of
  //! every earlier acquisition of this lock by anyone (1, 2, 3, ... kept on the server; see the
  //! header comment for server restarts). Throws: Error(errc::not_owner) when not held.
  std::uint64_t fencing_token() const;

  const std::string& name() const noexcept;
  const Client& client() const noexcept;

 private:
  bool lock_until(Deadline deadline) const;
  std::shared_ptr<detail::LockState> s_;
};

namespace detail {

//! What Value<T> shares for every T: a 64-bit integer on the server, kept in [min, max].
class ValueCore {
 public:
  ValueCore(const Client& client, std::string name, std::string type_name, long long min,
            long long max, long long initial);
  long long load() const;
  void store(long long v) const;
  long long add(long long delta) const;  // the value after
  bool compare_exchange(long long expected, long long desired) const;
  //! Returns {exchanged, the value found}.
  std::pair<bool, long long> exchange_if(long long expected, long long desired) const;
  const std::string& name() const noexcept;
  const Client& client() const noexcept;

 private:
  std::shared_ptr<ValueState> s_;
};

}  // namespace detail

//! An integer on the server that processes on any host read and change atomically
//! (multiprocessing.Value('l') without a lock: every operation is one atomic server command).
//! Requires: an integral T of Python's type-code table, not bool; 64-bit T must be signed (the
//! server counts in signed 64 bits). A key that is missing (flushed, or a restart without
//! persistence) reads as 0.
template <class T>
class Value {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool> && has_typecode_v<T>,
                "redis::Value<T> needs an integer type of Python's table (b B h H i I l L q Q): "
                "the server keeps it as a decimal integer");
  static_assert(std::is_signed_v<T> || sizeof(T) < 8,
                "redis::Value<T> cannot hold an unsigned 64-bit T: the server's integers are "
                "signed 64-bit");

 public:
  //! Effects: opens the value `name`, setting it to `initial` if it does not exist yet (an
  //! existing value keeps its value). Throws: Error(errc::type_mismatch) when `name` holds a
  //! Value of another T; Error(errc::disconnected) when the server cannot be reached.
  Value(std::string_view url, std::string name, T initial = T{})
      : Value(Client(url), std::move(name), initial) {}
  Value(const Client& client, std::string name, T initial = T{})
      : core_(client, std::move(name), type_info(typecode_v<T>).c_type,
              static_cast<long long>(std::numeric_limits<T>::min()),
              static_cast<long long>(std::numeric_limits<T>::max()),
              static_cast<long long>(initial)) {}

  //! Returns: the value now (a snapshot). Throws: Error(errc::corrupt) when the key holds
  //! something that is not an integer of T's range (written by another program).
  T load() const { return static_cast<T>(core_.load()); }
  //! Effects: sets the value.
  void store(T v) const { core_.store(static_cast<long long>(v)); }
  //! Effects: adds `delta` atomically. Returns: the value AFTER the addition.
  //! Throws: Error(errc::invalid_argument) when the result would leave T's range (nothing is
  //! changed).
  T add(T delta) const { return static_cast<T>(core_.add(static_cast<long long>(delta))); }
  //! As add(), but returns the value BEFORE the addition (std::atomic's fetch_add).
  T fetch_add(T delta) const {
    return static_cast<T>(core_.add(static_cast<long long>(delta)) - static_cast<long long>(delta));
  }
  //! Effects: sets the value to `desired` if it is `expected`, atomically.
  //! Returns: whether it did.
  bool compare_exchange(T expected, T desired) const {
    return core_.compare_exchange(static_cast<long long>(expected),
                                  static_cast<long long>(desired));
  }
  //! Effects: replaces the value v by f(v) atomically (a compare-and-exchange loop: f may run
  //! more than once when others change the value meanwhile; it must not have side effects).
  //! Returns: the value stored.
  template <class F>
  T transform(F&& f) const {
    T cur = load();
    for (;;) {
      const T next = static_cast<T>(f(cur));
      auto [done, found] =
          core_.exchange_if(static_cast<long long>(cur), static_cast<long long>(next));
      if (done) return next;
      cur = static_cast<T>(found);
    }
  }

  const std::string& name() const noexcept { return core_.name(); }
  const Client& client() const noexcept { return core_.client(); }

 private:
  detail::ValueCore core_;
};

//! A flag that processes on any host wait for (Python's Event). set() wakes every waiter in
//! every process at once: each waiting call has its own wake-up list on the server, registered
//! (with an expiry, so a killed waiter's registration goes away by itself) in a sorted set that
//! set() empties, pushing to each list. A set() releases every call already waiting even if
//! clear() follows at once.
class Event {
 public:
  //! Effects: opens the event `name` (initially clear when new). Throws: as Lock's constructor.
  Event(std::string_view url, std::string name);
  Event(const Client& client, std::string name);

  //! Effects: raises the flag and wakes every waiter.
  void set() const;
  //! Effects: lowers the flag.
  void clear() const;
  //! Returns: whether the flag is raised now (a snapshot).
  bool is_set() const;
  //! Effects: blocks until the flag is raised. Throws: Error(errc::disconnected) when the server
  //! cannot be reached for Options::reconnect_for.
  void wait() const;
  //! Returns: true if the flag was raised before the timeout / deadline (also when the server
  //! does not answer by then: false).
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_until_(detail::to_deadline(multiproc::detail::deadline_after(timeout)));
  }
  template <class C, class D>
  bool wait_until(const std::chrono::time_point<C, D>& deadline) const {
    return wait_until_(detail::to_deadline(multiproc::detail::to_steady(deadline)));
  }

  const std::string& name() const noexcept;
  const Client& client() const noexcept;

 private:
  bool wait_until_(Deadline deadline) const;
  std::shared_ptr<detail::EventState> s_;
};

struct SemaphoreOptions {
  //! How long a permit stays held without its holder reaching the server (renewed every lease/3
  //! while held). At least 30 ms.
  std::chrono::milliseconds lease{10000};
};

//! A bounded semaphore of `initial` permits shared by every process that names it (Python's
//! BoundedSemaphore, across hosts), whose permits are leased: a holder that dies has its permits
//! returned when their leases expire.
//!
//! Permits belong to the handle that acquired them (and its copies, in the acquiring process):
//! release() returns one of the permits this handle holds, from any of its threads. Releasing
//! more than the handle holds is Error(errc::bad_state) (the bounded semaphore's over-release).
//! A forked child does not hold its parent's permits.
class Semaphore {
 public:
  //! Effects: opens the semaphore `name` with `initial` permits (its bound; created on first
  //! use). Throws: Error(errc::invalid_argument) for initial outside [1, 2^31 - 1] or a bad lease;
  //! Error(errc::type_mismatch) when it exists with another bound; Error(errc::disconnected).
  Semaphore(std::string_view url, std::string name, long initial, SemaphoreOptions options = {});
  Semaphore(const Client& client, std::string name, long initial, SemaphoreOptions options = {});

  //! Effects: takes a permit, blocking while there is none. Throws: Error(errc::disconnected).
  void acquire() const;
  //! Returns: true if it took a permit at once.
  bool try_acquire() const;
  //! Returns: true if it took a permit before the timeout / deadline (false also when the server
  //! does not answer by then).
  template <class Rep, class Period>
  bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return acquire_until(detail::to_deadline(multiproc::detail::deadline_after(timeout)));
  }
  template <class C, class D>
  bool try_acquire_until(const std::chrono::time_point<C, D>& deadline) const {
    return acquire_until(detail::to_deadline(multiproc::detail::to_steady(deadline)));
  }
  //! Effects: returns one of this handle's permits and wakes a waiter. Throws:
  //! Error(errc::bad_state) naming the semaphore when this handle holds none;
  //! Error(errc::not_owner) when that permit's lease had expired (it was returned already).
  void release() const;
  //! Returns: the permits free now, on the server (a snapshot; expired leases count as free).
  long value() const;
  //! Returns: the permits this handle holds (in this process).
  long held() const;
  //! Returns: the bound given at construction.
  long bound() const noexcept;

  const std::string& name() const noexcept;
  const Client& client() const noexcept;

 private:
  bool acquire_until(Deadline deadline) const;
  std::shared_ptr<detail::SemaphoreState> s_;
};

}  // namespace multiproc::redis
