// multiproc/executor.hpp — ProcessPoolExecutor and Future<R> (Python's
// concurrent.futures.ProcessPoolExecutor), with as_completed and wait over futures.
//
//   long square(long x) { return x * x; }
//   mp::ProcessPoolExecutor ex(4);
//   std::vector<mp::Future<long>> fs;
//   for (long i = 0; i < 100; ++i) fs.push_back(ex.submit(square, i));
//   for (const auto& f : mp::as_completed(fs)) total += f.result();    // as they finish
//   for (long s : ex.map(square, endless_numbers)) if (s > 1000) break; // lazy, in order
//
// An executor is a Pool (pool.hpp) seen through futures: the same workers, tasks, codecs and
// failure handling. Tasks are plain functions or captureless lambdas; arguments and results go
// through Codec<T>. A task that throws fails its future with RemoteError; a worker that dies
// running a task (SIGKILL, a crash) fails exactly that future with BrokenPool and is replaced —
// unlike Python, the executor is not broken and keeps working. Every future ends: shutdown and the
// destructor run what is queued (or cancel it), a failure of the pool fails what is left.
//
// Futures: copies share one call; any thread may wait on one. A future is *pending* while its
// task waits in the executor's queue (in this process), *running* once it has been sent to a
// worker, and done when it finished (result, error, or cancelled). cancel() succeeds only on a
// pending future: its task is removed and never runs. running() is true once the worker has
// started the task (it records each task it starts in shared memory) — so between being sent and
// being started a future is neither cancellable nor running() (at most one future per worker is
// in that state: a worker is sent the next future only once it is idle). Done-callbacks run in this process, from the executor's dispatcher thread (or
// from the thread that cancels, or at once when added to a done future); they must not wait for
// other futures of the executor or call shutdown().
//
// std::future interop: Future<R>::share() returns a std::shared_future<R> completed by a
// done-callback (it costs nothing unless asked for). A Future<R> is not itself a std::future: a
// std::future cannot be cancelled nor watched by as_completed/wait.
//
// Crashes: the queue of pending futures and their results live in this process; a worker SIGKILLed
// loses only the task it was running. If this process dies, its workers die with it
// (parent-death signal) and nothing is left in /dev/shm.
#pragma once

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/pool_job.hpp>
#include <multiproc/error.hpp>
#include <multiproc/pool.hpp>
#include <multiproc/process.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

namespace multiproc {

//! When wait(futures, ...) returns (Python's FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED).
enum class ReturnWhen {
  first_completed,  //!< as soon as one future is done (or cancelled)
  first_exception,  //!< as soon as one fails (not by cancellation); else when all are done
  all_completed,    //!< when all are done
};
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::first_completed;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::first_exception;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::all_completed;

namespace detail {

//! Collects the indices of jobs as they finish (those finished already first, in the given
//! order), through done hooks removed again on destruction. Used by one thread.
class CompletionWaiter {
 public:
  explicit CompletionWaiter(std::vector<std::shared_ptr<JobState>> jobs);
  ~CompletionWaiter();
  CompletionWaiter(const CompletionWaiter&) = delete;
  CompletionWaiter& operator=(const CompletionWaiter&) = delete;
  //! Returns: the index of the next job to finish, waiting up to the deadline (nullptr: no
  //! limit); nullopt at the deadline or when every job was returned.
  std::optional<std::size_t> next(const Clock::time_point* deadline);
  std::size_t remaining() const noexcept { return jobs_.size() - taken_; }

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
  std::vector<std::shared_ptr<JobState>> jobs_;
  std::vector<std::uint64_t> tokens_;
  std::size_t taken_ = 0;
};

//! wait(): which jobs were done when it returned.
std::vector<bool> wait_jobs(std::vector<std::shared_ptr<JobState>> jobs, ReturnWhen when,
                            const Clock::time_point* deadline);

struct FutureAccess;

}  // namespace detail

//! The outcome of ProcessPoolExecutor::submit. Copies share the call; any thread may use it.
template <class R>
class Future {
 public:
  using value_type = R;

