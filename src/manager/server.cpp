// The Manager's server process: accepts connections on `m.listen`, serves each on its own thread,
// and holds the named objects (see transport.hpp for the protocol).
#include "transport.hpp"

#include "../pipe/connection_impl.hpp"

#include <multiproc/manager.hpp>

#include "../process/liveness.hpp"

#include <multiproc/codec.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <typeinfo>
#include <unordered_map>
#include <vector>

namespace multiproc::detail::manager {
namespace {

constexpr auto kSessionSlice = std::chrono::milliseconds(100);
constexpr auto kAcceptSlice = std::chrono::milliseconds(100);
constexpr auto kSweepEvery = std::chrono::seconds(1);

// "<pid>.<start>.<n>" after the pipe prefix: the client's pid and start time.
bool parse_client(std::string_view rest, pid_t& pid, std::uint64_t& start) {
  const std::size_t a = rest.find('.');
  if (a == std::string_view::npos || a == 0) return false;
  const std::size_t b = rest.find('.', a + 1);
  if (b == std::string_view::npos) return false;
  try {
    pid = static_cast<pid_t>(std::stol(std::string(rest.substr(0, a))));
    start = std::stoull(std::string(rest.substr(a + 1, b - a - 1)));
  } catch (...) {
    return false;
  }
  return pid > 0;
}

// Whether client process (pid, start) has died. Every session of a client process asks every
// slice (100 ms), and a process with 1,000 threads in calls has 1,000 sessions: one look at /proc
// answers all of them for kLivenessReuse. A death is final, so it is kept (and never looked up
// again); entries not asked about for a minute are dropped.
constexpr auto kLivenessReuse = std::chrono::milliseconds(20);
bool client_dead(pid_t pid, std::uint64_t start) {
  struct Seen {
    pid_t pid;
    std::uint64_t start;
    std::chrono::steady_clock::time_point at;
    bool dead;
  };
  static std::mutex m;
  static std::vector<Seen> seen;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(m);
    for (const Seen& e : seen) {
      if (e.pid == pid && e.start == start && (e.dead || now - e.at < kLivenessReuse)) {
        return e.dead;
      }
    }
  }
  const bool dead = process_liveness(pid, start) == Liveness::dead;
  std::lock_guard<std::mutex> lock(m);
  seen.erase(std::remove_if(seen.begin(), seen.end(),
                            [&](const Seen& e) {
                              return (e.pid == pid && e.start == start) ||
                                     now - e.at > std::chrono::minutes(1);
                            }),
             seen.end());
  seen.push_back({pid, start, now, dead});
  return dead;
}

class ServerSession final : public Session {
 public:
  ServerSession(std::uint64_t id, pid_t pid, std::uint64_t start, Connection conn,
                SharedMemory claim)
      : id_(id), pid_(pid), start_(start), conn_(std::move(conn)), claim_(std::move(claim)) {}
  std::uint64_t id() const noexcept override { return id_; }
  pid_t pid() const noexcept override { return pid_; }
  // The client's thread closed its end (it ended), or its process died. No scan of the pipe's
  // holders: the client's process is the one that counts (a forked child of it may hold the end
  // too, and keeps no session alive). gone() looks at it now; gone_lately() takes a look at most
  // kLivenessReuse old, shared by all its sessions (client_dead).
  bool gone() const override {
    return ended_.load() || peer_marked_closed(conn_) ||
           process_liveness(pid_, start_) == Liveness::dead;
  }
  bool gone_lately() const override {
    return ended_.load() || peer_marked_closed(conn_) || client_dead(pid_, start_);
  }
  bool abandoned() const override {
    const std::uint64_t word = claim_word(claim_).load(std::memory_order_acquire);
    return word == ((received_ << 2) | kClaimAbandoned) || (word >> 2) > received_;
  }
  bool claim() override {
    // Request `received_` is ours unless its client gave up on it (transport.hpp, "Deadlines"):
    // the word says so, or already names a later request (a client sends the next one only once
    // it has this one's answer, which it has not, or gave up on it). A word behind (scribbled)
    // lets the call go on as before there were deadlines.
    std::uint64_t expected = (received_ << 2) | kClaimPending;
    if (claim_word(claim_).compare_exchange_strong(expected, (received_ << 2) | kClaimTaken,
                                                   std::memory_order_acq_rel)) {
      return true;
    }
    return !(expected == ((received_ << 2) | kClaimAbandoned) || (expected >> 2) > received_);
  }
  Connection& conn() { return conn_; }
  //! Counts a request read from the connection (on the session's own thread, as claim()).
  void received() { ++received_; }
  void end() { ended_.store(true); }

