// Permissions: objects shared on purpose with another user (mode and group at creation, a trusted
// owner on open).
#include "support/support.hpp"

using namespace mptest;

BOOST_FIXTURE_TEST_SUITE(permissions, Clean)

BOOST_AUTO_TEST_SUITE_END()
