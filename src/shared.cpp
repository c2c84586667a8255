// Non-template parts of SharedArray and AnyValue/AnyArray.
#include <multiproc/any_value.hpp>
#include <multiproc/detail/segment_header.hpp>
#include <multiproc/shared_array.hpp>

namespace multiproc::detail {

void throw_index(const Segment& seg, std::size_t i, std::size_t n) {
  seg.fail(errc::invalid_argument,
           "index " + std::to_string(i) + " out of range (size " + std::to_string(n) + ")");
}

char stored_typecode(const Name& name, Kind kind) {
  const Segment seg = Segment::open(name, kind, nullptr);
  const char code = seg.header().type_code;
  if (code == 0) {
    seg.fail(errc::type_mismatch,
             "its element type has no type code, so it cannot be opened as an AnyValue/AnyArray");
  }
  return code;
}

}  // namespace multiproc::detail
