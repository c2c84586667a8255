// Condition: wake tickets counted against registered waiters, futex on a sequence word.
//
// notify(n) hands out min(n, waiters - tickets) tickets and wakes that many sleepers; a waiter
// returns "notified" only by taking a ticket, so at most n waiters return per notify(n) and a
// ticket is never lost: a sleeper woken without finding one goes back to sleep on the new sequence
// value. A waiter that arrives after a notify may take one of its tickets before an older sleeper
// wakes (the older one then keeps waiting); that is a spurious wake-up as far as the newcomer is
// concerned, and the predicate forms of wait() absorb it.
#include <multiproc/condition.hpp>

#include <climits>

namespace multiproc {
namespace detail {
namespace {

constexpr std::uint64_t kWaiter = 1;
constexpr std::uint64_t kTicket = std::uint64_t{1} << 32;
constexpr int kSpinIterations = 100;

std::uint32_t waiters_of(std::uint64_t c) { return static_cast<std::uint32_t>(c); }
std::uint32_t tickets_of(std::uint64_t c) { return static_cast<std::uint32_t>(c >> 32); }

// Takes a ticket if there is one, unregistering the waiter. seq_cst CAS.
bool take_ticket(ConditionState* s) noexcept {
  std::uint64_t c = s->counts.load();
  while (tickets_of(c) > 0) {
    if (s->counts.compare_exchange_weak(c, c - kTicket - kWaiter)) return true;
  }
  return false;
}

// Timed out: take a ticket that raced in (then report notified), else just unregister.
bool leave(ConditionState* s) noexcept {
  std::uint64_t c = s->counts.load();
  for (;;) {
    const std::uint64_t next = tickets_of(c) > 0 ? c - kTicket - kWaiter : c - kWaiter;
    if (s->counts.compare_exchange_weak(c, next)) return tickets_of(c) > 0;
  }
}

}  // namespace

std::uint32_t condition_enter(ConditionState* s) noexcept {
  s->counts.fetch_add(kWaiter);  // seq_cst: a notify after this sees us
  return s->seq.load();
}

void condition_cancel(ConditionState* s) noexcept { (void)leave(s); }

bool condition_sleep(ConditionState* s, std::uint32_t seq, const Clock::time_point* deadline) noexcept {
  for (int i = 0; i < kSpinIterations; ++i) {
    if (s->seq.load(std::memory_order_relaxed) != seq && take_ticket(s)) return true;
    cpu_relax();
  }
  for (;;) {
    if (take_ticket(s)) return true;
    if (!futex_wait(&s->seq, seq, deadline)) return leave(s);
    seq = s->seq.load();  // woken, or the sequence moved: look for a ticket, then sleep on it
  }
}

void condition_notify(ConditionState* s, std::uint32_t n) noexcept {
  if (n == 0) return;
  std::uint64_t c = s->counts.load();
  std::uint32_t add;
  for (;;) {
    const std::uint32_t waiting = waiters_of(c) - tickets_of(c);
    add = std::min(n, waiting);
    if (add == 0) return;  // nobody is waiting for a ticket: nothing to do (no syscall)
    if (s->counts.compare_exchange_weak(c, c + add * kTicket)) break;
  }
  s->seq.fetch_add(1);  // seq_cst: sleepers that re-read seq after this will not sleep on it
  futex_wake(&s->seq, static_cast<int>(std::min<std::uint32_t>(add, INT_MAX)));
}

}  // namespace detail

namespace {
Segment::Init condition_init() {
  return [](void* body) {
    auto* s = static_cast<detail::ConditionState*>(body);
    s->seq.store(0, std::memory_order_relaxed);
    s->counts.store(0, std::memory_order_relaxed);
  };
}
}  // namespace

Condition::Condition() : h_(Kind::condition, 1, condition_init()) {}
Condition::Condition(create_only_t, const Name& name)
    : h_(Kind::condition, 1, create_only, name, condition_init()) {}
Condition::Condition(open_only_t, const Name& name) : h_(Kind::condition, open_only, name) {}
Condition::Condition(open_or_create_t, const Name& name)
    : h_(Kind::condition, 1, open_or_create, name, condition_init()) {}

}  // namespace multiproc
