// Type codes: the table, typecode_v, type_info, make_value / make_array, and the code stored in
// and checked against named segments — across processes.
#include "support/support.hpp"

#include <multiproc/detail/segment_header.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

using namespace mptest;

namespace {

template <class T>
void check_row(char code) {
  const mp::TypeInfo& t = mp::type_info(code);
  BOOST_TEST(t.code == code);
  BOOST_TEST(t.size == sizeof(T));
  BOOST_TEST(t.alignment == alignof(T));
  BOOST_TEST(mp::typecode_v<T> == code);
  BOOST_TEST(mp::typecode_v<const T> == code);
}

template <class F>
void expect_conversion_error(F&& f, const std::string& value, const std::string& code_part) {
  try {
    f();
    BOOST_ERROR("no error for value " << value);
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::invalid_argument), e.what());
    BOOST_TEST(message_has(e, value));
    BOOST_TEST(message_has(e, code_part));
  }
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(typecode, Clean)

BOOST_AUTO_TEST_CASE(table_matches_the_platform_types, *boost::unit_test::timeout(60)) {
  check_row<signed char>('b');
  check_row<unsigned char>('B');
  check_row<short>('h');
  check_row<unsigned short>('H');
  check_row<int>('i');
  check_row<unsigned int>('I');
  check_row<long>('l');
  check_row<unsigned long>('L');
  check_row<long long>('q');
  check_row<unsigned long long>('Q');
  check_row<float>('f');
  check_row<double>('d');
  check_row<char>('c');
  check_row<wchar_t>('u');
  check_row<bool>('?');
  BOOST_TEST(mp::type_table_end() - mp::type_table_begin() == 15);
  BOOST_TEST(std::string(mp::valid_typecodes()) == "bBhHiIlLqQfdcu?");
  BOOST_TEST(std::string(mp::type_info('l').ctypes) == "c_long");
  BOOST_TEST((mp::type_info('L').category == mp::TypeInfo::Category::unsigned_integer));
  BOOST_TEST((mp::type_info('d').category == mp::TypeInfo::Category::floating_point));
  static_assert(mp::has_typecode_v<int> && !mp::has_typecode_v<std::string>);
  static_assert(!mp::has_typecode_v<char16_t>);
}

BOOST_AUTO_TEST_CASE(unknown_code_is_an_error_naming_it, *boost::unit_test::timeout(60)) {
  try {
    mp::type_info('x');
    BOOST_FAIL("no error for 'x'");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::invalid_argument));
    BOOST_TEST(message_has(e, "'x'"));
    BOOST_TEST(message_has(e, "bBhHiIlLqQfdcu?"));
  }
  try {
    mp::make_array('\x01', 3);
    BOOST_FAIL("no error for \\x01");
  } catch (const mp::Error& e) {
    BOOST_TEST(message_has(e, "\\x01"));
  }
  BOOST_CHECK_THROW(mp::make_value('Z', 1), mp::Error);
}

BOOST_AUTO_TEST_CASE(make_value_for_every_code_holds_its_value, *boost::unit_test::timeout(60)) {
  for (const mp::TypeInfo* t = mp::type_table_begin(); t != mp::type_table_end(); ++t) {
    mp::AnyValue v = mp::make_value(t->code, 1);
    BOOST_TEST(v.type_code() == t->code);
    BOOST_TEST(v.load_as<int>() == 1);
    v.store_from(0);
    BOOST_TEST(v.load_as<int>() == 0);
    BOOST_TEST(v.segment().header().type_code == t->code);
  }
  mp::AnyValue d = mp::make_value('d', 2.25);
  BOOST_TEST(d.get<double>().load() == 2.25);
  BOOST_CHECK_THROW(d.get<float>(), mp::Error);
  BOOST_TEST(mp::make_value('i').load_as<int>() == 0);
}

