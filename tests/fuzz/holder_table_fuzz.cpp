// libFuzzer target: the holder table of a Pipe end, every byte after its lock open to a hostile
// writer (count, flags, entries). The input is a program: overwrite bytes, add or remove holders
// (this process, pids that exist or not), add and drop pending fork entries, scan for liveness.
// Nothing may crash or index outside the table (ASan), and the count must stay within it after
// every locked operation. The lock itself is left alone: its recovery is the mutex's own target.
#include <multiproc/detail/holder_table.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <unistd.h>

namespace d = multiproc::detail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::size_t pos = 0;
  auto byte = [&]() -> std::uint8_t { return pos < size ? data[pos++] : 0; };
  auto* t = static_cast<d::HolderTable*>(std::aligned_alloc(alignof(d::HolderTable), sizeof(d::HolderTable)));
  std::memset(static_cast<void*>(t), 0, sizeof(d::HolderTable));
  const pid_t me = ::getpid();
  d::holder_table_init(*t, me, 0, "fuzz holders");
  auto* raw = reinterpret_cast<unsigned char*>(t);
  const std::size_t first = offsetof(d::HolderTable, closed);
  const std::size_t writable = sizeof(d::HolderTable) - first;
  for (int steps = 0; pos < size && steps < 128; ++steps) {
    const std::uint8_t op = byte();
    switch (op % 6) {
      case 0: {  // a hostile write after the lock
        const std::size_t at = first + (byte() | std::size_t{byte()} << 8) % writable;
        const std::size_t len = std::min<std::size_t>(byte() % 17, sizeof(d::HolderTable) - at);
        for (std::size_t i = 0; i < len; ++i) raw[at + i] = byte();
        break;
      }
      case 1:  // a holder: this process, or a pid that is most likely not running
        d::add_holder(*t, (op & 8) ? me : static_cast<pid_t>(1000000 + byte()), byte());
        break;
      case 2:
        d::remove_holder(*t, (op & 8) ? me : static_cast<pid_t>(1000000 + byte()));
        break;
      case 3:
        d::add_pending_fork(*t, me);
        break;
      case 4:
        d::remove_pending_fork(*t, me);
        break;
      case 5:
        (void)d::holders_alive(*t);
        break;
    }
    if (op % 6 != 0 && op % 6 != 5 && t->count > d::kMaxHolders) __builtin_trap();
  }
  std::free(t);
  return 0;
}
