// multiproc/redis/pool.hpp — a distributed Pool (Python's RQ, Celery): worker programs on any
// host serve named tasks; clients call them by name and get AsyncResults.
//
//   // worker program (any number of them, on any hosts):
//   long square(long x) { return x * x; }
//   int main() { mp::redis::serve("redis://10.0.0.5:6379/0", {{"square", &square}}); }
//
//   // client:
//   mp::redis::Pool pool("redis://10.0.0.5:6379/0");
//   long v = pool.apply<long>("square", 12L);                           // 144
//   mp::redis::AsyncResult<long> r = pool.apply_async<long>("square", 3L);
//   std::optional<long> s = r.get_for(2s);                              // nullopt at the deadline
//   std::vector<long> sq = pool.map<long>("square", inputs);            // in input order
//   long w = pool.apply_async("square", 5L).get().as<long>();          // untyped: redis::Result
//
// Tasks: any callable with a fixed signature (a function pointer, a std::function, a non-generic
// lambda), registered under a name (no blanks, at most 200 bytes). Arguments travel as a
// std::tuple of the decayed parameter types and the result as itself, both through Codec<T>
// (to_bytes / from_bytes), so the types must match EXACTLY: the worker compares the argument
// types the client sent (and the result type it asked for) with the task's, and a mismatch fails
// the call with Error(errc::type_mismatch) naming the task and both signatures — square(long)
// called with an int literal fails: write 3L. An untyped call (no <R>) returns a redis::Result
// whose as<T>() checks T against the type the worker reported. A task name no worker serves
// fails with Error(errc::not_found) naming it; a task that throws fails with RemoteError
// (type() and remote_message() are the worker's); the worker carries on. So does it when the
// server refuses to store a result (larger than its proto-max-bulk-len, or past its maxmemory):
// that call fails with Error(errc::server_error) quoting the server. A job whose bytes cannot
// be read fails its call with Error(errc::corrupt). All workers of a pool are expected to serve
// the same tasks.
//
// Workers: serve() runs until stop_serving() (async-signal-safe: call it from a SIGTERM handler),
// ServeOptions::stop, ServeOptions::max_tasks or Pool::shutdown_workers(); it then finishes the
// tasks in hand, stores their results, and returns. Each worker (each of `concurrency` threads)
// holds a lease of ServeOptions::lease on the server's clock, renewed every `heartbeat` by the
// process's renewal thread (also while a task runs). A job is one apply or one chunk of a map.
// While its jobs are short (under a millisecond each) a worker takes up to `prefetch` of them per
// round trip (never more than its fair share of the queue), otherwise one at a time, so that a
// long job never waits behind another while a worker idles. An idle worker blocks on the server
// (BLMOVE), it does not poll.
//
// Clients: apply_async sends one job in one round trip; map cuts its inputs into chunks and
// sends all of them in one pipeline; either returns once its jobs are on the server. Results
// are appended to a stream of the call's own (XADD) that the waiting client reads from where it
// left off (XREAD BLOCK: no polling, several per round trip, and nothing lost when a reply is
// lost to a broken connection: the next read starts at the same place). Every wait has a timed
// form (get_for, wait_for); get() and wait() wait as long as it takes — if no worker is alive,
// until one is started (as RQ). While waiting, the client also reaps dead workers (expired
// leases), so a dead worker's task is retried or failed even when no other worker is alive to
// notice.
//
// What survives what (at-least-once):
//   - a worker killed while idle: nothing is lost; its lease expires and it is forgotten.
//   - a worker killed mid-task (SIGKILL, host gone): the jobs it held return to the front of the
//     queue when its lease expires — each at most PoolOptions::max_retries times (the count is
//     kept in the job, on the server) — then the call fails with BrokenPool naming the task and
//     the tries. max_retries = 0: it fails at once (after the lease).
//   - a worker that dies (or stalls past its lease) after running a task but before its result
//     was stored: the task runs again — a task may run more than once; the client keeps the first
//     result of each job and drops repeats, so results are never doubled.
//   - a client killed: the jobs it queued still run while its call is alive on the server, i.e.
//     for PoolOptions::result_ttl after its last renewal (a live client renews its pending calls
//     every result_ttl / 3); then its results and call expire (PEXPIRE), and workers drop its
//     queued jobs without running them when they reach them. Nothing it made lives forever,
//     except queued jobs while no worker ever runs (they sit in the queue until one does).
//   - the server restarted with AOF (appendfsync always): queued and in-flight jobs, leases and
//     stored results survive; clients and workers reconnect (Client's reconnect_for); a job whose
//     result was being stored at the restart may run again (see above). Without persistence, a
//     restart loses everything: a waiting call then fails with BrokenPool ("the call expired on
//     the server") within a reap_interval.
//   - the server stopped (SIGSTOP) or unreachable: get_for / wait_for honour their deadlines;
//     get() throws Error(errc::disconnected) after the Client's reconnect_for.
#pragma once

