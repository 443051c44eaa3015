#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

/// Time in the scheduling core is an integer: milliseconds since the Unix
/// epoch, UTC. The core never reads a clock; callers pass `now` in.
namespace taskmaster::core {

using time_ms = int64_t;

/// Formats as RFC 3339 with milliseconds in UTC, e.g.
/// `2026-11-26T18:55:03.123Z`. Returns an empty string for 0 ("never").
std::string format_rfc3339(time_ms t);

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm|-hh:mm]`).
std::optional<time_ms> parse_rfc3339(std::string_view text);

} // namespace taskmaster::core
