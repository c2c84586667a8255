// multiproc::redis::Client: urls, replies, scripts, and the connection set with its reconnect and
// retry rules (multiproc/redis/client.hpp says what they are).
#include <multiproc/redis/client.hpp>

#include <boost/uuid/detail/sha1.hpp>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include <poll.h>
#include <pthread.h>
#include <sys/time.h>
#include <unistd.h>

namespace multiproc::redis {

// ---------------------------------------------------------------------------------------------
// Url

namespace {

[[noreturn]] void bad_url(std::string_view url, const std::string& why) {
  // The password never goes into a message: show the url up to '@' replaced.
  std::string shown(url);
  if (auto at = shown.rfind('@'); at != std::string::npos) shown = "redis://***" + shown.substr(at);
  throw Error(errc::invalid_argument, "multiproc::redis: url '" + shown + "': " + why);
}

int parse_int(std::string_view url, std::string_view text, const char* what, int min, int max) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    bad_url(url, std::string(what) + " '" + std::string(text) + "' is not a number in [" +
                     std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

}  // namespace

Url Url::parse(std::string_view url) {
  Url u;
  std::string_view rest = url;
  constexpr std::string_view scheme = "redis://";
  if (rest.substr(0, scheme.size()) == scheme) {
    rest.remove_prefix(scheme.size());
  } else if (rest.find("://") != std::string_view::npos) {
    bad_url(url, "only redis:// urls are supported");
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    auto colon = auth.find(':');
    if (colon == std::string_view::npos) {
      u.password = std::string(auth);  // redis://secret@host: the password alone
    } else {
      u.user = std::string(auth.substr(0, colon));
      u.password = std::string(auth.substr(colon + 1));
    }
  }
  std::string_view hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) u.db = parse_int(url, db, "database", 0, 1 << 20);
  }
  if (!hostport.empty() && hostport.front() == '[') {  // [::1]:6379
    auto close = hostport.find(']');
    if (close == std::string_view::npos) bad_url(url, "unterminated '[' in the host");
    u.host = std::string(hostport.substr(1, close - 1));
    hostport.remove_prefix(close + 1);
    if (!hostport.empty()) {
      if (hostport.front() != ':') bad_url(url, "expected ':' after ']'");
      u.port = parse_int(url, hostport.substr(1), "port", 1, 65535);
    }
  } else {
    auto colon = hostport.rfind(':');
    std::string_view host = hostport.substr(0, colon);
    if (colon != std::string_view::npos) {
      u.port = parse_int(url, hostport.substr(colon + 1), "port", 1, 65535);
    }
    if (!host.empty()) u.host = std::string(host);
  }
  if (u.host.find_first_of(" \t/@") != std::string::npos) bad_url(url, "bad host '" + u.host + "'");
  return u;
}

std::string Url::describe() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port) + "/" + std::to_string(db);
}

// ---------------------------------------------------------------------------------------------
// Reply

Reply Reply::integer(long long v) {
  Reply r;
  r.type_ = Type::integer;
  r.integer_ = v;
  return r;
}

Reply Reply::string(std::string s, Type t) {
  Reply r;
  r.type_ = t;
  r.str_ = std::move(s);
  return r;
}

Reply Reply::array(std::vector<Reply> elements) {
  Reply r;
  r.type_ = Type::array;
  r.elements_ = std::move(elements);
  return r;
}

namespace {
const char* type_name(Reply::Type t) {
  switch (t) {
    case Reply::Type::nil: return "nil";
    case Reply::Type::integer: return "an integer";
    case Reply::Type::string: return "a string";
    case Reply::Type::status: return "a status";
    case Reply::Type::array: return "an array";
  }
  return "?";
}

[[noreturn]] void wrong_type(Reply::Type have, const char* want) {
  throw Error(errc::server_error, std::string("multiproc::redis: expected ") + want +
                                      " in the reply, got " + type_name(have));
}
}  // namespace

