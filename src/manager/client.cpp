// The Manager's client side: starting and opening a manager, each process's connection to it,
// and ObjectRef::call (see transport.hpp for the protocol).
#include "transport.hpp"

#include "../pipe/connection_impl.hpp"

#include "../process/liveness.hpp"

#include <multiproc/codec.hpp>
#include <multiproc/inspect.hpp>
#include <multiproc/manager.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <iterator>
#include <new>
#include <pthread.h>
#include <unistd.h>

namespace multiproc {
namespace detail::manager {
namespace {

constexpr auto kSlice = std::chrono::milliseconds(20);  // how often a waiting client looks
// How often the other threads waiting for answers look, while one watches (ClientState::watcher).
constexpr auto kIdleSlice = std::chrono::milliseconds(100);
// How long one look at the server's liveness serves every thread of this process (server_gone).
constexpr std::chrono::nanoseconds kGoneRecheck = std::chrono::milliseconds(2);
constexpr auto kHandshakeLimit = std::chrono::seconds(30);

// Guards every ClientState's list of connections (slow paths only: a thread's first call, its
// end). A forked child gets a fresh one, since another thread of the parent may have held it at
// the fork.
std::mutex& connect_mutex() {
  static std::mutex* m = [] {
    auto* p = new std::mutex;  // never destroyed: used until the very end of the process
    ::pthread_atfork(nullptr, nullptr, [] { new (&connect_mutex()) std::mutex; });
    return p;
  }();
  return *m;
}

// How many threads of this process make connections to one manager at once
// (ClientState::enter_connect_gate).
constexpr int kConcurrentConnects = 8;

std::atomic<std::uint64_t> g_pipe_counter{0};
std::atomic<std::uint64_t> g_manager_counter{0};
std::atomic<std::uint64_t> g_client_counter{0};

[[noreturn]] void reply_error(std::string_view reply, const std::string& where) {
  std::int32_t code = 0;
  std::uint8_t category = 0;
  std::string message;
  decode_fields(reinterpret_cast<const std::byte*>(reply.data()), reply.size(), code, category,
                message);
  (void)where;
  if (category == kCategorySystem) {
    throw Error(std::error_code(code, std::system_category()), message);
  }
  throw Error(static_cast<errc>(code), message);
}

}  // namespace

bool ClientState::server_gone(bool fresh) const noexcept {
  // Every thread waiting for the server looks at every slice (20 ms): 1,100 threads each reading
  // /proc that often kept a CPU busy, which the server they waited for then lacked. One look
  // serves every thread for kGoneRecheck; a death is still noticed within a slice and that.
  if (gone_seen.load(std::memory_order_relaxed)) return true;
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  const std::int64_t last = gone_checked.load(std::memory_order_relaxed);
  if (!fresh && last != 0 && now - last < kGoneRecheck.count()) return false;
  gone_checked.store(now, std::memory_order_relaxed);
  if (process_liveness(server_pid, server_start) != Liveness::dead) return false;
  gone_seen.store(true, std::memory_order_relaxed);
  return true;
}

void ClientState::wake_waiters() noexcept {
  if (waiters_woken.exchange(true)) return;
  std::lock_guard<std::mutex> lock(connect_mutex());
  for (const auto& tc : connections) {
    if (tc == nullptr || tc->conn == nullptr || tc->pid != current_pid()) continue;
    if (const ChannelRef* ch = tc->conn->receive_channel()) {
      ChannelRef::notify(ch->state()->data, INT_MAX);  // its observer asks server_gone() again
    }
  }
}

void ClientState::fail_disconnected(const std::string& during) {
  dead.store(true);
  throw Error(errc::disconnected,
              describe() + ": " + during + ": " +
                  (shut_down.load() ? std::string("the manager was shut down")
                                    : "its server process (pid " + std::to_string(server_pid) +
                                          ") is gone"));
}

ClientState::ClientState() : id(g_client_counter.fetch_add(1) + 1) {}

namespace {

// Each thread's connections, one per manager it has called (usually one). The raw pointer stays
// valid while the ClientState lives (it owns the connection), which a call in progress ensures.
struct ThreadEntry {
  std::uint64_t client_id;
  std::weak_ptr<ClientState> client;
  ThreadConnection* tc;
};
struct ThreadCache {
  std::vector<ThreadEntry> entries;
  ~ThreadCache() {
    for (ThreadEntry& e : entries) {
      if (std::shared_ptr<ClientState> c = e.client.lock()) c->drop(e.tc);
    }
  }
};
thread_local ThreadCache t_cache;

}  // namespace

void ClientState::drop(const ThreadConnection* tc) noexcept {
  std::shared_ptr<ThreadConnection> doomed;
  {
    std::lock_guard<std::mutex> lock(connect_mutex());
    for (auto it = connections.begin(); it != connections.end(); ++it) {
      if (it->get() == tc) {
        doomed = std::move(*it);
        connections.erase(it);
        break;
      }
    }
  }
  // `doomed` closes the connection here (in this process only if it is this process's).
}

ThreadConnection* ClientState::connection(std::chrono::steady_clock::time_point give_up) {
  const pid_t me = current_pid();
  for (const ThreadEntry& e : t_cache.entries) {
    if (e.client_id == id && e.tc->pid == me) return e.tc;
  }
  ThreadConnection* tc = connect(give_up);
  if (tc == nullptr) return nullptr;
  for (ThreadEntry& e : t_cache.entries) {
    if (e.client_id == id) {  // a forked child's copy of its parent's entry
      e.tc = tc;
      return tc;
    }
  }
  auto& v = t_cache.entries;  // forget managers gone since
  v.erase(std::remove_if(v.begin(), v.end(),
                         [](const ThreadEntry& e) { return e.client.expired(); }),
          v.end());
  v.push_back(ThreadEntry{id, weak_from_this(), tc});
  return tc;
}

bool ClientState::enter_connect_gate(std::chrono::steady_clock::time_point until) {
  std::unique_lock<std::mutex> lock(connect_mutex());
  const pid_t me = current_pid();
  if (gate_pid != me) {  // first use, or a forked child: its copy may be mid-use by a parent thread
    new (&gate_cv) std::condition_variable;
    gate_busy = 0;
    gate_pid = me;
  }
  while (gate_busy >= kConcurrentConnects) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return false;
    gate_cv.wait_until(lock, std::min(until, now + kSlice));
    if (gate_busy >= kConcurrentConnects) {
      lock.unlock();  // a dead server fails the waiters too, not only those connecting
      if (dead.load() || server_gone()) fail_disconnected("connecting");
      lock.lock();
    }
  }
  ++gate_busy;
  return true;
}

void ClientState::leave_connect_gate() noexcept {
  {
    std::lock_guard<std::mutex> lock(connect_mutex());
    --gate_busy;
  }
  gate_cv.notify_one();
}

ThreadConnection* ClientState::connect(std::chrono::steady_clock::time_point give_up) {
  if (dead.load()) fail_disconnected("connecting");
  if (server_gone()) fail_disconnected("connecting");
  // A place among the threads of this process that connect to this manager at once. Waiting
  // for one counts against the 30 s a handshake may take: the handshakes ahead are the server's.
  if (!enter_connect_gate(std::min(give_up, std::chrono::steady_clock::now() + kHandshakeLimit))) {
    if (std::chrono::steady_clock::now() >= give_up) return nullptr;  // a timed call's deadline
    throw Error(errc::disconnected,
                describe() + ": its server did not answer the connect requests of this "
                             "process's other threads within 30 s");
  }
  struct Leave {
    ClientState& c;
    ~Leave() { c.leave_connect_gate(); }
  } leave{*this};
  const pid_t me = current_pid();
  const std::string pipe_name = pipe_prefix(name) + std::to_string(me) + "." +
                                std::to_string(current_start_time()) + "." +
                                std::to_string(g_pipe_counter.fetch_add(1));
  std::pair<Connection, Connection> ends =
      Pipe(create_only, with_prefix(pipe_name, prefix), true, kConnectionRing);
  struct RemoveName {  // whatever happens, the name goes: the server has opened it, or never will
    Name n;
    ~RemoveName() {
      try {
        remove(n);
      } catch (...) {
      }
    }
  } remove_name{with_prefix(pipe_name, prefix)};
  const std::string claim_segment = claim_name(pipe_name);
  SharedMemory claim(create_only, with_prefix(claim_segment, prefix), kClaimBytes);  // zero: no request yet
  RemoveName remove_claim{with_prefix(claim_segment, prefix)};
  const auto limit = std::chrono::steady_clock::now() + kHandshakeLimit;
  const auto request = [&] {
    try {
      return listen.put_for(pipe_name, kSlice);
    } catch (const Error& e) {  // the listen queue closed or damaged (a stray writer): say whose
      throw Error(errc::disconnected, describe() + ": cannot ask its server for a connection: " +
                                          e.what());
    }
  };
  while (!request()) {  // full: requests the server has not taken yet
    if (server_gone()) fail_disconnected("connecting");
    if (std::chrono::steady_clock::now() >= give_up) return nullptr;  // the names go (guards)
    if (std::chrono::steady_clock::now() > limit) {
      throw Error(errc::disconnected,
                  describe() + ": its server did not take a connect request within 30 s");
    }
  }
  while (!ends.first.poll(std::min<std::chrono::steady_clock::duration>(
      kSlice, std::max(give_up - std::chrono::steady_clock::now(),
                       std::chrono::steady_clock::duration::zero())))) {
    if (server_gone()) fail_disconnected("connecting");
    // A timed call's deadline: the server (stopped, starved) has not answered. The names go
    // (guards); a server that opens the pipe later finds this end closed and ends the session.
    if (std::chrono::steady_clock::now() >= give_up) return nullptr;
    if (std::chrono::steady_clock::now() > limit) {
      throw Error(errc::disconnected,
                  describe() + ": its server did not answer a connect request within 30 s");
    }
  }
  try {
    (void)ends.first.recv_bytes();  // the hello
  } catch (const EOFError&) {
    fail_disconnected("connecting");
  }
  ends.second.close();  // the server holds it now: its death is EOF here
  auto fresh = std::make_shared<ThreadConnection>();
  fresh->pid = me;
  fresh->conn = std::make_unique<Connection>(std::move(ends.first));
  fresh->claim.emplace(std::move(claim));
  std::lock_guard<std::mutex> lock(connect_mutex());
  connections.push_back(fresh);
  return fresh.get();
}

std::string ObjectRef::call(std::uint32_t op, std::string_view args) const {
  std::string request(kRequestHeader + args.size(), '\0');
  if (!args.empty()) std::memcpy(request.data() + kRequestHeader, args.data(), args.size());
  return call_prepared(op, std::move(request));
}

const std::string& ObjectRef::manager_name() const noexcept {
  static const std::string none;
  return client_ ? client_->name : none;
}

std::string ObjectRef::call_prepared(std::uint32_t op, std::string request) const {
  return *call_until(op, std::move(request), std::chrono::steady_clock::time_point::max());
}

std::optional<std::string> ObjectRef::call_until(
    std::uint32_t op, std::string request, std::chrono::steady_clock::time_point give_up) const {
  static_assert(kHeader == kRequestHeader);
  if (!client_) throw Error(errc::bad_state, "multiproc::Manager: call on an empty proxy");
  ClientState& c = *client_;
  if (c.dead.load(std::memory_order_relaxed)) c.fail_disconnected(kind_ + " '" + name_ + "'");
  ThreadConnection* made = c.connection(give_up);
  if (made == nullptr) return std::nullopt;  // no connection by the deadline: nothing was sent
  ThreadConnection& tc = *made;
  if (!tc.broken.empty()) {
    throw Error(errc::disconnected, c.describe() + ": " + kind_ + " '" + name_ + "': " + tc.broken);
  }
  std::memcpy(request.data(), &op, 4);
  std::memcpy(request.data() + 4, &id_, 8);
  std::atomic<std::uint64_t>& word = claim_word(*tc.claim);
  const std::uint64_t n = tc.sent + 1;
  std::string reply;
  try {
    word.store((n << 2) | kClaimPending, std::memory_order_release);
    tc.conn->send_bytes(request);
    tc.sent = n;
    bool timed = give_up != std::chrono::steady_clock::time_point::max();
    // Waits for the answer registered once for the whole wait (poll_watching), looking at the
    // server's liveness now and then: one waiting thread of the process every kSlice (the
    // watcher, which wakes the others when the server is gone), the others every kIdleSlice, or
    // as soon as the watcher's place is free, to take it. One look at /proc serves all threads
    // (server_gone). 1,000 threads blocked in calls, each polling afresh every 20 ms (a
    // membarrier and a liveness scan of the pipe's peer each time), took more than a CPU.
    struct Watching {
      ClientState& c;
      bool held = false;
      bool claim() {
        if (held) return true;
        pid_t w = c.watcher.load();
        if (w == current_pid()) return false;  // another thread of ours watches
        held = c.watcher.compare_exchange_strong(w, current_pid());
        return held;
      }
      ~Watching() {
        pid_t me = current_pid();
        if (held) c.watcher.compare_exchange_strong(me, 0);
      }
    } watching{c};
    for (;;) {
      const bool watcher = watching.claim();
      const SliceWatch watch{
          watcher ? kSlice : kIdleSlice,
          watcher ? +[](const void* state) {
            return !static_cast<const ClientState*>(state)->server_gone();
          }
                  : +[](const void* state) {
                      const auto* cs = static_cast<const ClientState*>(state);
                      return !cs->server_gone() && cs->watcher.load() == current_pid();
                    },
          &c};
      if (poll_watching(*tc.conn, timed ? give_up : Clock::time_point::max(), watch)) {
        try {
          reply = tc.conn->recv_bytes();
        } catch (const std::bad_alloc&) {
          // No memory for the reply (a large value): the pipe has dropped it (pipe.hpp), so the
          // answers stay in step with the requests. A stale answer is skipped as ever; this
          // call's fails, though the server has applied it.
          if (tc.stale == 0) throw;
          --tc.stale;
          continue;
        }
        if (tc.stale > 0) {  // the answer to a request given up on before this one
          --tc.stale;
          continue;
        }
        break;
      }
      if (c.server_gone()) {
        c.wake_waiters();
        c.fail_disconnected(kind_ + " '" + name_ + "'");
      }
      if (timed && std::chrono::steady_clock::now() >= give_up) {
        std::uint64_t expected = (n << 2) | kClaimPending;
        if (word.compare_exchange_strong(expected, (n << 2) | kClaimAbandoned,
                                         std::memory_order_acq_rel)) {
          ++tc.stale;  // never applied; its answer comes, and the next call skips it
          return std::nullopt;
        }
        // Claimed by the server: it is applying it now, and answers.
        give_up = std::chrono::steady_clock::time_point::max();
        timed = false;
      }
    }
  } catch (const Error& e) {
    if (e.code() == errc::eof || e.code() == errc::closed) {
      // A fresh look: a cached one (2 ms) could miss a server that closed its ends and died.
      if (c.shut_down.load() || c.server_gone(true)) {
        c.wake_waiters();
        c.fail_disconnected(kind_ + " '" + name_ + "'");
      }
      // The server lives: only this thread's connection broke (its pipe's bytes damaged, say).
      // This call fails; the next makes a new connection. Before, every thread of the process
      // was told the server was gone, for good (an outside probe: one byte written into one
      // thread's pipe).
      // The thread's calls keep failing (not a new connection: the server ended the session and
      // released what it held through it — a Lock — and a thread inside its critical section
      // must not go on as if it still held it); other threads and new ones go on.
      tc.broken = "this thread's connection to the server broke (" + std::string(e.what()) +
                  "; the server, pid " + std::to_string(c.server_pid) +
                  ", lives: other threads go on; what this thread held through the manager, a "
                  "Lock, was released)";
      throw Error(errc::disconnected, c.describe() + ": " + kind_ + " '" + name_ + "': " + tc.broken);
    }
    throw;
  }
  if (reply.empty()) throw Error(errc::corrupt, c.describe() + ": an empty reply");
  if (static_cast<std::uint8_t>(reply[0]) == kOk) {
    reply.erase(0, 1);
    return reply;
  }
  reply_error(std::string_view(reply).substr(1), c.describe());
}

struct ManagerState {
  std::shared_ptr<ClientState> client;
  std::unique_ptr<Process> server;  // in the owner only
  pid_t owner = 0;