 private:
  std::uint64_t id_;
  pid_t pid_;
  std::uint64_t start_;
  Connection conn_;
  SharedMemory claim_;
  std::uint64_t received_ = 0;  // requests read (the n of the claim word)
  std::atomic<bool> ended_{false};
};

struct Entry {
  std::string kind;
  std::uint64_t id;
  std::shared_ptr<Object> object;
  std::string create_args;  // for Manager::save
};

class Server {
 public:
  explicit Server(std::string name) : name_(std::move(name)) {}

  void serve(std::shared_ptr<ServerSession> s) {
    std::unordered_map<std::uint64_t, std::shared_ptr<Object>> cache;
    for (;;) {
      std::string msg;
      const char* skipped = nullptr;  // why a request was not read whole
      errc skipped_code = errc::corrupt;
      try {
        // Registered once for the whole wait, looking at the client every slice (poll_watching
        // says why: 1,000 idle sessions polling afresh each slice took most of a CPU).
        const SliceWatch watch{kSessionSlice,
                               [](const void* session) {
                                 return !static_cast<const ServerSession*>(session)->gone_lately();
                               },
                               s.get()};
        if (!poll_watching(s->conn(), Clock::time_point::max(), watch)) {
          if (s->gone()) break;
          continue;
        }
        msg = s->conn().recv_bytes();
        s->received();
      } catch (const Error& e) {
        if (e.code() != errc::corrupt) break;  // EOF: the client closed or died
        // A damaged message was skipped: it was a request all the same, counted and answered,
        // so that the client's count of requests and answers stays in step with ours.
        s->received();
        skipped = "a damaged request (skipped)";
      } catch (const std::bad_alloc&) {
        // No memory for a large request: the pipe dropped it (pipe.hpp). Counted and answered
        // as a damaged one is; before, the exception ended the server.
        s->received();
        skipped = "out of memory in the server for a request (dropped)";
        skipped_code = errc::remote_error;
      }
      std::string reply;
      try {
        reply = skipped != nullptr ? failure(static_cast<int>(skipped_code), kCategoryMultiproc,
                                             describe() + ": " + skipped)
                                   : handle(*s, cache, msg);
      } catch (const std::bad_alloc&) {
        break;  // not even for the answer: end the session (the client sees it gone)
      }
      try {
        s->conn().send_bytes(reply);
      } catch (...) {
        break;  // the client is gone
      }
    }
    s->end();
    for (const std::shared_ptr<Object>& o : snapshot()) {
      try {
        o->session_ended(*s);
      } catch (...) {  // an object's cleanup failing must not take the server down
      }
    }
  }

 private:
  std::vector<std::shared_ptr<Object>> snapshot() {
    std::lock_guard<std::mutex> lock(m_);
    std::vector<std::shared_ptr<Object>> out;
    out.reserve(by_id_.size());
    for (auto& [id, o] : by_id_) out.push_back(o);
    return out;
  }

  std::string describe() const { return "multiproc::Manager '" + name_ + "'"; }

  std::string open(std::string_view args) {
    std::string kind, name, create_args;
    decode_fields(reinterpret_cast<const std::byte*>(args.data()), args.size(), kind, name,
                  create_args);
    std::shared_ptr<Object> unused;
    return open(kind, name, create_args, unused);
  }

  // Every object that saves its state; each is one consistent snapshot of that object (objects
  // are not frozen together).
  std::string save() {
    std::vector<std::pair<std::string, Entry>> entries;
    {
      std::lock_guard<std::mutex> lock(m_);
      for (const auto& [name, e] : by_name_) entries.emplace_back(name, e);
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.second.id < b.second.id; });
    std::vector<SavedObject> out;
    for (auto& [name, e] : entries) {
      std::optional<std::string> state = e.object->save_state();
      if (state) out.emplace_back(e.kind, name, e.create_args, std::move(*state));
    }
    return to_bytes(out);
  }

  std::string load(std::string_view args) {
    const auto saved = from_bytes<SavedObject>(args);
    const auto& [kind, name, create_args, state] = saved;
    std::string n = name;
    std::shared_ptr<Object> o;
    open(kind, n, create_args, o);
    bool loaded = false;
    try {
      loaded = o->load_state(state);
    } catch (const Error& e) {  // the object names itself; we name the manager
      throw Error(e.code(), describe() + ": " + e.what());
    }
    if (!loaded) throw Error(errc::invalid_argument, describe() + ": a " + kind + " is not saved");
    return {};
  }

