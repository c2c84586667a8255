// multiproc/redis/detail/pool_call.hpp — private: the state of one redis::Pool call (what
// AsyncResult shares), the task wrapper of redis::serve, and the callable traits they use. Users
// never name any of this (redis/pool.hpp documents the behaviour).
#pragma once

#include <multiproc/redis/client.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace multiproc::redis {

class Result;

namespace detail {

struct PoolCore;  // src/redis/pool_client.cpp: the Client, the keys, the renewal of live calls

//! Returns: the mangled name that stands for "any result type" in a request (an untyped call).
inline const char* any_result_type() { return ""; }

//! One call (an apply or a map) as its AsyncResults see it. Non-template: src/redis/pool_client.cpp.
//! Copies of an AsyncResult share one CallState; any thread may wait on it (one at a time reads
//! the server, the others wait on `cv`).
class CallState {
 public:
  using Progress = std::function<void(std::size_t done, std::size_t total)>;

  CallState(std::shared_ptr<PoolCore> core, std::string call_id, std::string task,
            std::vector<std::size_t> job_offsets, Progress progress);
  ~CallState();
  CallState(const CallState&) = delete;
  CallState& operator=(const CallState&) = delete;

  //! Waits until the call finished or `deadline` passed (none: forever). Returns: finished.
  //! Throws: Error(errc::disconnected) if the server cannot be reached for the Client's
  //! reconnect_for (the call itself stays pending: a later wait may still finish it).
  bool wait_until(std::optional<Clock::time_point> deadline);
  //! Reads what results are in without blocking. Returns: finished.
  bool poll();
  bool finished() const;
  //! Throws the call's error, if it failed. Requires: finished.
  void rethrow() const;
  //! Items done and in all (a snapshot).
  std::pair<std::size_t, std::size_t> progress() const;
  //! The encoded results, one per item, in input order. Requires: finished without error.
  const std::vector<std::string>& items() const { return items_; }
  //! The result type the worker reported (mangled).
  const std::string& result_type() const { return result_type_; }
  const std::string& task() const { return task_; }
  std::string describe() const;

 private:
  // Applies one result element from the server (under mutex_). Returns whether it was new.
  void apply(const std::string& element);
  // Under mutex_: applies what a fetch brought, ends the fetch, wakes the waiters. Returns the
  // items done before and after (for the progress callback).
  std::pair<std::size_t, std::size_t> absorb(const std::vector<std::string>& got);
  // One read of the result list: blocks up to `until` (nullopt: no block). Called without mutex_.
  // Also reads the result lists of `companions` (claimed with claim_companions()), into
  // `theirs` (one list each, in the same order).
  std::vector<std::string> fetch(std::optional<Clock::time_point> until, bool block,
                                 const std::vector<std::shared_ptr<CallState>>& companions = {},
                                 std::vector<std::vector<std::string>>* theirs = nullptr);
  // Other unfinished calls of the pool that nobody reads at the moment and that have no
  // progress callback (it would run on this thread), claimed for this thread's next fetch (their
  // fetching_ set): a thread that waits for one result of many reads the others that are in with
  // the same command. Called without mutex_.
  std::vector<std::shared_ptr<CallState>> claim_companions();
  // Applies what the fetch brought each companion and ends their fetch (also after a failed
  // fetch: `theirs` empty).
  static void release_companions(const std::vector<std::shared_ptr<CallState>>& companions,
                                 const std::vector<std::vector<std::string>>& theirs) noexcept;
  void fail(std::exception_ptr e);  // under mutex_
  void complete();                  // under mutex_: finished_, unregister, notify

  std::shared_ptr<PoolCore> core_;
  std::string call_id_, task_;
  std::vector<std::size_t> offsets_;  // job j covers items [offsets_[j], offsets_[j + 1])
  Progress progress_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool fetching_ = false;  // a thread is reading the server for this call
  std::atomic<std::size_t> waiters_{0};  // threads inside wait_until
  bool finished_ = false;
  std::exception_ptr error_;
  std::vector<std::string> items_;
  std::string result_type_;
  std::vector<bool> job_done_;
  std::size_t items_done_ = 0;
  std::size_t jobs_done_ = 0;
  Clock::time_point next_reap_;
  std::string last_id_ = "0-0";  // the result stream read up to here (only the fetching thread)
  // The process that made the call. A forked child's copies of the parent's calls are never read
  // as its companions: completing them there deleted their keys on the server, and the parent's
  // get() then found its call expired (a review).
  const pid_t owner_;
};

// ---- callables ------------------------------------------------------------------------------

template <class F, class = void>
struct callable_traits;
template <class R, class... A>
struct callable_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};
template <class R, class... A>
struct callable_traits<R (*)(A...) noexcept> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const noexcept> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...)> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) noexcept> : callable_traits<R (*)(A...)> {};
template <class F>
struct callable_traits<F, std::enable_if_t<std::is_class_v<F>, std::void_t<decltype(&F::operator())>>>
    : callable_traits<decltype(&F::operator())> {};

template <class F, class = void>
struct has_fixed_signature : std::false_type {};
template <class F>
struct has_fixed_signature<F, std::void_t<typename callable_traits<F>::result>> : std::true_type {};

//! "(long, std::string) -> long" from mangled tuple and result type names.
std::string signature_text(const std::string& args_tuple, const std::string& result);

//! A task type-erased: decodes the arguments, calls, encodes the result.
struct TaskEntry {
  std::string name;
  std::string args_type;    // typeid(std::tuple<decayed params...>).name()
  std::string result_type;  // typeid(R).name(); "v" for void
  std::function<std::string(std::string_view args)> run;
};

template <class F>
TaskEntry make_task(std::string name, F f) {
  using Fn = std::decay_t<F>;
  static_assert(has_fixed_signature<Fn>::value,
                "redis::serve tasks need a fixed signature (a function pointer, a std::function, "
                "a non-generic lambda): the worker checks the argument types the caller sent");
  using Traits = callable_traits<Fn>;
  using R = typename Traits::result;
  using Args = typename Traits::args;
  static_assert(std::is_void_v<R> || has_codec_v<std::decay_t<R>>,
                "redis::serve: the task's result type needs a multiproc::Codec");
  TaskEntry t;
  t.name = std::move(name);
  t.args_type = typeid(Args).name();
  t.result_type = typeid(std::decay_t<R>).name();
  t.run = [fn = Fn(std::move(f))](std::string_view bytes) mutable -> std::string {
    Args args = from_bytes<Args>(bytes);
    if constexpr (std::is_void_v<R>) {
      std::apply(fn, std::move(args));
      return std::string();
    } else {
      return to_bytes<std::decay_t<R>>(std::apply(fn, std::move(args)));
    }
  };
  return t;
}

}  // namespace detail
}  // namespace multiproc::redis
