// Completing a Pool call: replies delivered to their job, errors, callbacks, and the waits of
// AsyncResult (see pool_core.hpp for the whole).
#include "pool_core.hpp"

#include <multiproc/wait.hpp>

#include "../os.hpp"

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <typeinfo>

namespace multiproc::detail {

// The error a failed reply stands for.
std::exception_ptr reply_error(std::string_view reply) {
  const std::string body(reply.substr(kResultHeader));
  if (reply[kStatusAt] == kStatusBroken) return std::make_exception_ptr(BrokenPool(body));
  const std::size_t nul = body.find('\0');
  const std::string type = body.substr(0, nul);
  const std::string what = nul == std::string::npos ? std::string() : body.substr(nul + 1);
  return std::make_exception_ptr(RemoteError(type, what));
}

void populate(void* p, std::size_t bytes) noexcept {
#ifdef MADV_POPULATE_WRITE
  constexpr int kPopulateWrite = MADV_POPULATE_WRITE;
#else
  constexpr int kPopulateWrite = 23;  // Linux 5.14; older kernels say EINVAL, which is fine
#endif
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + page - 1) & ~(page - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + bytes) & ~(page - 1);
  if (end > begin && end - begin >= 16 * page) {  // small ones: not worth a system call
    (void)::madvise(reinterpret_cast<void*>(begin), end - begin, kPopulateWrite);
  }
}

std::string BufferCache::take(std::size_t bytes) {
  std::string s;
  if (bytes >= kSmallest) {
    std::lock_guard<std::mutex> lock(m_);
    // The smallest kept buffer that is large enough.
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->capacity() >= bytes && (best == free_.end() || it->capacity() < best->capacity())) {
        best = it;
      }
    }
    if (best != free_.end()) {
      std::swap(*best, free_.back());
      s = std::move(free_.back());
      free_.pop_back();
      bytes_ -= s.capacity();
    }
  }
  s.resize(bytes);
  return s;
}

void BufferCache::give(std::string&& s) noexcept {
  const std::size_t cap = s.capacity();
  if (cap < kSmallest) return;
  std::string kept = std::move(s);  // freed here, outside the lock, if not kept
  try {
    std::lock_guard<std::mutex> lock(m_);
    if (bytes_ + cap > kCachedBytes) return;
    free_.push_back(std::move(kept));
    bytes_ += cap;
  } catch (...) {  // no memory to keep it: it is freed
  }
}

std::size_t default_chunksize(std::size_t items, std::size_t workers) noexcept {
  if (items == 0) return 1;
  const std::size_t per = workers * 4;
  std::size_t chunk = items / per;
  if (items % per != 0) ++chunk;
  return chunk == 0 ? 1 : chunk;
}

namespace {
bool job_finished(JobState& job) {
  std::lock_guard<std::mutex> lock(job.mutex);
  return job.finished;
}
}  // namespace

void check_job_owner(const JobState& job) {
  if (job.owner == current_pid()) return;
  throw Error(errc::bad_state, "multiproc::Pool: a result waited for in process " +
                                   std::to_string(current_pid()) + ", but its call was made in process " +
                                   std::to_string(job.owner) +
                                   " (a forked child's copy of a result is never filled: wait in "
                                   "the process that made the call)");
}

bool wait_job(JobState& job, const Clock::time_point* deadline) {
  if (!job_finished(job)) {
    check_job_owner(job);
    if (const std::shared_ptr<PoolCore> core = job.direct_pool.lock()) {
      core->collect_direct(job, deadline, false);
    }
  }
  std::unique_lock<std::mutex> lock(job.mutex);
  if (deadline == nullptr) {
    job.cv.wait(lock, [&] { return job.finished; });
    return true;
  }
  return job.cv.wait_until(lock, *deadline, [&] { return job.finished; });
}

bool job_ready(JobState& job) {
  if (job_finished(job)) return true;
  check_job_owner(job);
  if (const std::shared_ptr<PoolCore> core = job.direct_pool.lock()) {
    core->collect_direct(job, nullptr, true);
  }
  return job_finished(job);
}

void size_placed_result(JobState& job) noexcept {
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    if (!job.size_placed || job.sizing != 0 || job.completing) return;
    job.sizing = 1;
  }
  bool sized = true;
  try {
    job.size_placed();
  } catch (...) {  // no memory: place() tries again, and fails the call with the error
    sized = false;
  }
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    job.sizing = sized ? 2 : 0;
  }
  job.cv.notify_all();
}