long long Reply::integer() const {
  if (type_ != Type::integer) wrong_type(type_, "an integer");
  return integer_;
}

const std::string& Reply::str() const {
  if (type_ != Type::string && type_ != Type::status) wrong_type(type_, "a string");
  return str_;
}

const std::vector<Reply>& Reply::elements() const {
  if (type_ != Type::array) wrong_type(type_, "an array");
  return elements_;
}

const Reply& Reply::operator[](std::size_t i) const {
  const auto& e = elements();
  if (i >= e.size()) {
    throw Error(errc::server_error, "multiproc::redis: reply has " + std::to_string(e.size()) +
                                        " elements, wanted element " + std::to_string(i));
  }
  return e[i];
}

// ---------------------------------------------------------------------------------------------
// Script

Script::Script(std::string source, std::string name) : source_(std::move(source)), name_(std::move(name)) {
  boost::uuids::detail::sha1 h;
  h.process_bytes(source_.data(), source_.size());
  boost::uuids::detail::sha1::digest_type d;
  h.get_digest(d);
  char hex[41];
  for (int i = 0; i < 5; ++i) std::snprintf(hex + 8 * i, 9, "%08x", static_cast<unsigned>(d[i]));
  sha1_.assign(hex, 40);
}

// ---------------------------------------------------------------------------------------------
// Connections

namespace detail {

namespace {

// One lock for every Client's idle list: held for a few instructions at a time, and held across
// fork() (pthread_atfork below) so that a child never inherits it locked by a thread that the
// child does not have.
std::mutex& pool_mutex() {
  static std::mutex m;
  return m;
}

void atfork_prepare() { pool_mutex().lock(); }
void atfork_release() { pool_mutex().unlock(); }

void register_atfork_once() {
  static const int registered = [] {
    pool_mutex();
    return pthread_atfork(atfork_prepare, atfork_release, atfork_release);
  }();
  (void)registered;
}

struct ContextFree {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;

timeval to_timeval(std::chrono::milliseconds ms) {
  if (ms.count() < 1) ms = std::chrono::milliseconds(1);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::chrono::milliseconds until(Clock::time_point t) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now());
  return d.count() < 0 ? std::chrono::milliseconds(0) : d;
}

Reply convert(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER: return Reply::integer(r->integer);
    case REDIS_REPLY_STRING: return Reply::string(std::string(r->str, r->len));
    case REDIS_REPLY_STATUS: return Reply::string(std::string(r->str, r->len), Reply::Type::status);
    case REDIS_REPLY_ARRAY: {
      std::vector<Reply> e;
      e.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) e.push_back(convert(r->element[i]));
      return Reply::array(std::move(e));
    }
    default: return Reply::nil();
  }
}

struct ReplyFree {
  void operator()(void* r) const noexcept { freeReplyObject(r); }
};

// What one try on one connection ended with.
enum class Outcome { ok, connect_failed, io_failed, timed_out };

struct Attempt {
  Outcome outcome = Outcome::ok;
  std::string why;                  // for a failure
  bool sent = false;                // the request may have reached the server
  std::vector<Reply> replies;       // ok
  std::vector<std::string> errors;  // ok: per reply, the server's error text ("" = none)
};

}  // namespace

struct ClientState {
  Url url;
  Options options;
  std::string describe;
  pid_t pid = 0;
  std::vector<Context> idle;  // guarded by pool_mutex()

  ~ClientState() = default;

  // Takes an idle connection of this process, or none.
  Context take() {
    std::lock_guard<std::mutex> lock(pool_mutex());
    if (pid != ::getpid()) {
      // A forked child: the idle sockets are the parent's. Closing our copies of the descriptors
      // leaves the parent's open; never write to them.
      idle.clear();
      pid = ::getpid();
    }
    while (!idle.empty()) {
      Context c = std::move(idle.back());
      idle.pop_back();
      if (still_open(c.get())) return c;
    }
    return nullptr;
  }

