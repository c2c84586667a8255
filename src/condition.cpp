// Condition: generations and wake tickets under a robust lock, sleepers on a futex bitset.
//
// notify(n) opens generation g+1 and hands out min(n, waiters without a ticket) tickets tagged
// g+1. A waiter registered at generation e may take a ticket tagged t only if e precedes t — it
// was waiting when that notify ran — so a process that notifies and then waits can never take
// back its own notification. Sleepers wait with the bitset bit of their generation and notify
// wakes every bit but the new generation's, so the wake goes to eligible sleepers.
#include <multiproc/condition.hpp>

#include <climits>

namespace multiproc::detail {
namespace {

// Generation a precedes generation b (modulo 2^32).
bool precedes(std::uint32_t a, std::uint32_t b) noexcept {
  return static_cast<std::int32_t>(b - a) > 0;
}

std::uint32_t bit_of(std::uint32_t generation) noexcept { return 1u << (generation & 31); }

// The internal lock; a holder that died mid-update leaves counts to re-derive.
class Locked {
 public:
  Locked(ConditionState* s, const std::string& what) : s_(s), what_(what) {
    mutex_lock(&s_->lock, what_);
    if (mutex_inconsistent(&s_->lock)) repair();
  }
  ~Locked() { mutex_unlock_noexcept(&s_->lock, what_); }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

 private:
  void repair() noexcept {
    if (s_->used > kConditionBatches) s_->used = kConditionBatches;
    s_->head %= kConditionBatches;
    std::uint32_t sum = 0;
    for (std::uint32_t i = 0; i < s_->used; ++i) {
      sum += s_->batches[(s_->head + i) % kConditionBatches].tickets;
    }
    s_->tickets = sum;
    if (s_->waiters < s_->tickets) s_->waiters = s_->tickets;
    mutex_mark_repaired(&s_->lock);
  }
  ConditionState* s_;
  const std::string& what_;
};

// Takes a ticket the waiter of `generation` may take. Requires the lock.
bool claim(ConditionState* s, std::uint32_t generation) noexcept {
  for (std::uint32_t i = 0; i < s->used; ++i) {
    auto& b = s->batches[(s->head + i) % kConditionBatches];
    if (b.tickets == 0 || !precedes(generation, b.generation)) continue;
    --b.tickets;
    --s->tickets;
    --s->waiters;
    while (s->used > 0 && s->batches[s->head].tickets == 0) {  // drop spent batches
      s->head = (s->head + 1) % kConditionBatches;
      --s->used;
    }
    return true;
  }
  return false;
}

}  // namespace

void condition_init(ConditionState* s) {
  mutex_init(&s->lock, false, "Condition");
  s->seq.store(0, std::memory_order_relaxed);
}

std::uint32_t condition_enter(ConditionState* s, const std::string& what) {
  Locked lock(s, what);
  ++s->waiters;
  return s->seq.load(std::memory_order_relaxed);
}

void condition_cancel(ConditionState* s, std::uint32_t generation, const std::string& what) noexcept {
  try {
    Locked lock(s, what);
    if (!claim(s, generation)) --s->waiters;
  } catch (...) {
  }
}

bool condition_sleep(ConditionState* s, std::uint32_t generation, const Clock::time_point* deadline,
                     const std::string& what) noexcept {
  try {
    for (;;) {
      // Read the word before looking for a ticket: a notify after this changes it, so the
      // futex wait below cannot sleep through it.
      const std::uint32_t seen = s->seq.load(std::memory_order_acquire);
      {
        Locked lock(s, what);
        if (claim(s, generation)) return true;
        if (deadline != nullptr && Clock::now() >= *deadline) {
          --s->waiters;
          return false;
        }
      }
      const auto slice = next_slice(deadline);
      futex_wait_bitset(&s->seq, seen, bit_of(generation), &slice);
    }
  } catch (...) {
    return false;  // the internal lock failed (cannot happen short of memory corruption)
  }
}

void condition_notify(ConditionState* s, std::uint32_t n, const std::string& what) noexcept {
  if (n == 0) return;
  std::uint32_t outstanding, generation;
  try {
    Locked lock(s, what);
    const std::uint32_t waiting = s->waiters - s->tickets;
    const std::uint32_t add = std::min(n, waiting);
    generation = s->seq.load(std::memory_order_relaxed);
    if (add > 0) {
      if (s->used == kConditionBatches) {  // the oldest batch is 32 notifies old: retire it
        s->tickets -= s->batches[s->head].tickets;
        s->head = (s->head + 1) % kConditionBatches;
        --s->used;
      }
      ++generation;
      s->batches[(s->head + s->used) % kConditionBatches] = {generation, add};
      ++s->used;
      s->tickets += add;
      // release: pairs with the sleepers' acquire; the batch is visible with the new generation.
      s->seq.store(generation, std::memory_order_release);
    }
    outstanding = s->tickets;
  } catch (...) {
    return;
  }
  // Wake as many sleepers as there are tickets — not those of the new generation, who cannot
  // take them. Tickets a killed notifier handed out without waking are delivered here too.
  if (outstanding > 0) {
    futex_wake_bitset(&s->seq, static_cast<int>(std::min<std::uint32_t>(outstanding, INT_MAX)),
                      ~bit_of(generation));
  }
}

}  // namespace multiproc::detail

namespace multiproc {
namespace {
Segment::Init condition_initialiser() {
  return [](void* body) { detail::condition_init(static_cast<detail::ConditionState*>(body)); };
}
}  // namespace

Condition::Condition() : h_(Kind::condition, 1, condition_initialiser()) {
  h_.segment().track_lock_owner(&h_.state()->lock.owner);
}
Condition::Condition(create_only_t, const Name& name)
    : h_(Kind::condition, 1, create_only, name, condition_initialiser()) {
  h_.segment().track_lock_owner(&h_.state()->lock.owner);
}
Condition::Condition(open_only_t, const Name& name) : h_(Kind::condition, open_only, name) {
  h_.segment().track_lock_owner(&h_.state()->lock.owner);
}
Condition::Condition(open_or_create_t, const Name& name)
    : h_(Kind::condition, 1, open_or_create, name, condition_initialiser()) {
  h_.segment().track_lock_owner(&h_.state()->lock.owner);
}

}  // namespace multiproc
