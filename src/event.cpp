// Event: a flag bit plus a generation in one futex word.
#include <multiproc/event.hpp>

#include <climits>

namespace multiproc {
namespace {

using detail::EventState;
using detail::StateHandle;

constexpr std::uint32_t kFlag = 1;
constexpr std::uint32_t kGenerationStep = 2;
constexpr int kSpinIterations = 100;

Segment::Init event_init() {
  return [](void* body) {
    auto* s = static_cast<EventState*>(body);
    s->word.store(0, std::memory_order_relaxed);
    s->waiters.store(0, std::memory_order_relaxed);
  };
}

}  // namespace

Event::Event() : h_(Kind::event, 1, event_init()) {}
Event::Event(create_only_t, const Name& name) : h_(Kind::event, 1, create_only, name, event_init()) {}
Event::Event(open_only_t, const Name& name) : h_(Kind::event, open_only, name) {}
Event::Event(open_or_create_t, const Name& name)
    : h_(Kind::event, 1, open_or_create, name, event_init()) {}

void Event::set() const {
  EventState* s = h_.state();
  std::uint32_t w = s->word.load(std::memory_order_relaxed);
  while ((w & kFlag) == 0 &&
         !s->word.compare_exchange_weak(w, (w + kGenerationStep) | kFlag)) {  // seq_cst
  }
  // seq_cst: pairs with the waiter's seq_cst increment of waiters before it re-reads the word.
  // Wake even if the flag was already up: a setter killed between raising it and waking would
  // otherwise leave the waiters asleep until their next slice.
  if (s->waiters.load() != 0) detail::futex_wake(&s->word, INT_MAX);
}

void Event::clear() const {
  // release: pairs with nothing in particular; the flag is a snapshot for is_set()/wait().
  h_.state()->word.fetch_and(~kFlag, std::memory_order_release);
}

bool Event::is_set() const noexcept {
  return (h_.state()->word.load(std::memory_order_acquire) & kFlag) != 0;
}

bool Event::wait_until(const detail::Clock::time_point* deadline) const {
  EventState* s = h_.state();
  // acquire: pairs with the seq_cst CAS in set(); whatever the setter wrote before set() is
  // visible once we see the flag.
  const std::uint32_t start = s->word.load(std::memory_order_acquire);
  if ((start & kFlag) != 0) return true;
  for (int i = 0; i < kSpinIterations; ++i) {
    detail::cpu_relax();
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
    const auto slice = detail::next_slice(deadline);  // see kLivenessSlice
    detail::futex_wait(&s->word, w, &slice);
    if (deadline != nullptr && detail::Clock::now() >= *deadline) {
      const std::uint32_t last = s->word.load();
      result = (last & kFlag) != 0 || (last & ~kFlag) != (start & ~kFlag);
      break;
    }
  }
  s->waiters.fetch_sub(1, std::memory_order_relaxed);
  return result;
}

}  // namespace multiproc
