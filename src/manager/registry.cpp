// The client side of registered types (multiproc/detail/manager_registry.hpp): registering a
// type's table as a kind, and sending calls.
#include <multiproc/manager.hpp>

#include <array>

namespace multiproc::detail::manager {

void register_table(const std::shared_ptr<TypeTable>& table) {
  static constexpr std::array<std::string_view, 7> kBuiltIn = {
      "dict", "list", "namespace", "value", "queue", "lock", "event"};
  if (table->type.empty()) {
    throw Error(errc::invalid_argument, "multiproc: register_type: a type needs a name");
  }
  for (std::string_view k : kBuiltIn) {
    if (table->type == k) {
      throw Error(errc::already_exists, "multiproc: register_type " + table->type +
                                            ": the name of one of the Manager's built-in kinds");
    }
  }
  std::shared_ptr<const TypeTable> served = table;
  register_kind(table->type, [served](std::string_view name, std::string_view create_args) {
    return make_registered_object(served, name, create_args);
  });
}

std::string call_method(const ObjectRef& ref, std::string_view method, const char* args_type,
                        const char* result_type, std::string_view args) {
  std::string reply = ref.call(kCallMethod, call_request(method, args_type, result_type, args));
  if (!reply.empty() && reply[0] == '\0') return reply.substr(1);
  if (!reply.empty() && reply[0] == '\1') {
    std::string type, message;
    decode_fields(reinterpret_cast<const std::byte*>(reply.data() + 1), reply.size() - 1, type,
                  message);
    throw RemoteError(std::move(type), std::move(message));
  }
  throw Error(errc::corrupt, "multiproc: Manager object " + ref.kind() + " '" + ref.name() +
                                 "': a malformed reply of " + std::to_string(reply.size()) +
                                 " bytes to " + std::string(method));
}

}  // namespace multiproc::detail::manager
