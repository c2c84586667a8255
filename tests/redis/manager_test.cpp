// multiproc::redis::Manager (redis/manager.hpp): the local Manager's dict, list, Namespace and
// Value on a redis-server — every method with Python's semantics, used from forked and exec'd
// processes at once (exact counts), processes SIGKILLed mid-operation, bytes written by another
// program, and a server that stops answering (SIGSTOP) or restarts (AOF).
#include <multiproc/manager.hpp>
#include <multiproc/process.hpp>
#include <multiproc/redis.hpp>

#include <boost/test/unit_test.hpp>

#include "redis_server.hpp"

#include <algorithm>
#include <limits>
#include <atomic>
#include <csignal>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <type_traits>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mp = multiproc;
namespace rd = multiproc::redis;
using namespace std::chrono_literals;
using mptest::expect_errc;
using mptest::expect_error;

namespace {

// A user type with a Codec of its own.
struct Point {
  int x = 0;
  std::string label;
  bool operator==(const Point& o) const { return x == o.x && label == o.label; }
  bool operator<(const Point& o) const { return std::tie(x, label) < std::tie(o.x, o.label); }
};

}  // namespace

template <>
struct multiproc::Codec<Point> {
  static std::size_t size(const Point& p) { return multiproc::encoded_size(p.x, p.label); }
  static void encode(const Point& p, std::byte* out) { multiproc::encode_fields(out, p.x, p.label); }
  static Point decode(const std::byte* in, std::size_t n) {
    Point p;
    multiproc::decode_fields(in, n, p.x, p.label);
    return p;
  }
};

namespace {

rd::Options quick() { return mptest::redis_options(300ms, 1000ms); }

// SIGSTOP, and wait until it has taken effect.
void pause_fully(mptest::RedisServer& server) {
  server.pause();
  BOOST_REQUIRE(mptest::eventually([&] { return mptest::all_threads_stopped(server.pid()); }));
}

}  // namespace

// An unrelated program ("another host"): opens the Manager by url and adds to a counter, appends
// to a list, and sets a Namespace field.
MPTEST_SCENARIO(redis_manager_adder) {
  rd::Manager m(args.at(0));
  auto d = m.dict<std::string, long>("counts");
  auto l = m.list<std::string>("tags");
  const int n = std::stoi(args.at(1));
  for (int i = 0; i < n; ++i) d.add("hits", 1);
  l.append("exec");
  m.Namespace("ns").set<std::string>("who", "exec'd");
  return 0;
}

