// multiproc/wait.hpp — wait for the first of several objects to become ready (Python's
// multiprocessing.connection.wait), so that a supervisor loop is one call.
//
//   auto ready = mp::wait({results, control_conn, worker_process,
//                          mp::Waitable::fd(signal_pipe_read_end), mp::Waitable::pid(raw_child)},
//                         500ms);
//   for (std::size_t i : ready) { ... }        // indices into the list, in list order
//
// Objects: a Connection that can receive (ready: a message, or EOF, is waiting), any Queue
// (ready: a message is waiting, or it is closed), a Process (ready: it has ended — its sentinel),
// Waitable::fd(fd) — any file descriptor open for reading: a pipe, a socket, an eventfd, a
// signalfd (ready: a read would not block — data, end of file, a hang-up or an error, as poll()
// reports POLLIN, POLLHUP or POLLERR) — and Waitable::pid(pid), a child of this process that is
// not a Process, e.g. one a raw fork() or another library started (ready: it has ended; wait()
// never reaps it: collect its status with waitpid() afterwards).
// wait() returns the indices of the ready objects as soon as one is ready; with a timeout, an
// empty vector once it passes (an empty list just sleeps until then — for ever without one). A
// blocked wait() uses no CPU: it sleeps on the futex words of all the queues and connections at
// once (futex_waitv), and a helper thread polls the descriptors — process sentinels (pidfds),
// the fds, pidfds opened for the pids — when any are listed (without a queue or connection in the
// list, the calling thread polls them itself). A Process without a pidfd (see process.hpp), a pid
// whose pidfd cannot be opened, or all of them when the helper cannot start (no eventfd or
// thread, e.g. at the open-file limit), is polled instead: wait() looks at its exit status
// between sleeps of 1 to 16 ms; so are the queues and connections beyond the 128th (futex_waitv
// watches at most 128 words, one of them the helper's when descriptors are listed). A Connection
// this process closed is Error(errc::closed), as poll() on it — also when another thread closes it
// while wait() runs. A peer's death is noticed within 100 ms. A signal caught while
// wait() sleeps does not end it by itself: a handler that writes to a pipe listed with
// Waitable::fd does (the self-pipe trick). A signalfd listed beside a queue or connection is
// polled by the helper thread, which cannot see a signal sent to the calling thread only
// (pthread_kill, tgkill): such a signal is noticed at the next liveness look, up to 100 ms late;
// one sent to the process is seen at once. A queue whose large put_for()/try_put() was given up
// partway (chunks left in the ring) may be reported ready once with no message: the next get
// skips the chunks.
//
// A pid is checked once, at the call: it must be a child of this process not yet reaped (a
// running child, or a zombie). If it is reaped while wait() runs (another thread's waitpid, or
// SIGCHLD set to SIG_IGN), it counts as ended. An fd must stay open during the call.
#pragma once

#include <multiproc/detail/channel.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/pipe.hpp>
#include <multiproc/process.hpp>
#include <multiproc/queue.hpp>

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <sys/types.h>
#include <vector>

namespace multiproc {

//! Something wait() can watch. Built implicitly from a Connection, Queue or Process; it refers
//! to them, so they must outlive the wait() call. Raw descriptors and pids are named explicitly,
//! with fd() and pid() (an int alone would be ambiguous).
class Waitable {
 public:
  Waitable(const Connection& c) : kind_(Kind::connection), connection_(&c) {}  // NOLINT: implicit
  template <class T>
  Waitable(const detail::QueueBase<T>& q) : kind_(Kind::queue), queue_(&q.channel()) {}  // NOLINT
  Waitable(Process& p) : kind_(Kind::process), process_(&p) {}  // NOLINT

  //! A file descriptor, ready when a read would not block (data, EOF, a hang-up, an error). The
  //! caller keeps it open during wait(), which neither reads nor closes it. Checked by wait():
  //! Error(errc::invalid_argument) if it is not open, or open for writing only.
  static Waitable fd(int fd) noexcept {
    Waitable w(Kind::fd);
    w.fd_ = fd;
    return w;
  }
  //! A child process of this one (not a Process: use the Process itself for those), ready once
  //! it has ended. wait() does not reap it. Checked by wait(): Error(errc::invalid_argument) for
  //! pid <= 0; Error(ECHILD) if it is not a child of this process or was already reaped.
  static Waitable pid(pid_t pid) noexcept {
    Waitable w(Kind::pid);
    w.pid_ = pid;
    return w;
  }

 private:
  enum class Kind : unsigned char { connection, queue, process, fd, pid };
  explicit Waitable(Kind kind) noexcept : kind_(kind) {}
  friend std::vector<std::size_t> detail_wait(const std::vector<Waitable>&,
                                              const detail::Clock::time_point*);
  Kind kind_;  // which one of the members below is set
  const Connection* connection_ = nullptr;
  const detail::ChannelRef* queue_ = nullptr;
  Process* process_ = nullptr;
  int fd_ = -1;    // as the caller gave it: checked by wait()
  pid_t pid_ = 0;  // as the caller gave it: checked by wait()
};

std::vector<std::size_t> detail_wait(const std::vector<Waitable>& objects,
                                     const detail::Clock::time_point* deadline);

//! Returns: the indices of the ready objects; blocks until at least one is ready.
//! Throws: Error(errc::invalid_argument) for a Connection that cannot receive, a Process not
//! started, an fd not open for reading, or a pid <= 0; Error(ECHILD) for a pid that is not an
//! unreaped child of this process, and for a Process as Process::join; Error(errc::bad_state)
//! for a closed Process, or an fd found closed while wait() runs.
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
