// multiproc/any_value.hpp — shared values and arrays whose type code is chosen at run time
// (Python's Value('d', 0.0) / Array('i', [1, 2, 3]) with the code in a variable).
//
//   mp::AnyValue v = mp::make_value('d', 3.5);        // a SharedValue<double>
//   mp::AnyArray a = mp::make_array('i', {1, 2, 3});  // a SharedArray<int>
//   double x = v.load_as<double>();
//   a.visit([](auto& arr) { for (auto& e : arr.lock()) e *= 2; });
//   mp::AnyValue w = mp::make_value(mp::open_only, "ratio");  // type code read from the segment
//
// AnyValue holds one of the fifteen SharedValue<T> of the type-code table; AnyArray one of the
// SharedArray<T>. get<T>() gives the typed handle (Error if T is not the stored type), visit(f)
// calls f with it, load_as / store_from convert. Every conversion is checked, and a value that
// does not fit is an Error naming the type code and the value, never undefined behaviour:
// make_value('b', 300), make_value('i', 1.5), make_value('B', -1) and make_value('f', 1e300) are
// Errors ('f' accepts infinities and NaN, and rounds tiny values to zero, as Python does; Python's
// Value('f', 1e300) silently stores inf, multiproc refuses it as Python's struct.pack('<f') does).
// load_as<U>() and to_vector_as<U>() convert like static_cast but refuse what does not fit in U.
// Sharing, locking and crash behaviour are those of SharedValue and SharedArray: a value made by
// type code gets its type's RecoveryPolicy default (recover for every code of the table, all
// integral or floating-point types of at most 8 bytes), an array strict; recovery_policy() and
// recoveries() report them.
#pragma once

#include <multiproc/shared_array.hpp>
#include <multiproc/shared_value.hpp>
#include <multiproc/typecode.hpp>

#include <cmath>
#include <initializer_list>
#include <limits>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace multiproc {
namespace detail {

template <template <class> class H>
using AnyOf = std::variant<H<signed char>, H<unsigned char>, H<short>, H<unsigned short>, H<int>,
                           H<unsigned int>, H<long>, H<unsigned long>, H<long long>,
                           H<unsigned long long>, H<float>, H<double>, H<char>, H<wchar_t>,
                           H<bool>>;

//! Converts v to the type of `code`, refusing what Python refuses: a floating-point value for an
//! integer code, a value out of the code's range (a negative one for an unsigned code, a finite
//! double beyond float's range for 'f'), a 'c' outside one byte, a 'u' that is not a Unicode
//! code point. Anything converts to '?' (nonzero is true); infinities and NaN to 'f' and 'd'.
template <class T, class V>
T convert_checked(const V& v) {
  static_assert(std::is_arithmetic_v<V>, "type-code values are numbers, characters or bools");
  constexpr char code = typecode<T>::value;
  auto fail = [&](const char* why) -> T {
    throw Error(errc::invalid_argument, std::string("multiproc: value ") + show_number(v) +
                                            " for type code '" + code + "' (" +
                                            type_info(code).c_type + "): " + why);
  };
  if constexpr (std::is_same_v<T, bool>) {
    return v != V{};
  } else if constexpr (std::is_integral_v<T> && std::is_floating_point_v<V>) {
    return fail("an integer is needed, not a floating-point number");
  } else if constexpr (std::is_same_v<T, char>) {
    // One byte, as Python's c_char: 0..255, or any value of char itself (negative where char is
    // signed): 200 and char(-56) are the same byte 0xc8.
    if constexpr (!std::is_same_v<V, char>) {
      if (!fits<unsigned char>(v) && !fits<char>(v)) return fail("out of range for one byte");
      if (fits<unsigned char>(v)) return static_cast<char>(static_cast<unsigned char>(v));
    }
    return static_cast<char>(v);
  } else if constexpr (std::is_same_v<T, wchar_t>) {
    // A Unicode code point, as Python's one-character str.
    if (!fits<long>(v) || static_cast<long>(v) < 0 || static_cast<long>(v) > 0x10FFFF) {
      return fail("not a Unicode code point (0 to 0x10FFFF)");
    }
    return static_cast<wchar_t>(v);
  } else {
    if (!fits<T>(v)) {
      if constexpr (std::is_floating_point_v<V>) {
        if (std::isnan(v)) return fail("not a number");
      }
      return fail(std::is_floating_point_v<T> ? "out of range (beyond the largest finite value)"
                                              : "out of range");
    }
    return static_cast<T>(v);
  }
}

template <class T, class V>
std::vector<T> convert_all(const std::vector<V>& values) {
  std::vector<T> out;
  out.reserve(values.size());
  for (const V& v : values) out.push_back(convert_checked<T>(v));
  return out;
}

//! The type code stored in a named object of `kind`; Error if it has none.
char stored_typecode(const Name& name, Kind kind);

//! stored_typecode, refusing a code outside the table: it was read from shared memory, so an
//! unknown one is a damaged header (Error(errc::corrupt) naming the object), not a bad argument.
inline char checked_stored_typecode(const Name& name, Kind kind) {
  const char code = stored_typecode(name, kind);
  for (const TypeInfo* t = type_table_begin(); t != type_table_end(); ++t) {
    if (t->code == code) return code;
  }
  throw Error(errc::corrupt, kind_name(kind) + " '" + name.str() + "': its header holds type code " +
                                 std::to_string(static_cast<int>(code)) +
                                 ", which is none of " + valid_typecodes());
}

//! What AnyValue and AnyArray share: one of the fifteen handles H<T> of the type-code table.
template <template <class> class H>
class AnyHandle {
 public:
  using Variant = AnyOf<H>;

