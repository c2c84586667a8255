// multiproc/detail/pool_job.hpp — private: the state of one Pool call as its caller sees it
// (JobState, shared with the pool's manager thread), how replies are decoded into results, and
// the entry points into src/pool/ that AsyncResult and ResultStream use. Users never name these.
#pragma once

#include <multiproc/detail/futex.hpp>  // Clock
#include <multiproc/detail/pool_task.hpp>
#include <multiproc/detail/this_process.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace multiproc {

template <class S, class E>
struct Callbacks;

namespace detail {

class PoolCore;

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
  // A map whose results are plain values: `place` copies a chunk's values (the reply past its
  // header) into `placed`, the std::vector of the whole result, at the chunk's place — instead of
  // keeping the reply in `results`. Returns: the error if the reply does not fit. Called by the
  // thread that delivers the reply, with `mutex` held. With `move_out` (map(): no one else sees
  // the result), the result is moved out of `placed` rather than copied.
  std::function<std::exception_ptr(std::size_t index, const char* values, std::size_t bytes)> place;
  std::shared_ptr<void> placed;
  bool move_out = false;
  // Sizes `placed` to the whole result, its pages mapped (place() does it at the first reply when
  // no one has). `sizing`: 0 not yet, 1 map()'s caller is at it on its own thread while the
  // workers compute (size_placed_result), 2 done — a reply to place waits while it is 1.
  std::function<void()> size_placed;
  int sizing = 0;
  // map() / starmap(): the caller waits for the result as soon as it is submitted, so it may keep
  // the tasks it cannot send at once and deal them out while it waits (PoolCore::try_direct). A
  // call that returns at once (map_async) leaves those to the manager: they run without a get().
  bool caller_waits = false;
  std::exception_ptr error;  // set when the call failed (a stream: failed as a whole)
  bool completing = false;   // the outcome is known; callbacks are running
  bool finished = false;     // callbacks ran: get() may return
  // The process that made the call: only its pool's manager and workers ever finish it (a forked
  // child's copy waited for ever).
  const pid_t owner = current_pid();
  std::vector<std::function<void(JobState&)>> on_finish;  // run by the manager, without the mutex
  std::function<void(std::size_t, std::size_t)> progress;
  // ProcessPoolExecutor futures (executor.hpp) only; a Pool call leaves these alone.
  bool future = false;     // set before submit: shutdown(cancel_futures) may cancel it; the
                           // manager records `started` when it sends its task
  bool cancelled = false;  // finished by cancel(), error is CancelledError
  // Set by the manager when it sends the task to a worker (replaced if the task is sent again):
  // whether that worker has started it (reads the worker's "started" word). Cleared on finish.
  std::function<bool()> started;
  // Run after `finished` is set (done-callbacks, as_completed / wait), without the mutex, by the
  // thread that finishes the job; a token each, for remove_done_hook.
  std::vector<std::pair<std::uint64_t, std::function<void()>>> on_done;
  std::uint64_t next_hook = 1;
  // A call whose caller deals its tasks out itself (PoolCore::try_direct): the pool, so that a
  // thread waiting for the result collects the replies itself (PoolCore::collect_direct).
  // Set before the task is sent, never changed after; empty for every other call.
  std::weak_ptr<PoolCore> direct_pool;
  // Set (once) when the reply is to be read by the manager thread after all: the waiting thread
  // gave up spinning, or a callback was added. The manager reads it when it picks the pipes to
  // watch (relaxed on both sides: a kick() after the store wakes the manager, and the kick's queue
  // orders it).
  std::atomic<bool> handover{false};
};

class StreamState;
struct StreamDeleter {
  void operator()(StreamState* s) const noexcept;
};
using StreamHandle = std::unique_ptr<StreamState, StreamDeleter>;

//! Waits for a job to finish (up to the deadline); returns whether it did. A call sent straight to
//! a worker is collected by this thread for a short while first.
bool wait_job(JobState& job, const Clock::time_point* deadline);
//! Returns: whether the job finished (collecting the reply of a call sent straight to a worker
//! if it is there).
bool job_ready(JobState& job);
//! For map() of plain values, on the caller's thread just after the call is submitted: sizes the
//! result vector (JobState::size_placed) while the workers compute the first chunks, rather than
//! the pool's thread at the first reply, with the replies waiting behind it. On a host where a
//! fresh page costs microseconds at its first touch that is most of a map's time, and the
//! caller's thread has nothing else to do. Does nothing if a reply already sized it; should
//! sizing throw (no memory), the pool's thread tries again at the first reply and fails the call.
void size_placed_result(JobState& job) noexcept;
//! Rethrows the job's error, if any. Requires it finished.
void rethrow_job_error(JobState& job);
//! Adds a callback to run when the job finishes (at once, here, if it already has).
void on_job_finish(const std::shared_ptr<JobState>& job, std::function<void(JobState&)> fn);
//! Effects: runs fn once the job has finished (result() returns at once): from the thread that
//! finishes it, or here at once if it has. Returns: a token for remove_done_hook (0: it ran here).
std::uint64_t add_done_hook(JobState& job, std::function<void()> fn);
//! Effects: forgets the hook unless it ran or is running (then it runs once, as it would have).
void remove_done_hook(JobState& job, std::uint64_t token) noexcept;
//! Cancels a call none of whose unanswered tasks has left the pool's queue: removes them and
//! finishes the call with CancelledError (its callbacks run on this thread). Returns: whether it
//! did (false: a task was sent to a worker, or the call finished, or the pool is gone).
bool cancel_job(const std::weak_ptr<PoolCore>& pool, const std::shared_ptr<JobState>& job);
//! Returns: whether a worker has started the call's (single) task and it has not finished.
bool job_running(JobState& job);
//! The next reply of a stream (header first), reading input and submitting chunks as needed.
//! Returns: false at the end. Throws: the task's error (RemoteError, BrokenPool), the input's
//! exception, Error(errc::bad_state) if the pool stopped. The buffer `reply` held goes back to
//! the pool's buffers first.
bool stream_next(StreamState& stream, std::string& reply);

