// ProcessPoolExecutor's non-template side: shutdown, and the waits over many futures
// (as_completed, wait) through done hooks on their jobs (see executor.hpp; the pool itself in
// pool_core.hpp).
#include "pool_core.hpp"

#include <multiproc/executor.hpp>

#include <condition_variable>
#include <deque>

namespace multiproc {
namespace detail {

// What the done hooks of one waiter share with it: the indices of the jobs that finished.
struct CompletionWaiter::Shared {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::size_t> ready;  // finished, not returned yet
};

CompletionWaiter::CompletionWaiter(std::vector<std::shared_ptr<JobState>> jobs)
    : shared_(std::make_shared<Shared>()), jobs_(std::move(jobs)) {
  for (const auto& job : jobs_) {  // before any hook is added; a finished one is read anywhere
    bool finished;
    {
      std::lock_guard<std::mutex> lock(job->mutex);
      finished = job->finished;
    }
    if (!finished) check_job_owner(*job);
  }
  tokens_.reserve(jobs_.size());
  for (std::size_t i = 0; i < jobs_.size(); ++i) {
    // A job finished already runs the hook here: it is queued at once, in the given order.
    tokens_.push_back(add_done_hook(*jobs_[i], [shared = shared_, i] {
      {
        std::lock_guard<std::mutex> lock(shared->mutex);
        shared->ready.push_back(i);
      }
      shared->cv.notify_all();
    }));
  }
}

CompletionWaiter::~CompletionWaiter() {
  // A hook that runs meanwhile only touches shared_, which it keeps alive.
  for (std::size_t i = 0; i < jobs_.size(); ++i) remove_done_hook(*jobs_[i], tokens_[i]);
}

std::optional<std::size_t> CompletionWaiter::next(const Clock::time_point* deadline) {
  if (taken_ == jobs_.size()) return std::nullopt;
  std::unique_lock<std::mutex> lock(shared_->mutex);
  const auto any = [&] { return !shared_->ready.empty(); };
  if (deadline == nullptr) {
    shared_->cv.wait(lock, any);
  } else if (!shared_->cv.wait_until(lock, *deadline, any)) {
    return std::nullopt;
  }
  const std::size_t i = shared_->ready.front();
  shared_->ready.pop_front();
  tokens_[i] = 0;  // ran: nothing to remove
  ++taken_;
  return i;
}

std::vector<bool> wait_jobs(std::vector<std::shared_ptr<JobState>> jobs, ReturnWhen when,
                            const Clock::time_point* deadline) {
  std::vector<bool> done(jobs.size(), false);
  std::vector<std::shared_ptr<JobState>> kept = jobs;  // the waiter takes its own copy
  CompletionWaiter waiter(std::move(jobs));
  bool stop = kept.empty();
  while (!stop) {
    const std::optional<std::size_t> i = waiter.next(deadline);
    if (!i) break;  // the deadline (or all done)
    done[*i] = true;
    if (when == ReturnWhen::first_completed) break;
    if (when == ReturnWhen::first_exception) {
      std::lock_guard<std::mutex> lock(kept[*i]->mutex);
      if (kept[*i]->error && !kept[*i]->cancelled) break;
    }
    stop = waiter.remaining() == 0;
  }
  // Whatever else finished meanwhile is done too.
  const Clock::time_point now = Clock::now();
  while (const std::optional<std::size_t> i = waiter.next(&now)) done[*i] = true;
  return done;
}

}  // namespace detail

void ProcessPoolExecutor::check_open() const {
  if (shut_down_.load()) {
    throw Error(errc::bad_state, "multiproc::ProcessPoolExecutor: no new work after shutdown()");
  }
}

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  pool_.core_->check_owner("ProcessPoolExecutor::shutdown()");
  shut_down_.store(true);
  pool_.close();  // a submit racing with this one fails in the pool (Error(errc::bad_state))
  if (cancel_futures) pool_.core_->cancel_queued_futures();
  if (wait) pool_.join();
}

}  // namespace multiproc
