// libFuzzer target: request heads as the gateway sees them. The bytes go
// through the WebSocket-upgrade detection, the /ws target parser, and
// cpp-httplib's request parsing with TaskMaster's guards (head size, token)
// and error handlers in front of a route that decodes task submissions.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include <httplib.h>

#include "http/auth.hpp"
#include "http/gateway_server.hpp"
#include "http/json_codec.hpp"
#include "http/request_guards.hpp"
#include "http/stream_target.hpp"

namespace {

using namespace taskmaster;

/// An httplib stream over the fuzzer's bytes.
class memory_stream : public httplib::Stream {
public:
  memory_stream(const uint8_t* data, size_t size) : data_(data), size_(size) {
  }

  bool is_readable() const override {
    return pos_ < size_;
  }

  bool is_writable() const override {
    return true;
  }

  ssize_t read(char* ptr, size_t n) override {
    n = std::min(n, size_ - pos_);
    std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t n) override {
    written_ += n;
    (void) ptr;
    return static_cast<ssize_t>(n);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 40000;
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 8080;
  }

  socket_t socket() const override {
    return -1;
  }

  bool done() const {
    return pos_ >= size_;
  }

private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  size_t written_ = 0;
};

class fuzz_server : public httplib::Server {
public:
  fuzz_server() {
    http::install_request_guards(*this,
                                 http::token_check{"fuzz-token-0123456789"},
                                 2048, 64 * 1024);
    http::install_error_handlers(*this);
    set_payload_max_length(64 * 1024);
    Post("/tasks", [](const httplib::Request& req, httplib::Response& res) {
      auto result = http::decode_submission(req.body, http::request_limits{}, 0);
      if (auto* err = std::get_if<http::api_error>(&result))
        http::send_error(res, *err);
      else
        http::send_json(res, 201, nlohmann::json::object());
    });
    Get(R"(/tasks/([^/]+))", [](const httplib::Request& req,
                                httplib::Response& res) {
      res.set_content(req.matches[1].str(), "text/plain");
    });
  }

  void feed(memory_stream& strm) {
    // Several requests may be pipelined in one input.
    for (int i = 0; i < 8 && !strm.done(); ++i) {
      bool closed = false;
      if (!process_request(strm, false, closed, nullptr) || closed)
        break;
    }
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz_server server;
  std::string_view text{reinterpret_cast<const char*>(data), size};
  // An upgrade never needs a body length.
  if (http::lacks_body_length(text) && http::is_websocket_upgrade(text))
    __builtin_trap();
  if (http::is_websocket_upgrade(text)) {
    auto line_end = text.find(' ', 4);
    auto target = text.substr(4, line_end == std::string_view::npos
                                   ? std::string_view::npos
                                   : line_end - 4);
    auto parsed = http::parse_stream_target(target);
    if (parsed.path.rfind("/ws", 0) != 0)
      __builtin_trap();
  }
  http::parse_stream_target(text);
  http::token_check check{"fuzz-token-0123456789"};
  check.check_websocket(text, text, text);
  memory_stream strm{data, size};
  server.feed(strm);
  return 0;
}
