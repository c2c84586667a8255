// Private to the Pool's sources (src/pool/): message layouts, the pool's core (PoolCore, run by
// the manager thread), the worker's loop and an imap stream's consumer side. Not installed.
//
// How the pool works: a manager thread in the parent, one duplex Pipe and one shared "started"
// word per worker.
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
// A call with no callbacks and small tasks (apply_async, an executor's submit, a map of small
// chunks) skips the manager when a worker is idle and nothing is queued: the caller's thread deals
// its tasks out itself — one to each idle worker, then a second (as dispatch() keeps two
// outstanding), the rest kept in the call's backlog — and the thread that then waits for the
// result (get(), wait(), ready(), successful(), and a future's done() and running()) reads the
// replies itself, waiting on those workers' pipes
// (spinning briefly on one, or, with several, looking at each and yielding the CPU between the
// looks, then asleep until one writes), and sends each worker that answers the next task of the
// backlog. The manager does not watch those workers' pipes meanwhile (so it is not woken per
// reply: on a VM where a cross-CPU wake-up costs 50-80 us, a map of 64 tiny tasks went from
// 250 us to 15-19 us) but still checks their liveness every slice; it takes the call over —
// watches the pipes, deals out the backlog — when no one waits for it any more (ready(), a
// timeout, a worker's EOF), when a callback (a future's done-callback, as_completed, wait) is
// added. When work is queued, or the pool closes, the manager reads those pipes too, and takes
// the backlog once none of the call's tasks is out on a worker (manager.cpp). A future sent this
// way is running
// at once (its worker's started word says when it begins): cancel() returns false, as Python's
// does for a call in its executor's call queue. The worker's accounts (outstanding, started) are the same either way, so a death
// is handled as for any other task. Whoever reads a worker's pipe or changes its accounts holds
// io_: the manager while it is awake, a caller while it sends or collects.
//
// Calls: a map or apply is a job with its tasks known up front. An imap stream is a job that
// grows: the consumer's thread reads the input and appends chunks (extend), keeping at most
// kStreamChunksPerWorker chunks per worker submitted but not taken; while a stream is open, a
// closed pool keeps its workers until join(). Every way out of the manager thread fails whatever
// is left (pending, sent, or in a stopped worker), so no call is ever left waiting.
//
// Files: worker.cpp (the worker's loop), manager.cpp (the manager thread: workers, dispatch,
// deaths), jobs.cpp (completing a call: replies, errors, callbacks), stream.cpp (imap streams),
// lifecycle.cpp (the Pool handle; submit, close, terminate, join).
#pragma once

#include <multiproc/pool.hpp>

#include <multiproc/pipe.hpp>
#include <multiproc/queue.hpp>
#include <multiproc/shared_value.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace multiproc::detail {

