// multiproc/recursive_mutex.hpp — a robust, reentrant lock shared between processes (Python's
// multiprocessing.RLock).
//
// The thread that holds a RecursiveMutex may lock it again; it is released when unlock() has been
// called as many times as lock(). Only the holder may unlock (Error otherwise). Shared like Mutex:
// copy the handle into forked children, or open it by name from unrelated processes.
//
// Crashes: as Mutex. If the holder dies — at any recursion depth — its whole hold is released:
// the next locker gets it with depth 1 and previous_owner_died() true.
//
// A Condition can wait with a RecursiveMutex held at any depth: it releases every level while
// waiting and restores the same depth before returning, as Python's Condition does with an RLock.
#pragma once

#include <multiproc/mutex.hpp>

namespace multiproc {

//! Constructors: as Mutex's (unnamed, or create_only / open_only / open_or_create by name).
class MULTIPROC_CAPABILITY("mutex") RecursiveMutex
    : public detail::LockHandle<Kind::recursive_mutex, &detail::init_recursive_mutex> {
 public:
  using LockHandle::LockHandle;

  //! Returns: how many times the calling thread holds it (0 if it does not).
  unsigned depth() const noexcept {
    return detail::mutex_held_by_caller(h_.state()) ? h_.state()->depth : 0;
  }
};

}  // namespace multiproc
