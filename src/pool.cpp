// Pool: a manager thread in the parent, one duplex Pipe per worker.
//
// The manager thread forks every worker (so that the workers' parent-death signal is tied to a
// thread that lives as long as the pool), sends each worker at most a couple of tasks at a time
// over its own Pipe, and reads the results back in order. Because a worker's results come back in
// the order its tasks went out, the manager always knows which task a worker was running when it
// died: that call fails with BrokenPool, the worker's other tasks go back to the queue, and a new
// worker takes its place. The backlog lives in the manager's memory, not in shared memory, so
// terminate() needs nothing but killing the workers.
#include <multiproc/pool.hpp>

#include <multiproc/pipe.hpp>
#include <multiproc/queue.hpp>
#include <multiproc/wait.hpp>

#include "os.hpp"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <thread>
#include <typeinfo>

namespace multiproc {
namespace detail {
namespace {

// Message layouts. Task: [job u64][index u32][trampoline u64][fn u64] payload.
// Result: [job u64][index u32][status u8] payload, or on error "type\0message".
constexpr std::size_t kTaskHeader = kTaskHeaderBytes;
constexpr std::size_t kResultHeader = kResultHeaderBytes;
static_assert(kTaskHeader == 8 + 4 + 8 + 8 && kResultHeader == 8 + 4 + 1, "header layouts");
constexpr std::size_t kWorkerRing = std::size_t{1} << 20;
constexpr int kEarlyDeathsToBreak = 3;

template <class T>
void put_at(std::string& s, std::size_t off, T v) {
  std::memcpy(s.data() + off, &v, sizeof v);
}
template <class T>
T get_at(const std::string& s, std::size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof v);
  return v;
}

// The worker's whole life: run the initializer, then tasks until the pipe closes or the budget
// is spent. Runs in the forked child.
int worker_main(const Connection& conn, const std::function<void()>& init, std::size_t maxtasks) {
  conn.segment().prefault();  // this process's page tables for the rings, while the parent does its own
  if (init) init();  // an exception ends the worker with exit code 1 (Process prints it)
  try {
    conn.send_bytes("");  // ready: the initializer is done, tasks may come
  } catch (const Error&) {
    return 0;
  }
  std::size_t done = 0;
  for (;;) {
    std::string msg;
    try {
      msg = conn.recv_bytes();
    } catch (const EOFError&) {
      return 0;  // the pool closed our pipe: done
    }
    if (msg.size() < kTaskHeader) return 2;
    const auto trampoline = reinterpret_cast<Trampoline>(get_at<std::uint64_t>(msg, 12));
    const auto fn = static_cast<std::uintptr_t>(get_at<std::uint64_t>(msg, 20));
    std::string reply;
    try {
      // The trampoline leaves room for the header in front of the encoded result.
      reply = trampoline(fn, reinterpret_cast<const std::byte*>(msg.data()) + kTaskHeader,
                         msg.size() - kTaskHeader);
      reply[12] = '\0';
    } catch (const std::exception& e) {
      reply.assign(kResultHeader, '\1');
      reply += demangle(typeid(e).name());
      reply.push_back('\0');
      reply += e.what();
    } catch (...) {
      reply.assign(kResultHeader, '\1');
      reply += "unknown exception";
      reply.push_back('\0');
    }
    std::memcpy(reply.data(), msg.data(), 12);  // job and index
    try {
      conn.send_bytes(reply);
    } catch (const Error&) {
      return 0;  // the pool is gone
    }
    if (maxtasks != 0 && ++done >= maxtasks) return 0;
  }
}

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

void on_job_finish(const std::shared_ptr<JobState>& job, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!job->completing) {
      job->on_finish.push_back(std::move(fn));
      return;
    }
  }
  fn();  // the outcome is known already: run here
}

// ---------------------------------------------------------------------------------------------

class PoolCore {
 public:
  PoolCore(int processes, std::function<void()> init, std::size_t maxtasks);
  ~PoolCore();

  std::shared_ptr<JobState> submit(std::vector<PoolTask> tasks,
                                   std::function<void(std::size_t, std::size_t)> progress);
  void close();
  void terminate();
  void join();
  std::size_t size() const noexcept { return static_cast<std::size_t>(n_); }
  std::vector<pid_t> pids() const {
    std::lock_guard<std::mutex> lock(m_);
    return pids_;
  }

