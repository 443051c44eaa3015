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
/// size of the head (431); how it frames its body (400 for anything but one
/// Content-Length of digits or one chunked Transfer-Encoding); when `auth`
/// is enabled, the API token (401),
/// except for /healthz and the dashboard page; and the body length it
/// declares (413), before any of the body is read: httplib would read and
/// drop a declared body in full, or wait its read timeout for a body that
/// never comes. A client that sends `Expect: 100-continue` hears the refusal
/// instead of "100 Continue", and sends no body.
void install_request_guards(httplib::Server& server, token_check auth,
                            size_t max_header_bytes, size_t max_body_bytes);

/// True when what follows the request on its connection may be part of it,
/// not a request: it declared a body that was never read (a guard refused
/// it on its head; a GET with a body), its framing was refused, or httplib
/// refused it before its headers were through. Its connection must close.
bool body_left_unread(const httplib::Request& req);

/// JSON error bodies for httplib's own refusals (404 routes, 413 bodies, ...)
/// and for exceptions escaping a handler.
void install_error_handlers(httplib::Server& server);

} // namespace taskmaster::http
