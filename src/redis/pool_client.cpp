// redis::Pool, the client side: submitting jobs, reading results, renewing live calls
// (multiproc/redis/pool.hpp; the keys and messages are in pool_wire.hpp).
#include <multiproc/redis/detail/renewal.hpp>
#include <multiproc/redis/pool.hpp>

#include "../os.hpp"
#include "pool_wire.hpp"

#include <algorithm>
#include <cctype>
#include <map>

#include <unistd.h>

namespace multiproc::redis {
namespace detail {

void check_pool_name(const std::string& name, const char* what) {
  const bool bad_char = std::any_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
  if (name.empty() || name.size() > 200 || bad_char) {
    throw Error(errc::invalid_argument, std::string("multiproc::redis: ") + what + " '" + name +
                                            "': must be 1 to 200 bytes without blanks or control "
                                            "characters");
  }
}

const Script& take_script() {
  static const Script s(std::string(kReapLua) + kTakeLua, "pool_take");
  return s;
}
const Script& client_reap_script() {
  static const Script s(std::string(kReapLua) + kClientReapLua, "pool_reap");
  return s;
}
const Script& beat_script() {
  static const Script s(std::string(kReapLua) + kBeatLua, "pool_beat");
  return s;
}
const Script& leave_script() {
  static const Script s(kLeaveLua, "pool_leave");
  return s;
}
const Script& live_script() {
  static const Script s(std::string(kReapLua) + kLiveLua, "pool_live");
  return s;
}

std::string signature_text(const std::string& args_tuple, const std::string& result) {
  std::string a = multiproc::detail::demangle(args_tuple.c_str());
  // "std::tuple<long, int>" -> "(long, int)"
  const std::string tuple = "std::tuple<";
  if (a.compare(0, tuple.size(), tuple) == 0 && a.back() == '>') {
    a = "(" + a.substr(tuple.size(), a.size() - tuple.size() - 1) + ")";
  }
  std::string r = result.empty() ? std::string("any") : multiproc::detail::demangle(result.c_str());
  return a + " -> " + r;
}

// What the renewal thread needs (never the PoolCore itself, which owns the Renewal).
struct Registry {
  Client client;
  std::string prefix;
  std::chrono::milliseconds ttl;
  std::mutex mutex;
  // Calls to renew, and whose results a waiting thread may read along with its own (see
  // CallState::claim_companions).
  std::map<std::string, std::weak_ptr<CallState>> live;
  std::vector<std::string> to_delete;   // keys of finished calls, deleted with the next command

  Registry(Client c, std::string p, std::chrono::milliseconds t)
      : client(std::move(c)), prefix(std::move(p)), ttl(t) {}

  std::vector<std::string> take_deletes() {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<std::string> d;
    d.swap(to_delete);
    return d;
  }
  void renew() {
    std::vector<Argv> cmds;
    {
      std::lock_guard<std::mutex> lock(mutex);
      const std::string ms = std::to_string(ttl.count());
      for (const auto& [cid, state] : live) {
        cmds.push_back({"PEXPIRE", prefix + ":call:" + cid, ms});
        cmds.push_back({"PEXPIRE", prefix + ":result:" + cid, ms});
      }
    }
    auto dels = take_deletes();
    if (!dels.empty()) {
      Argv del{"UNLINK"};
      del.insert(del.end(), dels.begin(), dels.end());
      cmds.push_back(std::move(del));
    }
    if (!cmds.empty()) client.pipeline(cmds, Clock::now() + std::max(ttl / 3, std::chrono::milliseconds(100)));
  }
};

struct PoolCore {
  PoolOptions options;
  std::string prefix, queue, workers, shutdown;
  std::shared_ptr<Registry> registry;
  std::mutex renewal_mutex;
  Renewal renewal;         // started with the first call
  pid_t renewal_pid = 0;   // the process it renews in: a forked child starts its own

  PoolCore(std::string_view url, PoolOptions o)
      : options(std::move(o)),
        prefix(pool_prefix(options.name)),
        queue(prefix + ":queue"),
        workers(prefix + ":workers"),
        shutdown(prefix + ":shutdown"),
        registry(std::make_shared<Registry>(Client(url, options.connection), prefix,
                                            options.result_ttl)) {}
  ~PoolCore() { renewal.reset(); }

