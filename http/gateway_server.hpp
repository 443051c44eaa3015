#pragma once

#include <functional>

#include <httplib.h>

/// cpp-httplib's server with one addition: a request to upgrade to a
/// WebSocket on /ws is handed over (socket and all) instead of being served.
/// Debian's cpp-httplib 0.11 has no WebSocket support, and the REST API and
/// the stream must share one port.
namespace taskmaster::http {

class gateway_server : public httplib::Server {
public:
  /// Takes ownership of the socket of an upgrade request (not yet read).
  using upgrade_handler = std::function<void(int fd)>;

  /// A first request head longer than `max_header_bytes` is answered 431
  /// before httplib reads it.
  gateway_server(upgrade_handler on_upgrade, size_t max_header_bytes);

private:
  /// Replaces httplib's per-connection loop: peek at the request head; an
  /// upgrade goes to `on_upgrade_`, anything else runs the keep-alive loop
  /// through process_request.
  bool process_and_close_socket(socket_t sock) override;

  upgrade_handler on_upgrade_;
  size_t max_header_bytes_;
};

/// True when `head` (the start of a request) asks to upgrade /ws to a
/// WebSocket. Exposed for tests and the fuzzer.
bool is_websocket_upgrade(std::string_view head);

/// True when `head` (a complete request head) is a POST, PUT or PATCH with
/// neither Content-Length nor Transfer-Encoding. cpp-httplib would read such
/// a body until the connection closes, holding a pool thread for the whole
/// read timeout, so these are answered 411 at once.
bool lacks_body_length(std::string_view head);

} // namespace taskmaster::http
