// redis::serve, the worker side (multiproc/redis/pool.hpp; keys and messages in pool_wire.hpp).
#include <multiproc/redis/detail/renewal.hpp>
#include <multiproc/redis/pool.hpp>

#include "../os.hpp"
#include "pool_wire.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <map>
#include <thread>

#include <unistd.h>

namespace multiproc::redis {
namespace {

// Set by stop_serving(): every serve() of the process returns. Lock-free, so that a signal
// handler may store to it.
std::atomic<bool> g_stop_all{false};
static_assert(std::atomic<bool>::is_always_lock_free, "stop_serving() stores from signal handlers");

std::string host_name() {
  char h[256] = {};
  if (::gethostname(h, sizeof h - 1) != 0) return "host";
  std::string s(h);
  for (char& c : s) {
    if (static_cast<unsigned char>(c) <= 0x20) c = '_';
  }
  return s.empty() ? std::string("host") : s;
}

// The exception in flight, as {type, message}.
std::pair<std::string, std::string> describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return {multiproc::detail::demangle(typeid(e).name()), e.what()};
  } catch (...) {
    const std::type_info* t = abi::__cxa_current_exception_type();
    return {t ? multiproc::detail::demangle(t->name()) : std::string("unknown exception"), "(not a std::exception)"};
  }
}

bool transient(const Error& e) {
  if (e.code() == errc::disconnected) return true;
  // A server loading its AOF answers LOADING for a while after a restart.
  const std::string_view w(e.what());
  return e.code() == errc::server_error &&
         (w.find("LOADING") != std::string_view::npos || w.find("BUSY") != std::string_view::npos);
}

struct Shared {
  Shared(Client c, ServeOptions o) : client(std::move(c)), options(std::move(o)) {}
  Client client;
  ServeOptions options;
  std::map<std::string, const detail::TaskEntry*> tasks;
  std::string task_list;  // "a, b, c" for messages
  std::string prefix, queue, workers, shutdown;
  std::string base_shutdown;  // the counter when serve() began ("" until read)
  std::mutex mutex;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> jobs_run{0};

  bool should_stop() const {
    return stopping.load() || g_stop_all.load() || (options.stop && options.stop->load());
  }
};

// A job shorter than this is "short": a worker takes several per round trip (ServeOptions::
// prefetch) while the jobs it runs are short, one at a time otherwise.
constexpr std::chrono::microseconds kShortJob{1000};

struct Finished {
  std::string job_key, cid, element;
};

// Runs one job; returns its result element.
Finished run_job(Shared& s, const std::string& job, const std::string& wid) {
  Finished f;
  const auto eol = job.find('\n');
  const std::string header = job.substr(0, eol);  // all of it when it has no body (malformed)
  // "<cid> <jobno> <tries> <max> <task>"
  std::vector<std::string> parts;
  for (std::size_t pos = 0; pos <= header.size();) {
    auto sp = header.find(' ', pos);
    if (sp == std::string::npos) sp = header.size();
    parts.push_back(header.substr(pos, sp - pos));
    pos = sp + 1;
  }
  if (eol == std::string::npos || parts.size() != 5) {
    std::fprintf(stderr, "multiproc::redis::serve: dropped a malformed job in pool '%s'\n",
                 s.options.name.c_str());
    // The take script keeps every held job that begins "<cid> <digits> " while its call lives
    // (it cannot read the rest): such a job is finished here, as corrupt, so that its call fails
    // instead of the job coming back at every take (a worker looped on one for ever, deaf to
    // shutdown_workers()). A job the script cannot read at all, it drops.
    if (parts.size() >= 2 && !parts[0].empty() && !parts[1].empty() &&
        parts[1].find_first_not_of("0123456789") == std::string::npos) {
      f.cid = parts[0];
      f.job_key = parts[0] + " " + parts[1];
      f.element = parts[1] + " corrupt\nthe job's header cannot be read (" +
                  std::to_string(job.size()) + " bytes)";
    }
    return f;
  }
  f.cid = parts[0];
  f.job_key = parts[0] + " " + parts[1];
  const std::string& task = parts[4];
  const std::string head = parts[1] + " ";
  const std::string_view body(job.data() + eol + 1, job.size() - eol - 1);
  auto it = s.tasks.find(task);
  if (it == s.tasks.end()) {
    f.element = head + "unknown\nno task '" + task + "' on worker " + wid + " (it serves: " +
                s.task_list + ")";
    return f;
  }
  const detail::TaskEntry& t = *it->second;
  detail::JobBody b;
  try {
    b = from_bytes<detail::JobBody>(body);
  } catch (const Error& e) {
    f.element = head + "corrupt\nthe job's bytes cannot be read: " + e.what();
    return f;
  }
  auto& [args_type, result_type, items] = b;
  if (args_type != t.args_type || (!result_type.empty() && result_type != t.result_type)) {
    f.element = head + "mismatch\ntask '" + task + "' is " +
                detail::signature_text(t.args_type, t.result_type) + ", called as " +
                detail::signature_text(args_type, result_type);
    return f;
  }
  std::vector<std::string> results;
  results.reserve(items.size());
  try {
    for (const auto& a : items) results.push_back(t.run(a));
  } catch (...) {
    auto [type, message] = describe_current_exception();
    f.element = head + "err\n" + to_bytes(detail::ErrBody(type, message));
    return f;
  }
  f.element = head + "ok\n" + to_bytes(detail::OkBody(t.result_type, std::move(results)));
  return f;
}

