// The Pool's manager thread: it starts and replaces the workers, dispatches tasks to them, reads
// their replies, and accounts for the ones that die (see pool_core.hpp for the whole).
#include "pool_core.hpp"

#include <multiproc/wait.hpp>

#include "../os.hpp"
#include "../pipe/connection_impl.hpp"

#include <csignal>
#include <cstdio>
#include <cstring>

namespace multiproc::detail {

namespace {

std::string describe_exit(const std::optional<int>& code) {
  if (!code) return "ended";
  if (*code < 0) {
    const char* name = sigdescr_np(-*code);
    return std::string("was killed by signal ") + std::to_string(-*code) +
           (name != nullptr ? std::string(" (") + name + ")" : "");
  }
  return "exited with code " + std::to_string(*code);
}

}  // namespace

void PoolCore::update_pids() {
  std::vector<pid_t> pids;
  for (const Worker& w : workers_) pids.push_back(w.process->pid());
  std::lock_guard<std::mutex> lock(m_);
  pids_ = std::move(pids);
}

void PoolCore::spawn_worker() {
  // Not a structured binding: C++17 does not let a lambda capture one (clang refuses it).
  std::pair<Connection, Connection> ends = Pipe(true, kWorkerRing);
  Connection& parent_end = ends.first;
  Connection child_end = std::move(ends.second);
  // Tasks and results stream through the rings: map their pages in this process now, not a page
  // at a time inside the first big map() (that was a third of its time), and touch the part the
  // pool cycles through, before the worker exists to use it (touch_rings: on a VM that maps a page
  // at a process's first touch, that was still a third of a fresh pool's first map of 100,000).
  parent_end.segment().prefault();
  touch_rings(parent_end, kWarmRing);
  Worker w;
  const std::function<void()>* init = &init_;
  const std::size_t maxtasks = maxtasks_;
  const RawValue<std::uint64_t> started = w.started;
  w.process = std::make_unique<Process>([child_end, init, maxtasks, started] {
    return worker_main(child_end, *init, maxtasks, started);
  });
  // A replacement gets a new number: one named after the count of live workers could share the
  // name of a live one, and a BrokenPool message then named the wrong worker.
  w.process->set_name("PoolWorker-" + std::to_string(++workers_started_));
  w.process->set_daemon(true);  // dies with the manager thread, i.e. with the pool
  w.process->start();
  child_end.close();  // the worker holds its end; we hold ours
  w.conn = std::make_shared<Connection>(parent_end);
  set_send_stall_limit(*w.conn, kSendStallLimit);
  workers_.push_back(std::move(w));
}

void PoolCore::handle_result(Worker& w, std::string_view msg) {
  if (!w.ready) {  // its first message: the initializer succeeded
    w.ready = true;
    early_deaths_ = 0;
    return;
  }
  if (w.outstanding.empty() || msg.size() < kResultHeader) return;  // cannot happen
  Sent s = std::move(w.outstanding.front());
  w.outstanding.pop_front();
  w.outstanding_bytes -= ring_share(s.bytes());
  ++w.answered;
  if (w.outstanding.empty()) w.direct = false;
  deliver(s.job, s.index, msg);
  buffers_.give(std::move(s.message));
}

void PoolCore::read_results(Worker& w) {
  // Into scratch_, reused: a fresh buffer per reply paid a page fault per 4 KiB of a map's results.
  if (scratch_.empty()) scratch_.resize(kTaskBuffer);
  while (w.conn->poll()) {
    std::size_t n = 0;
    try {
      n = w.conn->recv_bytes_into(scratch_.data(), scratch_.size());
    } catch (const EOFError&) {
      return;  // the worker is gone; handle_exit takes over
    } catch (const Error& e) {
      if (e.code() != errc::too_large) throw;
      scratch_.resize(scratch_.size() * 2);  // the reply stays in the pipe: take it with more room
      continue;
    }
    handle_result(w, std::string_view(scratch_.data(), n));
  }
  if (scratch_.size() > kKeepBuffer) {  // a huge reply passed: do not keep its memory
    scratch_.clear();
    scratch_.shrink_to_fit();
  }
}

void PoolCore::handle_exit(std::size_t i) {
  Worker& w = workers_[i];
  try {
    w.process->join();
  } catch (const Error&) {  // reaped elsewhere (SIGCHLD ignored): the exit code is unknown
  }
  read_results(w);  // every reply it sent before it went
  const std::optional<int> code = w.process->exitcode();
  // It had started `started` tasks and we hold `answered` replies: one more started than
  // answered is the task it was running (it works one at a time). The rest it never started.
  if (w.started.load() > w.answered && !w.outstanding.empty()) {
    Sent running = std::move(w.outstanding.front());
    w.outstanding.pop_front();
    running.borrowed = nullptr;
    running.borrowed_bytes = 0;
    running.message.assign(kResultHeader, kStatusBroken);  // now the reply
    running.message += "multiproc::Pool: worker " + w.process->name() + " (pid " +
                       std::to_string(w.process->pid()) + ") " + describe_exit(code) +
                       " while running task " + std::to_string(running.index + 1) + " of a call";
    deaths_.push_back(std::move(running));  // delivered after the replacement is started
  }
  // Died before it was ready: its initializer failed — or ended the worker, exit(0) and
  // pthread_exit included (a clean exit was not counted, and such a pool forked for ever). A pool
  // that stops its workers does so once they are ready and idle (serve, shut_down_workers).
  if (!w.ready) ++early_deaths_;
  std::deque<Sent> unstarted = std::move(w.outstanding);
  workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(i));
  std::lock_guard<std::mutex> lock(m_);
  for (auto it = unstarted.rbegin(); it != unstarted.rend(); ++it) pending_.push_front(std::move(*it));
  if (early_deaths_ >= kEarlyDeathsToBreak && !broken_) {
    broken_ = std::make_exception_ptr(BrokenPool(
        "multiproc::Pool: workers keep dying in their initializer (the last " +
        describe_exit(code) + ")"));
  }
}

