// Four children add to one shared counter under its lock; the parent checks the exact total and
// prints the version of the headers it was built with (<multiproc/version.hpp>, through
// multiproc.hpp: generated in the build tree, or installed).
#include <multiproc/multiproc.hpp>

#include <cstdio>
#include <vector>

namespace mp = multiproc;

static_assert(MULTIPROC_VERSION == MULTIPROC_VERSION_MAJOR * 10000 + MULTIPROC_VERSION_MINOR * 100 +
                                       MULTIPROC_VERSION_PATCH,
              "MULTIPROC_VERSION is MAJOR * 10000 + MINOR * 100 + PATCH");

int main() {
  mp::SharedValue<long> total(0);
  std::vector<mp::Process> children;
  for (int i = 1; i <= 4; ++i) {
    children.emplace_back([total](int k) {
      for (int n = 0; n < 1000; ++n) total.update([&](long& t) { t += k; });
    }, i);
    children.back().start();
  }
  for (auto& c : children) c.join();
  const long expected = 1000L * (1 + 2 + 3 + 4);
  std::printf("multiproc %s\n", MULTIPROC_VERSION_STRING);
  std::printf("consumer: total %ld, expected %ld\n", total.load(), expected);
  return total.load() == expected ? 0 : 1;
}