// Whether the call of `job` ("<cid> <jobno> ...") is alive: its key exists (a cheap command,
// where the take script that also checks it costs a dozen). False for a malformed job, and when
// the server cannot say (the take decides then).
bool call_alive(const Client& c, const std::string& prefix, const std::string& job) {
  const auto sp = job.find(' ');
  if (sp == std::string::npos || sp == 0) return false;
  try {
    return c.command({"EXISTS", prefix + ":call:" + job.substr(0, sp)}).integer() == 1;
  } catch (const Error&) {
    return false;
  }
}

void serve_one(Shared& s, const std::string& wid) {
  const Client& c = s.client;
  const Argv keys{s.queue, s.workers, s.prefix + ":inflight:" + wid, s.shutdown};
  const auto lease_ms = std::to_string(s.options.lease.count());
  const auto idle = std::min(s.options.idle_wait, s.options.lease / 3);
  std::vector<Finished> finished;
  std::chrono::milliseconds backoff{50};
  bool leaving = false;
  bool short_jobs = false;  // the last batch's jobs took under kShortJob each
  int refusals = 0;         // takes in a row the server refused (see below)
  for (;;) {
    const bool stop = s.should_stop() ||
                      (s.options.max_tasks != 0 && s.jobs_run.load() >= s.options.max_tasks);
    // Several jobs per round trip only when they are short: a long job held behind another
    // would wait while other workers idle.
    const std::size_t want = stop ? 0 : short_jobs ? s.options.prefetch : 1;
    Argv args{s.prefix, wid, lease_ms, std::to_string(want), std::to_string(finished.size())};
    for (auto& f : finished) {
      args.push_back(f.job_key);
      args.push_back(f.cid);
      args.push_back(f.element);
    }
    Reply r;
    const auto take_sent = Clock::now();
    try {
      r = c.eval(detail::take_script(), keys, args);
      backoff = std::chrono::milliseconds(50);
      refusals = 0;
    } catch (const Error& e) {
      if (!transient(e)) {
        // The server may refuse the take because of a result it carries: one over its
        // proto-max-bulk-len, or over its maxmemory. Thrown out of serve(), that killed every
        // worker the job was retried on, and its caller heard of dead workers (or nothing). So
        // the largest result is replaced by the refusal (its call fails with server_error),
        // then all of them; a server that refuses even that is an error of serve().
        if (finished.empty() || refusals == 2) throw;
        auto refuse = [&e](Finished& f) {
          const auto space = f.element.find(' ');
          f.element = f.element.substr(0, space) + " refused\nthe server refused the result (" +
                      std::to_string(f.element.size()) + " bytes): " + e.what();
        };
        if (++refusals == 1) {
          refuse(*std::max_element(finished.begin(), finished.end(), [](auto& a, auto& b) {
            return a.element.size() < b.element.size();
          }));
        } else {
          for (auto& f : finished) refuse(f);
        }
        continue;
      }
      if (stop) leaving = true;  // give up on a server that is gone while stopping
      if (leaving) return;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      continue;  // `finished` is sent again: storing a result twice is harmless
    }
    finished.clear();
    const auto& e = r.elements();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      const std::string& counter = e.at(0).str();
      if (s.base_shutdown.empty()) {
        s.base_shutdown = counter;
      } else if (counter != s.base_shutdown) {
        s.stopping = true;
      }
    }
    auto run = [&](auto first, auto last) {
      const auto started = Clock::now();
      for (auto it = first; it != last; ++it) {
        Finished f = run_job(s, it->str(), wid);
        if (f.job_key.empty()) continue;  // unreadable even to the take script: it drops it
        finished.push_back(std::move(f));
        ++s.jobs_run;
      }
      short_jobs = Clock::now() - started < kShortJob * static_cast<long>(last - first);
    };
    if (e.size() == 1) {
      if (stop) break;
      // Idle: block on the server until a job comes (moved into our inflight list at once).
      std::optional<Reply> moved;
      try {
        moved = c.call({"BLMOVE", s.queue, keys[2], "RIGHT", "RIGHT",
                        std::to_string(static_cast<double>(idle.count()) / 1000.0)},
                       {}, idle);
      } catch (const Error& err) {
        if (!transient(err)) throw;
      }
      // The job is in our inflight list, where the reaper finds it if we die — as long as our
      // lease was alive when it moved. The take above renewed it (ZADD) less than half a lease
      // before this reply came (so before the move): run the job now, and let the next take
      // store its result, instead of a take only to be handed what BLMOVE already gave us (a
      // script of a dozen commands and a round trip per job for a worker that waits for work:
      // apply_async ran 1.2x faster). A reply later than that (this process stalled: it may have
      // been reaped meanwhile, and then nobody would look at that list) goes through the take,
      // which registers the worker again before it runs anything. The job of a call whose
      // client is gone is not run (pool.hpp): the take drops it.
      if (moved && moved->type() == Reply::Type::string && Clock::now() - take_sent < s.options.lease / 2 &&
          call_alive(c, s.prefix, moved->str())) {
        const Reply* job = &*moved;
        run(job, job + 1);
      }
      continue;
    }
    run(e.begin() + 1, e.end());
  }
  try {
    c.eval(detail::leave_script(), {s.queue, s.workers, keys[2]}, {wid});
  } catch (const Error& err) {
    if (!transient(err)) throw;  // our lease expires instead
  }
}

}  // namespace

