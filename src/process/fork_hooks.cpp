// What multiproc does around every fork (multiproc/detail/fork_hooks.hpp): the ordered list of
// fork hooks, and the record of what a Process child captured.
#include <multiproc/detail/fork_hooks.hpp>

#include <multiproc/detail/this_process.hpp>

#include <array>
#include <atomic>
#include <pthread.h>

namespace multiproc::detail {
namespace {

// ---- the ordered list --------------------------------------------------------------------------

// Zero-initialised before any dynamic initialisation, so registering during static
// initialisation (from any file) is safe. Seq_cst: registration is rare, forks read them once.
struct StageHandlers {
  std::atomic<ForkHandler> prepare;
  std::atomic<ForkHandler> parent;
  std::atomic<ForkHandler> child;
};
StageHandlers g_stages[kForkStages];

void run_prepare() noexcept {
  for (unsigned i = kForkStages; i-- > 0;) {
    if (ForkHandler h = g_stages[i].prepare.load()) h();
  }
}
void run_parent() noexcept {
  for (auto& s : g_stages) {
    if (ForkHandler h = s.parent.load()) h();
  }
}
void run_child() noexcept {
  for (auto& s : g_stages) {
    if (ForkHandler h = s.child.load()) h();
  }
}

const bool g_installed_at_startup = (install_fork_hooks(), true);

// ---- Process captures --------------------------------------------------------------------------

constexpr std::size_t kMaxListeners = 8;
std::array<std::atomic<ForkListener>, kMaxListeners> g_listeners{};
thread_local Captured* t_capture = nullptr;
thread_local bool t_forking = false;

}  // namespace

void register_fork_hooks(ForkStage stage, ForkHooks hooks) noexcept {
  StageHandlers& s = g_stages[static_cast<unsigned>(stage)];
  s.prepare.store(hooks.prepare);
  s.parent.store(hooks.parent);
  s.child.store(hooks.child);
}

ForkHooks registered_fork_hooks(ForkStage stage) noexcept {
  const StageHandlers& s = g_stages[static_cast<unsigned>(stage)];
  return {s.prepare.load(), s.parent.load(), s.child.load()};
}

void install_fork_hooks() noexcept {
  static const bool installed = [] {
    register_fork_hooks(ForkStage::identity, {nullptr, nullptr, &forget_identity});
    ::pthread_atfork(&run_prepare, &run_parent, &run_child);
    return true;
  }();
  (void)installed;
}

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