void PoolCore::hand_over(JobState& job) {
  job.handover.store(true, std::memory_order_relaxed);  // the kick orders it (pool_job.hpp)
  kick();
}

namespace {
// Several workers run a call's tasks: more threads than this machine may have CPUs for (two
// workers and this caller on two CPUs), so spinning on one worker's pipe (as poll() does) could
// keep another from the CPU it needs to answer — a map of two tiny tasks on Pool(2) took 90 us
// that way, against 12 us for three. So look at every pipe and yield between the looks, for a
// bounded time: a yield with nobody else to run returns at once. Returns whether one is ready.
bool yield_for_any(const std::vector<std::shared_ptr<Connection>>& conns) {
  const auto until = Clock::now() + kDirectYieldSpin;
  do {
    for (const auto& c : conns) {
      if (c->poll()) return true;
    }
    ::sched_yield();
  } while (Clock::now() < until);
  return false;
}
}  // namespace

std::vector<PoolCore::Worker*> PoolCore::direct_workers(const JobState& job) {
  std::vector<Worker*> found;
  for (Worker& w : workers_) {
    if (w.direct && !w.outstanding.empty() && w.outstanding.front().job.get() == &job) {
      found.push_back(&w);
    }
  }
  return found;
}

void PoolCore::collect_direct(JobState& job, const Clock::time_point* deadline, bool once) {
  if (t_io_holder != nullptr) {  // a callback (of this pool or another): it must not wait here
    hand_over(job);
    return;
  }
  for (;;) {
    std::vector<std::shared_ptr<Connection>> conns;
    {
      // Blocking: the manager holds io_ only while it is awake (never while it waits for us).
      std::lock_guard<std::mutex> io(io_);
      const IoHolder holder(this);
      try {
        bool gone = false;
        for (Worker* w : direct_workers(job)) {
          if (!w->conn->poll()) continue;
          read_results(*w);
          // Still waiting for this call, yet the pipe has more to say: it said EOF, the worker
          // died. The manager accounts for it.
          if (w->direct && !w->outstanding.empty() && w->outstanding.front().job.get() == &job &&
              w->conn->poll()) {
            gone = true;
          }
        }
        top_up_direct(job);  // the next of its tasks to the workers that answered
        const std::vector<Worker*> waiting = direct_workers(job);
        if (waiting.empty()) {
          // Answered, or its workers are gone or busy with other calls: the manager's now.
          queue_backlog(&job);
          return;
        }
        if (gone || once || (deadline != nullptr && Clock::now() >= *deadline)) {
          queue_backlog(&job);
          hand_over(job);  // no one waits for it any more: the manager reads it
          return;
        }
        // Kept alive while this thread waits on them, should a worker go.
        for (Worker* w : waiting) conns.push_back(w->conn);
      } catch (...) {
        // No memory, or a reply its pipe could not give (a scribbled ring): the call fails here
        // with that error (get() throws it) instead of being left with nobody to finish it, and
        // its backlog — which may borrow map()'s input, freed once map() returns — is dropped.
        finish(job, std::current_exception());
        backlogs_.erase(std::remove_if(backlogs_.begin(), backlogs_.end(),
                                       [&](const Backlog& b) { return b.job.get() == &job; }),
                        backlogs_.end());
        hand_over(job);  // its tasks still out: the manager reads (and drops) their replies
        return;
      }
    }
    // Until a worker writes (a reply, or EOF when it dies) — or kDirectRecheck passes: the
    // manager may have read the replies meanwhile (it took the call over), or a worker may be gone.
    const auto until = std::min(Clock::now() + kDirectRecheck,
                                deadline != nullptr ? *deadline : Clock::time_point::max());
    try {
      if (conns.size() == 1) {
        conns.front()->poll(until - Clock::now());  // spins briefly, then sleeps
        continue;
      }
      if (yield_for_any(conns)) continue;
      std::vector<Waitable> objects;
      for (const auto& c : conns) objects.emplace_back(*c);
      (void)wait(objects, std::max(until - Clock::now(), Clock::duration::zero()));
    } catch (const Error& e) {
      // The pool closed meanwhile: the manager read this call's last replies, then closed the
      // workers' pipes (close() and join(), or the executor's shutdown). Look again under io_.
      if (e.code() != errc::closed) throw;
    }
  }
}

