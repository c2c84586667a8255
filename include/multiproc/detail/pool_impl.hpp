// multiproc/detail/pool_impl.hpp — private: the definitions of the templates declared in
// <multiproc/pool.hpp> (which includes this at its end). How a call becomes tasks is in
// detail/pool_task.hpp; the job a call shares with the pool's manager thread, in detail/pool_job.hpp.
#pragma once

// Not a header of its own: pool.hpp includes it after declaring everything it defines (so the
// include graph stays acyclic); including it first is an error.
#ifndef MULTIPROC_POOL_HPP_DECLARED
#error "include <multiproc/pool.hpp>, not <multiproc/detail/pool_impl.hpp>"
#endif

namespace multiproc {
namespace detail {

//! Attaches the callbacks given with a call to its result, before it is submitted.
template <class R, class S, class E>
void attach_callbacks(const AsyncResult<R>& result, Callbacks<S, E> cb) {
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

using NoCallbacks = Callbacks<std::nullptr_t, std::nullptr_t>;

//! For a call that finished without error: what decoding its result throws, or null. A result
//! that cannot be decoded (a Codec that refuses the bytes) fails the call as get() reports it:
//! successful() is false, on_error runs, on_success does not. Plain values placed straight into
//! a map's result cannot fail, and are not decoded again to find out.
template <class R>
std::exception_ptr undecodable(JobState& job, R (*decode)(JobState&)) {
  if constexpr (!std::is_void_v<R>) {
    if (job.placed) return nullptr;
    try {
      (void)decode(job);
    } catch (...) {
      return std::current_exception();
    }
  }
  return nullptr;
}

//! The Error an on_error callback gets for `e` (an exception of another type becomes one).
Error as_result_error(const std::exception_ptr& e);

}  // namespace detail

// ---- AsyncResult ------------------------------------------------------------------------------

template <class R>
R AsyncResult<R>::get() const {
  detail::wait_job(*job_, nullptr);
  detail::rethrow_job_error(*job_);
  if constexpr (!std::is_void_v<R>) return decode_(*job_);
}

template <class R>
template <class Rep, class Period>
auto AsyncResult<R>::get_for(const std::chrono::duration<Rep, Period>& timeout) const {
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

template <class R>
bool AsyncResult<R>::successful() const {
  const bool ready = detail::job_ready(*job_);  // reads a reply that waits for it, as ready()
  {
    std::lock_guard<std::mutex> lock(job_->mutex);
    if (!ready) {
      throw Error(errc::bad_state,
                  "multiproc::AsyncResult: successful() before the result is ready");
    }
    if (job_->error) return false;
  }
  return !detail::undecodable<R>(*job_, decode_);  // decode_ takes the job's mutex itself
}

template <class R>
const AsyncResult<R>& AsyncResult<R>::on_success(Success f) const {
  if (!f) return *this;
  detail::on_job_finish(job_, [decode = decode_, f = std::move(f)](detail::JobState& job) {
    if (job.error) return;
    if constexpr (std::is_void_v<R>) {
      (void)decode;
      f();
    } else {
      std::optional<R> value;
      try {
        value.emplace(decode(job));
      } catch (...) {
        return;  // the call failed after all: on_error has it (detail::undecodable)
      }
      f(*value);
    }
  });
  return *this;
}

template <class R>
const AsyncResult<R>& AsyncResult<R>::on_error(std::function<void(const Error&)> f) const {
  if (!f) return *this;
  detail::on_job_finish(job_, [decode = decode_, f = std::move(f)](detail::JobState& job) {
    if (!job.error) {
      if (const std::exception_ptr e = detail::undecodable<R>(job, decode)) {
        f(detail::as_result_error(e));
      }
      return;
    }
    try {
      std::rethrow_exception(job.error);
    } catch (const Error& e) {
      f(e);
    } catch (...) {
    }
  });
  return *this;
}

// ---- ResultStream -----------------------------------------------------------------------------

template <class R>
typename ResultStream<R>::iterator& ResultStream<R>::iterator::operator++() {
  if (++pos_ == s_->buffer_.size()) {
    pos_ = 0;
    ResultStream* s = s_;
    s_ = nullptr;  // should next_chunk throw, this iterator is at the end
    if (s->next_chunk()) s_ = s;
  }
  return *this;
}

template <class R>
typename ResultStream<R>::iterator ResultStream<R>::begin() {
  if (started_) throw Error(errc::bad_state, "multiproc::ResultStream: a single-pass range");
  started_ = true;
  return next_chunk() ? iterator(this) : iterator();
}

template <class R>
bool ResultStream<R>::next_chunk() {
  while (state_ != nullptr && detail::stream_next(*state_, reply_)) {
    detail::decode_chunk<R>(reply_, buffer_);
    delivered_ += buffer_.size();
    if (!buffer_.empty()) return true;
  }
  buffer_.clear();
  return false;
}

// ---- Pool -------------------------------------------------------------------------------------

template <class F, class... Args>
auto Pool::apply(F f, Args&&... args) {
  return apply_async(f, std::forward<Args>(args)...).get();
}

template <class F, class... Args, class>
auto Pool::apply_async(F f, Args&&... args) {
  return apply_async(f, detail::NoCallbacks{nullptr, nullptr}, std::forward<Args>(args)...);
}

template <class F, class S, class E, class... Args>
auto Pool::apply_async(F f, Callbacks<S, E> cb, Args&&... args) {
  using R = typename detail::fn_traits<decltype(detail::task_pointer(f))>::result;
  std::vector<detail::PoolTask> tasks;
  tasks.push_back(detail::apply_task(f, std::forward<Args>(args)...));
  return start_call<R>(std::move(tasks), std::move(cb), {}, &detail::decode_single<R>,
                       [](detail::JobState&) {});
}

template <class F, class Range>
auto Pool::map(F f, const Range& inputs, std::size_t chunksize, Progress progress) {
  // Its result is seen by no one else: moved out of the call rather than copied.
  auto call = map_call<detail::Spread::no>(f, detail::NoCallbacks{nullptr, nullptr}, inputs,
                                           chunksize, std::move(progress), true);
  detail::size_placed_result(*call.job_);  // this thread is otherwise idle until the result
  return call.get();
}

template <class F, class Range, class>
auto Pool::map_async(F f, const Range& inputs, std::size_t chunksize, Progress progress) {
  return map_async(f, detail::NoCallbacks{nullptr, nullptr}, inputs, chunksize, std::move(progress));
}

template <class F, class S, class E, class Range>
auto Pool::map_async(F f, Callbacks<S, E> cb, const Range& inputs, std::size_t chunksize,
                     Progress progress) {
  return map_call<detail::Spread::no>(f, std::move(cb), inputs, chunksize, std::move(progress),
                                      false);
}

template <class F, class Range>
auto Pool::starmap(F f, const Range& inputs, std::size_t chunksize, Progress progress) {
  auto call = map_call<detail::Spread::yes>(f, detail::NoCallbacks{nullptr, nullptr}, inputs,
                                            chunksize, std::move(progress), true);
  detail::size_placed_result(*call.job_);  // as in map()
  return call.get();
}

template <class F, class Range, class>
auto Pool::starmap_async(F f, const Range& inputs, std::size_t chunksize, Progress progress) {
  return starmap_async(f, detail::NoCallbacks{nullptr, nullptr}, inputs, chunksize,
                       std::move(progress));
}

template <class F, class S, class E, class Range>
auto Pool::starmap_async(F f, Callbacks<S, E> cb, const Range& inputs, std::size_t chunksize,
                         Progress progress) {
  return map_call<detail::Spread::yes>(f, std::move(cb), inputs, chunksize, std::move(progress),
                                       false);
}

template <class F, class Range>
auto Pool::imap(F f, Range&& inputs, std::size_t chunksize) {
  return stream(f, std::forward<Range>(inputs), chunksize, true);
}

template <class F, class Range>
auto Pool::imap_unordered(F f, Range&& inputs, std::size_t chunksize) {
  return stream(f, std::forward<Range>(inputs), chunksize, false);
}

template <class R, class S, class E, class Setup>
AsyncResult<R> Pool::start_call(std::vector<detail::PoolTask> tasks, Callbacks<S, E> cb,
                                Progress progress, typename AsyncResult<R>::Decode decode,
                                Setup setup) {
  AsyncResult<R> result(std::make_shared<detail::JobState>(), decode);
  setup(*result.job_);
  detail::attach_callbacks(result, std::move(cb));
  submit(result.job_, std::move(tasks), std::move(progress));
  return result;
}

template <detail::Spread Spread, class F, class S, class E, class Range>
auto Pool::map_call(F f, Callbacks<S, E> cb, const Range& inputs, std::size_t chunksize,
                    Progress progress, bool sole) {
  using In = std::decay_t<decltype(*std::begin(inputs))>;
  using Call = detail::ChunkCall<F, In, Spread>;
  using R = typename Call::result;
  static_assert(Spread == detail::Spread::yes || !std::is_void_v<R>,
                "map(f, inputs): f must return a value");
  static_assert(Spread == detail::Spread::no || !std::is_void_v<R>,
                "starmap(f, inputs): f must return a value");
  const auto fn = reinterpret_cast<std::uintptr_t>(detail::task_pointer(f));
  std::size_t items = 0;
  // map() (sole) waits for the call to finish: its chunks may be sent from `inputs` itself.
  auto tasks = detail::chunk_all<In>(inputs, chunksize, items, size(), Call::trampoline(), fn,
                                     buffers(), sole);
  return start_call<std::vector<R>>(
      std::move(tasks), std::move(cb), std::move(progress), &detail::concat<R>,
      [&](detail::JobState& job) {
        job.caller_waits = sole;
        if constexpr (detail::is_bulk_v<R>) detail::place_results<R>(job, items, chunksize, sole);
      });
}

template <class F, class Range>
auto Pool::stream(F f, Range&& inputs, std::size_t chunksize, bool ordered) {
  using In = std::decay_t<decltype(*std::begin(inputs))>;
  using Call = detail::ChunkCall<F, In, detail::Spread::no>;
  using R = typename Call::result;
  static_assert(!std::is_void_v<R>, "imap(f, inputs): f must return a value");
  if (chunksize == 0) chunksize = 1;
  const auto fn = reinterpret_cast<std::uintptr_t>(detail::task_pointer(f));
  std::unique_ptr<detail::ChunkSource> source = std::make_unique<detail::RangeSource<In, Range>>(
      std::forward<Range>(inputs), chunksize, Call::trampoline(), fn);
  return ResultStream<R>(open_stream(std::move(source), ordered));
}

}  // namespace multiproc