template <class R>
struct success_callback {
  using type = std::function<void(const R&)>;
};
template <>
struct success_callback<void> {
  using type = std::function<void()>;
};

template <class T>
struct is_callbacks : std::false_type {};
template <class S, class E>
struct is_callbacks<Callbacks<S, E>> : std::true_type {};
template <class... A>
struct first_is_callbacks : std::false_type {};
template <class A0, class... A>
struct first_is_callbacks<A0, A...> : is_callbacks<std::decay_t<A0>> {};

// ---- results: replies decoded (on the caller's thread) --------------------------------------

//! apply's result: the one reply. Requires: the job finished without error.
template <class R>
R decode_single(JobState& job) {
  if constexpr (!std::is_void_v<R>) {
    std::lock_guard<std::mutex> lock(job.mutex);
    return decode_value<R>(*job.results[0], kResultHeaderBytes);
  }
}

//! map's result: the replies' vectors, one after the other. Requires: the job finished without
//! error.
template <class R>
std::vector<R> concat(JobState& job) {
  std::lock_guard<std::mutex> lock(job.mutex);
  if (job.placed) {
    auto& placed = *static_cast<std::vector<R>*>(job.placed.get());
    if (job.move_out) return std::move(placed);
    return placed;
  }
  std::vector<R> out;
  if constexpr (is_bulk_v<R>) {
    // Each reply is [header][values] (Codec<std::vector<R>> of plain values is their bytes):
    // one copy into place.
    std::size_t total = 0;
    for (const auto& r : job.results) {
      const std::size_t bytes = r->size() - kResultHeaderBytes;
      if (bytes % sizeof(R) != 0) throw_decode_error(typeid(R).name(), bytes, "not whole values");
      total += bytes / sizeof(R);
    }
    out.resize(total);
    std::size_t at = 0;
    for (const auto& r : job.results) {
      const std::size_t bytes = r->size() - kResultHeaderBytes;
      if (bytes != 0) {
        std::memcpy(static_cast<void*>(out.data() + at), r->data() + kResultHeaderBytes, bytes);
      }
      at += bytes / sizeof(R);
    }
  } else {
    for (const auto& r : job.results) {
      auto part = decode_value<std::vector<R>>(*r, kResultHeaderBytes);
      out.insert(out.end(), std::make_move_iterator(part.begin()),
                 std::make_move_iterator(part.end()));
    }
  }
  return out;
}

//! Effects: maps the pages of [p, p + bytes) for writing in one system call where Linux can
//! (MADV_POPULATE_WRITE), instead of a page fault per page when they are first written. A hint:
//! does nothing where it cannot.
void populate(void* p, std::size_t bytes) noexcept;

//! Sets up a map of plain results to be placed straight into its result vector (JobState::place):
//! `items` values in chunks of `chunksize`.
template <class R>
void place_results(JobState& job, std::size_t items, std::size_t chunksize, bool move_out) {
  static_assert(is_bulk_v<R>, "only plain values are placed");
  auto out = std::make_shared<std::vector<R>>();
  // The whole result, its pages mapped at once rather than a fault at a time.
  const auto size = [](std::vector<R>& v, std::size_t n) {
    v.reserve(n);
    populate(v.data(), n * sizeof(R));
    v.resize(n);
  };
  job.size_placed = [out = out.get(), items, size] { size(*out, items); };
  job.place = [out = out.get(), items, chunksize, size](std::size_t index, const char* values,
                                                  std::size_t bytes) -> std::exception_ptr {
    const std::size_t first = index * chunksize;
    const std::size_t count = first < items ? std::min(chunksize, items - first) : 0;
    if (count == 0 || bytes != count * sizeof(R)) {
      try {
        throw_decode_error(typeid(R).name(), bytes, "not the values of its chunk");
      } catch (...) {
        return std::current_exception();
      }
    }
    if (out->size() != items) {  // no caller did (size_placed_result)
      try {
        size(*out, items);
      } catch (...) {  // no memory for the result: this call fails, the pool goes on
        return std::current_exception();
      }
    }
    std::memcpy(static_cast<void*>(out->data() + first), values, bytes);
    return nullptr;
  };
  job.placed = std::move(out);
  job.move_out = move_out;
}

//! A stream's chunk: the values of one reply, into `buffer` (a std::vector<R>, or a
//! std::deque<bool> for bool).
template <class R, class Buffer>
void decode_chunk(const std::string& reply, Buffer& buffer) {
  auto values = decode_value<std::vector<R>>(reply, kResultHeaderBytes);
  if constexpr (std::is_same_v<R, bool>) {
    buffer.assign(values.begin(), values.end());
  } else {
    buffer = std::move(values);
  }
}

}  // namespace detail
}  // namespace multiproc
