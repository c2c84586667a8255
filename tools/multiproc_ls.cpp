// multiproc-ls — lists the multiproc objects in /dev/shm, like ipcs; --remove-stale removes the
// names whose creator is dead and that no process has open, like ipcrm.
//
//   multiproc-ls [--json] [--remove-stale] [NAME...]
//
// NAME: only these objects (as given to multiproc, prefix included; "mp." is added). Reads
// every file read-only and never maps one (multiproc/inspect.hpp): a corrupt or foreign file is
// listed with the reason, never a crash. Exit status: 0, 1 on a usage or system error.
#include <multiproc/inspect.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <string>
#include <vector>

namespace mp = multiproc;

namespace {

void usage(std::FILE* out) {
  std::fputs(
      "usage: multiproc-ls [--json] [--remove-stale] [NAME...]\n"
      "Lists the multiproc objects in /dev/shm (files mp.*): name, type, count (elements or\n"
      "capacity), state (queue depth, semaphore units, event flag), lock holder (OWNER-DIED:\n"
      "its holder died; DEAD-HOLDER: the word names a dead thread without the owner-died bit),\n"
      "creator and whether it runs, processes attached.\n"
      "  --json          one JSON document: {\"objects\": [...]} (with --remove-stale,\n"
      "                  also \"removed\": [...])\n"
      "  --remove-stale  remove the names whose creator is dead, that are not persistent and\n"
      "                  that no live process has open; then list what is left\n"
      "  NAME            only these names (the part after mp., prefix included)\n",
      out);
}

// Length of the valid UTF-8 sequence at s[i] (0: not one). Names are bytes; JSON wants UTF-8.
std::size_t utf8_length(const std::string& s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return n;
}

// A JSON string: control characters escaped; bytes that are not UTF-8 become U+0080..U+00FF
// (\u00XX), so the document stays valid whatever a name holds.
std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (const std::size_t n = utf8_length(s, i); n != 0) {
      out.append(s, i, n);
      i += n - 1;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    }
  }
  return out + "\"";
}

std::string printable(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string pids(const std::vector<int>& v) {
  std::string s;
  for (int p : v) s += (s.empty() ? "" : ",") + std::to_string(p);
  return s;
}

// The LOCK column: free, held by a pid, or what is wrong with it.
std::string lock_text(const mp::ObjectInfo& o) {
  if (!o.external_lock.empty()) return "-> " + o.external_lock;
  if (!o.lock) return "-";
  const mp::LockInfo& l = *o.lock;
  std::string s;
  if (l.owner_died) {
    s = "OWNER-DIED";
  } else if (l.holder_tid == 0) {
    s = "free";
  } else if (l.dead_holder_unmarked) {
    s = "DEAD-HOLDER tid " + std::to_string(l.holder_tid) + " (no owner-died bit)";
  } else {
    s = "held by " + (l.holder_pid != 0 ? std::to_string(l.holder_pid) : std::string("?"));
    if (l.holder_pid != l.holder_tid) s += " tid " + std::to_string(l.holder_tid);
    if (l.holder == mp::ProcessState::unknown) s += " (?)";
  }
  if (l.inconsistent) s += ", inconsistent";
  return s;
}

std::string creator_text(const mp::ObjectInfo& o) {
  if (o.creator_pid == 0) return "-";
  std::string s = std::to_string(o.creator_pid);
  if (!o.creator_program.empty()) s += " " + printable(o.creator_program);
  return s + " " + mp::to_string(o.creator);
}

// The type for the table: libstdc++'s spelling of std::string (whole, or as the header keeps
// it, cut) shortened. The JSON keeps the header's text.
std::string short_type(const mp::ObjectInfo& o) {
  static const std::string kFull =
      "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >";
  std::string element = o.element.name;
  for (std::size_t at; (at = element.find(kFull)) != std::string::npos;) {
    element.replace(at, kFull.size(), "std::string");
  }
  const std::string cut = kFull.substr(0, 60) + "\xe2\x80\xa6";
  if (element == cut) element = "std::string";
  if (o.element.size == 0) return o.kind_name;
  return o.kind_name + "<" + element + ">";
}

void print_table(const std::vector<mp::ObjectInfo>& objects) {
  using Row = std::vector<std::string>;
  std::vector<Row> rows{{"NAME", "TYPE", "COUNT", "STATE", "LOCK", "CREATOR", "ATTACHED"}};
  std::vector<std::string> notes{""};
  for (const auto& o : objects) {
    const std::string name = printable(o.name);
    if (o.status != mp::ObjectInfo::Status::ok) {
      std::string what = std::string(mp::to_string(o.status)) + ": " + printable(o.problem);
      if (o.status == mp::ObjectInfo::Status::initializing) what += ", creator " + creator_text(o);
      rows.push_back({name, "(" + what + ")"});
      notes.emplace_back();
      continue;
    }
    std::string type = short_type(o);
    if (o.persistent) type += " [persistent]";
    // Queues: messages waiting; semaphores: units; events: the flag.
    std::string depth = "-";
    if (o.depth) {
      depth = std::to_string(*o.depth) + " queued";
      if (o.closed && *o.closed) depth += ", closed";
    } else if (o.value && o.kind == mp::Kind::event) {
      depth = *o.value != 0 ? "set" : "clear";
    } else if (o.value) {
      depth = std::to_string(*o.value) + " units";
    }
    std::string attached = std::to_string(o.attached.size());
    if (!o.attached.empty()) attached += " (" + pids(o.attached) + ")";
    if (o.attach_overflow != 0) attached += " +" + std::to_string(o.attach_overflow) + " untracked";
    rows.push_back({name, type, std::to_string(o.count), depth, lock_text(o), creator_text(o),
                    attached});
    notes.push_back(o.stale() ? "  [stale]" : "");
  }
  std::vector<std::size_t> width(7, 0);
  for (const auto& r : rows) {
    if (r.size() != 7) continue;  // a problem line spans the row
    for (std::size_t i = 0; i < 7; ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const Row& r = rows[k];
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - std::min(width[i], r[i].size()) + 2, ' ');
    }
    std::printf("%s%s\n", line.c_str(), notes[k].c_str());
  }
}

