// multiproc/pool.hpp — a pool of worker processes (Python's multiprocessing.Pool) that never
// hangs.
//
//   long square(long x) { return x * x; }
//   mp::Pool pool(4);
//   std::vector<long> squares = pool.map(square, inputs);           // in order
//   mp::AsyncResult<long> r = pool.apply_async(square, 12L);
//   long v = r.get();                                                // 144
//   for (long s : pool.imap(square, endless_numbers)) if (s > 1000) break;   // lazy
//
// Tasks are plain functions or captureless lambdas: workers are forked from this process, so a
// function has the same address in every worker, but state captured by a lambda would not travel.
// Give a task its state through its arguments, or set it up once per worker with the initializer
// (which, run in the freshly forked worker, may be any callable). Arguments and results are
// encoded with Codec<T> (codec.hpp), so they can be numbers, strings, vectors, tuples, your types.
//
// map / starmap read the whole input first, keep the input order and return when all is done
// (an exception thrown while reading the input leaves map before anything is submitted).
// imap / imap_unordered are lazy: they read the input chunk by chunk on the thread that iterates
// the returned ResultStream, keeping at most a few chunks per worker in flight — so they work on
// an endless input in constant memory. imap yields results in input order, imap_unordered in
// completion order. apply / apply_async run one call; map_async / starmap_async / apply_async
// return an AsyncResult with get(), get_for(d), wait(), wait_for(d), ready(), successful() and
// on_success / on_error callbacks (run in this process). Callbacks can also be given with the
// call itself, so that they are in place before it can finish:
//   pool.apply_async(f, mp::callbacks(on_ok, on_err), args...);
//   pool.map_async(f, mp::callbacks(on_ok, on_err), inputs[, chunksize, progress]);
// Inputs are cut into chunks of `chunksize` (0: Python's default for map, about 4 chunks per
// worker; imap's default is 1). A progress callback (done, total) can follow each chunk of a map.
//
// Errors: an exception thrown by a task reaches the caller as RemoteError, whose what() carries
// the task's exception type and message; the worker carries on. A worker that dies while running a
// task (SIGKILL, a crash, the OOM killer, exit() in the task) makes exactly the call it was
// running fail with BrokenPool — within a few hundred milliseconds, never a hang — and is
// replaced before that call fails (when the BrokenPool reaches the caller, worker_pids() already
// lists the replacement, unless it could not be started); tasks it had been sent but not started
// go to other workers, and a worker that dies idle fails nothing (each worker records in shared
// memory which task it has started). Workers that keep dying before they take any task (a
// failing initializer) break the pool: its calls fail with BrokenPool. In imap, a task's error or
// a worker's death arrives at that task's place in the stream (after the results before it); an
// exception thrown by the input is rethrown after the results of every item read before it.
//
// Every call ends: no call is ever left pending, whatever happens — terminate(), destroying the
// pool, a broken pool, a failure inside the pool itself (its calls fail with BrokenPool) or a
// worker that cannot be replaced.
//
// Latency: a call with no callbacks given with it and tasks of at most 128 KiB each (apply_async,
// a map of small chunks) made while a worker is idle and nothing is queued skips the manager
// thread: the calling thread deals its tasks out itself (one to each idle worker, then a second,
// the rest as workers answer), and the thread that waits for it (get(), wait(), ready(),
// successful(); a future's result(), done(), running()) reads the replies itself from those
// workers' pipes and sends each one that answers the next task — a round trip of two hand-offs,
// not four, and no manager wake-up per reply. When nobody waits
// any more (a timeout, ready()), a callback is added or other work is queued, the manager takes
// the call over. The guarantees above hold for it alike.
//
// Lifecycle: close() refuses new calls; streams opened before it keep reading their input. join()
// (after close or terminate) waits until the submitted work is done and the workers have exited;
// a stream that still had input to read then fails with Error(errc::bad_state) where it stopped.
// terminate() stops the workers at once (SIGKILL) and fails the calls in progress, running ones
// included, with Error(errc::bad_state) — it returns promptly whatever the backlog.
// maxtasksperchild replaces a worker after that many tasks. Destroying a Pool terminates and joins
// it: every worker is reaped, nothing is left in /dev/shm. Workers die with this process
// (parent-death signal). A Pool may be used from several threads; callbacks run on the pool's
// manager thread (one added to a call its caller deals out, while another thread waits for that
// call, may run on that thread) and must not wait for the pool.
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/pool_job.hpp>
#include <multiproc/detail/pool_task.hpp>
#include <multiproc/error.hpp>
#include <multiproc/process.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace multiproc {

