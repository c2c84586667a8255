#include <multiproc/detail/fork_hooks.hpp>

#include <array>
#include <atomic>

namespace multiproc::detail {
namespace {
constexpr std::size_t kMaxListeners = 8;
std::array<std::atomic<ForkListener>, kMaxListeners> g_listeners{};
thread_local Captured* t_capture = nullptr;
thread_local bool t_forking = false;
}  // namespace

void add_fork_listener(ForkListener listener) noexcept {
  for (auto& slot : g_listeners) {
    ForkListener expected = nullptr;
    if (slot.load() == listener) return;
    if (slot.compare_exchange_strong(expected, listener)) return;
  }
}

void notify_forked(pid_t child, const Captured& captured) noexcept {
  for (auto& slot : g_listeners) {
    if (ForkListener l = slot.load()) l(child, captured);
  }
}

Captured*& current_capture() noexcept { return t_capture; }
bool& forking_for_process() noexcept { return t_forking; }

}  // namespace multiproc::detail