  const Client& client() const { return registry->client; }
  std::string describe() const {
    return "multiproc::redis::Pool '" + options.name + "' on " + client().describe();
  }
  void start_renewal() {
    std::lock_guard<std::mutex> lock(renewal_mutex);
    // A forked child inherits `renewal` but not the renewal thread's entry (renewal.hpp).
    if (renewal.active() && renewal_pid == ::getpid()) return;
    renewal_pid = ::getpid();
    const auto period = std::max(options.result_ttl / 3, std::chrono::milliseconds(5));
    renewal = Renewal(period, [r = registry] {
      r->renew();
      return true;
    });
  }
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Result

std::string Result::type_name() const { return multiproc::detail::demangle(type_.c_str()); }

void Result::check(const char* wanted) const {
  if (type_ != wanted) {
    throw Error(errc::type_mismatch, "multiproc::redis::Result: the task returned a " +
                                         multiproc::detail::demangle(type_.c_str()) + ", read as a " +
                                         multiproc::detail::demangle(wanted));
  }
}

// ---------------------------------------------------------------------------------------------
// CallState

namespace detail {

CallState::CallState(std::shared_ptr<PoolCore> core, std::string call_id, std::string task,
                     std::vector<std::size_t> job_offsets, Progress progress)
    : core_(std::move(core)),
      call_id_(std::move(call_id)),
      task_(std::move(task)),
      offsets_(std::move(job_offsets)),
      progress_(std::move(progress)),
      items_(offsets_.back()),
      job_done_(offsets_.size() - 1, false),
      next_reap_(Clock::now() + core_->options.reap_interval),
      owner_(::getpid()) {
  if (job_done_.empty()) finished_ = true;  // an empty map
}

CallState::~CallState() {
  if (finished_) return;
  // Dropped unfinished: no more renewals; its keys expire after result_ttl and workers then drop
  // its queued jobs.
  std::lock_guard<std::mutex> lock(core_->registry->mutex);
  core_->registry->live.erase(call_id_);
}

std::string CallState::describe() const { return core_->describe() + ": task '" + task_ + "'"; }

bool CallState::finished() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_;
}

void CallState::rethrow() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_) std::rethrow_exception(error_);
}

std::pair<std::size_t, std::size_t> CallState::progress() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {items_done_, items_.size()};
}

void CallState::fail(std::exception_ptr e) {
  if (finished_) return;
  error_ = std::move(e);
  complete();
}

void CallState::complete() {
  finished_ = true;
  {
    auto& r = *core_->registry;
    std::lock_guard<std::mutex> lock(r.mutex);
    r.live.erase(call_id_);
    // Left-over keys go with the client's next command (a stray repeat of a job may still add
    // to the result stream: the call key gone, workers store nothing more).
    r.to_delete.push_back(core_->prefix + ":call:" + call_id_);
    r.to_delete.push_back(core_->prefix + ":result:" + call_id_);
  }
  cv_.notify_all();
}

void CallState::apply(const std::string& element) {
  if (finished_) return;
  const auto eol = element.find('\n');
  const auto space = element.find(' ');
  if (eol == std::string::npos || space == std::string::npos || space > eol) return;
  std::size_t job = 0;
  try {
    job = std::stoul(element.substr(0, space));
  } catch (const std::exception&) {
    return;
  }
  if (job >= job_done_.size() || job_done_[job]) return;  // a repeat: the first result counts
  const std::string status = element.substr(space + 1, eol - space - 1);
  const std::string_view body(element.data() + eol + 1, element.size() - eol - 1);
  job_done_[job] = true;
  ++jobs_done_;
  const std::string who = core_->describe() + ": task '" + task_ + "': ";
  try {
    if (status == "ok") {
      auto [type, results] = from_bytes<OkBody>(body);
      const std::size_t first = offsets_[job], count = offsets_[job + 1] - first;
      if (results.size() != count) {
        throw Error(errc::corrupt, who + "a worker sent " + std::to_string(results.size()) +
                                       " results for a chunk of " + std::to_string(count));
      }
      for (std::size_t i = 0; i < count; ++i) items_[first + i] = std::move(results[i]);
      result_type_ = std::move(type);
      items_done_ += count;
    } else if (status == "err") {
      auto [type, message] = from_bytes<ErrBody>(body);
      throw RemoteError(type, message);
    } else if (status == "mismatch") {
      throw Error(errc::type_mismatch, who + std::string(body));
    } else if (status == "unknown") {
      throw Error(errc::not_found, who + std::string(body));
    } else if (status == "broken") {
      throw BrokenPool(who + std::string(body));
    } else if (status == "refused") {  // the server would not store the result
      throw Error(errc::server_error, who + std::string(body));
    } else {
      throw Error(errc::corrupt, who + std::string(body));
    }
  } catch (const Error& e) {
    // A reply body that cannot be read (a damaged stream entry): the codec's message names only
    // the type, so say whose result it was (an outside probe).
    if (e.code() == make_error_code(errc::corrupt) && std::string_view(e.what()).rfind(who, 0) != 0) {
      fail(std::make_exception_ptr(
          Error(errc::corrupt, who + "a worker's reply cannot be read: " + e.what())));
    } else {
      fail(std::current_exception());
    }
    return;
  } catch (...) {
    fail(std::current_exception());
    return;
  }
  if (jobs_done_ == job_done_.size()) complete();
}

