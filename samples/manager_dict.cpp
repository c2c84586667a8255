// Word count with a shared dict, as the seeds teach it with multiprocessing.Manager(): workers take
// lines from a manager Queue and count their words into a manager dict.
//
//   manager_dict [words=200000] [forked workers=3]
//
// The workers are forked children plus one exec'd program (this one again, run as
// `manager_dict --worker <manager>`), which reaches the manager by name. Each word is counted with
// the dict's atomic add, so no lock is needed for counts[w] += n. At the end the top words are
// printed and the counts' total is checked against the number of words generated.
#include "args.hpp"

#include <multiproc/manager.hpp>
#include <multiproc/multiproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

namespace mp = multiproc;

namespace {

constexpr long kWordsPerLine = 500;

// Takes lines until an empty one; counts each line's words locally, then adds them to the dict.
int worker(const mp::QueueProxy<std::string>& lines,
           const mp::DictProxy<std::string, long>& counts) {
  for (std::string line = lines.get(); !line.empty(); line = lines.get()) {
    std::map<std::string, long> local;
    std::size_t at = 0;
    while (at < line.size()) {
      const std::size_t end = std::min(line.find(' ', at), line.size());
      if (end > at) ++local[line.substr(at, end - at)];
      at = end + 1;
    }
    for (const auto& [word, n] : local) counts.add(word, n);  // atomic read-modify-write
  }
  return 0;
}

// A deterministic text: words of a small vocabulary, the first ones far more often (roughly Zipf).
std::vector<std::string> make_lines(long words) {
  static const char* const kVocabulary[] = {
      "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
      "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
      "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has",
      "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "process"};
  constexpr std::size_t kSize = sizeof kVocabulary / sizeof kVocabulary[0];
  std::uint64_t x = 88172645463325252ull;  // xorshift64
  std::vector<std::string> lines;
  std::string line;
  for (long i = 0; i < words; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const double u = static_cast<double>(x >> 11) / 9007199254740992.0;  // [0, 1)
    const auto rank = static_cast<std::size_t>(u * u * u * kSize);       // small ranks often
    if (!line.empty()) line += ' ';
    line += kVocabulary[rank < kSize ? rank : kSize - 1];
    if ((i + 1) % kWordsPerLine == 0) {
      lines.push_back(std::move(line));
      line.clear();
    }
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 3 && std::strcmp(argv[1], "--worker") == 0) {  // the exec'd worker
      mp::Manager m(mp::open_only, argv[2]);
      return worker(m.Queue<std::string>("lines"), m.dict<std::string, long>("counts"));
    }
    const sample::Args args(argc, argv, "usage: manager_dict [words>=0] [forked workers>=1]");
    const long words = args.get(1, 200000, 0);
    const int forked = args.get_int(2, 3, 1);

    mp::Manager m(mp::create_only, "manager_dict." + std::to_string(::getpid()));
    const auto lines = m.Queue<std::string>("lines", 64);
    const auto counts = m.dict<std::string, long>("counts");
    const auto start = std::chrono::steady_clock::now();

    std::vector<mp::Process> workers;
    for (int i = 0; i < forked; ++i) {
      workers.emplace_back([lines, counts] { return worker(lines, counts); });
    }
    workers.emplace_back(mp::Command{"/proc/self/exe", {argv[0], "--worker", m.name()}});
    for (auto& w : workers) w.start();

    const std::vector<std::string> text = make_lines(words);
    for (const std::string& line : text) lines.put(line);
    for (std::size_t i = 0; i < workers.size(); ++i) lines.put(std::string());  // one stop each
    bool ok = true;
    for (auto& w : workers) {
      w.join();
      if (w.exitcode() != 0) {
        std::fprintf(stderr, "manager_dict: a worker failed (exit code %d)\n",
                     w.exitcode().value_or(-1));
        ok = false;
      }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    std::vector<std::pair<std::string, long>> items = counts.items();
    std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    long total = 0;
    for (const auto& [word, n] : items) total += n;
    std::printf("manager_dict: %ld words in %zu lines, counted by %d forked workers and 1 exec'd"
                " one in %.3f s\n",
                words, text.size(), forked, seconds);
    for (std::size_t i = 0; i < items.size() && i < 10; ++i) {
      std::printf("  %-8s %8ld\n", items[i].first.c_str(), items[i].second);
    }
    ok = ok && total == words;
    std::printf("%s (%zu distinct words, %ld counted)\n",
                ok ? "the counts add up to the number of words."
                   : "ERROR: the counts do not add up.",
                items.size(), total);
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "manager_dict: %s\n", e.what());
    return 1;
  }
}