  std::string open(const std::string& kind, std::string name, const std::string& create_args,
                   std::shared_ptr<Object>& object) {
    std::unique_lock<std::mutex> lock(m_);
    if (name.empty()) {
      do {
        name = kind + "." + std::to_string(++unnamed_);
      } while (by_name_.count(name) != 0 || making_.count(name) != 0);
    }
    std::uint64_t id = 0;
    for (;;) {
      auto it = by_name_.find(name);
      if (it != by_name_.end()) {
        if (it->second.kind != kind) {
          throw Error(errc::wrong_kind, describe() + ": '" + name + "' is a " + it->second.kind +
                                            ", not a " + kind);
        }
        id = it->second.id;
        object = it->second.object;
        break;
      }
      if (auto m = making_.find(name); m != making_.end()) {
        // Another client's open is making it: wait for that, then look again (if its making
        // failed, this open makes it in turn, with its own arguments).
        const std::shared_ptr<Making> pending = m->second;
        pending->done.wait(lock, [&] { return pending->finished; });
        continue;
      }
      std::shared_ptr<const Factory> make = find_kind(kind);
      if (!make) {
        throw Error(errc::not_found, describe() + ": its server knows no kind '" + kind +
                                         "' (register it before starting the manager)");
      }
      // Made without the server's lock: a registered type's constructor is the user's code and
      // may take long (or never return). Under the lock it held up every other client's first
      // use of any object, and every open — an outside probe's 3 s constructor stalled
      // unrelated dicts and made a timed get of a full queue give up. Only opens of this very
      // name wait for it (above).
      const auto pending = std::make_shared<Making>();
      making_.emplace(name, pending);
      lock.unlock();
      std::shared_ptr<Object> o;
      std::exception_ptr failed;
      try {
        o = (*make)(name, create_args);
      } catch (...) {
        failed = std::current_exception();
      }
      lock.lock();
      making_.erase(name);
      pending->finished = true;
      pending->done.notify_all();
      if (failed) std::rethrow_exception(failed);
      if (!o) {
        throw Error(errc::invalid_argument, describe() + ": kind '" + kind + "' made nothing");
      }
      id = ++next_id_;
      object = o;
      by_name_.emplace(name, Entry{kind, id, o, create_args});
      by_id_.emplace(id, std::move(o));
      break;
    }
    std::string out(encoded_size(id, name), '\0');
    encode_fields(reinterpret_cast<std::byte*>(out.data()), id, name);
    return out;
  }

  std::string handle(ServerSession& s,
                     std::unordered_map<std::uint64_t, std::shared_ptr<Object>>& cache,
                     std::string_view msg) {
    try {
      if (msg.size() < kRequestHeader) {
        throw Error(errc::corrupt, describe() + ": a request of " + std::to_string(msg.size()) +
                                       " bytes");
      }
      std::uint32_t op = 0;
      std::uint64_t id = 0;
      std::memcpy(&op, msg.data(), 4);
      std::memcpy(&id, msg.data() + 4, 8);
      const std::string_view args = msg.substr(kRequestHeader);
      std::string payload;
      if (op == kOpenOp) {
        payload = open(args);
      } else if (op == kSaveOp) {
        payload = save();
      } else if (op == kLoadOp) {
        payload = load(args);
      } else {
        auto c = cache.find(id);
        if (c == cache.end()) {
          std::shared_ptr<Object> o;
          {
            std::lock_guard<std::mutex> lock(m_);
            auto it = by_id_.find(id);
            if (it != by_id_.end()) o = it->second;
          }
          if (!o) throw Error(errc::not_found, describe() + ": no object #" + std::to_string(id));
          c = cache.emplace(id, std::move(o)).first;
        }
        try {
          payload = c->second->call(s, op, args);
        } catch (const Error& e) {  // the object names itself; we name the manager
          throw Error(e.code(), describe() + ": " + e.what());
        }
      }
      std::string reply;
      reply.reserve(1 + payload.size());
      reply.push_back(static_cast<char>(kOk));
      reply.append(payload);
      return reply;
    } catch (const Error& e) {
      const bool ours = &e.code().category() == &make_error_code(errc::not_found).category();
      return failure(e.code().value(), ours ? kCategoryMultiproc : kCategorySystem, e.what());
    } catch (const std::bad_alloc&) {
      return failure(static_cast<int>(errc::remote_error), kCategoryMultiproc,
                     describe() + ": out of memory in the server");
    } catch (const std::exception& e) {
      return failure(static_cast<int>(errc::remote_error), kCategoryMultiproc,
                     describe() + ": " + e.what());
    } catch (...) {
      return failure(static_cast<int>(errc::remote_error), kCategoryMultiproc,
                     describe() + ": an unknown exception in the server");
    }
  }

