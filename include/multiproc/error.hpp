// multiproc/error.hpp — the exceptions multiproc throws.
//
// Every error multiproc reports is a multiproc::Error, a std::system_error. Its code() is in
// multiproc::error_category() for multiproc's own conditions (a missing name, a type mismatch, a
// closed queue) and in std::system_category() when the operating system refused (errno). Its
// what() names the object ("SharedValue<int> 'counter'") and says what went wrong, in one line.
//
// Expected outcomes — a timeout, a full queue on try_put — are return values, never exceptions.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

namespace multiproc {

//! multiproc's own error conditions, in multiproc::error_category().
enum class errc {
  not_found = 1,     //!< no object of that name
  already_exists,    //!< create_only on a name that is taken
  wrong_kind,        //!< the name holds another kind of object (a Queue opened as a Mutex)
  type_mismatch,     //!< same kind, other element type or size
  corrupt,           //!< the segment's header or body fails validation
  invalid_argument,  //!< a bad name, an unknown type code, an absurd size
  not_owner,         //!< unlock by a thread that does not hold the lock
  would_deadlock,    //!< relocking a non-recursive Mutex the caller already holds
  bad_state,         //!< the call is not allowed in the object's current state
  closed,            //!< the queue or connection is closed (multiproc::Closed)
  eof,               //!< the peer closed and everything sent was received (multiproc::EOFError)
  wrong_direction,   //!< send on a receive-only end of a simplex Pipe, or the reverse
  too_large,         //!< a message that can never fit
  broken_barrier,    //!< multiproc::BrokenBarrier
  remote_error,      //!< an exception raised inside a child task (multiproc::RemoteError)
  broken_pool,       //!< a worker died while running a task (multiproc::BrokenPool)
  // 17 was timed_out, never used: left free so that the values below keep their numbers
  owner_died = 18,   //!< a process died holding the lock of this data, which may be half-updated
  disconnected,      //!< the server at the other end (a Manager's process) died or went away
  cancelled,         //!< a Future whose call was cancelled before it ran (multiproc::CancelledError)
  server_error,      //!< a server (Redis, multiproc::redis) answered a command with an error
};

}  // namespace multiproc

namespace std {
template <>
struct is_error_code_enum<multiproc::errc> : true_type {};
}  // namespace std

namespace multiproc {

//! The category of multiproc::errc codes; name() is "multiproc".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

//! Base of everything multiproc throws. what() is exactly the message given, without the
//! category text std::system_error would append.
class Error : public std::system_error {
 public:
  Error(errc code, const std::string& message)
      : std::system_error(make_error_code(code), message), message_(message) {}
  Error(std::error_code code, const std::string& message)
      : std::system_error(code, message), message_(message) {}

  const char* what() const noexcept override { return message_.c_str(); }

  //! Builds an Error for a failed system call: code() is errno in std::system_category() and
  //! what() is "<message>: <strerror(errno)>".
  static Error from_errno(int err, const std::string& message);

 private:
  std::string message_;
};

//! Connection::recv on a connection whose peer closed, after everything sent was received.
class EOFError : public Error {
 public:
  explicit EOFError(const std::string& message) : Error(errc::eof, message) {}
};

//! A put on a closed queue, or a get on a closed queue that has been drained.
class Closed : public Error {
 public:
  explicit Closed(const std::string& message) : Error(errc::closed, message) {}
};

//! Barrier::wait on a broken barrier (aborted, timed out, or its action threw).
class BrokenBarrier : public Error {
 public:
  explicit BrokenBarrier(const std::string& message) : Error(errc::broken_barrier, message) {}
};

//! An exception raised inside a child task; what() carries the child's exception type and message.
class RemoteError : public Error {
 public:
  RemoteError(std::string type, std::string message)
      : Error(errc::remote_error, type + ": " + message),
        type_(std::move(type)),
        remote_message_(std::move(message)) {}
  //! The type of the exception thrown in the child (demangled, e.g. "std::runtime_error").
  const std::string& type() const noexcept { return type_; }
  //! The child's what().
  const std::string& remote_message() const noexcept { return remote_message_; }

 private:
  std::string type_;
  std::string remote_message_;
};

//! A Pool call that cannot complete because a worker died while running its task.
class BrokenPool : public Error {
 public:
  explicit BrokenPool(const std::string& message) : Error(errc::broken_pool, message) {}
};

//! Future::result() on a future that was cancelled (Python's concurrent.futures.CancelledError).
class CancelledError : public Error {
 public:
  explicit CancelledError(const std::string& message) : Error(errc::cancelled, message) {}
};

}  // namespace multiproc
