// multiproc/detail/manager_sync.hpp — private, included by manager.hpp: the Manager's Queue, Lock
// and Event (Python's Manager().Queue(), .Lock(), .Event()), as proxies to objects that live in
// the manager's server process.
//
//   mp::Manager mgr;
//   auto jobs = mgr.Queue<std::string>("jobs", 100);   // maxsize 100; 0 = unbounded
//   auto lock = mgr.Lock("io");
//   auto done = mgr.Event("done");
//   jobs.put("a");                                     // any process: forked, or exec'd and
//   { std::lock_guard<mp::LockProxy> g(lock); ... }    // connected with Manager(open_only, name)
//   if (auto j = jobs.get_for(1s)) ...
//
// Proxies are cheap copies of a reference (same name -> same object, from any process). Every call
// is one round trip; a blocking call (get, put on a full queue, lock, wait) waits in the server on
// the caller's own connection (each thread has its own), so other clients, and the caller's other
// threads, are not held up.
//
// Crashes (what survives what):
//   - a client (a thread, or its whole process) that ends or dies holding a Lock releases it: the
//     server sees its connection end (it looks every 100 ms) and the next waiter gets it;
//   - a client that dies while blocked in get/put/lock/wait takes nothing: its server thread
//     asks whether the client is still there before it takes an item or the lock, and gives up
//     the wait within 100 ms. The one window left: an item the server has handed over (popped,
//     reply written) is lost if the client dies before it reads the reply, as in Python (a get
//     is at-most-once);
//   - a client stopped (SIGSTOP) is alive: it keeps a lock it holds, and a get it was waiting in
//     may take an item, delivered when it continues;
//   - a server stopped (SIGSTOP), or starved of CPU, holds up no timed call (try_*, *_for,
//     *_until): it returns at its deadline, at most 100 ms later, and nothing of it is applied
//     afterwards (the server claims a timed request before it changes anything, the caller gives
//     up only on a request not claimed: transport.hpp, "Deadlines"; a thread's first call, which
//     connects, gives up at its deadline too). Not covered: a server stopped between claiming a
//     call and answering it holds that call up until it continues, and so does a timed put whose
//     request does not fit the connection's free ring (256 KiB, less what requests given up on
//     still take until the server reads them) — it waits to be sent, and is applied when the
//     server continues. Calls without a deadline wait for it;
//   - the manager dying makes every call fail with Error(errc::disconnected) (see ObjectRef);
//     the queues' items and the locks' and events' states are lost with it.
//
// Manager::save / load keep a queue's items (oldest first; its maxsize and element type are in
// the file too) and an event's flag; not a lock (its holder is a connection of the old manager).
//
// Timeouts (try_*, *_for, *_until) are return values (false, std::nullopt), never exceptions.
#pragma once

#include <multiproc/codec.hpp>
#include <multiproc/detail/manager_object.hpp>
#include <multiproc/error.hpp>
#include <multiproc/manager.hpp>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>