  explicit AnyHandle(Variant v) : v_(std::move(v)) {}

  char type_code() const noexcept {
    return std::visit([](const auto& h) { return typecode_v<typename std::decay_t<decltype(h)>::value_type>; }, v_);
  }
  const TypeInfo& type() const { return type_info(type_code()); }

  //! Returns: the typed handle. Throws: Error(errc::type_mismatch) when T is not the stored type.
  template <class T>
  H<T> get() const {
    if (const auto* h = std::get_if<H<T>>(&v_)) return *h;
    throw Error(errc::type_mismatch, segment().describe() + ": holds type code '" +
                                         type_code() + "', not '" + typecode_v<T> + "'");
  }
  //! Calls f(H<T>&) with the stored handle; returns what f returns.
  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), v_);
  }
  const Segment& segment() const noexcept {
    return std::visit([](const auto& h) -> const Segment& { return h.segment(); }, v_);
  }
  //! The stored handle's recovery policy and recoveries() (recovery_policy.hpp): a value made by
  //! type code gets its type's default, as SharedValue<T> does; an array is strict.
  RecoveryPolicy recovery_policy() const noexcept {
    return std::visit([](const auto& h) { return h.recovery_policy(); }, v_);
  }
  std::uint32_t recoveries() const noexcept {
    return std::visit([](const auto& h) { return h.recoveries(); }, v_);
  }

 protected:
  Variant v_;
};

}  // namespace detail

//! A SharedValue<T> whose T is one of the type-code table, chosen at run time: type_code(),
//! type(), get<T>(), visit(f) and segment() as detail::AnyHandle says.
class AnyValue : public detail::AnyHandle<SharedValue> {
 public:
  using AnyHandle::AnyHandle;
  template <class T>
  AnyValue(SharedValue<T> v) : AnyHandle(Variant(std::move(v))) {}  // NOLINT: implicit from a typed handle

  //! Returns: the value (read under its lock) converted with static_cast to U (a floating-point
  //! value into an integer type is truncated toward zero).
  //! Throws: Error(errc::invalid_argument) naming the value when it does not fit in U — out of
  //! U's range, or NaN or infinite into an integer type; as SharedValue::load() otherwise.
  template <class U>
  U load_as() const {
    return std::visit(
        [](const auto& h) { return detail::cast_checked<U>(h.load(), h.segment().describe()); },
        v_);
  }
  //! Effects: stores u converted to the stored type. Throws: Error(errc::invalid_argument) when u
  //! does not fit (as make_value).
  template <class U>
  void store_from(const U& u) const {
    std::visit(
        [&](const auto& h) {
          using T = typename std::decay_t<decltype(h)>::value_type;
          h.store(detail::convert_checked<T>(u));
        },
        v_);
  }
};

