// The client side of a Manager's Queue, Lock and Event (multiproc/detail/manager_sync.hpp): what
// the proxies send, and Manager's Lock() and Event(); and register_sync_kinds(), which registers
// the server side (src/manager/sync_objects.cpp).
#include <multiproc/manager.hpp>

#include "../os.hpp"

#include <chrono>
#include <cstring>
#include <initializer_list>
#include <mutex>

namespace multiproc::detail::manager {
namespace {

std::string who(const ObjectRef& ref, const char* what) {
  return "multiproc::Manager '" + ref.manager_name() + "': " + what + " '" + ref.name() + "'";
}

bool bool_of(const std::string& reply, const ObjectRef& ref) {
  if (reply.size() != 1 || (reply[0] != '\0' && reply[0] != '\1')) {
    throw Error(errc::corrupt, who(ref, ref.kind().c_str()) + ": a reply of " +
                                   std::to_string(reply.size()) + " bytes is not a bool");
  }
  return reply[0] == '\1';
}

struct QueueInfo {
  std::uint64_t size = 0, maxsize = 0;
  std::string type;
};

QueueInfo info_of(const ObjectRef& ref) {
  const std::string reply = ref.call(sync_op::queue_info, {});
  QueueInfo q;
  decode_fields(reinterpret_cast<const std::byte*>(reply.data()), reply.size(), q.size, q.maxsize,
                q.type);
  return q;
}

}  // namespace

void queue_check_type(const ObjectRef& ref, const char* element_type) {
  const QueueInfo q = info_of(ref);
  if (q.type != element_type) {
    throw Error(errc::type_mismatch, who(ref, "Queue") + " holds " +
                                         demangle(q.type.c_str()) + ", not " +
                                         demangle(element_type));
  }
}

// A call with a timeout (microseconds; -1: none): its caller gives up at the deadline, plus
// kAnswerGrace for the server's own answer at that deadline, if the server has not claimed the
// request by then (transport.hpp, "Deadlines": a stopped server holds up no timed call).
// nullopt: given up, never applied. The grace is the library's liveness slice: a running server
// answers a try_* in microseconds, but one starved of CPU on a loaded machine may take
// milliseconds, and a try_put that gave up then would say "full" of a queue with room.
namespace {
constexpr auto kAnswerGrace = std::chrono::milliseconds(100);

std::optional<std::string> timed_call(const ObjectRef& ref, std::uint32_t op, std::string request,
                                      std::int64_t timeout) {
  if (timeout < 0) return ref.call_prepared(op, std::move(request));
  return ref.call_until(op, std::move(request),
                        std::chrono::steady_clock::now() + std::chrono::microseconds(timeout) +
                            kAnswerGrace);
}

//! The request of an op whose only argument is the timeout.
std::string timeout_request(std::int64_t timeout) {
  std::string request(ObjectRef::kHeader + sizeof timeout, '\0');
  std::memcpy(request.data() + ObjectRef::kHeader, &timeout, sizeof timeout);
  return request;
}
}  // namespace

bool queue_put(const ObjectRef& ref, std::string request, std::int64_t timeout) {
  std::memcpy(request.data() + ObjectRef::kHeader, &timeout, sizeof timeout);
  const std::optional<std::string> reply =
      timed_call(ref, sync_op::queue_put, std::move(request), timeout);
  return reply && bool_of(*reply, ref);
}

std::optional<std::string> queue_get(const ObjectRef& ref, std::int64_t timeout) {
  std::optional<std::string> answer =
      timed_call(ref, sync_op::queue_get, timeout_request(timeout), timeout);
  if (!answer) return std::nullopt;
  std::string& reply = *answer;
  if (reply.empty() || (reply[0] != '\0' && reply[0] != '\1') ||
      (reply[0] == '\0' && reply.size() != 1)) {
    throw Error(errc::corrupt, who(ref, "Queue") + ": a malformed reply of " +
                                   std::to_string(reply.size()) + " bytes to get");
  }
  if (reply[0] == '\0') return std::nullopt;
  reply.erase(0, 1);
  return reply;
}

std::pair<std::size_t, std::size_t> queue_info(const ObjectRef& ref) {
  const QueueInfo q = info_of(ref);
  return {static_cast<std::size_t>(q.size), static_cast<std::size_t>(q.maxsize)};
}

void register_sync_kinds() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_kind("queue", &make_queue_object);
    register_kind("lock", &make_lock_object);
    register_kind("event", &make_event_object);
  });
}

}  // namespace multiproc::detail::manager

namespace multiproc {

namespace mgr = detail::manager;

bool LockProxy::acquire(std::int64_t timeout) const {
  const std::optional<std::string> reply =
      mgr::timed_call(ref_, mgr::sync_op::lock_acquire, mgr::timeout_request(timeout), timeout);
  return reply && mgr::bool_of(*reply, ref_);
}

void LockProxy::unlock() const { ref_.call(mgr::sync_op::lock_release, {}); }

bool LockProxy::locked() const {
  return mgr::bool_of(ref_.call(mgr::sync_op::lock_locked, {}), ref_);
}

void EventProxy::set() const { ref_.call(mgr::sync_op::event_set, {}); }
void EventProxy::clear() const { ref_.call(mgr::sync_op::event_clear, {}); }
bool EventProxy::is_set() const {
  return mgr::bool_of(ref_.call(mgr::sync_op::event_is_set, {}), ref_);
}
bool EventProxy::wait_impl(std::int64_t timeout) const {
  const std::optional<std::string> reply =
      mgr::timed_call(ref_, mgr::sync_op::event_wait, mgr::timeout_request(timeout), timeout);
  return reply && mgr::bool_of(*reply, ref_);
}

LockProxy Manager::Lock(std::string_view name) const {
  return LockProxy(mgr::open(*this, "lock", name, {}));
}

EventProxy Manager::Event(std::string_view name) const {
  return EventProxy(mgr::open(*this, "event", name, {}));
}

}  // namespace multiproc
