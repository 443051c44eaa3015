#include "http/api_error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace taskmaster::http {

namespace {

struct entry {
  std::string_view name;
  int status;
};

constexpr entry table[] = {
  {"invalid_request", 400},      {"invalid_json", 400},
  {"unauthorized", 401},         {"not_found", 404},
  {"conflict", 409},
  {"payload_too_large", 413},    {"length_required", 411},
  {"headers_too_large", 431},
  {"queue_full", 429},           {"too_many_connections", 429},
  {"unavailable", 503},          {"internal", 500},
  {"journal_failed", 503},
};

} // namespace

std::string_view code_name(api_errc code) {
  return table[static_cast<size_t>(code)].name;
}

int http_status(api_errc code) {
  return table[static_cast<size_t>(code)].status;
}

std::string error_body(const api_error& err) {
  nlohmann::json body{{"error",
                       {{"code", code_name(err.code)},
                        {"message", err.message}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string body_length_missing(std::string_view method) {
  return fmt::format("{} needs a Content-Length header, 0 for no body "
                     "(curl: -d '')",
                     method);
}

} // namespace taskmaster::http
