// The samples' command line: optional positional numbers, each with a default and a lower bound.
//
//   const sample::Args args(argc, argv, "usage: pool_map [count>=0] [workers>=1] [chunksize]");
//   const long count = args.get(1, 2000000, 0);   // argv[1], default 2000000, at least 0
//
// Anything that is not a whole number in range prints the usage line and exits with status 2.
#pragma once

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace sample {

class Args {
 public:
  Args(int argc, char** argv, const char* usage) : argc_(argc), argv_(argv), usage_(usage) {
    if (argc > 4) fail();  // no sample takes more than three
  }

  //! argv[i] as a number (fallback when absent); exits with the usage line unless it is a whole
  //! number in [min, max].
  long get(int i, long fallback, long min = 0, long max = LONG_MAX) const {
    if (i >= argc_) return fallback;
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(argv_[i], &end, 10);
    if (end == argv_[i] || *end != '\0' || errno != 0 || v < min || v > max) fail();
    return v;
  }
  //! The same for an int.
  int get_int(int i, int fallback, int min = 0) const {
    return static_cast<int>(get(i, fallback, min, INT_MAX));
  }

 private:
  [[noreturn]] void fail() const {
    std::fprintf(stderr, "%s\n", usage_);
    std::exit(2);
  }
  int argc_;
  char** argv_;
  const char* usage_;
};

}  // namespace sample