#include <multiproc/error.hpp>
#include <multiproc/redis/client.hpp>
#include <multiproc/redis/detail/pool_call.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace multiproc::redis {

//! The result of an untyped call: the encoded value and the type the worker reported.
class Result {
 public:
  Result() = default;
  Result(std::string bytes, std::string type) : bytes_(std::move(bytes)), type_(std::move(type)) {}
  //! Returns: the value as a T. Throws: Error(errc::type_mismatch) naming both types when the
  //! task returned another type; Error(errc::corrupt) if the bytes are not a T.
  template <class T>
  T as() const {
    check(typeid(T).name());
    return from_bytes<T>(bytes_);
  }
  const std::string& bytes() const noexcept { return bytes_; }
  //! The worker's result type, demangled ("long").
  std::string type_name() const;

 private:
  void check(const char* wanted) const;
  std::string bytes_, type_;
};

//! The outcome of Pool::apply_async / map_async. Copies share the call; any thread may wait.
template <class R>
class AsyncResult {
 public:
  using value_type = R;

  //! Returns: the result, waiting as long as it takes. Throws: RemoteError (the task threw),
  //! BrokenPool (workers died running it max_retries + 1 times, or the call expired),
  //! Error(errc::type_mismatch) / Error(errc::not_found) (wrong types, unknown task),
  //! Error(errc::disconnected) (the server unreachable for the Client's reconnect_for).
  R get() const {
    state_->wait_until(std::nullopt);
    return value();
  }
  //! Returns: the result if the call finishes within `timeout` (void: true), else nullopt
  //! (void: false) — the timeout is no exception. Throws: as get(), if it failed in time.
  template <class Rep, class Period>
  auto get_for(const std::chrono::duration<Rep, Period>& timeout) const {
    const bool done = state_->wait_until(deadline_after(timeout));
    if constexpr (std::is_void_v<R>) {
      if (done) value();
      return done;
    } else {
      return done ? std::optional<R>(value()) : std::optional<R>();
    }
  }
  void wait() const { state_->wait_until(std::nullopt); }
  //! Returns: whether the call finished (successfully or not) within `timeout`.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return state_->wait_until(deadline_after(timeout));
  }
  //! Returns: whether the call finished. Reads what has arrived without waiting for more (one
  //! round trip: up to Options::command_timeout if the server does not answer).
  bool ready() const { return state_->poll(); }
  //! Returns: whether it succeeded. Throws: Error(errc::bad_state) before it is ready.
  bool successful() const {
    if (!ready()) {
      throw Error(errc::bad_state, state_->describe() + ": successful() before the call is ready");
    }
    try {
      state_->rethrow();
    } catch (...) {
      return false;
    }
    return true;
  }
  //! Returns: {items done, items in all} (a map's progress; 0 or 1 of 1 for an apply), after
  //! reading what has arrived, as ready() does.
  std::pair<std::size_t, std::size_t> progress() const {
    state_->poll();
    return state_->progress();
  }

 private:
  friend class Pool;
  using Decode = R (*)(const detail::CallState&);
  AsyncResult(std::shared_ptr<detail::CallState> s, Decode d) : state_(std::move(s)), decode_(d) {}
  template <class Rep, class Period>
  static Clock::time_point deadline_after(const std::chrono::duration<Rep, Period>& d) {
    const auto now = Clock::now();
    if (d <= d.zero()) return now;
    if (std::chrono::duration<double>(d).count() > 3.0e8) return now + std::chrono::hours(24 * 365 * 10);
    return now + std::chrono::duration_cast<Clock::duration>(d);
  }
  R value() const {
    state_->rethrow();
    return decode_(*state_);
  }
  std::shared_ptr<detail::CallState> state_;
  Decode decode_;
};

