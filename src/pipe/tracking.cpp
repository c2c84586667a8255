// Pipe: which ends this process holds, and who holds them after a fork.
//
// A Process child holds exactly the ends its target captured (fork_hooks.hpp); any other forked
// child holds everything it inherited, as it would file descriptors: the parent leaves a pending
// entry in each table before fork() (so the end cannot look closed in between), and the child
// replaces it with its own entry.
#include "connection_impl.hpp"

#include "../os.hpp"

#include <multiproc/detail/fork_hooks.hpp>

#include <algorithm>
#include <mutex>
#include <unistd.h>
#include <vector>

namespace multiproc::detail {
namespace {

// Live ConnectionImpls of this process, for registering forked children as holders.
struct ImplRegistry {
  std::mutex mutex;
  std::vector<std::weak_ptr<ConnectionImpl>> impls;
};
ImplRegistry& impl_registry() {
  static ImplRegistry* r = new ImplRegistry;  // never destroyed: handles may outlive statics
  return *r;
}

// Process::start, in the parent right after fork: the child holds the ends its target captured.
void register_process_child(pid_t child, const Captured& captured) noexcept {
  try {
    const std::uint64_t start = process_start_time(child);
    for (const auto& weak : captured) {
      auto object = weak.lock();
      ImplRegistry& r = impl_registry();
      std::lock_guard<std::mutex> lock(r.mutex);
      for (auto& w : r.impls) {
        auto impl = w.lock();
        if (impl && impl.get() == object.get() && !impl->closed_.load()) {
          add_holder(impl->mine(), child, start);
        }
      }
    }
  } catch (...) {
  }
}

// Any other fork: the child holds everything it inherited, as it would file descriptors. The
// parent left a pending entry in each table before forking (prepare_fork); the child replaces it.
void prepare_fork() noexcept {
  if (forking_for_process()) return;  // Process::start registers exactly what it captured
  try {
    ImplRegistry& r = impl_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (auto& weak : r.impls) {
      if (auto impl = weak.lock()) {
        if (!impl->closed_.load()) add_pending_fork(impl->mine(), current_pid());
      }
    }
  } catch (...) {
  }
}

void register_self_in_child() noexcept {
  ImplRegistry& r = impl_registry();
  new (&r.mutex) std::mutex();  // another thread may have held it at fork time
  if (forking_for_process()) return;
  try {
    const pid_t me = ::getpid();
    const pid_t parent = ::getppid();
    const std::uint64_t start = self_start_time();
    for (auto& weak : r.impls) {
      if (auto impl = weak.lock()) {
        if (!impl->closed_.load()) {
          add_holder(impl->mine(), me, start);
          remove_pending_fork(impl->mine(), parent);
          impl->registered_pid_ = me;
        }
      }
    }
  } catch (...) {
  }
}

}  // namespace

void track(const std::shared_ptr<ConnectionImpl>& impl) {
  static const bool hooks = [] {
    add_fork_listener(&register_process_child);
    // The pipe_holders stage of every fork (fork_hooks.hpp says why it is the last).
    register_fork_hooks(ForkStage::pipe_holders, {&prepare_fork, nullptr, &register_self_in_child});
    return true;
  }();
  (void)hooks;
  ImplRegistry& r = impl_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.impls.erase(std::remove_if(r.impls.begin(), r.impls.end(),
                               [](const std::weak_ptr<ConnectionImpl>& w) { return w.expired(); }),
                r.impls.end());
  r.impls.push_back(impl);
}

std::shared_ptr<ConnectionImpl> find_tracked(const void* body, PipeEnd end) {
  ImplRegistry& r = impl_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto& weak : r.impls) {
    auto impl = weak.lock();
    if (impl && impl->state_ == body && impl->end_ == end && !impl->closed_.load()) return impl;
  }
  return nullptr;
}

}  // namespace multiproc::detail