void PoolCore::top_up_direct(JobState& job) {
  const auto it = std::find_if(backlogs_.begin(), backlogs_.end(),
                               [&](const Backlog& b) { return b.job.get() == &job; });
  if (it == backlogs_.end()) return;
  {
    std::lock_guard<std::mutex> job_lock(job.mutex);
    if (job.completing) {  // failed already: its borrowed input is never read again
      backlogs_.erase(it);
      return;
    }
  }
  std::deque<Pending>& tasks = it->tasks;
  bool failed = false;
  // One to each worker with room first, then a second: a call of two tasks runs on two workers.
  for (std::size_t depth = 1; depth <= kDirectTasksPerWorker && !failed; ++depth) {
    for (Worker& w : workers_) {
      if (tasks.empty()) break;
      if (!w.ready || w.outstanding.size() >= depth || (maxtasks_ != 0 && w.sent >= maxtasks_) ||
          !sendable(w)) {
        continue;
      }
      Pending& next = tasks.front();
      // A busy worker takes only more of this call, and only while what it has outstanding stays
      // under a quarter of its ring: so that a send never waits for room (dispatch() says why).
      if (!w.outstanding.empty() &&
          (!w.direct || w.outstanding.front().job.get() != &job ||
           w.outstanding_bytes + ring_share(next.bytes()) >= kWorkerRing / 4)) {
        continue;
      }
      if (!send_to(w, next)) {  // the worker is gone: the manager replaces it and sends the rest
        failed = true;
        break;
      }
      w.direct = true;
      tasks.pop_front();
    }
  }
  if (tasks.empty()) {
    backlogs_.erase(it);
  } else if (failed) {
    queue_backlog(&job);
  }
}

void PoolCore::queue_backlog(const JobState* job) {
  bool moved = false;
  {
    std::lock_guard<std::mutex> lock(m_);
    for (auto it = backlogs_.begin(); it != backlogs_.end();) {
      if (job != nullptr && it->job.get() != job) {
        ++it;
        continue;
      }
      for (auto t = it->tasks.rbegin(); t != it->tasks.rend(); ++t) pending_.push_front(std::move(*t));
      it = backlogs_.erase(it);
      moved = true;
    }
  }
  if (moved) kick();
}

void rethrow_job_error(JobState& job) {
  std::lock_guard<std::mutex> lock(job.mutex);
  if (job.error) std::rethrow_exception(job.error);
}

void on_job_finish(const std::shared_ptr<JobState>& job, std::function<void(JobState&)> fn) {
  bool added = false;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!job->completing) {
      job->on_finish.push_back(std::move(fn));
      added = true;
    }
  }
  if (!added) {
    fn(*job);  // the outcome is known already: run here
    return;
  }
  // A call sent straight to a worker: its callbacks are the manager's to run, so the manager
  // reads the reply (no one may wait for it here).
  if (const std::shared_ptr<PoolCore> core = job->direct_pool.lock()) core->hand_over(*job);
}

void PoolCore::finish(const std::shared_ptr<JobState>& job, std::exception_ptr error) {
  finish(*job, std::move(error));
}

void PoolCore::finish(JobState& job, std::exception_ptr error) {
  // As in Python, the callbacks run before the result is ready: get() returns after them.
  std::vector<std::function<void(JobState&)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    if (job.completing) return;
    job.completing = true;
    job.error = error;
    callbacks.swap(job.on_finish);
  }
  if (error) job.cv.notify_all();  // stream readers stop at once
  run_callbacks(job, callbacks);
  std::vector<std::pair<std::uint64_t, std::function<void()>>> hooks;
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    job.finished = true;
    hooks.swap(job.on_done);  // empty but for executor futures
    job.started = nullptr;    // lets go of the worker's word
  }
  job.cv.notify_all();
  for (auto& hook : hooks) run_done_hook(hook.second);
}

void PoolCore::run_done_hook(const std::function<void()>& fn) noexcept {
  try {
    fn();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "multiproc::Future: a done-callback threw %s: %s\n",
                 demangle(typeid(e).name()).c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "multiproc::Future: a done-callback threw\n");
  }
}

