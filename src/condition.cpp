// Condition: 64-bit arrival numbers and two waiter groups under a robust lock; sleepers on two
// futex words, the newcomers' moved onto the serving group's when it takes them over.
//
// Every waiter draws an arrival number. Numbers below notified_below are notified. The serving
// group [notified_below, serving_end) holds `serving` members and `tickets` notifications for
// them (tickets < serving: once every member holds one, the group is folded into the notified
// range). Newcomers [serving_end, arrived) came after the notify that formed the serving group.
// notify(n) gives tickets to the serving group first; only when all of it is notified does it
// make the newcomers — all present now — the serving group and give them the rest. So no ticket
// can reach a process that started waiting after the notify, and every count is exact however
// many waiters and outstanding notifications there are. A waiter that times out takes a ticket if
// its group has one, else leaves its group's count, so no notification is spent on it. One that
// gives up while another process holds the lock (stopped inside a notify) leaves through a
// departure slot instead, settled by the next holder (settle_departures).
//
// Sleeping: newcomers sleep on newcomer_word, serving-group members on serving_word. Forming a
// serving group bumps newcomer_word and, under the lock (before any later newcomer can sleep
// there), wakes as many as it gave tickets and requeues the other sleepers onto serving_word;
// handing out tickets bumps serving_word and wakes that many there. Each word is read under the
// lock before sleeping on it, and written only under the lock, so a sleeper cannot miss a change.
#include <multiproc/condition.hpp>

