// multiproc/pool.hpp — a pool of worker processes (Python's multiprocessing.Pool) that never
// hangs.
//
//   long square(long x) { return x * x; }
//   mp::Pool pool(4);
//   std::vector<long> squares = pool.map(square, inputs);           // in order
//   mp::AsyncResult<long> r = pool.apply_async(square, 12L);
//   long v = r.get();                                                // 144
//
// Tasks are plain functions or captureless lambdas: workers are forked from this process, so a
// function has the same address in every worker, but state captured by a lambda would not travel.
// Give a task its state through its arguments, or set it up once per worker with the initializer
// (which, run in the freshly forked worker, may be any callable). Arguments and results are
// encoded with Codec<T> (codec.hpp), so they can be numbers, strings, vectors, tuples, your types.
//
// map / starmap keep the input order and return when all is done; imap returns a range whose
// results arrive in order as their chunks complete, imap_unordered in completion order;
// apply / apply_async run one call; map_async / apply_async return an AsyncResult with get(),
// wait(), wait_for(d), ready(), successful() and on_success / on_error callbacks (run in this
// process). Inputs are cut into chunks of `chunksize` (0: Python's default, about 4 chunks per
// worker). A progress callback (done, total) can follow each chunk of a map.
//
// Errors: an exception thrown by a task reaches the caller as RemoteError, whose what() carries
// the task's exception type and message; the worker carries on. A worker that dies while running a
// task (SIGKILL, a crash, the OOM killer) makes exactly the call it was running fail with
// BrokenPool — within a few hundred milliseconds, never a hang — and is replaced; other calls
// carry on. Workers that keep dying before they take any task (a failing initializer) break the
// pool: its calls fail with BrokenPool.
//
// Lifecycle: close() refuses new work; join() (after close or terminate) waits until the work is
// done and the workers have exited; terminate() stops the workers at once (SIGKILL) and fails the
// calls still in progress — it returns promptly whatever the backlog. maxtasksperchild replaces a
// worker after that many tasks. Destroying a Pool terminates and joins it: every worker is reaped,
// nothing is left in /dev/shm. Workers die with this process (parent-death signal). A Pool may be
// used from several threads.
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/error.hpp>
#include <multiproc/process.hpp>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <typeinfo>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace multiproc {
namespace detail {

// Bytes reserved in front of a task's payload and of a result's payload for the pool's own
// headers, so that neither is copied again to prepend them.
inline constexpr std::size_t kTaskHeaderBytes = 28;
inline constexpr std::size_t kResultHeaderBytes = 13;

//! Runs one task in a worker: decodes the payload, calls the function, and returns the encoded
//! result after kResultHeaderBytes of room for the header.
using Trampoline = std::string (*)(std::uintptr_t fn, const std::byte* in, std::size_t n);

//! One unit of work sent to a worker: `message` holds kTaskHeaderBytes of room, then the payload.
struct PoolTask {
  Trampoline trampoline;
  std::uintptr_t fn;
  std::string message;
};

//! The state of one call (apply, map, ...), shared by the caller's handle and the pool's
//! manager thread. Guarded by `mutex`; `cv` announces each completed chunk and the end.
struct JobState {
  std::mutex mutex;
  std::condition_variable cv;
  std::size_t tasks = 0;
  std::size_t done = 0;
  std::vector<std::optional<std::string>> results;  // per task: the worker's reply (header first)
  std::vector<std::size_t> completion_order;
  std::exception_ptr error;  // set when the call failed
  bool completing = false;   // the outcome is known; callbacks are running
  bool finished = false;     // callbacks ran: get() may return
  std::vector<std::function<void()>> on_finish;  // run by the manager, without the mutex
  std::function<void(std::size_t, std::size_t)> progress;
};

class PoolCore;

template <class R>
struct success_callback {
  using type = std::function<void(const R&)>;
};
template <>
struct success_callback<void> {
  using type = std::function<void()>;
};

template <class F>
auto task_pointer(F f) {
  static_assert(std::is_convertible_v<F, decltype(+f)> && std::is_pointer_v<decltype(+f)> &&
                    std::is_function_v<std::remove_pointer_t<decltype(+f)>>,
                "Pool tasks must be plain functions or captureless lambdas: they run in other "
                "processes, where captured state would not exist (pass it as arguments, or set it "
                "up with the Pool's initializer)");
  return +f;
}

template <class FP>
struct fn_traits;
template <class R, class... A>
struct fn_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
  static constexpr std::size_t arity = sizeof...(A);
};

