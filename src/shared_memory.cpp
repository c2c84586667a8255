// SharedMemory: a Segment whose body is the user's bytes (count = body size = the requested size).
#include <multiproc/shared_memory.hpp>

#include <utility>

namespace multiproc {
namespace {

std::string what_of(const Name* name) {
  return std::string(kind_name(Kind::shared_memory)) +
         (name != nullptr ? " '" + name->str() + "'" : " (anonymous)");
}

SegmentLayout layout_for(std::size_t size, const std::string& what) {
  if (size == 0) {
    throw Error(errc::invalid_argument,
                what + ": 'size' must be a positive number different from zero");
  }
  SegmentLayout layout;
  layout.kind = Kind::shared_memory;
  layout.count = size;
  layout.body_size = size;  // Segment refuses absurd sizes with Error(errc::invalid_argument)
  layout.body_alignment = 64;
  return layout;
}

}  // namespace

SharedMemory::SharedMemory(std::size_t size) {
  // The body of a new segment is zero-filled already: no initialiser, so no page is touched.
  attach(Segment::create_anonymous(layout_for(size, what_of(nullptr)), {}));
}

SharedMemory::SharedMemory(create_only_t, const Name& name, std::size_t size) {
  attach(Segment::create(name, layout_for(size, what_of(&name)), {}));
}

SharedMemory::SharedMemory(open_only_t, const Name& name) {
  attach(Segment::open(name, Kind::shared_memory, nullptr));
}

SharedMemory::SharedMemory(open_or_create_t, const Name& name, std::size_t size) {
  attach(Segment::open_or_create(name, layout_for(size, what_of(&name)), {}));
}

SharedMemory::SharedMemory(View, Segment seg)
    : seg_(std::move(seg)),
      data_(static_cast<std::byte*>(seg_.body())),
      size_(seg_.body_size()),
      name_(seg_.name()),
      what_(seg_.describe()),
      id_(seg_.file_id()) {}

void SharedMemory::attach(Segment seg) {
  if (seg.count() == 0) seg.fail(errc::corrupt, "its header claims 0 bytes (never created so)");
  seg.expect_body_size(static_cast<std::size_t>(seg.count()));
  seg_ = std::move(seg);
  data_ = static_cast<std::byte*>(seg_.body());
  size_ = seg_.body_size();
  name_ = seg_.name();
  what_ = seg_.describe();
  id_ = seg_.file_id();
}

void SharedMemory::close() noexcept {
  seg_ = Segment();
  data_ = nullptr;
}

bool SharedMemory::unlink() const {
  if (name_.empty()) return false;
  return Segment::unlink(name_, id_);
}

void SharedMemory::fail_closed(const char* call) const {
  throw Error(errc::bad_state, what_ + ": " + call + " on a closed handle");
}

}  // namespace multiproc
