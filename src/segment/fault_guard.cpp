// Segments: surviving a segment file that another process truncates while it is mapped here.
//
// A process of the same user can ftruncate /dev/shm/mp.<name> at any time. Every later touch of
// a page past the new end of the file raises SIGBUS in every process that maps it, which by
// default kills them all (the creator too, in its destructor). Here a process-wide SIGBUS handler
// (installed once, when the first segment is mapped) checks the faulting address against the
// table of mapped segments; for one of ours it maps anonymous zero pages (private to this
// process) over the lost part of the mapping, marks the segment truncated and returns, so the
// faulting instruction completes on zeros and the process lives on. The segment then reports
// Error(errc::corrupt) "truncated by another process" on every open in this process and through
// Segment::truncated() / check_intact(), and its destructor says so on stderr (and still removes
// the name it owns). Any other SIGBUS goes to the handler that was installed before (or ends the
// process with SIGBUS, as it would have without us).
//
// The table is read by the handler, so it is async-signal-safe: fixed chunks of slots that are
// never freed, each slot a seqlock over its [begin, end) range, claimed by CAS. No lock, no
// allocation in the handler. Mapping and unmapping a segment claim and free a slot (a few atomic
// operations); reading and writing segment memory costs nothing.
//
// MULTIPROC_NO_SIGBUS_HANDLER (set to anything non-empty in the environment before the first
// segment is mapped) keeps the handler out: truncation then kills as before.
#include "segment_impl.hpp"

#include "../os.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <sys/mman.h>
#include <unistd.h>

// Under ThreadSanitizer the handler must not enter TSan's synchronisation machinery: a fault can
// happen inside TSan's own implementation of an atomic operation on segment memory (the lock
// word of a truncated SharedValue: TSan performs the compare-and-swap itself, holding its
// per-thread slot lock), and TSan runs a handler for a synchronous signal at once, on that
// thread. An acquire load in the handler then takes the same slot lock again and the thread
// hangs for ever (seen: __tsan_atomic32_load -> SlotLock -> FutexWait under on_sigbus, under
// __tsan_atomic32_compare_exchange_val in mutex_lock). So while it looks at the table the
// handler tells TSan to ignore synchronisation (AnnotateIgnoreSync*, TSan's dynamic
// annotations): its atomics then run as plain atomics, outside TSan's locks. Nothing is lost to
// race detection: the table's atomics order nothing but themselves.
#if defined(__SANITIZE_THREAD__)
#define MULTIPROC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MULTIPROC_TSAN 1
#endif
#endif
#ifdef MULTIPROC_TSAN
extern "C" void AnnotateIgnoreSyncBegin(const char* file, int line);
extern "C" void AnnotateIgnoreSyncEnd(const char* file, int line);
#endif

