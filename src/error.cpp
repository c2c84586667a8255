// The multiproc error category and errno translation.
#include <multiproc/error.hpp>

#include <cstring>

namespace multiproc {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "multiproc"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::not_found: return "no such object";
      case errc::already_exists: return "name already exists";
      case errc::wrong_kind: return "wrong kind of object";
      case errc::type_mismatch: return "element type or size mismatch";
      case errc::corrupt: return "corrupt or foreign segment";
      case errc::invalid_argument: return "invalid argument";
      case errc::not_owner: return "not the owner";
      case errc::would_deadlock: return "would deadlock";
      case errc::bad_state: return "not allowed in this state";
      case errc::closed: return "closed";
      case errc::eof: return "end of file";
      case errc::wrong_direction: return "wrong direction";
      case errc::too_large: return "too large";
      case errc::broken_barrier: return "broken barrier";
      case errc::remote_error: return "remote error";
      case errc::broken_pool: return "broken pool";
      case errc::owner_died: return "a lock holder died";
      case errc::disconnected: return "disconnected";
      case errc::cancelled: return "cancelled";
      case errc::server_error: return "server error";
    }
    return "unknown multiproc error";
  }

  // Lets callers compare with the portable conditions they already know.
  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::not_found: return std::errc::no_such_file_or_directory;
      case errc::already_exists: return std::errc::file_exists;
      case errc::invalid_argument: return std::errc::invalid_argument;
      case errc::not_owner: return std::errc::operation_not_permitted;
      case errc::would_deadlock: return std::errc::resource_deadlock_would_occur;
      case errc::too_large: return std::errc::message_size;
      default: return {value, *this};
    }
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

Error Error::from_errno(int err, const std::string& message) {
  return Error(std::error_code(err, std::system_category()),
               message + ": " + std::system_category().message(err));
}

}  // namespace multiproc
