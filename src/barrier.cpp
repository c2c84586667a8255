// Barrier: a round counter under a robust lock, waiters on a generation futex word.
#include <multiproc/barrier.hpp>
#include <multiproc/detail/cache_line.hpp>
#include <multiproc/detail/mutex_state.hpp>

#include "os.hpp"

#include <algorithm>
#include <climits>
#include <optional>

namespace multiproc {
namespace detail {

// Layout:
//   lock          robust mutex guarding count, broken and every change of generation
//   generation    futex word the waiters of a round sleep on; +1 when the round ends (released,
//                 broken or reset). Stored with release under the lock, read with acquire.
//   outcomes      bit (g % 64) set when round g ended broken, cleared when it was released;
//                 stored before the generation bump that ends the round (relaxed; ordered by
//                 that release), so a slow waiter reads its own round's outcome — while fewer
//                 than 64 rounds ended after its own (wait_until says what happens after that)
//   parties       immutable; each handle takes a copy at open, checked against the header's count
//                 (so does it of the timeout fields), and never reads it again
//   count         processes arrived in the current round (atomic: n_waiting() reads it unlocked)
//   broken        1 from a break until reset() (atomic: broken() reads it unlocked)
//   has_timeout   immutable: 1 when wait() has a default timeout (0 in a barrier made without one)
//   timeout_ns    immutable: that timeout in nanoseconds (>= 0)
//   break_request breaks asked for, lock-free, by timed waits whose deadline passed while another
//                 process held the lock (stopped inside reset() or the action, say); they leave
//                 on time and the lock's next holder carries the break out (settle):
//                   bit 33 (kBreakAll): a wait that timed out before it arrived: the barrier
//                          breaks, as any timed-out wait breaks it (Python's too);
//                   bit 32 (kBreakRound) | g: a waiter of round g timed out: round g breaks, if
//                          it is still the current round — also when the party that fills it
//                          holds the lock (it looks before it releases the round). The newest
//                          round asked for is kept (a compare-and-swap).
//                 0: none. Zero in a segment of an older build (it was padding): none.
// 128 bytes with the alignment either way: the timeout fields and the request sit in what was
// padding.
struct alignas(detail::kCacheLine) BarrierState {
  MutexState lock;
  std::atomic<std::uint32_t> generation;
  std::atomic<std::uint64_t> outcomes;
  std::uint32_t parties;
  std::atomic<std::uint32_t> count;
  std::atomic<std::uint32_t> broken;
  std::uint32_t has_timeout;
  std::int64_t timeout_ns;
  std::atomic<std::uint64_t> break_request;
};
static_assert(sizeof(BarrierState) == 128, "the Barrier layout above is shared between builds");

}  // namespace detail

namespace {

using detail::BarrierState;

// Rounds in lockstep hand over within a microsecond or two when every party has a CPU: spin that
// long before sleeping. With more parties than CPUs, spinning only steals time from the party
// everyone waits for (measured: 4 parties on 2 CPUs run 3x faster without it), so sleep at once.
constexpr int kSpinIterations = 1000;

int spin_budget(unsigned parties) {
  static const int cpus = detail::available_cpus();
  return parties <= static_cast<unsigned>(cpus) ? kSpinIterations : 0;
}

Segment::Init barrier_init(unsigned parties, std::optional<Barrier::Timeout> timeout = {}) {
  if (parties == 0) {
    throw Error(errc::invalid_argument, "multiproc: Barrier: parties must be at least 1");
  }
  return [parties, timeout](void* body) {
    auto* s = static_cast<BarrierState*>(body);
    detail::mutex_init(&s->lock, false, "Barrier");
    s->generation.store(0, std::memory_order_relaxed);
    s->outcomes.store(0, std::memory_order_relaxed);
    s->parties = parties;
    s->count.store(0, std::memory_order_relaxed);
    s->broken.store(0, std::memory_order_relaxed);
    s->has_timeout = timeout ? 1 : 0;
    s->timeout_ns = timeout ? std::max<std::int64_t>(timeout->count(), 0) : 0;
  };
}

std::uint64_t round_bit(std::uint32_t generation) { return std::uint64_t{1} << (generation % 64); }

// Ends the current round. Requires the lock.
void end_round(BarrierState* s, bool broken) {
  const std::uint32_t gen = s->generation.load(std::memory_order_relaxed);
  if (broken) {
    s->outcomes.fetch_or(round_bit(gen), std::memory_order_release);  // see wait_until's end
  } else {
    s->outcomes.fetch_and(~round_bit(gen), std::memory_order_release);
  }
  s->count.store(0, std::memory_order_relaxed);
  // release: pairs with the acquire in the waiters; publishes the outcome with the new round.
  s->generation.store(gen + 1, std::memory_order_release);
  detail::futex_wake(&s->generation, INT_MAX);
}

void break_locked(BarrierState* s) {
  s->broken.store(1, std::memory_order_relaxed);
  end_round(s, true);
}

constexpr std::uint64_t kBreakAll = std::uint64_t{1} << 33;
constexpr std::uint64_t kBreakRound = std::uint64_t{1} << 32;

// Asks, without the lock, that the barrier break (a wait that timed out before it arrived).
void request_break_all(BarrierState* s) { s->break_request.fetch_or(kBreakAll); }

// Asks, without the lock, that round `gen` break (one of its waiters timed out). seq_cst: the
// caller then reads the generation, and the party filling the round reads this before it
// releases it (round_break_requested): one of them sees the other.
void request_break_round(BarrierState* s, std::uint32_t gen) {
  std::uint64_t old = s->break_request.load();
  for (;;) {
    if ((old & kBreakRound) != 0 &&
        static_cast<std::int32_t>(gen - static_cast<std::uint32_t>(old)) <= 0) {
      return;  // this round or a newer one is asked for already
    }
    if (s->break_request.compare_exchange_weak(old, (old & kBreakAll) | kBreakRound | gen)) return;
  }
}

// Whether a waiter of round `gen` asked that it break.
bool round_break_requested(BarrierState* s, std::uint32_t gen) {
  const std::uint64_t req = s->break_request.load();
  return (req & kBreakRound) != 0 && static_cast<std::uint32_t>(req) == gen;
}

// Requires the lock: carries out the breaks asked for while the lock was held elsewhere.
void settle(BarrierState* s) {
  if (s->break_request.load(std::memory_order_relaxed) == 0) return;
  const std::uint64_t req = s->break_request.exchange(0, std::memory_order_acquire);
  if ((req & kBreakAll) != 0 ||
      ((req & kBreakRound) != 0 &&
       static_cast<std::uint32_t>(req) == s->generation.load(std::memory_order_relaxed))) {
    break_locked(s);
  }
}

// The barrier's lock, held for the scope — taken by `deadline` if there is one (owns() says
// whether it was). A holder that died mid-update left the bookkeeping in an unknown state: the
// safe reading is a broken barrier.
class Locked {
 public:
  Locked(BarrierState* s, const std::string& what, const detail::Clock::time_point* deadline = nullptr)
      : s_(s), what_(what) {
    if (deadline == nullptr) {
      detail::mutex_lock(&s->lock, what);
    } else if (!detail::mutex_lock_until(&s->lock, *deadline, what)) {
      return;
    }
    owns_ = true;
    if (detail::mutex_owner_died(&s->lock)) break_locked(s);
    settle(s);
  }
  ~Locked() {
    if (owns_) detail::mutex_unlock_noexcept(&s_->lock, what_);
  }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;
  bool owns() const noexcept { return owns_; }