BOOST_AUTO_TEST_CASE(values_out_of_range_are_errors, *boost::unit_test::timeout(60)) {
  BOOST_CHECK_THROW(mp::make_value('b', 300), mp::Error);
  BOOST_CHECK_THROW(mp::make_value('b', -129), mp::Error);
  BOOST_CHECK_THROW(mp::make_value('B', -1), mp::Error);
  BOOST_CHECK_THROW(mp::make_value('H', 65536), mp::Error);
  BOOST_CHECK_THROW(mp::make_value('i', 1.5), mp::Error);
  BOOST_CHECK_THROW(mp::make_value('I', -1LL), mp::Error);
  BOOST_CHECK_THROW(mp::make_value('q', 18446744073709551615ULL), mp::Error);
  BOOST_CHECK_THROW(mp::make_array('b', {1, 2, 1000}), mp::Error);
  BOOST_TEST(mp::make_value('b', -128).load_as<int>() == -128);
  BOOST_TEST(mp::make_value('B', 255).load_as<int>() == 255);
  BOOST_TEST(mp::make_value('Q', 18446744073709551615ULL).load_as<unsigned long long>() ==
             18446744073709551615ULL);
  BOOST_TEST(mp::make_value('f', 1).load_as<float>() == 1.0f);
  try {
    mp::make_value('h', 40000);
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::invalid_argument));
    BOOST_TEST(message_has(e, "40000"));
    BOOST_TEST(message_has(e, "'h'"));
  }
  mp::AnyValue v = mp::make_value('b', 0);
  BOOST_CHECK_THROW(v.store_from(1000), mp::Error);
  BOOST_TEST(v.load_as<int>() == 0);
}

BOOST_AUTO_TEST_CASE(make_array_from_size_and_lists, *boost::unit_test::timeout(60)) {
  mp::AnyArray zeros = mp::make_array('d', 4);
  BOOST_TEST(zeros.size() == 4u);
  BOOST_TEST(zeros.type_code() == 'd');
  BOOST_TEST((zeros.to_vector_as<double>() == std::vector<double>{0, 0, 0, 0}));
  mp::AnyArray ints = mp::make_array('i', {1, 2, 3});
  BOOST_TEST((ints.to_vector_as<long>() == std::vector<long>{1, 2, 3}));
  mp::AnyArray bools = mp::make_array('?', {1, 0, 1});
  BOOST_TEST((bools.get<bool>().to_vector() == std::vector<bool>{true, false, true}));
  mp::AnyArray from_vector = mp::make_array('h', std::vector<int>{7, -7});
  BOOST_TEST((from_vector.get<short>().to_vector() == std::vector<short>{7, -7}));
  BOOST_TEST(mp::make_array('Q', 0).size() == 0u);
}

BOOST_AUTO_TEST_CASE(code_is_stored_and_checked_on_open, *boost::unit_test::timeout(60)) {
  const std::string name = unique_name("coded");
  mp::AnyValue created = mp::make_value(mp::create_only, name, 'h', 7);
  mp::AnyValue opened = mp::make_value(mp::open_only, name);
  BOOST_TEST(opened.type_code() == 'h');
  BOOST_TEST(opened.load_as<int>() == 7);
  try {
    mp::SharedValue<int> wrong(mp::open_only, name);
    BOOST_FAIL("opened a 'h' value as int");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::type_mismatch));
    BOOST_TEST(message_has(e, name));
    BOOST_TEST(message_has(e, "'h'"));
    BOOST_TEST(message_has(e, "'i'"));
  }
  // long and long long have the same size here, but different codes: still a mismatch.
  const std::string lname = unique_name("long");
  mp::SharedValue<long> l(mp::create_only, lname, 5);
  BOOST_CHECK_THROW(mp::SharedValue<long long>(mp::open_only, lname), mp::Error);
}

BOOST_AUTO_TEST_CASE(float_code_refuses_a_finite_double_beyond_its_range, *boost::unit_test::timeout(60)) {
  // Converting 1e300 to float is undefined in C++; Python's struct.pack('<f', 1e300) raises
  // OverflowError. Infinities and NaN are floats; tiny values round to zero, as in Python.
  expect_conversion_error([] { mp::make_value('f', 1e300); }, "1e+300", "'f'");
  expect_conversion_error([] { mp::make_value('f', -1e39); }, "-1e+39", "'f'");
  expect_conversion_error([] { mp::make_array('f', {1.0, 1e300}); }, "1e+300", "'f'");
  expect_conversion_error([] { mp::make_value('f', 1e4000L); }, "1e+4000", "'f'");
  expect_conversion_error([] { mp::make_value('d', 1e4000L); }, "1e+4000", "'d'");
  mp::AnyValue f = mp::make_value('f', 2.5);
  expect_conversion_error([&] { f.store_from(3.5e38); }, "3.5e+38", "'f'");
  BOOST_TEST(f.load_as<double>() == 2.5);  // the refused store changed nothing
  BOOST_TEST(std::isinf(mp::make_value('f', HUGE_VAL).load_as<double>()));
  BOOST_TEST(std::isnan(mp::make_value('f', std::nan("")).load_as<double>()));
  BOOST_TEST(mp::make_value('f', 1e-50).load_as<double>() == 0.0);
  BOOST_TEST(mp::make_value('f', 3.4028234663852886e38).load_as<float>() ==
             std::numeric_limits<float>::max());
  BOOST_TEST(mp::make_value('d', 1e300).load_as<double>() == 1e300);
}