struct PoolOptions {
  std::string name = "default";  //!< the queue's namespace: keys mp:pool:<name>:...
  //! How often a job whose worker died is run again before the call fails with BrokenPool.
  int max_retries = 2;
  //! How long results and pending calls of a client that stopped renewing them (a dead one)
  //! stay on the server. A live client renews its pending calls every result_ttl / 3.
  std::chrono::milliseconds result_ttl{600000};
  //! How often a waiting client looks for dead workers (expired leases) and reaps them.
  std::chrono::milliseconds reap_interval{500};
  Options connection;  //!< the Client's timeouts
};

//! A client of the workers serving the pool `options.name` on the server at `url`. Thread-safe;
//! a forked child may use a Pool it inherited (it then renews the calls it makes itself).
class Pool {
 public:
  using Progress = std::function<void(std::size_t done, std::size_t total)>;

  //! Effects: parses the url (connects lazily). Throws: Error(errc::invalid_argument) for a
  //! malformed url, a bad name, max_retries < 0 or a result_ttl under 10 ms.
  explicit Pool(std::string_view url, PoolOptions options = {});
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  //! Returns: an AsyncResult for task(args...), run by some worker. R = Result (the default):
  //! untyped. Throws: Error(errc::invalid_argument) for a bad task name;
  //! Error(errc::disconnected) if the job cannot be sent.
  template <class R = Result, class... Args>
  AsyncResult<R> apply_async(const std::string& task, const Args&... args) {
    using Tuple = std::tuple<std::decay_t<Args>...>;
    std::vector<std::string> items{to_bytes(Tuple(args...))};
    return AsyncResult<R>(submit(task, typeid(Tuple).name(), result_type_of<R>(), items, 1, {}),
                          &decode_one<R>);
  }
  //! Returns: task(args...), waiting for it (get()).
  template <class R = Result, class... Args>
  R apply(const std::string& task, const Args&... args) {
    return apply_async<R>(task, args...).get();
  }

  //! Returns: an AsyncResult for [task(x) for x in inputs], in input order. Sends all the chunks
  //! in one pipeline. chunksize 0: Python's default, inputs / (4 x live workers), rounded up.
  //! `progress(done, total)` runs on the thread that waits (get, wait, ready, progress...) each
  //! time a chunk's results arrive; the last call has done == total.
  template <class R = Result, class Range>
  AsyncResult<std::vector<R>> map_async(const std::string& task, const Range& inputs,
                                        std::size_t chunksize = 0, Progress progress = {}) {
    using T = std::decay_t<decltype(*std::begin(inputs))>;
    using Tuple = std::tuple<T>;
    std::vector<std::string> items;
    for (const auto& x : inputs) items.push_back(to_bytes(Tuple(x)));
    return AsyncResult<std::vector<R>>(
        submit(task, typeid(Tuple).name(), result_type_of<R>(), items, chunksize,
               std::move(progress)),
        &decode_all<R>);
  }
  //! Returns: [task(x) for x in inputs], in input order (map_async(...).get()).
  template <class R = Result, class Range>
  std::vector<R> map(const std::string& task, const Range& inputs, std::size_t chunksize = 0,
                     Progress progress = {}) {
    return map_async<R>(task, inputs, chunksize, std::move(progress)).get();
  }

