// Compiled only by clang, with -Wthread-safety -Werror (tests/CMakeLists.txt): Mutex,
// RecursiveMutex and PlacedMutex are capabilities whose lock/try_lock/unlock acquire and release
// them, so a user's clang build checks data marked guarded_by one of them. With
// MULTIPROC_THREAD_SAFETY_MISUSE defined, the misuse below must fail to compile (a ctest checks).
#include <multiproc/mutex.hpp>
#include <multiproc/placed.hpp>
#include <multiproc/recursive_mutex.hpp>

#include <chrono>

namespace {

struct Account {
  multiproc::Mutex m;
  long balance __attribute__((guarded_by(m))) = 0;

  void deposit(long v) {
    m.lock();
    balance += v;
    m.unlock();
  }
  bool try_deposit(long v) {
    if (!m.try_lock_for(std::chrono::milliseconds(1))) return false;
    balance += v;
    m.unlock();
    return true;
  }
};

struct Counters {
  multiproc::PlacedMutex m;
  multiproc::RecursiveMutex r;
  long n __attribute__((guarded_by(m))) = 0;
  long k __attribute__((guarded_by(r))) = 0;

  void bump() {
    if (m.try_lock()) {
      ++n;
      m.unlock();
    }
    r.lock();
    ++k;
    r.unlock();
  }
#ifdef MULTIPROC_THREAD_SAFETY_MISUSE
  long peek() { return n; }  // reading guarded data without the lock: must be diagnosed
#endif
};

}  // namespace

void multiproc_thread_safety_check(long v) {
  Account a;
  a.deposit(v);
  (void)a.try_deposit(v);
  Counters c;
  c.bump();
}