//! v encoded after `room` unused bytes.
template <class V>
std::string encode_value(const V& v, std::size_t room = 0) {
  std::string out(room + Codec<V>::size(v), '\0');
  Codec<V>::encode(v, reinterpret_cast<std::byte*>(out.data()) + room);
  return out;
}
//! The value encoded in s after `skip` bytes.
template <class V>
V decode_value(const std::string& s, std::size_t skip = 0) {
  return Codec<V>::decode(reinterpret_cast<const std::byte*>(s.data()) + skip, s.size() - skip);
}

template <class FP>
std::string apply_trampoline(std::uintptr_t fn, const std::byte* in, std::size_t n) {
  using T = fn_traits<FP>;
  auto args = Codec<typename T::args>::decode(in, n);
  auto f = reinterpret_cast<FP>(fn);
  if constexpr (std::is_void_v<typename T::result>) {
    std::apply(f, args);
    return std::string(kResultHeaderBytes, '\0');
  } else {
    return encode_value(std::apply(f, args), kResultHeaderBytes);
  }
}

template <class FP, class In>
std::string map_trampoline(std::uintptr_t fn, const std::byte* in, std::size_t n) {
  using R = typename fn_traits<FP>::result;
  auto f = reinterpret_cast<FP>(fn);
  if constexpr (is_plain_v<In> && !std::is_same_v<In, bool> && is_plain_v<R> &&
                !std::is_same_v<R, bool>) {
    // Both sides are arrays of plain values (their Codec is their bytes): read each input from
    // the message and write each result into the reply, with no vector in between.
    if (n % sizeof(In) != 0) throw_decode_error(typeid(In).name(), n, "not whole values");
    const std::size_t count = n / sizeof(In);
    std::string out;
    out.resize(kResultHeaderBytes + count * sizeof(R));
    char* dst = out.data() + kResultHeaderBytes;
    for (std::size_t k = 0; k < count; ++k, in += sizeof(In), dst += sizeof(R)) {
      In item;
      std::memcpy(static_cast<void*>(&item), in, sizeof(In));
      const R r = f(item);
      std::memcpy(dst, static_cast<const void*>(&r), sizeof(R));
    }
    return out;
  }
  const auto items = Codec<std::vector<In>>::decode(in, n);
  std::vector<R> out;
  out.reserve(items.size());
  for (const In& item : items) out.push_back(f(item));
  return encode_value(out, kResultHeaderBytes);
}

template <class FP, class Tuple>
std::string starmap_trampoline(std::uintptr_t fn, const std::byte* in, std::size_t n) {
  using R = typename fn_traits<FP>::result;
  const auto items = Codec<std::vector<Tuple>>::decode(in, n);
  auto f = reinterpret_cast<FP>(fn);
  std::vector<R> out;
  out.reserve(items.size());
  for (const Tuple& item : items) out.push_back(std::apply(f, item));
  return encode_value(out, kResultHeaderBytes);
}

//! Python's default chunk size: about four chunks per worker.
std::size_t default_chunksize(std::size_t items, std::size_t workers) noexcept;

//! Waits for a job to finish (up to the deadline); returns whether it did.
bool wait_job(JobState& job, const Clock::time_point* deadline);
//! Rethrows the job's error, if any. Requires it finished.
void rethrow_job_error(JobState& job);
//! Adds a callback to run when the job finishes (at once, here, if it already has).
void on_job_finish(const std::shared_ptr<JobState>& job, std::function<void()> fn);

}  // namespace detail

template <class R>
class AsyncResult {
 public:
  using value_type = R;
  using Success = typename detail::success_callback<R>::type;

