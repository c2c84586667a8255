// The server side of registered types (multiproc/detail/manager_registry.hpp): one Object per
// named instance, holding the C++ object and calling its methods by name, one call at a time.
#include <multiproc/manager.hpp>

#include "../os.hpp"

#include <mutex>

namespace multiproc::detail::manager {
namespace {

template <class... Fields>
void decode_request(std::string_view bytes, const std::string& who, const char* what,
                    Fields&... fields) {
  try {
    decode_fields(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), fields...);
  } catch (const Error& e) {
    throw Error(errc::corrupt, who + ": a malformed " + what + ": " + e.what());
  }
}

//! "(long, std::string)" from the mangled name of a std::tuple<long, std::string>.
std::string parameter_list(const std::string& mangled_tuple) {
  std::string s = demangle(mangled_tuple.c_str());
  const auto open = s.find('<');
  if (s.rfind("std::tuple", 0) == 0 && open != std::string::npos && s.back() == '>') {
    return "(" + s.substr(open + 1, s.size() - open - 2) + ")";
  }
  return s;
}

[[noreturn]] void rethrow_with(const Error& e, const std::string& context) {
  throw Error(e.code(), context + ": " + e.what());
}

std::string exception_type(const std::exception& e) { return demangle(typeid(e).name()); }

class RegisteredObject final : public Object {
 public:
  RegisteredObject(std::shared_ptr<const TypeTable> table, std::string_view name,
                   std::string_view create_args)
      : table_(std::move(table)),
        who_(table_->type + " '" + std::string(name) + "'") {
    std::string args_type, args;
    decode_request(create_args, who_, "create request", args_type, args);
    if (args_type != table_->ctor_args_type) {
      throw Error(errc::type_mismatch, who_ + ": the constructor takes " +
                                           parameter_list(table_->ctor_args_type) + ", not " +
                                           parameter_list(args_type));
    }
    try {
      self_ = table_->construct(args);
    } catch (const Error& e) {
      if (e.code() == errc::corrupt) rethrow_with(e, who_ + ": the constructor's arguments");
      throw Error(errc::remote_error, who_ + ": the constructor threw " +
                                          exception_type(e) + ": " + e.what());
    } catch (const std::exception& e) {
      throw Error(errc::remote_error, who_ + ": the constructor threw " +
                                          exception_type(e) + ": " + e.what());
    } catch (...) {
      throw Error(errc::remote_error,
                  who_ + ": the constructor threw an exception of unknown type");
    }
  }

  std::string call(Session&, std::uint32_t op, std::string_view request) override {
    if (op != kCallMethod) {
      throw Error(errc::invalid_argument,
                  who_ + ": unknown operation " + std::to_string(op));
    }
    std::string method, args_type, result_type, args;
    decode_request(request, who_, "call", method, args_type, result_type, args);
    const auto it = table_->methods.find(method);
    if (it == table_->methods.end()) {
      std::string names;
      for (const auto& [n, m] : table_->methods) names += (names.empty() ? "" : ", ") + n;
      throw Error(errc::not_found, who_ + ": type " + table_->type +
                                       " has no method '" + method + "' (its methods: " +
                                       (names.empty() ? "none" : names) + ")");
    }
    const Method& m = it->second;
    if (args_type != m.args_type) {
      throw Error(errc::type_mismatch, who_ + ": " + method + " takes " +
                                           parameter_list(m.args_type) + ", not " +
                                           parameter_list(args_type));
    }
    if (result_type != typeid(void).name() && result_type != m.result_type) {
      throw Error(errc::type_mismatch, who_ + ": " + method + " returns " +
                                           demangle(m.result_type.c_str()) + ", not " +
                                           demangle(result_type.c_str()));
    }
    std::string reply;
    {
      std::lock_guard<std::mutex> lk(m_);  // one call at a time
      try {
        reply = m.invoke(self_.get(), args);  // the method's own exceptions come back as a reply
      } catch (const Error& e) {              // the arguments did not decode
        rethrow_with(e, who_ + ": the arguments of " + method);
      }
    }
    if (result_type == typeid(void).name() && !reply.empty() && reply[0] == '\0') reply.resize(1);
    return reply;
  }

 private:
  std::shared_ptr<const TypeTable> table_;
  const std::string who_;
  std::mutex m_;
  std::shared_ptr<void> self_;  // the object; its methods run under m_
};

}  // namespace

std::string ok_reply(std::string_view result) {
  std::string out(1 + result.size(), '\0');
  result.copy(out.data() + 1, result.size());
  return out;
}

std::string remote_error_reply(std::exception_ptr e) {
  std::string type, message;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    type = exception_type(x);
    message = x.what();
  } catch (...) {
    type = "unknown exception";
    message = "an exception that is not a std::exception";
  }
  std::string out(1 + encoded_size(type, message), '\1');
  encode_fields(reinterpret_cast<std::byte*>(out.data() + 1), type, message);
  return out;
}

std::unique_ptr<Object> make_registered_object(std::shared_ptr<const TypeTable> table,
                                               std::string_view name,
                                               std::string_view create_args) {
  return std::make_unique<RegisteredObject>(std::move(table), name, create_args);
}

std::string call_request(std::string_view method, const char* args_type, const char* result_type,
                         std::string_view args) {
  const std::string m(method), a(args_type), r(result_type), b(args);
  std::string out(encoded_size(m, a, r, b), '\0');
  encode_fields(reinterpret_cast<std::byte*>(out.data()), m, a, r, b);
  return out;
}

std::string create_request(const char* args_type, std::string_view args) {
  const std::string a(args_type), b(args);
  std::string out(encoded_size(a, b), '\0');
  encode_fields(reinterpret_cast<std::byte*>(out.data()), a, b);
  return out;
}

void add_method(TypeTable& table, std::string name, Method m) {
  if (name.empty()) {
    throw Error(errc::invalid_argument,
                "multiproc: register_type " + table.type + ": a method needs a name");
  }
  if (table.methods.count(name) != 0) {
    throw Error(errc::already_exists, "multiproc: register_type " + table.type + ": method '" +
                                          name + "' is registered already");
  }
  table.methods.emplace(std::move(name), std::move(m));
}

}  // namespace multiproc::detail::manager
