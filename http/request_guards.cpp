#include "http/request_guards.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

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

/// How a request's head frames its body. TaskMaster takes one
/// Content-Length of digits, or one `Transfer-Encoding: chunked`, and
/// nothing else: httplib reads `+60`, `60,60` or `6 0` as lengths (strtoull)
/// and any casing of chunked, and a proxy in front may read them otherwise.
/// Where two parties disagree on where a body ends, the rest of it is taken
/// for the next request.
struct body_framing {
  /// The head names a body at all (Content-Length or Transfer-Encoding).
  bool declared = false;
  bool chunked = false;
  uint64_t length = 0;
  /// Why the framing is refused; empty when it is fine.
  std::string problem;
};

std::string_view trimmed(std::string_view text) {
  auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos)
    return {};
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

body_framing framing_of(const httplib::Request& req) {
  body_framing f;
  auto lengths = req.get_header_value_count("Content-Length");
  auto encodings = req.get_header_value_count("Transfer-Encoding");
  f.declared = lengths > 0 || encodings > 0;
  if (lengths > 1 || encodings > 1) {
    f.problem = fmt::format("the request has {} {} headers; one is allowed",
                            std::max(lengths, encodings),
                            lengths > 1 ? "Content-Length"
                                        : "Transfer-Encoding");
  } else if (lengths == 1 && encodings == 1) {
    f.problem = "the request has both Content-Length and Transfer-Encoding";
  } else if (encodings == 1) {
    // get_header_value returns a copy: keep it while its view is used.
    auto header = req.get_header_value("Transfer-Encoding");
    auto value = trimmed(header);
    f.chunked = value.size() == 7
                && std::equal(value.begin(), value.end(), "chunked",
                              [](char a, char b) {
                                return std::tolower(
                                         static_cast<unsigned char>(a))
                                       == b;
                              });
    if (!f.chunked)
      f.problem = "Transfer-Encoding must be chunked, alone";
  } else if (lengths == 1) {
    auto header = req.get_header_value("Content-Length");
    auto value = trimmed(header);
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(),
                                     f.length);
    bool digits = !value.empty() && (value[0] >= '0' && value[0] <= '9');
    if (!digits || ec != std::errc{} || end != value.data() + value.size())
      f.problem = "Content-Length must be a whole number of bytes";
  }
  return f;
}

/// Answers `err` on the request's head alone. Its body, if it has one, is
/// never read: the connection closes after the answer (see gateway_server).
void refuse(const body_framing& framing, httplib::Response& res,
            const api_error& err) {
  send_error(res, err);
  if (framing.declared)
    res.set_header("Connection", "close");
}

/// The guards' verdict on a request head: true when it was refused (`res`
/// holds the answer).
bool refused_on_head(const httplib::Request& req, httplib::Response& res,
                     const token_check& auth, size_t max_header_bytes,
                     size_t max_body_bytes) {
  auto framing = framing_of(req);
  size_t head = req.method.size() + req.target.size() + req.version.size();
  for (const auto& [key, value] : req.headers)
    head += key.size() + value.size() + 4;
  if (head > max_header_bytes) {
    refuse(framing, res,
           api_error{api_errc::headers_too_large,
                     fmt::format("the request head is {} bytes; the limit is "
                                 "{} (--max-header-bytes)",
                                 head, max_header_bytes),
                     0});
    return true;
  }
  if (!framing.problem.empty()) {
    refuse(framing, res,
           api_error{api_errc::invalid_request, framing.problem, 0});
    return true;
  }
  bool open = req.path == "/healthz"
              || (req.method == "GET" && req.path == "/");
  if (auth.enabled() && !open
      && !auth.accepts_header(req.get_header_value("Authorization"))) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"taskmaster\"");
    refuse(framing, res,
           api_error{api_errc::unauthorized,
                     req.has_header("Authorization")
                       ? "the API token is wrong"
                       : "this API needs a token: send 'Authorization: "
                         "Bearer TOKEN'",
                     0});
    return true;
  }
  if (framing.length > max_body_bytes) {
    refuse(framing, res,
           api_error{api_errc::payload_too_large,
                     fmt::format("the request body is {} bytes; the limit is "
                                 "{} (--max-body-bytes)",
                                 framing.length, max_body_bytes),
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

bool body_left_unread(const httplib::Request& req) {
  // Before the headers were through (a request line or header httplib
  // refused, a URI too long): nothing of the request is known, its body
  // included. httplib sets REMOTE_ADDR once the headers are read.
  if (!req.has_header("REMOTE_ADDR"))
    return true;
  auto framing = framing_of(req);
  if (!framing.problem.empty())
    return true;
  // httplib reads a declared body before any handler runs, except for a
  // refusal on the head and a GET or HEAD; what it read is in `body` (or
  // `files`, for a multipart form).
  bool nothing_read = req.body.empty() && req.files.empty();
  return nothing_read && (framing.chunked || framing.length > 0);
}

} // namespace taskmaster::http
