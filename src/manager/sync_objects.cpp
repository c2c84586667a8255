// The server side of a Manager's Queue, Lock and Event: Objects of the kinds "queue", "lock" and
// "event" (wire protocol: detail::manager::sync_op in multiproc/detail/manager_sync.hpp).
//
// Each object is a std::mutex and condition variables in the server process; every client's call
// runs on that client's own server thread. A blocking call waits in slices of at most 100 ms and
// gives up, with nothing taken, once its session is gone (Session::gone()), so a dead client never
// leaves a thread waiting for ever nor an item taken on its behalf. Session::gone() is always
// asked without the object's mutex held (it belongs to the transport).
#include <multiproc/manager.hpp>

#include "../os.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <iterator>
#include <optional>
#include <vector>
#include <mutex>

namespace multiproc::detail::manager {
namespace {

using std::chrono::steady_clock;
constexpr std::chrono::milliseconds kSlice{100};

std::int64_t read_i64(std::string_view args, std::size_t at, const std::string& who) {
  if (args.size() < at + sizeof(std::int64_t)) {
    throw Error(errc::corrupt, who + ": a request of " +
                                   std::to_string(args.size()) + " bytes is too short");
  }
  std::int64_t v;
  std::memcpy(&v, args.data() + at, sizeof v);
  return v;
}

void expect_size(std::string_view args, std::size_t n, const std::string& who) {
  if (args.size() != n) {
    throw Error(errc::corrupt, who + ": a request of " +
                                   std::to_string(args.size()) + " bytes, expected " +
                                   std::to_string(n));
  }
}

std::string bool_reply(bool b) { return std::string(1, b ? '\1' : '\0'); }

[[noreturn]] void unknown_op(const std::string& who, std::uint32_t op) {
  throw Error(errc::invalid_argument,
              who + ": unknown operation " + std::to_string(op));
}

//! Waits on `cv` (with `lk` held on entry and exit) until ready(), the timeout (microseconds, -1:
//! none) passes, or `from` is gone or gave up on the request (Session::abandoned: a request read
//! after its client's deadline, the server having been stopped or starved, is not waited out).
//! Returns: ready().
template <class Ready>
bool wait_sliced(std::unique_lock<std::mutex>& lk, std::condition_variable& cv, Session& from,
                 std::int64_t timeout, Ready ready) {
  if (ready()) return true;
  if (timeout == 0 || from.abandoned()) return false;
  constexpr std::int64_t kForever = 1'000'000'000'000'000;  // ~31 years, as wire_timeout's cap
  const auto deadline = timeout < 0 || timeout >= kForever
                            ? steady_clock::time_point::max()
                            : steady_clock::now() + std::chrono::microseconds(timeout);
  for (;;) {
    const auto now = steady_clock::now();
    if (now >= deadline) return ready();
    const auto left = deadline - now;
    cv.wait_for(lk, left < kSlice ? left : steady_clock::duration(kSlice));
    // Whether woken or not, ask whether the client is still there before taking anything: an
    // item or the lock handed to a dead client would be lost (or held until its session ends).
    // With something to take, a fresh look (gone()); with nothing, a recent one shared with the
    // client's other sessions will do (gone_lately(): 1,000 threads of a client blocked in get()
    // had their 1,000 server threads read /proc ten times a second each).
    const bool take = ready();
    lk.unlock();
    const bool gone = (take ? from.gone() : from.gone_lately()) || from.abandoned();
    lk.lock();
    if (gone) {
      cv.notify_one();  // pass on a wake-up this waiter may have consumed
      return false;     // nothing taken; the caller gives up with the lock re-held
    }
    if (ready()) return true;
  }
}

class QueueObject final : public Object {
 public:
  QueueObject(std::string_view name, std::string_view create_args)
      : who_("Queue '" + std::string(name) + "'") {
    std::uint64_t maxsize = 0;
    decode_fields(reinterpret_cast<const std::byte*>(create_args.data()), create_args.size(),
                  maxsize, type_);
    maxsize_ = static_cast<std::size_t>(maxsize);
  }