  //! Returns: the result, waiting for it. Throws: RemoteError (the task threw), BrokenPool (its
  //! worker died running it, or the pool broke), CancelledError (it was cancelled).
  R result() const {
    detail::wait_job(*job_, nullptr);
    detail::rethrow_job_error(*job_);
    return detail::decode_single<R>(*job_);
  }
  //! Python's result(timeout). Returns: the result (void: true) if the call is done within the
  //! timeout; nullopt (void: false) at the deadline — the timeout is no exception.
  //! Throws: as result(), when the call failed within the timeout.
  template <class Rep, class Period>
  auto result_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    const bool finished = detail::wait_job(*job_, &deadline);
    if constexpr (std::is_void_v<R>) {
      if (finished) detail::rethrow_job_error(*job_);
      return finished;
    } else {
      if (!finished) return std::optional<R>();
      detail::rethrow_job_error(*job_);
      return std::optional<R>(detail::decode_single<R>(*job_));
    }
  }
  //! Returns: the failure of the call (a RemoteError or BrokenPool, or what decoding its result
  //! throws: as result() would throw it), or nullptr if it succeeded; waits like result(). Throws: CancelledError if it was cancelled
  //! (as Python's exception()).
  std::exception_ptr exception() const {
    detail::wait_job(*job_, nullptr);
    return failure();
  }
  //! As exception(), waiting at most `timeout`: nullopt at the deadline.
  template <class Rep, class Period>
  std::optional<std::exception_ptr> exception_for(
      const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    if (!detail::wait_job(*job_, &deadline)) return std::nullopt;
    return failure();
  }
  void wait() const { detail::wait_job(*job_, nullptr); }
  //! Returns: whether the call is done within the timeout.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    return detail::wait_job(*job_, &deadline);
  }

  //! Returns: whether the call is done: finished, failed or cancelled (a snapshot). Like wait(),
  //! it reads a reply that waits for it: a loop polling done() sees the future finish.
  bool done() const { return detail::job_ready(*job_); }
  //! Returns: whether a worker has started the task and it is not done (a snapshot).
  bool running() const { return detail::job_running(*job_); }
  //! Returns: whether cancel() succeeded on it (then it is done).
  bool cancelled() const {
    std::lock_guard<std::mutex> lock(job_->mutex);
    return job_->cancelled && job_->finished;
  }
  //! Effects: if the task still waits in the executor's queue, removes it (it never runs) and
  //! finishes the future with CancelledError, running its done-callbacks on this thread.
  //! Returns: whether it did; false once the task was sent to a worker, or the future is done
  //! (true again for a future already cancelled, as Python).
  bool cancel() const {
    if (detail::cancel_job(pool_, job_)) return true;
    return cancelled();
  }
  //! Effects: calls fn(*this) once the future is done — from the executor's dispatcher thread,
  //! from the thread that cancels it, or at once here if it is done already. Exactly once. An
  //! exception from fn is printed and dropped. fn must not wait for other futures.
  template <class F>
  void add_done_callback(F fn) const {
    static_assert(std::is_invocable_v<F&, const Future&>,
                  "add_done_callback(fn): fn must take the future (const mp::Future<R>&)");
    detail::add_done_hook(*job_, [self = *this, fn = std::move(fn)]() mutable { fn(self); });
  }
  //! Returns: a std::shared_future that gets the result, or the exception result() throws
  //! (CancelledError included), when this future is done.
  std::shared_future<R> share() const {
    auto promise = std::make_shared<std::promise<R>>();
    std::shared_future<R> shared = promise->get_future().share();
    add_done_callback([promise](const Future& f) {
      try {
        if constexpr (std::is_void_v<R>) {
          f.result();
          promise->set_value();
        } else {
          promise->set_value(f.result());
        }
      } catch (...) {
        promise->set_exception(std::current_exception());
      }
    });
    return shared;
  }

  //! Copies of one future compare equal.
  friend bool operator==(const Future& a, const Future& b) noexcept { return a.job_ == b.job_; }
  friend bool operator!=(const Future& a, const Future& b) noexcept { return a.job_ != b.job_; }

 private:
  friend class ProcessPoolExecutor;
  friend struct detail::FutureAccess;
  Future(std::shared_ptr<detail::JobState> job, std::weak_ptr<detail::PoolCore> pool)
      : job_(std::move(job)), pool_(std::move(pool)) {}
  // Requires: finished.
  std::exception_ptr failure() const {
    {
      std::lock_guard<std::mutex> lock(job_->mutex);
      if (job_->cancelled) std::rethrow_exception(job_->error);
      if (job_->error) return job_->error;
    }
    // A result its Codec cannot decode is a failure too: result() throws it (before, exception()
    // said nullptr, success, for it). Decoded once more to find out, as AsyncResult::successful().
    if constexpr (!std::is_void_v<R>) {
      try {
        (void)detail::decode_single<R>(*job_);  // takes the job's mutex itself
      } catch (...) {
        return std::current_exception();
      }
    }
    return nullptr;
  }

  std::shared_ptr<detail::JobState> job_;
  std::weak_ptr<detail::PoolCore> pool_;  // for cancel(); the future outlives the executor
};

