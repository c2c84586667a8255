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

#include <cstddef>
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

}  // namespace multiproc
