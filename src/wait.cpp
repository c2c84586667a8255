// wait(): readiness of connections, queues and process sentinels; one futex_waitv over all.
#include <multiproc/wait.hpp>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <linux/futex.h>
#include <memory>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <system_error>
#include <thread>
#include <unistd.h>

#include "os.hpp"

namespace multiproc {
namespace {

using detail::Clock;

// Without futex_waitv, a wait on several words sleeps on the first one only: how often it looks
// at the others. Short, because a ready connection among them should be seen about at once; the
// fallback exists only on kernels older than 5.16.
constexpr std::chrono::milliseconds kUnwatchedWordSlice{1};

#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 FUTEX_32
#endif

// Waits on several futex words at once; returns false only when `deadline` passed. Falls back to
// short sleeps on the first word where the kernel has no futex_waitv (Linux < 5.16).
bool futex_waitv_until(const std::vector<const std::atomic<std::uint32_t>*>& words,
                       const std::vector<std::uint32_t>& values, Clock::time_point deadline) {
#ifdef SYS_futex_waitv
  std::vector<futex_waitv> waiters(words.size());
  for (std::size_t i = 0; i < words.size(); ++i) {
    waiters[i] = {};
    waiters[i].val = values[i];
    waiters[i].uaddr = reinterpret_cast<std::uintptr_t>(words[i]);
    waiters[i].flags = FUTEX2_SIZE_U32;  // shared (no FUTEX_PRIVATE_FLAG): words in segments
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1000000000);
  ts.tv_nsec = static_cast<long>(ns % 1000000000);
  const long rc = ::syscall(SYS_futex_waitv, waiters.data(), static_cast<unsigned>(waiters.size()),
                            0, &ts, CLOCK_MONOTONIC);
  if (rc >= 0 || errno != ENOSYS) return !(rc < 0 && errno == ETIMEDOUT);
#endif
  const auto slice = std::min(deadline, Clock::now() + kUnwatchedWordSlice);
  if (!words.empty()) detail::futex_wait(words[0], values[0], &slice);
  return Clock::now() < deadline;
}

// Watches pidfds on a helper thread and turns a ready one into a futex wake on `word`.
class SentinelWatcher {
 public:
  //! Returns: a running watcher, or nullptr if it cannot start (no eventfd, e.g. at the
  //! open-file limit, or no thread): the caller then polls the processes in sleeps instead.
  static std::unique_ptr<SentinelWatcher> start(std::vector<int> fds) {
    const int cancel = ::eventfd(0, EFD_CLOEXEC);
    if (cancel < 0) return nullptr;
    std::unique_ptr<SentinelWatcher> w(new SentinelWatcher(std::move(fds), cancel));
    try {
      w->thread_ = std::thread([p = w.get()] { p->run(); });
    } catch (const std::system_error&) {
      return nullptr;  // the destructor closes the eventfd; no thread to join
    }
    return w;
  }
  ~SentinelWatcher() {
    if (thread_.joinable()) {
      const std::uint64_t one = 1;
      while (::write(cancel_, &one, sizeof one) < 0 && errno == EINTR) {
      }
      thread_.join();
    }
    ::close(cancel_);
  }
  SentinelWatcher(const SentinelWatcher&) = delete;
  SentinelWatcher& operator=(const SentinelWatcher&) = delete;
  const std::atomic<std::uint32_t>* word() const { return &word_; }