bool PoolCore::sendable(Worker& w) {
  if (w.stalled && send_drained(*w.conn)) w.stalled = false;
  return !w.stalled;
}

void PoolCore::dispatch() {
  // First every idle worker gets a task. Then, once no worker is still starting, a busy one may
  // get the next chunk of the call it is running, if small enough to fit its ring's free space (so
  // that it does not wait for us between the chunks of a map, and sending never waits on a busy
  // worker) — never another call's task, which could wait behind a long task while another
  // worker is free. All within the worker's maxtasksperchild budget.
  bool all_ready = true;
  for (const Worker& w : workers_) all_ready = all_ready && w.ready;
  const std::size_t max_depth = all_ready && static_cast<int>(workers_.size()) == n_ ? 2 : 1;
  for (std::size_t depth = 1; depth <= max_depth; ++depth) {
    for (Worker& w : workers_) {
      if (!w.ready) continue;
      if (!sendable(w)) continue;  // still stopped (or slow): the others work
      while (w.outstanding.size() < depth) {
        if (maxtasks_ != 0 && w.sent >= maxtasks_) break;
        Pending next;
        {
          std::lock_guard<std::mutex> lock(m_);
          while (!pending_.empty()) {
            bool finished;
            {
              std::lock_guard<std::mutex> job_lock(pending_.front().job->mutex);
              finished = pending_.front().job->completing;
            }
            if (!finished) break;
            pending_.pop_front();  // its call failed already: skip the rest of it
          }
          if (pending_.empty()) return;
          // The worker's ring holds at most what is outstanding, so a send that keeps that
          // under a quarter of the ring never waits for room (this thread must not: the worker
          // may be waiting for it to read a reply) — also when the pipe has just started again
          // from the ring's beginning, which leaves at least a quarter free (set_rewind).
          const std::size_t bytes = ring_share(pending_.front().bytes());
          const bool fits = w.outstanding.empty() ||
                            (pending_.front().job == w.outstanding.front().job &&
                             w.outstanding_bytes + bytes < kWorkerRing / 4);
          if (!fits) break;
          next = std::move(pending_.front());
          pending_.pop_front();
        }
        if (!send_to(w, next)) {  // the worker died meanwhile: the task goes back
          std::lock_guard<std::mutex> lock(m_);
          pending_.push_front(std::move(next));
          break;
        }
      }
    }
  }
}

void PoolCore::send_task(const Worker& w, const QueuedTask& task) {
  if (task.borrowed == nullptr) {
    w.conn->send_bytes(task.message);
  } else {  // header and payload in one message, the payload straight from the caller's input
    send_parts(*w.conn, task.message, task.borrowed, task.borrowed_bytes);
  }
}