  ~ManagerState() {
    try {
      stop();
    } catch (...) {
    }
  }
  void stop() {
    if (!server || owner != current_pid()) return;
    client->shut_down.store(true);
    client->dead.store(true);
    try {
      server->kill();
      server->join();
    } catch (const Error&) {  // already reaped elsewhere
    }
    server.reset();
    sweep_client_pipes(client->name, true);
    // The names go now, though proxies may still hold the client state (and so handles).
    for (const Segment* s : {&client->info.segment(), &client->listen.segment()}) {
      try {
        Segment::unlink(s->name(), s->file_id());
      } catch (...) {
      }
    }
  }
};

ObjectRef open(const Manager& manager, std::string_view kind, std::string_view name,
               std::string_view create_args) {
  if (!manager.state_) {
    throw Error(errc::bad_state, "multiproc::Manager: use of a moved-from Manager");
  }
  ObjectRef probe;
  probe.client_ = manager.state_->client;
  probe.kind_ = std::string(kind);
  probe.name_ = std::string(name);
  std::string args(encoded_size(probe.kind_, probe.name_, std::string(create_args)), '\0');
  encode_fields(reinterpret_cast<std::byte*>(args.data()), probe.kind_, probe.name_,
                std::string(create_args));
  const std::string reply = probe.call(kOpenOp, args);
  ObjectRef out = probe;
  decode_fields(reinterpret_cast<const std::byte*>(reply.data()), reply.size(), out.id_,
                out.name_);
  return out;
}

}  // namespace detail::manager