// Message layouts. Task: [job u64][index u32][trampoline u64][fn u64] payload.
// Result: [job u64][index u32][status u8] payload. Status 0: the encoded result; 1: the task threw,
// payload "type\0message"; 2: the worker died running it (made by the manager), payload the message.
// The index is informational (the manager matches replies by order); an endless stream wraps it.
inline constexpr std::size_t kTaskHeader = kTaskHeaderBytes;
inline constexpr std::size_t kResultHeader = kResultHeaderBytes;
static_assert(kTaskHeader == 8 + 4 + 8 + 8 && kResultHeader == 8 + 4 + 1, "header layouts");
inline constexpr std::size_t kStatusAt = 12;  // the status byte of a result
inline constexpr char kStatusOk = 0;
inline constexpr char kStatusRemoteError = 1;
inline constexpr char kStatusBroken = 2;
inline constexpr std::size_t kWorkerRing = std::size_t{1} << 20;
// The manager waits at most this long for a worker to make room in its ring while it streams a
// task larger than the ring to it: a worker stopped (SIGSTOP) while idle held the manager — and
// so every other worker's next task — until it was continued (an outside probe). The task then
// goes to another worker, and this one gets none until it has read what it was sent.
inline constexpr std::chrono::milliseconds kSendStallLimit{500};
// The part of each ring a pool cycles through, which both processes touch before the first task
// (touch_rings): what the pool has outstanding stays under a quarter of the ring, and a pipe
// starts again from the ring's beginning once a record crosses a sixteenth past that quarter
// (ChannelRef::set_rewind) — so records end within 5/16 of the ring plus one message (typically
// at most kBorrowMaxBytes, a map's chunk). Beyond it pages are mapped as they are first used.
inline constexpr std::size_t kWarmRing = kWorkerRing / 4 + kWorkerRing / 16 + kBorrowMaxBytes;
//! Ring bytes a task message of `bytes` may take: its record headers, padding and, streamed, the
//! total its first chunk carries. Worker::outstanding_bytes adds this per message.
inline constexpr std::size_t ring_share(std::size_t bytes) noexcept { return bytes + 64; }
// A worker's task and reply buffers, and the manager's reply buffer, to begin with (each doubles
// when a message does not fit): a whole record of the pipe, so that a map's chunks (at most
// kBorrowMaxBytes when borrowed) and their replies fit without growing them inside a map.
inline constexpr std::size_t kTaskBuffer = kBorrowMaxBytes;
// Buffers above this size are released after use rather than kept for the next message.
inline constexpr std::size_t kKeepBuffer = std::size_t{16} << 20;
inline constexpr int kEarlyDeathsToBreak = 3;
// An imap stream keeps at most this many chunks per worker submitted but not taken.
inline constexpr std::size_t kStreamChunksPerWorker = 4;
// A caller deals its call out itself only if every task message is at most this long (a whole
// record: a map's borrowed chunk). Its first task to an idle worker then always fits the ring,
// and it sends a second only within a quarter of the ring, so its sends never wait for room.
// (Map of 100,000 longs on Pool(2), eight chunks of 100 KB, dealt by the caller instead of the
// manager: 1.12-1.16x on host A.)
inline constexpr std::size_t kDirectMaxBytes = kBorrowMaxBytes;
// A caller deals its call's tasks out itself at most this many at a time per worker, as dispatch()
// keeps them outstanding.
inline constexpr std::size_t kDirectTasksPerWorker = 2;
// A thread waiting on a worker's pipe for a lone call's reply looks again this often: should the
// manager have taken the reply (then only the call's condition variable is told), or the worker
// be gone, it notices within this.
inline constexpr std::chrono::milliseconds kDirectRecheck{10};
// How long a caller whose call runs on several workers looks at their pipes in turn, yielding the
// CPU between the looks, before it sleeps on one of them (collect_direct).
inline constexpr std::chrono::microseconds kDirectYieldSpin{100};


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

class PoolCore;
// The pool whose io_ this thread holds (the manager thread, or a caller collecting a reply), so
// that what it calls from there (a callback submitting a call) does not take io_ again.
inline thread_local const PoolCore* t_io_holder = nullptr;
struct IoHolder {
  explicit IoHolder(const PoolCore* pool) noexcept : previous(t_io_holder) { t_io_holder = pool; }
  ~IoHolder() { t_io_holder = previous; }
  IoHolder(const IoHolder&) = delete;
  IoHolder& operator=(const IoHolder&) = delete;
  const PoolCore* previous;
};

//! The error a failed reply (status not kStatusOk) stands for: RemoteError or BrokenPool.
std::exception_ptr reply_error(std::string_view reply);

//! The worker's whole life: run the initializer, then tasks until the pipe closes or the budget
//! is spent. Runs in the forked child. `started` counts the tasks it has taken up. Returns: its
//! exit code.
int worker_main(const Connection& conn, const std::function<void()>& init, std::size_t maxtasks,
                const RawValue<std::uint64_t>& started);

//! The pool itself, shared by the Pool handle and its streams (weakly). Callers' threads submit
//! work (lifecycle.cpp, stream.cpp); one manager thread owns the workers (manager.cpp) and hands
//! their replies to the jobs (jobs.cpp).
// Throws: Error(errc::bad_state) in a process other than the one that made the call (a forked
// child's copy of a result, a stream or a future is never filled).
void check_job_owner(const JobState& job);

class PoolCore : public std::enable_shared_from_this<PoolCore> {
 public:
  //! Checks the worker count; start() then starts the manager thread and the workers.
  PoolCore(int processes, std::function<void()> init, std::size_t maxtasks);
  ~PoolCore();
  //! Starts the manager thread, which forks the workers; returns once they run. Throws: why
  //! they could not be started (nothing is left running).
  void start();