namespace detail {
struct FutureAccess {
  template <class R>
  static const std::shared_ptr<JobState>& job(const Future<R>& f) noexcept {
    return f.job_;
  }
};
// The futures without repeats (first occurrence kept), and their jobs.
template <class R>
std::vector<Future<R>> unique_futures(const std::vector<Future<R>>& futures,
                                      std::vector<std::shared_ptr<JobState>>& jobs) {
  std::unordered_set<const JobState*> seen;
  std::vector<Future<R>> out;
  for (const Future<R>& f : futures) {
    if (seen.insert(FutureAccess::job(f).get()).second) {
      out.push_back(f);
      jobs.push_back(FutureAccess::job(f));
    }
  }
  return out;
}
}  // namespace detail

//! as_completed(futures[, timeout]): an input range over the futures (each once, repeats
//! dropped) in the order they finish, those already done first. Iterating waits for the next
//! one; with a timeout, the iteration ends at the deadline — then timed_out() is true (Python
//! raises TimeoutError; a timeout is no exception here). Single pass; do not move it while
//! iterating.
template <class R>
class AsCompleted {
 public:
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Future<R>;
    using difference_type = std::ptrdiff_t;
    using pointer = const Future<R>*;
    using reference = const Future<R>&;
    iterator() = default;
    reference operator*() const { return s_->futures_[s_->current_]; }
    pointer operator->() const { return &s_->futures_[s_->current_]; }
    //! Effects: moves to the next future to finish, waiting for it (or to the end).
    iterator& operator++() {
      if (!s_->advance()) s_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const { return s_ == o.s_; }
    bool operator!=(const iterator& o) const { return s_ != o.s_; }

   private:
    friend class AsCompleted;
    explicit iterator(AsCompleted* s) : s_(s) {}
    AsCompleted* s_ = nullptr;
  };

  //! Returns: an iterator at the first future to finish, waiting for it. Throws:
  //! Error(errc::bad_state) on a second call (single pass).
  iterator begin() {
    if (started_) throw Error(errc::bad_state, "multiproc::as_completed: a single-pass range");
    started_ = true;
    return advance() ? iterator(this) : iterator();
  }
  iterator end() { return iterator(); }
  //! Returns: whether the iteration ended at the deadline with futures not done.
  bool timed_out() const noexcept { return timed_out_; }

  AsCompleted(const std::vector<Future<R>>& futures, std::optional<detail::Clock::time_point> deadline)
      : deadline_(deadline) {
    std::vector<std::shared_ptr<detail::JobState>> jobs;
    futures_ = detail::unique_futures(futures, jobs);
    waiter_ = std::make_unique<detail::CompletionWaiter>(std::move(jobs));
  }

 private:
  bool advance() {
    const std::optional<std::size_t> i = waiter_->next(deadline_ ? &*deadline_ : nullptr);
    if (!i) {
      timed_out_ = waiter_->remaining() != 0;
      return false;
    }
    current_ = *i;
    return true;
  }

  std::vector<Future<R>> futures_;
  std::unique_ptr<detail::CompletionWaiter> waiter_;
  std::optional<detail::Clock::time_point> deadline_;
  std::size_t current_ = 0;
  bool started_ = false;
  bool timed_out_ = false;
};

//! Returns: the futures as they finish (see AsCompleted). The futures' calls go on whether or not
//! the range is iterated to its end.
template <class R>
AsCompleted<R> as_completed(const std::vector<Future<R>>& futures) {
  return AsCompleted<R>(futures, std::nullopt);
}
//! As above; the iteration ends at the deadline `timeout` from now (see timed_out()).
template <class R, class Rep, class Period>
AsCompleted<R> as_completed(const std::vector<Future<R>>& futures,
                            const std::chrono::duration<Rep, Period>& timeout) {
  return AsCompleted<R>(futures, detail::deadline_after(timeout));
}

//! What wait(futures, ...) returns (Python's DoneAndNotDoneFutures): each future once, in the
//! order given.
template <class R>
struct DoneAndNotDone {
  std::vector<Future<R>> done;
  std::vector<Future<R>> not_done;
};