// At most this many other calls' results are read along with a call's own (claim_companions).
constexpr std::size_t kCompanions = 63;

std::vector<std::shared_ptr<CallState>> CallState::claim_companions() {
  std::vector<std::shared_ptr<CallState>> seen;
  seen.reserve(kCompanions);
  const pid_t me = ::getpid();
  {
    auto& r = *core_->registry;
    std::lock_guard<std::mutex> lock(r.mutex);
    for (const auto& [cid, state] : r.live) {
      if (seen.size() == kCompanions) break;
      if (cid == call_id_) continue;
      auto p = state.lock();
      if (p && p->owner_ == me) seen.push_back(std::move(p));
    }
  }
  std::vector<std::shared_ptr<CallState>> out;
  out.reserve(seen.size());  // no allocation between a claim and its push_back: no lost claim
  for (auto& p : seen) {
    std::lock_guard<std::mutex> lock(p->mutex_);
    if (!p->finished_ && !p->fetching_ && p->waiters_ == 0 && !p->progress_) {
      p->fetching_ = true;
      out.push_back(p);
    }
  }
  return out;  // `seen` may hold the last owner of a call: its destructor runs here, lock-free
}

void CallState::release_companions(const std::vector<std::shared_ptr<CallState>>& companions,
                                   const std::vector<std::vector<std::string>>& theirs) noexcept {
  static const std::vector<std::string> none;
  for (std::size_t i = 0; i < companions.size(); ++i) {
    CallState& o = *companions[i];
    std::lock_guard<std::mutex> lock(o.mutex_);
    try {
      o.absorb(i < theirs.size() ? theirs[i] : none);
    } catch (...) {  // no memory for a result: it is read again by the call's next fetch
      o.fetching_ = false;
      o.cv_.notify_all();
    }
  }
}

std::vector<std::string> CallState::fetch(std::optional<Clock::time_point> until, bool block,
                                          const std::vector<std::shared_ptr<CallState>>& companions,
                                          std::vector<std::vector<std::string>>* theirs) {
  // Reads the stream after last_id_. Non-destructive: a reply lost to a broken connection or a
  // passed deadline loses nothing (the next read starts at the same place).
  const Client& c = core_->client();
  const std::string result = core_->prefix + ":result:";
  if (theirs != nullptr) theirs->assign(companions.size(), {});
  std::vector<std::string> out;
  Argv argv{"XREAD", "COUNT", "100000"};
  std::chrono::milliseconds block_ms{0};
  if (block) {
    auto slice = core_->options.reap_interval;
    if (until) {
      slice = std::min(slice, std::chrono::duration_cast<std::chrono::milliseconds>(*until - Clock::now()));
    }
    block_ms = std::max(slice, std::chrono::milliseconds(1));
    argv.push_back("BLOCK");
    argv.push_back(std::to_string(block_ms.count()));
  }
  argv.push_back("STREAMS");
  argv.push_back(result + call_id_);
  for (const auto& o : companions) argv.push_back(result + o->call_id_);
  argv.push_back(last_id_);
  for (const auto& o : companions) argv.push_back(o->last_id_);
  std::optional<Reply> r = c.call(argv, until, block_ms);
  if (!r || r->is_nil()) return out;
  for (const auto& stream : r->elements()) {
    // Whose stream: ours, or a companion's (the server names each stream it answers for).
    CallState* who = this;
    std::vector<std::string>* into = &out;
    const std::string& key = stream[0].str();
    if (key.compare(result.size(), std::string::npos, call_id_) != 0) {
      who = nullptr;
      for (std::size_t i = 0; i < companions.size() && theirs != nullptr; ++i) {
        if (key.compare(result.size(), std::string::npos, companions[i]->call_id_) == 0) {
          who = companions[i].get();
          into = &(*theirs)[i];
          break;
        }
      }
      if (who == nullptr) continue;  // not a stream we asked for
    }
    for (const auto& entry : stream[1].elements()) {
      who->last_id_ = entry[0].str();
      const auto& fields = entry[1];
      if (fields.size() >= 2) into->push_back(fields[1].str());
    }
  }
  return out;
}

