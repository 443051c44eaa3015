#pragma once

#include <cstdint>
#include <map>
#include <optional>
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

/// Answer header of a /ws upgrade: how often, in milliseconds, the server
/// pings a silent client. A client that hears nothing (no event, no ping)
/// for several such intervals knows the server is stuck, not quiet.
inline constexpr const char* ping_interval_header
  = "X-TaskMaster-Ping-Interval-Ms";

/// The topics a stream session can follow, as bits.
enum stream_topic : uint8_t {
  topic_tasks = 1,
  topic_workers = 2,
  topic_stats = 4,
};

/// Reads a `topics` list ("tasks,workers,stats", empty items skipped) into
/// stream_topic bits (0 when it names none). An unknown name gives nullopt,
/// with the name in `unknown`. The server and the client (which checks
/// before it connects) read it here alike.
std::optional<uint8_t> parse_topics(std::string_view list,
                                    std::string& unknown);

} // namespace taskmaster::http
