// The multiproc::redis test binary: Boost.Test's runner, plus `--scenario name args...` for tests
// that re-execute this binary as an unrelated process (a worker "on another host").
#define BOOST_TEST_MODULE multiproc_redis
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include "../support/support.hpp"

int main(int argc, char** argv) {
  const int rc = mptest::run_scenario_if_requested(argc, argv);
  if (rc >= 0) return rc;
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