  static std::string failure(int code, std::uint8_t category, const std::string& message) {
    const std::int32_t c = code;
    std::string out(1 + encoded_size(c, category, message), '\0');
    out[0] = static_cast<char>(kFailed);
    encode_fields(reinterpret_cast<std::byte*>(out.data() + 1), c, category, message);
    return out;
  }

  std::string name_;
  // An object being made by an open (without m_): the opens of the same name wait for it.
  struct Making {
    std::condition_variable done;
    bool finished = false;  // guarded by m_
  };
  std::mutex m_;
  std::unordered_map<std::string, std::shared_ptr<Making>> making_;  // guarded by m_
  std::unordered_map<std::string, Entry> by_name_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Object>> by_id_;
  std::uint64_t next_id_ = 0;
  std::uint64_t unnamed_ = 0;
};

}  // namespace

void sweep_client_pipes(const std::string& manager, bool all) noexcept {
  try {
    const std::string user_prefix = pipe_prefix(manager);
    const std::string file_prefix = "mp." + name_prefix() + user_prefix;
    std::vector<std::string> doomed;
    if (DIR* d = ::opendir("/dev/shm")) {
      while (dirent* e = ::readdir(d)) {
        if (std::strncmp(e->d_name, file_prefix.c_str(), file_prefix.size()) != 0) continue;
        const std::string rest = e->d_name + file_prefix.size();
        pid_t pid = 0;
        std::uint64_t start = 0;
        if (!parse_client(rest, pid, start)) continue;
        if (all || process_liveness(pid, start) == Liveness::dead) {
          doomed.push_back(user_prefix + rest);
        }
      }
      ::closedir(d);
    }
    for (const std::string& n : doomed) {
      try {
        remove(n);
      } catch (...) {
      }
    }
  } catch (...) {
  }
}

int server_main(const std::string& name, const Queue<std::string>& listen, pid_t owner_pid,
                std::uint64_t owner_start) {
  auto server = std::make_shared<Server>(name);
  const std::string prefix = pipe_prefix(name);
  std::uint64_t sessions = 0;
  auto last_sweep = std::chrono::steady_clock::now();
  for (;;) {
    std::optional<std::string> req;
    try {
      req = listen.get_for(kAcceptSlice);
    } catch (const Error& e) {
      // A damaged request was skipped — or the queue cannot be read at all (closed, or its
      // bytes damaged for good by a stray writer): then wait the slice out rather than spin (it
      // took a CPU whole; an outside probe set the closed flag).
      if (e.code() != errc::corrupt) std::this_thread::sleep_for(kAcceptSlice);
    }
    if (req && req->compare(0, prefix.size(), prefix) == 0) {
      pid_t pid = 0;
      std::uint64_t start = 0;
      if (parse_client(std::string_view(*req).substr(prefix.size()), pid, start)) {
        try {
          Connection conn(open_only, *req, PipeEnd::second);
          SharedMemory claim(open_only, claim_name(*req));
          for (const std::string& n : {*req, claim_name(*req)}) {
            try {
              remove(n);  // both ends and the claim word are held now
            } catch (...) {
            }
          }
          if (claim.size() >= sizeof(std::uint64_t)) {  // else not a client of ours: dropped
            conn.send_bytes(std::string_view("hello"));
            auto s = std::make_shared<ServerSession>(++sessions, pid, start, std::move(conn),
                                                     std::move(claim));
            std::thread([server, s] { server->serve(s); }).detach();
          }
        } catch (...) {  // the client died before we could open its pipe, or we ran out of threads
        }
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (process_liveness(owner_pid, owner_start) == Liveness::dead) {
      // The owner died without shutting us down: its names would be left behind. Remove them
      // and stop (the data goes with us).
      for (const std::string& n : {name, listen_name(name)}) {
        try {
          remove(n);
        } catch (...) {
        }
      }
      sweep_client_pipes(name, true);
      return 0;
    }
    if (now - last_sweep > kSweepEvery) {
      sweep_client_pipes(name, false);
      last_sweep = now;
    }
  }
}

}  // namespace multiproc::detail::manager
