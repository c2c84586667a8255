// Private (not installed): the Manager's transport, shared by its client side (client.cpp) and
// its server side (server.cpp).
//
// Names. A manager `m` owns two named objects, both created by the process that starts it (so
// its last handle removes them, as for every named object): `m` (a RawValue<ServerInfo>: who the
// server is) and `m.listen` (a Queue<std::string> of connect requests). A client process makes
// its own connection: a named Pipe `m.c.<pid>.<start time>.<n>` (it creates it and keeps the
// first end), puts the pipe's name on `m.listen`, and waits for the server's hello on it. The
// server opens the second end, removes the pipe's name at once (both ends are now held) and
// sends the hello. A name left by a client that died between creating its pipe and the server's
// open is removed by the server's sweep (about once a second) or by the owner's shutdown: the
// pid and start time in the name say whether its creator still runs.
//
// Messages on a connection, client to server: u32 op, u64 object id, then the op's arguments
// (kOpen: encode_fields(kind, name, create_args), object id 0; kSaveOp, kLoadOp: below).
// Server to client: u8 status, then for kOk the reply bytes, for kFailed encode_fields(i32 code,
// u8 category, message). The server answers every request, in order.
//
// Deadlines. Beside its pipe a client makes a SharedMemory `<pipe name>.claim` (named and removed
// as the pipe), whose first 8 bytes are the claim word: (n << 2) | state, n the number of
// requests the client sent on that connection (the server counts the ones it received), state
// kClaimPending when request n was sent, kClaimTaken when the server claimed it (an operation
// with a deadline does, right before it changes anything: Session::claim), kClaimAbandoned when
// the client gave up on it at its deadline. Both sides move it with a compare-and-swap from
// (n, pending), so exactly one wins: a server stopped (SIGSTOP) or starved never applies a timed
// request after its caller returned at its deadline, and a caller whose request was claimed
// waits for the answer. The answer to an abandoned request still comes; the client skips it
// before it reads the next one's.
#pragma once

#include <multiproc/detail/manager_object.hpp>
#include <multiproc/error.hpp>
#include <multiproc/pipe.hpp>
#include <multiproc/process.hpp>
#include <multiproc/queue.hpp>
#include <multiproc/shared_memory.hpp>
#include <multiproc/shared_value.hpp>

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <sys/types.h>