//! A SharedArray<T> whose T is one of the type-code table, chosen at run time (see AnyValue).
class AnyArray : public detail::AnyHandle<SharedArray> {
 public:
  using AnyHandle::AnyHandle;
  template <class T>
  AnyArray(SharedArray<T> a) : AnyHandle(Variant(std::move(a))) {}  // NOLINT: implicit from a typed handle

  std::size_t size() const noexcept {
    return std::visit([](const auto& h) { return h.size(); }, v_);
  }
  //! Returns: all elements (read under the lock), each converted as load_as() converts.
  //! Throws: Error(errc::invalid_argument) naming the element when one does not fit in U.
  template <class U>
  std::vector<U> to_vector_as() const {
    return std::visit(
        [](const auto& h) {
          const auto values = h.to_vector();
          std::vector<U> out;
          out.reserve(values.size());
          for (std::size_t i = 0; i < values.size(); ++i) {
            out.push_back(detail::cast_checked<U>(
                static_cast<typename std::decay_t<decltype(h)>::value_type>(values[i]),
                h.segment().describe() + ": element " + std::to_string(i)));
          }
          return out;
        },
        v_);
  }
};

//! Returns: an unnamed SharedValue of the type of `code`, holding `initial` (zero by default).
//! Throws: Error(errc::invalid_argument) for an unknown code or a value that does not fit.
template <class V>
AnyValue make_value(char code, const V& initial) {
  return visit_typecode(code, [&](auto zero) {
    using T = decltype(zero);
    return AnyValue(SharedValue<T>(detail::convert_checked<T>(initial)));
  });
}
inline AnyValue make_value(char code) { return make_value(code, 0); }

//! Named forms: create / open or create the value `name` with the type of `code`.
template <class V>
AnyValue make_value(create_only_t, const Name& name, char code, const V& initial) {
  return visit_typecode(code, [&](auto zero) {
    using T = decltype(zero);
    return AnyValue(SharedValue<T>(create_only, name, detail::convert_checked<T>(initial)));
  });
}
template <class V>
AnyValue make_value(open_or_create_t, const Name& name, char code, const V& initial) {
  return visit_typecode(code, [&](auto zero) {
    using T = decltype(zero);
    return AnyValue(SharedValue<T>(open_or_create, name, detail::convert_checked<T>(initial)));
  });
}
//! Opens the value `name`, whatever its type code. Throws: as SharedValue(open_only, name),
//! Error(errc::type_mismatch) when its element type has no code (a user's struct), and
//! Error(errc::corrupt) when its header holds a code outside the table.
inline AnyValue make_value(open_only_t, const Name& name) {
  return visit_typecode(detail::checked_stored_typecode(name, Kind::value), [&](auto zero) {
    return AnyValue(SharedValue<decltype(zero)>(open_only, name));
  });
}

//! Returns: an unnamed SharedArray of the type of `code` with n zeros, or holding `values`.
//! Throws: Error(errc::invalid_argument) for an unknown code or a value that does not fit.
inline AnyArray make_array(char code, std::size_t n) {
  return visit_typecode(code, [&](auto zero) { return AnyArray(SharedArray<decltype(zero)>(n)); });
}
template <class V>
AnyArray make_array(char code, const std::vector<V>& values) {
  return visit_typecode(code, [&](auto zero) {
    using T = decltype(zero);
    const std::vector<T> converted = detail::convert_all<T>(values);
    return AnyArray(SharedArray<T>(converted.begin(), converted.end()));
  });
}
template <class V>
AnyArray make_array(char code, std::initializer_list<V> values) {
  return make_array(code, std::vector<V>(values));
}

//! Named forms.
inline AnyArray make_array(create_only_t, const Name& name, char code, std::size_t n) {
  return visit_typecode(code, [&](auto zero) {
    return AnyArray(SharedArray<decltype(zero)>(create_only, name, n));
  });
}
inline AnyArray make_array(open_or_create_t, const Name& name, char code, std::size_t n) {
  return visit_typecode(code, [&](auto zero) {
    return AnyArray(SharedArray<decltype(zero)>(open_or_create, name, n));
  });
}
inline AnyArray make_array(open_only_t, const Name& name) {
  return visit_typecode(detail::checked_stored_typecode(name, Kind::array), [&](auto zero) {
    return AnyArray(SharedArray<decltype(zero)>(open_only, name));
  });
}

}  // namespace multiproc