#include <algorithm>
#include <climits>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace multiproc::detail {
namespace {

int wake_count(std::uint64_t n) noexcept {
  return static_cast<int>(std::min<std::uint64_t>(n, INT_MAX));
}

// Wakes up to `wake` sleepers on `from` and moves all others to `to`, if *from == expected.
void futex_requeue(std::atomic<std::uint32_t>* from, std::uint32_t expected, int wake,
                   std::atomic<std::uint32_t>* to) noexcept {
  // The kernel takes the requeue count in the timeout argument's place.
  (void)::syscall(SYS_futex, from, FUTEX_CMP_REQUEUE, wake, static_cast<long>(INT_MAX), to,
                  expected);
}

void bump(std::atomic<std::uint32_t>& word) noexcept {
  // relaxed: written and read (by waiters about to sleep) only under the lock; the kernel's
  // futex ordering covers the compare against a sleeper's value.
  word.store(word.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// If every serving-group member holds a ticket (or none is left), they are all notified: fold
// the group into the notified range. Requires the lock.
void normalize(ConditionCore* s) noexcept {
  if (s->tickets < s->serving) return;
  // release: pairs with the acquire in condition_sleep's look without the lock.
  s->notified_below.store(s->serving_end, std::memory_order_release);
  compiler_barrier();  // a death from here on leaves an empty range that repair() clears
  s->serving = 0;
  s->tickets = 0;
}

// Re-derives counts a holder of the internal lock left half-updated when it died. Updates are
// ordered so that a death between two stores errs towards a waiter counted that may be gone (a
// notification can be spent on it), never towards a notification no notify handed out. Runs under
// the lock (MutexScope's repair hook).
void repair(ConditionCore& s) noexcept {
  const std::uint64_t below = s.notified_below.load(std::memory_order_relaxed);
  s.arrived = std::max(s.arrived, below);
  s.serving_end = std::clamp(s.serving_end, below, s.arrived);
  s.serving = std::min(s.serving, s.serving_end - below);
  s.newcomers = std::min(s.newcomers, s.arrived - s.serving_end);
  normalize(&s);
  // Sleepers may have missed a change the dead holder made: all of them look again.
  bump(s.newcomer_word);
  bump(s.serving_word);
  futex_wake(&s.newcomer_word, INT_MAX);
  futex_wake(&s.serving_word, INT_MAX);
}

// Takes a ticket of the serving group. Requires the lock and tickets > 0.
void take(ConditionCore* s) noexcept {
  --s->tickets;
  compiler_barrier();  // a death here leaves one member too many: a phantom waiter, never a ticket
  --s->serving;
  normalize(s);
}

// Unregisters a waiter that was not notified. Requires the lock.
void leave(ConditionCore* s, std::uint64_t ticket) noexcept {
  if (ticket >= s->serving_end) {
    if (s->newcomers > 0) --s->newcomers;
  } else if (s->serving > 0) {
    --s->serving;
    normalize(s);
  }
}

// Notifies up to n of the waiters present (serving group first) and wakes them. Requires the lock.
void notify_locked(ConditionCore* s, std::uint64_t n) noexcept {
  std::uint64_t left = n;
  // The serving group first: it was waiting before the newcomers.
  const std::uint64_t given = std::min(left, s->serving - s->tickets);
  if (given > 0) {
    s->tickets += given;
    left -= given;
    normalize(s);
  }
  if (left == 0 || s->newcomers == 0) {
    if (given > 0) {
      bump(s->serving_word);
      // Under the lock: after it, a later notify may requeue new, unticketed members onto
      // serving_word, and this wake could go to one of them instead of a ticket holder.
      futex_wake(&s->serving_word, wake_count(given));
    }
    return;
  } else {
    // The serving group is all notified (and folded): the newcomers become the serving group.
    s->serving = s->newcomers;
    compiler_barrier();  // each step of this keeps a state repair() can finish
    s->serving_end = s->arrived;
    compiler_barrier();
    s->newcomers = 0;
    compiler_barrier();
    const std::uint64_t more = std::min(left, s->serving);
    s->tickets = more;
    normalize(s);
    bump(s->serving_word);
    bump(s->newcomer_word);
    // Under the lock, so that no newcomer of the new group is asleep on newcomer_word yet.
    if (given > 0) futex_wake(&s->serving_word, wake_count(given));
    futex_requeue(&s->newcomer_word, s->newcomer_word.load(std::memory_order_relaxed),
                  wake_count(more), &s->serving_word);
    return;
  }
}

// Takes the waiters posted in the departure slots off the counts (as leave() would have, had they
// got the lock at their deadline), and wakes every sleeper to look again (taking one off may
// fold its group: the rest are notified). Requires the lock. Each posted waiter has returned
// false; one whose number is notified by now was notified after it gave up (by a holder stopped
// in a notify while it waited for the lock, or just after it looked): that notification is passed
// on, so none is lost. A death between the exchange and leave() loses the departure: the waiter
// stays counted, as a waiter that dies while waiting does.
void settle_departures(ConditionCore* s, ConditionDepartures departed) noexcept {
  if (departed == nullptr) return;
  std::uint64_t passed_on = 0;
  bool left = false;
  for (int i = 0; i < kConditionDepartures; ++i) {
    if (departed[i].load(std::memory_order_relaxed) == 0) continue;
    const std::uint64_t v = departed[i].exchange(0, std::memory_order_acquire);
    if (v == 0) continue;
    const std::uint64_t ticket = v - 1;
    if (ticket >= s->arrived) continue;  // not a number handed out (a scribble)
    if (ticket < s->notified_below.load(std::memory_order_relaxed)) {
      ++passed_on;
    } else {
      leave(s, ticket);
      left = true;
    }
  }
  if (passed_on > 0) notify_locked(s, passed_on);
  if (left) {
    bump(s->newcomer_word);
    bump(s->serving_word);
    futex_wake(&s->newcomer_word, INT_MAX);
    futex_wake(&s->serving_word, INT_MAX);
  }
}

// Posts a waiter's departure in a free slot; false if there is none.
bool post_departure(ConditionDepartures departed, std::uint64_t ticket) noexcept {
  if (departed == nullptr) return false;
  for (int i = 0; i < kConditionDepartures; ++i) {
    std::uint64_t expected = 0;
    // release: the departure is seen whole by the holder that takes it (acquire exchange).
    if (departed[i].compare_exchange_strong(expected, ticket + 1, std::memory_order_release,
                                            std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

// The internal lock, held for a scope, with the counts repaired after a death and the departed
// waiters taken off. With a deadline, it may not be taken: held() says.
class Locked {
 public:
  Locked(ConditionCore* s, const std::string& what, ConditionDepartures departed)
      : s_(s), what_(what), departed_(departed) {
    take();
  }
  // Waits for the lock until the deadline (nullptr: for good).
  Locked(ConditionCore* s, const std::string& what, ConditionDepartures departed,
         const Clock::time_point* deadline)
      : s_(s), what_(what), departed_(departed) {
    if (deadline == nullptr) {
      take();
    } else if (mutex_lock_until(&s_->lock, *deadline, what_)) {
      held_ = true;
      settle();
    }
  }
  ~Locked() {
    if (held_) mutex_unlock_noexcept(&s_->lock, what_);
  }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;
  bool held() const noexcept { return held_; }
  //! Waits for the lock for good (when a timed wait for it did not get it).
  void take() {
    mutex_lock(&s_->lock, what_);
    held_ = true;
    settle();
  }

 private:
  void settle() noexcept {
    if (mutex_inconsistent(&s_->lock)) {
      repair(*s_);
      mutex_mark_repaired(&s_->lock);
    }
    settle_departures(s_, departed_);
  }
  ConditionCore* s_;
  const std::string& what_;
  ConditionDepartures departed_;
  bool held_ = false;
};

}  // namespace

void condition_init(ConditionCore* s) {
  s->notified_below.store(0, std::memory_order_relaxed);
  s->newcomer_word.store(0, std::memory_order_relaxed);
  s->serving_word.store(0, std::memory_order_relaxed);
  mutex_init(&s->lock, false, "Condition");
  s->arrived = s->serving_end = s->serving = s->tickets = s->newcomers = 0;
}

bool condition_enter(ConditionCore* s, const std::string& what, const Clock::time_point* deadline,
                     std::uint64_t& ticket, ConditionDepartures departed) {
  // With a deadline: a process stopped while it holds the lock must not hold this waiter past it
  // (nothing is registered yet, so giving up here changes nothing).
  Locked lock(s, what, departed, deadline);
  if (!lock.held()) return false;
  ticket = s->arrived;
  s->arrived = ticket + 1;
  compiler_barrier();  // a death here leaves a number nobody holds: harmless
  ++s->newcomers;
  return true;
}

void condition_cancel(ConditionCore* s, std::uint64_t ticket, const std::string& what,
                      ConditionDepartures departed) noexcept {
  try {
    Locked lock(s, what, departed);
    // A waiter already notified keeps its notification (spent: the wait throws); otherwise it
    // leaves without taking a ticket, which stays for the rest of its group.
    if (ticket >= s->notified_below.load(std::memory_order_relaxed)) leave(s, ticket);
  } catch (...) {
  }
}

bool condition_sleep(ConditionCore* s, std::uint64_t ticket, const Clock::time_point* deadline,
                     const std::string& what, ConditionDepartures departed) noexcept {
  try {
    for (;;) {
      // acquire: pairs with the release in normalize(); a notified waiter needs no lock.
      if (ticket < s->notified_below.load(std::memory_order_acquire)) return true;
      std::atomic<std::uint32_t>* word;
      std::uint32_t seen;
      {
        // Until the deadline: a process stopped (or long preempted) while it holds the lock must
        // not hold this waiter past it. Then the waiter leaves through a departure slot, which
        // the next holder settles; with no slot free (or none: a PlacedCondition) it waits for
        // the lock after all.
        Locked lock(s, what, departed, deadline);
        if (!lock.held()) {
          if (ticket < s->notified_below.load(std::memory_order_acquire)) return true;
          if (post_departure(departed, ticket)) return false;
          lock.take();
        }
        if (ticket < s->notified_below.load(std::memory_order_relaxed)) return true;
        const bool serving = ticket < s->serving_end;
        if (serving && s->tickets > 0) {
          take(s);
          return true;
        }
        if (deadline != nullptr && Clock::now() >= *deadline) {
          leave(s, ticket);
          return false;
        }
        // Read under the lock: a notify that changes what this waiter sees changes the word too.
        word = serving ? &s->serving_word : &s->newcomer_word;
        seen = word->load(std::memory_order_relaxed);
      }
      const auto slice = next_slice(deadline);
      futex_wait(word, seen, &slice);
    }
  } catch (...) {
    return false;  // the internal lock failed (cannot happen short of memory corruption)
  }
}

void condition_notify(ConditionCore* s, std::uint32_t n, const std::string& what,
                      ConditionDepartures departed) noexcept {
  if (n == 0) return;
  try {
    Locked lock(s, what, departed);
    notify_locked(s, n);
  } catch (...) {
  }
}

std::uint64_t condition_waiting(ConditionCore* s, const std::string& what,
                                ConditionDepartures departed) {
  Locked lock(s, what, departed);
  return s->serving - s->tickets + s->newcomers;
}

}  // namespace multiproc::detail