BOOST_AUTO_TEST_CASE(every_code_refuses_what_does_not_fit, *boost::unit_test::timeout(60)) {
  // Negative values into unsigned codes, each code's bounds, and floating-point values into
  // integer codes (a TypeError in Python).
  expect_conversion_error([] { mp::make_value('B', -1); }, "-1", "'B'");
  expect_conversion_error([] { mp::make_value('H', -1); }, "-1", "'H'");
  expect_conversion_error([] { mp::make_value('L', -1L); }, "-1", "'L'");
  expect_conversion_error([] { mp::make_value('Q', -1LL); }, "-1", "'Q'");
  expect_conversion_error([] { mp::make_value('h', -32769); }, "-32769", "'h'");
  expect_conversion_error([] { mp::make_value('i', 2147483648LL); }, "2147483648", "'i'");
  expect_conversion_error([] { mp::make_value('I', 4294967296LL); }, "4294967296", "'I'");
  expect_conversion_error([] { mp::make_value('l', 9223372036854775808ULL); }, "9223372036854775808", "'l'");
  expect_conversion_error([] { mp::make_value('q', 1e19); }, "1e+19", "'q'");
  expect_conversion_error([] { mp::make_value('Q', std::nan("")); }, "nan", "'Q'");
  expect_conversion_error([] { mp::make_value('b', HUGE_VAL); }, "inf", "'b'");
  expect_conversion_error([] { mp::make_array('I', std::vector<long long>{1, -5}); }, "-5", "'I'");
  BOOST_TEST(mp::make_value('h', -32768).load_as<int>() == -32768);
  BOOST_TEST(mp::make_value('I', 4294967295LL).load_as<unsigned>() == 4294967295u);
  BOOST_TEST(mp::make_value('q', -9223372036854775807LL - 1).load_as<long long>() ==
             std::numeric_limits<long long>::min());
  // 'c' is one byte (0..255, or a char itself), 'u' a Unicode code point, '?' anything.
  expect_conversion_error([] { mp::make_value('c', 256); }, "256", "'c'");
  expect_conversion_error([] { mp::make_value('c', -129); }, "-129", "'c'");
  expect_conversion_error([] { mp::make_value('c', 65.0); }, "65", "'c'");
  BOOST_TEST(mp::make_value('c', 200).get<char>().load() == static_cast<char>(static_cast<unsigned char>(200)));
  BOOST_TEST(mp::make_value('c', 'x').get<char>().load() == 'x');
  expect_conversion_error([] { mp::make_value('u', -1); }, "-1", "'u'");
  expect_conversion_error([] { mp::make_value('u', 0x110000); }, "1114112", "'u'");
  expect_conversion_error([] { mp::make_value('u', 0.5); }, "0.5", "'u'");
  BOOST_TEST(mp::make_value('u', 0x10FFFF).load_as<long>() == 0x10FFFF);
  BOOST_TEST(mp::make_value('u', L'\u00e9').get<wchar_t>().load() == L'\u00e9');
  BOOST_TEST(mp::make_value('?', 0.5).get<bool>().load());
  BOOST_TEST(!mp::make_value('?', 0).get<bool>().load());
}