  //! Returns: the workers with a live lease now (a snapshot).
  std::size_t workers() const;
  //! Returns: the jobs waiting in the queue now (a snapshot; a map chunk is one job).
  std::size_t queued() const;
  //! Effects: asks every worker serving this pool now to return from serve() after the jobs in
  //! hand (within one ServeOptions::idle_wait when idle). Workers started later are not affected.
  void shutdown_workers();

  const std::string& name() const noexcept;
  const Client& client() const noexcept;

 private:
  std::shared_ptr<detail::CallState> submit(const std::string& task, const char* args_type,
                                            const char* result_type,
                                            const std::vector<std::string>& items,
                                            std::size_t chunksize, Progress progress);
  template <class R>
  static const char* result_type_of() {
    if constexpr (std::is_same_v<R, Result>) {
      return detail::any_result_type();
    } else {
      return typeid(R).name();
    }
  }
  template <class R>
  static R decode_item(const detail::CallState& s, const std::string& bytes) {
    if constexpr (std::is_same_v<R, Result>) {
      return Result(bytes, s.result_type());
    } else {
      return from_bytes<R>(bytes);
    }
  }
  template <class R>
  static R decode_one(const detail::CallState& s) {
    if constexpr (!std::is_void_v<R>) return decode_item<R>(s, s.items().at(0));
  }
  template <class R>
  static std::vector<R> decode_all(const detail::CallState& s) {
    std::vector<R> out;
    out.reserve(s.items().size());
    for (const auto& b : s.items()) out.push_back(decode_item<R>(s, b));
    return out;
  }

  std::shared_ptr<detail::PoolCore> core_;
};

struct ServeOptions {
  std::string name = "default";  //!< the pool to serve (PoolOptions::name)
  int concurrency = 1;           //!< worker threads in this serve() call (tasks must be thread-safe if > 1)
  std::chrono::milliseconds lease{5000};     //!< a worker silent this long is dead
  std::chrono::milliseconds heartbeat{0};    //!< 0: lease / 3
  std::chrono::milliseconds idle_wait{500};  //!< an idle worker's blocking wait, per round
  std::size_t prefetch = 16;                 //!< short jobs taken per round trip at most
  std::size_t max_tasks = 0;                 //!< return after this many jobs (0: no limit)
  const std::atomic<bool>* stop = nullptr;   //!< return once *stop is true
  Options connection;                        //!< the Client's timeouts
};

//! A task to serve: a name and a callable with a fixed signature.
class Task {
 public:
  template <class F>
  Task(std::string name, F f) : entry_(detail::make_task(std::move(name), std::move(f))) {}
  const detail::TaskEntry& entry() const noexcept { return entry_; }

 private:
  detail::TaskEntry entry_;
};

//! Effects: serves `tasks` to the clients of the pool `options.name` until asked to stop (see
//! the header comment); a server that goes away is waited for (reconnecting with backoff).
//! Returns: the number of jobs this call ran. Throws: Error(errc::invalid_argument) for a bad
//! task name, a duplicate one, or bad options; Error(errc::server_error) if the server refuses
//! (a wrong password), also once it has refused a take with every result it carried replaced by
//! a short refusal.
std::size_t serve(std::string_view url, const std::vector<Task>& tasks, ServeOptions options = {});

//! Effects: makes every serve() of this process return (those running, after the jobs in hand
//! and within one idle_wait, and those called later, at once). Async-signal-safe: one atomic
//! store — call it from a SIGTERM / SIGINT handler.
void stop_serving() noexcept;

}  // namespace multiproc::redis