class ProcessPoolExecutor;

//! Callbacks given with a call (apply_async, map_async, starmap_async): `on_success(result)` (or
//! `on_success()` for a void call) when it succeeds, `on_error(const Error&)` when it fails. Either
//! may be nullptr. Made by mp::callbacks(...).
template <class S, class E>
struct Callbacks {
  S on_success;
  E on_error;
};
//! Returns: the callbacks to pass as the first argument after the task, e.g.
//! `pool.apply_async(f, mp::callbacks(nullptr, on_error), args...)`.
template <class S, class E = std::nullptr_t>
Callbacks<std::decay_t<S>, std::decay_t<E>> callbacks(S&& on_success, E&& on_error = nullptr) {
  return {std::forward<S>(on_success), std::forward<E>(on_error)};
}

//! The outcome of apply_async / map_async / starmap_async. Copies share the call; any thread may
//! wait on it.
template <class R>
class AsyncResult {
 public:
  using value_type = R;
  using Success = typename detail::success_callback<R>::type;

  //! Returns: the result, waiting for it. Throws: RemoteError (a task threw), BrokenPool (a
  //! worker died running it, or the pool broke), Error(errc::bad_state) (the pool was terminated
  //! first).
  R get() const;
  //! Python's get(timeout). Returns: the result (void: true) if the call finishes within the
  //! timeout; at the deadline without it (nullopt; void: false) — the timeout is no exception.
  //! Throws: as get(), when the call failed within the timeout.
  template <class Rep, class Period>
  auto get_for(const std::chrono::duration<Rep, Period>& timeout) const;
  void wait() const { detail::wait_job(*job_, nullptr); }
  //! Returns: whether the result is ready within the timeout.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    return detail::wait_job(*job_, &deadline);
  }
  bool ready() const { return detail::job_ready(*job_); }
  //! Returns: whether the call succeeded: false also when its result cannot be decoded (a Codec
  //! that refuses the bytes; get() throws that Error), which it decodes to find out (a map's
  //! plain values excepted). Throws: Error(errc::bad_state) before it is ready.
  bool successful() const;
  //! Effects: calls f(result) in this process when the call succeeds — from the pool's manager
  //! thread (or a thread waiting for this call in get()), or at once from this thread if it
  //! already has. Keep it short; an exception from it
  //! is printed and dropped. To have it in place before the call can finish, give it with the
  //! call (mp::callbacks).
  const AsyncResult& on_success(Success f) const;
  //! Effects: calls f(error) in this process when the call fails (RemoteError, BrokenPool, ...),
  //! from the same threads as on_success — also when its result cannot be decoded (then
  //! on_success is not called; to find out, a result that is not a map's plain values is decoded
  //! once more).
  const AsyncResult& on_error(std::function<void(const Error&)> f) const;

 private:
  friend class Pool;
  using Decode = R (*)(detail::JobState&);
  AsyncResult(std::shared_ptr<detail::JobState> job, Decode decode)
      : job_(std::move(job)), decode_(decode) {}
  std::shared_ptr<detail::JobState> job_;
  Decode decode_;
};

