// Small OS helpers (os.hpp): the CPUs this process may use, and type-name demangling. The
// process facts (identity, liveness, fork hooks) live in src/process/.
#include "os.hpp"

#include <cstdlib>
#include <cxxabi.h>
#include <memory>
#include <sched.h>
#include <unistd.h>

namespace multiproc::detail {

int available_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

}  // namespace multiproc::detail
