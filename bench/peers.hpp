// The peers several scenario files share (locks.cpp, queues.cpp, curves.cpp): a counter under
// Boost's interprocess_mutex, one under a plain process-shared pthread mutex (the bare limit), and
// Boost's message_queue under a unique name. Defined once, so that every scenario measures the
// same peer.
#pragma once

#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>

#include <cstddef>
#include <pthread.h>
#include <string>

namespace bench {

//! A long under Boost's interprocess_mutex (a process-shared pthread mutex, not robust).
struct BoostCounter {
  boost::interprocess::interprocess_mutex mutex;
  long value = 0;
};

//! A long under a plain (not robust) process-shared pthread mutex: the bare limit.
struct PthreadCounter {
  pthread_mutex_t mutex;
  long value = 0;
  PthreadCounter() {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&mutex, &a);
    pthread_mutexattr_destroy(&a);
  }
  ~PthreadCounter() { pthread_mutex_destroy(&mutex); }
  PthreadCounter(const PthreadCounter&) = delete;
  PthreadCounter& operator=(const PthreadCounter&) = delete;
};

//! Boost's message_queue under `name` (unique() of the caller), removed by the destructor and
//! before creating it (a leftover of a killed run).
class BoostQueue {
 public:
  BoostQueue(const std::string& name, std::size_t capacity, std::size_t message_size)
      : name_(name), queue_(fresh(name_), name_.c_str(), capacity, message_size) {}
  ~BoostQueue() { boost::interprocess::message_queue::remove(name_.c_str()); }
  BoostQueue(const BoostQueue&) = delete;
  BoostQueue& operator=(const BoostQueue&) = delete;

  void send(const void* p, std::size_t n) { queue_.send(p, n, 0); }
  std::size_t receive(void* p, std::size_t n) {
    boost::interprocess::message_queue::size_type got;
    unsigned prio;
    queue_.receive(p, n, got, prio);
    return static_cast<std::size_t>(got);
  }
  void put(long v) { send(&v, sizeof v); }
  long get() {
    long v;
    receive(&v, sizeof v);
    return v;
  }

 private:
  static boost::interprocess::create_only_t fresh(const std::string& name) {
    boost::interprocess::message_queue::remove(name.c_str());
    return boost::interprocess::create_only;
  }
  std::string name_;
  boost::interprocess::message_queue queue_;
};

}  // namespace bench
