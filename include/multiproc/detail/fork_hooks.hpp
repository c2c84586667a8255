// multiproc/detail/fork_hooks.hpp — what multiproc does around every fork. Private.
//
// 1. One ordered list of fork hooks. Every part of multiproc that must act around a fork (clear a
//    cache in the child, hold a lock across the fork, register a child as a holder) registers its
//    handlers for one stage of ForkStage, and one pthread_atfork registration runs the stages in
//    the order below. (pthread_atfork alone would run them in the order each file happened to
//    register first, which depends on static-initialisation order and on first use.)
//
// 2. Telling lower layers about children Process::start forked:
// Some objects track which processes hold them (a Pipe end is closed when no live process holds
// it). A Process child holds exactly the handles its target captured by value: while a Process
// builds its target, each such handle that is copied or moved notes itself in the current
// capture (note_captured), and Process::start, right after fork and before it returns, calls
// notify_forked(child, captured) so the child counts as a holder before the parent can close its
// own copy. Forks made elsewhere (a raw fork()) are left to each object's child handler (a stage
// below), which treats the child as holding everything it inherited — as with file descriptors.
#pragma once

#include <memory>
#include <sys/types.h>
#include <vector>

namespace multiproc::detail {

//! The stages of a fork. Child and parent handlers run in this order, prepare handlers in the
//! reverse order (as if each stage had called pthread_atfork in this order): a lock a stage holds
//! across the fork is taken after the later stages prepared, and released first.
enum class ForkStage : unsigned {
  //! Child (this_process.cpp): clear the tid, pid and start-time caches. First, because every
  //! later stage asks who it is (the lock fast path reads the tid cache).
  identity,
  //! Child (mutex.cpp): drop the parent thread's lock from the kernel robust list's pending slot.
  //! Before any stage that takes a multiproc lock (the slot must be empty for the fast path).
  robust_slot,
  //! Child (mutex.cpp): register the new process for membarrier, which is per process. Before
  //! user code in the child can use a lock or a channel; after identity (nothing else needed).
  fences,
  //! Child (segment/registry.cpp): a fresh registry mutex, since another thread of the parent may
  //! have held it at the fork. Before anything in the child can open a named segment.
  segment_registry,
  //! Prepare (process.cpp): hold the Process registry's mutex across the fork, so no child
  //! inherits it locked or half-updated. Parent: release it. Child: forget the parent's
  //! children, record the parent as parent_process(), release it.
  process_registry,
  //! Prepare (pipe/tracking.cpp): a pending entry in the holder table of every Pipe end this
  //! process holds. Child: register as a holder and drop the pending entry. Last: it takes robust
  //! locks (needs identity and robust_slot) and reads the start time; in prepare it runs first,
  //! so it never runs while process_registry holds its mutex.
  pipe_holders,
};
inline constexpr unsigned kForkStages = static_cast<unsigned>(ForkStage::pipe_holders) + 1;

using ForkHandler = void (*)() noexcept;

//! The handlers of one stage; any may be nullptr. They run with glibc's atfork lock held (so they
//! must not call pthread_atfork), and a child handler runs in a child that has one thread.
struct ForkHooks {
  ForkHandler prepare = nullptr;
  ForkHandler parent = nullptr;
  ForkHandler child = nullptr;
};

//! Sets the handlers of `stage` (one owner per stage; registering again replaces them). Safe
//! during static initialisation and from any thread.
void register_fork_hooks(ForkStage stage, ForkHooks hooks) noexcept;

//! The handlers `stage` has now (tests wrap them to watch the order).
ForkHooks registered_fork_hooks(ForkStage stage) noexcept;

//! Registers the list with pthread_atfork, once per process (done at start-up; the identity
//! caches call it again before they are first filled, in case a static initialiser forks).
void install_fork_hooks() noexcept;

using Captured = std::vector<std::weak_ptr<void>>;
using ForkListener = void (*)(pid_t child, const Captured& captured) noexcept;

//! Registers a listener (once per process; at most a few exist).
void add_fork_listener(ForkListener listener) noexcept;

//! Calls every listener with the pid of a child this process just forked for a Process.
void notify_forked(pid_t child, const Captured& captured) noexcept;

//! The capture being recorded on this thread (a Process building its target), or nullptr.
Captured*& current_capture() noexcept;

//! Called by tracked handles when they are copied or moved: notes `object` in the current
//! capture, if one is being recorded.
inline void note_captured(const std::shared_ptr<void>& object) {
  if (Captured* c = current_capture()) c->push_back(object);
}

//! True on the thread that is inside Process::start's fork (and, after the fork, in the child
//! until the Process code clears it): atfork handlers use it to leave Process children alone.
bool& forking_for_process() noexcept;

}  // namespace multiproc::detail