  //! Returns: the result, waiting for it. Throws: RemoteError (a task threw), BrokenPool (a
  //! worker died running it), Error(errc::bad_state) (the pool was terminated first).
  R get() const {
    detail::wait_job(*job_, nullptr);
    detail::rethrow_job_error(*job_);
    if constexpr (!std::is_void_v<R>) return decode_(*job_);
  }
  void wait() const { detail::wait_job(*job_, nullptr); }
  //! Returns: whether the result is ready within the timeout.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    return detail::wait_job(*job_, &deadline);
  }
  bool ready() const {
    std::lock_guard<std::mutex> lock(job_->mutex);
    return job_->finished;
  }
  //! Returns: whether the call succeeded. Throws: Error(errc::bad_state) before it is ready.
  bool successful() const {
    std::lock_guard<std::mutex> lock(job_->mutex);
    if (!job_->finished) {
      throw Error(errc::bad_state, "multiproc::AsyncResult: successful() before the result is ready");
    }
    return !job_->error;
  }
  //! Effects: calls f(result) in this process when the call succeeds — from the pool's manager
  //! thread, or at once from this thread if it already has. Keep it short.
  const AsyncResult& on_success(Success f) const {
    auto job = job_;
    auto decode = decode_;
    detail::on_job_finish(job_, [job, decode, f = std::move(f)] {
      if (job->error) return;
      if constexpr (std::is_void_v<R>) {
        f();
      } else {
        f(decode(*job));
      }
    });
    return *this;
  }
  //! Effects: calls f(error) in this process when the call fails (RemoteError, BrokenPool, ...).
  const AsyncResult& on_error(std::function<void(const Error&)> f) const {
    auto job = job_;
    detail::on_job_finish(job_, [job, f = std::move(f)] {
      if (!job->error) return;
      try {
        std::rethrow_exception(job->error);
      } catch (const Error& e) {
        f(e);
      } catch (...) {
      }
    });
    return *this;
  }

 private:
  friend class Pool;
  using Decode = std::function<R(detail::JobState&)>;
  AsyncResult(std::shared_ptr<detail::JobState> job, Decode decode)
      : job_(std::move(job)), decode_(std::move(decode)) {}
  std::shared_ptr<detail::JobState> job_;
  Decode decode_;
};

//! The results of imap / imap_unordered: an input range whose iterator blocks until the next
//! result is in. Iterating rethrows a failed call's error. Single pass.
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
    iterator& operator++() {
      if (++pos_ == s_->buffer_.size()) {
        pos_ = 0;
        if (!s_->next_chunk()) s_ = nullptr;
      }
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const { return s_ == o.s_ && pos_ == o.pos_; }
    bool operator!=(const iterator& o) const { return !(*this == o); }

   private:
    friend class ResultStream;
    explicit iterator(ResultStream* s) : s_(s) {}
    ResultStream* s_ = nullptr;
    std::size_t pos_ = 0;
  };

  iterator begin() {
    if (started_) throw Error(errc::bad_state, "multiproc::ResultStream: a single-pass range");
    started_ = true;
    return next_chunk() ? iterator(this) : iterator();
  }
  iterator end() { return iterator(); }

  //! Results delivered so far, and in all.
  std::size_t total() const noexcept { return total_; }

 private:
  friend class Pool;
  ResultStream(std::shared_ptr<detail::JobState> job, bool ordered, std::size_t total)
      : job_(std::move(job)), ordered_(ordered), total_(total) {}

  // Loads the next non-empty chunk into buffer_; false at the end.
  bool next_chunk() {
    for (;;) {
      std::string payload;
      {
        std::unique_lock<std::mutex> lock(job_->mutex);
        if (taken_ == job_->tasks) return false;
        const std::size_t index = ordered_ ? taken_ : 0;
        job_->cv.wait(lock, [&] {
          if (job_->error) return true;
          return ordered_ ? job_->results[index].has_value()
                          : job_->completion_order.size() > taken_;
        });
        if (job_->error) std::rethrow_exception(job_->error);
        const std::size_t chunk = ordered_ ? index : job_->completion_order[taken_];
        payload = std::move(*job_->results[chunk]);
        ++taken_;
      }
      buffer_ = detail::decode_value<std::vector<R>>(payload, detail::kResultHeaderBytes);
      if (!buffer_.empty()) return true;
    }
  }

  std::shared_ptr<detail::JobState> job_;
  bool ordered_;
  std::size_t total_;
  std::size_t taken_ = 0;
  bool started_ = false;
  std::vector<R> buffer_;
};

class Pool {
 public:
  using Progress = std::function<void(std::size_t done, std::size_t total)>;

