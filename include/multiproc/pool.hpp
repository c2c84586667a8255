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
// replaced; tasks it had been sent but not started go to other workers, and a worker that dies
// idle fails nothing (each worker records in shared memory which task it has started). Workers
// that keep dying before they take any task (a failing initializer) break the pool: its calls fail
// with BrokenPool. In imap, a task's error or a worker's death arrives at that task's place in the
// stream (after the results before it); an exception thrown by the input is rethrown after the
// results of every item read before it.
//
// Every call ends: no call is ever left pending, whatever happens — terminate(), destroying the
// pool, a broken pool, a failure inside the pool itself (its calls fail with BrokenPool) or a
// worker that cannot be replaced.
//
// Lifecycle: close() refuses new calls; streams opened before it keep reading their input. join()
// (after close or terminate) waits until the submitted work is done and the workers have exited;
// a stream that still had input to read then fails with Error(errc::bad_state) where it stopped.
// terminate() stops the workers at once (SIGKILL) and fails the calls in progress, running ones
// included, with Error(errc::bad_state) — it returns promptly whatever the backlog.
// maxtasksperchild replaces a worker after that many tasks. Destroying a Pool terminates and joins
// it: every worker is reaped, nothing is left in /dev/shm. Workers die with this process
// (parent-death signal). A Pool may be used from several threads; callbacks run on the pool's
// manager thread and must not wait for the pool.
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/futex.hpp>
#include <multiproc/error.hpp>
#include <multiproc/process.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
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

//! What a call collects: one reply per task (call, ordered stream) or replies in completion
//! order (unordered stream).
enum class JobKind : std::uint8_t { call, ordered_stream, unordered_stream };

//! The state of one call (apply, map, an imap stream, ...), shared by the caller's handle and the
//! pool's manager thread. Guarded by `mutex`; `cv` announces each reply and the end.
struct JobState {
  std::mutex mutex;
  std::condition_variable cv;
  JobKind kind = JobKind::call;
  std::size_t tasks = 0;  // submitted so far (a stream adds tasks as it reads its input)
  std::size_t done = 0;   // answered
  // call, ordered stream: the reply of task `first + i` (header first; status byte 0 = success),
  // once it came. A stream pops the front as it takes replies.
  std::deque<std::optional<std::string>> results;
  std::size_t first = 0;
  std::deque<std::string> arrived;  // unordered stream: replies not taken yet, in arrival order
  std::exception_ptr error;  // set when the call failed (a stream: failed as a whole)
  bool completing = false;   // the outcome is known; callbacks are running
  bool finished = false;     // callbacks ran: get() may return
  std::vector<std::function<void(JobState&)>> on_finish;  // run by the manager, without the mutex
  std::function<void(std::size_t, std::size_t)> progress;
};

class PoolCore;
class StreamState;
struct StreamDeleter {
  void operator()(StreamState* s) const noexcept;
};

//! Reads a lazy input (imap) a chunk at a time, on the thread that iterates the stream.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  //! Effects: reads up to one chunk of items into `out`. Returns: how many it read (0: the input
  //! ended). An exception from the input is stored in `error` (the items read before it are in
  //! `out`); the source is not read again after that.
  virtual std::size_t read(PoolTask& out, std::exception_ptr& error) noexcept = 0;
};

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

