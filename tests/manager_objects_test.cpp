// The Manager's Queue, Lock, Event and registered types (multiproc/detail/manager_sync.hpp and
// manager_registry.hpp). The first cases drive the server-side Objects in this process with a fake
// Session (what the transport would do); the rest go through a real Manager across forked and
// exec'd processes.
#include "support/support.hpp"

#include <multiproc/manager.hpp>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <unistd.h>

using namespace mptest;
namespace mgr = mp::detail::manager;

namespace {

// A session as the transport would show it to an object.
class FakeSession final : public mgr::Session {
 public:
  explicit FakeSession(std::uint64_t id) : id_(id) {}
  std::uint64_t id() const noexcept override { return id_; }
  pid_t pid() const noexcept override { return 4242; }
  bool gone() const override { return gone_.load(); }
  void end() { gone_ = true; }

 private:
  std::uint64_t id_;
  std::atomic<bool> gone_{false};
};

std::string i64s(std::initializer_list<std::int64_t> values) {
  std::string out;
  for (std::int64_t v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
  return out;
}

std::string put_request(std::int64_t timeout, const std::string& item) {
  return i64s({timeout}) + item;
}

bool is_true(const std::string& reply) { return reply == std::string(1, '\1'); }

struct Counter {
  explicit Counter(long start) : n(start) {}
  long add(long d) { return n += d; }
  long get() const { return n; }
  void reset() noexcept { n = 0; }
  std::string describe(const std::string& prefix, int width) const {
    return prefix + std::to_string(n) + "/" + std::to_string(width);
  }
  long fail(long at) {
    n += 1;  // the half-done work stays: the type's own business
    if (n >= at) throw std::range_error("counter passed " + std::to_string(at));
    return n;
  }
  long n;
};

std::shared_ptr<mgr::TypeTable> counter_table(const std::string& type) {
  auto table = mgr::make_table<Counter, long>(type);
  mp::TypeRegistration<Counter>(table)
      .method("add", &Counter::add)
      .method("get", &Counter::get)
      .method("reset", &Counter::reset)
      .method("describe", &Counter::describe)
      .method("fail", &Counter::fail);
  return table;
}

template <class... A>
std::string create_args(const A&... a) {
  using Args = std::tuple<mgr::wire_t<A>...>;
  return mgr::create_request(typeid(Args).name(), mgr::encode_value(Args{a...}));
}

template <class R, class... A>
std::string call_args(const std::string& method, const A&... a) {
  using Args = std::tuple<mgr::wire_t<A>...>;
  return mgr::call_request(method, typeid(Args).name(), typeid(R).name(),
                           mgr::encode_value(Args{a...}));
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(manager_objects, Clean)

// ---- the Objects alone, in this process ------------------------------------------------------

BOOST_AUTO_TEST_CASE(queue_object_is_fifo_bounded_and_gives_up_for_a_gone_session,
                     *boost::unit_test::timeout(30)) {
  auto q = mgr::make_queue_object("q", mgr::queue_create_args(2, typeid(int).name()));
  FakeSession s(1);
  BOOST_TEST(is_true(q->call(s, mgr::sync_op::queue_put, put_request(0, "a"))));
  BOOST_TEST(is_true(q->call(s, mgr::sync_op::queue_put, put_request(0, ""))));  // empty item
  BOOST_TEST(!is_true(q->call(s, mgr::sync_op::queue_put, put_request(0, "c"))));  // full
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!is_true(q->call(s, mgr::sync_op::queue_put, put_request(50'000, "c"))));
  BOOST_TEST(seconds_since(start) >= 0.049);
  BOOST_TEST(q->call(s, mgr::sync_op::queue_get, i64s({0})) == std::string("\1a"));
  BOOST_TEST(q->call(s, mgr::sync_op::queue_get, i64s({0})) == std::string(1, '\1'));
  BOOST_TEST(q->call(s, mgr::sync_op::queue_get, i64s({20'000})) == std::string(1, '\0'));

  // A get with no deadline for a session that goes away returns (within a slice) with nothing
  // taken, whether it was waiting yet or not; the item put afterwards is there for the next one.
  FakeSession doomed(2);
  std::string reply = "unset";
  std::thread getter([&] { reply = q->call(doomed, mgr::sync_op::queue_get, i64s({-1})); });
  doomed.end();
  getter.join();
  BOOST_TEST(reply == std::string(1, '\0'));
  BOOST_TEST(is_true(q->call(s, mgr::sync_op::queue_put, put_request(0, "kept"))));
  BOOST_TEST(q->call(s, mgr::sync_op::queue_get, i64s({0})) == std::string("\1kept"));

  expect_errc([&] { q->call(s, mgr::sync_op::queue_get, "abc"); }, mp::errc::corrupt);
  expect_errc([&] { q->call(s, 999, ""); }, mp::errc::invalid_argument);
  expect_errc([&] { mgr::make_queue_object("bad", "xyz"); }, mp::errc::corrupt);
}

BOOST_AUTO_TEST_CASE(lock_object_is_owned_and_released_when_its_session_ends,
                     *boost::unit_test::timeout(30)) {
  auto lock = mgr::make_lock_object("l", "");
  FakeSession a(1), b(2);
  BOOST_TEST(is_true(lock->call(a, mgr::sync_op::lock_acquire, i64s({0}))));
  BOOST_TEST(!is_true(lock->call(a, mgr::sync_op::lock_acquire, i64s({0}))));  // try_lock
  expect_errc([&] { lock->call(a, mgr::sync_op::lock_acquire, i64s({-1})); },
              mp::errc::would_deadlock);
  BOOST_TEST(!is_true(lock->call(b, mgr::sync_op::lock_acquire, i64s({20'000}))));
  expect_error([&] { lock->call(b, mgr::sync_op::lock_release, ""); }, mp::errc::not_owner,
               {"Lock 'l'", "does not hold it"});
  BOOST_TEST(is_true(lock->call(b, mgr::sync_op::lock_locked, "")));

  std::string got;
  std::thread waiter([&] { got = lock->call(b, mgr::sync_op::lock_acquire, i64s({-1})); });
  lock->session_ended(a);  // a died holding it
  waiter.join();
  BOOST_TEST(is_true(got));
  lock->call(b, mgr::sync_op::lock_release, "");
  BOOST_TEST(!is_true(lock->call(b, mgr::sync_op::lock_locked, "")));
  expect_error([&] { lock->call(b, mgr::sync_op::lock_release, ""); }, mp::errc::not_owner,
               {"nobody holds it"});
  expect_errc([&] { mgr::make_lock_object("bad", "x"); }, mp::errc::corrupt);
}

BOOST_AUTO_TEST_CASE(event_object_set_then_clear_releases_a_waiter, *boost::unit_test::timeout(30)) {
  auto ev = mgr::make_event_object("e", "");
  FakeSession s(1), w(2);
  BOOST_TEST(!is_true(ev->call(s, mgr::sync_op::event_wait, i64s({10'000}))));
  std::atomic<pid_t> tid{0};
  std::string got;
  std::thread waiter([&] {
    tid = ::gettid();
    got = ev->call(w, mgr::sync_op::event_wait, i64s({-1}));
  });
  BOOST_REQUIRE(eventually([&] { return tid.load() != 0; }));
  BOOST_REQUIRE(wait_until_sleeping(tid.load()));  // waiting in the object (nothing else blocks)
  ev->call(s, mgr::sync_op::event_set, "");
  ev->call(s, mgr::sync_op::event_clear, "");
  waiter.join();
  BOOST_TEST(is_true(got));
  BOOST_TEST(!is_true(ev->call(s, mgr::sync_op::event_is_set, "")));
}

BOOST_AUTO_TEST_CASE(registered_object_calls_by_name_and_checks_what_it_is_sent,
                     *boost::unit_test::timeout(30)) {
  const auto table = counter_table("Counter");
  FakeSession s(1);
  auto obj = mgr::make_registered_object(table, "hits", create_args(10L));
  auto call = [&](const std::string& request) { return obj->call(s, mgr::kCallMethod, request); };

  BOOST_TEST(call(call_args<long>("add", 5L)) == mgr::ok_reply(mgr::encode_value(15L)));
  BOOST_TEST(call(call_args<void>("add", 5L)) == mgr::ok_reply());  // call<void>: result dropped
  BOOST_TEST(call(call_args<std::string>("describe", "n=", 3)) ==
             mgr::ok_reply(mgr::encode_value(std::string("n=20/3"))));
  BOOST_TEST(call(call_args<void>("reset")) == mgr::ok_reply());
  BOOST_TEST(call(call_args<long>("get")) == mgr::ok_reply(mgr::encode_value(0L)));

  expect_error([&] { call(call_args<long>("sub", 1L)); }, mp::errc::not_found,
               {"Counter 'hits'", "no method 'sub'", "add, describe, fail, get, reset"});
  expect_error([&] { call(call_args<long>("add", 1)); }, mp::errc::type_mismatch,
               {"add takes (long), not (int)"});
  expect_error([&] { call(call_args<int>("get")); }, mp::errc::type_mismatch,
               {"get returns long, not int"});
  // Right type names, wrong bytes (a hostile or broken client): corrupt, nothing called.
  expect_error([&] {
    call(mgr::call_request("add", typeid(std::tuple<long>).name(), "l", "abc"));
  }, mp::errc::corrupt, {"the arguments of add"});
  expect_errc([&] { call("garbage"); }, mp::errc::corrupt);

  // A method that throws: the reply carries its type and message; the object carries on.
  const std::string reply = call(call_args<long>("fail", 1L));
  BOOST_REQUIRE(!reply.empty());
  BOOST_TEST(reply[0] == '\1');
  std::string type, message;
  mp::decode_fields(reinterpret_cast<const std::byte*>(reply.data() + 1), reply.size() - 1, type,
                    message);
  BOOST_TEST(type == "std::range_error");
  BOOST_TEST(message == "counter passed 1");
  BOOST_TEST(call(call_args<long>("get")) == mgr::ok_reply(mgr::encode_value(1L)));

  expect_error([&] { mgr::make_registered_object(table, "x", create_args(1)); },
               mp::errc::type_mismatch, {"constructor takes (long), not (int)"});
  expect_errc([&] { mp::TypeRegistration<Counter>(table).method("add", &Counter::add); },
              mp::errc::already_exists);
}

BOOST_AUTO_TEST_SUITE_END()