  void submit(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks,
              std::function<void(std::size_t, std::size_t)> progress);
  // Streams: open (a new call), extend with more chunks, end of input, cancel.
  void open_stream();
  void extend(const std::shared_ptr<JobState>& job, std::vector<PoolTask> tasks);
  void end_stream_input();
  void cancel_stream(const std::shared_ptr<JobState>& job, bool open);
  // Executor futures: cancel one call whose tasks are all still queued (false otherwise); cancel
  // every future still queued (shutdown(cancel_futures)). Callbacks run on this thread.
  bool cancel(const std::shared_ptr<JobState>& job);
  void cancel_queued_futures();
  void close();
  void terminate();
  void join();
  std::size_t size() const noexcept { return static_cast<std::size_t>(n_); }
  BufferCache& buffers() noexcept { return buffers_; }
  std::vector<pid_t> pids() const {
    std::lock_guard<std::mutex> lock(m_);
    return pids_;
  }
  static void finish(const std::shared_ptr<JobState>& job, std::exception_ptr error);
  static void finish(JobState& job, std::exception_ptr error);
  // A call its caller deals out (job.direct_pool): waits on the pipes of the workers that hold its
  // tasks, reads their replies and tops them up from its backlog, until none holds any (the call
  // is answered, or the manager's now), or `deadline` (nullptr: none) passed; hands the call over
  // to the manager when it leaves with tasks still out. With `once`, looks once. A callback
  // (t_io_holder set) hands it over at once. No memory, or a reply its pipe cannot give, fails
  // the call with that error.
  void collect_direct(JobState& job, const Clock::time_point* deadline, bool once);
  // Makes the manager read the reply of a call sent straight to a worker.
  void hand_over(JobState& job);
  // Runs an executor future's done hook; an exception from it is printed and dropped.
  static void run_done_hook(const std::function<void()>& fn) noexcept;

 private:
  enum class State { running, closing, terminating, stopped };
  // A task of a call: waiting in pending_ (Pending), or sent to a worker and not answered yet
  // (Sent: the message is kept, to send it again should the worker exit before starting it).
  //
  // A borrowed payload (a chunk of map()'s input, PoolTask::borrowed) lives in the caller's memory,
  // which may go once the call finishes (map() returns then). It is read only by a send, with io_
  // held, after dispatch() or try_direct() saw under the job's mutex that the call was not
  // finishing — and a map's call is finished only with io_ held (by deliver() and
  // fail_everything(); cancelling is for futures and streams, which never borrow), so no call
  // finishes between that look and the send.
  struct QueuedTask {
    std::shared_ptr<JobState> job;
    std::size_t index;
    std::string message;  // the task message: its header, then the payload unless borrowed
    const std::byte* borrowed = nullptr;
    std::size_t borrowed_bytes = 0;
    std::size_t bytes() const noexcept { return message.size() + borrowed_bytes; }
  };
  using Pending = QueuedTask;
  using Sent = QueuedTask;
  struct Worker {
    std::unique_ptr<Process> process;
    std::shared_ptr<Connection> conn;
    RawValue<std::uint64_t> started;  // tasks it has taken up (written by the worker only)
    std::deque<Sent> outstanding;     // sent, not answered, in the order sent
    std::size_t outstanding_bytes = 0;
    std::size_t sent = 0;
    std::uint64_t answered = 0;
    bool ready = false;  // it ran its initializer and said so
    bool direct = false;  // its outstanding tasks (one call's) were sent by a caller (see the top)
    bool stalled = false;  // a send to it gave up (kSendStallLimit): none until its ring is drained
  };
  // Requires io_. Whether w may be sent a task: not while a send to it gave up and it has not
  // read what it was sent (then it may again). Every sender asks: the manager and the callers
  // that deal their own calls out.
  static bool sendable(Worker& w);