//! Plain values travel in chunks as their bytes, with no vector in between.
template <class T>
inline constexpr bool is_bulk_v = is_plain_v<T> && !std::is_same_v<T, bool>;

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
  if constexpr (is_bulk_v<In> && is_bulk_v<R>) {
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

//! Builds one task message from items added one by one.
template <class In>
class ChunkBuilder {
 public:
  //! Room for `n` items (more are possible; fewer are fine).
  explicit ChunkBuilder(std::size_t n) {
    if constexpr (is_bulk_v<In>) {
      // Codec<std::vector<In>> of plain values is just their bytes: write them straight into the
      // message, behind the room for the task header.
      bytes_.resize(kTaskHeaderBytes + std::min<std::size_t>(n, std::size_t{1} << 16) * sizeof(In));
    } else {
      part_.reserve(std::min<std::size_t>(n, std::size_t{1} << 12));
    }
  }
  void add(const In& v) {
    if constexpr (is_bulk_v<In>) {
      const std::size_t at = kTaskHeaderBytes + count_ * sizeof(In);
      if (at == bytes_.size()) bytes_.resize(kTaskHeaderBytes + 2 * count_ * sizeof(In) + sizeof(In));
      std::memcpy(bytes_.data() + at, static_cast<const void*>(&v), sizeof(In));
      ++count_;
    } else {
      part_.push_back(v);
    }
  }
  //! The task message: kTaskHeaderBytes of room, then the items.
  std::string message() {
    if constexpr (is_bulk_v<In>) {
      bytes_.resize(kTaskHeaderBytes + count_ * sizeof(In));
      return std::move(bytes_);
    } else {
      return encode_value(part_, kTaskHeaderBytes);
    }
  }

 private:
  std::string bytes_;
  std::size_t count_ = 0;
  std::vector<In> part_;
};

//! imap's input: `Range` is a reference to the caller's range (which must outlive the stream) or
//! the range itself, kept here (a temporary passed to imap).
template <class In, class Range>
class RangeSource final : public ChunkSource {
 public:
  RangeSource(Range&& range, std::size_t chunksize, Trampoline trampoline, std::uintptr_t fn)
      : range_(std::forward<Range>(range)),
        it_(std::begin(range_)),
        end_(std::end(range_)),
        chunksize_(chunksize),
        trampoline_(trampoline),
        fn_(fn) {}
  std::size_t read(PoolTask& out, std::exception_ptr& error) noexcept override {
    std::size_t n = 0;
    try {
      ChunkBuilder<In> chunk(chunksize_);
      try {
        while (n < chunksize_ && it_ != end_) {
          chunk.add(*it_);
          ++n;  // counted before ++it_: an item read is an item sent, even if ++ then throws
          ++it_;
        }
      } catch (...) {
        error = std::current_exception();
      }
      if (n != 0) out = PoolTask{trampoline_, fn_, chunk.message()};
    } catch (...) {  // no memory for the chunk
      error = std::current_exception();
      n = 0;
    }
    return n;
  }

 private:
  using Stored = std::conditional_t<std::is_lvalue_reference_v<Range>, Range, std::remove_cv_t<Range>>;
  Stored range_;
  decltype(std::begin(std::declval<Stored&>())) it_;
  decltype(std::end(std::declval<Stored&>())) end_;
  std::size_t chunksize_;
  Trampoline trampoline_;
  std::uintptr_t fn_;
};

//! Python's default chunk size: about four chunks per worker.
std::size_t default_chunksize(std::size_t items, std::size_t workers) noexcept;

//! Waits for a job to finish (up to the deadline); returns whether it did.
bool wait_job(JobState& job, const Clock::time_point* deadline);
//! Rethrows the job's error, if any. Requires it finished.
void rethrow_job_error(JobState& job);
//! Adds a callback to run when the job finishes (at once, here, if it already has).
void on_job_finish(const std::shared_ptr<JobState>& job, std::function<void(JobState&)> fn);
//! The next reply of a stream (header first), reading input and submitting chunks as needed.
//! Returns: false at the end. Throws: the task's error (RemoteError, BrokenPool), the input's
//! exception, Error(errc::bad_state) if the pool stopped.
bool stream_next(StreamState& stream, std::string& reply);

}  // namespace detail

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

namespace detail {
template <class T>
struct is_callbacks : std::false_type {};
template <class S, class E>
struct is_callbacks<Callbacks<S, E>> : std::true_type {};
template <class... A>
struct first_is_callbacks : std::false_type {};
template <class A0, class... A>
struct first_is_callbacks<A0, A...> : is_callbacks<std::decay_t<A0>> {};
}  // namespace detail

template <class R>
class AsyncResult {
 public:
  using value_type = R;
  using Success = typename detail::success_callback<R>::type;