namespace multiproc::detail::seg {

// One mapped segment: [begin, end) page-rounded, and whether a fault found it truncated.
// seq is odd while begin/end change (the handler skips such a slot: the segment it faulted in is
// mapped, so its slot is not changing).
struct FaultSlot {
  std::atomic<std::uint32_t> used{0};  // 1 while a mapping owns the slot (CAS 0 -> 1 claims it)
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::uintptr_t> end{0};
  std::atomic<std::uint32_t> truncated{0};  // set by the handler; read by SegmentImpl::truncated
};

namespace {

constexpr std::size_t kSlotsPerChunk = 256;

struct FaultChunk {
  FaultSlot slots[kSlotsPerChunk];
  std::atomic<FaultChunk*> next{nullptr};
};

FaultChunk g_first;                      // static storage: ready before any constructor runs
std::uintptr_t g_page_mask = ~std::uintptr_t{4095};
struct sigaction g_previous {};          // written before our handler is installed
std::atomic<bool> g_installed{false};

static_assert(std::atomic<std::uintptr_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free &&
                  std::atomic<FaultChunk*>::is_always_lock_free,
              "the fault table is read in a signal handler: its atomics must be lock-free");

// The slot whose range holds addr, or nullptr. Async-signal-safe.
FaultSlot* find(std::uintptr_t addr) noexcept {
  for (FaultChunk* c = &g_first; c != nullptr; c = c->next.load(std::memory_order_acquire)) {
    for (FaultSlot& s : c->slots) {
      // acquire: pairs with the release stores of seq in set_range()
      const std::uint32_t s1 = s.seq.load(std::memory_order_acquire);
      if ((s1 & 1) != 0) continue;
      const std::uintptr_t b = s.begin.load(std::memory_order_relaxed);
      const std::uintptr_t e = s.end.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (s.seq.load(std::memory_order_relaxed) != s1) continue;
      if (b != 0 && addr >= b && addr < e) return &s;
    }
  }
  return nullptr;
}

void set_range(FaultSlot& s, std::uintptr_t begin, std::uintptr_t end) noexcept {
  const std::uint32_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // pairs with the fence in find()
  s.begin.store(begin, std::memory_order_relaxed);
  s.end.store(end, std::memory_order_relaxed);
  s.seq.store(seq + 2, std::memory_order_release);  // pairs with the acquire in find()
}

// What SIGBUS would have done without us.
void chain(int sig, siginfo_t* info, void* context) noexcept {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0) {
    if (g_previous.sa_sigaction != nullptr) g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler == SIG_IGN && info != nullptr && info->si_code <= 0) return;  // sent
  if (g_previous.sa_handler == SIG_DFL || g_previous.sa_handler == SIG_IGN) {
    // The default action: die of SIGBUS (with a core dump), as without this handler.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGBUS, &dfl, nullptr);
    ::raise(SIGBUS);  // pending until we return, then fatal
    return;
  }
  g_previous.sa_handler(sig);
}

// Replaces the lost pages of a segment of ours that `addr` faulted in; false if it is not in one
// (or the mapping failed).
bool repair(std::uintptr_t addr) noexcept {
#ifdef MULTIPROC_TSAN
  AnnotateIgnoreSyncBegin(__FILE__, __LINE__);  // see MULTIPROC_TSAN above
  struct EndIgnore {
    ~EndIgnore() { AnnotateIgnoreSyncEnd(__FILE__, __LINE__); }
  } end_ignore;
#endif
  FaultSlot* s = find(addr);
  if (s == nullptr) return false;
  const std::uintptr_t page = addr & g_page_mask;
  const std::uintptr_t end = s->end.load(std::memory_order_relaxed);
  // Every page from the faulting one on is past the end of the file too: replace them all.
  void* p = ::mmap(reinterpret_cast<void*>(page), end - page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return false;
  s->truncated.store(1, std::memory_order_relaxed);
  return true;
}

void on_sigbus(int sig, siginfo_t* info, void* context) noexcept {
  const int saved_errno = errno;
  // BUS_ADRERR: a page past the end of its file.
  if (info != nullptr && info->si_code == BUS_ADRERR &&
      repair(reinterpret_cast<std::uintptr_t>(info->si_addr))) {
    errno = saved_errno;
    return;  // the instruction runs again, on zeros
  }
  errno = saved_errno;
  chain(sig, info, context);
}

void install_handler() noexcept {
  struct sigaction sa {};
  sa.sa_sigaction = &on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  struct sigaction previous {};
  if (::sigaction(SIGBUS, nullptr, &previous) != 0) return;
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction == &on_sigbus) return;
  g_previous = previous;
  if (::sigaction(SIGBUS, &sa, nullptr) == 0) g_installed.store(true);
}

void install_once() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* off = std::getenv("MULTIPROC_NO_SIGBUS_HANDLER");
    if (off != nullptr && *off != '\0') return;
    const long page = ::sysconf(_SC_PAGESIZE);
    if (page > 0) g_page_mask = ~(static_cast<std::uintptr_t>(page) - 1);
    install_handler();
  });
}

}  // namespace

FaultSlot* guard_mapping(void* base, std::size_t size) {
  install_once();
  const auto begin = reinterpret_cast<std::uintptr_t>(base);
  const std::uintptr_t end = (begin + size + ~g_page_mask) & g_page_mask;
  FaultChunk* c = &g_first;
  for (;;) {
    for (FaultSlot& s : c->slots) {
      std::uint32_t free = 0;
      if (s.used.load(std::memory_order_relaxed) == 0 &&
          s.used.compare_exchange_strong(free, 1, std::memory_order_acquire)) {
        s.truncated.store(0, std::memory_order_relaxed);
        set_range(s, begin, end);
        return &s;
      }
    }
    FaultChunk* next = c->next.load(std::memory_order_acquire);
    if (next == nullptr) {
      auto* fresh = new FaultChunk;  // never freed: the handler may be walking it
      // release: publishes the fresh chunk's zeroed slots to find() (acquire)
      if (c->next.compare_exchange_strong(next, fresh, std::memory_order_release,
                                          std::memory_order_acquire)) {
        next = fresh;
      } else {
        delete fresh;  // another thread appended one first: use that
      }
    }
    c = next;
  }
}

void unguard_mapping(FaultSlot* s) noexcept {
  if (s == nullptr) return;
  set_range(*s, 0, 0);
  s->used.store(0, std::memory_order_release);  // pairs with the acquire CAS in guard_mapping
}

bool mapping_truncated(const FaultSlot* s) noexcept {
  return s != nullptr && s->truncated.load(std::memory_order_relaxed) != 0;
}

void mark_truncated(FaultSlot* s) noexcept {
  if (s != nullptr) s->truncated.store(1, std::memory_order_relaxed);
}

bool fault_handler_installed() noexcept { return g_installed.load(); }

}  // namespace multiproc::detail::seg

namespace multiproc::detail {

void rearm_segment_fault_handler() noexcept {
  if (!seg::g_installed.load()) return;
  // The child reset SIGBUS to its default action: that is now what a foreign fault gets.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  struct sigaction sa {};
  sa.sa_sigaction = &seg::on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  seg::g_previous = dfl;
  ::sigaction(SIGBUS, &sa, nullptr);
}

}  // namespace multiproc::detail
