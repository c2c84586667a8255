// Semaphore and BoundedSemaphore: one atomic count, futex sleep after a bounded spin.
#include <multiproc/semaphore.hpp>

#include <climits>
#include <limits>

namespace multiproc {
namespace detail {
namespace {

constexpr int kSpinIterations = 100;
constexpr std::uint32_t kMaxCount = static_cast<std::uint32_t>(std::numeric_limits<int>::max());

bool take(SemaphoreState* s) noexcept {
  std::uint32_t c = s->count.load(std::memory_order_relaxed);
  while (c > 0) {
    if (s->count.compare_exchange_weak(c, c - 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

std::uint32_t checked_initial(long initial, const char* kind) {
  if (initial < 0 || static_cast<unsigned long>(initial) > kMaxCount) {
    throw Error(errc::invalid_argument, std::string("multiproc: ") + kind + ": initial value " +
                                            std::to_string(initial) + " is not in [0, " +
                                            std::to_string(kMaxCount) + "]");
  }
  return static_cast<std::uint32_t>(initial);
}

}  // namespace

bool SemaphoreBase::semaphore_try_acquire(SemaphoreState* s) noexcept { return take(s); }

bool SemaphoreBase::semaphore_acquire(SemaphoreState* s, const Clock::time_point* deadline) {
  if (take(s)) return true;
  for (int i = 0; i < kSpinIterations; ++i) {
    cpu_relax();
    if (s->count.load(std::memory_order_relaxed) > 0 && take(s)) return true;
  }
  // seq_cst: the increment must be visible before we re-read count, and release() reads waiters
  // after its own seq_cst increment of count — so one of us sees the other (no lost wake-up).
  s->waiters.fetch_add(1);
  bool got = false;
  for (;;) {
    if (take(s)) {
      got = true;
      break;
    }
    // In slices: a releaser killed between adding units and waking us costs at most one slice.
    const auto slice = next_slice(deadline);
    futex_wait(&s->count, 0, &slice);
    if (deadline != nullptr && Clock::now() >= *deadline) {
      got = take(s);  // a release may have raced with the timeout: keep it rather than lose it
      break;
    }
  }
  s->waiters.fetch_sub(1, std::memory_order_relaxed);
  return got;
}

void SemaphoreBase::semaphore_release(SemaphoreState* s, std::uint32_t k, const std::string& what) {
  if (k == 0) return;
  std::uint32_t c = s->count.load(std::memory_order_relaxed);
  for (;;) {
    if (s->bounded != 0 && (c > s->bound || k > s->bound - c)) {
      throw Error(errc::bad_state, what + ": released too many times (value " +
                                       std::to_string(c) + " + " + std::to_string(k) +
                                       " would exceed the bound " + std::to_string(s->bound) + ")");
    }
    if (c > kMaxCount || k > kMaxCount - c) {
      throw Error(errc::invalid_argument, what + ": release(" + std::to_string(k) +
                                              ") would overflow the count " + std::to_string(c));
    }
    if (s->count.compare_exchange_weak(c, c + k)) break;  // seq_cst: see semaphore_acquire
  }
  if (s->waiters.load() != 0) futex_wake(&s->count, static_cast<int>(std::min<std::uint32_t>(k, INT_MAX)));
}

Segment::Init SemaphoreBase::initialiser(long initial, bool bounded, const char* what) {
  const std::uint32_t value = checked_initial(initial, what);
  return [value, bounded](void* body) {
    auto* s = static_cast<SemaphoreState*>(body);
    s->count.store(value, std::memory_order_relaxed);
    s->waiters.store(0, std::memory_order_relaxed);
    s->bound = value;
    s->bounded = bounded ? 1 : 0;
  };
}

}  // namespace detail

namespace {
using detail::SemaphoreState;
using detail::StateHandle;
std::uint32_t bound_of(long initial) {
  return initial < 0 ? 0 : static_cast<std::uint32_t>(initial);
}
}  // namespace

Semaphore::Semaphore(long initial)
    : SemaphoreBase(StateHandle<SemaphoreState>(Kind::semaphore, 1,
                                                initialiser(initial, false, "Semaphore"))) {}
Semaphore::Semaphore(create_only_t, const Name& name, long initial)
    : SemaphoreBase(StateHandle<SemaphoreState>(Kind::semaphore, 1, create_only, name,
                                                initialiser(initial, false, "Semaphore"))) {}
Semaphore::Semaphore(open_only_t, const Name& name)
    : SemaphoreBase(StateHandle<SemaphoreState>(Kind::semaphore, open_only, name)) {}
Semaphore::Semaphore(open_or_create_t, const Name& name, long initial)
    : SemaphoreBase(StateHandle<SemaphoreState>(Kind::semaphore, 1, open_or_create, name,
                                                initialiser(initial, false, "Semaphore"))) {}

// The header's count records the bound, so open_or_create with another bound is refused. (A
// BoundedSemaphore(0) refuses every release, as Python's does.)
BoundedSemaphore::BoundedSemaphore(long initial)
    : SemaphoreBase(StateHandle<SemaphoreState>(
          Kind::bounded_semaphore, bound_of(initial),
          initialiser(initial, true, "BoundedSemaphore"))) {}
BoundedSemaphore::BoundedSemaphore(create_only_t, const Name& name, long initial)
    : SemaphoreBase(StateHandle<SemaphoreState>(
          Kind::bounded_semaphore, bound_of(initial), create_only, name,
          initialiser(initial, true, "BoundedSemaphore"))) {}
BoundedSemaphore::BoundedSemaphore(open_only_t, const Name& name)
    : SemaphoreBase(StateHandle<SemaphoreState>(Kind::bounded_semaphore, open_only, name)) {}
BoundedSemaphore::BoundedSemaphore(open_or_create_t, const Name& name, long initial)
    : SemaphoreBase(StateHandle<SemaphoreState>(
          Kind::bounded_semaphore, bound_of(initial), open_or_create, name,
          initialiser(initial, true, "BoundedSemaphore"))) {}

}  // namespace multiproc
