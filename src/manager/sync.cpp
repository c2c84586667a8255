// The client side of a Manager's Queue, Lock and Event (multiproc/detail/manager_sync.hpp): what
// the proxies send, and Manager's Lock() and Event(); and register_sync_kinds(), which registers
// the server side (src/manager/sync_objects.cpp).
#include <multiproc/manager.hpp>

#include "../os.hpp"

#include <cstring>
#include <initializer_list>
#include <mutex>

namespace multiproc::detail::manager {
namespace {

std::string who(const ObjectRef& ref, const char* what) {
  return "multiproc::Manager '" + ref.manager_name() + "': " + what + " '" + ref.name() + "'";
}

std::string i64s(std::initializer_list<std::int64_t> values) {
  std::string out(values.size() * sizeof(std::int64_t), '\0');
  char* p = out.data();
  for (std::int64_t v : values) {
    std::memcpy(p, &v, sizeof v);
    p += sizeof v;
  }
  return out;
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

bool queue_put(const ObjectRef& ref, std::string request, std::int64_t timeout) {
  std::memcpy(request.data() + ObjectRef::kHeader, &timeout, sizeof timeout);
  return bool_of(ref.call_prepared(sync_op::queue_put, std::move(request)), ref);
}

std::optional<std::string> queue_get(const ObjectRef& ref, std::int64_t timeout) {
  std::string reply = ref.call(sync_op::queue_get, i64s({timeout}));
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
  return mgr::bool_of(ref_.call(mgr::sync_op::lock_acquire, mgr::i64s({timeout})), ref_);
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
  return mgr::bool_of(ref_.call(mgr::sync_op::event_wait, mgr::i64s({timeout})), ref_);
}

LockProxy Manager::Lock(std::string_view name) const {
  return LockProxy(mgr::open(*this, "lock", name, {}));
}

EventProxy Manager::Event(std::string_view name) const {
  return EventProxy(mgr::open(*this, "event", name, {}));
}

}  // namespace multiproc