namespace multiproc {

namespace detail::manager {

//! Wire protocol of the "queue", "lock" and "event" kinds (proxy <-> src/manager/sync_objects.cpp).
//! A timeout travels as int64 microseconds, -1 = no deadline, 0 = do not wait.
namespace sync_op {
enum : std::uint32_t {
  // queue; created with encode_fields(uint64 maxsize, string element type (mangled))
  queue_put = 1,  // [int64 timeout][item bytes] -> [bool put]
  queue_get,      // [int64 timeout] -> [bool got][item bytes]
  queue_info,     // -> encode_fields(uint64 size, uint64 maxsize, string element type)
  // lock; created with no arguments
  lock_acquire = 16,  // [int64 timeout] -> [bool acquired]
  lock_release,       // -> nothing
  lock_locked,        // -> [bool]
  // event; created with no arguments
  event_set = 32,  // -> nothing
  event_clear,     // -> nothing
  event_is_set,    // -> [bool]
  event_wait,      // [int64 timeout] -> [bool set]
};
}  // namespace sync_op

//! A duration as the wire's timeout: microseconds rounded up, 0 for none or negative, -1 (no
//! deadline) beyond ~30 years.
template <class R, class P>
std::int64_t wire_timeout(const std::chrono::duration<R, P>& d) {
  const double seconds = std::chrono::duration<double>(d).count();
  if (!(seconds > 0)) return 0;
  if (seconds > 1e9) return -1;
  return static_cast<std::int64_t>(std::ceil(seconds * 1e6));
}
//! A time point of any clock as the wire's timeout (time_point::max() = no deadline).
template <class C, class D>
std::int64_t wire_timeout_until(const std::chrono::time_point<C, D>& t) {
  if (t == std::chrono::time_point<C, D>::max()) return -1;
  const double left = std::chrono::duration<double>(t.time_since_epoch()).count() -
                      std::chrono::duration<double>(C::now().time_since_epoch()).count();
  return wire_timeout(std::chrono::duration<double>(left));
}

// The untyped client side of a queue (src/manager/sync.cpp).
//! Returns: encode_fields(maxsize, element type), a queue's create arguments.
std::string queue_create_args(std::size_t maxsize, const char* element_type);
//! Checks that the queue `ref` holds `element_type`; Throws: Error(errc::type_mismatch).
void queue_check_type(const ObjectRef& ref, const char* element_type);
//! Sends a put whose request (ObjectRef::kHeader bytes, 8 bytes for the timeout, then the item)
//! the caller built. Returns: whether it was put.
bool queue_put(const ObjectRef& ref, std::string request, std::int64_t timeout);
//! Returns: the item's bytes, or nullopt at the deadline.
std::optional<std::string> queue_get(const ObjectRef& ref, std::int64_t timeout);
//! Returns: (size, maxsize), a snapshot.
std::pair<std::size_t, std::size_t> queue_info(const ObjectRef& ref);

// The server side (src/manager/sync_objects.cpp): factories of the three kinds, and
// register_sync_kinds(), which registers them with register_kind (once per process; later calls
// do nothing). The server registers them before it serves.
std::unique_ptr<Object> make_queue_object(std::string_view name, std::string_view create_args);
std::unique_ptr<Object> make_lock_object(std::string_view name, std::string_view create_args);
std::unique_ptr<Object> make_event_object(std::string_view name, std::string_view create_args);
void register_sync_kinds();

}  // namespace detail::manager

//! A Manager's queue of T (Python's Manager().Queue(maxsize)): FIFO, shared by every process that
//! reaches the manager. T needs a Codec (codec.hpp). Copyable; copies refer to the same queue.
template <class T>
class QueueProxy {
  static_assert(has_codec_v<T>,
                "QueueProxy<T> needs a multiproc::Codec<T> (see codec.hpp): items travel as bytes");

 public:
  using value_type = T;

  //! Made by Manager::Queue<T>().
  QueueProxy() = default;  // empty: every call throws Error(errc::bad_state)
  explicit QueueProxy(detail::manager::ObjectRef ref) : ref_(std::move(ref)) {}

  //! Effects: appends v, waiting while the queue is full.
  //! Throws: what Codec<T>::encode throws; Error(errc::disconnected) if the manager is gone.
  void put(const T& v) const { put_impl(v, -1); }
  //! Returns: false, without waiting, if the queue is full.
  bool try_put(const T& v) const { return put_impl(v, 0); }
  //! Returns: false if the queue stayed full until the timeout (nothing is put).
  template <class Rep, class Period>
  bool put_for(const T& v, const std::chrono::duration<Rep, Period>& timeout) const {
    return put_impl(v, detail::manager::wire_timeout(timeout));
  }
  template <class C, class D>
  bool put_until(const T& v, const std::chrono::time_point<C, D>& deadline) const {
    return put_impl(v, detail::manager::wire_timeout_until(deadline));
  }

  //! Returns: the oldest item, waiting while the queue is empty.
  //! Throws: what Codec<T>::decode throws (the item is consumed); Error(errc::disconnected).
  T get() const { return *get_impl(-1); }
  //! Returns: the oldest item, or nullopt (without waiting) when the queue is empty.
  std::optional<T> try_get() const { return get_impl(0); }
  //! Returns: the oldest item, or nullopt if none came before the timeout.
  template <class Rep, class Period>
  std::optional<T> get_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return get_impl(detail::manager::wire_timeout(timeout));
  }
  template <class C, class D>
  std::optional<T> get_until(const std::chrono::time_point<C, D>& deadline) const {
    return get_impl(detail::manager::wire_timeout_until(deadline));
  }

  //! Snapshots (other processes may change the queue at once).
  std::size_t size() const { return detail::manager::queue_info(ref_).first; }
  bool empty() const { return size() == 0; }
  bool full() const {
    const auto [n, max] = detail::manager::queue_info(ref_);
    return max != 0 && n >= max;
  }
  //! The queue's maxsize (0: unbounded), as its creator asked.
  std::size_t maxsize() const { return detail::manager::queue_info(ref_).second; }
  const std::string& name() const noexcept { return ref_.name(); }