  // An idle connection that the server closed meanwhile (restarted, killed) reads as EOF: it is
  // dropped here rather than written to, so that command_once does not report "outcome unknown"
  // for a command that could never have reached a server.
  static bool still_open(const redisContext* c) {
    pollfd p{};
    p.fd = c->fd;
    p.events = POLLIN | POLLRDHUP;
    return ::poll(&p, 1, 0) == 0;  // an idle connection has nothing to read
  }

  void give_back(Context c) {
    std::lock_guard<std::mutex> lock(pool_mutex());
    if (pid != ::getpid()) return;  // made before a fork in another thread: drop it
    if (idle.size() < 16) idle.push_back(std::move(c));
  }

  // Connects, authenticates, selects the db. Returns null and sets `why` on failure.
  Context connect(std::chrono::milliseconds budget, std::string& why) {
    auto timeout = std::min(options.connect_timeout, budget);
    Context c(redisConnectWithTimeout(url.host.c_str(), url.port, to_timeval(timeout)));
    if (!c) {
      why = "cannot allocate a connection";
      return nullptr;
    }
    if (c->err) {
      why = c->errstr[0] ? c->errstr : "connect failed";
      if (why.find("Resource temporarily unavailable") != std::string::npos) why = "connect timed out";
      return nullptr;
    }
    redisEnableKeepAlive(c.get());
    redisSetTimeout(c.get(), to_timeval(timeout));
    std::vector<Argv> setup;
    if (!url.password.empty()) {
      if (url.user.empty()) setup.push_back({"AUTH", url.password});
      else setup.push_back({"AUTH", url.user, url.password});
    }
    if (url.db != 0) setup.push_back({"SELECT", std::to_string(url.db)});
    for (const auto& argv : setup) {
      std::vector<const char*> p;
      std::vector<std::size_t> n;
      for (const auto& a : argv) {
        p.push_back(a.data());
        n.push_back(a.size());
      }
      std::unique_ptr<void, ReplyFree> r(
          redisCommandArgv(c.get(), static_cast<int>(p.size()), p.data(), n.data()));
      if (!r) {
        why = std::string(argv[0]) + " failed: " + (c->errstr[0] ? c->errstr : "i/o error");
        return nullptr;
      }
      auto* rr = static_cast<redisReply*>(r.get());
      if (rr->type == REDIS_REPLY_ERROR) {
        why = argv[0] + " refused: " + std::string(rr->str, rr->len);
        // A wrong password is no reason to retry: report it now.
        throw Error(errc::server_error, "multiproc::redis: " + describe + ": " + why);
      }
    }
    return c;
  }

  // One try: sends the commands on `c`, reads the replies with `reply_timeout` for all of them.
  static Attempt run(redisContext* c, const std::vector<Argv>& commands,
                     std::chrono::milliseconds reply_timeout) {
    Attempt a;
    redisSetTimeout(c, to_timeval(reply_timeout));
    for (const auto& argv : commands) {
      std::vector<const char*> p;
      std::vector<std::size_t> n;
      p.reserve(argv.size());
      n.reserve(argv.size());
      for (const auto& s : argv) {
        p.push_back(s.data());
        n.push_back(s.size());
      }
      if (redisAppendCommandArgv(c, static_cast<int>(p.size()), p.data(), n.data()) != REDIS_OK) {
        a.outcome = Outcome::io_failed;
        a.why = c->errstr[0] ? c->errstr : "cannot format the command";
        return a;
      }
    }
    a.sent = true;  // from here the server may have received (part of) it
    for (std::size_t i = 0; i < commands.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) {
        const bool timeout = c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
        a.outcome = timeout ? Outcome::timed_out : Outcome::io_failed;
        a.why = timeout ? "no reply in time" : (c->errstr[0] ? c->errstr : "connection lost");
        if (a.why.find("Resource temporarily unavailable") != std::string::npos) {
          a.outcome = Outcome::timed_out;
          a.why = "no reply in time";
        }
        return a;
      }
      std::unique_ptr<void, ReplyFree> r(raw);
      auto* rr = static_cast<redisReply*>(raw);
      if (rr->type == REDIS_REPLY_ERROR) {
        a.errors.emplace_back(rr->str, rr->len);
        a.replies.push_back(Reply::nil());
      } else {
        a.errors.emplace_back();
        a.replies.push_back(convert(rr));
      }
    }
    return a;
  }
};

}  // namespace detail

