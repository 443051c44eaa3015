#pragma once

#include <string>

namespace taskmaster::client {

/// `taskmasterd watch`: follows the WebSocket stream at `base_url` and
/// prints it. With a task id it exits when that task ends, with the task's
/// exit code (as `submit --wait` does).
int watch(const std::string& base_url, const std::string& token,
          const std::string& task, const std::string& topics,
          bool json_output);

} // namespace taskmaster::client
