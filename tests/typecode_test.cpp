// Type codes: the table, typecode_v, type_info, make_value / make_array, and the code stored in
// and checked against named segments — across processes.
#include "support/support.hpp"

#include <multiproc/detail/segment_header.hpp>

#include <cstring>
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

template <class T>
bool message_has(const T& e, const std::string& part) {
  const bool found = std::string(e.what()).find(part) != std::string::npos;
  if (!found) BOOST_TEST_MESSAGE("message was: " << e.what());
  return found;
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