namespace {

using detail::Attempt;
using detail::Outcome;

std::string label_of(const Argv& argv) { return argv.empty() ? std::string("(empty)") : argv[0]; }

enum class Mode { retry, once };

// The retry loop shared by every call. Returns nullopt when `deadline` passed (the caller's
// timeout); throws on every other failure.
std::optional<std::vector<Reply>> execute(detail::ClientState& s, const std::vector<Argv>& commands,
                                          const std::string& label, Deadline deadline,
                                          std::chrono::milliseconds blocking_for, Mode mode) {
  detail::register_atfork_once();
  using std::chrono::milliseconds;
  auto backoff = s.options.backoff_initial;
  std::optional<Clock::time_point> give_up;  // set at the first failure
  std::string last_why;
  int tries = 0;
  auto fail = [&](const std::string& why) -> std::optional<std::vector<Reply>> {
    throw Error(errc::disconnected, "multiproc::redis: " + s.describe + ": " + label + ": " + why);
  };
  for (;;) {
    const auto now = Clock::now();
    if (deadline && now >= *deadline && tries > 0) return std::nullopt;
    if (give_up && now >= *give_up) {
      return fail(last_why + " (retried for " + std::to_string(s.options.reconnect_for.count()) +
                  " ms)");
    }
    ++tries;
    // The budget of this try: the caller's deadline, or one command_timeout (+ the blocking time).
    milliseconds reply_timeout = s.options.command_timeout + blocking_for;
    if (deadline) reply_timeout = std::min(reply_timeout, detail::until(*deadline) + milliseconds(50));
    if (give_up) reply_timeout = std::min(reply_timeout, detail::until(*give_up) + blocking_for);
    detail::Context c = s.take();
    Attempt a;
    if (!c) {
      c = s.connect(reply_timeout, a.why);
      if (!c) a.outcome = Outcome::connect_failed;
    }
    if (c) a = detail::ClientState::run(c.get(), commands, reply_timeout);
    if (a.outcome == Outcome::ok) {
      // A server that restarted and is still loading its data (AOF) refuses every command with
      // LOADING without running it: wait for it as for a server that is not up yet. (A pipeline
      // is retried only if every command was refused, or if it may be repeated anyway.)
      std::size_t loading = 0;
      for (const auto& e : a.errors) loading += e.compare(0, 8, "LOADING ") == 0 ? 1 : 0;
      if (loading > 0 && (mode == Mode::retry || loading == a.errors.size())) {
        s.give_back(std::move(c));
        last_why = "the server is loading its data";
        if (deadline && Clock::now() >= *deadline) return std::nullopt;
        if (!give_up) give_up = Clock::now() + s.options.reconnect_for;
        auto pause = backoff;
        if (deadline) pause = std::min(pause, detail::until(*deadline));
        pause = std::min(pause, detail::until(*give_up));
        std::this_thread::sleep_for(pause);
        backoff = std::min(backoff * 2, s.options.backoff_max);
        continue;
      }
      s.give_back(std::move(c));
      for (std::size_t i = 0; i < a.errors.size(); ++i) {
        if (!a.errors[i].empty()) {
          std::string which = commands.size() > 1
                                  ? " (command " + std::to_string(i + 1) + " of " +
                                        std::to_string(commands.size()) + ", " +
                                        label_of(commands[i]) + ")"
                                  : "";
          throw Error(errc::server_error, "multiproc::redis: " + s.describe + ": " + label +
                                              which + ": " + a.errors[i]);
        }
      }
      return std::move(a.replies);
    }
    // A broken or silent connection is never reused.
    c.reset();
    last_why = a.why;
    if (deadline && Clock::now() >= *deadline) return std::nullopt;
    if (mode == Mode::once && a.sent) {
      return fail(a.why + "; the command may or may not have run (outcome unknown)");
    }
    if (!give_up) give_up = Clock::now() + s.options.reconnect_for;
    if (a.outcome == Outcome::connect_failed || a.outcome == Outcome::io_failed) {
      auto pause = backoff;
      if (deadline) pause = std::min(pause, detail::until(*deadline));
      pause = std::min(pause, detail::until(*give_up));
      std::this_thread::sleep_for(pause);
      backoff = std::min(backoff * 2, s.options.backoff_max);
    }
  }
}

}  // namespace