std::pair<std::size_t, std::size_t> CallState::absorb(const std::vector<std::string>& got) {
  fetching_ = false;
  const std::size_t before = items_done_;
  for (const auto& e : got) apply(e);
  cv_.notify_all();
  return {before, items_done_};
}

bool CallState::poll() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (finished_ || fetching_) return finished_;
  fetching_ = true;
  lock.unlock();
  std::vector<std::string> got;
  std::exception_ptr err;
  try {
    got = fetch(Clock::now() + core_->options.connection.command_timeout, false);
  } catch (...) {
    err = std::current_exception();
  }
  lock.lock();
  const auto [before, done] = absorb(got);
  const auto total = items_.size();
  const bool fin = finished_;
  lock.unlock();
  if (err) std::rethrow_exception(err);
  if (progress_ && done != before) progress_(done, total);
  return fin;
}

bool CallState::wait_until(std::optional<Clock::time_point> deadline) {
  std::unique_lock<std::mutex> lock(mutex_);
  ++waiters_;  // a call someone waits for is read by its waiter, never as a companion
  struct Leave {
    std::atomic<std::size_t>& n;
    ~Leave() { --n; }
  } leave{waiters_};
  bool first = true;
  for (;;) {
    if (finished_) return true;
    if (!first && deadline && Clock::now() >= *deadline) return false;
    if (fetching_) {
      if (deadline) {
        cv_.wait_until(lock, *deadline);
      } else {
        cv_.wait(lock);
      }
      first = false;
      continue;
    }
    first = false;
    fetching_ = true;
    lock.unlock();
    std::vector<std::string> got;
    std::exception_ptr err;
    // Other calls' results that are in come with ours: a thread that waits for each of many
    // apply_async results in turn reads most of them with one command (20,000 reads -> ~320).
    std::vector<std::shared_ptr<CallState>> companions;
    std::vector<std::vector<std::string>> theirs;
    try {
      companions = claim_companions();
      got = fetch(deadline, !deadline || Clock::now() < *deadline, companions, &theirs);
      release_companions(companions, theirs);
      companions.clear();
      if (got.empty() && Clock::now() >= next_reap_) {
        // Nothing came: reap the dead workers (ours may have died with no one else to notice),
        // and make sure the call is still alive on the server.
        next_reap_ = Clock::now() + core_->options.reap_interval;
        const auto& c = core_->client();
        Argv keys{core_->queue, core_->workers}, args{core_->prefix, call_id_};
        std::optional<Reply> pttl;
        if (deadline) {
          pttl = c.eval_call(client_reap_script(), keys, args, *deadline);
        } else {
          pttl = c.eval(client_reap_script(), keys, args);
        }
        if (pttl && pttl->integer() == -2) {
          // Expired (this client could not renew it for result_ttl): read what may have come
          // meanwhile, then give up.
          got = fetch(deadline, false);
          std::lock_guard<std::mutex> relock(mutex_);
          for (const auto& e : got) apply(e);
          got.clear();
          if (!finished_) {
            fail(std::make_exception_ptr(BrokenPool(
                core_->describe() + ": task '" + task_ +
                "': the call expired on the server (not renewed for result_ttl)")));
          }
        }
      }
    } catch (...) {
      err = std::current_exception();
    }
    release_companions(companions, theirs);  // the fetch failed: what it read, if anything
    companions.clear();  // may destroy a call: not under mutex_
    lock.lock();
    const auto [before, done] = absorb(got);
    const auto total = items_.size();
    if (err) std::rethrow_exception(err);
    if (progress_ && done != before) {
      lock.unlock();
      progress_(done, total);
      lock.lock();
    }
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Pool

Pool::Pool(std::string_view url, PoolOptions options) {
  detail::check_pool_name(options.name, "Pool name");
  if (options.max_retries < 0) {
    throw Error(errc::invalid_argument, "multiproc::redis::Pool '" + options.name +
                                            "': max_retries must be >= 0");
  }
  if (options.result_ttl < std::chrono::milliseconds(10)) {
    throw Error(errc::invalid_argument, "multiproc::redis::Pool '" + options.name +
                                            "': result_ttl must be at least 10 ms");
  }
  if (options.reap_interval < std::chrono::milliseconds(1)) {
    options.reap_interval = std::chrono::milliseconds(1);
  }
  core_ = std::make_shared<detail::PoolCore>(url, std::move(options));
}

Pool::~Pool() = default;

const std::string& Pool::name() const noexcept { return core_->options.name; }
const Client& Pool::client() const noexcept { return core_->client(); }

std::size_t Pool::workers() const {
  return static_cast<std::size_t>(
      client().eval(detail::live_script(), {core_->workers}, {}).integer());
}

std::size_t Pool::queued() const {
  return static_cast<std::size_t>(client().command({"LLEN", core_->queue}).integer());
}

void Pool::shutdown_workers() { client().command({"INCR", core_->shutdown}); }

std::shared_ptr<detail::CallState> Pool::submit(const std::string& task, const char* args_type,
                                                const char* result_type,
                                                const std::vector<std::string>& items,
                                                std::size_t chunksize, Progress progress) {
  detail::check_pool_name(task, "task name");
  const auto& o = core_->options;
  const std::size_t n = items.size();
  if (chunksize == 0) {
    const auto live = std::max<std::size_t>(1, workers());
    chunksize = std::max<std::size_t>(1, (n + 4 * live - 1) / (4 * live));
  }
  std::vector<std::size_t> offsets{0};
  for (std::size_t i = 0; i < n; i += chunksize) offsets.push_back(std::min(n, i + chunksize));
  const std::size_t jobs = offsets.size() - 1;
  const std::string cid = unique_id();
  auto state = std::make_shared<detail::CallState>(core_, cid, task, offsets, std::move(progress));
  if (jobs == 0) return state;  // an empty map: finished at once
  std::vector<Argv> cmds;
  cmds.push_back({"SET", core_->prefix + ":call:" + cid, "1", "PX", std::to_string(o.result_ttl.count())});
  Argv push{"LPUSH", core_->queue};
  const std::string tail = " 0 " + std::to_string(o.max_retries) + " " + task + "\n";
  for (std::size_t j = 0; j < jobs; ++j) {
    std::vector<std::string> chunk(items.begin() + static_cast<std::ptrdiff_t>(offsets[j]),
                                   items.begin() + static_cast<std::ptrdiff_t>(offsets[j + 1]));
    push.push_back(cid + " " + std::to_string(j) + tail +
                   to_bytes(detail::JobBody(args_type, result_type, std::move(chunk))));
    if (push.size() >= 2 + 512) {
      cmds.push_back(std::move(push));
      push = Argv{"LPUSH", core_->queue};
    }
  }
  if (push.size() > 2) cmds.push_back(std::move(push));
  auto dels = core_->registry->take_deletes();
  if (!dels.empty()) {
    Argv del{"UNLINK"};
    del.insert(del.end(), dels.begin(), dels.end());
    cmds.push_back(std::move(del));
  }
  {
    std::lock_guard<std::mutex> lock(core_->registry->mutex);
    core_->registry->live.emplace(cid, state);
  }
  core_->start_renewal();
  try {
    client().pipeline(cmds);
  } catch (...) {
    std::lock_guard<std::mutex> lock(core_->registry->mutex);
    core_->registry->live.erase(cid);
    throw;
  }
  return state;
}

}  // namespace multiproc::redis
