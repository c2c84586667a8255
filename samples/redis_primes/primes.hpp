// samples/redis_primes/primes.hpp — what the coordinator and its workers share: the task's
// argument type and the task itself.
#pragma once

namespace primes {

//! The numbers in [lo, hi). Trivially copyable: multiproc's Codec sends its bytes.
struct Range {
  long lo = 0;
  long hi = 0;
};

//! The count of primes in r, by trial division (deliberately plain: the work to share out).
inline long count_primes(Range r) {
  long n = 0;
  for (long x = r.lo < 2 ? 2 : r.lo; x < r.hi; ++x) {
    if (x < 4) {
      ++n;
      continue;
    }
    if (x % 2 == 0 || x % 3 == 0) continue;
    bool prime = true;
    for (long d = 5; d * d <= x; d += 6) {
      if (x % d == 0 || x % (d + 2) == 0) {
        prime = false;
        break;
      }
    }
    if (prime) ++n;
  }
  return n;
}

}  // namespace primes
