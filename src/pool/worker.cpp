// The worker side of the Pool: the loop a forked worker runs (see pool_core.hpp for the whole).
#include "pool_core.hpp"

#include "../os.hpp"
#include "../pipe/connection_impl.hpp"

#include <cstring>
#include <exception>
#include <typeinfo>

namespace multiproc::detail {

int worker_main(const Connection& conn, const std::function<void()>& init, std::size_t maxtasks,
                const RawValue<std::uint64_t>& started) {
  // This process's pages of the rings, as the parent mapped its own (spawn_worker): before this
  // worker says it is ready, no one else uses the rings.
  conn.segment().prefault();
  touch_rings(conn, kWarmRing);
  // The pool's workers take turns at the CPUs with each other and with the caller that deals
  // them tasks: a wait for the next task yields now and then (ChannelRef::sleep_until).
  tls_share_cpu = true;
  if (init) init();  // an exception ends the worker with exit code 1 (Process prints it)
  try {
    conn.send_bytes("");  // ready: the initializer is done, tasks may come
  } catch (const Error&) {
    return 0;
  }
  std::uint64_t taken = 0;
  // The task and the reply, reused from task to task: their memory stays mapped (a fresh buffer
  // per chunk of a map paid a page fault per 4 KiB, most of a map's time on some machines).
  std::string msg(kTaskBuffer, '\0');
  std::string reply(kTaskBuffer, '\0');  // trampolines size it (resize, assign) to their reply
  for (;;) {
    std::size_t length = 0;
    try {
      length = conn.recv_bytes_into(msg.data(), msg.size());
    } catch (const EOFError&) {
      return 0;  // the pool closed our pipe: done
    } catch (const Error& e) {
      if (e.code() != errc::too_large) throw;
      msg.resize(msg.size() * 2);  // the task stays in the pipe: take it with more room
      continue;
    }
    if (length == 0) return 0;  // the pool is done with us (shut_down_workers)
    if (length < kTaskHeader) return 2;
    // Relaxed store: read by the manager only after this process has died and been reaped
    // (handle_exit), when nothing runs here any more; otherwise only as a snapshot (an executor
    // Future's running(), which orders nothing by it). Before the task's code: a worker that dies
    // with this unchanged had not started the task.
    started.store(++taken);
    const auto trampoline = reinterpret_cast<Trampoline>(get_at<std::uint64_t>(msg, 12));
    const auto fn = static_cast<std::uintptr_t>(get_at<std::uint64_t>(msg, 20));
    try {
      // The trampoline leaves room for the header in front of the encoded result.
      trampoline(fn, reinterpret_cast<const std::byte*>(msg.data()) + kTaskHeader,
                 length - kTaskHeader, reply);
      reply[kStatusAt] = kStatusOk;
    } catch (const std::exception& e) {
      reply.assign(kResultHeader, kStatusRemoteError);
      reply += demangle(typeid(e).name());
      reply.push_back('\0');
      reply += e.what();
    } catch (...) {
      reply.assign(kResultHeader, kStatusRemoteError);
      reply += "unknown exception";
      reply.push_back('\0');
    }
    std::memcpy(reply.data(), msg.data(), 12);  // job and index
    try {
      conn.send_bytes(reply);
    } catch (const Error&) {
      return 0;  // the pool is gone
    }
    if (maxtasks != 0 && taken >= maxtasks) return 0;
    if (msg.size() > kKeepBuffer) std::string(kTaskBuffer, '\0').swap(msg);  // a huge task passed
    if (reply.capacity() > kKeepBuffer) std::string().swap(reply);
  }
}

}  // namespace multiproc::detail
