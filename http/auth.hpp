#pragma once

#include <string>
#include <string_view>
#include <vector>

/// API token checks for REST requests and WebSocket upgrades.
namespace taskmaster::http {

/// Compares in time that depends only on the lengths of the SHA-256
/// digests (not on where the strings differ).
bool tokens_equal(std::string_view expected, std::string_view given);

/// The entries of a Sec-WebSocket-Protocol header ("a, b,c"), trimmed. The
/// token travels in one of them (browsers cannot set headers on a WebSocket).
std::vector<std::string_view> websocket_subprotocols(std::string_view header);

class token_check {
public:
  /// An empty token disables authentication.
  explicit token_check(std::string token) : token_(std::move(token)) {
  }

  bool enabled() const {
    return !token_.empty();
  }

  /// Accepts `Authorization: Bearer TOKEN`.
  bool accepts_header(std::string_view authorization) const;

  /// Returns an empty string when any of the WebSocket credentials is the
  /// token (header, `token` query parameter, or a subprotocol
  /// `taskmaster.bearer.TOKEN`), else the reason for a 401.
  std::string check_websocket(std::string_view authorization,
                              std::string_view token_param,
                              std::string_view protocols) const;

private:
  std::string token_;
};

} // namespace taskmaster::http