  //! Returns: the result, waiting for it. Throws: RemoteError (a task threw), BrokenPool (a
  //! worker died running it, or the pool broke), Error(errc::bad_state) (the pool was terminated
  //! first).
  R get() const {
    detail::wait_job(*job_, nullptr);
    detail::rethrow_job_error(*job_);
    if constexpr (!std::is_void_v<R>) return decode_(*job_);
  }
  //! Python's get(timeout). Returns: the result (void: true) if the call finishes within the
  //! timeout; at the deadline without it (nullopt; void: false) — the timeout is no exception.
  //! Throws: as get(), when the call failed within the timeout.
  template <class Rep, class Period>
  auto get_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const auto deadline = detail::deadline_after(timeout);
    const bool done = detail::wait_job(*job_, &deadline);
    if constexpr (std::is_void_v<R>) {
      if (done) detail::rethrow_job_error(*job_);
      return done;
    } else {
      if (!done) return std::optional<R>();
      detail::rethrow_job_error(*job_);
      return std::optional<R>(decode_(*job_));
    }
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
  //! thread, or at once from this thread if it already has. Keep it short; an exception from it
  //! is printed and dropped. To have it in place before the call can finish, give it with the
  //! call (mp::callbacks).
  const AsyncResult& on_success(Success f) const {
    if (!f) return *this;
    detail::on_job_finish(job_, [decode = decode_, f = std::move(f)](detail::JobState& job) {
      if (job.error) return;
      if constexpr (std::is_void_v<R>) {
        (void)decode;
        f();
      } else {
        f(decode(job));
      }
    });
    return *this;
  }
  //! Effects: calls f(error) in this process when the call fails (RemoteError, BrokenPool, ...),
  //! from the same threads as on_success.
  const AsyncResult& on_error(std::function<void(const Error&)> f) const {
    if (!f) return *this;
    detail::on_job_finish(job_, [f = std::move(f)](detail::JobState& job) {
      if (!job.error) return;
      try {
        std::rethrow_exception(job.error);
      } catch (const Error& e) {
        f(e);
      } catch (...) {
      }
    });
    return *this;
  }

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
    iterator& operator++() {
      if (++pos_ == s_->buffer_.size()) {
        pos_ = 0;
        ResultStream* s = s_;
        s_ = nullptr;  // should next_chunk throw, this iterator is at the end
        if (s->next_chunk()) s_ = s;
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

  //! The number of results taken from the pool so far (the chunk being iterated included): the
  //! count of all results once the iteration ended. (An endless input has no total to know ahead.)
  std::size_t total() const noexcept { return delivered_; }

 private:
  friend class Pool;
  explicit ResultStream(std::unique_ptr<detail::StreamState, detail::StreamDeleter> state)
      : state_(std::move(state)) {}

  // Loads the next non-empty chunk into buffer_; false at the end.
  bool next_chunk() {
    std::string reply;
    while (state_ != nullptr && detail::stream_next(*state_, reply)) {
      auto values = detail::decode_value<std::vector<R>>(reply, detail::kResultHeaderBytes);
      if constexpr (std::is_same_v<R, bool>) {
        buffer_.assign(values.begin(), values.end());
      } else {
        buffer_ = std::move(values);
      }
      delivered_ += buffer_.size();
      if (!buffer_.empty()) return true;
    }
    buffer_.clear();
    return false;
  }

  std::unique_ptr<detail::StreamState, detail::StreamDeleter> state_;
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
  //! Returns: an AsyncResult for f(args...). With mp::callbacks(on_success, on_error) right after
  //! f, the callbacks are attached before the call is submitted. Throws: Error(errc::bad_state)
  //! after close() or terminate(), BrokenPool on a broken pool (the callbacks then never run).
  template <class F, class... Args,
            class = std::enable_if_t<!detail::first_is_callbacks<Args...>::value>>
  auto apply_async(F f, Args&&... args) {
    return apply_async(f, Callbacks<std::nullptr_t, std::nullptr_t>{nullptr, nullptr},
                       std::forward<Args>(args)...);
  }
  template <class F, class S, class E, class... Args>
  auto apply_async(F f, Callbacks<S, E> cb, Args&&... args) {
    auto fp = detail::task_pointer(f);
    using FP = decltype(fp);
    using R = typename detail::fn_traits<FP>::result;
    static_assert(std::is_invocable_v<FP, std::decay_t<Args>&...>,
                  "apply_async(f, args...): f cannot be called with these arguments");
    const typename detail::fn_traits<FP>::args tuple(std::forward<Args>(args)...);
    std::vector<detail::PoolTask> tasks;
    tasks.push_back({&detail::apply_trampoline<FP>, reinterpret_cast<std::uintptr_t>(fp),
                     detail::encode_value(tuple, detail::kTaskHeaderBytes)});
    AsyncResult<R> result(std::make_shared<detail::JobState>(), [](detail::JobState& j) -> R {
      if constexpr (!std::is_void_v<R>) {
        std::lock_guard<std::mutex> lock(j.mutex);
        return detail::decode_value<R>(*j.results[0], detail::kResultHeaderBytes);
      }
    });
    attach(result, std::move(cb));
    submit(result.job_, std::move(tasks), {});
    return result;
  }

  //! Returns: [f(x) for x in inputs], in order.
  template <class F, class Range>
  auto map(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {}) {
    return map_async(f, inputs, chunksize, std::move(progress)).get();
  }
  //! Returns: an AsyncResult for map(...). Reads all of `inputs` first: an exception from the
  //! input leaves here, before anything is submitted. With mp::callbacks(...) right after f, as
  //! apply_async.
  template <class F, class Range, class = std::enable_if_t<!detail::is_callbacks<Range>::value>>
  auto map_async(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {}) {
    return map_async(f, Callbacks<std::nullptr_t, std::nullptr_t>{nullptr, nullptr}, inputs,
                     chunksize, std::move(progress));
  }
  template <class F, class S, class E, class Range>
  auto map_async(F f, Callbacks<S, E> cb, const Range& inputs, std::size_t chunksize = 0,
                 Progress progress = {}) {
    using In = std::decay_t<decltype(*std::begin(inputs))>;
    auto fp = detail::task_pointer(f);
    using FP = decltype(fp);
    using R = typename detail::fn_traits<FP>::result;
    static_assert(!std::is_void_v<R>, "map(f, inputs): f must return a value");
    return submit_all<R>(chunk<In>(inputs, chunksize, &detail::map_trampoline<FP, In>,
                                   reinterpret_cast<std::uintptr_t>(fp)),
                         std::move(cb), std::move(progress));
  }

  //! Returns: [f(a, b, ...) for (a, b, ...) in inputs], in order. Inputs are tuples or pairs.
  template <class F, class Range>
  auto starmap(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {}) {
    return starmap_async(f, inputs, chunksize, std::move(progress)).get();
  }
  template <class F, class Range, class = std::enable_if_t<!detail::is_callbacks<Range>::value>>
  auto starmap_async(F f, const Range& inputs, std::size_t chunksize = 0, Progress progress = {}) {
    return starmap_async(f, Callbacks<std::nullptr_t, std::nullptr_t>{nullptr, nullptr}, inputs,
                         chunksize, std::move(progress));
  }
  template <class F, class S, class E, class Range>
  auto starmap_async(F f, Callbacks<S, E> cb, const Range& inputs, std::size_t chunksize = 0,
                     Progress progress = {}) {
    using In = std::decay_t<decltype(*std::begin(inputs))>;
    auto fp = detail::task_pointer(f);
    using FP = decltype(fp);
    using R = typename detail::fn_traits<FP>::result;
    static_assert(!std::is_void_v<R>, "starmap(f, inputs): f must return a value");
    return submit_all<R>(chunk<In>(inputs, chunksize, &detail::starmap_trampoline<FP, In>,
                                   reinterpret_cast<std::uintptr_t>(fp)),
                         std::move(cb), std::move(progress));
  }

  //! Returns: a lazy range of f(x) for x in inputs, in order, each available as soon as its chunk
  //! is done (chunksize 1 by default, as in Python). The input is read as the stream is iterated,
  //! on the iterating thread, at most a few chunks per worker ahead of the results taken: an
  //! endless input works in constant memory. An lvalue `inputs` must outlive the stream (it is
  //! read in place); a temporary is moved into the stream. Throws: as apply_async.
  template <class F, class Range>
  auto imap(F f, Range&& inputs, std::size_t chunksize = 1) {
    return stream(f, std::forward<Range>(inputs), chunksize, true);
  }
  //! As imap, in the order the results complete.
  template <class F, class Range>
  auto imap_unordered(F f, Range&& inputs, std::size_t chunksize = 1) {
    return stream(f, std::forward<Range>(inputs), chunksize, false);
  }

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
  void submit(const std::shared_ptr<detail::JobState>& job, std::vector<detail::PoolTask> tasks,
              Progress progress);
  std::unique_ptr<detail::StreamState, detail::StreamDeleter> open_stream(
      std::unique_ptr<detail::ChunkSource> source, bool ordered);

  template <class R, class S, class E>
  static void attach(const AsyncResult<R>& result, Callbacks<S, E> cb) {
    if constexpr (!std::is_same_v<S, std::nullptr_t>) {
      if constexpr (std::is_void_v<R>) {
        static_assert(std::is_invocable_v<S&>, "mp::callbacks(on_success, ...): on_success() of a "
                                               "void call takes no argument");
      } else {
        static_assert(std::is_invocable_v<S&, const R&>,
                      "mp::callbacks(on_success, ...): on_success must take the result (const R&)");
      }
      result.on_success(typename AsyncResult<R>::Success(std::move(cb.on_success)));
    }
    if constexpr (!std::is_same_v<E, std::nullptr_t>) {
      static_assert(std::is_invocable_v<E&, const Error&>,
                    "mp::callbacks(..., on_error): on_error must take a const multiproc::Error&");
      result.on_error(std::function<void(const Error&)>(std::move(cb.on_error)));
    }
  }

  template <class R, class S, class E>
  AsyncResult<std::vector<R>> submit_all(std::vector<detail::PoolTask> tasks, Callbacks<S, E> cb,
                                         Progress progress) {
    AsyncResult<std::vector<R>> result(std::make_shared<detail::JobState>(), &concat<R>);
    attach(result, std::move(cb));
    submit(result.job_, std::move(tasks), std::move(progress));
    return result;
  }

  // map's input, read at once (twice for a forward range: counting, then copying; an input-only
  // range is first copied into a vector).
  template <class In, class Range>
  std::vector<detail::PoolTask> chunk(const Range& inputs, std::size_t chunksize,
                                      detail::Trampoline trampoline, std::uintptr_t fn) {
    using It = decltype(std::begin(inputs));
    if constexpr (!std::is_base_of_v<std::forward_iterator_tag,
                                     typename std::iterator_traits<It>::iterator_category>) {
      std::vector<In> copy;
      for (auto it = std::begin(inputs); it != std::end(inputs); ++it) copy.push_back(*it);
      return chunk<In>(copy, chunksize, trampoline, fn);
    } else {
      const auto items = static_cast<std::size_t>(std::distance(std::begin(inputs), std::end(inputs)));
      if (chunksize == 0) chunksize = detail::default_chunksize(items, size());
      std::vector<detail::PoolTask> tasks;
      tasks.reserve(items / chunksize + 1);
      auto it = std::begin(inputs);
      for (std::size_t i = 0; i < items; i += chunksize) {
        const std::size_t n = std::min(items - i, chunksize);
        detail::ChunkBuilder<In> part(n);
        for (std::size_t k = 0; k < n; ++k, ++it) part.add(*it);
        tasks.push_back({trampoline, fn, part.message()});
      }
      return tasks;
    }
  }

  template <class R>
  static std::vector<R> concat(detail::JobState& job) {
    std::lock_guard<std::mutex> lock(job.mutex);
    std::vector<R> out;
    if constexpr (detail::is_bulk_v<R>) {
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
  auto stream(F f, Range&& inputs, std::size_t chunksize, bool ordered) {
    using In = std::decay_t<decltype(*std::begin(inputs))>;
    auto fp = detail::task_pointer(f);
    using FP = decltype(fp);
    using R = typename detail::fn_traits<FP>::result;
    static_assert(!std::is_void_v<R>, "imap(f, inputs): f must return a value");
    if (chunksize == 0) chunksize = 1;
    std::unique_ptr<detail::ChunkSource> source =
        std::make_unique<detail::RangeSource<In, Range>>(std::forward<Range>(inputs), chunksize,
                                                         &detail::map_trampoline<FP, In>,
                                                         reinterpret_cast<std::uintptr_t>(fp));
    return ResultStream<R>(open_stream(std::move(source), ordered));
  }

  std::shared_ptr<detail::PoolCore> core_;  // shared with the streams (weakly)
};

}  // namespace multiproc
