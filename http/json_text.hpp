#pragma once

#include <string>
#include <string_view>

#include "actors/core/task.hpp"

/// JSON written straight into a string, for the one shape that is written
/// thousands of times a second: the task. (A nlohmann::json DOM of a task is
/// dozens of allocations; a 1,000-task batch answer spent half its time
/// building and dumping them.) Everything else uses nlohmann::json.
namespace taskmaster::http {

/// Appends `text` as a JSON string literal. Invalid UTF-8 becomes U+FFFD, as
/// nlohmann's `error_handler_t::replace` does.
void append_json_string(std::string& out, std::string_view text);

/// Appends a task object (see README for the fields); `full` adds env,
/// stdout and stderr.
void append_task(std::string& out, const core::task_record& task, bool full);

inline std::string task_text(const core::task_record& task, bool full) {
  std::string out;
  append_task(out, task, full);
  return out;
}

} // namespace taskmaster::http
