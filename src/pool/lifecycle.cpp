// The Pool handle and the callers' side of PoolCore: starting the pool, submitting calls and
// stream chunks, close, terminate, join (see pool_core.hpp for the whole).
#include "pool_core.hpp"

#include "../os.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ios>

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

// The most workers a Pool starts (pool.hpp documents it).
constexpr int kMaxPoolProcesses = 1024;

// The tasks (processes and threads) of this real user now, which RLIMIT_NPROC counts: the sum of
// "Threads:" over /proc/<pid>/status whose real uid is ours. A snapshot; -1 if /proc is missing.
long tasks_of_user(uid_t uid) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return -1;
  long tasks = 0;
  char path[300];  // "/proc/" + a d_name of up to 255 bytes + "/status"
  char buf[4096];
  while (const dirent* d = ::readdir(proc)) {
    if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
    std::snprintf(path, sizeof path, "/proc/%s/status", d->d_name);
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // exited meanwhile
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    const char* u = std::strstr(buf, "\nUid:");
    const char* t = std::strstr(buf, "\nThreads:");
    unsigned long real = 0;
    long threads = 0;
    if (u == nullptr || t == nullptr || std::sscanf(u, "\nUid: %lu", &real) != 1 ||
        std::sscanf(t, "\nThreads: %ld", &threads) != 1) {
      continue;
    }
    if (real == uid) tasks += threads;
  }
  ::closedir(proc);
  return tasks;
}

// Refuses a worker count the system could not start (see Pool's comment in pool.hpp).
void check_worker_count(int processes) {
  if (processes <= 0) {
    throw Error(errc::invalid_argument,
                "multiproc::Pool: the number of processes must be at least 1, not " +
                    std::to_string(processes));
  }
  if (processes > kMaxPoolProcesses) {
    throw Error(errc::invalid_argument,
                "multiproc::Pool: " + std::to_string(processes) + " processes is more than the " +
                    std::to_string(kMaxPoolProcesses) + " a Pool may start");
  }
  // RLIMIT_NPROC binds every user but root (the kernel does not apply it to uid 0).
  const uid_t uid = ::getuid();
  rlimit limit{};
  if (uid == 0 || ::getrlimit(RLIMIT_NPROC, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return;
  const long running = tasks_of_user(uid);
  if (running < 0) return;
  const auto room = static_cast<long long>(limit.rlim_cur) - running;
  if (processes > room) {
    throw Error(errc::invalid_argument,
                "multiproc::Pool: " + std::to_string(processes) +
                    " processes would exceed RLIMIT_NPROC (" + std::to_string(limit.rlim_cur) +
                    " for this user, who runs " + std::to_string(running) +
                    " processes and threads now)");
  }
}

}  // namespace

PoolCore::PoolCore(int processes, std::function<void()> init, std::size_t maxtasks)
    : n_(processes), init_(std::move(init)), maxtasks_(maxtasks) {
  check_worker_count(processes);
}

void PoolCore::start() {
  // Called once the Pool holds this core, not from the constructor: the manager thread forks the
  // workers, and a worker forked while make_shared was still running had a Pool whose core_ was
  // null — a task that used the pool it runs on (its address passed in) crashed its worker with
  // SIGSEGV instead of getting Error(bad_state), as every other foreign copy does.
  //
  // The standard streams exist before the manager thread starts: it flushes std::cout before each
  // fork (flush_stdio), and a Pool at namespace scope is built during static initialisation,
  // possibly before the library's iostreams are (a global Pool crashed the program at start-up).
  // Made here, on the constructing thread, rather than only on the manager thread.
  static const std::ios_base::Init iostreams;
  manager_ = std::thread([this] { run(); });
  // Return once the workers exist (or report why they could not be started).
  std::unique_lock<std::mutex> lock(started_mutex_);
  started_cv_.wait(lock, [&] { return started_; });
  if (start_error_) {
    lock.unlock();
    manager_.join();
    start_failed_ = true;  // ~PoolCore: nothing runs, nothing to stop
    std::rethrow_exception(start_error_);
  }
}

PoolCore::~PoolCore() {
  if (start_failed_) return;
  if (foreign()) {  // a forked child's copy (~Pool keeps it, but a copy could end elsewhere)
    if (manager_.joinable()) manager_.detach();  // the thread is the parent's: marked, not run
    return;
  }
  terminate();
  join();
}

bool PoolCore::try_direct(const std::shared_ptr<JobState>& job, std::vector<PoolTask>& tasks) {
  if (t_io_holder != nullptr) return false;  // a callback, on a thread that holds some pool's io_
  std::unique_lock<std::mutex> io(io_, std::try_to_lock);
  if (!io.owns_lock()) return false;  // the manager is at work: it dispatches
  {
    std::lock_guard<std::mutex> lock(m_);
    check_accepting();
    if (!pending_.empty()) return false;  // first come, first served
    const bool idle = std::any_of(workers_.begin(), workers_.end(), [&](Worker& w) {
      return w.ready && w.outstanding.empty() && (maxtasks_ == 0 || w.sent < maxtasks_) &&
             sendable(w);
    });
    if (!idle) return false;
    const std::uint64_t id = next_job_++;
    for (std::size_t i = 0; i < tasks.size(); ++i) stamp(tasks[i], id, i);
  }
  job->direct_pool = weak_from_this();
  Backlog b{job, {}};
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    b.tasks.push_back(
        {job, i, std::move(tasks[i].message), tasks[i].borrowed, tasks[i].borrowed_bytes});
  }
  backlogs_.push_back(std::move(b));
  // A borrowed payload (map()'s input) is read on its caller's thread, which holds io_: the call
  // cannot finish meanwhile (its replies are read only with io_ held).
  top_up_direct(*job);
  // What could not be sent at once waits for a thread that collects, which map() is about to be;
  // map_async's caller may not ask for a long time, and its call must run meanwhile.
  if (!job->caller_waits) queue_backlog(job.get());
  return true;
}

