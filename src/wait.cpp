// wait(): readiness of connections, queues, process sentinels, raw fds and child pids; one
// futex_waitv over the channels, a helper thread (or the caller itself) polling the descriptors.
#include <multiproc/wait.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <ctime>
#include <fcntl.h>
#include <linux/futex.h>
#include <memory>
#include <poll.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

// futex_waitv takes at most this many words (the kernel's FUTEX_WAITV_MAX); more is EINVAL.
constexpr std::size_t kWaitvMax = 128;

// Waits on several futex words at once (the first kWaitvMax of them: the caller looks at the
// others in slices); returns false only when `deadline` passed. Falls back to short sleeps on the
// first word where the kernel has no futex_waitv (Linux < 5.16).
bool futex_waitv_until(const std::vector<const std::atomic<std::uint32_t>*>& words,
                       const std::vector<std::uint32_t>& values, Clock::time_point deadline) {
#ifdef SYS_futex_waitv
  std::vector<futex_waitv> waiters(std::min(words.size(), kWaitvMax));
  for (std::size_t i = 0; i < waiters.size(); ++i) {
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

// Watches descriptors (pidfds, the caller's fds) on a helper thread and turns the first ready one
// into a futex wake on `word`. One-shot: once it has fired, the thread is gone (fired() is true);
// the caller starts a new one if it found nothing ready after all (an fd someone else drained).
class DescriptorWatcher {
 public:
  //! Returns: a running watcher, or nullptr if it cannot start (no eventfd, e.g. at the
  //! open-file limit, or no thread): the caller then polls the descriptors in sleeps instead.
  static std::unique_ptr<DescriptorWatcher> start(const std::vector<int>& fds) {
    const int cancel = ::eventfd(0, EFD_CLOEXEC);
    if (cancel < 0) return nullptr;
    std::unique_ptr<DescriptorWatcher> w(new DescriptorWatcher(fds, cancel));
    try {
      w->thread_ = std::thread([p = w.get()] { p->run(); });
    } catch (const std::system_error&) {
      return nullptr;  // the destructor closes the eventfd; no thread to join
    }
    return w;
  }
  ~DescriptorWatcher() {
    if (thread_.joinable()) {
      const std::uint64_t one = 1;
      while (::write(cancel_, &one, sizeof one) < 0 && errno == EINTR) {
      }
      thread_.join();
    }
    ::close(cancel_);
  }
  DescriptorWatcher(const DescriptorWatcher&) = delete;
  DescriptorWatcher& operator=(const DescriptorWatcher&) = delete;
  const std::atomic<std::uint32_t>* word() const { return &word_; }
  //! Whether a descriptor was seen ready (the thread has ended or is about to). Relaxed: its
  //! partner is the store in run(), and it only decides whether to replace this watcher (whose
  //! destructor joins the thread).
  bool fired() const { return word_.load(std::memory_order_relaxed) != 0; }

 private:
  DescriptorWatcher(const std::vector<int>& fds, int cancel) : cancel_(cancel) {
    for (int fd : fds) p_.push_back({fd, POLLIN, 0});
    p_.push_back({cancel_, POLLIN, 0});
  }
  void run() {
    while (::poll(p_.data(), p_.size(), -1) < 0 && errno == EINTR) {
    }
    // relaxed would do: nothing is published through the word. Its only partner is the value
    // compare inside futex_waitv (a wait that starts after this store returns at once); the
    // waiter then looks at the objects itself (exit status, its own poll of the fds).
    word_.store(1, std::memory_order_release);
    detail::futex_wake(&word_, 1);
  }
  std::vector<pollfd> p_;
  int cancel_;
  std::atomic<std::uint32_t> word_{0};
  std::thread thread_;
};

// Polls `fds` for POLLIN until one is ready or `until` passes (or a signal interrupts it).
void poll_until(std::vector<pollfd>& fds, Clock::time_point until) {
  const auto left = std::max(until - Clock::now(), Clock::duration::zero());
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1000000000);
  ts.tv_nsec = static_cast<long>(ns % 1000000000);
  (void)::ppoll(fds.data(), fds.size(), &ts, nullptr);
}

// pidfd_open(pid); -1 when the kernel cannot give one (ENOSYS before Linux 5.3, EMFILE at the
// open-file limit): the caller then polls the exit status. Close-on-exec, as every pidfd.
int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -1 : static_cast<int>(fd);
#else
  (void)pid;
  return -1;
#endif
}