Client::Client(std::string_view url, Options options) : state_(std::make_shared<detail::ClientState>()) {
  state_->url = Url::parse(url);
  state_->options = options;
  state_->describe = "redis " + state_->url.describe();
  state_->pid = ::getpid();
}

Client::~Client() = default;

const Url& Client::url() const noexcept { return state_->url; }
const Options& Client::options() const noexcept { return state_->options; }
const std::string& Client::describe() const noexcept { return state_->describe; }

Reply Client::command(const Argv& argv, Deadline deadline, std::chrono::milliseconds blocking_for) const {
  auto r = execute(*state_, {argv}, label_of(argv), deadline, blocking_for, Mode::retry);
  if (!r) {
    throw Error(errc::disconnected, "multiproc::redis: " + state_->describe + ": " + label_of(argv) +
                                        ": timed out (the deadline passed without a reply)");
  }
  return std::move(r->front());
}

Reply Client::command(std::initializer_list<std::string_view> argv, Deadline deadline) const {
  Argv a;
  for (auto s : argv) a.emplace_back(s);
  return command(a, deadline);
}

Reply Client::command_once(const Argv& argv, Deadline deadline,
                           std::chrono::milliseconds blocking_for) const {
  auto r = execute(*state_, {argv}, label_of(argv), deadline, blocking_for, Mode::once);
  if (!r) {
    throw Error(errc::disconnected, "multiproc::redis: " + state_->describe + ": " + label_of(argv) +
                                        ": timed out (outcome unknown)");
  }
  return std::move(r->front());
}

std::optional<Reply> Client::call(const Argv& argv, Deadline deadline,
                                  std::chrono::milliseconds blocking_for) const {
  auto r = execute(*state_, {argv}, label_of(argv), deadline, blocking_for, Mode::retry);
  if (!r) return std::nullopt;
  return std::move(r->front());
}

std::vector<Reply> Client::pipeline(const std::vector<Argv>& commands, Deadline deadline) const {
  if (commands.empty()) return {};
  std::string label = "pipeline of " + std::to_string(commands.size()) + " (" + label_of(commands[0]) + ", ...)";
  auto r = execute(*state_, commands, label, deadline, {}, Mode::retry);
  if (!r) {
    throw Error(errc::disconnected,
                "multiproc::redis: " + state_->describe + ": " + label + ": timed out");
  }
  return std::move(*r);
}

