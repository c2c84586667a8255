// Manager (multiproc/manager.hpp): a server process holding dicts, lists, Namespaces and Values,
// reached through proxies from forked children and exec'd programs; crashes of clients and of
// the manager.
#include "support/support.hpp"

#include <multiproc/manager.hpp>
#include <multiproc/process.hpp>

#include <algorithm>
#include <csignal>
#include <map>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace mptest;

BOOST_FIXTURE_TEST_SUITE(manager, Clean)

BOOST_AUTO_TEST_CASE(dict_operations_in_one_process, *boost::unit_test::timeout(60)) {
  mp::Manager m(mp::create_only, unique_name("mgr"));
  auto d = m.dict<std::string, int>("d");
  BOOST_TEST(d.name() == "d");
  BOOST_TEST(d.size() == 0u);
  d.set("a", 1);
  d.set("b", 2);
  d.set("a", 3);
  BOOST_TEST(d.get("a").value() == 3);
  BOOST_TEST(!d.get("zz").has_value());
  BOOST_TEST(d.get("zz", 7) == 7);
  BOOST_TEST(d.contains("b"));
  BOOST_TEST(d.size() == 2u);
  BOOST_TEST((d.keys() == std::vector<std::string>{"a", "b"}));
  BOOST_TEST((d.values() == std::vector<int>{3, 2}));
  d.update(std::vector<std::pair<std::string, int>>{{"c", 5}, {"a", 9}});
  BOOST_TEST((d.items() == std::vector<std::pair<std::string, int>>{{"a", 9}, {"b", 2}, {"c", 5}}));
  BOOST_TEST(d.setdefault("b", 100) == 2);
  BOOST_TEST(d.setdefault("n", 100) == 100);
  BOOST_TEST(d.pop("n").value() == 100);
  BOOST_TEST(!d.pop("n").has_value());
  BOOST_TEST(d.pop("n", -1) == -1);
  BOOST_TEST(d.erase("b"));
  BOOST_TEST(!d.erase("b"));
  BOOST_TEST(d.add("a", 5) == 14);
  BOOST_TEST(d.add("new", 5) == 5);
  BOOST_TEST(d.transform("s", [](int v) { return v * 2 + 1; }, 10) == 21);
  d.clear();
  BOOST_TEST(d.size() == 0u);
}

BOOST_AUTO_TEST_CASE(dict_add_from_four_processes_is_exact, *boost::unit_test::timeout(120)) {
  mp::Manager m;
  auto d = m.dict<std::string, long>("counts");
  std::vector<std::unique_ptr<mp::Process>> ps;
  for (int i = 0; i < 4; ++i) {
    ps.push_back(std::make_unique<mp::Process>([d] {
      for (int k = 0; k < 1000; ++k) d.add("hits", 1);
      return 0;
    }));
    ps.back()->start();
  }
  for (auto& p : ps) {
    p->join();
    BOOST_TEST(p->exitcode().value() == 0);
  }
  BOOST_TEST(d.get("hits").value() == 4000);
}

BOOST_AUTO_TEST_SUITE_END()