namespace {

// The same program against the local Manager and the redis one: every result (or error code)
// in a trace, and the two traces must be equal.
std::string text(bool b) { return b ? "true" : "false"; }
std::string text(long v) { return std::to_string(v); }
std::string text(int v) { return std::to_string(v); }
std::string text(std::size_t v) { return std::to_string(v); }
std::string text(const std::string& v) { return "'" + v + "'"; }
template <class T>
std::string text(const std::optional<T>& v) {
  return v ? "some " + text(*v) : std::string("none");
}
template <class A, class B>
std::string text(const std::pair<A, B>& p) {
  return "(" + text(p.first) + ", " + text(p.second) + ")";
}
template <class T>
std::string text(const std::vector<T>& v) {
  std::string out = "[";
  for (const auto& x : v) out += text(x) + " ";
  return out + "]";
}

template <class Mgr>
std::vector<std::string> trace(const Mgr& m) {
  std::vector<std::string> out;
  auto rec = [&out](auto&& f) {
    try {
      if constexpr (std::is_void_v<decltype(f())>) {
        f();
        out.push_back("ok");
      } else {
        out.push_back(text(f()));
      }
    } catch (const mp::Error& e) {
      out.push_back("error " + e.code().message());
    }
  };
  auto d = m.template dict<std::string, long>("d");
  rec([&] { return d.get("a"); });
  rec([&] { return d.get("a", 5L); });
  rec([&] { d.set("a", 1); });
  rec([&] { d.update({{"b", 2}, {"c", 3}, {"a", 4}}); });
  rec([&] { return d.setdefault("d", 9); });
  rec([&] { return d.setdefault("b", 9); });
  rec([&] { return d.add("b", 10); });
  rec([&] { d.set("max", std::numeric_limits<long>::max()); });
  rec([&] { return d.add("max", 1); });  // does not fit: an error, nothing stored
  rec([&] { return d.get("max"); });
  rec([&] { return d.transform("z", [](long x) { return x * 2; }, 21); });
  rec([&] { return d.pop("c"); });
  rec([&] { return d.pop("c", -1); });
  rec([&] { return d.erase("a"); });
  rec([&] { return d.erase("a"); });
  rec([&] { d.set("a", 7); });
  rec([&] { return d.keys(); });
  rec([&] { return d.values(); });
  rec([&] { return d.items(); });
  rec([&] { return d.contains("b"); });
  rec([&] { return d.size(); });
  rec([&] { return d.empty(); });
  rec([&] { d.clear(); });
  rec([&] { return d.empty(); });
  auto l = m.template list<int>("l");
  rec([&] { l.extend({1, 2, 3, 4, 5, 6, 7}); });
  for (long i : {-9L, -8L, -7L, -1L, 0L, 6L, 7L, 100L}) {
    rec([&] { return l.get(i); });
    rec([&] { return l.slice(i, -2); });
    rec([&] { return l.slice(-3, i); });
  }
  rec([&] { l.insert(-2, 10); });
  rec([&] { l.insert(3, 11); });
  rec([&] { l.insert(-50, 12); });
  rec([&] { l.insert(50, 13); });
  rec([&] { return l.pop(); });
  rec([&] { return l.pop(0); });
  rec([&] { return l.pop(4); });
  rec([&] { return l.pop(-3); });
  rec([&] { return l.pop(20); });
  rec([&] { l.set(-1, 70); });
  rec([&] { l.set(9, 70); });
  rec([&] { return l.add(1, 5); });
  rec([&] { return l.transform(-2, [](int x) { return -x; }); });
  rec([&] { return l.transform(-20, [](int x) { return -x; }); });
  rec([&] { l.append(99); });
  rec([&] { return l.items(); });
  rec([&] { return l.size(); });
  rec([&] { l.clear(); });
  rec([&] { return l.pop(); });
  rec([&] { return l.get(0); });
  rec([&] { return l.empty(); });
  auto ns = m.Namespace("ns");
  rec([&] { ns.template set<int>("n", 3); });
  rec([&] { ns.template set<std::string>("s", "x"); });
  rec([&] { return ns.template get<int>("n"); });
  rec([&] { return ns.template get<long>("n"); });
  rec([&] { return ns.template get<int>("none"); });
  rec([&] { return ns.fields(); });
  rec([&] { return ns.erase("n"); });
  rec([&] { return ns.contains("n"); });
  auto v = m.template Value<long>("v", 4);
  rec([&] { return v.get(); });
  rec([&] { return v.add(3); });
  rec([&] { v.set(-1); });
  rec([&] { return v.transform([](long x) { return x - 1; }); });
  rec([&] { m.template list<int>("d"); });
  rec([&] { m.template dict<int, long>("d"); });
  rec([&] { m.template Value<int>("v"); });
  rec([&] { m.Namespace("l"); });
  return out;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(redis_manager, mptest::RedisClean)

BOOST_AUTO_TEST_CASE(dict_operations, *boost::unit_test::timeout(30)) {
  rd::Manager m(redis.url());
  auto d = m.dict<std::string, int>("d");
  BOOST_TEST(d.name() == "d");
  BOOST_TEST(d.size() == 0u);
  BOOST_TEST(d.empty());
  d.set("a", 1);
  d.set("b", 2);
  d.set("a", 3);
  BOOST_TEST(d.get("a").value() == 3);
  BOOST_TEST(!d.get("zz").has_value());
  BOOST_TEST(d.get("zz", 7) == 7);
  BOOST_TEST(d.contains("b"));
  BOOST_TEST(!d.contains("zz"));
  BOOST_TEST(d.size() == 2u);
  BOOST_TEST(!d.empty());
  BOOST_TEST((d.keys() == std::vector<std::string>{"a", "b"}));
  BOOST_TEST((d.values() == std::vector<int>{3, 2}));
  d.update(std::vector<std::pair<std::string, int>>{{"c", 5}, {"a", 9}});
  d.update({{"e", 6}});
  std::map<std::string, int> more{{"f", 7}};
  d.update(more);
  d.update(std::vector<std::pair<std::string, int>>{});  // nothing to do
  BOOST_TEST((d.items() == std::vector<std::pair<std::string, int>>{
                               {"a", 9}, {"b", 2}, {"c", 5}, {"e", 6}, {"f", 7}}));
  BOOST_TEST(d.setdefault("b", 100) == 2);
  BOOST_TEST(d.setdefault("n", 100) == 100);
  BOOST_TEST(d.get("n").value() == 100);
  BOOST_TEST(d.pop("n").value() == 100);
  BOOST_TEST(!d.pop("n").has_value());
  BOOST_TEST(d.pop("n", -1) == -1);
  BOOST_TEST(d.erase("b"));
  BOOST_TEST(!d.erase("b"));
  d.set("b", 0);  // erased and set again: at the end, as in Python
  BOOST_TEST((d.keys() == std::vector<std::string>{"a", "c", "e", "f", "b"}));
  BOOST_TEST(d.add("a", 5) == 14);
  BOOST_TEST(d.add("new", 5) == 5);
  BOOST_TEST(d.transform("s", [](int v) { return v * 2 + 1; }, 10) == 21);
  BOOST_TEST(d.get("s").value() == 21);
  // A throwing f changes nothing.
  BOOST_CHECK_THROW(d.transform("s", [](int) -> int { throw std::runtime_error("no"); }),
                    std::runtime_error);
  BOOST_TEST(d.get("s").value() == 21);
  d.clear();
  BOOST_TEST(d.size() == 0u);
  BOOST_TEST(d.keys().empty());
  // Another proxy of the same name is the same dict (here: through another Manager, as another
  // host would); an empty name makes a fresh one.
  auto d2 = rd::Manager(redis.url()).dict<std::string, int>("d");
  d2.set("x", 1);
  BOOST_TEST(d.get("x").value() == 1);
  auto fresh = m.dict<std::string, int>();
  BOOST_TEST(!fresh.name().empty());
  BOOST_TEST(fresh.name() != "d");
  BOOST_TEST(fresh.size() == 0u);
  fresh.set("y", 2);
  BOOST_TEST((m.dict<std::string, int>(fresh.name()).get("y").value() == 2));
  BOOST_TEST((m.dict<std::string, int>().name() != fresh.name()));
  // Proxies are plain copies of one dict.
  auto copy = d;
  copy.set("z", 26);
  BOOST_TEST(d.get("z").value() == 26);
}

// The same API and the same answers, errors included, as the local Manager.
BOOST_AUTO_TEST_CASE(answers_as_the_local_manager_does, *boost::unit_test::timeout(60)) {
  std::vector<std::string> local;
  {
    mp::Manager m;
    local = trace(m);
  }
  const std::vector<std::string> remote = trace(rd::Manager(redis.url()));
  BOOST_TEST(local.size() > 80u);
  BOOST_TEST(remote == local, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(list_operations_and_index_errors, *boost::unit_test::timeout(30)) {
  rd::Manager m(redis.url());
  auto l = m.list<int>("l");
  BOOST_TEST(l.name() == "l");
  BOOST_TEST(l.size() == 0u);
  BOOST_TEST(l.empty());
  l.append(1);
  l.extend(std::vector<int>{2, 3, 4});
  l.extend({5});
  l.extend(std::vector<int>{});
  BOOST_TEST((l.items() == std::vector<int>{1, 2, 3, 4, 5}));
  BOOST_TEST(l.get(0) == 1);
  BOOST_TEST(l.get(-1) == 5);
  BOOST_TEST(l.get(-5) == 1);
  l.set(-2, 40);
  l.insert(0, 0);
  l.insert(-1, 99);    // before the last
  l.insert(100, 100);  // clamped: at the end
  l.insert(-100, -1);  // clamped: at the front
  BOOST_TEST((l.items() == std::vector<int>{-1, 0, 1, 2, 3, 40, 99, 5, 100}));
  BOOST_TEST((l.slice(1, 3) == std::vector<int>{0, 1}));
  BOOST_TEST((l.slice(-2, 100) == std::vector<int>{5, 100}));
  BOOST_TEST((l.slice(5, 2).empty()));
  BOOST_TEST((l.slice(2, 0).empty()));
  BOOST_TEST((l.slice(-3, -1) == std::vector<int>{99, 5}));
  BOOST_TEST((l.slice(-100, 2) == std::vector<int>{-1, 0}));
  BOOST_TEST((l.slice(0, PTRDIFF_MAX) == l.items()));
  BOOST_TEST((l.slice(PTRDIFF_MIN, PTRDIFF_MAX) == l.items()));
  BOOST_TEST(l.pop() == 100);
  BOOST_TEST(l.pop(0) == -1);
  BOOST_TEST(l.pop(-2) == 99);
  BOOST_TEST(l.pop(2) == 2);  // from the middle
  BOOST_TEST((l.items() == std::vector<int>{0, 1, 3, 40, 5}));
  BOOST_TEST(l.add(3, 2) == 42);
  BOOST_TEST(l.transform(-1, [](int v) { return v * 10; }) == 50);
  BOOST_TEST((l.items() == std::vector<int>{0, 1, 3, 42, 50}));
  expect_error([&] { l.get(5); }, mp::errc::invalid_argument,
               {"redis::Manager list 'l'", "index 5", "5 items"});
  expect_error([&] { l.get(-6); }, mp::errc::invalid_argument, {"index -6", "5 items"});
  expect_error([&] { l.set(5, 1); }, mp::errc::invalid_argument, {"set", "index 5"});
  expect_error([&] { l.pop(9); }, mp::errc::invalid_argument, {"pop", "index 9"});
  expect_error([&] { l.pop(-6); }, mp::errc::invalid_argument, {"index -6"});
  expect_error([&] { l.add(9, 1); }, mp::errc::invalid_argument, {"index 9"});
  expect_error([&] { l.get(PTRDIFF_MIN); }, mp::errc::invalid_argument,
               {std::to_string(PTRDIFF_MIN)});
  BOOST_TEST(l.size() == 5u);  // the failed calls changed nothing
  BOOST_CHECK_THROW(l.transform(0, [](int) -> int { throw std::runtime_error("no"); }),
                    std::runtime_error);
  BOOST_TEST(l.get(0) == 0);
  l.clear();
  BOOST_TEST(l.empty());
  expect_error([&] { l.pop(); }, mp::errc::invalid_argument, {"list 'l'", "empty list"});
  expect_error([&] { l.get(0); }, mp::errc::invalid_argument, {"index 0", "0 items"});
  l.insert(5, 7);  // into an empty list
  BOOST_TEST((l.items() == std::vector<int>{7}));
}

// Inserts and pops anywhere in a list of thousands of items (the scripts move the shorter side,
// in chunks), against a std::vector doing the same.
BOOST_AUTO_TEST_CASE(list_matches_a_vector_under_random_operations, *boost::unit_test::timeout(60)) {
  rd::Manager m(redis.url());
  auto l = m.list<long>("model");
  std::vector<long> model(2500);
  for (std::size_t i = 0; i < model.size(); ++i) model[i] = static_cast<long>(i);
  l.extend(model);
  std::mt19937 gen(12345);
  long next = 100000;
  for (int step = 0; step < 400; ++step) {
    const auto n = static_cast<std::ptrdiff_t>(model.size());
    std::uniform_int_distribution<std::ptrdiff_t> any(-n - 3, n + 3);
    const std::ptrdiff_t i = any(gen);
    switch (step % 4) {
      case 0: {  // insert, clamped as Python does
        std::ptrdiff_t j = i < 0 ? std::max<std::ptrdiff_t>(0, i + n) : std::min(i, n);
        model.insert(model.begin() + j, next);
        l.insert(i, next++);
        break;
      }
      case 1: {  // pop, or its error
        const std::ptrdiff_t j = i < 0 ? i + n : i;
        if (j < 0 || j >= n) {
          expect_errc([&] { l.pop(i); }, mp::errc::invalid_argument);
        } else {
          BOOST_TEST(l.pop(i) == model[static_cast<std::size_t>(j)]);
          model.erase(model.begin() + j);
        }
        break;
      }
      case 2: {
        const std::ptrdiff_t j = i < 0 ? i + n : i;
        if (j >= 0 && j < n) {
          l.set(i, -next);
          model[static_cast<std::size_t>(j)] = -next++;
          BOOST_TEST(l.get(i) == model[static_cast<std::size_t>(j)]);
        }
        break;
      }
      case 3: {
        const std::ptrdiff_t stop = any(gen);
        auto clamp = [n](std::ptrdiff_t x) {
          if (x < 0) x += n;
          return std::min(std::max<std::ptrdiff_t>(x, 0), n);
        };
        const std::ptrdiff_t a = clamp(i), b = clamp(stop);
        std::vector<long> want;
        if (a < b) want.assign(model.begin() + a, model.begin() + b);
        BOOST_TEST((l.slice(i, stop) == want));
        break;
      }
    }
  }
  BOOST_TEST((l.items() == model));
  BOOST_TEST(l.size() == model.size());
}

BOOST_AUTO_TEST_CASE(namespace_and_value, *boost::unit_test::timeout(30)) {
  rd::Manager m(redis.url());
  auto ns = m.Namespace("cfg");
  BOOST_TEST(ns.name() == "cfg");
  ns.set<int>("n", 3);
  ns.set<std::string>("s", "text");
  ns.set<Point>("p", Point{1, "one"});
  BOOST_TEST(ns.get<int>("n").value() == 3);
  BOOST_TEST(ns.get<std::string>("s").value() == "text");
  BOOST_TEST((ns.get<Point>("p").value() == Point{1, "one"}));
  BOOST_TEST((!ns.get<int>("missing").has_value()));
  BOOST_TEST(ns.contains("n"));
  BOOST_TEST(!ns.contains("missing"));
  BOOST_TEST((ns.fields() == std::vector<std::string>{"n", "p", "s"}));
  expect_error([&] { ns.get<double>("n"); }, mp::errc::type_mismatch,
               {"Namespace 'cfg'", "field 'n'", "int", "double"});
  expect_error([&] { ns.get<int>("s"); }, mp::errc::type_mismatch, {"std::string", "int"});
  ns.set<double>("n", 2.5);  // a set may change the field's type
  BOOST_TEST(ns.get<double>("n").value() == 2.5);
  BOOST_TEST(ns.erase("n"));
  BOOST_TEST(!ns.erase("n"));
  BOOST_TEST(!ns.contains("n"));
  BOOST_TEST(m.Namespace("cfg").get<std::string>("s").value() == "text");

  auto v = m.Value<long>("v", 7);
  BOOST_TEST(v.name() == "v");
  BOOST_TEST(v.get() == 7);
  v.set(8);
  BOOST_TEST(v.get() == 8);
  BOOST_TEST(m.Value<long>("v", 100).get() == 8);  // exists: the initial value is not applied
  BOOST_TEST(v.add(2) == 10);
  BOOST_TEST(v.transform([](long x) { return x * 3; }) == 30);
  BOOST_CHECK_THROW(v.transform([](long) -> long { throw std::runtime_error("no"); }),
                    std::runtime_error);
  BOOST_TEST(v.get() == 30);
  expect_error([&] { m.Value<int>("v"); }, mp::errc::type_mismatch, {"Value 'v'", "long", "int"});
  auto fresh = m.Value<std::string>({}, "init");
  BOOST_TEST(fresh.get() == "init");
  BOOST_TEST(m.Value<int>().get() == 0);
}

BOOST_AUTO_TEST_CASE(wrong_kind_wrong_types_and_removal, *boost::unit_test::timeout(30)) {
  rd::Manager m(redis.url());
  auto x = m.dict<std::string, long>("words");
  x.set("the", 1);
  expect_error([&] { m.dict<int, long>("words"); }, mp::errc::type_mismatch,
               {"dict 'words'", "std::string, long", "int, long"});
  expect_error([&] { m.dict<std::string, int>("words"); }, mp::errc::type_mismatch,
               {"dict 'words'", "int"});
  expect_error([&] { m.list<long>("words"); }, mp::errc::wrong_kind,
               {"'words'", "kind 'dict'", "kind 'list'"});
  expect_error([&] { m.Namespace("words"); }, mp::errc::wrong_kind, {"dict", "Namespace"});
  expect_error([&] { m.Value<long>("words"); }, mp::errc::wrong_kind, {"dict", "Value"});
  m.list<int>("y");
  expect_error([&] { m.list<short>("y"); }, mp::errc::type_mismatch, {"list 'y'", "short"});
  expect_error([&] { m.dict<int, int>("y"); }, mp::errc::wrong_kind, {"list", "dict"});
  BOOST_TEST(x.get("the").value() == 1);  // a failed open changed nothing
  // remove: the name is free again, for any kind; proxies still open see an empty object.
  BOOST_TEST(m.remove("words"));
  BOOST_TEST(!m.remove("words"));
  BOOST_TEST(x.size() == 0u);
  auto again = m.list<long>("words");
  again.append(3);
  BOOST_TEST(again.items() == std::vector<long>{3});
  auto v = m.Value<int>("gone", 5);
  BOOST_TEST(m.remove("gone"));
  expect_error([&] { v.get(); }, mp::errc::not_found, {"Value 'gone'", "does not exist"});
  expect_errc([&] { v.add(1); }, mp::errc::not_found);
  // A default-constructed proxy, and a bad app name.
  rd::DictProxy<int, int> none;
  BOOST_TEST(none.name().empty());
  expect_errc([&] { none.size(); }, mp::errc::bad_state);
  expect_errc([&] { rd::ListProxy<int>().append(1); }, mp::errc::bad_state);
  expect_error([&] { rd::Manager(redis.url(), "a:b"); }, mp::errc::invalid_argument, {"'a:b'"});
  expect_errc([&] { rd::Manager("http://nope"); }, mp::errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(apps_share_a_server_without_seeing_each_other, *boost::unit_test::timeout(30)) {
  rd::Manager plain(redis.url());
  rd::Manager app1(redis.url(), "app1");
  rd::Manager app1_again(rd::Client(redis.url()), "app1");
  rd::ManagerOptions opts;
  opts.app = "app2";
  rd::Manager app2(redis.url(), opts);
  BOOST_TEST(app1.app() == "app1");
  plain.dict<std::string, int>("d").set("k", 0);
  app1.dict<std::string, int>("d").set("k", 1);
  app2.list<int>("d").append(2);  // another kind under the same name: another app's business
  BOOST_TEST((plain.dict<std::string, int>("d").get("k").value() == 0));
  BOOST_TEST((app1_again.dict<std::string, int>("d").get("k").value() == 1));
  BOOST_TEST(app2.list<int>("d").items() == std::vector<int>{2});
  // The keys are where the header says.
  rd::Client c(redis.url());
  BOOST_TEST(c.command({"HLEN", "mp:manager:dict:d"}).integer() == 1);
  BOOST_TEST(c.command({"HLEN", "mp:manager/app1:dict:d"}).integer() == 1);
  BOOST_TEST(c.command({"LLEN", "mp:manager/app2:list:d"}).integer() == 1);
  BOOST_TEST(c.command({"HGET", "mp:manager/app2:meta:d", "kind"}).str() == "list");
  BOOST_TEST(c.command({"HGET", "mp:manager:dict:d", rd::to_bytes(std::string("k"))}).str() ==
             rd::to_bytes(0));
}

BOOST_AUTO_TEST_CASE(keys_and_values_of_any_codec_type, *boost::unit_test::timeout(60)) {
  rd::Manager m(redis.url());
  // Strings with NUL bytes and CR/LF are keys like any other; two keys differing in one byte are
  // two keys.
  auto d = m.dict<std::string, std::vector<double>>("bin");
  const std::string k1("a\0b", 3), k2("a\0c", 3), k3("\r\n\0", 3);
  d.set(k1, {1.5, -2.0});
  d.set(k2, {});
  d.set(k3, {3.0});
  d.set("", {4.0});
  BOOST_TEST(d.size() == 4u);
  BOOST_TEST((d.get(k1).value() == std::vector<double>{1.5, -2.0}));
  BOOST_TEST(d.get(k2).value().empty());
  BOOST_TEST((d.keys() == std::vector<std::string>{k1, k2, k3, ""}));
  BOOST_TEST(!d.contains(std::string("a\0", 2)));
  // Structs with their own Codec, vectors and pairs as keys and values.
  auto pts = m.dict<Point, std::pair<int, std::string>>("points");
  pts.set(Point{1, "a"}, {1, "x"});
  pts.set(Point{1, "b"}, {2, std::string("y\0z", 3)});
  BOOST_TEST((pts.get(Point{1, "b"}).value() == std::make_pair(2, std::string("y\0z", 3))));
  BOOST_TEST(!pts.get(Point{2, "a"}).has_value());
  BOOST_TEST(pts.transform(Point{1, "a"}, [](std::pair<int, std::string> p) {
    p.second += "+";
    return p;
  }).second == "x+");
  auto vk = m.dict<std::vector<int>, Point>("vk");
  vk.set({1, 2, 3}, Point{7, "seven"});
  BOOST_TEST((vk.setdefault({1, 2, 3}, Point{}) == Point{7, "seven"}));
  BOOST_TEST((vk.items().front().first == std::vector<int>{1, 2, 3}));
  auto lp = m.list<Point>("lp");
  lp.extend({Point{1, "p"}, Point{2, "q"}});
  lp.insert(1, Point{3, std::string(1, '\0')});
  BOOST_TEST((lp.pop(1) == Point{3, std::string(1, '\0')}));
  BOOST_TEST(lp.transform(0, [](Point p) {
    p.label += "!";
    return p;
  }).label == "p!");
  // A large value (4 MB) round-trips through every container.
  std::string big(4 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  auto bd = m.dict<std::string, std::string>("big");
  bd.set(big.substr(0, 100000), big);
  BOOST_TEST((bd.get(big.substr(0, 100000)).value() == big));
  BOOST_TEST(bd.transform(big.substr(0, 100000), [](std::string s) { return s + "!"; }).size() ==
             big.size() + 1);
  auto bl = m.list<std::string>("bigl");
  bl.append(big);
  bl.insert(0, "small");
  BOOST_TEST((bl.get(-1) == big));
  BOOST_TEST((bl.pop() == big));
  m.Namespace("bign").set<std::string>("f", big);
  BOOST_TEST((m.Namespace("bign").get<std::string>("f").value() == big));
  auto bv = m.Value<std::string>("bigv", big);
  BOOST_TEST((bv.get() == big));
}

BOOST_AUTO_TEST_CASE(bytes_written_by_another_program_are_corrupt_not_ub,
                     *boost::unit_test::timeout(30)) {
  rd::Manager m(redis.url());
  rd::Client other(redis.url());  // "another program", writing with plain commands
  auto d = m.dict<std::string, long>("counts");
  d.set("ok", 1);
  other.command({"HSET", "mp:manager:dict:counts", rd::to_bytes(std::string("bad")), "xyz"});
  expect_error([&] { d.get("bad"); }, mp::errc::corrupt,
               {"redis::Manager dict 'counts'", "a value", "long"});
  expect_errc([&] { d.values(); }, mp::errc::corrupt);
  expect_errc([&] { d.add("bad", 1); }, mp::errc::corrupt);
  BOOST_TEST(d.get("ok").value() == 1);  // the rest is readable
  // A field another program added is listed (after the dict's own); one that is not a key's
  // bytes is corrupt when read as a key.
  d.erase("bad");
  other.command({"HSET", "mp:manager:dict:counts", rd::to_bytes(std::string("foreign")),
                 rd::to_bytes(7L)});
  d.set("last", 2);
  BOOST_TEST((d.keys() == std::vector<std::string>{"ok", "last", "foreign"}));
  auto ints = m.dict<int, long>("ints");
  ints.set(1, 1);
  other.command({"HSET", "mp:manager:dict:ints", "12345", rd::to_bytes(1L)});  // 5 bytes: no int
  expect_error([&] { ints.keys(); }, mp::errc::corrupt, {"dict 'ints'", "a key", "int"});
  // A list item, a Namespace field, a Value.
  auto l = m.list<long>("l");
  l.append(1);
  other.command({"RPUSH", "mp:manager:list:l", "x"});
  expect_error([&] { l.get(-1); }, mp::errc::corrupt, {"list 'l'", "an item"});
  expect_errc([&] { l.items(); }, mp::errc::corrupt);
  BOOST_TEST(l.get(0) == 1);
  auto ns = m.Namespace("ns");
  other.command({"HSET", "mp:manager:ns:ns", "f", "no type here"});
  expect_error([&] { ns.get<int>("f"); }, mp::errc::corrupt, {"Namespace 'ns'", "field 'f'"});
  other.command({"HSET", "mp:manager:ns:ns", "g", std::string("int\0ab", 6)});
  expect_error([&] { ns.get<int>("g"); }, mp::errc::corrupt, {"Namespace 'ns'", "int"});
  auto v = m.Value<double>("v");
  other.command({"SET", "mp:manager:value:v", "?"});
  expect_error([&] { v.get(); }, mp::errc::corrupt, {"Value 'v'", "double"});
  // Another program's value of the wrong Redis type under our key: a server error naming it.
  other.command({"DEL", "mp:manager:dict:counts"});
  other.command({"SET", "mp:manager:dict:counts", "a string"});
  expect_error([&] { d.get("ok"); }, mp::errc::server_error, {"WRONGTYPE"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(redis_manager_processes, mptest::RedisClean)

// N processes x M adds and transforms, plus threads and an exec'd program: exact totals.
BOOST_AUTO_TEST_CASE(adds_and_transforms_from_processes_are_exact, *boost::unit_test::timeout(60)) {
  rd::Manager m(redis.url());
  auto d = m.dict<std::string, long>("counts");
  auto l = m.list<long>("cells");
  l.extend({0, 0});
  auto v = m.Value<long>("v", 0);
  constexpr int kProcs = 4, kEach = 250, kExec = 200;
  mptest::Spawned exec("redis_manager_adder", {redis.url(), std::to_string(kExec)});
  // The children are forked before the thread starts: clang 14's ASan deadlocks a child forked
  // while another thread is inside its allocator (glibc's malloc does not).
  auto ps = mptest::start_all(kProcs, [d, l, v](int) {
    for (int k = 0; k < kEach; ++k) {
      d.add("hits", 1);
      d.transform("odd", [](long x) { return x + 2; }, 1);
      l.add(1, 1);
      v.transform([](long x) { return x + 1; });
    }
    return 0;
  });
  std::thread local([d] {
    for (int k = 0; k < kEach; ++k) d.add("hits", 1);
  });
  mptest::join_all_ok(ps);
  local.join();
  BOOST_TEST(exec.wait() == 0);
  BOOST_TEST(d.get("hits").value() == (kProcs + 1) * kEach + kExec);
  BOOST_TEST(d.get("odd").value() == 1 + 2 * kProcs * kEach);
  BOOST_TEST((l.items() == std::vector<long>{0, kProcs * kEach}));
  BOOST_TEST(v.get() == kProcs * kEach);
  BOOST_TEST((m.list<std::string>("tags").items() == std::vector<std::string>{"exec"}));
  BOOST_TEST(m.Namespace("ns").get<std::string>("who").value() == "exec'd");
}

// Appends from several processes: exact count and multiset; then pops by several processes at
// once (from both ends and the middle) take every item exactly once.
BOOST_AUTO_TEST_CASE(appends_and_pops_from_processes_take_each_item_once,
                     *boost::unit_test::timeout(60)) {
  rd::Manager m(redis.url());
  auto l = m.list<std::pair<int, int>>("l");
  constexpr int kProcs = 6, kEach = 60;
  auto ps = mptest::start_all(kProcs, [l](int i) {
    for (int k = 0; k < kEach; ++k) {
      if (k % 3 == 0) {
        l.extend({{i, k}, {i, k + 1}});
        ++k;
      } else {
        l.append({i, k});
      }
    }
    return 0;
  });
  mptest::join_all_ok(ps);
  auto items = l.items();
  std::sort(items.begin(), items.end());
  std::vector<std::pair<int, int>> want;
  for (int i = 0; i < kProcs; ++i) {
    for (int k = 0; k < kEach; ++k) want.emplace_back(i, k);
  }
  BOOST_TEST((items == want));
  // Pops: each process pops at its own kind of index until the list is empty; every item comes
  // out exactly once (the dict records who took what).
  auto taken = m.dict<std::pair<int, int>, int>("taken");
  auto pops = mptest::start_all(3, [l, taken](int who) {
    for (;;) {
      std::pair<int, int> item;
      try {
        item = l.pop(who == 0 ? -1 : who == 1 ? 0 : static_cast<std::ptrdiff_t>(l.size() / 2));
      } catch (const mp::Error& e) {
        if (e.code() != mp::errc::invalid_argument) return 2;
        if (l.empty()) return 0;
        continue;  // the list shrank under the middle index: try again
      }
      if (taken.setdefault(item, who) != who) return 3;  // taken twice
    }
  });
  mptest::join_all_ok(pops);
  BOOST_TEST(l.empty());
  BOOST_TEST(taken.size() == want.size());
}

// Dict pops and setdefault races: each key goes to exactly one process; every process sees the
// same winner of setdefault.
BOOST_AUTO_TEST_CASE(pops_and_setdefault_race_to_one_winner, *boost::unit_test::timeout(60)) {
  rd::Manager m(redis.url());
  auto d = m.dict<int, int>("jobs");
  std::vector<std::pair<int, int>> all;
  for (int k = 0; k < 300; ++k) all.emplace_back(k, k * 7);
  d.update(all);
  auto got = m.list<int>("got");
  auto winners = m.list<int>("winners");
  auto ps = mptest::start_all(4, [d, got, winners](int i) {
    std::vector<int> mine;
    for (int k = 0; k < 300; ++k) {
      if (auto v = d.pop(k)) {
        if (*v != k * 7) return 2;
        mine.push_back(k);
      }
    }
    got.extend(mine);
    winners.append(d.setdefault(1000, i));
    return 0;
  });
  mptest::join_all_ok(ps);
  auto g = got.items();
  std::sort(g.begin(), g.end());
  BOOST_TEST(g.size() == 300u);
  BOOST_TEST((std::adjacent_find(g.begin(), g.end()) == g.end()));
  auto w = winners.items();
  BOOST_TEST(w.size() == 4u);
  BOOST_TEST((std::set<int>(w.begin(), w.end()).size() == 1u));
  BOOST_TEST(d.size() == 1u);
  BOOST_TEST(d.get(1000).value() == w.front());
}

// A process SIGKILLed while it inserts and pops in the middle of a list, updates two keys in one
// call and transforms a counter: nothing is half-done.
BOOST_AUTO_TEST_CASE(a_process_killed_mid_operation_leaves_everything_whole,
                     *boost::unit_test::timeout(60)) {
  rd::Manager m(redis.url());
  auto l = m.list<long>("l");
  std::vector<long> base(3000);
  for (std::size_t i = 0; i < base.size(); ++i) base[i] = static_cast<long>(i);
  l.extend(base);
  auto d = m.dict<std::string, long>("pair");
  auto rounds = m.Value<long>("rounds", 0);
  for (int attempt = 0; attempt < 3; ++attempt) {
    const long before = rounds.get();
    mp::Process p([l, d, rounds] {
      for (long k = 1;; ++k) {
        l.insert(1200, -k);
        if (l.pop(1200) != -k) return 2;
        d.update({{"a", k}, {"b", k}});
        rounds.add(1);
      }
    });
    p.start();
    BOOST_TEST(mptest::eventually([&] { return rounds.get() >= before + 20 + 15 * attempt; }));
    p.kill();
    p.join();
    BOOST_TEST(p.exitcode().value() == -SIGKILL);
    auto items = l.items();
    if (items.size() == base.size() + 1) {  // killed between the insert and the pop
      BOOST_TEST(items[1200] < 0);
      items.erase(items.begin() + 1200);
    }
    BOOST_TEST((items == base));
    if (l.size() > base.size()) l.pop(1200);  // put the list back for the next round
    BOOST_TEST(l.size() == base.size());
    BOOST_TEST((d.get("a") == d.get("b")));
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(redis_manager_faults, mptest::RedisClean)

// A stopped server: every call fails within the client's Options with errc::disconnected; a
// compare-and-set sent to it is "outcome unknown" (and, after SIGCONT, either happened or not).
BOOST_AUTO_TEST_CASE(a_stopped_server_fails_calls_within_the_timeouts, *boost::unit_test::timeout(60)) {
  rd::ManagerOptions o;
  o.client = quick();
  rd::Manager m(redis.url(), o);
  auto d = m.dict<std::string, long>("d");
  auto l = m.list<long>("l");
  d.set("k", 10);
  l.append(1);
  pause_fully(redis);
  // Retried calls: command_timeout per try, reconnect_for in all.
  auto t0 = rd::Clock::now();
  expect_error([&] { d.get("k"); }, mp::errc::disconnected, {"redis 127.0.0.1:", "HGET"});
  BOOST_TEST(mptest::seconds_since(t0) >= 0.25);
  BOOST_TEST(mptest::seconds_since(t0) < 4.0);
  t0 = rd::Clock::now();
  expect_errc([&] { m.dict<std::string, long>("other"); }, mp::errc::disconnected);
  BOOST_TEST(mptest::seconds_since(t0) < 4.0);
  // Calls sent at most once: the first reply that does not come is "outcome unknown".
  t0 = rd::Clock::now();
  expect_error([&] { l.append(2); }, mp::errc::disconnected, {"outcome unknown"});
  BOOST_TEST(mptest::seconds_since(t0) < 2.0);
  redis.resume();
  // The transform's read succeeds; the server stops before its compare-and-set.
  t0 = rd::Clock::now();
  expect_error(
      [&] {
        d.transform("k", [&](long x) {
          pause_fully(redis);
          return x + 1;
        });
      },
      mp::errc::disconnected, {"compare-and-set", "outcome unknown"});
  BOOST_TEST(mptest::seconds_since(t0) < 2.0);
  redis.resume();
  const long k = d.get("k").value();
  BOOST_TEST((k == 10 || k == 11));
  const std::size_t n = l.size();
  BOOST_TEST((n == 1u || n == 2u));
  BOOST_TEST(d.add("k", 1) == k + 1);  // and the Manager carries on
}

// With AOF: the data survives a restart; proxies made before it carry on, once-only calls
// included (an idle connection the server closed is not mistaken for an unknown outcome).
BOOST_AUTO_TEST_CASE(a_restarted_server_with_aof_keeps_the_data, *boost::unit_test::timeout(60)) {
  mptest::RedisServer srv(mptest::RedisServer::Config{true, ""});
  rd::ManagerOptions o;
  o.client = quick();
  o.client.reconnect_for = 5000ms;
  rd::Manager m(srv.url(), o);
  auto d = m.dict<std::string, long>("d");
  auto l = m.list<std::string>("l");
  auto ns = m.Namespace("ns");
  auto v = m.Value<long>("v", 5);
  d.update({{"a", 1}, {"b", 2}});
  l.extend({"x", "y"});
  ns.set<int>("n", 3);
  v.add(1);
  srv.restart();
  BOOST_TEST(l.pop(0) == "x");  // at most once, on a connection made before the restart
  BOOST_TEST((d.items() == std::vector<std::pair<std::string, long>>{{"a", 1}, {"b", 2}}));
  BOOST_TEST((l.items() == std::vector<std::string>{"y"}));
  BOOST_TEST(ns.get<int>("n").value() == 3);
  BOOST_TEST(v.get() == 6);
  // The kinds and types recorded before the restart are still checked.
  expect_errc([&] { m.list<int>("d"); }, mp::errc::wrong_kind);
  srv.kill();  // SIGKILL: every write was acknowledged after its fsync (appendfsync always)
  srv.start();
  BOOST_TEST(d.add("a", 1) == 2);
  BOOST_TEST(l.size() == 1u);
}

// Processes adding while the server is SIGKILLed and restarted (AOF, appendfsync always):
// nothing acknowledged is lost, and a call that reported "outcome unknown" counted at most once.
BOOST_AUTO_TEST_CASE(adds_across_a_server_crash_lose_nothing_acknowledged,
                     *boost::unit_test::timeout(60)) {
  mptest::RedisServer srv(mptest::RedisServer::Config{true, ""});
  rd::ManagerOptions o;
  o.client = quick();
  o.client.reconnect_for = 8000ms;
  rd::Manager m(srv.url(), o);
  auto d = m.dict<std::string, long>("d");
  auto acked = m.dict<int, long>("acked");      // per process: adds that returned
  auto unknown = m.dict<int, long>("unknown");  // per process: adds that were "outcome unknown"
  auto stop = m.Value<int>("stop", 0);
  constexpr int kProcs = 3;
  auto ps = mptest::start_all(kProcs, [d, acked, unknown, stop](int i) {
    long ok = 0, maybe = 0;
    while (stop.get() == 0) {
      for (int k = 0; k < 20; ++k) {
        try {
          d.add("hits", 1);
          ++ok;
        } catch (const mp::Error& e) {
          if (e.code() != mp::errc::disconnected) {
            std::fprintf(stderr, "child %d: %s\n", i, e.what());
            return 2;
          }
          ++maybe;
        }
      }
    }
    // Recorded with retried calls (set), which a restart cannot turn into an error.
    acked.set(i, ok);
    unknown.set(i, maybe);
    return 0;
  });
  BOOST_TEST(mptest::eventually([&] { return d.get("hits").value_or(0) >= 300; }));
  srv.kill();
  srv.start();
  const long after = d.get("hits").value_or(0);
  BOOST_TEST(mptest::eventually([&] { return d.get("hits").value_or(0) >= after + 300; }));
  stop.set(1);
  mptest::join_all_ok(ps);
  long ok = 0, maybe = 0;
  for (int i = 0; i < kProcs; ++i) {
    ok += acked.get(i).value();
    maybe += unknown.get(i).value();
  }
  const long hits = d.get("hits").value();
  BOOST_TEST(hits >= ok);
  BOOST_TEST(hits <= ok + maybe);
  BOOST_TEST_MESSAGE("acknowledged " << ok << ", unknown " << maybe << ", counted " << hits);
}

// A server that has just restarted answers -LOADING until its data is loaded: calls wait for it
// (within reconnect_for) instead of failing, once-only calls included (the command did not run).
// A stand-in server on a socket answers the first three commands so.
BOOST_AUTO_TEST_CASE(a_loading_server_is_waited_for, *boost::unit_test::timeout(30)) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_REQUIRE(listener >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  BOOST_REQUIRE(::listen(listener, 8) == 0);
  socklen_t len = sizeof a;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  std::atomic<int> commands{0};
  std::thread fake([&] {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {  // one short command per read
      const std::string reply = ++commands <= 3
                                    ? "-LOADING Redis is loading the dataset in memory\r\n"
                                    : ":7\r\n";
      if (::write(fd, reply.data(), reply.size()) != static_cast<ssize_t>(reply.size())) break;
    }
    ::close(fd);
  });
  {
    rd::Client c("redis://127.0.0.1:" + std::to_string(port), quick());
    long long got = -1;
    try {
      got = c.command_once({"INCR", "n"}).integer();
    } catch (const std::exception& e) {
      BOOST_ERROR(e.what());
    }
    BOOST_TEST(got == 7);
    BOOST_TEST(commands.load() == 4);
  }
  ::shutdown(listener, SHUT_RDWR);
  fake.join();
  ::close(listener);
}

BOOST_AUTO_TEST_SUITE_END()