namespace {

Argv evalsha_argv(const Script& script, const Argv& keys, const Argv& args) {
  Argv argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(std::to_string(keys.size()));
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

bool is_noscript(const Error& e) {
  return e.code() == errc::server_error &&
         std::string_view(e.what()).find("NOSCRIPT") != std::string_view::npos;
}

}  // namespace

std::optional<Reply> Client::eval_call(const Script& script, const Argv& keys, const Argv& args,
                                       Deadline deadline) const {
  const Argv argv = evalsha_argv(script, keys, args);
  const std::string label = "EVALSHA " + script.name();
  for (int attempt = 0;; ++attempt) {
    try {
      auto r = execute(*state_, {argv}, label, deadline, {}, Mode::retry);
      if (!r) return std::nullopt;
      return std::move(r->front());
    } catch (const Error& e) {
      // A server that never saw the script, or restarted since: load it and run it again. A
      // NOSCRIPT reply means the script did not run, so this repeats nothing.
      if (!is_noscript(e) || attempt > 0) throw;
      execute(*state_, {{"SCRIPT", "LOAD", script.source()}}, "SCRIPT LOAD " + script.name(),
              deadline, {}, Mode::retry);
    }
  }
}

Reply Client::eval(const Script& script, const Argv& keys, const Argv& args, Deadline deadline) const {
  auto r = eval_call(script, keys, args, deadline);
  if (!r) {
    throw Error(errc::disconnected, "multiproc::redis: " + state_->describe + ": EVALSHA " +
                                        script.name() + ": timed out");
  }
  return std::move(*r);
}

Reply Client::eval_once(const Script& script, const Argv& keys, const Argv& args,
                        Deadline deadline) const {
  const Argv argv = evalsha_argv(script, keys, args);
  const std::string label = "EVALSHA " + script.name();
  for (int attempt = 0;; ++attempt) {
    try {
      auto r = execute(*state_, {argv}, label, deadline, {}, Mode::once);
      if (!r) {
        throw Error(errc::disconnected, "multiproc::redis: " + state_->describe + ": " + label +
                                            ": timed out (outcome unknown)");
      }
      return std::move(r->front());
    } catch (const Error& e) {
      if (!is_noscript(e) || attempt > 0) throw;
      execute(*state_, {{"SCRIPT", "LOAD", script.source()}}, "SCRIPT LOAD " + script.name(),
              deadline, {}, Mode::retry);
    }
  }
}

std::int64_t Client::server_time_ms() const {
  Reply r = command({"TIME"});
  long long sec = std::stoll(r[0].str());
  long long usec = std::stoll(r[1].str());
  return sec * 1000 + usec / 1000;
}

void Client::drop_connections() const {
  std::lock_guard<std::mutex> lock(detail::pool_mutex());
  state_->idle.clear();
}

std::string unique_id() {
  static thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  // Reseeded in a forked child, so that parent and child never draw the same ids.
  static thread_local pid_t seeded_for = ::getpid();
  if (seeded_for != ::getpid()) {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    gen.seed(seq);
    seeded_for = ::getpid();
  }
  char hex[33];
  std::uint64_t a = gen(), b = gen();
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return std::string(hex, 32);
}

void ensure_meta(const Client& client, const std::string& meta_key, const std::string& what,
                 const std::vector<std::pair<std::string, std::string>>& fields) {
  // Returns {} when every field matches (or was set now), else {field, stored value}.
  static const Script check(R"lua(
for i = 1, #ARGV, 2 do
  local have = redis.call('HGET', KEYS[1], ARGV[i])
  if have and have ~= ARGV[i + 1] then return {ARGV[i], have} end
end
for i = 1, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {}
)lua",
                            "ensure_meta");
  Argv args;
  for (const auto& [f, v] : fields) {
    args.push_back(f);
    args.push_back(v);
  }
  Reply r = client.eval(check, {meta_key}, args);
  if (r.size() == 2) {
    const std::string& field = r[0].str();
    std::string wanted;
    for (const auto& [f, v] : fields) {
      if (f == field) wanted = v;
    }
    // Another kind of object under the name is errc::wrong_kind; the same kind with other
    // types or settings is errc::type_mismatch.
    throw Error(field == "kind" ? errc::wrong_kind : errc::type_mismatch,
                "multiproc::redis: " + what + " on " + client.describe() +
                                         ": it exists with " + field + " '" + r[1].str() +
                                         "', opened with " + field + " '" + wanted + "'");
  }
}

std::string key(std::string_view prefix, std::initializer_list<std::string_view> parts) {
  std::string k(prefix);
  for (auto p : parts) {
    k += ':';
    k += p;
  }
  return k;
}

}  // namespace multiproc::redis