//! The results of imap / imap_unordered: an input range whose iterator blocks until the next
//! result is in. Single pass; do not move the stream once iterating. Iterating reads the input
//! (a chunk at a time, a few chunks per worker ahead) and rethrows, at its place: a task's error
//! (RemoteError), a worker's death (BrokenPool), the input's own exception (after the results of
//! the items read before it), Error(errc::bad_state) if the pool was terminated, destroyed or
//! joined before the stream read all its input. After an error the stream is over. Destroying
//! the stream early cancels what it submitted (the pool stays usable).
template <class R>
class ResultStream {
 public:
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    using pointer = const R*;
    using reference = const R&;
    iterator() = default;
    reference operator*() const { return s_->buffer_[pos_]; }
    pointer operator->() const { return &s_->buffer_[pos_]; }
    //! Effects: moves to the next result, waiting for it. Throws: as described above (this
    //! iterator is then at the end).
    iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const { return s_ == o.s_ && pos_ == o.pos_; }
    bool operator!=(const iterator& o) const { return !(*this == o); }

   private:
    friend class ResultStream;
    explicit iterator(ResultStream* s) : s_(s) {}
    ResultStream* s_ = nullptr;
    std::size_t pos_ = 0;
  };

  //! Returns: an iterator at the first result, waiting for it. Throws: Error(errc::bad_state) on
  //! a second call (single pass), or as described above.
  iterator begin();
  iterator end() { return iterator(); }

  //! The number of results taken from the pool so far (the chunk being iterated included): the
  //! count of all results once the iteration ended. (An endless input has no total to know ahead.)
  std::size_t total() const noexcept { return delivered_; }

 private:
  friend class Pool;
  explicit ResultStream(detail::StreamHandle state) : state_(std::move(state)) {}

  // Loads the next non-empty chunk into buffer_; false at the end.
  bool next_chunk();

  detail::StreamHandle state_;
  std::string reply_;  // the last chunk's reply; its buffer goes back to the pool for the next
  std::size_t delivered_ = 0;
  bool started_ = false;
  // The chunk being iterated (a deque for bool: iterators hand out references into it).
  std::conditional_t<std::is_same_v<R, bool>, std::deque<bool>, std::vector<R>> buffer_;
};

class Pool {
 public:
  using Progress = std::function<void(std::size_t done, std::size_t total)>;

  //! Effects: starts `processes` workers (default: the CPUs this process may use), each running
  //! `initializer` first; replaces a worker after `maxtasksperchild` tasks (0: never).
  //! Throws: Error(errc::invalid_argument), before starting anything, if processes <= 0, if it is
  //! above 1024 (more workers only compete for CPUs and memory), or, for a user other than root,
  //! if it is more than RLIMIT_NPROC leaves this user now (the limit minus the processes and
  //! threads the user already runs, read from /proc; root is not bound by the limit).
  explicit Pool(int processes = cpu_count(), std::function<void()> initializer = {},
                std::size_t maxtasksperchild = 0);
  //! Effects: terminate(), then join(). Never throws.
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  //! Returns: f(args...), computed in a worker.
  template <class F, class... Args>
  auto apply(F f, Args&&... args);
  //! Returns: an AsyncResult for f(args...). With mp::callbacks(on_success, on_error) right after
  //! f, the callbacks are attached before the call is submitted. Throws: Error(errc::bad_state)
  //! after close() or terminate(), BrokenPool on a broken pool (the callbacks then never run).
  template <class F, class... Args,
            class = std::enable_if_t<!detail::first_is_callbacks<Args...>::value>>
  auto apply_async(F f, Args&&... args);
  template <class F, class S, class E, class... Args>
  auto apply_async(F f, Callbacks<S, E> cb, Args&&... args);