void print_json_object(const mp::ObjectInfo& o) {
  std::printf("{\"name\":%s,\"file\":%s,\"status\":\"%s\"", json_string(o.name).c_str(),
              json_string(o.file).c_str(), mp::to_string(o.status));
  if (!o.problem.empty()) std::printf(",\"problem\":%s", json_string(o.problem).c_str());
  std::printf(",\"uid\":%u,\"mode\":\"%04o\",\"file_size\":%" PRIu64, o.uid, o.mode, o.file_size);
  if (o.creator_pid != 0) {
    std::printf(",\"creator_pid\":%d,\"creator\":\"%s\",\"creator_program\":%s", o.creator_pid,
                mp::to_string(o.creator), json_string(o.creator_program).c_str());
  }
  if (o.status == mp::ObjectInfo::Status::ok) {
    std::printf(",\"kind\":%s,\"type\":%s,\"element\":%s,\"element_size\":%u,\"count\":%" PRIu64
                ",\"body_size\":%" PRIu64 ",\"persistent\":%s,\"generation\":%" PRIu64
                ",\"created_ns\":%" PRIu64,
                json_string(o.kind_name).c_str(), json_string(o.type).c_str(),
                json_string(o.element.name).c_str(), o.element.size, o.count, o.body_size,
                o.persistent ? "true" : "false", o.generation, o.created_ns);
    std::printf(",\"attached\":[%s],\"attach_count\":%zu,\"attach_overflow\":%" PRIu64,
                pids(o.attached).c_str(), o.attached.size(), o.attach_overflow);
    if (o.depth) std::printf(",\"depth\":%" PRIu64, *o.depth);
    if (o.closed) std::printf(",\"closed\":%s", *o.closed ? "true" : "false");
    if (o.value) std::printf(",\"value\":%" PRId64, *o.value);
    if (!o.external_lock.empty()) {
      std::printf(",\"external_lock\":%s", json_string(o.external_lock).c_str());
    }
    if (o.lock) {
      const mp::LockInfo& l = *o.lock;
      std::printf(",\"lock\":{\"word\":%u,\"holder_tid\":%d,\"holder_pid\":%d,\"holder\":\"%s\","
                  "\"owner_died\":%s,\"waiters\":%s,\"dead_holder_unmarked\":%s,"
                  "\"inconsistent\":%s,\"recoveries\":%u}",
                  l.word, l.holder_tid, l.holder_pid, mp::to_string(l.holder),
                  l.owner_died ? "true" : "false", l.waiters ? "true" : "false",
                  l.dead_holder_unmarked ? "true" : "false", l.inconsistent ? "true" : "false",
                  l.recoveries);
    }
  }
  std::printf(",\"stale\":%s}", o.stale() ? "true" : "false");
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false, remove = false;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--remove-stale") {
      remove = true;
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "multiproc-ls: unknown option %s\n", a.c_str());
      usage(stderr);
      return 1;
    } else {
      names.push_back(a);
    }
  }
  try {
    std::vector<mp::ObjectInfo> objects;
    if (names.empty()) {
      objects = mp::list_objects();
    } else {
      for (const auto& n : names) {
        try {
          objects.push_back(mp::inspect_file("mp." + n));
        } catch (const mp::Error& e) {
          std::fprintf(stderr, "multiproc-ls: %s\n", e.what());
        }
      }
    }
    std::vector<std::string> removed;
    if (remove) {
      std::vector<mp::ObjectInfo> kept;
      for (auto& o : objects) {
        bool gone = false;
        if (o.stale()) {
          try {
            gone = mp::remove_stale(o);
          } catch (const mp::Error& e) {
            std::fprintf(stderr, "multiproc-ls: %s\n", e.what());
          }
        }
        if (gone) {
          removed.push_back(o.name);
          if (!json) std::printf("removed %s\n", printable(o.name).c_str());
        } else {
          kept.push_back(std::move(o));
        }
      }
      objects = std::move(kept);
    }
    if (json) {
      std::printf("{\"objects\":[");
      for (std::size_t i = 0; i < objects.size(); ++i) {
        if (i != 0) std::printf(",\n");
        print_json_object(objects[i]);
      }
      std::printf("]");
      if (remove) {
        std::printf(",\"removed\":[");
        for (std::size_t i = 0; i < removed.size(); ++i) {
          std::printf("%s%s", i != 0 ? "," : "", json_string(removed[i]).c_str());
        }
        std::printf("]");
      }
      std::printf("}\n");
    } else {
      print_table(objects);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "multiproc-ls: %s\n", e.what());
    return 1;
  }
}