namespace multiproc::detail::manager {

//! The manager's record under its own name. Written once, at creation (layout: two fixed
//! 64-bit pairs, read with one relaxed load of the whole struct).
struct ServerInfo {
  std::int64_t server_pid = 0;
  std::uint64_t server_start = 0;
  std::int64_t owner_pid = 0;
  std::uint64_t owner_start = 0;
};

constexpr std::uint32_t kOpenOp = 0xFFFFFFFFu;
//! Object id 0: every saved object's (kind, name, create_args, state), Codec-encoded as a
//! std::vector<std::tuple<std::string, std::string, std::string, std::string>>.
constexpr std::uint32_t kSaveOp = 0xFFFFFFFEu;
//! Object id 0, args: one such tuple: opens (or makes) the object and loads the state into it.
constexpr std::uint32_t kLoadOp = 0xFFFFFFFDu;
using SavedObject = std::tuple<std::string, std::string, std::string, std::string>;
constexpr std::size_t kRequestHeader = 4 + 8;
constexpr std::uint8_t kOk = 0;
constexpr std::uint8_t kFailed = 1;
constexpr std::uint8_t kCategoryMultiproc = 0;
constexpr std::uint8_t kCategorySystem = 1;
constexpr std::size_t kConnectionRing = std::size_t{1} << 18;  // each direction
constexpr std::uint64_t kClaimPending = 1;
constexpr std::uint64_t kClaimTaken = 2;
constexpr std::uint64_t kClaimAbandoned = 3;
constexpr std::size_t kClaimBytes = 64;
inline std::string claim_name(const std::string& pipe) { return pipe + ".claim"; }
//! The claim word in a connection's claim segment (shared memory both sides write: a const
//! handle still reaches it).
inline std::atomic<std::uint64_t>& claim_word(const SharedMemory& m) {
  return *reinterpret_cast<std::atomic<std::uint64_t>*>(m.data());
}

inline std::string listen_name(const std::string& manager) { return manager + ".listen"; }
inline std::string pipe_prefix(const std::string& manager) { return manager + ".c."; }

//! Removes the names of client pipes of `manager` whose creator no longer runs (all of them when
//! `all`). Never throws.
void sweep_client_pipes(const std::string& manager, bool all) noexcept;

//! The server process's body. Returns its exit code.
int server_main(const std::string& name, const Queue<std::string>& listen, pid_t owner_pid,
                std::uint64_t owner_start);

//! The built-in kinds (dict, list, namespace, value): registered once per process, before a
//! manager is started (containers.cpp).
void register_container_kinds();

//! One thread's connection to a manager. A thread has its own (so that a call blocking in the
//! server, a queue get or a lock acquire, holds up no other thread of the process), made at its
//! first call; a forked child makes its own too.
struct ThreadConnection {
  pid_t pid = 0;
  std::unique_ptr<Connection> conn;
  std::optional<SharedMemory> claim;  // the claim word's segment (see "Deadlines" above)
  std::uint64_t sent = 0;   // requests sent on this connection
  std::uint64_t stale = 0;  // answers still to come to requests given up on
  std::string broken;       // why it broke while the server lived ("" while it works)
};

struct ClientState : std::enable_shared_from_this<ClientState> {
  const std::uint64_t id;  // unique in this process: the per-thread cache's key
  std::string name;        // the manager's
  // The name prefix the manager's files have (the one in effect when this client was made): the
  // connections this process makes later are spelled with it, as its server expects, whatever
  // set_name_prefix() did since (new threads' first calls waited 30 s, then failed).
  const std::string prefix = name_prefix();
  pid_t server_pid = 0;
  std::uint64_t server_start = 0;
  Queue<std::string> listen;
  RawValue<ServerInfo> info;  // keeps the name alive while this process uses it
  std::atomic<bool> dead{false};
  std::atomic<bool> shut_down{false};  // dead because the owner shut it down
  // At most kConcurrentConnects threads of this process make a connection to this manager at
  // once; the others sleep on gate_cv. Each connection maps two segments and waits for the
  // server's hello: 1,100 threads of one process making their first call at once all did that
  // together — 780 runnable threads, 90 % of the CPU in the kernel (munmap among their wait
  // channels: the process's mmap lock, most likely), the server starved — and 800 of them failed
  // after 30 s. Through the gate they take about 0.5 s.
  // Guarded by connect_mutex(); gate_pid is the process they belong to (a forked child starts
  // afresh: a parent thread may have been inside at the fork).
  std::condition_variable gate_cv;
  int gate_busy = 0;
  pid_t gate_pid = 0;
  // server_gone()'s last look (steady-clock nanoseconds; 0: none yet) and what it saw.
  mutable std::atomic<std::int64_t> gone_checked{0};
  mutable std::atomic<bool> gone_seen{false};
  // Every thread's connection in this process (and copies of the parent's in a forked child,
  // never used there). Guarded by the process-wide connect mutex (client.cpp).
  std::vector<std::shared_ptr<ThreadConnection>> connections;
  // The pid of the process one of whose threads, waiting for an answer, watches the server for
  // all of them: it looks every 20 ms and, finding the server gone, wakes the others
  // (wake_waiters), who look only every 100 ms — so that 1,000 threads blocked in calls do not
  // each wake 50 times a second. 0: nobody watches; another pid (a forked child's copy): free.
  std::atomic<pid_t> watcher{0};
  std::atomic<bool> waiters_woken{false};

  ClientState();
  //! The calling thread's connection, made now if needed. Throws Error(errc::disconnected).
  //! As connection(), but nullptr when a connection had to be made and the server did not answer
  //! by `give_up` (a timed call's deadline).
  ThreadConnection* connection(std::chrono::steady_clock::time_point give_up);
  ThreadConnection& connection() { return *connection(std::chrono::steady_clock::time_point::max()); }
  //! Closes a thread's connection (the thread ends).
  void drop(const ThreadConnection* tc) noexcept;
  [[noreturn]] void fail_disconnected(const std::string& during);
  //! Whether the server process is gone (and so the manager). Asked by every waiting thread at
  //! every slice; the answer (a read of /proc) is shared for kGoneRecheck, unless `fresh`.
  bool server_gone(bool fresh = false) const noexcept;
  //! Wakes every thread of this process waiting for an answer (the server is gone), once.
  void wake_waiters() noexcept;
  //! A place among the threads connecting to this manager (gate_cv), waited for until `until`:
  //! false when none came by then. Throws Error(disconnected) when the server is gone meanwhile.
  bool enter_connect_gate(std::chrono::steady_clock::time_point until);
  void leave_connect_gate() noexcept;
  std::string describe() const { return "multiproc::Manager '" + name + "'"; }

 private:
  ThreadConnection* connect(std::chrono::steady_clock::time_point give_up);
};

}  // namespace multiproc::detail::manager
