// multiproc/typecode.hpp — Python's type-code table for shared values and arrays.
//
// Models the type codes of Python's array module and multiprocessing.Value/Array:
//
//   code  C++ type            ctypes        |  code  C++ type             ctypes
//   'b'   signed char         c_byte        |  'q'   long long            c_longlong
//   'B'   unsigned char       c_ubyte       |  'Q'   unsigned long long   c_ulonglong
//   'h'   short               c_short       |  'f'   float                c_float
//   'H'   unsigned short      c_ushort      |  'd'   double               c_double
//   'i'   int                 c_int         |  'c'   char                 c_char
//   'I'   unsigned int        c_uint        |  'u'   wchar_t              c_wchar
//   'l'   long                c_long        |  '?'   bool                 c_bool
//   'L'   unsigned long       c_ulong       |
//
// typecode_v<T> is the code of T at compile time; type_info(code) describes a code chosen at run
// time (size and alignment as on this platform). The code is stored in every shared value's and
// array's segment header and checked when a named object is opened. Pure data: safe everywhere.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <type_traits>

namespace multiproc {

//! The type code of T, if it has one: typecode<T>::value. No member for other types.
template <class T>
struct typecode {};

#define MULTIPROC_TYPECODE(type, code) \
  template <>                          \
  struct typecode<type> : std::integral_constant<char, code> {}
MULTIPROC_TYPECODE(signed char, 'b');
MULTIPROC_TYPECODE(unsigned char, 'B');
MULTIPROC_TYPECODE(short, 'h');
MULTIPROC_TYPECODE(unsigned short, 'H');
MULTIPROC_TYPECODE(int, 'i');
MULTIPROC_TYPECODE(unsigned int, 'I');
MULTIPROC_TYPECODE(long, 'l');
MULTIPROC_TYPECODE(unsigned long, 'L');
MULTIPROC_TYPECODE(long long, 'q');
MULTIPROC_TYPECODE(unsigned long long, 'Q');
MULTIPROC_TYPECODE(float, 'f');
MULTIPROC_TYPECODE(double, 'd');
MULTIPROC_TYPECODE(char, 'c');
MULTIPROC_TYPECODE(wchar_t, 'u');
MULTIPROC_TYPECODE(bool, '?');
#undef MULTIPROC_TYPECODE

namespace detail {
template <class T, class = void>
struct has_typecode : std::false_type {};
template <class T>
struct has_typecode<T, std::void_t<decltype(typecode<T>::value)>> : std::true_type {};
}  // namespace detail

//! True when T (cv-qualifiers ignored) is one of the fifteen types of the table.
template <class T>
inline constexpr bool has_typecode_v = detail::has_typecode<std::remove_cv_t<T>>::value;

namespace detail {
template <class T>
constexpr char typecode_of() {
  static_assert(has_typecode_v<T>,
                "typecode_v<T> needs one of the types of Python's table (b B h H i I l L q Q f d c u "
                "?); other trivially copyable types can still be shared, without a type code");
  return typecode<std::remove_cv_t<T>>::value;
}
//! The code of T, or 0 for a type outside the table (a user's struct).
template <class T>
constexpr char typecode_or_zero() {
  if constexpr (has_typecode_v<T>) {
    return typecode<std::remove_cv_t<T>>::value;
  } else {
    return 0;
  }
}
}  // namespace detail

//! The type code of T, e.g. typecode_v<int> == 'i'. A compile error for a type outside the table.
template <class T>
inline constexpr char typecode_v = detail::typecode_of<T>();

//! What a type code means on this platform.
struct TypeInfo {
  enum class Category { signed_integer, unsigned_integer, floating_point, character, boolean };
  char code;              //!< 'i'
  const char* c_type;     //!< "int"
  const char* ctypes;     //!< "c_int", the Python ctypes name
  std::size_t size;       //!< sizeof, in bytes
  std::size_t alignment;  //!< alignof, in bytes
  Category category;
};

//! Requires: nothing. Returns: the description of `code`.
//! Throws: Error(errc::invalid_argument) naming the code and listing the valid ones.
const TypeInfo& type_info(char code);

//! All fifteen entries, in the order of the table above.
const TypeInfo* type_table_begin() noexcept;
const TypeInfo* type_table_end() noexcept;

//! The string of all valid codes, "bBhHiIlLqQfdcu?".
const char* valid_typecodes() noexcept;

//! Calls f(T{}) with the C++ type of `code`; throws like type_info() for an unknown code.
//! Used by make_value / make_array and by tools that open objects of unknown type.
template <class F>
decltype(auto) visit_typecode(char code, F&& f) {
  switch (code) {
    case 'b': return f(static_cast<signed char>(0));
    case 'B': return f(static_cast<unsigned char>(0));
    case 'h': return f(static_cast<short>(0));
    case 'H': return f(static_cast<unsigned short>(0));
    case 'i': return f(0);
    case 'I': return f(0u);
    case 'l': return f(0l);
    case 'L': return f(0ul);
    case 'q': return f(0ll);
    case 'Q': return f(0ull);
    case 'f': return f(0.0f);
    case 'd': return f(0.0);
    case 'c': return f(static_cast<char>(0));
    case 'u': return f(static_cast<wchar_t>(0));
    case '?': return f(false);
    default: break;
  }
  (void)type_info(code);  // throws the standard "unknown type code" error
  return f(0);            // not reached
}

// ---- checked conversions between the table's types ----------------------------------------
//
// C++ leaves a conversion undefined when the value does not fit: a double beyond float's range
// into a float, a NaN or a too-large floating-point value into an integer. make_value, make_array,
// AnyValue / AnyArray and the typed array constructors from other element types convert through
// these instead, and report what does not fit as an Error.
namespace detail {

//! Whether static_cast<To>(v) is defined and keeps v's value — for a floating-point v into an
//! integer type, its value truncated toward zero (as static_cast does). An integer never fits an
//! integer type it would wrap in (a negative value into an unsigned type included); NaN and the
//! infinities fit only floating-point types; a finite value beyond a floating-point type's largest
//! finite value does not fit it (C++ leaves that conversion undefined). Anything fits bool.
template <class To, class From>
bool fits(From v) noexcept {
  static_assert(std::is_arithmetic_v<From> && std::is_arithmetic_v<To>,
                "type-code values are numbers, characters or bools");
  static_assert(!std::is_integral_v<From> || sizeof(From) <= sizeof(long long),
                "type-code values are at most 64-bit integers");
  if constexpr (std::is_same_v<To, bool> || std::is_same_v<From, bool>) {
    return true;
  } else if constexpr (std::is_integral_v<To>) {
    if constexpr (std::is_floating_point_v<From>) {
      if (std::isnan(v)) return false;
      const From t = std::trunc(v);  // an infinity stays infinite, and fails below
      // 2^digits is To's maximum + 1, and -2^digits its minimum when signed: both exact.
      const From limit = std::ldexp(From(1), std::numeric_limits<To>::digits);
      return (std::is_signed_v<To> ? t >= -limit : t >= From(0)) && t < limit;
    } else if constexpr (std::is_signed_v<From>) {
      // Compare in the widest types, so that nothing wraps before the check.
      const long long x = static_cast<long long>(v);
      if (x < 0) {
        return std::is_signed_v<To> && x >= static_cast<long long>(std::numeric_limits<To>::min());
      }
      return static_cast<unsigned long long>(x) <=
             static_cast<unsigned long long>(std::numeric_limits<To>::max());
    } else {
      return static_cast<unsigned long long>(v) <=
             static_cast<unsigned long long>(std::numeric_limits<To>::max());
    }
  } else if constexpr (std::is_floating_point_v<From> &&
                       (static_cast<long double>(std::numeric_limits<From>::max()) >
                        static_cast<long double>(std::numeric_limits<To>::max()))) {
    // Narrowing (double into float): infinities and NaN convert; finite values must be in range
    // (a value that would round to the largest finite value is refused too: C++ does not define
    // that conversion, and Python's struct refuses it as well).
    return !std::isfinite(v) || std::fabs(v) <= static_cast<From>(std::numeric_limits<To>::max());
  } else {
    return true;  // any integer into a floating-point type (rounded), or widening
  }
}

//! The value as Python would print it: integers in decimal (characters as their code), floating
//! point in the shortest form that reads back the same ("1e+300", "0.1").
template <class V>
std::string show_number(V v) {
  if constexpr (std::is_same_v<V, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_floating_point_v<V>) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
  } else if constexpr (std::is_signed_v<V>) {
    return std::to_string(static_cast<long long>(v));
  } else {
    return std::to_string(static_cast<unsigned long long>(v));
  }
}

//! "'i' (int)" for a table type (code != 0); "long double", "a floating-point type" or "a
//! signed / an unsigned integer type of N bytes" for others. (typecode.cpp)
std::string describe_arithmetic(char code, bool floating, bool is_signed, bool long_double,
                                std::size_t size);
template <class T>
std::string describe_type() {
  return describe_arithmetic(typecode_or_zero<T>(), std::is_floating_point_v<T>,
                             std::is_signed_v<T>, std::is_same_v<std::remove_cv_t<T>, long double>,
                             sizeof(T));
}

//! Throws Error(errc::invalid_argument) with `message` (typecode.cpp: keeps error.hpp out of here).
[[noreturn]] void throw_conversion(const std::string& message);

//! static_cast<To>(v) when v fits To (see fits()); otherwise Error(errc::invalid_argument) saying
//! "<context>: value <v> does not fit in type code 'x' (...)".
template <class To, class From>
To cast_checked(From v, const std::string& context) {
  if (!fits<To>(v)) {
    bool nan = false;
    if constexpr (std::is_floating_point_v<From>) nan = std::isnan(v);
    throw_conversion(context + ": value " + show_number(v) + " does not fit in " +
                     (has_typecode_v<To> ? "type code " : "") + describe_type<To>() +
                     (nan ? " (not a number)" : " (out of range)"));
  }
  return static_cast<To>(v);
}

}  // namespace detail

}  // namespace multiproc