  std::string call(Session& from, std::uint32_t op, std::string_view args) override {
    switch (op) {
      case sync_op::queue_put: {
        const std::int64_t timeout = read_i64(args, 0, who_);
        std::string item(args.substr(sizeof(std::int64_t)));  // copied before the lock
        std::unique_lock<std::mutex> lk(m_);
        if (!wait_sliced(lk, not_full_, from, timeout, [&] { return !full(); })) {
          return bool_reply(false);
        }
        if (timeout >= 0 && !from.claim()) {  // its caller gave up: put nothing
          not_full_.notify_one();             // and pass on a wake-up it may have consumed
          return bool_reply(false);
        }
        items_.push_back(std::move(item));
        lk.unlock();
        not_empty_.notify_one();
        return bool_reply(true);
      }
      case sync_op::queue_get: {
        expect_size(args, sizeof(std::int64_t), who_);
        const std::int64_t timeout = read_i64(args, 0, who_);
        std::string reply(1, '\1');
        {
          std::unique_lock<std::mutex> lk(m_);
          if (!wait_sliced(lk, not_empty_, from, timeout, [&] { return !items_.empty(); })) {
            return bool_reply(false);
          }
          if (timeout >= 0 && !from.claim()) {  // its caller gave up: take nothing
            not_empty_.notify_one();            // and pass on a wake-up it may have consumed
            return bool_reply(false);
          }
          reply += items_.front();  // may throw bad_alloc: then nothing was taken
          items_.pop_front();
        }
        not_full_.notify_one();
        return reply;
      }
      case sync_op::queue_info: {
        expect_size(args, 0, who_);
        std::uint64_t n;
        {
          std::lock_guard<std::mutex> lk(m_);
          n = items_.size();
        }
        const std::uint64_t max = maxsize_;
        std::string reply(encoded_size(n, max, type_), '\0');
        encode_fields(reinterpret_cast<std::byte*>(reply.data()), n, max, type_);
        return reply;
      }
      default:
        unknown_op(who_, op);
    }
  }

  // Saved: the element type and the items, oldest first (the maxsize is in the create args).
  std::optional<std::string> save_state() override {
    std::vector<std::string> items;
    {
      std::lock_guard<std::mutex> lk(m_);
      items.assign(items_.begin(), items_.end());
    }
    std::string out(encoded_size(type_, items), '\0');
    encode_fields(reinterpret_cast<std::byte*>(out.data()), type_, items);
    return out;
  }
  // Replaces the items (even beyond maxsize: puts then wait until gets make room).
  bool load_state(std::string_view state) override {
    std::string type;
    std::vector<std::string> items;
    decode_fields(reinterpret_cast<const std::byte*>(state.data()), state.size(), type, items);
    if (type != type_) {
      throw Error(errc::type_mismatch, who_ + " holds " + demangle(type_.c_str()) +
                                           ", the saved one " + demangle(type.c_str()));
    }
    {
      std::lock_guard<std::mutex> lk(m_);
      items_.assign(std::make_move_iterator(items.begin()), std::make_move_iterator(items.end()));
    }
    not_empty_.notify_all();
    not_full_.notify_all();
    return true;
  }

 private:
  bool full() const { return maxsize_ != 0 && items_.size() >= maxsize_; }

  const std::string who_;
  std::size_t maxsize_ = 0;
  std::string type_;  // the element type, mangled (checked by Manager::Queue<T> on open)
  std::mutex m_;
  std::condition_variable not_empty_, not_full_;
  std::deque<std::string> items_;  // guarded by m_
};

class LockObject final : public Object {
 public:
  explicit LockObject(std::string_view name) : who_("Lock '" + std::string(name) + "'") {}

  std::string call(Session& from, std::uint32_t op, std::string_view args) override {
    switch (op) {
      case sync_op::lock_acquire: {
        expect_size(args, sizeof(std::int64_t), who_);
        const std::int64_t timeout = read_i64(args, 0, who_);
        std::unique_lock<std::mutex> lk(m_);
        if (holder_ == from.id()) {
          if (timeout == 0) return bool_reply(false);  // try_lock, as Mutex::try_lock
          throw Error(errc::would_deadlock, who_ + ": a thread of process " +
                                                std::to_string(from.pid()) +
                                                " locks it again while holding it");
        }
        if (!wait_sliced(lk, free_, from, timeout, [&] { return holder_ == 0; })) {
          return bool_reply(false);
        }
        if (timeout >= 0 && !from.claim()) {  // its caller gave up: take nothing
          free_.notify_one();                 // and pass on a wake-up it may have consumed
          return bool_reply(false);
        }
        holder_ = from.id();
        return bool_reply(true);
      }
      case sync_op::lock_release: {
        expect_size(args, 0, who_);
        {
          std::lock_guard<std::mutex> lk(m_);
          if (holder_ != from.id()) {
            throw Error(errc::not_owner,
                        who_ + ": unlock by a thread of process " + std::to_string(from.pid()) +
                            (holder_ == 0 ? ", but nobody holds it" : ", which does not hold it"));
          }
          holder_ = 0;
        }
        free_.notify_one();
        return {};
      }
      case sync_op::lock_locked: {
        expect_size(args, 0, who_);
        std::lock_guard<std::mutex> lk(m_);
        return bool_reply(holder_ != 0);
      }
      default:
        unknown_op(who_, op);
    }
  }