 private:
  enum class State { running, closing, terminating, stopped };
  struct Pending {
    std::shared_ptr<JobState> job;
    std::size_t index;
    std::string message;  // the whole task message
  };
  struct Sent {
    std::shared_ptr<JobState> job;
    std::size_t index;
    std::string message;  // kept, to send it again should the worker exit before starting it
  };
  struct Worker {
    std::unique_ptr<Process> process;
    std::unique_ptr<Connection> conn;
    std::deque<Sent> outstanding;
    std::size_t outstanding_bytes = 0;
    std::size_t sent = 0;
    std::size_t answered = 0;
    bool ready = false;  // it ran its initializer and said so
  };

  void run() noexcept;
  void spawn_worker();
  void dispatch();
  void read_results(Worker& w);
  void handle_result(Worker& w, std::string& msg);
  void handle_exit(std::size_t i);
  void shut_down_workers(bool kill);
  void finish(const std::shared_ptr<JobState>& job, std::exception_ptr error);
  static void run_callbacks(std::vector<std::function<void()>>& callbacks);
  void fail_everything(std::exception_ptr error);
  void update_pids();
  void kick() { kick_.try_put(1); }

  const int n_;
  const std::function<void()> init_;
  const std::size_t maxtasks_;

  mutable std::mutex m_;  // guards state_, broken_, pending_ (with the manager), pids_
  State state_ = State::running;
  std::exception_ptr broken_;
  std::deque<Pending> pending_;
  std::vector<pid_t> pids_;
  std::uint64_t next_job_ = 1;

  std::vector<Worker> workers_;  // the manager thread's alone
  int early_deaths_ = 0;
  Queue<char> kick_{64};
  std::mutex started_mutex_;
  std::condition_variable started_cv_;
  bool started_ = false;
  std::exception_ptr start_error_;
  std::thread manager_;
  std::mutex join_mutex_;
  bool joined_ = false;
};

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

std::shared_ptr<JobState> PoolCore::submit(std::vector<PoolTask> tasks,
                                           std::function<void(std::size_t, std::size_t)> progress) {
  auto job = std::make_shared<JobState>();
  job->tasks = tasks.size();
  job->results.resize(tasks.size());
  job->progress = std::move(progress);
  {
    std::lock_guard<std::mutex> lock(m_);
    if (broken_) std::rethrow_exception(broken_);
    if (state_ != State::running) {
      throw Error(errc::bad_state, "multiproc::Pool: no new work after close() or terminate()");
    }
    if (tasks.empty()) {  // an empty input: the result is ready at once
      job->completing = job->finished = true;
      return job;
    }
    const std::uint64_t id = next_job_++;
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      std::string& msg = tasks[i].message;  // the header goes into the room left in front
      put_at<std::uint64_t>(msg, 0, id);
      put_at<std::uint32_t>(msg, 8, static_cast<std::uint32_t>(i));
      put_at<std::uint64_t>(msg, 12, reinterpret_cast<std::uintptr_t>(tasks[i].trampoline));
      put_at<std::uint64_t>(msg, 20, tasks[i].fn);
      pending_.push_back({job, i, std::move(msg)});
    }
  }
  kick();
  return job;
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
  }
  std::lock_guard<std::mutex> lock(join_mutex_);
  if (!joined_) {
    manager_.join();
    joined_ = true;
  }
}

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
  Worker w;
  const std::function<void()>* init = &init_;
  const std::size_t maxtasks = maxtasks_;
  w.process = std::make_unique<Process>(
      [child_end, init, maxtasks] { return worker_main(child_end, *init, maxtasks); });
  w.process->set_name("PoolWorker-" + std::to_string(workers_.size() + 1));
  w.process->set_daemon(true);  // dies with the manager thread, i.e. with the pool
  w.process->start();
  child_end.close();  // the worker holds its end; we hold ours
  w.conn = std::make_unique<Connection>(parent_end);
  // Tasks and results stream through the rings: fault their pages in now, while the worker starts,
  // not a page at a time inside the first big map() (that was a third of its time).
  w.conn->segment().prefault();
  workers_.push_back(std::move(w));
}

