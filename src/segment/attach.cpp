// Segments: the attach table — which processes have a named object mapped (segment_header.hpp
// has its layout). Every update is one CAS of one 64-bit slot, so a process SIGKILLed at any
// instruction has claimed a slot or not; a slot left by a dead process is judged dead by the
// liveness of its (pid, start time) and freed by the next reader that reaps.
#include "segment_impl.hpp"

#include "../os.hpp"

#include <algorithm>

namespace multiproc::detail::seg {
namespace {

AttachTable& table_of(SegmentImpl& impl) noexcept {
  return *reinterpret_cast<AttachTable*>(static_cast<char*>(impl.region.get_address()) +
                                         detail::kAttachOffset);
}

bool claim(std::atomic<std::uint64_t>& slot, std::uint64_t expected, std::uint64_t mine) noexcept {
  return slot.compare_exchange_strong(expected, mine);
}

}  // namespace

Liveness attach_liveness(std::uint64_t word) noexcept {
  const auto pid = static_cast<pid_t>(static_cast<std::int32_t>(word >> 32));
  const std::uint64_t start_low = word & 0xffffffffu;
  const Liveness l = process_liveness(pid, 0);
  if (l != Liveness::alive || start_low == 0) return l;
  const std::uint64_t start = process_start_time(pid);
  if (start == 0) return Liveness::unknown;
  return (start & 0xffffffffu) == start_low ? Liveness::alive : Liveness::dead;  // pid reused
}

void attach(SegmentImpl& impl) noexcept {
  if (impl.region.get_size() < detail::kPrefixSize) return;  // validated segments never are
  AttachTable& t = table_of(impl);
  const std::uint64_t mine = attach_word(current_pid(), current_start_time());
  impl.attach_slot = -1;
  impl.attach_word = mine;
  for (std::size_t i = 0; i < detail::kAttachSlots; ++i) {
    if (t.slots[i].load(std::memory_order_relaxed) == 0 && claim(t.slots[i], 0, mine)) {
      impl.attach_slot = static_cast<int>(i);
      return;
    }
  }
  // Full: take over the slot of a dead process (unknown counts as alive: never evict a live one).
  for (std::size_t i = 0; i < detail::kAttachSlots; ++i) {
    const std::uint64_t w = t.slots[i].load();
    if (w == 0 || attach_liveness(w) == Liveness::dead) {
      if (claim(t.slots[i], w, mine)) {
        impl.attach_slot = static_cast<int>(i);
        return;
      }
    }
  }
  t.overflow.fetch_add(1);
}

void detach(SegmentImpl& impl) noexcept {
  if (impl.attach_slot < 0) return;
  const auto i = static_cast<std::size_t>(impl.attach_slot);
  impl.attach_slot = -1;
  // Only the word this process wrote: a reaper may have freed a slot it judged dead (it cannot
  // have judged a live process so), and another process may hold the slot since.
  if (impl.attach_word != attach_word(current_pid(), current_start_time())) return;  // a child's copy
  (void)claim(table_of(impl).slots[i], impl.attach_word, 0);
}

std::vector<int> attached_pids(AttachTable& table, bool reap) {
  std::vector<int> pids;
  for (auto& slot : table.slots) {
    const std::uint64_t w = slot.load();
    if (w == 0) continue;
    if (attach_liveness(w) == Liveness::dead) {
      if (reap) (void)claim(slot, w, 0);
      continue;
    }
    pids.push_back(static_cast<std::int32_t>(w >> 32));
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  return pids;
}

}  // namespace multiproc::detail::seg
