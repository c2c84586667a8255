// Writes tests/fuzz/corpus/segment_header/*.bin: the 256-byte header of one object of every kind
// (valid seeds for the segment-header fuzz target). Not built by CMake; run by hand after a layout change:
//   g++ -std=c++17 -Iinclude -Ibuild/include tests/fuzz/corpus/make_segment_header_seeds.cpp build/libmultiproc.a -lpthread -o /tmp/seedgen && /tmp/seedgen tests/fuzz/corpus/segment_header
#include <multiproc/multiproc.hpp>
#include <multiproc/detail/segment_header.hpp>
#include <cstdio>
#include <string>
namespace mp = multiproc;
static std::string dir;
static void put(const char* file, const mp::Segment& seg) {
  std::FILE* f = std::fopen((dir + "/" + file + ".bin").c_str(), "wb");
  std::fwrite(&seg.header(), 1, sizeof(mp::detail::SegmentHeader), f);
  std::fclose(f);
}
int main(int argc, char** argv) {
  dir = argc > 1 ? argv[1] : ".";
  put("shared_value_int", mp::SharedValue<int>(5).segment());
  put("raw_value_double", mp::RawValue<double>(1.5).segment());
  put("shared_array_int", mp::SharedArray<int>(10).segment());
  put("raw_array_char", mp::RawArray<char>(100).segment());
  put("mutex", mp::Mutex().segment());
  put("recursive_mutex", mp::RecursiveMutex().segment());
  put("semaphore", mp::Semaphore(2).segment());
  put("bounded_semaphore", mp::BoundedSemaphore(3).segment());
  put("condition", mp::Condition().segment());
  put("event", mp::Event().segment());
  put("barrier", mp::Barrier(3).segment());
  put("queue_int", mp::Queue<int>(16).segment());
  put("queue_string", mp::Queue<std::string>(8).segment());
  put("joinable_queue", mp::JoinableQueue<int>(4).segment());
  put("simple_queue", mp::SimpleQueue<long>().segment());
  put("pipe_connection", mp::Pipe().first.segment());
  put("shared_memory", mp::SharedMemory(1000).segment());
  put("shareable_list_double", mp::ShareableList<double>(7).segment());
  put("shareable_list_string", mp::ShareableList<std::string>(3, 20).segment());
  {
    mp::SharedValue<int> named(mp::create_only, "seedgen.named", 1);
    put("shared_value_named", named.segment());
    mp::SharedMemory p(mp::create_only, mp::persistent("seedgen.persistent"), 4096);
    put("shared_memory_persistent", p.segment());
  }
  mp::remove("seedgen.persistent");
  return 0;
}
