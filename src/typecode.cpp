// Python's type-code table on this platform.
#include <multiproc/typecode.hpp>
#include <multiproc/error.hpp>

#include <cstdio>
#include <iterator>

namespace multiproc {
namespace {

using C = TypeInfo::Category;
#define MULTIPROC_ROW(type, ctypes, category) \
  TypeInfo { typecode<type>::value, #type, ctypes, sizeof(type), alignof(type), category }

const TypeInfo kTable[] = {
    MULTIPROC_ROW(signed char, "c_byte", C::signed_integer),
    MULTIPROC_ROW(unsigned char, "c_ubyte", C::unsigned_integer),
    MULTIPROC_ROW(short, "c_short", C::signed_integer),
    MULTIPROC_ROW(unsigned short, "c_ushort", C::unsigned_integer),
    MULTIPROC_ROW(int, "c_int", C::signed_integer),
    MULTIPROC_ROW(unsigned int, "c_uint", C::unsigned_integer),
    MULTIPROC_ROW(long, "c_long", C::signed_integer),
    MULTIPROC_ROW(unsigned long, "c_ulong", C::unsigned_integer),
    MULTIPROC_ROW(long long, "c_longlong", C::signed_integer),
    MULTIPROC_ROW(unsigned long long, "c_ulonglong", C::unsigned_integer),
    MULTIPROC_ROW(float, "c_float", C::floating_point),
    MULTIPROC_ROW(double, "c_double", C::floating_point),
    MULTIPROC_ROW(char, "c_char", C::character),
    MULTIPROC_ROW(wchar_t, "c_wchar", C::character),
    MULTIPROC_ROW(bool, "c_bool", C::boolean),
};
#undef MULTIPROC_ROW

constexpr const char kCodes[] = "bBhHiIlLqQfdcu?";
static_assert(sizeof(kCodes) - 1 == std::size(kTable), "one code per table row");

}  // namespace

const TypeInfo& type_info(char code) {
  for (const TypeInfo& row : kTable) {
    if (row.code == code) return row;
  }
  char shown[16];
  if (code >= 0x20 && code < 0x7f) {
    std::snprintf(shown, sizeof shown, "'%c'", code);
  } else {
    std::snprintf(shown, sizeof shown, "'\\x%02x'", static_cast<unsigned char>(code));
  }
  throw Error(errc::invalid_argument, std::string("multiproc: unknown type code ") + shown +
                                          "; valid codes are " + kCodes);
}

namespace detail {
void throw_conversion(const std::string& message) { throw Error(errc::invalid_argument, message); }

std::string describe_arithmetic(char code, bool floating, bool is_signed, bool long_double,
                                std::size_t size) {
  if (code != 0) return std::string("'") + code + "' (" + type_info(code).c_type + ")";
  if (long_double) return "long double";
  if (floating) return "a floating-point type";
  return (is_signed ? "a signed integer type of " : "an unsigned integer type of ") +
         std::to_string(size) + " bytes";
}
}  // namespace detail

const TypeInfo* type_table_begin() noexcept { return std::begin(kTable); }
const TypeInfo* type_table_end() noexcept { return std::end(kTable); }
const char* valid_typecodes() noexcept { return kCodes; }

}  // namespace multiproc
