// Shared values and arrays with Python's type codes: typed handles, codes chosen at run time,
// and children that update them in place.
#include <multiproc/multiproc.hpp>

#include <cstdio>
#include <vector>

namespace mp = multiproc;

int main() {
  std::printf("Python's type codes on this platform:\n");
  for (const mp::TypeInfo* t = mp::type_table_begin(); t != mp::type_table_end(); ++t) {
    std::printf("  '%c'  %-20s %-12s %zu bytes\n", t->code, t->c_type, t->ctypes, t->size);
  }

  // Value('d', 0.0) and Array('i', range(10)) — typed.
  mp::SharedValue<double> mean(0.0);
  mp::SharedArray<int> squares(10);
  // Value and Array with the code in a variable, as Python code often has it.
  const char code = 'q';
  mp::AnyArray totals = mp::make_array(code, {0, 0});
  mp::AnyValue done = mp::make_value('?', false);

  mp::Process child([=] {
    for (std::size_t i = 0; i < squares.size(); ++i) squares.store(i, static_cast<int>(i * i));
    mean.store(28.5);  // the mean of 0, 1, 4, ..., 81
    {
      auto g = totals.get<long long>().lock();  // the typed handle behind the code 'q'
      g[0] = 285;  // sum of the squares
      g[1] = 10;   // count
    }
    done.store_from(true);
  });
  child.start();
  child.join();

  std::printf("\nafter the child (exit code %d):\n", *child.exitcode());
  std::printf("  squares = [");
  for (int v : squares.to_vector()) std::printf(" %d", v);
  std::printf(" ]\n  mean = %.1f, totals ('%c') = [%lld, %lld], done = %s\n", mean.load(),
              totals.type_code(), totals.to_vector_as<long long>()[0],
              totals.to_vector_as<long long>()[1], done.load_as<bool>() ? "true" : "false");

  // A wrong code is a clear error, not undefined behaviour.
  try {
    mp::make_value('x', 1);
  } catch (const mp::Error& e) {
    std::printf("\nmake_value('x', 1) -> %s\n", e.what());
  }
  try {
    mp::make_value('b', 300);
  } catch (const mp::Error& e) {
    std::printf("make_value('b', 300) -> %s\n", e.what());
  }
  return mean.load() == 28.5 && totals.to_vector_as<long long>()[0] == 285 ? 0 : 1;
}
