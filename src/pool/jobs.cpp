// Completing a Pool call: replies delivered to their job, errors, callbacks, and the waits of
// AsyncResult (see pool_core.hpp for the whole).
#include "pool_core.hpp"

#include "../os.hpp"

#include <cstdio>
#include <typeinfo>

namespace multiproc::detail {

// The error a failed reply stands for.
std::exception_ptr reply_error(const std::string& reply) {
  const std::string body = reply.substr(kResultHeader);
  if (reply[kStatusAt] == kStatusBroken) return std::make_exception_ptr(BrokenPool(body));
  const std::size_t nul = body.find('\0');
  const std::string type = body.substr(0, nul);
  const std::string what = nul == std::string::npos ? std::string() : body.substr(nul + 1);
  return std::make_exception_ptr(RemoteError(type, what));
}

std::size_t default_chunksize(std::size_t items, std::size_t workers) noexcept {
  if (items == 0) return 1;
  const std::size_t per = workers * 4;
  std::size_t chunk = items / per;
  if (items % per != 0) ++chunk;
  return chunk == 0 ? 1 : chunk;
}

bool wait_job(JobState& job, const Clock::time_point* deadline) {
  std::unique_lock<std::mutex> lock(job.mutex);
  if (deadline == nullptr) {
    job.cv.wait(lock, [&] { return job.finished; });
    return true;
  }
  return job.cv.wait_until(lock, *deadline, [&] { return job.finished; });
}

void rethrow_job_error(JobState& job) {
  std::lock_guard<std::mutex> lock(job.mutex);
  if (job.error) std::rethrow_exception(job.error);
}

void on_job_finish(const std::shared_ptr<JobState>& job, std::function<void(JobState&)> fn) {
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!job->completing) {
      job->on_finish.push_back(std::move(fn));
      return;
    }
  }
  fn(*job);  // the outcome is known already: run here
}

void PoolCore::finish(const std::shared_ptr<JobState>& job, std::exception_ptr error) {
  // As in Python, the callbacks run before the result is ready: get() returns after them.
  std::vector<std::function<void(JobState&)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (job->completing) return;
    job->completing = true;
    job->error = error;
    callbacks.swap(job->on_finish);
  }
  if (error) job->cv.notify_all();  // stream readers stop at once
  run_callbacks(*job, callbacks);
  std::vector<std::pair<std::uint64_t, std::function<void()>>> hooks;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    job->finished = true;
    hooks.swap(job->on_done);  // empty but for executor futures
    job->started = nullptr;    // lets go of the worker's word
  }
  job->cv.notify_all();
  for (auto& hook : hooks) {
    try {
      hook.second();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "multiproc::Future: a done-callback threw %s: %s\n",
                   demangle(typeid(e).name()).c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "multiproc::Future: a done-callback threw\n");
    }
  }
}

std::uint64_t add_done_hook(JobState& job, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    if (!job.finished) {
      const std::uint64_t token = job.next_hook++;
      job.on_done.emplace_back(token, std::move(fn));
      return token;
    }
  }
  fn();  // finished already: run here
  return 0;
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
  std::lock_guard<std::mutex> lock(job.mutex);
  return !job.completing && job.started && job.started();
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

void PoolCore::deliver(const std::shared_ptr<JobState>& job, std::size_t index, std::string& reply) {
  JobState& j = *job;
  if (j.kind != JobKind::call) {
    // A stream takes every reply, errors included, at its place.
    {
      std::lock_guard<std::mutex> lock(j.mutex);
      if (j.completing) return;  // destroyed or failed as a whole
      if (j.kind == JobKind::ordered_stream) {
        j.results[index - j.first] = std::move(reply);
      } else {
        j.arrived.push_back(std::move(reply));
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
  {
    std::lock_guard<std::mutex> lock(j.mutex);
    if (j.completing) return;  // the call already failed
    j.results[index] = std::move(reply);  // decoded later, past the header
    done = ++j.done;
    complete = done == j.tasks;
  }
  j.cv.notify_all();
  if (j.progress) {
    try {
      j.progress(done, j.tasks);
    } catch (...) {
    }
  }
  if (complete) finish(job, nullptr);
}

}  // namespace multiproc::detail