void PoolCore::foreign_use(const char* action) const {
  throw Error(errc::bad_state, std::string("multiproc::Pool: ") + action + " in process " +
                                   std::to_string(current_pid()) + ", but the pool belongs to process " +
                                   std::to_string(owner_) +
                                   ", which made it: its manager thread and its workers do not "
                                   "follow a fork (make a Pool in the child)");
}

void PoolCore::submit(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks,
                      std::function<void(std::size_t, std::size_t)> progress) {
  check_owner("a call");
  job->kind = JobKind::call;
  job->tasks = tasks.size();
  job->results.resize(tasks.size());
  job->progress = std::move(progress);
  // A small call with nothing to run on the manager thread may skip it (see pool_core.hpp).
  if (!tasks.empty() && !job->progress && job->on_finish.empty() &&
      std::all_of(tasks.begin(), tasks.end(), [](const PoolTask& t) {
        return t.message.size() + t.borrowed_bytes <= kDirectMaxBytes;
      }) &&
      try_direct(job, tasks)) {
    return;
  }
  {
    std::lock_guard<std::mutex> lock(m_);
    check_accepting();
    if (!tasks.empty()) {
      const std::uint64_t id = next_job_++;
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        stamp(tasks[i], id, i);
        pending_.push_back(
            {job, i, std::move(tasks[i].message), tasks[i].borrowed, tasks[i].borrowed_bytes});
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
  check_owner("imap");
  std::lock_guard<std::mutex> lock(m_);
  check_accepting();
  ++open_streams_;
}

void PoolCore::extend(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks) {
  check_owner("imap");
  {
    std::lock_guard<std::mutex> lock(m_);
    if (broken_) std::rethrow_exception(broken_);
    // Joining: a stream over an endless input (or one read as fast as the workers answer) would
    // otherwise keep pending_ full for ever, and join() — shutdown(wait) — never return.
    if (state_ == State::terminating || state_ == State::stopped || joining_) {
      throw Error(errc::bad_state,
                  "multiproc::Pool: the pool was terminated or joined before the stream read all "
                  "its input");
    }
    std::lock_guard<std::mutex> job_lock(job->mutex);
    for (PoolTask& t : tasks) {
      const std::size_t index = job->tasks++;
      stamp(t, 0, index);
      if (job->kind == JobKind::ordered_stream) job->results.emplace_back();
      pending_.push_back({job, index, std::move(t.message), t.borrowed, t.borrowed_bytes});
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
  if (foreign()) return;  // a forked child's copy of a stream, destroyed there: not its to end
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

namespace {
std::exception_ptr cancelled_error() {
  return std::make_exception_ptr(
      CancelledError("multiproc::Future: cancelled before a worker took it up"));
}
}  // namespace

bool PoolCore::cancel(const std::shared_ptr<JobState>& job) {
  check_owner("cancel()");
  {
    std::lock_guard<std::mutex> lock(m_);
    // Under m_, as dispatch takes tasks from pending_: a task found here has not been sent.
    const auto queued = static_cast<std::size_t>(
        std::count_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.job == job; }));
    {
      std::lock_guard<std::mutex> job_lock(job->mutex);
      if (job->completing || queued == 0 || queued != job->tasks - job->done) return false;
      job->cancelled = true;
    }
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                  [&](const Pending& p) { return p.job == job; }),
                   pending_.end());
  }
  // None of its tasks is anywhere now, so nothing else can finish it first.
  finish(job, cancelled_error());
  return true;
}

void PoolCore::cancel_queued_futures() {
  check_owner("shutdown(cancel_futures)");
  std::vector<std::shared_ptr<JobState>> cancelled;
  {
    std::lock_guard<std::mutex> lock(m_);
    // A future is one task: queued means wholly queued.
    const auto take = [&](const Pending& p) {
      if (!p.job->future) return false;
      std::lock_guard<std::mutex> job_lock(p.job->mutex);
      if (!p.job->completing) {
        p.job->cancelled = true;
        cancelled.push_back(p.job);
      }
      return true;
    };
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(), take), pending_.end());
  }
  for (const auto& job : cancelled) finish(job, cancelled_error());
}

