// Non-template parts of the codecs (codec.hpp).
#include <multiproc/codec.hpp>

#include "os.hpp"

#include <string>

namespace multiproc::detail {

void throw_decode_error(const char* type, std::size_t got, const std::string& why) {
  throw Error(errc::corrupt, "multiproc: cannot decode a " + demangle(type) + " from " +
                                 std::to_string(got) + " bytes: " + why);
}

void throw_decode_error(const char* type, std::size_t got, const char* why) {
  throw_decode_error(type, got, std::string(why));
}

void throw_encode_error(const char* type, const char* why) {
  throw Error(errc::invalid_argument,
              "multiproc: cannot encode a " + demangle(type) + ": " + why);
}

std::string show_byte(std::byte b) {
  return "byte " + std::to_string(static_cast<unsigned>(b));
}

}  // namespace multiproc::detail