void stop_serving() noexcept { g_stop_all.store(true); }

std::size_t serve(std::string_view url, const std::vector<Task>& tasks, ServeOptions options) {
  detail::check_pool_name(options.name, "pool name");
  auto bad = [&](const std::string& why) {
    throw Error(errc::invalid_argument, "multiproc::redis::serve (pool '" + options.name + "'): " + why);
  };
  if (options.concurrency < 1 || options.concurrency > 1024) bad("concurrency must be in [1, 1024]");
  if (options.lease < std::chrono::milliseconds(30)) bad("lease must be at least 30 ms");
  if (options.prefetch < 1) bad("prefetch must be at least 1");
  if (options.idle_wait < std::chrono::milliseconds(10)) bad("idle_wait must be at least 10 ms");
  if (options.heartbeat.count() <= 0) options.heartbeat = options.lease / 3;
  if (options.heartbeat >= options.lease) bad("heartbeat must be shorter than the lease");
  if (tasks.empty()) bad("no tasks to serve");

  Shared s(Client(url, options.connection), options);
  for (const auto& t : tasks) {
    detail::check_pool_name(t.entry().name, "task name");
    if (!s.tasks.emplace(t.entry().name, &t.entry()).second) bad("task '" + t.entry().name + "' given twice");
    s.task_list += (s.task_list.empty() ? "" : ", ") + t.entry().name;
  }
  s.prefix = detail::pool_prefix(options.name);
  s.queue = s.prefix + ":queue";
  s.workers = s.prefix + ":workers";
  s.shutdown = s.prefix + ":shutdown";
  if (g_stop_all.load()) return 0;

  const std::string base = host_name() + ":" + std::to_string(::getpid()) + ":" + unique_id().substr(0, 8);
  std::vector<std::string> wids;
  for (int i = 0; i < options.concurrency; ++i) wids.push_back(base + ":" + std::to_string(i));

  // The heartbeat: every lease of this call, renewed together on the renewal thread.
  Argv beat_args{std::to_string(options.lease.count())};
  beat_args.insert(beat_args.end(), wids.begin(), wids.end());
  const Client beat_client = s.client;
  const std::string workers_key = s.workers;
  const auto period = options.heartbeat;
  detail::Renewal heartbeat(period, [beat_client, workers_key, beat_args, period] {
    beat_client.eval_call(detail::beat_script(), {workers_key}, beat_args, Clock::now() + period);
    return true;
  });

  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(wids.size());
  auto body = [&s, &errors, &wids](std::size_t i) {
    try {
      serve_one(s, wids[i]);
    } catch (...) {
      errors[i] = std::current_exception();
      s.stopping = true;
    }
  };
  for (std::size_t i = 1; i < wids.size(); ++i) threads.emplace_back(body, i);
  body(0);
  for (auto& t : threads) t.join();
  heartbeat.reset();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return s.jobs_run.load();
}

}  // namespace multiproc::redis