 private:
  bool put_impl(const T& v, std::int64_t timeout) const {
    constexpr std::size_t at = detail::manager::ObjectRef::kHeader + sizeof(std::int64_t);
    std::string request(at + Codec<T>::size(v), '\0');
    Codec<T>::encode(v, reinterpret_cast<std::byte*>(request.data() + at));
    return detail::manager::queue_put(ref_, std::move(request), timeout);
  }
  std::optional<T> get_impl(std::int64_t timeout) const {
    std::optional<std::string> bytes = detail::manager::queue_get(ref_, timeout);
    if (!bytes) return std::nullopt;
    return Codec<T>::decode(reinterpret_cast<const std::byte*>(bytes->data()), bytes->size());
  }

  detail::manager::ObjectRef ref_;
};

//! A Manager's lock (Python's Manager().Lock()): held by one thread of one process at a time.
//! Lockable and TimedLockable, so std::lock_guard, std::unique_lock and std::scoped_lock work.
//! Unlike Python's, it is owned: only the thread that locked it may unlock it (the owner is the
//! thread's connection to the manager), and a thread or process that dies holding it releases it
//! (the manager sees the connection end).
class LockProxy {
 public:
  //! Made by Manager::Lock().
  LockProxy() = default;  // empty: every call throws Error(errc::bad_state)
  explicit LockProxy(detail::manager::ObjectRef ref) : ref_(std::move(ref)) {}

  //! Effects: waits until this thread holds the lock.
  //! Throws: Error(errc::would_deadlock) if this thread holds it already; Error(errc::disconnected).
  void lock() const { acquire(-1); }
  //! Returns: whether this thread now holds the lock (false, without waiting, if another thread
  //! or this one holds it).
  bool try_lock() const { return acquire(0); }
  //! Returns: whether this thread got the lock before the timeout. Throws: as lock().
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return acquire(detail::manager::wire_timeout(timeout));
  }
  template <class C, class D>
  bool try_lock_until(const std::chrono::time_point<C, D>& deadline) const {
    return acquire(detail::manager::wire_timeout_until(deadline));
  }
  //! Throws: Error(errc::not_owner) if this thread does not hold the lock.
  void unlock() const;
  //! Snapshot: whether some thread of some process holds it.
  bool locked() const;
  const std::string& name() const noexcept { return ref_.name(); }

 private:
  bool acquire(std::int64_t timeout) const;

  detail::manager::ObjectRef ref_;
};

//! A Manager's event (Python's Manager().Event()): a flag that set() raises for every waiter.
class EventProxy {
 public:
  //! Made by Manager::Event().
  EventProxy() = default;  // empty: every call throws Error(errc::bad_state)
  explicit EventProxy(detail::manager::ObjectRef ref) : ref_(std::move(ref)) {}

  //! Effects: raises the flag and wakes every waiter (even one that sees it cleared again).
  void set() const;
  void clear() const;
  //! Snapshot.
  bool is_set() const;
  //! Effects: waits until the flag is raised.
  void wait() const { wait_impl(-1); }
  //! Returns: whether the flag was raised before the timeout.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_impl(detail::manager::wire_timeout(timeout));
  }
  template <class C, class D>
  bool wait_until(const std::chrono::time_point<C, D>& deadline) const {
    return wait_impl(detail::manager::wire_timeout_until(deadline));
  }
  const std::string& name() const noexcept { return ref_.name(); }

 private:
  bool wait_impl(std::int64_t timeout) const;

  detail::manager::ObjectRef ref_;
};

//! Requires: a T with a Codec. Effects: opens the queue `name` (creating it with `maxsize`, 0 =
//! unbounded, if it does not exist; an existing queue keeps its own maxsize).
//! Throws: Error(errc::type_mismatch) if `name` is a queue of another element type;
//! Error(errc::wrong_kind) if `name` is another kind of object; Error(errc::disconnected).
template <class T>
QueueProxy<T> Manager::Queue(std::string_view name, std::size_t maxsize) const {
  static_assert(has_codec_v<T>,
                "Manager::Queue<T> needs a multiproc::Codec<T> (see codec.hpp): items travel as "
                "bytes");
  const char* type = typeid(T).name();
  detail::manager::ObjectRef ref = detail::manager::open(
      *this, "queue", name, detail::manager::queue_create_args(maxsize, type));
  if (!name.empty()) detail::manager::queue_check_type(ref, type);  // else: made just now, by us
  return QueueProxy<T>(std::move(ref));
}

}  // namespace multiproc