  //! Effects: starts `processes` workers (default: the CPUs this process may use), each running
  //! `initializer` first; replaces a worker after `maxtasksperchild` tasks (0: never).
  //! Throws: Error(errc::invalid_argument) if processes <= 0.
  explicit Pool(int processes = cpu_count(), std::function<void()> initializer = {},
                std::size_t maxtasksperchild = 0);
  //! Effects: terminate(), then join(). Never throws.
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  //! Returns: f(args...), computed in a worker.
  template <class F, class... Args>
  auto apply(F f, Args&&... args) {
    return apply_async(f, std::forward<Args>(args)...).get();
  }
  //! Returns: an AsyncResult for f(args...).
  template <class F, class... Args>
  auto apply_async(F f, Args&&... args) {
    auto fp = detail::task_pointer(f);
    using FP = decltype(fp);
    using R = typename detail::fn_traits<FP>::result;
    static_assert(std::is_invocable_v<FP, std::decay_t<Args>&...>,
                  "apply_async(f, args...): f cannot be called with these arguments");
    const typename detail::fn_traits<FP>::args tuple(std::forward<Args>(args)...);
    std::vector<detail::PoolTask> tasks;
    tasks.push_back({&detail::apply_trampoline<FP>, reinterpret_cast<std::uintptr_t>(fp),
                     detail::encode_value(tuple, detail::kTaskHeaderBytes)});
    auto job = submit(std::move(tasks), {});
    return AsyncResult<R>(std::move(job), [](detail::JobState& j) -> R {
      if constexpr (!std::is_void_v<R>) {
        std::lock_guard<std::mutex> lock(j.mutex);
        return detail::decode_value<R>(*j.results[0], detail::kResultHeaderBytes);
      }
    });
  }

  //! Returns: [f(x) for x in inputs], in order.
  template <class F, class Range>
  auto map(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {}) {
    return map_async(f, inputs, chunksize, std::move(progress)).get();
  }
  template <class F, class Range>
  auto map_async(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {}) {
    using In = std::decay_t<decltype(*std::begin(inputs))>;
    auto fp = detail::task_pointer(f);
    using FP = decltype(fp);
    using R = typename detail::fn_traits<FP>::result;
    static_assert(!std::is_void_v<R>, "map(f, inputs): f must return a value");
    return AsyncResult<std::vector<R>>(
        submit(chunk<In>(inputs, chunksize, &detail::map_trampoline<FP, In>,
                         reinterpret_cast<std::uintptr_t>(fp)),
               std::move(progress)),
        &concat<R>);
  }

  //! Returns: [f(a, b, ...) for (a, b, ...) in inputs], in order. Inputs are tuples or pairs.
  template <class F, class Range>
  auto starmap(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {}) {
    return starmap_async(f, inputs, chunksize, std::move(progress)).get();
  }
  template <class F, class Range>
  auto starmap_async(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {}) {
    using In = std::decay_t<decltype(*std::begin(inputs))>;
    auto fp = detail::task_pointer(f);
    using FP = decltype(fp);
    using R = typename detail::fn_traits<FP>::result;
    static_assert(!std::is_void_v<R>, "starmap(f, inputs): f must return a value");
    return AsyncResult<std::vector<R>>(
        submit(chunk<In>(inputs, chunksize, &detail::starmap_trampoline<FP, In>,
                         reinterpret_cast<std::uintptr_t>(fp)),
               std::move(progress)),
        &concat<R>);
  }

  //! Returns: a range of f(x) for x in inputs, in order, each available as soon as its chunk is
  //! done (chunksize 1 by default, as in Python).
  template <class F, class Range>
  auto imap(F f, const Range& inputs, std::size_t chunksize = 1) {
    return stream(f, inputs, chunksize, true);
  }
  //! As imap, in the order the results complete.
  template <class F, class Range>
  auto imap_unordered(F f, const Range& inputs, std::size_t chunksize = 1) {
    return stream(f, inputs, chunksize, false);
  }

  //! Effects: no new work is accepted (calls throw Error(errc::bad_state)); queued work runs.
  void close();
  //! Effects: waits until the pool has stopped. Requires: close() or terminate() first.
  //! Throws: Error(errc::bad_state) otherwise.
  void join();
  //! Effects: kills the workers now; calls not finished fail with Error(errc::bad_state).
  void terminate();