bool PoolCore::send_to(Worker& w, Pending& task) {
  // Recorded before the send: once sent, a task must be in the worker's accounts (its replies are
  // matched to them in order), and push_back may throw.
  w.outstanding.push_back(std::move(task));
  Sent& sent = w.outstanding.back();
  if (sent.job->future) {
    // running(): this worker's count of started tasks reaching this one's ordinal (the pipe keeps
    // the order, so the n-th task sent is the n-th it starts). Set before the send: the worker may
    // start it, and its caller ask, before send_bytes returns.
    std::lock_guard<std::mutex> job_lock(sent.job->mutex);
    sent.job->started = [started = w.started, n = w.sent + 1] { return started.load() >= n; };
  }
  try {
    send_task(w, sent);
  } catch (const Error& e) {  // the worker is gone (the manager replaces it), or stalled
    w.stalled = dynamic_cast<const SendStalled*>(&e) != nullptr;
    if (sent.job->future) {
      std::lock_guard<std::mutex> job_lock(sent.job->mutex);
      sent.job->started = nullptr;
    }
    task = std::move(sent);
    w.outstanding.pop_back();
    return false;
  }
  w.outstanding_bytes += ring_share(sent.bytes());
  ++w.sent;
  return true;
}

void PoolCore::shut_down_workers(bool kill) {
  for (Worker& w : workers_) {
    if (kill) {
      w.process->kill();
      continue;
    }
    // An empty message says: exit. EOF alone did not reach a worker whose task had forked a
    // child that still runs (a raw fork holds every pipe end it inherited: pipe.hpp), and
    // close() then waited 10 s for it and killed it. The worker is idle (nothing outstanding), so
    // its ring is empty and the send does not wait; then the close, for a worker that missed it.
    try {
      w.conn->send_bytes("");
    } catch (const Error&) {  // gone already
    }
    w.conn->close();
  }
  for (Worker& w : workers_) {
    try {
      if (!w.process->join_for(std::chrono::seconds(10))) {
        w.process->kill();
        w.process->join();
      }
    } catch (const Error&) {
    }
  }
  // Their calls are not finished: keep them for fail_everything.
  for (Worker& w : workers_) {
    for (Sent& s : w.outstanding) orphaned_.push_back(std::move(s));
  }
  workers_.clear();
  update_pids();
}

void PoolCore::deliver_deaths() {
  std::vector<Sent> deaths;
  deaths.swap(deaths_);
  for (Sent& d : deaths) deliver(d.job, d.index, d.message);
}

void PoolCore::fail_everything(std::exception_ptr error) {
  deliver_deaths();  // their own reason first
  std::deque<Pending> pending;
  {
    std::lock_guard<std::mutex> lock(m_);
    pending.swap(pending_);
  }
  std::vector<Backlog> backlogs;
  backlogs.swap(backlogs_);
  for (Backlog& b : backlogs) finish(b.job, error);
  for (Pending& p : pending) finish(p.job, error);
  for (Worker& w : workers_) {
    for (Sent& s : w.outstanding) finish(s.job, error);
    w.outstanding.clear();
    w.outstanding_bytes = 0;
  }
  for (Sent& s : orphaned_) finish(s.job, error);
  orphaned_.clear();
}

void PoolCore::run() noexcept {
  std::exception_ptr failure;  // the manager itself failed: its calls fail with this
  std::unique_lock<std::mutex> io(io_);  // released only while waiting (serve)
  const IoHolder holder(this);
  try {
    try {
      for (int i = 0; i < n_; ++i) spawn_worker();
      update_pids();
    } catch (...) {
      shut_down_workers(true);
      {
        std::lock_guard<std::mutex> lock(m_);
        state_ = State::stopped;
      }
      std::lock_guard<std::mutex> lock(started_mutex_);
      start_error_ = std::current_exception();
      started_ = true;
      started_cv_.notify_all();
      return;  // the constructor throws: no call exists yet
    }
    {
      std::lock_guard<std::mutex> lock(started_mutex_);
      started_ = true;
    }
    started_cv_.notify_all();
    serve(io);
  } catch (const std::exception& e) {
    // Nothing above should throw (a worker that cannot be replaced, say); if something does, the
    // pool is broken and every call fails.
    std::fprintf(stderr, "multiproc::Pool: manager thread failed: %s\n", e.what());
    failure = std::make_exception_ptr(BrokenPool(std::string("multiproc::Pool: ") + e.what()));
  } catch (...) {
    failure = std::make_exception_ptr(BrokenPool("multiproc::Pool: manager thread failed"));
  }
  if (!io.owns_lock()) io.lock();  // serve threw while waiting
  {
    std::lock_guard<std::mutex> lock(m_);
    if (failure && !broken_) broken_ = failure;  // later calls fail with it too
    state_ = State::stopped;  // no call or chunk is accepted any more
  }
  try {
    if (failure) shut_down_workers(true);
  } catch (...) {
  }
  // Whatever is left fails now: no call is ever left waiting.
  try {
    fail_everything(failure ? failure
                            : std::make_exception_ptr(Error(
                                  errc::bad_state, "multiproc::Pool: stopped before the call finished")));
  } catch (...) {
  }
}