  void run() noexcept;
  // The manager's loop while running, with io_ held but while it waits.
  void serve(std::unique_lock<std::mutex>& io);
  // Deals a call's tasks out to idle workers itself (at most kDirectTasksPerWorker each; the
  // rest wait in its backlog for the thread that collects the replies), if a worker is idle and
  // nothing is queued. Returns: whether it did (then the call is submitted). Throws: as
  // check_accepting.
  bool try_direct(const std::shared_ptr<JobState>& job, std::vector<PoolTask>& tasks);
  // Requires io_. The workers whose outstanding tasks are job's and were sent by a caller.
  std::vector<Worker*> direct_workers(const JobState& job);
  // Requires io_. Sends the next tasks of job's backlog (if any) to workers with room for them:
  // an idle one, or one of job's with fewer than kDirectTasksPerWorker outstanding whose bytes
  // stay under a quarter of its ring (as dispatch()). A finishing call's backlog is dropped; one
  // whose send failed (a worker gone) goes to the manager (queue_backlog).
  void top_up_direct(JobState& job);
  // Requires io_. Hands job's backlog (every backlog when null) to the manager: to the front of
  // pending_, in order, and kicks it.
  void queue_backlog(const JobState* job);
  void spawn_worker();
  void dispatch();
  void read_results(Worker& w);
  void handle_result(Worker& w, std::string_view msg);
  void deliver(const std::shared_ptr<JobState>& job, std::size_t index, std::string_view reply);
  void handle_exit(std::size_t i);
  void deliver_deaths();
  void shut_down_workers(bool kill);
  static void run_callbacks(JobState& job, std::vector<std::function<void(JobState&)>>& callbacks);
  void fail_everything(std::exception_ptr error);
  void update_pids();
  void kick() { kick_.try_put(1); }
  // Sends a queued task's message (and its borrowed payload) to w. Throws: as send_bytes.
  static void send_task(const Worker& w, const QueuedTask& task);
  // Requires io_ held. Sends `task` to w (send_task) and moves it to w's outstanding tasks, the
  // call's running() following it; returns false, with `task` given back, if the worker is gone.
  bool send_to(Worker& w, Pending& task);
  // Requires m_ held. Throws: the pool's BrokenPool, or Error(errc::bad_state) unless running.
  void check_accepting() const;

 public:
  // Whether the calling process is the one that made the pool. A forked child has a copy of the
  // PoolCore but not its manager thread, and the workers' pipes are the parent's: a child that
  // used them took the parent's replies as its own (an outside probe: thousands of wrong results
  // a second), and its destructor killed the parent's workers.
  bool foreign() const noexcept { return current_pid() != owner_; }
  // Throws: Error(errc::bad_state) naming `action`, in a process other than the pool's.
  void check_owner(const char* action) const {
    if (foreign()) foreign_use(action);
  }

 private:
  [[noreturn]] void foreign_use(const char* action) const;
  const pid_t owner_ = current_pid();

  const int n_;
  const std::function<void()> init_;
  const std::size_t maxtasks_;
  std::size_t workers_started_ = 0;  // for their names: PoolWorker-1, -2, ... (never reused)

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

  // Guards workers_' accounts and reading their pipes (see the top). Taken before m_. The
  // manager alone adds or removes workers (so a worker stays put while the manager sleeps).
  std::mutex io_;
  std::vector<Worker> workers_;
  std::string scratch_;  // replies are read into this, reused (io_)
  BufferCache buffers_;  // task messages answered come back here for the next map's chunks
  std::deque<Sent> orphaned_;    // sent to workers shut down before their calls failed (io_)
  // The tasks not sent yet of calls their callers deal out (try_direct), in order, until a
  // worker of theirs has room (io_). The manager takes a backlog over (into pending_) when its
  // call is handed over, or when none of its tasks is out on a worker.
  struct Backlog {
    std::shared_ptr<JobState> job;
    std::deque<Pending> tasks;
  };
  std::vector<Backlog> backlogs_;
  // The failure replies of tasks whose worker died while running them (io_), delivered once the
  // replacement is started (deliver_deaths), so that a caller woken by the failure finds the pool
  // whole again, and does not run while the manager forks (an ASan runtime is not fork-safe).
  std::vector<Sent> deaths_;
  int early_deaths_ = 0;
  Queue<char> kick_{64};
  std::mutex started_mutex_;
  std::condition_variable started_cv_;
  bool started_ = false;
  std::exception_ptr start_error_;
  bool start_failed_ = false;  // start() threw: ~PoolCore has nothing to stop
  std::thread manager_;
  std::mutex join_mutex_;
  bool joined_ = false;
};

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
  void top_up();
  // The next reply (header first); false at the end. Throws: as stream_next.
  bool next(std::string& reply);
};

}  // namespace multiproc::detail