void PoolCore::finish(const std::shared_ptr<JobState>& job, std::exception_ptr error) {
  // As in Python, the callbacks run before the result is ready: get() returns after them.
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (job->completing) return;
    job->completing = true;
    job->error = error;
    callbacks.swap(job->on_finish);
  }
  if (error) job->cv.notify_all();  // imap readers stop at once
  run_callbacks(callbacks);
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    job->finished = true;
  }
  job->cv.notify_all();
}

void PoolCore::run_callbacks(std::vector<std::function<void()>>& callbacks) {
  for (auto& cb : callbacks) {
    try {
      cb();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "multiproc::Pool: a result callback threw %s: %s\n",
                   demangle(typeid(e).name()).c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "multiproc::Pool: a result callback threw\n");
    }
  }
}

void PoolCore::handle_result(Worker& w, std::string& msg) {
  if (!w.ready) {  // its first message: the initializer succeeded
    w.ready = true;
    early_deaths_ = 0;
    return;
  }
  if (w.outstanding.empty() || msg.size() < kResultHeader) return;  // cannot happen
  Sent s = std::move(w.outstanding.front());
  w.outstanding.pop_front();
  w.outstanding_bytes -= s.message.size();
  ++w.answered;
  JobState& job = *s.job;
  if (msg[12] == '\0') {
    std::size_t done = 0;
    bool complete = false;
    {
      std::lock_guard<std::mutex> lock(job.mutex);
      if (job.completing) return;  // the call already failed
      job.results[s.index] = std::move(msg);  // decoded later, past the header
      job.completion_order.push_back(s.index);
      done = ++job.done;
      complete = done == job.tasks;
    }
    job.cv.notify_all();
    if (job.progress) {
      try {
        job.progress(done, job.tasks);
      } catch (...) {
      }
    }
    if (complete) finish(s.job, nullptr);
  } else {
    const std::string body = msg.substr(kResultHeader);
    const std::size_t nul = body.find('\0');
    const std::string type = body.substr(0, nul);
    const std::string what = nul == std::string::npos ? std::string() : body.substr(nul + 1);
    finish(s.job, std::make_exception_ptr(RemoteError(type, what)));
  }
}

void PoolCore::read_results(Worker& w) {
  while (w.conn->poll()) {
    std::string msg;
    try {
      msg = w.conn->recv_bytes();
    } catch (const EOFError&) {
      return;  // the worker is gone; handle_exit takes over
    }
    handle_result(w, msg);
  }
}

void PoolCore::handle_exit(std::size_t i) {
  Worker& w = workers_[i];
  try {
    w.process->join();
  } catch (const Error&) {  // reaped elsewhere (SIGCHLD ignored): the exit code is unknown
  }
  read_results(w);  // what it answered before it went
  const std::optional<int> code = w.process->exitcode();
  const bool clean = code && *code == 0;
  if (!w.outstanding.empty() && !clean) {
    // It died running its oldest task: exactly that call fails.
    Sent& running = w.outstanding.front();
    finish(running.job,
           std::make_exception_ptr(BrokenPool(
               "multiproc::Pool: worker " + w.process->name() + " (pid " +
               std::to_string(w.process->pid()) + ") " + describe_exit(code) +
               " while running task " + std::to_string(running.index + 1) + " of a call")));
    w.outstanding.pop_front();
  }
  if (!w.ready && !clean) ++early_deaths_;  // died before it was ready: its initializer failed
  std::deque<Sent> unstarted = std::move(w.outstanding);
  workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(i));
  std::lock_guard<std::mutex> lock(m_);
  for (auto it = unstarted.rbegin(); it != unstarted.rend(); ++it) {
    pending_.push_front({std::move(it->job), it->index, std::move(it->message)});
  }
  if (early_deaths_ >= kEarlyDeathsToBreak && !broken_) {
    broken_ = std::make_exception_ptr(BrokenPool(
        "multiproc::Pool: workers keep dying in their initializer (the last " +
        describe_exit(code) + ")"));
  }
}