void PoolCore::serve(std::unique_lock<std::mutex>& io) {
  for (;;) {
    State state;
    {
      std::lock_guard<std::mutex> lock(m_);
      state = state_;
    }
    if (state == State::terminating) {
      shut_down_workers(true);
      fail_everything(std::make_exception_ptr(
          Error(errc::bad_state, "multiproc::Pool: terminated before the call finished")));
      return;
    }
    // Workers that exited: collect their results, fail or requeue their tasks, replace them.
    bool replaced = false;
    for (std::size_t i = 0; i < workers_.size();) {
      bool alive = true;
      try {
        alive = workers_[i].process->is_alive();
      } catch (const Error&) {
        alive = false;
      }
      if (alive) {
        ++i;
        continue;
      }
      handle_exit(i);
      replaced = true;
    }
    std::exception_ptr broken;
    bool idle;
    {
      std::lock_guard<std::mutex> lock(m_);
      broken = broken_;
      idle = pending_.empty();
    }
    if (broken) {
      fail_everything(broken);
    } else {
      while (static_cast<int>(workers_.size()) < n_ && (state == State::running || !idle)) {
        spawn_worker();
        replaced = true;
      }
    }
    if (replaced) update_pids();
    deliver_deaths();
    // A call its caller deals out becomes the manager's to deal when the caller handed it over
    // (it stopped waiting), or when none of its tasks is out on a worker any more (its workers
    // died, or the caller could not send).
    for (std::size_t i = 0; i < backlogs_.size();) {
      const JobState* job = backlogs_[i].job.get();
      if (job->handover.load(std::memory_order_relaxed) || direct_workers(*job).empty()) {
        queue_backlog(job);  // erases it
      } else {
        ++i;
      }
    }
    bool outstanding = false;
    for (const Worker& w : workers_) outstanding = outstanding || !w.outstanding.empty();
    if (state == State::closing && !outstanding) {
      // Decided under the lock, so that no stream extends a pool that is stopping.
      bool stop = false;
      {
        std::lock_guard<std::mutex> lock(m_);
        if (pending_.empty() && (open_streams_ == 0 || joining_)) {
          state_ = State::stopped;
          stop = true;
        }
      }
      if (stop) {
        shut_down_workers(false);
        return;
      }
    }
    dispatch();

    // The pipes to watch: a worker starting up, or one with replies to come that are ours to read.
    // A worker's reply to a caller's lone call is left to the waiting caller while the pool runs
    // and has nothing queued (the caller hands it over otherwise: handover + kick).
    bool quiet;
    {
      std::lock_guard<std::mutex> lock(m_);
      quiet = state_ == State::running && pending_.empty();
    }
    std::vector<Waitable> objects{kick_};
    std::vector<std::size_t> watched;  // objects[k + 1] is workers_[watched[k]]
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      const Worker& w = workers_[i];
      const bool callers = w.direct && quiet && !w.outstanding.empty() &&
                           !w.outstanding.front().job->handover.load(std::memory_order_relaxed);
      if (!w.ready || (!w.outstanding.empty() && !callers)) {
        objects.emplace_back(*w.conn);
        watched.push_back(i);
      }
    }
    // Callers may send to idle workers and collect meanwhile; only this thread adds or removes
    // workers, so the connections waited on stay.
    io.unlock();
    std::vector<std::size_t> ready;
    try {
      ready = wait(objects, detail::kLivenessSlice);  // then look for exited workers
    } catch (...) {
      io.lock();
      throw;
    }
    io.lock();
    for (std::size_t r : ready) {
      if (r == 0) {
        while (kick_.try_get()) {
        }
      } else {
        read_results(workers_[watched[r - 1]]);
      }
    }
  }
}

}  // namespace multiproc::detail
