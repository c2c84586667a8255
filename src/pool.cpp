// Pool: a manager thread in the parent, one duplex Pipe and one shared "started" word per worker.
//
// The manager thread forks every worker (so that the workers' parent-death signal is tied to a
// thread that lives as long as the pool), sends each worker at most two tasks at a time over its
// own Pipe (an idle worker first; a busy one only the next chunk of its own call), and reads the
// results back in order. Before running a task, a worker stores how many tasks it has started
// into its word; when it dies, the manager reads every reply it sent, then compares: a started
// task with no reply was running — that call fails with BrokenPool — and the tasks after it were
// never started and go back to the queue (so a worker killed idle fails nothing). The backlog
// lives in the manager's memory, not in shared memory, so terminate() needs nothing but killing
// the workers.
//
// Calls: a map or apply is a job with its tasks known up front. An imap stream is a job that
// grows: the consumer's thread reads the input and appends chunks (extend), keeping at most
// kStreamChunksPerWorker chunks per worker submitted but not taken; while a stream is open, a
// closed pool keeps its workers until join(). Every way out of the manager thread fails whatever
// is left (pending, sent, or in a stopped worker), so no call is ever left waiting.
#include <multiproc/pool.hpp>

#include <multiproc/pipe.hpp>
#include <multiproc/queue.hpp>
#include <multiproc/shared_value.hpp>
#include <multiproc/wait.hpp>

#include "os.hpp"

#include <algorithm>
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
// Result: [job u64][index u32][status u8] payload. Status 0: the encoded result; 1: the task threw,
// payload "type\0message"; 2: the worker died running it (made by the manager), payload the message.
// The index is informational (the manager matches replies by order); an endless stream wraps it.
constexpr std::size_t kTaskHeader = kTaskHeaderBytes;
constexpr std::size_t kResultHeader = kResultHeaderBytes;
static_assert(kTaskHeader == 8 + 4 + 8 + 8 && kResultHeader == 8 + 4 + 1, "header layouts");
constexpr char kStatusOk = 0;
constexpr char kStatusRemoteError = 1;
constexpr char kStatusBroken = 2;
constexpr std::size_t kWorkerRing = std::size_t{1} << 20;
constexpr int kEarlyDeathsToBreak = 3;
// An imap stream keeps at most this many chunks per worker submitted but not taken.
constexpr std::size_t kStreamChunksPerWorker = 4;

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

// Writes the task header into the room left in front of the payload.
void stamp(PoolTask& task, std::uint64_t job, std::size_t index) {
  std::string& msg = task.message;
  put_at<std::uint64_t>(msg, 0, job);
  put_at<std::uint32_t>(msg, 8, static_cast<std::uint32_t>(index));
  put_at<std::uint64_t>(msg, 12, reinterpret_cast<std::uintptr_t>(task.trampoline));
  put_at<std::uint64_t>(msg, 20, task.fn);
}

// The error a failed reply stands for.
std::exception_ptr reply_error(const std::string& reply) {
  const std::string body = reply.substr(kResultHeader);
  if (reply[12] == kStatusBroken) return std::make_exception_ptr(BrokenPool(body));
  const std::size_t nul = body.find('\0');
  const std::string type = body.substr(0, nul);
  const std::string what = nul == std::string::npos ? std::string() : body.substr(nul + 1);
  return std::make_exception_ptr(RemoteError(type, what));
}