// Whether child `pid` (ours, listed by Waitable::pid) has ended, without reaping it; also true
// when it is no longer our child to ask about (someone else reaped it: it ended).
bool child_ended(pid_t pid) noexcept {
  for (;;) {
    siginfo_t info{};
    info.si_pid = 0;
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
      return info.si_pid == pid;
    }
    if (errno != EINTR) return true;  // ECHILD: reaped by someone else
  }
}

// Checks a Waitable::fd at the start of wait(). Throws: Error(errc::invalid_argument).
void check_fd(int fd) {
  const int flags = fd < 0 ? -1 : ::fcntl(fd, F_GETFL);
  if (flags < 0) {
    throw Error(errc::invalid_argument,
                "multiproc::wait: fd " + std::to_string(fd) + " is not an open file descriptor");
  }
  if ((flags & O_ACCMODE) == O_WRONLY || (flags & O_PATH) != 0) {
    throw Error(errc::invalid_argument,
                "multiproc::wait: fd " + std::to_string(fd) +
                    ((flags & O_PATH) != 0 ? " is an O_PATH descriptor"
                                           : " is open for writing only") +
                    ": it never becomes readable");
  }
}

// Checks a Waitable::pid at the start of wait(). Throws: Error(errc::invalid_argument) for
// pid <= 0; Error(ECHILD) if it is not an unreaped child of this process.
void check_child(pid_t pid) {
  const std::string what = "multiproc::wait: pid " + std::to_string(pid);
  if (pid <= 0) {
    throw Error(errc::invalid_argument,
                what + " is not a process id (0 and negative pids name process groups)");
  }
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0) return;
    if (errno == EINTR) continue;
    throw Error::from_errno(errno, what + " is not a child of this process, or was already "
                                          "reaped (only an unreaped child can be waited for)");
  }
}

// The pidfds detail_wait opened for the pids it watches; closed when it returns.
struct OwnedFds {
  std::vector<int> fds;
  OwnedFds() = default;
  OwnedFds(const OwnedFds&) = delete;
  OwnedFds& operator=(const OwnedFds&) = delete;
  ~OwnedFds() {
    for (int fd : fds) ::close(fd);
  }
};

}  // namespace