  //! Returns: [f(x) for x in inputs], in order. Requires: no other thread changes `inputs` before
  //! map() returns — chunks of plain values lying in one block (a vector, an array) are sent from
  //! there as workers take them, not copied first (map_async copies its input at once).
  template <class F, class Range>
  auto map(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {});
  //! Returns: an AsyncResult for map(...). Reads all of `inputs` first: an exception from the
  //! input leaves here, before anything is submitted. With mp::callbacks(...) right after f, as
  //! apply_async.
  template <class F, class Range, class = std::enable_if_t<!detail::is_callbacks<Range>::value>>
  auto map_async(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {});
  template <class F, class S, class E, class Range>
  auto map_async(F f, Callbacks<S, E> cb, const Range& inputs, std::size_t chunksize = 0,
                 Progress progress = {});

  //! Returns: [f(a, b, ...) for (a, b, ...) in inputs], in order. Inputs are tuples or pairs.
  //! Requires: as map().
  template <class F, class Range>
  auto starmap(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {});
  //! Returns: an AsyncResult for starmap(...), as map_async.
  template <class F, class Range, class = std::enable_if_t<!detail::is_callbacks<Range>::value>>
  auto starmap_async(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {});
  template <class F, class S, class E, class Range>
  auto starmap_async(F f, Callbacks<S, E> cb, const Range& inputs, std::size_t chunksize = 0,
                     Progress progress = {});

  //! Returns: a lazy range of f(x) for x in inputs, in order, each available as soon as its chunk
  //! is done (chunksize 1 by default, as in Python). The input is read as the stream is iterated,
  //! on the iterating thread, at most a few chunks per worker ahead of the results taken: an
  //! endless input works in constant memory. An lvalue `inputs` must outlive the stream (it is
  //! read in place); a temporary is moved into the stream. Throws: as apply_async.
  template <class F, class Range>
  auto imap(F f, Range&& inputs, std::size_t chunksize = 1);
  //! As imap, in the order the results complete.
  template <class F, class Range>
  auto imap_unordered(F f, Range&& inputs, std::size_t chunksize = 1);

  //! Effects: no new call is accepted (they throw Error(errc::bad_state)); queued work runs and
  //! open streams keep reading their input.
  void close();
  //! Effects: waits until the submitted work is done and the workers have exited; streams still
  //! reading input then end with Error(errc::bad_state). Requires: close() or terminate() first.
  //! Throws: Error(errc::bad_state) otherwise.
  void join();
  //! Effects: kills the workers now; calls not finished (running ones included) fail with
  //! Error(errc::bad_state).
  void terminate();

  //! The number of workers, and their pids now (workers are replaced after a death or after
  //! maxtasksperchild tasks).
  std::size_t size() const noexcept;
  std::vector<pid_t> worker_pids() const;

 private:
  // Submits the tasks of a call (src/pool/); the template plumbing is in detail/pool_impl.hpp.
  void submit(const std::shared_ptr<detail::JobState>& job, std::vector<detail::PoolTask> tasks,
              Progress progress);
  detail::StreamHandle open_stream(std::unique_ptr<detail::ChunkSource> source, bool ordered);
  // The pool's kept message buffers (map's chunks are built in them).
  detail::BufferCache* buffers() noexcept;

  // setup(job) runs on the new call's state before anything else sees it.
  template <class R, class S, class E, class Setup>
  AsyncResult<R> start_call(std::vector<detail::PoolTask> tasks, Callbacks<S, E> cb,
                            Progress progress, typename AsyncResult<R>::Decode decode, Setup setup);
  // sole: only the caller sees the result (map, starmap), which may then be moved out of the call.
  template <detail::Spread Spread, class F, class S, class E, class Range>
  auto map_call(F f, Callbacks<S, E> cb, const Range& inputs, std::size_t chunksize,
                Progress progress, bool sole);
  template <class F, class Range>
  auto stream(F f, Range&& inputs, std::size_t chunksize, bool ordered);

  friend class ProcessPoolExecutor;  // executor.hpp: submits futures, cancels queued ones

  std::shared_ptr<detail::PoolCore> core_;  // shared with the streams (weakly)
};

}  // namespace multiproc

#define MULTIPROC_POOL_HPP_DECLARED
#include <multiproc/detail/pool_impl.hpp>  // the definitions of the templates above