bool cancel_job(const std::weak_ptr<PoolCore>& pool, const std::shared_ptr<JobState>& job) {
  const std::shared_ptr<PoolCore> core = pool.lock();
  return core && core->cancel(job);
}

void PoolCore::close() {
  check_owner("close()");
  {
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::running) state_ = State::closing;
  }
  kick();
}

void PoolCore::terminate() {
  check_owner("terminate()");
  std::vector<pid_t> workers;
  {
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::running || state_ == State::closing) state_ = State::terminating;
    workers = pids_;
  }
  // Killed here, not only by the manager: a thread holding io_ may be inside a reply from a worker
  // that stopped (SIGSTOP) in the middle of it, and waits for the rest until that worker dies —
  // the manager, which waits for io_, would never get to it. A worker replaced since pids_ was
  // written is not signalled (the one that replaced it is the manager's to kill).
  signal_children(workers, SIGKILL);
  kick();
}

void PoolCore::join() {
  check_owner("join()");
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
    : core_(std::make_shared<detail::PoolCore>(processes, std::move(initializer), maxtasksperchild)) {
  core_->start();  // the workers are forked with core_ set (PoolCore::start says why)
}

Pool::~Pool() {
  if (core_->foreign()) {
    // A forked child's copy (it exits with its own destructors: a raw fork that returns from
    // main). The workers, the manager thread and the pipes are its parent's: touch none of them,
    // and never destroy the copy (its std::thread would terminate the child). Kept reachable, so
    // that a leak checker does not count it.
    static auto* abandoned = new std::vector<std::shared_ptr<detail::PoolCore>>;
    try {
      abandoned->push_back(std::move(core_));
    } catch (...) {  // no memory: ~PoolCore runs here, detaches the parent's thread and signals
    }                  // nobody (its Process members find the workers are not this child's)
    return;
  }
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

detail::BufferCache* Pool::buffers() noexcept { return &core_->buffers(); }
void Pool::close() { core_->close(); }
void Pool::join() { core_->join(); }
void Pool::terminate() { core_->terminate(); }
std::size_t Pool::size() const noexcept { return core_->size(); }
std::vector<pid_t> Pool::worker_pids() const { return core_->pids(); }

}  // namespace multiproc
