#pragma once

#include <string>
#include <string_view>

/// The one error type of the REST API and its one mapping to HTTP: every
/// error answer is `{"error": {"code": "...", "message": "..."}}` with the
/// status from `http_status`.
namespace taskmaster::http {

enum class api_errc {
  invalid_request,
  invalid_json,
  unauthorized,
  not_found,
  conflict,
  payload_too_large,
  length_required,
  headers_too_large,
  queue_full,
  too_many_connections,
  unavailable,
  internal,
  /// 503 as well, but settled: the journal refused the change, so nothing
  /// of it happened for good (a client need not wonder, nor retry before the
  /// master is restarted).
  journal_failed,
};

struct api_error {
  api_errc code = api_errc::internal;
  std::string message;
  /// Seconds for a Retry-After header; 0 for none.
  int retry_after = 0;
};

std::string_view code_name(api_errc code);

int http_status(api_errc code);

/// The JSON body for an error answer.
std::string error_body(const api_error& err);

/// What to tell a client whose POST (PUT, PATCH) says nothing of its body
/// length: cpp-httplib cannot read such a body.
std::string body_length_missing(std::string_view method);

} // namespace taskmaster::http
