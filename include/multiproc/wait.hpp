// multiproc/wait.hpp — wait for the first of several objects to become ready (Python's
// multiprocessing.connection.wait).
//
//   auto ready = mp::wait({results, control_conn, worker_process}, 500ms);
//   for (std::size_t i : ready) { ... }        // indices into the list, in list order
//
// Objects: a Connection that can receive (ready: a message, or EOF, is waiting), any Queue
// (ready: a message is waiting, or it is closed), a Process (ready: it has ended — its sentinel).
// wait() returns the indices of the ready objects as soon as one is ready; with a timeout, an
// empty vector once it passes (an empty list just sleeps until then — for ever without one). A
// blocked wait() uses no CPU: it sleeps on the futex words of all the queues and connections at
// once (futex_waitv), and a helper thread watches process sentinels (pidfds) when any are listed.
// A Process without a pidfd (see process.hpp), or every Process when the helper cannot start (no
// eventfd or thread, e.g. at the open-file limit), is polled instead: wait() looks at its exit
// status between sleeps of 1 to 16 ms. A peer's death is noticed within 100 ms.
#pragma once

#include <multiproc/detail/channel.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/pipe.hpp>
#include <multiproc/process.hpp>
#include <multiproc/queue.hpp>

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <vector>

namespace multiproc {

//! Something wait() can watch. Built implicitly from the objects above; it refers to them, so
//! they must outlive the wait() call.
class Waitable {
 public:
  Waitable(const Connection& c) : connection_(&c) {}  // NOLINT: implicit by design
  template <class T>
  Waitable(const detail::QueueBase<T>& q) : queue_(&q.channel()) {}  // NOLINT
  Waitable(Process& p) : process_(&p) {}  // NOLINT

 private:
  friend std::vector<std::size_t> detail_wait(const std::vector<Waitable>&,
                                              const detail::Clock::time_point*);
  const Connection* connection_ = nullptr;
  const detail::ChannelRef* queue_ = nullptr;
  Process* process_ = nullptr;
};

std::vector<std::size_t> detail_wait(const std::vector<Waitable>& objects,
                                     const detail::Clock::time_point* deadline);

//! Returns: the indices of the ready objects; blocks until at least one is ready.
//! Throws: Error(errc::invalid_argument) for a Connection that cannot receive, or a Process not
//! started; Error(errc::bad_state) for a closed Process; Error(ECHILD) as Process::join.
inline std::vector<std::size_t> wait(const std::vector<Waitable>& objects) {
  return detail_wait(objects, nullptr);
}
//! Returns: the indices of the ready objects, or an empty vector if none became ready in time.
template <class Rep, class Period>
std::vector<std::size_t> wait(const std::vector<Waitable>& objects,
                              const std::chrono::duration<Rep, Period>& timeout) {
  const auto deadline = detail::deadline_after(timeout);
  return detail_wait(objects, &deadline);
}

}  // namespace multiproc
