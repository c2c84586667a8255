// Arguments that cannot be honoured are Errors naming the object, never silently changed: a
// semaphore count that does not fit its counter, an absurd number of pool workers, and the type
// names in messages (not cut at the segment header's 64 bytes).
#include "support/support.hpp"

#include <multiproc/mutex.hpp>
#include <multiproc/pool.hpp>
#include <multiproc/queue.hpp>
#include <multiproc/semaphore.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/core/demangle.hpp>

#include <climits>
#include <csignal>
#include <dirent.h>
#include <fstream>

using namespace mptest;

namespace {

// The tasks (threads) this real user runs now, which RLIMIT_NPROC counts.
long tasks_of_this_user() {
  long tasks = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (const dirent* d = ::readdir(proc)) {
    if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
    std::ifstream status(std::string("/proc/") + d->d_name + "/status");
    std::string key;
    long uid = -1;
    long threads = 0;
    while (status >> key) {
      if (key == "Uid:") status >> uid;
      if (key == "Threads:") status >> threads;
    }
    if (uid == static_cast<long>(::getuid())) tasks += threads;
  }
  ::closedir(proc);
  return tasks;
}

// Runs f in a plain forked child that cannot fork more than a few processes: RLIMIT_NPROC is
// lowered (and, when run as root, which the limit does not bind, the child first becomes nobody),
// so that a Pool that forgot its bound fails here instead of forking without limit. Returns the
// child's exit status: f's result, or 100 + the signal that ended it.
int run_with_few_processes(int (*f)()) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(30);  // the test's timeout, in the child
    if (::getuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(90);
    const rlim_t few = static_cast<rlim_t>(tasks_of_this_user() + 64);  // a few more, no more
    const rlimit limit{few, few};
    if (::setrlimit(RLIMIT_NPROC, &limit) != 0) ::_exit(91);
    int rc = 92;
    try {
      rc = f();
    } catch (...) {
      rc = 93;
    }
    ::_exit(rc);
  }
  BOOST_REQUIRE(pid > 0);
  int status = 0;
  BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// 0 when make() throws Error(invalid_argument) mentioning `part`; 1 when it constructs; 2 for
// another error.
template <class F>
int invalid_argument_mentioning(F&& make, const char* part) {
  try {
    make();
  } catch (const mp::Error& e) {
    if (e.code() != mp::errc::invalid_argument) return 2;
    return std::string(e.what()).find(part) != std::string::npos ? 0 : 3;
  }
  return 1;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(arguments, Clean)

BOOST_AUTO_TEST_CASE(semaphore_release_refuses_counts_that_do_not_fit, *boost::unit_test::timeout(60)) {
  mp::Semaphore s(0);
  expect_error([&] { s.release(1L << 32); }, mp::errc::invalid_argument,
               {"Semaphore", "4294967296"});
  expect_error([&] { s.release(0); }, mp::errc::invalid_argument, {"Semaphore", "release(0)"});
  expect_error([&] { s.release(-1); }, mp::errc::invalid_argument, {"Semaphore", "release(-1)"});
  expect_error([&] { s.release(ULLONG_MAX); }, mp::errc::invalid_argument,
               {"18446744073709551615"});
  BOOST_TEST(s.value() == 0u);  // nothing was added
  s.release(INT_MAX);           // the largest count fits
  BOOST_TEST(s.value() == static_cast<std::uint32_t>(INT_MAX));
  expect_errc([&] { s.release(1); }, mp::errc::invalid_argument);  // would overflow
  BOOST_TEST(s.value() == static_cast<std::uint32_t>(INT_MAX));
}

BOOST_AUTO_TEST_CASE(bounded_semaphore_release_names_the_semaphore, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("bsem");
  mp::BoundedSemaphore b(mp::create_only, name, 2);
  b.acquire();
  expect_error([&] { b.release(1L << 32); }, mp::errc::invalid_argument,
               {"BoundedSemaphore", name, "4294967296"});
  BOOST_TEST(b.value() == 1u);
  // Across processes: a child's absurd release is refused there, its valid one counts here.
  CHECK_CHILD([b] {
    if (child_expect_errc([&] { b.release(1L << 33); }, mp::errc::invalid_argument) != 0) return 1;
    b.release(1);
    return 0;
  });
  BOOST_TEST(b.value() == 2u);
}

BOOST_AUTO_TEST_CASE(semaphore_initial_values_that_do_not_fit_are_refused, *boost::unit_test::timeout(60)) {
  expect_error([] { mp::Semaphore s(1L << 32); }, mp::errc::invalid_argument,
               {"Semaphore", "4294967296"});
  expect_error([] { mp::BoundedSemaphore s(-1); }, mp::errc::invalid_argument,
               {"BoundedSemaphore", "-1"});
  const std::string name = unique_name("sem");
  expect_error([&] { mp::Semaphore s(mp::create_only, name, 1L << 40); },
               mp::errc::invalid_argument, {"Semaphore", name});
  expect_errc([&] { mp::Semaphore s(mp::open_only, name); }, mp::errc::not_found);  // not created
}

BOOST_AUTO_TEST_CASE(pool_refuses_absurd_worker_counts_before_forking, *boost::unit_test::timeout(90)) {
  BOOST_TEST(run_with_few_processes([] {
               return invalid_argument_mentioning([] { mp::Pool p(100000); }, "100000");
             }) == 0);
  BOOST_TEST(run_with_few_processes([] {
               return invalid_argument_mentioning([] { mp::Pool p(1025); },
                                                  "1025");
             }) == 0);
  // Within the documented bound but beyond what RLIMIT_NPROC lets this user start now.
  BOOST_TEST(run_with_few_processes([] {
               return invalid_argument_mentioning([] { mp::Pool p(100); }, "RLIMIT_NPROC");
             }) == 0);
  // A pool that fits works, under the same limit.
  BOOST_TEST(run_with_few_processes([] {
               mp::Pool p(2);
               return p.apply([](int x) { return x * 2; }, 21) == 42 ? 0 : 1;
             }) == 0);
}

BOOST_AUTO_TEST_CASE(messages_name_the_whole_type, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("q");
  mp::Queue<std::string> q(mp::create_only, name, 4);
  const std::string full = boost::core::demangle(typeid(std::string).name());
  BOOST_REQUIRE(full.size() > 60);  // longer than the segment header keeps
  // Described from this process's own type: the whole name.
  expect_error([&] { mp::Queue<std::string> again(mp::create_only, name, 4); },
               mp::errc::already_exists, {"Queue<" + full + ">"});
  // Described from the header of another kind: visibly cut.
  expect_error([&] { mp::Mutex m(mp::open_only, name); }, mp::errc::wrong_kind,
               {full.substr(0, 40), "\u2026>"});
}

BOOST_AUTO_TEST_SUITE_END()