std::uint64_t add_done_hook(JobState& job, std::function<void()> fn) {
  std::uint64_t token = 0;
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    if (!job.finished) {
      token = job.next_hook++;
      job.on_done.emplace_back(token, std::move(fn));
    }
  }
  if (token == 0) {
    PoolCore::run_done_hook(fn);  // finished already: run here
    return 0;
  }
  // A future sent straight to a worker: no one may wait for it, so the manager reads the reply
  // (and runs the hook when it finishes the call), as for a Pool call's callbacks.
  if (const std::shared_ptr<PoolCore> core = job.direct_pool.lock()) core->hand_over(job);
  return token;
}

void remove_done_hook(JobState& job, std::uint64_t token) noexcept {
  if (token == 0) return;
  std::lock_guard<std::mutex> lock(job.mutex);
  for (auto it = job.on_done.begin(); it != job.on_done.end(); ++it) {
    if (it->first == token) {
      job.on_done.erase(it);
      return;
    }
  }
}

bool job_running(JobState& job) {
  // A call its caller deals out finishes only when someone reads its replies: a loop polling
  // running() must see it end.
  if (job_ready(job)) return false;
  std::lock_guard<std::mutex> lock(job.mutex);
  return !job.completing && job.started && job.started();
}

Error as_result_error(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    return err;
  } catch (const std::exception& other) {
    return Error(errc::corrupt, "multiproc::Pool: the result could not be decoded: " +
                                    demangle(typeid(other).name()) + ": " + other.what());
  } catch (...) {
    return Error(errc::corrupt, "multiproc::Pool: the result could not be decoded");
  }
}

void PoolCore::run_callbacks(JobState& job, std::vector<std::function<void(JobState&)>>& callbacks) {
  for (auto& cb : callbacks) {
    try {
      cb(job);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "multiproc::Pool: a result callback threw %s: %s\n",
                   demangle(typeid(e).name()).c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "multiproc::Pool: a result callback threw\n");
    }
  }
}

void PoolCore::deliver(const std::shared_ptr<JobState>& job, std::size_t index,
                       std::string_view reply) {
  JobState& j = *job;
  if (j.kind != JobKind::call) {
    // A stream takes every reply, errors included, at its place: in a buffer that the stream's
    // reader gives back when it is done with it (StreamState::next). A fresh one per reply paid
    // a page fault per 4 KiB whenever glibc had trimmed its heap meanwhile — the freed reply
    // before it was at the top: a third of ProcessPoolExecutor::map's time on a VM where a fault
    // costs 10 us (AMD EPYC).
    std::string copy = buffers_.take(reply.size());
    if (!reply.empty()) std::memcpy(copy.data(), reply.data(), reply.size());
    {
      std::lock_guard<std::mutex> lock(j.mutex);
      if (j.completing) return;  // destroyed or failed as a whole
      if (j.kind == JobKind::ordered_stream) {
        j.results[index - j.first] = std::move(copy);
      } else {
        j.arrived.push_back(std::move(copy));
      }
      ++j.done;
    }
    j.cv.notify_all();
    return;
  }
  if (reply[kStatusAt] != kStatusOk) {
    finish(job, reply_error(reply));
    return;
  }
  std::size_t done = 0;
  bool complete = false;
  std::exception_ptr bad;
  {
    std::unique_lock<std::mutex> lock(j.mutex);
    if (j.completing) return;  // the call already failed
    if (j.place) {  // a map of plain values: straight into the result
      // Its caller may be sizing the result (size_placed_result): wait for that, not long (the
      // caller runs; it is in map()); else place() sizes it.
      j.cv.wait(lock, [&] { return j.sizing != 1; });
      j.sizing = 2;
      bad = j.place(index, reply.data() + kResultHeader, reply.size() - kResultHeader);
    } else {
      j.results[index] = std::string(reply);  // decoded later, past the header
    }
    done = ++j.done;
    complete = done == j.tasks;
  }
  if (bad) {
    finish(job, bad);
    return;
  }
  j.cv.notify_all();
  if (j.progress) {
    try {
      j.progress(done, j.tasks);
    } catch (const std::exception& e) {  // said, as a result callback's is (it was dropped silently)
      std::fprintf(stderr, "multiproc::Pool: a progress callback threw %s: %s\n",
                   demangle(typeid(e).name()).c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "multiproc::Pool: a progress callback threw\n");
    }
  }
  if (complete) finish(job, nullptr);
}

}  // namespace multiproc::detail