namespace {

using detail::manager::ClientState;
using detail::manager::ServerInfo;

}  // namespace


namespace {

// "manager.<pid>.<n>": unique while this process runs; a dead process's leftover is reclaimed.
// Removes what managers of the default names left in /dev/shm when their owner and server died
// together (a process group killed: kill -- -pgid, timeout, a closed terminal) — nobody was left
// to remove their names, and a default name holds the dead owner's pid, so no later create
// reclaims it (an outside probe: 70 KB per such run). Only names whose creator is dead and that
// no live process has mapped (remove_stale's own check, made again at removal); best effort.
void sweep_dead_default_managers() noexcept {
  try {
    const std::string head = "mp." + name_prefix() + "manager.";
    std::vector<std::string> files;
    if (DIR* d = ::opendir("/dev/shm")) {
      while (dirent* e = ::readdir(d)) {
        const std::string f = e->d_name;
        if (f.compare(0, head.size(), head) != 0) continue;
        // manager.<pid>.<n>[...]: digits, not this process's own, and files of this user only
        const std::size_t dot = f.find('.', head.size());
        if (dot == std::string::npos || dot == head.size()) continue;
        const std::string pid = f.substr(head.size(), dot - head.size());
        if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
        if (pid == std::to_string(detail::current_pid())) continue;
        struct stat st {};
        if (::stat(("/dev/shm/" + f).c_str(), &st) != 0 || st.st_uid != ::geteuid()) continue;
        files.push_back(f);
      }
      ::closedir(d);
    }
    for (const std::string& f : files) {
      try {
        const ObjectInfo info = inspect_file(f);
        if (info.stale()) remove_stale(info);
      } catch (...) {  // gone meanwhile, or not ours to judge
      }
    }
  } catch (...) {
  }
}

std::string fresh_manager_name() {
  sweep_dead_default_managers();
  return "manager." + std::to_string(detail::current_pid()) + "." +
         std::to_string(detail::manager::g_manager_counter.fetch_add(1) + 1);
}

// An Error from opening or creating one of the manager's own named objects (its RawValue<ServerInfo>
// under its name, its Queue of connect requests under name.listen), told as the Manager's: the
// caller asked for a Manager, and the internal objects' types say nothing to them. Same code.
[[noreturn]] void throw_as_manager(const Error& e, const std::string& name, const char* doing) {
  const std::string head = "multiproc::Manager '" + name + "': cannot " + doing + ": ";
  const std::string what = e.what();
  switch (static_cast<errc>(e.code().value())) {
    case errc::not_found:
      throw Error(errc::not_found, head + "no manager of that name is running (none was started "
                                          "under it, or its owner shut it down)");
    case errc::already_exists:
      throw Error(errc::already_exists,
                  head + "the name is taken (by a running manager, or by another object under '" +
                      name + "' or '" + detail::manager::listen_name(name) + "')");
    case errc::wrong_kind:
    case errc::type_mismatch: {
      // "... the name holds a SharedMemory, not a RawValue": keep what it holds.
      const std::string::size_type at = what.find("holds ");
      const std::string::size_type end = what.find(", not ", at);
      const std::string held = at != std::string::npos && end != std::string::npos
                                   ? what.substr(at + 6, end - at - 6)
                                   : "another kind of object";
      throw Error(static_cast<errc>(e.code().value()),
                  head + "the name holds " + held + ", not a Manager");
    }
    default:
      throw Error(static_cast<errc>(e.code().value()), head + what);
  }
}

std::shared_ptr<detail::manager::ManagerState> start_manager(std::string name) {
  detail::manager::register_container_kinds();
  detail::manager::register_sync_kinds();  // queue, lock, event (src/manager/sync.cpp)
  auto st = std::make_shared<detail::manager::ManagerState>();
  auto client = std::make_shared<ClientState>();
  client->name = name;
  // Connect requests are a short name each: a small ring (the default is sized for data).
  try {
    client->listen = multiproc::Queue<std::string>(
        create_only, detail::manager::listen_name(name), 1024, std::size_t{1} << 16);
  } catch (const Error& e) {
    throw_as_manager(e, name, "create");
  }
  const pid_t owner = detail::current_pid();
  const std::uint64_t owner_start = detail::current_start_time();
  const multiproc::Queue<std::string> listen = client->listen;
  auto server = std::make_unique<Process>([listen, name, owner, owner_start] {
    return detail::manager::server_main(name, listen, owner, owner_start);
  });
  server->set_name("Manager-" + name);
  server->set_daemon(true);
  ChildOptions options;
  options.parent_death_signal = 0;  // it watches its owner itself, and removes the names if it dies
  server->set_options(options);
  server->start();
  client->server_pid = server->pid();
  client->server_start = detail::process_start_time(server->pid());
  ServerInfo info;
  info.server_pid = client->server_pid;
  info.server_start = client->server_start;
  info.owner_pid = owner;
  info.owner_start = owner_start;
  try {
    client->info = RawValue<ServerInfo>(create_only, name, info);
  } catch (const Error& e) {
    server->kill();
    server->join();
    throw_as_manager(e, name, "create");
  } catch (...) {
    server->kill();
    server->join();
    throw;
  }
  st->client = std::move(client);
  st->server = std::move(server);
  st->owner = owner;
  return st;
}

}  // namespace