  void session_ended(Session& who) override {
    {
      std::lock_guard<std::mutex> lk(m_);
      if (holder_ != who.id()) return;
      holder_ = 0;
    }
    free_.notify_one();
  }

 private:
  const std::string who_;
  std::mutex m_;
  std::condition_variable free_;
  std::uint64_t holder_ = 0;  // the holder's session (its thread's connection), 0 = free;
                              // guarded by m_
};

class EventObject final : public Object {
 public:
  explicit EventObject(std::string_view name) : who_("Event '" + std::string(name) + "'") {}

  std::string call(Session& from, std::uint32_t op, std::string_view args) override {
    switch (op) {
      case sync_op::event_set: {
        expect_size(args, 0, who_);
        {
          std::lock_guard<std::mutex> lk(m_);
          flag_ = true;
          ++sets_;
        }
        cv_.notify_all();
        return {};
      }
      case sync_op::event_clear: {
        expect_size(args, 0, who_);
        std::lock_guard<std::mutex> lk(m_);
        flag_ = false;
        return {};
      }
      case sync_op::event_is_set: {
        expect_size(args, 0, who_);
        std::lock_guard<std::mutex> lk(m_);
        return bool_reply(flag_);
      }
      case sync_op::event_wait: {
        expect_size(args, sizeof(std::int64_t), who_);
        const std::int64_t timeout = read_i64(args, 0, who_);
        std::unique_lock<std::mutex> lk(m_);
        const std::uint64_t seen = sets_;
        // A set() after we began waiting releases us even if a clear() came before we woke.
        return bool_reply(
            wait_sliced(lk, cv_, from, timeout, [&] { return flag_ || sets_ != seen; }));
      }
      default:
        unknown_op(who_, op);
    }
  }

  // Saved: the flag, one byte.
  std::optional<std::string> save_state() override {
    std::lock_guard<std::mutex> lk(m_);
    return std::string(1, flag_ ? '\1' : '\0');
  }
  bool load_state(std::string_view state) override {
    if (state.size() != 1 || (state[0] != '\0' && state[0] != '\1')) {
      throw Error(errc::corrupt, who_ + ": a saved state of " + std::to_string(state.size()) +
                                     " bytes is not a flag");
    }
    {
      std::lock_guard<std::mutex> lk(m_);
      flag_ = state[0] == '\1';
      if (flag_) ++sets_;
    }
    cv_.notify_all();
    return true;
  }

 private:
  const std::string who_;
  std::mutex m_;
  std::condition_variable cv_;
  bool flag_ = false;       // guarded by m_
  std::uint64_t sets_ = 0;  // set() calls so far; guarded by m_
};

void expect_no_create_args(std::string_view create_args, const char* what, std::string_view name) {
  if (!create_args.empty()) {
    throw Error(errc::corrupt, std::string(what) + " '" +
                                   std::string(name) + "': unexpected create arguments");
  }
}

}  // namespace

std::string queue_create_args(std::size_t maxsize, const char* element_type) {
  const std::uint64_t max = maxsize;
  const std::string type(element_type);
  std::string out(encoded_size(max, type), '\0');
  encode_fields(reinterpret_cast<std::byte*>(out.data()), max, type);
  return out;
}

std::unique_ptr<Object> make_queue_object(std::string_view name, std::string_view create_args) {
  return std::make_unique<QueueObject>(name, create_args);
}

std::unique_ptr<Object> make_lock_object(std::string_view name, std::string_view create_args) {
  expect_no_create_args(create_args, "Lock", name);
  return std::make_unique<LockObject>(name);
}

std::unique_ptr<Object> make_event_object(std::string_view name, std::string_view create_args) {
  expect_no_create_args(create_args, "Event", name);
  return std::make_unique<EventObject>(name);
}

}  // namespace multiproc::detail::manager
