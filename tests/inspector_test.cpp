// The inspector (issue 13, item 7): tools/multiproc-ls run as a subprocess on objects this test
// made — its table, its JSON, --remove-stale (a dead creator's unopened name goes; a live one and
// one still open stay), a lock word naming a dead thread without the owner-died bit, corrupt and
// foreign files named like ours — and multiproc::inspect, which it is built on.
#include "support/support.hpp"

#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/detail/segment_header.hpp>
#include <multiproc/inspect.hpp>

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <linux/futex.h>
#include <poll.h>
#include <spawn.h>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace mptest;

namespace {

#ifdef MULTIPROC_LS_PATH
const char* const kTool = MULTIPROC_LS_PATH;
#else
const char* const kTool = "";
#endif

struct ToolRun {
  int status = -1;  // wait status
  std::string out;
};

// Runs the tool with `args`, collecting stdout (stderr passes through), with a 30 s deadline.
ToolRun run_tool(const std::vector<std::string>& args) {
  ToolRun r;
  int out[2];
  BOOST_REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<std::string> argv_s{kTool};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, kTool, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  BOOST_REQUIRE_MESSAGE(rc == 0, "cannot run " << kTool << ": " << std::strerror(rc));
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  char buf[4096];
  for (;;) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n > 0) {
        r.out.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      BOOST_ERROR("multiproc-ls did not finish in 30 s");
      break;
    }
  }
  ::close(out[0]);
  while (::waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
  }
  return r;
}

bool exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

// The JSON object of the line that names `name` (the tool prints one object per line).
std::string json_object(const std::string& out, const std::string& name) {
  const std::string key = "{\"name\":\"" + name + "\"";
  const auto at = out.find(key);
  if (at == std::string::npos) return "";
  return out.substr(at, out.find('\n', at) - at);
}