namespace detail {
template <class R>
DoneAndNotDone<R> wait_futures(const std::vector<Future<R>>& futures, ReturnWhen when,
                               const Clock::time_point* deadline) {
  std::vector<std::shared_ptr<JobState>> jobs;
  std::vector<Future<R>> unique = unique_futures(futures, jobs);
  const std::vector<bool> done = wait_jobs(std::move(jobs), when, deadline);
  DoneAndNotDone<R> out;
  for (std::size_t i = 0; i < unique.size(); ++i) {
    (done[i] ? out.done : out.not_done).push_back(std::move(unique[i]));
  }
  return out;
}
}  // namespace detail

//! Effects: waits until `when` holds (Python's concurrent.futures.wait). Returns: the futures done
//! and not done when it returned (repeats dropped). Overloads mp::wait(objects, ...) of wait.hpp.
template <class R>
DoneAndNotDone<R> wait(const std::vector<Future<R>>& futures, ReturnWhen when = ALL_COMPLETED) {
  return detail::wait_futures(futures, when, nullptr);
}
//! As above, returning at the deadline `timeout` from now at the latest (not_done then holds the
//! rest; the timeout is no exception).
template <class R, class Rep, class Period>
DoneAndNotDone<R> wait(const std::vector<Future<R>>& futures, ReturnWhen when,
                       const std::chrono::duration<Rep, Period>& timeout) {
  const auto deadline = detail::deadline_after(timeout);
  return detail::wait_futures(futures, when, &deadline);
}

class ProcessPoolExecutor {
 public:
  //! Effects: starts `max_workers` worker processes (default: the CPUs this process may use),
  //! each running `initializer` first (any callable: it runs in the freshly forked worker);
  //! replaces a worker after `max_tasks_per_child` tasks (0: never). Throws: as Pool's
  //! constructor (Error(errc::invalid_argument) for a bad count).
  explicit ProcessPoolExecutor(int max_workers = cpu_count(), std::function<void()> initializer = {},
                               std::size_t max_tasks_per_child = 0)
      : pool_(max_workers, std::move(initializer), max_tasks_per_child) {}
  //! Effects: shutdown(true): runs what is queued, then reaps the workers. Never throws.
  ~ProcessPoolExecutor() {
    try {
      shutdown(true);
    } catch (...) {
    }
  }
  ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
  ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

  //! Returns: a Future for f(args...), run in a worker. Throws: Error(errc::bad_state) after
  //! shutdown(), BrokenPool if the pool broke (workers keep dying in the initializer).
  template <class F, class... Args>
  auto submit(F f, Args&&... args) {
    using R = typename detail::fn_traits<decltype(detail::task_pointer(f))>::result;
    check_open();
    std::vector<detail::PoolTask> tasks;
    tasks.push_back(detail::apply_task(f, std::forward<Args>(args)...));
    auto job = std::make_shared<detail::JobState>();
    job->future = true;
    pool_.submit(job, std::move(tasks), {});
    return Future<R>(std::move(job), pool_.core_);
  }

  //! Returns: a lazy range of f(x) for x in inputs, in input order (Pool::imap): the input is read
  //! as the range is iterated, a few chunks of `chunksize` items per worker ahead, so an endless
  //! input works in constant memory; breaking out early cancels the rest. A task's error, or the
  //! input's, is rethrown at its place. An lvalue `inputs` must outlive the range. shutdown() and
  //! cancel_futures leave a range alone, but it ends with Error(errc::bad_state) where it stopped
  //! if shutdown(wait = true) joins the workers before it read all its input. Throws: as submit.
  template <class F, class Range>
  auto map(F f, Range&& inputs, std::size_t chunksize = 1) {
    check_open();
    return pool_.imap(f, std::forward<Range>(inputs), chunksize);
  }

  //! Effects: no new submit or map (they throw Error(errc::bad_state)); with cancel_futures,
  //! cancels every future still queued (as cancel()); with wait, waits until what was submitted
  //! has run and the workers have exited. Without wait, returns at once: what is queued still
  //! runs (the destructor then waits). May be called again. Not from a done-callback.
  void shutdown(bool wait = true, bool cancel_futures = false);

  //! The number of workers, and their pids now.
  std::size_t size() const noexcept { return pool_.size(); }
  std::vector<pid_t> worker_pids() const { return pool_.worker_pids(); }

 private:
  // Throws: Error(errc::bad_state) after shutdown().
  void check_open() const;

  std::atomic<bool> shut_down_{false};
  // Last: constructing it forks the workers, whose copy of this executor must have every other
  // member built (a task using the executor it runs on read shut_down_ unconstructed).
  Pool pool_;
};

}  // namespace multiproc