void PoolCore::dispatch() {
  for (Worker& w : workers_) {
    if (!w.ready) continue;
    for (;;) {
      // A worker gets a task when idle, or a second small one that fits its ring's free space
      // (so that sending never waits on a busy worker), within its maxtasksperchild budget.
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
        const std::size_t bytes = pending_.front().message.size();
        const bool fits = w.outstanding.empty() ||
                          (w.outstanding.size() < 2 && w.outstanding_bytes + bytes < kWorkerRing / 4);
        if (!fits) break;
        next = std::move(pending_.front());
        pending_.pop_front();
      }
      try {
        w.conn->send_bytes(next.message);
      } catch (const Error&) {  // the worker died meanwhile: the task goes back
        std::lock_guard<std::mutex> lock(m_);
        pending_.push_front(std::move(next));
        break;
      }
      w.outstanding_bytes += next.message.size();
      ++w.sent;
      w.outstanding.push_back({std::move(next.job), next.index, std::move(next.message)});
    }
  }
}

void PoolCore::shut_down_workers(bool kill) {
  for (Worker& w : workers_) {
    if (kill) {
      w.process->kill();
    } else {
      w.conn->close();  // EOF: the worker finishes and exits
    }
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
  workers_.clear();
  update_pids();
}

void PoolCore::fail_everything(std::exception_ptr error) {
  std::deque<Pending> pending;
  {
    std::lock_guard<std::mutex> lock(m_);
    pending.swap(pending_);
  }
  for (Pending& p : pending) finish(p.job, error);
  for (Worker& w : workers_) {
    for (Sent& s : w.outstanding) finish(s.job, error);
    w.outstanding.clear();
  }
}

void PoolCore::run() noexcept {
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
      return;
    }
    {
      std::lock_guard<std::mutex> lock(started_mutex_);
      started_ = true;
    }
    started_cv_.notify_all();
    for (;;) {
      State state;
      bool broken, idle;
      {
        std::lock_guard<std::mutex> lock(m_);
        state = state_;
        broken = static_cast<bool>(broken_);
        idle = pending_.empty();
      }
      if (state == State::terminating) {
        shut_down_workers(true);
        fail_everything(std::make_exception_ptr(
            Error(errc::bad_state, "multiproc::Pool: terminated before the call finished")));
        break;
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
      {
        std::lock_guard<std::mutex> lock(m_);
        broken = static_cast<bool>(broken_);
        idle = pending_.empty();
      }
      if (broken) {
        std::exception_ptr error;
        {
          std::lock_guard<std::mutex> lock(m_);
          error = broken_;
        }
        fail_everything(error);
      } else {
        while (static_cast<int>(workers_.size()) < n_ && (state == State::running || !idle)) {
          spawn_worker();
          replaced = true;
        }
      }
      if (replaced) update_pids();
      bool outstanding = false;
      for (const Worker& w : workers_) outstanding = outstanding || !w.outstanding.empty();
      if (state == State::closing && idle && !outstanding) {
        shut_down_workers(false);
        break;
      }
      dispatch();

      std::vector<Waitable> objects{kick_};
      for (const Worker& w : workers_) objects.emplace_back(*w.conn);
      const auto ready = wait(objects, std::chrono::milliseconds(100));
      for (std::size_t r : ready) {
        if (r == 0) {
          while (kick_.try_get()) {
          }
        } else {
          read_results(workers_[r - 1]);
        }
      }
    }
  } catch (const std::exception& e) {
    // Nothing above should throw; if something does, no call may be left waiting.
    std::fprintf(stderr, "multiproc::Pool: manager thread failed: %s\n", e.what());
    try {
      shut_down_workers(true);
    } catch (...) {
    }
    fail_everything(std::make_exception_ptr(BrokenPool(std::string("multiproc::Pool: ") + e.what())));
  }
  std::lock_guard<std::mutex> lock(m_);
  state_ = State::stopped;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------

Pool::Pool(int processes, std::function<void()> initializer, std::size_t maxtasksperchild)
    : core_(std::make_unique<detail::PoolCore>(processes, std::move(initializer), maxtasksperchild)) {}

Pool::~Pool() = default;  // PoolCore's destructor terminates and joins

std::shared_ptr<detail::JobState> Pool::submit(std::vector<detail::PoolTask> tasks, Progress progress) {
  return core_->submit(std::move(tasks), std::move(progress));
}

void Pool::close() { core_->close(); }
void Pool::join() { core_->join(); }
void Pool::terminate() { core_->terminate(); }
std::size_t Pool::size() const noexcept { return core_->size(); }
std::vector<pid_t> Pool::worker_pids() const { return core_->pids(); }

}  // namespace multiproc
