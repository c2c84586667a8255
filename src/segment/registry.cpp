// Segments: the process-local registry of mapped named objects, and the lifetime of one mapping.
//
// Opens of the same object in one process share one mapping (and the creator's ownership of the
// name, which its last handle removes). Mappings stay while this process holds a robust lock
// inside them, because the thread's kernel robust-lock list points into them and the kernel walks
// that list when the thread dies: unmapping under it would stop the walk and strand every other
// lock the thread holds.
#include "segment_impl.hpp"

#include <multiproc/detail/fork_hooks.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace multiproc::detail {
namespace seg {
namespace {

// Process-local registry of the named objects this process has mapped, by file identity, so that
// every handle in one process — created or opened — shares one SegmentImpl (one mapping, and the
// creator's ownership of the name).
struct Registry {
  std::mutex mutex;
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<SegmentImpl>> impls;
};

Registry& registry() {
  static Registry* r = [] {
    auto* created = new Registry;  // never destroyed: handles may outlive static destruction
    // A fork while another thread held the registry's mutex would leave it locked in the child:
    // the segment_registry stage of every fork (fork_hooks.hpp) gives the child a fresh one.
    // The child also has every named object this process mapped: it claims its own slot in
    // each one's attach table (after the identity stage: it knows its pid and start time).
    register_fork_hooks(ForkStage::segment_registry, {nullptr, nullptr, []() noexcept {
                                                        Registry& reg = registry();
                                                        new (&reg.mutex) std::mutex();
                                                        for (auto& entry : reg.impls) {
                                                          if (auto impl = entry.second.lock()) {
                                                            if (impl->attach_slot >= 0) attach(*impl);
                                                          }
                                                        }
                                                      }});
    return created;
  }();
  return *r;
}

// The deleter of every SegmentImpl: keeps the mapping when a thread of this process still holds a
// robust lock inside it (see the file comment), with a warning, instead of unmapping under it.
void release_impl(SegmentImpl* impl) noexcept {
  if (impl->lock_held_in_this_process()) {
    std::fprintf(stderr,
                 "multiproc: warning: the last handle to %s was destroyed while this process "
                 "holds its lock; its memory stays mapped so that the lock stays recoverable\n",
                 impl->what.c_str());
    return;
  }
  delete impl;
}

}  // namespace

std::shared_ptr<SegmentImpl> registered(dev_t dev, ino_t ino) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.impls.find({dev, ino});
  if (it == r.impls.end()) return nullptr;
  auto impl = it->second.lock();
  if (!impl) r.impls.erase(it);
  return impl;
}

void register_impl(const std::shared_ptr<SegmentImpl>& impl) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto it = r.impls.begin(); it != r.impls.end();) {  // drop the expired while here
    it = it->second.expired() ? r.impls.erase(it) : std::next(it);
  }
  r.impls[{impl->dev, impl->ino}] = impl;
}

std::shared_ptr<SegmentImpl> new_impl() {
  return std::shared_ptr<SegmentImpl>(new SegmentImpl, &release_impl);
}

}  // namespace seg

bool SegmentImpl::lock_held_in_this_process() {
  std::lock_guard<std::mutex> lock(lock_owners_mutex);
  for (const auto* owner : lock_owners) {
    const std::int32_t tid = owner->load(std::memory_order_relaxed);
    if (tid <= 0) continue;
    const std::string task = "/proc/self/task/" + std::to_string(tid);
    if (::access(task.c_str(), F_OK) == 0) return true;
  }
  return false;
}

bool SegmentImpl::truncated() const noexcept { return seg::mapping_truncated(guard); }

SegmentImpl::~SegmentImpl() {
  if (truncated()) {
    std::fprintf(stderr,
                 "multiproc: warning: %s: its segment was truncated by another process while "
                 "mapped here (what it held is lost; the lost part read as zeros in this process)\n",
                 what.c_str());
  }
  seg::detach(*this);           // while the range is still guarded (a truncated file)
  seg::unguard_mapping(guard);  // before `region` unmaps the range
  // Only the creating process removes the name — never a forked child holding a copy — and only
  // while the name still refers to the object we created.
  if (!owns_name || ::getpid() != owner_pid) return;
  (void)seg::remove_if_same(file, dev, ino);  // destructors never throw
}

}  // namespace multiproc::detail