// The raw text of field `key` in a flat JSON object ("" when absent): 3, "Queue", true, [1,2].
std::string field(const std::string& obj, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const auto at = obj.find(k);
  if (at == std::string::npos) return "";
  auto begin = at + k.size();
  auto end = begin;
  if (obj[begin] == '"') {
    end = obj.find('"', begin + 1) + 1;
  } else if (obj[begin] == '[') {
    end = obj.find(']', begin) + 1;
  } else {
    end = obj.find_first_of(",}", begin);
  }
  return obj.substr(begin, end - begin);
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

bool file_exists(const std::string& name) {
  struct stat st {};
  return ::stat(("/dev/shm/mp." + name).c_str(), &st) == 0;
}

std::string file_bytes(const std::string& name) {
  std::ifstream f("/dev/shm/mp." + name, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// A file named like ours with arbitrary content; removed by its destructor.
struct RawFile {
  std::string name;
  RawFile(std::string n, const std::string& bytes) : name(std::move(n)) {
    std::ofstream f("/dev/shm/mp." + name, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ~RawFile() { ::unlink(("/dev/shm/mp." + name).c_str()); }
};

// A child that creates `name` (a SharedValue<int>) and is SIGKILLed: its name stays behind.
// Returns the dead creator's pid.
pid_t create_and_die(const std::string& name) {
  int ready[2];
  BOOST_REQUIRE(::pipe(ready) == 0);
  const pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(ready[0]);
    mp::SharedValue<int> v(mp::create_only, name, 7);
    (void)!::write(ready[1], "r", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char c;
  BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

boost::test_tools::assertion_result tool_built(boost::unit_test::test_unit_id) {
  return kTool[0] != '\0';
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(inspector, Clean, *boost::unit_test::precondition(tool_built))

BOOST_AUTO_TEST_CASE(table_and_json_show_kind_depth_lock_creator_and_attached,
                     *boost::unit_test::timeout(60)) {
  const std::string qname = unique_name("jobs");
  const std::string vname = unique_name("hits");
  const std::string mname = unique_name("lock");
  mp::Queue<int> q(mp::create_only, qname, 16);
  for (int i = 0; i < 3; ++i) q.put(i);
  mp::SharedValue<long> v(mp::create_only, vname, 5);
  mp::Mutex m(mp::create_only, mname);
  m.lock();
  const std::string me = std::to_string(::getpid());

  const ToolRun json = run_tool({"--json", qname, vname, mname});
  BOOST_TEST(exited_ok(json.status));
  const std::string qo = json_object(json.out, qname);
  BOOST_TEST_REQUIRE(!qo.empty(), json.out);
  BOOST_TEST(field(qo, "status") == quoted("ok"));
  BOOST_TEST(field(qo, "kind") == quoted("Queue"));
  BOOST_TEST(field(qo, "type") == quoted("Queue<int>"));
  BOOST_TEST(field(qo, "count") == "16");
  BOOST_TEST(field(qo, "depth") == "3");
  BOOST_TEST(field(qo, "creator_pid") == me);
  BOOST_TEST(field(qo, "creator") == quoted("alive"));
  BOOST_TEST(field(qo, "attached") == "[" + me + "]");
  BOOST_TEST(field(qo, "generation") == "1");
  BOOST_TEST(field(qo, "stale") == "false");
  const std::string vo = json_object(json.out, vname);
  BOOST_TEST(field(vo, "type") == quoted("SharedValue<long>"));
  BOOST_TEST(field(vo, "holder_tid") == "0");
  const std::string mo = json_object(json.out, mname);
  BOOST_TEST(field(mo, "holder_pid") == me);
  BOOST_TEST(field(mo, "holder") == quoted("alive"));
  BOOST_TEST(field(mo, "owner_died") == "false");

  const ToolRun table = run_tool({qname, vname, mname});
  BOOST_TEST(exited_ok(table.status));
  BOOST_TEST(table.out.find("NAME") != std::string::npos);
  std::istringstream lines(table.out);
  std::string line;
  int seen = 0;
  while (std::getline(lines, line)) {
    if (line.find(qname) == 0) {
      ++seen;
      BOOST_TEST(line.find("Queue<int>") != std::string::npos, line);
      BOOST_TEST(line.find(" 3 queued ") != std::string::npos, line);
      BOOST_TEST(line.find(me + " ") != std::string::npos, line);
    } else if (line.find(mname) == 0) {
      ++seen;
      BOOST_TEST(line.find("held by " + me) != std::string::npos, line);
    } else if (line.find(vname) == 0) {
      ++seen;
      BOOST_TEST(line.find("free") != std::string::npos, line);
    }
  }
  BOOST_TEST(seen == 3);
  m.unlock();
}

BOOST_AUTO_TEST_CASE(shows_owner_died_and_a_dead_holder_without_the_bit,
                     *boost::unit_test::timeout(60)) {
  const std::string died = unique_name("died");
  const std::string unmarked = unique_name("unmarked");
  mp::Mutex a(mp::create_only, died);
  mp::Mutex b(mp::create_only, unmarked);
  // A holder SIGKILLed while holding `a`: the kernel marks the word owner-died.
  int ready[2];
  BOOST_REQUIRE(::pipe(ready) == 0);
  const pid_t holder = ::fork();
  BOOST_REQUIRE(holder >= 0);
  if (holder == 0) {
    a.lock();
    (void)!::write(ready[1], "r", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char c;
  BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  ::kill(holder, SIGKILL);
  int status = 0;
  ::waitpid(holder, &status, 0);
  // `b`'s word names a thread that is gone, without the bit (what a lost robust list leaves).
  auto* state = static_cast<mp::detail::MutexState*>(b.segment().body());
  const pid_t gone = dead_pid();
  state->word.store(static_cast<std::uint32_t>(gone));

  const ToolRun json = run_tool({"--json", died, unmarked});
  BOOST_TEST(exited_ok(json.status));
  const std::string ao = json_object(json.out, died);
  BOOST_TEST(field(ao, "owner_died") == "true", ao);
  BOOST_TEST(field(ao, "dead_holder_unmarked") == "false");
  const std::string bo = json_object(json.out, unmarked);
  BOOST_TEST(field(bo, "holder_tid") == std::to_string(gone), bo);
  BOOST_TEST(field(bo, "holder") == quoted("dead"));
  BOOST_TEST(field(bo, "owner_died") == "false");
  BOOST_TEST(field(bo, "dead_holder_unmarked") == "true");
  const ToolRun table = run_tool({died, unmarked});
  BOOST_TEST(table.out.find("OWNER-DIED") != std::string::npos, table.out);
  BOOST_TEST(table.out.find("DEAD-HOLDER tid " + std::to_string(gone)) != std::string::npos);

  state->word.store(0);  // put b back as it was
  BOOST_TEST(a.try_lock_for(10s));  // and a is recovered as usual
  BOOST_TEST(a.previous_owner_died());
  a.unlock();
}

BOOST_AUTO_TEST_CASE(remove_stale_removes_only_a_dead_creators_unopened_name,
                     *boost::unit_test::timeout(60)) {
  const std::string dead = unique_name("dead");
  const std::string live = unique_name("live");
  const std::string open = unique_name("open");
  const pid_t gone = create_and_die(dead);
  mp::SharedValue<int> mine(mp::create_only, live, 1);
  create_and_die(open);
  std::optional<mp::SharedValue<int>> still(std::in_place, mp::open_only, open);
  BOOST_TEST(file_exists(dead));

  // What the library says before the tool acts.
  const auto info = mp::inspect(dead);
  BOOST_TEST_REQUIRE(info.has_value());
  BOOST_TEST(info->creator_pid == gone);
  BOOST_TEST((info->creator == mp::ProcessState::dead));
  BOOST_TEST(info->attached.empty());
  BOOST_TEST(info->stale());
  BOOST_TEST(!mp::inspect(open)->stale());
  BOOST_TEST(!mp::inspect(live)->stale());

  const ToolRun r = run_tool({"--json", "--remove-stale", dead, live, open});
  BOOST_TEST(exited_ok(r.status));
  BOOST_TEST(r.out.find("\"removed\":[\"" + dead + "\"]") != std::string::npos, r.out);
  BOOST_TEST(!file_exists(dead));
  BOOST_TEST(file_exists(live));
  BOOST_TEST(file_exists(open));
  BOOST_TEST(still->load() == 7);

  // Once closed, the dead creator's object is stale too.
  still.reset();
  const ToolRun again = run_tool({"--remove-stale", open, live});
  BOOST_TEST(exited_ok(again.status));
  BOOST_TEST(again.out.find("removed " + open) != std::string::npos, again.out);
  BOOST_TEST(!file_exists(open));
  BOOST_TEST(file_exists(live));
}

BOOST_AUTO_TEST_CASE(corrupt_and_foreign_files_are_reported_never_a_crash,
                     *boost::unit_test::timeout(60)) {
  // A good header with a broken checksum, one of another layout version, one truncated to its
  // header, garbage, an empty file.
  const std::string good = unique_name("good");
  std::string header;
  {
    mp::SharedValue<int> v(mp::create_only, good, 1);
    header = file_bytes(good);
  }
  BOOST_REQUIRE(header.size() > mp::detail::kPrefixSize);
  std::string bad_sum = header;
  bad_sum[offsetof(mp::detail::SegmentHeader, count)] ^= 1;
  std::string old_version = header;
  old_version[offsetof(mp::detail::SegmentHeader, layout_version)] = 4;
  RawFile f1(unique_name("badsum"), bad_sum);
  RawFile f2(unique_name("v4"), old_version);
  RawFile f3(unique_name("short"), header.substr(0, mp::detail::kHeaderSize));
  RawFile f4(unique_name("garbage"), std::string(5000, '\xa5'));
  RawFile f5(unique_name("empty"), "");

  const ToolRun json = run_tool({"--json", f1.name, f2.name, f3.name, f4.name, f5.name});
  BOOST_TEST(exited_ok(json.status));
  BOOST_TEST(field(json_object(json.out, f1.name), "status") == quoted("corrupt"), json.out);
  BOOST_TEST(field(json_object(json.out, f2.name), "status") == quoted("foreign"));
  BOOST_TEST(field(json_object(json.out, f3.name), "status") == quoted("corrupt"));
  BOOST_TEST(field(json_object(json.out, f4.name), "status") == quoted("foreign"));
  BOOST_TEST(field(json_object(json.out, f5.name), "status") == quoted("foreign"));
  // A name with a newline and a byte that is not UTF-8: escaped, and the JSON stays one line each.
  const std::string odd = unique_name("odd");
  RawFile f6(odd + "\n\xff", header);
  const ToolRun escaped = run_tool({"--json", f6.name});
  BOOST_TEST(exited_ok(escaped.status));
  BOOST_TEST(field(json_object(escaped.out, odd + "\\u000a\\u00ff"), "status") == quoted("ok"),
             escaped.out);
  // The whole listing (whatever else /dev/shm holds now) and --remove-stale on the bad files.
  BOOST_TEST(exited_ok(run_tool({}).status));
  BOOST_TEST(exited_ok(run_tool({"--json"}).status));
  const ToolRun removal = run_tool({"--remove-stale", f1.name, f2.name, f3.name, f4.name, f5.name});
  BOOST_TEST(exited_ok(removal.status));
  BOOST_TEST(removal.out.find("removed") == std::string::npos, removal.out);
  for (const auto* f : {&f1, &f2, &f3, &f4, &f5}) BOOST_TEST(file_exists(f->name));
}

BOOST_AUTO_TEST_CASE(an_object_whose_creator_died_initialising_is_shown_and_removed,
                     *boost::unit_test::timeout(60)) {
  // What a creator killed before publishing would leave if its file had a name (multiproc links
  // names only once complete, so only a foreign writer or an older build makes this).
  const std::string good = unique_name("proto");
  std::string bytes;
  {
    mp::SharedValue<int> v(mp::create_only, good, 1);
    bytes = file_bytes(good);
  }
  const pid_t gone = dead_pid();
  std::memset(&bytes[0], 0, 4);  // state: initialising
  // Nobody attached (the copy has this process in its table; a real one would have nobody).
  std::memset(&bytes[mp::detail::kAttachOffset], 0, sizeof(mp::detail::AttachTable));
  std::memcpy(&bytes[offsetof(mp::detail::SegmentHeader, creator_pid)], &gone, sizeof gone);
  RawFile f(unique_name("half"), bytes);
  const ToolRun json = run_tool({"--json", f.name});
  BOOST_TEST(exited_ok(json.status));
  const std::string o = json_object(json.out, f.name);
  BOOST_TEST(field(o, "status") == quoted("initializing"), json.out);
  BOOST_TEST(field(o, "creator_pid") == std::to_string(gone));
  BOOST_TEST(field(o, "stale") == "true");
  const ToolRun removal = run_tool({"--remove-stale", f.name});
  BOOST_TEST(removal.out.find("removed " + f.name) != std::string::npos, removal.out);
  BOOST_TEST(!file_exists(f.name));
}

BOOST_AUTO_TEST_CASE(listing_changes_nothing_in_the_objects, *boost::unit_test::timeout(60)) {
  const std::string qname = unique_name("untouched");
  mp::Queue<std::string> q(mp::create_only, qname, 8);
  q.put("hello");
  mp::Mutex m(mp::create_only, unique_name("untouched.lock"));
  const std::string before = file_bytes(qname);
  const ToolRun r = run_tool({"--json", qname});
  BOOST_TEST(exited_ok(r.status));
  BOOST_TEST(field(json_object(r.out, qname), "depth") == "1");
  BOOST_TEST((file_bytes(qname) == before));
  BOOST_TEST(*q.try_get() == "hello");
}

BOOST_AUTO_TEST_SUITE_END()
