// Event: a flag bit plus a generation in one futex word.
#include <multiproc/event.hpp>

#include "waiter_count.hpp"

#include <climits>

namespace multiproc::detail {
namespace {

constexpr std::uint32_t kFlag = 1;
constexpr std::uint32_t kGenerationStep = 2;
constexpr int kSpinIterations = 100;

}  // namespace

void event_init(EventCore* s) noexcept {
  s->word.store(0, std::memory_order_relaxed);
  s->waiters.store(0, std::memory_order_relaxed);
}

void event_set(EventCore* s) noexcept {
  std::uint32_t w = s->word.load(std::memory_order_relaxed);
  while ((w & kFlag) == 0 &&
         !s->word.compare_exchange_weak(w, (w + kGenerationStep) | kFlag)) {  // seq_cst
  }
  // seq_cst: pairs with the waiter's seq_cst increment of waiters before it re-reads the word.
  // Wake even if the flag was already up: a setter killed between raising it and waking would
  // otherwise leave the waiters asleep until their next slice.
  if (s->waiters.load() != 0) note_wake(s, s->waiters, futex_wake(&s->word, INT_MAX));
}

void event_clear(EventCore* s) noexcept {
  // release: pairs with nothing in particular; the flag is a snapshot for is_set()/wait().
  s->word.fetch_and(~kFlag, std::memory_order_release);
}

bool event_is_set(const EventCore* s) noexcept {
  return (s->word.load(std::memory_order_acquire) & kFlag) != 0;
}

bool event_wait(EventCore* s, const Clock::time_point* deadline) noexcept {
  // acquire: pairs with the seq_cst CAS in set(); whatever the setter wrote before set() is
  // visible once we see the flag.
  const std::uint32_t start = s->word.load(std::memory_order_acquire);
  if ((start & kFlag) != 0) return true;
  for (int i = 0; i < kSpinIterations; ++i) {
    cpu_relax();
    if (s->word.load(std::memory_order_acquire) != start) break;
  }
  s->waiters.fetch_add(1);  // seq_cst: see set()
  bool result = false;
  for (;;) {
    const std::uint32_t w = s->word.load();
    // Set now, or set (and maybe cleared again) since we started: either way, released.
    if ((w & kFlag) != 0 || (w & ~kFlag) != (start & ~kFlag)) {
      result = true;
      break;
    }
    const auto slice = next_slice(deadline);  // see kLivenessSlice
    futex_wait(&s->word, w, &slice);
    if (deadline != nullptr && Clock::now() >= *deadline) {
      const std::uint32_t last = s->word.load();
      result = (last & kFlag) != 0 || (last & ~kFlag) != (start & ~kFlag);
      break;
    }
  }
  count_down(s->waiters);
  return result;
}

}  // namespace multiproc::detail
