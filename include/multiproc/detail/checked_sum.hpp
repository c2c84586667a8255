// multiproc/detail/checked_sum.hpp — the sum a Manager proxy's add() stores. Private.
#pragma once

#include <multiproc/error.hpp>

#include <string>
#include <type_traits>
#include <typeinfo>

namespace multiproc::detail {

std::string demangle(const char* mangled);

//! v + delta for add(): an integer sum that does not fit in T (signed overflow was undefined
//! behaviour: UBSan, an outside probe) is Error(errc::invalid_argument), and nothing is stored.
//! A floating-point sum is the plain one.
template <class T>
T checked_sum(const T& v, const T& delta) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    T out;
    if (__builtin_add_overflow(v, delta, &out)) {
      throw Error(errc::invalid_argument, "multiproc: add(" + std::to_string(delta) + ") to " +
                                              std::to_string(v) + " does not fit in " +
                                              demangle(typeid(T).name()) + " (nothing was stored)");
    }
    return out;
  } else {
    return static_cast<T>(v + delta);
  }
}

}  // namespace multiproc::detail
