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

/// The checks every request passes before routing, on its head alone: the
/// size of the head (431); when `auth` is enabled, the API token (401),
/// except for /healthz and the dashboard page; and the body length it
/// declares (413), before any of the body is read: httplib would read and
/// drop a declared body in full, or wait its read timeout for a body that
/// never comes. A client that sends `Expect: 100-continue` hears the refusal
/// instead of "100 Continue", and sends no body.
void install_request_guards(httplib::Server& server, token_check auth,
                            size_t max_header_bytes, size_t max_body_bytes);

/// True when the request declared a body (a Content-Length above 0, or
/// chunked) and httplib has not read all of it: a guard refused it on its
/// head. What follows on its connection is that body, not a request.
bool body_left_unread(const httplib::Request& req);

/// JSON error bodies for httplib's own refusals (404 routes, 413 bodies, ...)
/// and for exceptions escaping a handler.
void install_error_handlers(httplib::Server& server);

} // namespace taskmaster::http
