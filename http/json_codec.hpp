#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/core/task.hpp"
#include "actors/messages.hpp"
#include "http/api_error.hpp"
#include "http/json_text.hpp"

/// JSON in and out of the REST API. Decoding validates everything a client
/// can get wrong and names the offending field; encoding is the one place
/// that decides what a task, a worker or the summary looks like on the wire.
namespace taskmaster::http {

using nlohmann::json;

/// Bounds on what one request may ask for.
struct request_limits {
  size_t max_batch_tasks = 10'000;
  size_t max_command_bytes = 64 * 1024;
  size_t max_name_bytes = 256;
  size_t max_description_bytes = 4096;
  size_t max_labels = 32;
  size_t max_label_bytes = 256;
  size_t max_env = 256;
  size_t max_env_value_bytes = 32 * 1024;
  size_t max_idempotency_key_bytes = 256;
  uint32_t max_timeout_seconds = 30 * 24 * 3600;
  int32_t max_retries = 100;
};

/// A decoded POST /tasks body.
struct submission {
  std::vector<core::task_spec> specs;
  /// The body was an array (the answer is an array too).
  bool batch = false;
};

/// Parses and validates a POST /tasks body. `now` turns `delay_seconds`
/// into a start time.
std::variant<submission, api_error>
decode_submission(std::string_view body, const request_limits& limits,
                  core::time_ms now);

/// One task object (exposed for tests and the fuzzer).
std::variant<core::task_spec, api_error>
decode_task_spec(const json& j, const request_limits& limits,
                 core::time_ms now, const std::string& where);

/// `full` adds env, stdout and stderr. The wire text comes from
/// task_text() (json_text.hpp); this parses it for callers that want a DOM.
json encode_task(const core::task_record& task, bool full);

json encode_worker(const worker_view& worker, core::time_ms now);

json encode_summary(const cluster_summary& summary);

// -- the WebSocket stream (messages have a "type"; see README) ----------------

/// {"type": "task", "event": "submitted|started|requeued|finished", ...}
std::string encode_task_event(const task_event& e);

/// {"type": "worker", "event": "joined|draining|lost|left", ...}
json encode_worker_event(const worker_event& e, core::time_ms now);

/// {"type": "snapshot", "seq", "summary", "workers", "tasks"}; a client that
/// does not follow workers or tasks gets no such key.
std::string encode_snapshot(const cluster_snapshot& s, core::time_ms now,
                            bool with_workers = true, bool with_tasks = true);

/// Serializes for the wire; invalid UTF-8 in output tails is replaced.
std::string dump(const json& j);

} // namespace taskmaster::http
