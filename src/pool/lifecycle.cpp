// The Pool handle and the callers' side of PoolCore: starting the pool, submitting calls and
// stream chunks, close, terminate, join (see pool_core.hpp for the whole).
#include "pool_core.hpp"

#include <algorithm>

namespace multiproc {
namespace detail {
namespace {

// Writes the task header into the room left in front of the payload.
void stamp(PoolTask& task, std::uint64_t job, std::size_t index) {
  std::string& msg = task.message;
  put_at<std::uint64_t>(msg, 0, job);
  put_at<std::uint32_t>(msg, 8, static_cast<std::uint32_t>(index));
  put_at<std::uint64_t>(msg, 12, reinterpret_cast<std::uintptr_t>(task.trampoline));
  put_at<std::uint64_t>(msg, 20, task.fn);
}

}  // namespace

PoolCore::PoolCore(int processes, std::function<void()> init, std::size_t maxtasks)
    : n_(processes), init_(std::move(init)), maxtasks_(maxtasks) {
  if (processes <= 0) {
    throw Error(errc::invalid_argument,
                "multiproc::Pool: the number of processes must be at least 1, not " +
                    std::to_string(processes));
  }
  manager_ = std::thread([this] { run(); });
  // Return once the workers exist (or report why they could not be started).
  std::unique_lock<std::mutex> lock(started_mutex_);
  started_cv_.wait(lock, [&] { return started_; });
  if (start_error_) {
    lock.unlock();
    manager_.join();
    std::rethrow_exception(start_error_);
  }
}

PoolCore::~PoolCore() {
  terminate();
  join();
}

void PoolCore::submit(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks,
                      std::function<void(std::size_t, std::size_t)> progress) {
  job->kind = JobKind::call;
  job->tasks = tasks.size();
  job->results.resize(tasks.size());
  job->progress = std::move(progress);
  {
    std::lock_guard<std::mutex> lock(m_);
    check_accepting();
    if (!tasks.empty()) {
      const std::uint64_t id = next_job_++;
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        stamp(tasks[i], id, i);
        pending_.push_back({job, i, std::move(tasks[i].message)});
      }
    }
  }
  if (tasks.empty()) {
    finish(job, nullptr);  // an empty input: the result is ready at once (callbacks run here)
    return;
  }
  kick();
}

void PoolCore::check_accepting() const {
  if (broken_) std::rethrow_exception(broken_);
  if (state_ != State::running) {
    throw Error(errc::bad_state, "multiproc::Pool: no new work after close() or terminate()");
  }
}

void PoolCore::open_stream() {
  std::lock_guard<std::mutex> lock(m_);
  check_accepting();
  ++open_streams_;
}

void PoolCore::extend(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks) {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (broken_) std::rethrow_exception(broken_);
    if (state_ == State::terminating || state_ == State::stopped) {
      throw Error(errc::bad_state,
                  "multiproc::Pool: the pool was terminated or joined before the stream read all "
                  "its input");
    }
    std::lock_guard<std::mutex> job_lock(job->mutex);
    for (PoolTask& t : tasks) {
      const std::size_t index = job->tasks++;
      stamp(t, 0, index);
      if (job->kind == JobKind::ordered_stream) job->results.emplace_back();
      pending_.push_back({job, index, std::move(t.message)});
    }
  }
  kick();
}

void PoolCore::end_stream_input() {
  {
    std::lock_guard<std::mutex> lock(m_);
    --open_streams_;
  }
  kick();
}

void PoolCore::cancel_stream(const std::shared_ptr<JobState>& job, bool open) {
  finish(job, std::make_exception_ptr(
                  Error(errc::bad_state, "multiproc::Pool: the stream was destroyed")));
  {
    std::lock_guard<std::mutex> lock(m_);
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                  [&](const Pending& p) { return p.job == job; }),
                   pending_.end());
    if (open) --open_streams_;
  }
  kick();
}

void PoolCore::close() {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::running) state_ = State::closing;
  }
  kick();
}

void PoolCore::terminate() {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::running || state_ == State::closing) state_ = State::terminating;
  }
  kick();
}

void PoolCore::join() {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::running) {
      throw Error(errc::bad_state, "multiproc::Pool: join() before close() or terminate()");
    }
    joining_ = true;  // open streams no longer keep a closed pool up
  }
  kick();
  std::lock_guard<std::mutex> lock(join_mutex_);
  if (!joined_) {
    manager_.join();
    joined_ = true;
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------

Pool::Pool(int processes, std::function<void()> initializer, std::size_t maxtasksperchild)
    : core_(std::make_shared<detail::PoolCore>(processes, std::move(initializer), maxtasksperchild)) {}

Pool::~Pool() {
  try {
    core_->terminate();
    core_->join();
  } catch (...) {
  }
}

void Pool::submit(const std::shared_ptr<detail::JobState>& job, std::vector<detail::PoolTask> tasks,
                  Progress progress) {
  core_->submit(job, std::move(tasks), std::move(progress));
}

void Pool::close() { core_->close(); }
void Pool::join() { core_->join(); }
void Pool::terminate() { core_->terminate(); }
std::size_t Pool::size() const noexcept { return core_->size(); }
std::vector<pid_t> Pool::worker_pids() const { return core_->pids(); }

}  // namespace multiproc
