// Non-template parts of the codecs (codec.hpp).
#include <multiproc/codec.hpp>

#include "os.hpp"

#include <string>

namespace multiproc::detail {

void throw_decode_error(const char* type, std::size_t got, const char* why) {
  throw Error(errc::corrupt, "multiproc: cannot decode a " + demangle(type) + " from " +
                                 std::to_string(got) + " bytes: " + why);
}

}  // namespace multiproc::detail
