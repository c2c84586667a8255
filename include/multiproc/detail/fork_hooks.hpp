// multiproc/detail/fork_hooks.hpp — telling lower layers about children Process::start forked.
// Private.
//
// Some objects track which processes hold them (a Pipe end is closed when no live process holds
// it). A Process child holds exactly the handles its target captured by value: while a Process
// builds its target, each such handle that is copied or moved notes itself in the current
// capture (note_captured), and Process::start, right after fork and before it returns, calls
// notify_forked(child, captured) so the child counts as a holder before the parent can close its
// own copy. Forks made elsewhere (a raw fork()) are left to each object's pthread_atfork child
// handler, which treats the child as holding everything it inherited — as with file descriptors.
#pragma once

#include <memory>
#include <sys/types.h>
#include <vector>

namespace multiproc::detail {

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
