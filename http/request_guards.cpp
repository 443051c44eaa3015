#include "http/request_guards.hpp"

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

void install_request_guards(httplib::Server& server, token_check auth,
                            size_t max_header_bytes) {
  server.set_pre_routing_handler([auth, max_header_bytes](
                                   const httplib::Request& req,
                                   httplib::Response& res) {
    size_t head = req.method.size() + req.target.size() + req.version.size();
    for (const auto& [key, value] : req.headers)
      head += key.size() + value.size() + 4;
    if (head > max_header_bytes) {
      send_error(res, api_error{api_errc::headers_too_large,
                                     fmt::format("the request head is {} bytes; "
                                                 "the limit is {} "
                                                 "(--max-header-bytes)",
                                                 head, max_header_bytes),
                                     0});
      return httplib::Server::HandlerResponse::Handled;
    }
    bool open = req.path == "/healthz"
                || (req.method == "GET" && req.path == "/");
    if (auth.enabled() && !open
        && !auth.accepts_header(req.get_header_value("Authorization"))) {
      res.set_header("WWW-Authenticate", "Bearer realm=\"taskmaster\"");
      send_error(res, api_error{api_errc::unauthorized,
                                     req.has_header("Authorization")
                                       ? "the API token is wrong"
                                       : "this API needs a token: send "
                                         "'Authorization: Bearer TOKEN'",
                                     0});
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
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