  //! The number of workers, and their pids now (workers are replaced after a death or after
  //! maxtasksperchild tasks).
  std::size_t size() const noexcept;
  std::vector<pid_t> worker_pids() const;

 private:
  std::shared_ptr<detail::JobState> submit(std::vector<detail::PoolTask> tasks, Progress progress);

  template <class In, class Range>
  std::vector<detail::PoolTask> chunk(const Range& inputs, std::size_t chunksize,
                                      detail::Trampoline trampoline, std::uintptr_t fn) {
    std::size_t items = 0;
    for (auto it = std::begin(inputs); it != std::end(inputs); ++it) ++items;
    if (chunksize == 0) chunksize = detail::default_chunksize(items, size());
    std::vector<detail::PoolTask> tasks;
    auto it = std::begin(inputs);
    for (std::size_t i = 0; i < items; i += chunksize) {
      const std::size_t n = std::min(items - i, chunksize);
      if constexpr (detail::is_plain_v<In> && !std::is_same_v<In, bool>) {
        // Codec<std::vector<In>> of plain values is just their bytes: write them straight into
        // the message, behind the room for the task header.
        std::string msg(detail::kTaskHeaderBytes + n * sizeof(In), '\0');
        auto* out = msg.data() + detail::kTaskHeaderBytes;
        for (std::size_t k = 0; k < n; ++k, ++it, out += sizeof(In)) {
          const In v = *it;
          std::memcpy(out, &v, sizeof(In));
        }
        tasks.push_back({trampoline, fn, std::move(msg)});
      } else {
        std::vector<In> part;
        part.reserve(n);
        for (std::size_t k = 0; k < n; ++k, ++it) part.push_back(*it);
        tasks.push_back({trampoline, fn, detail::encode_value(part, detail::kTaskHeaderBytes)});
      }
    }
    return tasks;
  }

  template <class R>
  static std::vector<R> concat(detail::JobState& job) {
    std::lock_guard<std::mutex> lock(job.mutex);
    std::vector<R> out;
    if constexpr (detail::is_plain_v<R> && !std::is_same_v<R, bool>) {
      // Each reply is [header][values] (Codec<std::vector<R>> of plain values is their bytes):
      // one copy into place.
      std::size_t total = 0;
      for (const auto& r : job.results) {
        const std::size_t bytes = r->size() - detail::kResultHeaderBytes;
        if (bytes % sizeof(R) != 0) detail::throw_decode_error(typeid(R).name(), bytes, "not whole values");
        total += bytes / sizeof(R);
      }
      out.resize(total);
      std::size_t at = 0;
      for (const auto& r : job.results) {
        const std::size_t bytes = r->size() - detail::kResultHeaderBytes;
        if (bytes != 0) {
          std::memcpy(static_cast<void*>(out.data() + at), r->data() + detail::kResultHeaderBytes, bytes);
        }
        at += bytes / sizeof(R);
      }
    } else {
      for (const auto& r : job.results) {
        auto part = detail::decode_value<std::vector<R>>(*r, detail::kResultHeaderBytes);
        out.insert(out.end(), std::make_move_iterator(part.begin()),
                   std::make_move_iterator(part.end()));
      }
    }
    return out;
  }

  template <class F, class Range>
  auto stream(F f, const Range& inputs, std::size_t chunksize, bool ordered) {
    using In = std::decay_t<decltype(*std::begin(inputs))>;
    auto fp = detail::task_pointer(f);
    using FP = decltype(fp);
    using R = typename detail::fn_traits<FP>::result;
    static_assert(!std::is_void_v<R>, "imap(f, inputs): f must return a value");
    auto tasks = chunk<In>(inputs, chunksize == 0 ? 1 : chunksize, &detail::map_trampoline<FP, In>,
                           reinterpret_cast<std::uintptr_t>(fp));
    std::size_t total = 0;
    for (const auto& x : inputs) {
      (void)x;
      ++total;
    }
    return ResultStream<R>(submit(std::move(tasks), {}), ordered, total);
  }

  std::unique_ptr<detail::PoolCore> core_;
};

}  // namespace multiproc
