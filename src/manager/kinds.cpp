// The registry of object kinds a manager's server can make (manager_object.hpp).
#include <multiproc/detail/manager_object.hpp>
#include <multiproc/error.hpp>

#include <map>
#include <mutex>

namespace multiproc::detail::manager {
namespace {

struct Registry {
  std::mutex m;
  std::map<std::string, std::shared_ptr<const Factory>, std::less<>> kinds;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: kinds may be looked up at exit
  return *r;
}

}  // namespace

void register_kind(std::string kind, Factory make) {
  if (kind.empty()) throw Error(errc::invalid_argument, "multiproc::Manager: an empty kind name");
  if (!make) {
    throw Error(errc::invalid_argument, "multiproc::Manager: kind '" + kind + "' has no factory");
  }
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.m);
  auto f = std::make_shared<const Factory>(std::move(make));
  if (!r.kinds.emplace(kind, std::move(f)).second) {
    throw Error(errc::already_exists, "multiproc::Manager: kind '" + kind + "' is already registered");
  }
}

std::shared_ptr<const Factory> find_kind(std::string_view kind) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.m);
  auto it = r.kinds.find(kind);
  return it == r.kinds.end() ? nullptr : it->second;
}

}  // namespace multiproc::detail::manager
