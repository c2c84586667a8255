// Semaphore and BoundedSemaphore: one atomic count, futex sleep after a bounded spin.
#include <multiproc/semaphore.hpp>
#include <multiproc/detail/shared_object.hpp>

#include "waiter_count.hpp"

#include <algorithm>
#include <climits>
#include <limits>

namespace multiproc {
namespace detail {
namespace {

constexpr int kSpinIterations = 100;
constexpr std::uint32_t kMaxCount = static_cast<std::uint32_t>(std::numeric_limits<int>::max());
static_assert(kMaxCount == kSemaphoreMaxCount, "one limit for the count, in the header too");

bool take(SemaphoreCore* s) noexcept {
  std::uint32_t c = s->count.load(std::memory_order_relaxed);
  while (c > 0) {
    if (s->count.compare_exchange_weak(c, c - 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

}  // namespace

void throw_bad_release(const std::string& what, const std::string& k) {
  throw Error(errc::invalid_argument, what + ": release(" + k + "): the number of units must be 1 to " +
                                          std::to_string(kMaxCount));
}

std::uint32_t semaphore_checked_initial(long initial, const char* what) {
  if (initial < 0 || static_cast<unsigned long>(initial) > kMaxCount) {
    throw Error(errc::invalid_argument, std::string("multiproc: ") + what + ": initial value " +
                                            std::to_string(initial) + " is not in [0, " +
                                            std::to_string(kMaxCount) + "]");
  }
  return static_cast<std::uint32_t>(initial);
}

void semaphore_init(SemaphoreCore* s, std::uint32_t value, bool bounded) noexcept {
  s->count.store(value, std::memory_order_relaxed);
  s->waiters.store(0, std::memory_order_relaxed);
  s->bound = value;
  s->bounded = bounded ? 1 : 0;
}

bool semaphore_try_acquire(SemaphoreCore* s) noexcept { return take(s); }

bool semaphore_acquire(SemaphoreCore* s, const Clock::time_point* deadline) noexcept {
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
  count_down(s->waiters);
  return got;
}

void semaphore_release(SemaphoreCore* s, std::uint32_t k, const std::string& what) {
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
  if (s->waiters.load() != 0) {
    note_wake(s, s->waiters, futex_wake(&s->count, static_cast<int>(std::min<std::uint32_t>(k, INT_MAX))));
  }
}

namespace {

template <bool Bounded>
constexpr Kind kSemaphoreKind = Bounded ? Kind::bounded_semaphore : Kind::semaphore;

// Checks `initial` (naming the semaphore) before any segment is made.
template <bool Bounded>
Segment::Init initialiser(long initial, const Name* name = nullptr) {
  const std::string what = describe_object(kSemaphoreKind<Bounded>, nullptr,
                                           name != nullptr ? std::string_view(name->str()) : "");
  const std::uint32_t value = semaphore_checked_initial(initial, what.c_str());
  return [value](void* body) { semaphore_init(static_cast<SemaphoreState*>(body), value, Bounded); };
}

// A BoundedSemaphore's header count records the bound, so open_or_create with another bound is
// refused (a BoundedSemaphore(0) refuses every release, as Python's does). A Semaphore's is 1.
template <bool Bounded>
std::uint64_t count_of(long initial) {
  return !Bounded ? 1 : initial < 0 ? 0 : static_cast<std::uint32_t>(initial);
}

}  // namespace

template <bool Bounded>
SemaphoreHandle<Bounded>::SemaphoreHandle(long initial)
    : h_(kSemaphoreKind<Bounded>, count_of<Bounded>(initial), initialiser<Bounded>(initial)) {}
template <bool Bounded>
SemaphoreHandle<Bounded>::SemaphoreHandle(create_only_t, const Name& name, long initial)
    : h_(kSemaphoreKind<Bounded>, count_of<Bounded>(initial), create_only, name,
         initialiser<Bounded>(initial, &name)) {}
template <bool Bounded>
SemaphoreHandle<Bounded>::SemaphoreHandle(open_only_t, const Name& name)
    : h_(kSemaphoreKind<Bounded>, open_only, name) {
  check_state();
}
template <bool Bounded>
SemaphoreHandle<Bounded>::SemaphoreHandle(open_or_create_t, const Name& name, long initial)
    : h_(kSemaphoreKind<Bounded>, count_of<Bounded>(initial), open_or_create, name,
         initialiser<Bounded>(initial, &name)) {
  check_state();
}

// An opened semaphore's immutable fields must agree with its kind and header (its bound is the
// header's count). Units are not geometry, but a count above the bound or INT_MAX is impossible.
template <bool Bounded>
void SemaphoreHandle<Bounded>::check_state() const {
  const SemaphoreState* s = h_.state();
  const std::uint64_t bound = h_.segment().count();
  const std::uint32_t count = s->count.load(std::memory_order_relaxed);
  if (s->bounded != (Bounded ? 1u : 0u) || (Bounded && s->bound != bound) ||
      (!Bounded && bound != 1) || count > (Bounded ? bound : kMaxCount)) {
    h_.segment().fail(errc::corrupt,
                      "its state is damaged (bounded " + std::to_string(s->bounded) + ", bound " +
                          std::to_string(s->bound) + " where the header says " +
                          std::to_string(bound) + ", count " + std::to_string(count) + ")");
  }
}

template class SemaphoreHandle<false>;
template class SemaphoreHandle<true>;

}  // namespace detail
}  // namespace multiproc
