// multiproc/recovery_policy.hpp — what a SharedValue or SharedArray does after a process died
// holding its lock (inside update(), a guard or a store()).
//
//   mp::SharedValue<long> hits(mp::create_only, "web.hits");   // a counter: recover, by default
//   hits.load();                      // after a worker died inside update(): a value, never a throw
//   hits.recoveries();                // how many such deaths it recovered from (all processes)
//   mp::SharedValue<Stats> s(mp::create_only, "web.stats", Stats{}, mp::RecoveryPolicy::strict);
//
// strict: the data may be half-updated, so load(), exchange(), update(), to_vector(), ... throw
// Error(errc::owner_died) and guards report previous_owner_died() until someone repairs it through
// a guard (mark_repaired()) or stores a whole value.
//
// recover: whatever the dead holder left is taken as the value. The first operation that takes the
// lock after the death (load, store, update, lock(), ...) counts the death in recoveries() and
// marks the data consistent, then carries on; nothing throws and guards report no death. Only for
// elements of 1, 2, 4 or 8 bytes (asking for it otherwise is Error(errc::invalid_argument)): such
// an element is written whole by one aligned store (store() uses a single atomic store), so a
// death cannot tear it; what it cannot know is whether f in update(f) finished — a counter is then
// short of the dead holder's last increment, which is what a counter should say.
//
// The default, chosen per type (default_recovery_v<T>): recover for an integral or floating-point
// T of at most 8 bytes (a counter, a gauge, a flag) with its own lock; strict for everything else —
// a struct (two fields can be half-updated), a type wider than a word, and any value or array made
// with a caller's lock (several objects share a lock to keep an invariant between them, which a
// death can break although each word is whole). SharedArray is strict by default (an update of
// several elements can be half done); ask for recover when each element stands alone (a histogram).
//
// The policy is chosen by the creator and stored in the object: every process that opens it by
// name gets the same behaviour; open_or_create given a policy checks it (Error(errc::type_mismatch)
// for another one); the recoveries() count is shared too.
#pragma once

#include <cstdint>
#include <type_traits>

namespace multiproc {

//! What a SharedValue or SharedArray does after a process died holding its lock (see above).
enum class RecoveryPolicy : std::uint32_t {
  strict = 1,   //!< throw Error(errc::owner_died) until repaired
  recover = 2,  //!< carry on with what the dead holder left, counted in recoveries()
};

//! The policy a SharedValue<T> with its own lock gets when the creator does not choose one.
template <class T>
inline constexpr RecoveryPolicy default_recovery_v =
    (std::is_integral_v<T> || std::is_floating_point_v<T>) && sizeof(T) <= 8
        ? RecoveryPolicy::recover
        : RecoveryPolicy::strict;

//! "strict" or "recover" (anything else: "unknown").
constexpr const char* policy_name(RecoveryPolicy p) noexcept {
  return p == RecoveryPolicy::strict ? "strict" : p == RecoveryPolicy::recover ? "recover" : "unknown";
}

}  // namespace multiproc
