#include "http/request_guards.hpp"

#include <charconv>
#include <optional>

#include <fmt/format.h>

#include "actors/log.hpp"
#include "http/json_codec.hpp"

namespace taskmaster::http {

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const api_error& err) {
  res.status = http_status(err.code);
  if (err.retry_after > 0)
    res.set_header("Retry-After", std::to_string(err.retry_after));
  res.set_content(error_body(err), "application/json");
}

namespace {

/// The Content-Length a request declares, if it declares one that reads as
/// a number (httplib refuses the others itself).
std::optional<uint64_t> declared_length(const httplib::Request& req) {
  if (!req.has_header("Content-Length"))
    return std::nullopt;
  const auto& text = req.get_header_value("Content-Length");
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(),
                                   value);
  if (ec != std::errc{} || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

bool chunked(const httplib::Request& req) {
  return req.get_header_value("Transfer-Encoding").find("chunked")
         != std::string::npos;
}

/// Answers `err` on the request's head alone. Its body, if it has one, is
/// never read: the connection closes after the answer (see gateway_server).
void refuse(const httplib::Request& req, httplib::Response& res,
            const api_error& err) {
  send_error(res, err);
  auto length = declared_length(req);
  if ((length && *length > 0) || chunked(req))
    res.set_header("Connection", "close");
}

/// The guards' verdict on a request head: true when it was refused (`res`
/// holds the answer).
bool refused_on_head(const httplib::Request& req, httplib::Response& res,
                     const token_check& auth, size_t max_header_bytes,
                     size_t max_body_bytes) {
  size_t head = req.method.size() + req.target.size() + req.version.size();
  for (const auto& [key, value] : req.headers)
    head += key.size() + value.size() + 4;
  if (head > max_header_bytes) {
    refuse(req, res,
           api_error{api_errc::headers_too_large,
                     fmt::format("the request head is {} bytes; the limit is "
                                 "{} (--max-header-bytes)",
                                 head, max_header_bytes),
                     0});
    return true;
  }
  bool open = req.path == "/healthz"
              || (req.method == "GET" && req.path == "/");
  if (auth.enabled() && !open
      && !auth.accepts_header(req.get_header_value("Authorization"))) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"taskmaster\"");
    refuse(req, res,
           api_error{api_errc::unauthorized,
                     req.has_header("Authorization")
                       ? "the API token is wrong"
                       : "this API needs a token: send 'Authorization: "
                         "Bearer TOKEN'",
                     0});
    return true;
  }
  if (auto length = declared_length(req); length && *length > max_body_bytes) {
    refuse(req, res,
           api_error{api_errc::payload_too_large,
                     fmt::format("the request body is {} bytes; the limit is "
                                 "{} (--max-body-bytes)",
                                 *length, max_body_bytes),
                     0});
    return true;
  }
  return false;
}

} // namespace

void install_request_guards(httplib::Server& server, token_check auth,
                            size_t max_header_bytes, size_t max_body_bytes) {
  server.set_pre_routing_handler(
    [auth, max_header_bytes, max_body_bytes](const httplib::Request& req,
                                             httplib::Response& res) {
      return refused_on_head(req, res, auth, max_header_bytes, max_body_bytes)
               ? httplib::Server::HandlerResponse::Handled
               : httplib::Server::HandlerResponse::Unhandled;
    });
  // The same verdict, before httplib says "100 Continue" (its default).
  server.set_expect_100_continue_handler(
    [auth, max_header_bytes, max_body_bytes](const httplib::Request& req,
                                             httplib::Response& res) {
      return refused_on_head(req, res, auth, max_header_bytes, max_body_bytes)
               ? res.status
               : 100;
    });
}

bool body_left_unread(const httplib::Request& req) {
  if (chunked(req))
    return req.body.empty();
  auto length = declared_length(req);
  return length && *length > req.body.size();
}

void install_error_handlers(httplib::Server& server) {
  // Routing misses and httplib's own refusals (413 and friends) get the same
  // JSON error shape as everything else.
  server.set_error_handler([](const httplib::Request& req,
                              httplib::Response& res) {
    if (!res.body.empty())
      return;
    switch (res.status) {
      case 404:
        send_error(res, api_error{api_errc::not_found,
                             fmt::format("no route for {} {}", req.method,
                                         req.path),
                             0});
        break;
      case 413:
        // cpp-httplib caps form-encoded bodies at 8 KiB (what curl -d sends
        // without a Content-Type), whatever --max-body-bytes says.
        send_error(res, api_error{api_errc::payload_too_large,
                                  req.get_header_value("Content-Type").rfind(
                                    "application/x-www-form-urlencoded", 0)
                                      == 0
                                    ? "form-encoded bodies are limited to "
                                      "8 KiB: send Content-Type: "
                                      "application/json"
                                    : "the request body is larger than the "
                                      "limit (--max-body-bytes)",
                                  0});
        break;
      case 431:
        send_error(res, api_error{api_errc::headers_too_large,
                             "the request headers are too large", 0});
        break;
      default: {
        auto status = res.status;
        // cpp-httplib refuses a POST that says nothing of its body length
        // (what `curl -XPOST URL` sends): say what to send instead.
        bool no_length = status == 400 && req.method != "GET"
                         && !req.has_header("Content-Length")
                         && !req.has_header("Transfer-Encoding");
        send_error(res, api_error{api_errc::invalid_request,
                                  no_length
                                    ? body_length_missing(req.method)
                                    : fmt::format("the request was refused "
                                                  "({})",
                                                  status),
                                  0});
        res.status = status;
      }
    }
  });
  server.set_exception_handler([](const httplib::Request&,
                                  httplib::Response& res,
                                  std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log::error("HTTP handler failed: {}", what);
    send_error(res, api_error{api_errc::internal, "internal error", 0});
  });
}

} // namespace taskmaster::http