Manager::Manager() : Manager(create_only, fresh_manager_name()) {}

Manager::Manager(create_only_t, std::string name) : state_(start_manager(std::move(name))) {}

Manager::Manager(open_only_t, std::string name) {
  auto client = std::make_shared<ClientState>();
  client->name = name;
  try {
    client->info = RawValue<ServerInfo>(open_only, name);
  } catch (const Error& e) {
    throw_as_manager(e, name, "open");
  }
  const ServerInfo info = client->info.load();
  client->server_pid = static_cast<pid_t>(info.server_pid);
  client->server_start = info.server_start;
  if (client->server_gone()) client->fail_disconnected("opening");
  try {
    client->listen = multiproc::Queue<std::string>(open_only, detail::manager::listen_name(name));
  } catch (const Error& e) {
    throw_as_manager(e, name, "open");
  }
  state_ = std::make_shared<detail::manager::ManagerState>();
  state_->client = std::move(client);
}

Manager::~Manager() = default;

void Manager::shutdown() {
  if (state_) state_->stop();
}

const std::string& Manager::name() const noexcept {
  static const std::string none;
  return state_ ? state_->client->name : none;
}

namespace {

// Version 2 puts a check of the data after the magic: "<16 hex digits>\n". Version 1 files
// (without it) still load.
constexpr std::string_view kSaveMagic = "multiproc Manager save 2\n";
constexpr std::string_view kSaveMagicV1 = "multiproc Manager save 1\n";
constexpr std::size_t kSaveCheckDigits = 16;

//! A 64-bit check of the bytes (8 at a time, multiply and shift): a byte changed anywhere in a
//! save file — a type name included, which the format alone cannot tell from another type's —
//! is caught before anything is loaded.
std::uint64_t save_check(std::string_view b) noexcept {
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ b.size();
  std::size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  for (; i < b.size(); ++i) h = (h ^ static_cast<unsigned char>(b[i])) * 0x94D049BB133111EBull;
  h ^= h >> 29;
  h *= 0xC2B2AE3D27D4EB4Full;
  return h ^ (h >> 32);
}

std::string save_check_text(std::string_view b) {
  char text[kSaveCheckDigits + 2];
  std::snprintf(text, sizeof text, "%016llx\n", static_cast<unsigned long long>(save_check(b)));
  return std::string(text, kSaveCheckDigits + 1);
}

}  // namespace

