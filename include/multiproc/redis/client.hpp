// multiproc/redis/client.hpp — the connection to a Redis server under every multiproc::redis
// object (queue.hpp, sync.hpp, pool.hpp, manager.hpp in this directory).
//
//   mp::redis::Client client("redis://:secret@10.0.0.5:6379/2");
//   client.command({"SET", "greeting", "hello"});
//   std::string s = client.command({"GET", "greeting"}).str();   // "hello"
//
// Url: redis://[[user]:password@]host[:port][/db]; host defaults to 127.0.0.1, port to 6379, db
// to 0 (a bare "host:port" is taken as redis://host:port). A Client holds the url, its Options,
// and a small set of connections (hiredis, one TCP socket each); one connection is used by one
// call at a time, so a Client and its copies are thread-safe and one thread's blocking call
// (BLMOVE for seconds) never holds up another's. A forked child that uses an inherited Client
// opens connections of its own (a socket is never shared across processes); so does a copy used
// after fork() in the child. Copies share the connections.
//
// Failures and time: every call has a deadline — the caller's (get_for's timeout), or else
// Options::command_timeout for one try. A connection that fails (refused, reset, a server that
// stops answering: SIGSTOP, a network partition) is dropped and another is made, with backoff
// (Options::backoff_initial doubling to backoff_max) for up to Options::reconnect_for, or the
// caller's deadline if sooner; a server still loading its data after a restart (it answers
// -LOADING and runs nothing) is waited for the same way. Then:
//   - command(argv) (idempotent use: GET, SET, EVALSHA of a script that is safe to repeat) sends
//     the command again on the new connection: after a failure it may run twice (the first try
//     may have reached the server before the connection broke) — at-least-once;
//   - command_once(argv) never sends it twice: a failure after the command went out throws
//     Error(errc::disconnected) with "outcome unknown" in the message; callers that must not repeat
//     an effect (and can find out whether it happened) use it.
// Errors say which server and which command (arguments elided): Error(errc::disconnected)
// "redis 127.0.0.1:6379/0: BLMOVE: connection refused (retried for 10000 ms)";
// Error(errc::server_error) when the server answers with an error ("... EVALSHA: ERR ...");
// Error(errc::invalid_argument) for a malformed url. A timeout the caller chose (its deadline
// passed while the server did not answer) is an outcome, not an error: call() and eval_call()
// return it as std::nullopt; command() and eval() throw Error(errc::disconnected) "... timed out".
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/error.hpp>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace multiproc::redis {

using Clock = std::chrono::steady_clock;

//! A parsed redis:// url.
struct Url {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user;      //!< empty: AUTH with the password alone (Redis < 6 style)
  std::string password;  //!< empty: no AUTH
  int db = 0;

  //! Throws: Error(errc::invalid_argument) naming the url and what is wrong with it.
  static Url parse(std::string_view url);
  //! "host:port/db" — for messages; never the password.
  std::string describe() const;
};

struct Options {
  std::chrono::milliseconds connect_timeout{2000};  //!< one TCP connect + AUTH + SELECT
  std::chrono::milliseconds command_timeout{5000};  //!< one reply, when the caller has no deadline
  std::chrono::milliseconds reconnect_for{10000};   //!< keep retrying a dead server this long
  std::chrono::milliseconds backoff_initial{5};
  std::chrono::milliseconds backoff_max{500};
};

//! One reply. Strings are binary-safe. Error replies never reach the caller (they throw).
class Reply {
 public:
  enum class Type : std::uint8_t { nil, integer, string, status, array };

  Reply() = default;
  static Reply nil() { return {}; }
  static Reply integer(long long v);
  static Reply string(std::string s, Type t = Type::string);
  static Reply array(std::vector<Reply> elements);

  Type type() const noexcept { return type_; }
  bool is_nil() const noexcept { return type_ == Type::nil; }
  //! Throws: Error(errc::server_error) when the reply has another type ("expected an integer").
  long long integer() const;
  const std::string& str() const;  //!< a string or a status
  const std::vector<Reply>& elements() const;
  std::size_t size() const noexcept { return elements_.size(); }
  const Reply& operator[](std::size_t i) const;  //!< checked: Error(errc::server_error)

 private:
  Type type_ = Type::nil;
  long long integer_ = 0;
  std::string str_;
  std::vector<Reply> elements_;
};

//! A Lua script, run by EVALSHA (loaded on first use on each server; again after a restart).
//! Define one per operation as a static const; thread-safe.
class Script {
 public:
  explicit Script(std::string source, std::string name = "script");
  const std::string& source() const noexcept { return source_; }
  const std::string& sha1() const noexcept { return sha1_; }
  const std::string& name() const noexcept { return name_; }  //!< for messages

 private:
  std::string source_, sha1_, name_;
};

using Argv = std::vector<std::string>;

//! A deadline, or none (Options::command_timeout per try, reconnect_for in all).
using Deadline = std::optional<Clock::time_point>;

namespace detail {
struct ClientState;
}

class Client {
 public:
  //! Effects: parses the url; connects lazily (the first call), so a Client can be made before
  //! the server is up. Throws: Error(errc::invalid_argument) for a malformed url.
  explicit Client(std::string_view url, Options options = {});
  Client(const Client&) = default;
  Client& operator=(const Client&) = default;
  Client(Client&&) noexcept = default;
  Client& operator=(Client&&) noexcept = default;
  ~Client();

  const Url& url() const noexcept;
  const Options& options() const noexcept;
  //! "redis host:port/db", the prefix of every message.
  const std::string& describe() const noexcept;

  //! Sends argv, waits for the reply; on a broken connection reconnects and sends it again (see
  //! the header comment). `blocking_for`: the command itself blocks on the server up to this
  //! long (BLMOVE ... timeout), added to the reply timeout.
  //! Throws: Error(errc::disconnected) when the server cannot be reached in time (or the deadline
  //! passed); Error(errc::server_error) for an error reply.
  Reply command(const Argv& argv, Deadline deadline = {},
                std::chrono::milliseconds blocking_for = {}) const;
  Reply command(std::initializer_list<std::string_view> argv, Deadline deadline = {}) const;
  //! As command(), but the command goes out at most once (see the header comment).
  Reply command_once(const Argv& argv, Deadline deadline = {},
                     std::chrono::milliseconds blocking_for = {}) const;
  //! As command(), but a deadline that passes is returned as nullopt instead of thrown (a
  //! caller's own timeout is an outcome, not an error). Other failures still throw.
  std::optional<Reply> call(const Argv& argv, Deadline deadline,
                            std::chrono::milliseconds blocking_for = {}) const;
  //! Sends all commands in one write, reads all replies (one round trip). Retried whole as
  //! command() is. An error reply throws (naming the first failing command) after all replies
  //! are read, so the connection stays usable.
  std::vector<Reply> pipeline(const std::vector<Argv>& commands, Deadline deadline = {}) const;
  //! EVALSHA script keys... args... (SCRIPT LOAD and again on NOSCRIPT). Retried as command().
  Reply eval(const Script& script, const Argv& keys, const Argv& args,
             Deadline deadline = {}) const;
  //! As eval(), but a deadline that passes is nullopt (see call()).
  std::optional<Reply> eval_call(const Script& script, const Argv& keys, const Argv& args,
                                 Deadline deadline) const;
  //! As eval(), but sent at most once (see command_once()).
  Reply eval_once(const Script& script, const Argv& keys, const Argv& args,
                  Deadline deadline = {}) const;

  //! Returns: the server's clock in milliseconds since the epoch (TIME): leases are computed on
  //! the server's clock, never on a client's.
  std::int64_t server_time_ms() const;

  //! Effects: closes every idle connection of this process (the next call reconnects). Tests use
  //! it around a server restart; never needed otherwise.
  void drop_connections() const;

 private:
  std::shared_ptr<detail::ClientState> state_;
};

// multiproc::to_bytes / from_bytes (codec.hpp): a value's Codec<T> bytes, what every
// multiproc::redis object stores.
using multiproc::from_bytes;
using multiproc::to_bytes;

//! Records what an object is on first use, and checks it on every later open: the hash `meta_key`
//! gets each field that it does not have yet (HSETNX, atomically, in one script); a field that is
//! there with another value throws Error(errc::type_mismatch) naming `what` ("redis::Queue<int>
//! 'jobs'"), the field, and both values — Error(errc::wrong_kind) when that field is "kind".
//! Use it as {{"kind", "queue"}, {"type", typeid(T).name()}, {"capacity", "100"}}.
void ensure_meta(const Client& client, const std::string& meta_key, const std::string& what,
                 const std::vector<std::pair<std::string, std::string>>& fields);

//! A fresh identifier, unique across hosts and processes: 16 random bytes as 32 hex digits.
std::string unique_id();

//! Builds a key: prefix + ":" + part... ("mp:q:jobs:items"). Every multiproc object keeps its keys
//! under "mp:<kind>:<name>", so that one server can hold many objects (and other data).
std::string key(std::string_view prefix, std::initializer_list<std::string_view> parts);

}  // namespace multiproc::redis