 private:
  BarrierState* s_;
  const std::string& what_;
  bool owns_ = false;
};

}  // namespace

Barrier::Barrier(unsigned parties, Action action)
    : h_(Kind::barrier, parties, barrier_init(parties)), action_(std::move(action)) {
  take_geometry();
}
Barrier::Barrier(create_only_t, const Name& name, unsigned parties, Action action)
    : h_(Kind::barrier, parties, create_only, name, barrier_init(parties)),
      action_(std::move(action)) {
  take_geometry();
}
Barrier::Barrier(unsigned parties, Action action, Timeout timeout)
    : h_(Kind::barrier, parties, barrier_init(parties, timeout)), action_(std::move(action)) {
  take_geometry();
}
Barrier::Barrier(create_only_t, const Name& name, unsigned parties, Action action, Timeout timeout)
    : h_(Kind::barrier, parties, create_only, name, barrier_init(parties, timeout)),
      action_(std::move(action)) {
  take_geometry();
}
Barrier::Barrier(open_or_create_t, const Name& name, unsigned parties, Action action,
                 Timeout timeout)
    : h_(Kind::barrier, parties, open_or_create, name, barrier_init(parties, timeout)),
      action_(std::move(action)) {
  take_geometry();
}
Barrier::Barrier(open_only_t, const Name& name, Action action)
    : h_(Kind::barrier, open_only, name), action_(std::move(action)) {
  take_geometry();
}
Barrier::Barrier(open_or_create_t, const Name& name, unsigned parties, Action action)
    : h_(Kind::barrier, parties, open_or_create, name, barrier_init(parties)),
      action_(std::move(action)) {
  take_geometry();
}

void Barrier::take_geometry() {
  const BarrierState* s = h_.state();
  const std::uint64_t header_parties = h_.segment().count();
  if (s->parties == 0 || s->parties != header_parties || s->has_timeout > 1 ||
      (s->has_timeout != 0 && s->timeout_ns < 0)) {
    h_.segment().fail(errc::corrupt, "its state is damaged (parties " + std::to_string(s->parties) +
                                         " where the header says " +
                                         std::to_string(header_parties) + ", timeout flag " +
                                         std::to_string(s->has_timeout) + ")");
  }
  parties_ = s->parties;
  if (s->has_timeout != 0) timeout_ = Timeout(s->timeout_ns);
}

unsigned Barrier::parties() const noexcept { return parties_; }

unsigned Barrier::wait() const {
  const std::optional<Timeout> t = timeout();
  if (!t) return wait_until(nullptr);
  const auto deadline = detail::deadline_after(*t);
  return wait_until(&deadline);
}

std::optional<Barrier::Timeout> Barrier::timeout() const noexcept { return timeout_; }

unsigned Barrier::wait_until(const detail::Clock::time_point* deadline) const {
  BarrierState* s = h_.state();
  const std::string& what = h_.what();
  std::uint32_t gen;
  unsigned index;
  {
    // A timed wait waits for the lock until its deadline only: a process stopped (or a thread id
    // scribbled) inside the lock held it past the deadline before (an outside probe: a
    // wait_for(500 ms) returned when the stopped process was continued, 3 s later).
    Locked lock(s, what, deadline);
    if (!lock.owns()) {
      request_break_all(s);
      throw BrokenBarrier(what + ": timed out waiting for the barrier's lock, which another "
                                 "process holds (stopped or slow); this wait did not arrive, and "
                                 "the barrier breaks when that process lets go");
    }
    if (s->broken.load(std::memory_order_relaxed) != 0) throw BrokenBarrier(what + ": broken");
    gen = s->generation.load(std::memory_order_relaxed);
    index = s->count.load(std::memory_order_relaxed);
    if (index >= parties_) {  // a scribbled count: the index would be out of [0, parties)
      break_locked(s);
      throw Error(errc::corrupt, what + ": its arrival count " + std::to_string(index) +
                                     " is not below its parties (" + std::to_string(parties_) +
                                     "): damaged; the barrier is now broken");
    }
    s->count.store(index + 1, std::memory_order_relaxed);
    if (index + 1 == parties_) {
      if (action_) {
        try {
          action_();
        } catch (...) {
          break_locked(s);
          throw;
        }
      }
      if (round_break_requested(s, gen)) {
        // A waiter of this round timed out meanwhile (the action took long, say) and left with
        // BrokenBarrier: the round breaks for everyone, not only for it.
        break_locked(s);
        throw BrokenBarrier(what + ": a waiter of this round timed out while it was filled (in "
                                   "the action?); the barrier is now broken");
      }
      end_round(s, false);  // the action's effects are published with the new round
      return index;
    }
  }
  for (int i = spin_budget(parties_); i > 0; --i) {
    if (s->generation.load(std::memory_order_acquire) != gen) break;
    detail::cpu_relax();
  }
  while (s->generation.load(std::memory_order_acquire) == gen) {
    // Every kLivenessSlice, a sleeper checks that the barrier's lock was not left behind by a
    // dead process (one running the action, say).
    const auto slice = detail::next_slice(deadline);
    const bool final_slice = deadline != nullptr && slice == *deadline;
    if (detail::futex_wait(&s->generation, gen, &slice)) continue;
    if (final_slice) {
      Locked lock(s, what, deadline);  // the deadline has passed: one try, as try_lock
      if (!lock.owns()) {
        // Held elsewhere (stopped inside it, running the action?): ask for the break and leave on
        // time — unless the round ended meanwhile: then its outcome is ours (below).
        if (s->generation.load(std::memory_order_acquire) != gen) break;
        request_break_round(s, gen);
        if (s->generation.load() != gen) break;  // ended as we asked: see how
        throw BrokenBarrier(what + ": timed out waiting for the round to fill (" +
                            std::to_string(index + 1) + " of " + std::to_string(parties_) +
                            " had arrived); the round breaks as the barrier's lock, held by "
                            "another process, is let go");
      }
      if (s->generation.load(std::memory_order_relaxed) == gen) {
        break_locked(s);
        throw BrokenBarrier(what + ": timed out waiting for the round to fill (" +
                            std::to_string(index + 1) + " of " + std::to_string(parties_) +
                            " had arrived); the barrier is now broken");
      }
    } else if (detail::mutex_try_lock(&s->lock, what)) {
      // Free, or left behind by a dead holder — in which case the barrier breaks now.
      if (detail::mutex_owner_died(&s->lock)) break_locked(s);
      settle(s);
      detail::mutex_unlock(&s->lock, what);
    }
  }
  // The outcome of round gen is bit gen % 64 until round gen + 64 ends (which writes that bit,
  // release, before it bumps the generation to gen + 65). So it is this round's while the
  // generation, read after the bit (the acquire keeps that load after it, and sees every
  // generation stored before the bit it read), has not reached gen + 64: at most 63 rounds
  // ended after this one (gen + 64 may be ending as we read, its bit already written). A waiter
  // that did not run for that many rounds (stopped, say) cannot know whether its round was
  // released or broken: it says so, rather than report the outcome of a later round.
  const std::uint64_t outcomes = s->outcomes.load(std::memory_order_acquire);
  const std::uint32_t since = s->generation.load(std::memory_order_relaxed) - gen;
  if (since >= 64) {
    throw Error(errc::bad_state,
                what + ": this waiter was released from its round but did not run again until " +
                    std::to_string(since) +
                    " rounds had ended (a process stopped or starved): whether its round "
                    "completed or broke is no longer known (the last 64 are kept)");
  }
  if ((outcomes & round_bit(gen)) != 0) {
    throw BrokenBarrier(what + ": broken or reset while waiting");
  }
  return index;
}

void Barrier::abort() const {
  Locked lock(h_.state(), h_.what());
  break_locked(h_.state());
}

void Barrier::reset() const {
  BarrierState* s = h_.state();
  Locked lock(s, h_.what());
  if (s->count.load(std::memory_order_relaxed) > 0) end_round(s, true);  // waiters: BrokenBarrier
  s->broken.store(0, std::memory_order_relaxed);
  s->count.store(0, std::memory_order_relaxed);
}

bool Barrier::broken() const noexcept {
  return h_.state()->broken.load(std::memory_order_relaxed) != 0;
}

unsigned Barrier::n_waiting() const noexcept {
  return std::min(h_.state()->count.load(std::memory_order_relaxed), parties_);  // never above
}

}  // namespace multiproc
