#pragma once

#include <chrono>
#include <cstdio>
#include <string_view>

#include <fmt/format.h>

#include "actors/core/time.hpp"

/// Daemon log lines on stderr: `<RFC 3339 time> <LEVEL> <message>`. One line
/// per call, written with a single fwrite so lines from threads don't mix.
namespace taskmaster::log {

inline core::time_ms wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

inline void write(std::string_view level, std::string_view message) {
  auto line = fmt::format("{} {} {}\n", core::format_rfc3339(wall_clock_ms()),
                          level, message);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

template <class... Ts>
void info(fmt::format_string<Ts...> format, Ts&&... args) {
  write("INFO", fmt::format(format, std::forward<Ts>(args)...));
}

template <class... Ts>
void warn(fmt::format_string<Ts...> format, Ts&&... args) {
  write("WARN", fmt::format(format, std::forward<Ts>(args)...));
}

template <class... Ts>
void error(fmt::format_string<Ts...> format, Ts&&... args) {
  write("ERROR", fmt::format(format, std::forward<Ts>(args)...));
}

} // namespace taskmaster::log