BOOST_AUTO_TEST_CASE(loads_refuse_a_value_that_does_not_fit_the_asked_type, *boost::unit_test::timeout(60)) {
  // load_as / to_vector_as convert like static_cast (fractions truncated), but a value out of the
  // target's range is an Error: 1e300 into int is undefined behaviour in C++ (UBSan reports it).
  mp::AnyValue big = mp::make_value('d', 1e300);
  expect_conversion_error([&] { big.load_as<int>(); }, "1e+300", "'i'");
  expect_conversion_error([&] { big.load_as<float>(); }, "1e+300", "'f'");
  BOOST_TEST(big.load_as<long double>() == static_cast<long double>(1e300));
  mp::AnyValue nan = mp::make_value('d', std::nan(""));
  expect_conversion_error([&] { nan.load_as<long>(); }, "nan", "'l'");
  BOOST_TEST(mp::make_value('d', -2.75).load_as<int>() == -2);
  BOOST_TEST(mp::make_value('d', -0.5).load_as<unsigned>() == 0u);  // truncates to 0: fits
  mp::AnyValue negative = mp::make_value('i', -1);
  expect_conversion_error([&] { negative.load_as<unsigned>(); }, "-1", "'I'");
  mp::AnyValue wide = mp::make_value('i', 300);
  expect_conversion_error([&] { wide.load_as<signed char>(); }, "300", "'b'");
  BOOST_TEST(wide.load_as<short>() == 300);
  mp::AnyArray a = mp::make_array('d', {1.5, 1e300, -3.0});
  try {
    a.to_vector_as<int>();
    BOOST_ERROR("to_vector_as<int> converted 1e300");
  } catch (const mp::Error& e) {
    BOOST_TEST(message_has(e, "element 1"));
    BOOST_TEST(message_has(e, "1e+300"));
  }
  BOOST_TEST((mp::make_array('d', {1.5, -3.0}).to_vector_as<int>() == std::vector<int>{1, -3}));
  mp::AnyArray q = mp::make_array('Q', std::vector<unsigned long long>{18446744073709551615ULL});
  BOOST_CHECK_THROW(q.to_vector_as<long long>(), mp::Error);
  BOOST_TEST(q.to_vector_as<double>()[0] == 18446744073709551615.0);
}

BOOST_AUTO_TEST_CASE(typed_arrays_from_other_element_types_check_each_element, *boost::unit_test::timeout(60)) {
  const std::vector<double> doubles{1.0, 2.9, 1e300};
  try {
    mp::SharedArray<int> a(doubles.begin(), doubles.end());
    BOOST_ERROR("an int array took 1e300");
  } catch (const mp::Error& e) {
    BOOST_TEST((e.code() == mp::errc::invalid_argument));
    BOOST_TEST(message_has(e, "element 2"));
    BOOST_TEST(message_has(e, "1e+300"));
  }
  BOOST_CHECK_THROW(mp::SharedArray<float>(doubles.begin(), doubles.end()), mp::Error);
  const std::vector<long> longs{-3, 4};
  BOOST_CHECK_THROW(mp::RawArray<unsigned>(longs.begin(), longs.end()), mp::Error);
  mp::SharedArray<double> ok(doubles.begin(), doubles.begin() + 2);
  BOOST_TEST((ok.to_vector() == std::vector<double>{1.0, 2.9}));
  mp::SharedArray<int> truncated(doubles.begin(), doubles.begin() + 2);  // static_cast semantics
  BOOST_TEST((truncated.to_vector() == std::vector<int>{1, 2}));
  mp::RawArray<short> shorts(longs.begin(), longs.end());
  BOOST_TEST((shorts.to_vector() == std::vector<short>{-3, 4}));
}

MPTEST_SCENARIO(sum_any_array) {
  // An unrelated process opens an array of unknown type code and writes its sum to a value.
  mp::AnyArray a = mp::make_array(mp::open_only, args.at(0));
  mp::SharedValue<double> out(mp::open_only, args.at(1));
  double sum = 0;
  for (double x : a.to_vector_as<double>()) sum += x;
  out.store(sum);
  return a.type_code() == args.at(2)[0] ? 0 : 4;
}

BOOST_AUTO_TEST_CASE(unrelated_process_opens_by_code_from_the_segment, *boost::unit_test::timeout(60)) {
  const std::string arr = unique_name("arr"), out = unique_name("out");
  for (char code : std::string("bBhHiIlLqQfd")) {
    mp::AnyArray a = mp::make_array(mp::create_only, arr, code, 5);
    a.visit([](auto& h) {
      auto g = h.lock();
      for (std::size_t i = 0; i < g.size(); ++i) g[i] = static_cast<std::decay_t<decltype(g[i])>>(i + 1);
    });
    mp::SharedValue<double> result(mp::create_only, out, -1.0);
    Spawned child("sum_any_array", {arr, out, std::string(1, code)});
    BOOST_TEST(child.wait() == 0);
    BOOST_TEST(result.load() == 15.0, "code " << code);
  }
}

BOOST_AUTO_TEST_SUITE_END()