void Manager::save(const std::string& path) const {
  if (!state_) throw Error(errc::bad_state, "multiproc::Manager: use of a moved-from Manager");
  detail::manager::ObjectRef server;
  server.client_ = state_->client;
  server.kind_ = "manager";
  server.name_ = state_->client->name;
  const std::string data = server.call(detail::manager::kSaveOp, {});
  // Unique per call: two threads saving to one path at once used one temporary file, and one
  // renamed the other's away (an outside probe: ENOENT in a quarter of such saves).
  static std::atomic<unsigned long> saves{0};
  const std::string tmp = path + ".tmp." + std::to_string(detail::current_pid()) + "." +
                          std::to_string(detail::current_tid()) + "." + std::to_string(++saves);
  const std::string what = "multiproc::Manager '" + server.name_ + "': save to '" + path + "'";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error::from_errno(errno, what + ": cannot create '" + tmp + "'");
  auto write_all = [&](std::string_view b) {
    while (!b.empty()) {
      const ssize_t n = ::write(fd, b.data(), b.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;
      b.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  };
  if (!write_all(kSaveMagic) || !write_all(save_check_text(data)) || !write_all(data) ||
      ::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error::from_errno(err, what + ": cannot write '" + tmp + "'");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error::from_errno(err, what);
  }
}

void Manager::load(const std::string& path) const {
  if (!state_) throw Error(errc::bad_state, "multiproc::Manager: use of a moved-from Manager");
  detail::manager::ObjectRef server;
  server.client_ = state_->client;
  server.kind_ = "manager";
  server.name_ = state_->client->name;
  const std::string what = "multiproc::Manager '" + server.name_ + "': load from '" + path + "'";
  // read(2), not an ifstream: a directory made one throw std::ios_base::failure (an outside
  // probe), where load() promises an Error naming the file.
  std::string data;
  {
    // O_NONBLOCK: a FIFO must not block the open (regular files ignore it).
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw Error::from_errno(errno, what);
    struct Close {  // also when the append below runs out of memory
      int fd;
      ~Close() { ::close(fd); }
    } close_fd{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      throw Error::from_errno(err, what);
    }
    if (!S_ISREG(st.st_mode)) {
      throw Error::from_errno(S_ISDIR(st.st_mode) ? EISDIR : EINVAL, what + ": not a regular file");
    }
    char buf[1 << 16];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        throw Error::from_errno(errno, what);
      }
      if (n == 0) break;
      data.append(buf, static_cast<std::size_t>(n));
    }
  }
  std::string_view body(data);
  if (body.substr(0, kSaveMagic.size()) == kSaveMagic) {
    body.remove_prefix(kSaveMagic.size());
    const std::string_view check = body.substr(0, kSaveCheckDigits + 1);
    body.remove_prefix(check.size());
    if (check != save_check_text(body)) {
      throw Error(errc::corrupt, what + ": the file is damaged (its check does not match)");
    }
  } else if (body.substr(0, kSaveMagicV1.size()) == kSaveMagicV1) {
    body.remove_prefix(kSaveMagicV1.size());  // the first version, without a check
  } else {
    throw Error(errc::corrupt, what + ": not a file Manager::save wrote");
  }
  std::vector<detail::manager::SavedObject> saved;
  try {
    saved = detail::manager::from_bytes<std::vector<detail::manager::SavedObject>>(body);
  } catch (const Error& e) {
    throw Error(errc::corrupt, what + ": " + e.what());
  }
  for (const auto& s : saved) server.call(detail::manager::kLoadOp, detail::manager::to_bytes(s));
}

pid_t Manager::pid() const noexcept { return state_ ? state_->client->server_pid : 0; }

}  // namespace multiproc