std::vector<std::size_t> detail_wait(const std::vector<Waitable>& objects,
                                     const detail::Clock::time_point* deadline) {
  constexpr std::size_t none = static_cast<std::size_t>(-1);
  // What each object waits on, and how to tell it is ready.
  struct Item {
    const detail::ChannelRef* channel = nullptr;
    const Connection* connection = nullptr;
    Process* process = nullptr;
    pid_t pid = 0;          // a Waitable::pid
    std::size_t polled = none;  // its entry in `polled` (an fd, or the pid's pidfd)
  };
  std::vector<Item> items;
  std::vector<pollfd> polled;  // looked at (timeout 0) by every readiness check
  std::vector<int> watched;    // what a sleep wakes for: sentinels, then the fds in `polled`
  OwnedFds pidfds;             // outlives the watcher (declared below), which polls them
  bool unwatched = false;      // something is polled in short sleeps (no pidfd for it)
  bool channels = false;
  for (const Waitable& w : objects) {
    Item it;
    switch (w.kind_) {
      case Waitable::Kind::connection:
        it.connection = w.connection_;
        if (w.connection_->closed()) {
          // As poll() and recv() on it (Python's wait() raises OSError for a closed handle):
          // it would otherwise report data left in its channel, or wait for data never read.
          throw Error(errc::closed, "multiproc::wait: a Connection this process closed");
        }
        it.channel = w.connection_->receive_channel();
        if (it.channel == nullptr) {
          throw Error(errc::invalid_argument, "multiproc::wait: a Connection that cannot receive");
        }
        channels = true;
        break;
      case Waitable::Kind::queue:
        it.channel = w.queue_;
        channels = true;
        break;
      case Waitable::Kind::process:
        it.process = w.process_;
        if (it.process->pid() == 0) {
          throw Error(errc::invalid_argument,
                      "multiproc::wait: Process '" + it.process->name() + "' was not started");
        }
        if (it.process->sentinel() >= 0) {
          watched.push_back(it.process->sentinel());
        } else {
          unwatched = true;
        }
        break;
      case Waitable::Kind::fd:
        check_fd(w.fd_);
        it.polled = polled.size();
        polled.push_back({w.fd_, POLLIN, 0});
        break;
      case Waitable::Kind::pid: {
        check_child(w.pid_);
        it.pid = w.pid_;
        pidfds.fds.reserve(pidfds.fds.size() + 1);
        const int pidfd = open_pidfd(w.pid_);
        if (pidfd >= 0) {
          pidfds.fds.push_back(pidfd);
          it.polled = polled.size();
          polled.push_back({pidfd, POLLIN, 0});
        } else {
          unwatched = true;
        }
        break;
      }
    }
    items.push_back(it);
  }
  for (const pollfd& p : polled) watched.push_back(p.fd);

  auto collect = [&](bool thorough) {
    if (!polled.empty()) {
      for (pollfd& p : polled) p.revents = 0;
      while (::poll(polled.data(), polled.size(), 0) < 0 && errno == EINTR) {
      }
    }
    std::vector<std::size_t> ready;
    for (std::size_t i = 0; i < items.size(); ++i) {
      const Item& it = items[i];
      bool r;
      if (it.polled != none) {
        const short revents = polled[it.polled].revents;
        if ((revents & POLLNVAL) != 0) {
          throw Error(errc::bad_state, "multiproc::wait: fd " + std::to_string(polled[it.polled].fd) +
                                           " was closed while wait() ran");
        }
        r = revents != 0;
      } else if (it.pid != 0) {
        r = child_ended(it.pid);  // no pidfd for it
      } else if (it.process != nullptr) {
        r = !it.process->is_alive();
      } else if (it.connection != nullptr) {
        // Closed by another thread of this process meanwhile (its close() wakes this wait): as
        // poll() on it. Looking again would sleep on a channel nobody reads for this end.
        if (it.connection->closed()) {
          throw Error(errc::closed,
                      "multiproc::wait: a Connection this process closed while wait() ran");
        }
        // The peer's closed flag always; its liveness scan (rate-limited) only when asked.
        r = it.channel->data_hint() || (thorough && it.connection->peer_closed());
      } else {
        r = it.channel->data_hint() || it.channel->closed();
      }
      if (r) ready.push_back(i);
    }
    return ready;
  };

  // Objects nothing wakes us for (no pidfd, or no watcher thread beside channels) are polled: the
  // sleep below ends after a short slice (os.hpp) and the next round looks at them again.
  std::unique_ptr<DescriptorWatcher> watcher;
  bool watcher_failed = false;
  for (unsigned round = 0;; ++round) {
    auto ready = collect(true);
    if (!ready.empty()) return ready;
    if (deadline != nullptr && Clock::now() >= *deadline) return ready;
    if (!channels) {
      // Nothing but descriptors (and processes to poll): this thread polls them itself.
      auto until = detail::next_slice(deadline);
      if (unwatched) until = std::min(until, Clock::now() + detail::exit_poll_slice(round));
      if (watched.empty()) {
        std::this_thread::sleep_until(until);  // only processes to poll (or nothing at all)
      } else {
        std::vector<pollfd> p;
        for (int fd : watched) p.push_back({fd, POLLIN, 0});
        poll_until(p, until);
      }
      continue;
    }
    // A watcher that fired although nothing was ready above (an fd drained by someone else)
    // is replaced: it is one-shot.
    if (!watched.empty() && !watcher_failed && (!watcher || watcher->fired())) {
      watcher.reset();
      watcher = DescriptorWatcher::start(watched);
      if (!watcher) watcher_failed = true;
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
    if (watcher) {  // first: always among the words futex_waitv watches
      words.insert(words.begin(), watcher->word());
      values.insert(values.begin(), 0);
    }
    if (collect(false).empty()) {
      auto until = detail::next_slice(deadline);
      // Words beyond futex_waitv's 128 (more than 128 connections and queues, or 128 and
      // descriptors) are looked at in the same growing slices (1-16 ms) as unwatched processes:
      // a wait on them was a busy loop when the kernel refused the whole call (EINVAL).
      if (unwatched || watcher_failed || words.size() > kWaitvMax) {
        until = std::min(until, Clock::now() + detail::exit_poll_slice(round));
      }
      futex_waitv_until(words, values, until);  // words: at least one channel's
    }
  }
}

}  // namespace multiproc