// The worker's whole life: run the initializer, then tasks until the pipe closes or the budget
// is spent. Runs in the forked child. `started` counts the tasks it has taken up.
int worker_main(const Connection& conn, const std::function<void()>& init, std::size_t maxtasks,
                const RawValue<std::uint64_t>& started) {
  conn.segment().prefault();  // this process's page tables for the rings, while the parent does its own
  if (init) init();  // an exception ends the worker with exit code 1 (Process prints it)
  try {
    conn.send_bytes("");  // ready: the initializer is done, tasks may come
  } catch (const Error&) {
    return 0;
  }
  std::uint64_t taken = 0;
  for (;;) {
    std::string msg;
    try {
      msg = conn.recv_bytes();
    } catch (const EOFError&) {
      return 0;  // the pool closed our pipe: done
    }
    if (msg.size() < kTaskHeader) return 2;
    // Relaxed store: read by the manager only after this process has died and been reaped
    // (handle_exit), when nothing runs here any more. Before the task's code: a worker that dies
    // with this unchanged had not started the task.
    started.store(++taken);
    const auto trampoline = reinterpret_cast<Trampoline>(get_at<std::uint64_t>(msg, 12));
    const auto fn = static_cast<std::uintptr_t>(get_at<std::uint64_t>(msg, 20));
    std::string reply;
    try {
      // The trampoline leaves room for the header in front of the encoded result.
      reply = trampoline(fn, reinterpret_cast<const std::byte*>(msg.data()) + kTaskHeader,
                         msg.size() - kTaskHeader);
      reply[12] = kStatusOk;
    } catch (const std::exception& e) {
      reply.assign(kResultHeader, kStatusRemoteError);
      reply += demangle(typeid(e).name());
      reply.push_back('\0');
      reply += e.what();
    } catch (...) {
      reply.assign(kResultHeader, kStatusRemoteError);
      reply += "unknown exception";
      reply.push_back('\0');
    }
    std::memcpy(reply.data(), msg.data(), 12);  // job and index
    try {
      conn.send_bytes(reply);
    } catch (const Error&) {
      return 0;  // the pool is gone
    }
    if (maxtasks != 0 && taken >= maxtasks) return 0;
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

// ---------------------------------------------------------------------------------------------

class PoolCore {
 public:
  PoolCore(int processes, std::function<void()> init, std::size_t maxtasks);
  ~PoolCore();

  void submit(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks,
              std::function<void(std::size_t, std::size_t)> progress);
  // Streams: open (a new call), extend with more chunks, end of input, cancel.
  void open_stream();
  void extend(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks);
  void end_stream_input();
  void cancel_stream(const std::shared_ptr<JobState>& job, bool open);
  void close();
  void terminate();
  void join();
  std::size_t size() const noexcept { return static_cast<std::size_t>(n_); }
  std::vector<pid_t> pids() const {
    std::lock_guard<std::mutex> lock(m_);
    return pids_;
  }
  static void finish(const std::shared_ptr<JobState>& job, std::exception_ptr error);

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
    RawValue<std::uint64_t> started;  // tasks it has taken up (written by the worker only)
    std::deque<Sent> outstanding;     // sent, not answered, in the order sent
    std::size_t outstanding_bytes = 0;
    std::size_t sent = 0;
    std::uint64_t answered = 0;
    bool ready = false;  // it ran its initializer and said so
  };

  void run() noexcept;
  void spawn_worker();
  void dispatch();
  void read_results(Worker& w);
  void handle_result(Worker& w, std::string& msg);
  void deliver(const std::shared_ptr<JobState>& job, std::size_t index, std::string& reply);
  void handle_exit(std::size_t i);
  void shut_down_workers(bool kill);
  static void run_callbacks(JobState& job, std::vector<std::function<void(JobState&)>>& callbacks);
  void fail_everything(std::exception_ptr error);
  void update_pids();
  void kick() { kick_.try_put(1); }

  const int n_;
  const std::function<void()> init_;
  const std::size_t maxtasks_;

  // Guards state_, broken_, pending_ (with the manager), pids_, next_job_, open_streams_,
  // joining_. Taken before a job's mutex, never after.
  mutable std::mutex m_;
  State state_ = State::running;
  std::exception_ptr broken_;
  std::deque<Pending> pending_;
  std::vector<pid_t> pids_;
  std::uint64_t next_job_ = 1;
  std::size_t open_streams_ = 0;  // streams that may still add tasks
  bool joining_ = false;

  std::vector<Worker> workers_;  // the manager thread's alone
  std::deque<Sent> orphaned_;    // sent to workers shut down before their calls failed (manager's)
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

void PoolCore::submit(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks,
                      std::function<void(std::size_t, std::size_t)> progress) {
  job->kind = JobKind::call;
  job->tasks = tasks.size();
  job->results.resize(tasks.size());
  job->progress = std::move(progress);
  {
    std::lock_guard<std::mutex> lock(m_);
    if (broken_) std::rethrow_exception(broken_);
    if (state_ != State::running) {
      throw Error(errc::bad_state, "multiproc::Pool: no new work after close() or terminate()");
    }
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

void PoolCore::open_stream() {
  std::lock_guard<std::mutex> lock(m_);
  if (broken_) std::rethrow_exception(broken_);
  if (state_ != State::running) {
    throw Error(errc::bad_state, "multiproc::Pool: no new work after close() or terminate()");
  }
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
  const RawValue<std::uint64_t> started = w.started;
  w.process = std::make_unique<Process>([child_end, init, maxtasks, started] {
    return worker_main(child_end, *init, maxtasks, started);
  });
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
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    job->finished = true;
  }
  job->cv.notify_all();
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
  if (reply[12] != kStatusOk) {
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
  deliver(s.job, s.index, msg);
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
  read_results(w);  // every reply it sent before it went
  const std::optional<int> code = w.process->exitcode();
  const bool clean = code && *code == 0;
  // It had started `started` tasks and we hold `answered` replies: one more started than
  // answered is the task it was running (it works one at a time). The rest it never started.
  if (w.started.load() > w.answered && !w.outstanding.empty()) {
    Sent running = std::move(w.outstanding.front());
    w.outstanding.pop_front();
    std::string reply(kResultHeader, kStatusBroken);
    reply += "multiproc::Pool: worker " + w.process->name() + " (pid " +
             std::to_string(w.process->pid()) + ") " + describe_exit(code) +
             " while running task " + std::to_string(running.index + 1) + " of a call";
    deliver(running.job, running.index, reply);
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
          const std::size_t bytes = pending_.front().message.size();
          const bool fits = w.outstanding.empty() ||
                            (pending_.front().job == w.outstanding.front().job &&
                             w.outstanding_bytes + bytes < kWorkerRing / 4);
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
  // Their calls are not finished: keep them for fail_everything.
  for (Worker& w : workers_) {
    for (Sent& s : w.outstanding) orphaned_.push_back(std::move(s));
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
    w.outstanding_bytes = 0;
  }
  for (Sent& s : orphaned_) finish(s.job, error);
  orphaned_.clear();
}

void PoolCore::run() noexcept {
  std::exception_ptr failure;  // the manager itself failed: its calls fail with this
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
          break;
        }
      }
      dispatch();

      std::vector<Waitable> objects{kick_};
      for (const Worker& w : workers_) objects.emplace_back(*w.conn);
      const auto ready = wait(objects, detail::kLivenessSlice);  // then look for exited workers
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
    // Nothing above should throw (a worker that cannot be replaced, say); if something does, the
    // pool is broken and every call fails.
    std::fprintf(stderr, "multiproc::Pool: manager thread failed: %s\n", e.what());
    failure = std::make_exception_ptr(BrokenPool(std::string("multiproc::Pool: ") + e.what()));
  } catch (...) {
    failure = std::make_exception_ptr(BrokenPool("multiproc::Pool: manager thread failed"));
  }
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

// ---------------------------------------------------------------------------------------------

//! An imap stream's consumer side: the input, the counts, the pool it feeds. Used by one thread.
class StreamState {
 public:
  std::weak_ptr<PoolCore> pool;
  std::shared_ptr<JobState> job;
  std::unique_ptr<ChunkSource> source;
  std::size_t window = 1;     // chunks submitted but not taken, at most
  std::size_t submitted = 0;  // chunks
  std::size_t taken = 0;
  bool input_done = false;  // read to its end, or it threw
  bool open = true;         // the pool counts it as a stream that may still add chunks
  bool over = false;        // ended (by its end or an error)
  std::exception_ptr input_error;

  // Reads input and submits chunks until `window` are in flight or the input is done.
  void top_up() {
    std::vector<PoolTask> batch;
    while (!input_done && submitted + batch.size() - taken < window) {
      PoolTask task;
      std::exception_ptr error;
      const std::size_t n = source->read(task, error);
      if (n != 0) batch.push_back(std::move(task));
      if (error) input_error = error;
      if (error || n == 0) input_done = true;
    }
    if (input_done) source.reset();  // a range moved into the stream goes now
    std::shared_ptr<PoolCore> core = pool.lock();
    if (!batch.empty()) {
      if (!core) {
        throw Error(errc::bad_state,
                    "multiproc::Pool: the pool was destroyed before the stream read all its input");
      }
      const std::size_t n = batch.size();
      try {
        core->extend(job, std::move(batch));
        submitted += n;
      } catch (...) {
        // The pool stopped taking work (closed and joined, terminated, broken): what was already
        // submitted still arrives, then this error, at its place after them.
        if (!input_error) input_error = std::current_exception();
        input_done = true;
        source.reset();
      }
    }
    if (input_done && open) {
      open = false;
      if (core) core->end_stream_input();
    }
  }

  bool next(std::string& reply) {
    if (over) return false;
    try {
      top_up();
      if (taken == submitted) {  // top_up read to the end of the input
        over = true;
        if (input_error) std::rethrow_exception(input_error);
        return false;
      }
      {
        std::unique_lock<std::mutex> lock(job->mutex);
        const bool ordered = job->kind == JobKind::ordered_stream;
        const auto available = [&] {
          return ordered ? job->results.front().has_value() : !job->arrived.empty();
        };
        job->cv.wait(lock, [&] { return available() || job->error; });
        if (!available()) std::rethrow_exception(job->error);
        if (ordered) {
          reply = std::move(*job->results.front());
          job->results.pop_front();
          ++job->first;
        } else {
          reply = std::move(job->arrived.front());
          job->arrived.pop_front();
        }
      }
      ++taken;
      if (reply.size() < kResultHeader) throw Error(errc::corrupt, "multiproc::Pool: a short reply");
      if (reply[12] != kStatusOk) std::rethrow_exception(reply_error(reply));
      return true;
    } catch (...) {
      over = true;
      throw;
    }
  }
};

void StreamDeleter::operator()(StreamState* s) const noexcept {
  try {
    if (std::shared_ptr<PoolCore> core = s->pool.lock()) core->cancel_stream(s->job, s->open);
  } catch (...) {
  }
  delete s;
}

bool stream_next(StreamState& stream, std::string& reply) { return stream.next(reply); }

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

std::unique_ptr<detail::StreamState, detail::StreamDeleter> Pool::open_stream(
    std::unique_ptr<detail::ChunkSource> source, bool ordered) {
  auto job = std::make_shared<detail::JobState>();
  job->kind = ordered ? detail::JobKind::ordered_stream : detail::JobKind::unordered_stream;
  core_->open_stream();
  std::unique_ptr<detail::StreamState, detail::StreamDeleter> s(new detail::StreamState);
  s->pool = core_;
  s->job = std::move(job);
  s->source = std::move(source);
  s->window = detail::kStreamChunksPerWorker * core_->size();
  s->top_up();  // the workers start at once, as in Python
  return s;
}

void Pool::close() { core_->close(); }
void Pool::join() { core_->join(); }
void Pool::terminate() { core_->terminate(); }
std::size_t Pool::size() const noexcept { return core_->size(); }
std::vector<pid_t> Pool::worker_pids() const { return core_->pids(); }

}  // namespace multiproc
