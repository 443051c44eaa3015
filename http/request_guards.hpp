#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "http/api_error.hpp"
#include "http/auth.hpp"

/// What every HTTP request meets before and around the routes, and the two
/// ways to answer.
namespace taskmaster::http {

void send_json(httplib::Response& res, int status, const nlohmann::json& body);

/// Status, JSON body and Retry-After from the one error mapping.
void send_error(httplib::Response& res, const api_error& err);

/// The checks every request passes before routing: the size of the request
/// head (431) and, when `auth` is enabled, the API token (401), except for
/// /healthz and the dashboard page.
void install_request_guards(httplib::Server& server, token_check auth,
                            size_t max_header_bytes);

/// JSON error bodies for httplib's own refusals (404 routes, 413 bodies, ...)
/// and for exceptions escaping a handler.
void install_error_handlers(httplib::Server& server);

} // namespace taskmaster::http