 private:
  SentinelWatcher(std::vector<int> fds, int cancel) : fds_(std::move(fds)), cancel_(cancel) {}
  void run() {
    std::vector<pollfd> p;
    for (int fd : fds_) p.push_back({fd, POLLIN, 0});
    p.push_back({cancel_, POLLIN, 0});
    while (::poll(p.data(), p.size(), -1) < 0 && errno == EINTR) {
    }
    // relaxed would do: nothing is published through the word. Its only partner is the value
    // compare inside futex_waitv (a wait that starts after this store returns at once); the
    // waiter then finds the ended process with its own waitpid.
    word_.store(1, std::memory_order_release);
    detail::futex_wake(&word_, 1);
  }
  std::vector<int> fds_;
  int cancel_;
  std::atomic<std::uint32_t> word_{0};
  std::thread thread_;
};

}  // namespace

std::vector<std::size_t> detail_wait(const std::vector<Waitable>& objects,
                                     const detail::Clock::time_point* deadline) {
  // What each object waits on, and how to tell it is ready.
  struct Item {
    const detail::ChannelRef* channel = nullptr;
    const Connection* connection = nullptr;
    Process* process = nullptr;
  };
  std::vector<Item> items;
  std::vector<int> sentinels;
  for (const Waitable& w : objects) {
    Item it;
    if (w.connection_ != nullptr) {
      it.connection = w.connection_;
      it.channel = w.connection_->receive_channel();
      if (it.channel == nullptr) {
        throw Error(errc::invalid_argument, "multiproc::wait: a Connection that cannot receive");
      }
    } else if (w.queue_ != nullptr) {
      it.channel = w.queue_;
    } else {
      it.process = w.process_;
      if (it.process->pid() == 0) {
        throw Error(errc::invalid_argument,
                    "multiproc::wait: Process '" + it.process->name() + "' was not started");
      }
      if (it.process->sentinel() >= 0) sentinels.push_back(it.process->sentinel());
    }
    items.push_back(it);
  }

  auto collect = [&](bool thorough) {
    std::vector<std::size_t> ready;
    for (std::size_t i = 0; i < items.size(); ++i) {
      const Item& it = items[i];
      bool r;
      if (it.process != nullptr) {
        r = !it.process->is_alive();
      } else if (it.connection != nullptr) {
        // The peer's closed flag always; its liveness scan (rate-limited) only when asked.
        r = it.channel->data_hint() || (thorough && it.connection->peer_closed());
      } else {
        r = it.channel->data_hint() || it.channel->closed();
      }
      if (r) ready.push_back(i);
    }
    return ready;
  };

  // Processes nothing wakes us for (no pidfd, or no watcher thread) are polled: the sleep below
  // ends after a short slice (os.hpp) and the next round looks at their exit status again.
  bool unwatched = sentinels.size() < static_cast<std::size_t>(std::count_if(
                                          items.begin(), items.end(),
                                          [](const Item& it) { return it.process != nullptr; }));
  std::unique_ptr<SentinelWatcher> watcher;
  bool watcher_tried = false;
  for (unsigned round = 0;; ++round) {
    auto ready = collect(true);
    if (!ready.empty()) return ready;
    if (deadline != nullptr && Clock::now() >= *deadline) return ready;
    if (!sentinels.empty() && !watcher_tried) {
      watcher_tried = true;
      watcher = SentinelWatcher::start(sentinels);
      if (!watcher) unwatched = true;
    }

    // Register as a sleeper on every channel, fence, read the epochs, look once more, sleep.
    std::vector<const std::atomic<std::uint32_t>*> words;
    std::vector<std::uint32_t> values;
    // Registered as observers on every channel for the rest of this iteration, even if a
    // readiness check throws.
    struct Registration {
      std::vector<std::pair<detail::Signal*, int>> slots;
      ~Registration() {
        for (auto& [signal, slot] : slots) detail::ChannelRef::unregister_sleeper(*signal, true, slot);
      }
    } registration;
    for (const Item& it : items) {
      if (it.channel == nullptr) continue;
      detail::Signal* signal = &it.channel->state()->data;
      registration.slots.emplace_back(signal, detail::ChannelRef::register_sleeper(*signal, true));
    }
    detail::ChannelRef::asymmetric_fence_heavy();
    for (const Item& it : items) {
      if (it.channel == nullptr) continue;
      words.push_back(&it.channel->state()->data.epoch);
      values.push_back(it.channel->state()->data.epoch.load(std::memory_order_acquire));
    }
    if (watcher) {
      words.push_back(watcher->word());
      values.push_back(0);
    }
    if (collect(false).empty()) {
      auto until = detail::next_slice(deadline);
      if (unwatched) until = std::min(until, Clock::now() + detail::exit_poll_slice(round));
      if (words.empty()) {
        std::this_thread::sleep_until(until);  // only processes to poll (or nothing at all)
      } else {
        futex_waitv_until(words, values, until);
      }
    }
  }
}

}  // namespace multiproc
