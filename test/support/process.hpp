#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace taskmaster::test {

/// A child process this test started. Tests only ever signal processes they
/// started, by PID; the destructor kills and reaps one still running.
class process {
public:
  /// Starts `argv` with stdout and stderr appended to the given files and
  /// `env` added to the environment (replacing variables of the same name).
  process(const std::vector<std::string>& argv, const std::string& out_path,
          const std::string& err_path,
          const std::vector<std::string>& env = {});

  ~process();

  process(const process&) = delete;
  process& operator=(const process&) = delete;

  pid_t pid() const {
    return pid_;
  }

  bool running();

  void signal(int sig);

  /// Waits (bounded) for the exit; returns the exit code, 128+signal for a
  /// signal death, or nullopt when it did not exit in time.
  std::optional<int> wait(std::chrono::milliseconds limit);

  /// SIGTERM (or `sig`), wait up to `limit`, then SIGKILL. Returns the exit
  /// status as `wait` does.
  std::optional<int> stop(int sig, std::chrono::milliseconds limit);

private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// Reads a whole file ("" when missing).
std::string read_file(const std::string& path);

} // namespace taskmaster::test
