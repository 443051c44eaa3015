#pragma once

#include <map>
#include <string>
#include <string_view>

namespace taskmaster::http {

/// The path and decoded query parameters of a /ws request target.
struct stream_target {
  std::string path;
  std::map<std::string, std::string> params;
  /// A parameter given more than once (then `params` holds its first
  /// value), or empty.
  std::string repeated;
};

/// Splits `/ws?task=3&topics=tasks` into path and percent-decoded
/// parameters.
stream_target parse_stream_target(std::string_view target);

} // namespace taskmaster::http
