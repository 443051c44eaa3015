#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "actors/core/task.hpp"

/// Runs task commands as child processes on one dedicated I/O thread, so no
/// CAF scheduler thread ever blocks on a pipe or on waitpid.
///
/// Each command runs as `/bin/sh -c COMMAND` in a new process group with
/// stdin from /dev/null. The thread polls the children's pidfds and output
/// pipes, keeps the last `output_tail_bytes` of stdout and stderr, enforces
/// timeouts (SIGTERM to the group, `kill_grace`, then SIGKILL) and kills on
/// request. A task ends when its shell exits; whatever it left running in its
/// process group is killed then, so no task leaves processes behind.
namespace taskmaster {

struct runner_options {
  size_t output_tail_bytes = 64 * 1024;
  std::chrono::milliseconds kill_grace{5000};
  /// Run children as this user (uid/gid/supplementary groups set in the
  /// child only). Empty: run as the daemon's user.
  std::string run_as;
  /// Environment variables of the daemon that children must not inherit.
  std::vector<std::string> hidden_env;
};

class process_runner {
public:
  /// Called on the runner thread once per started assignment.
  using exit_handler = std::function<void(core::attempt_result)>;

  /// Throws std::runtime_error when the runner cannot be set up (bad
  /// `run_as` user, no eventfd).
  process_runner(runner_options options, exit_handler on_exit);

  ~process_runner();

  process_runner(const process_runner&) = delete;
  process_runner& operator=(const process_runner&) = delete;

  /// Starts `work` (thread-safe).
  void start(core::assignment work);

  /// Ends an attempt: SIGTERM to its group, then SIGKILL after the grace.
  /// Its result carries `outcome` and `reason`. Unknown refs are ignored.
  void kill(const core::attempt_ref& ref, core::attempt_outcome outcome,
            std::string reason);

  /// Number of attempts started and not yet reported.
  size_t active() const {
    return active_.load();
  }

private:
  struct command {
    enum kind_t { start, kill } kind;
    core::assignment work;
    core::attempt_ref ref;
    core::attempt_outcome outcome = core::attempt_outcome::cancelled;
    std::string reason;
  };

  struct child;

  void run();
  void wake();
  void handle(command& cmd);
  void spawn(core::assignment work);
  void signal_group(child& c, int sig);
  /// Reaps the shell if it exited (killing its group first); true if so.
  bool reap(child& c);
  void finish(child& c);

  runner_options options_;
  exit_handler on_exit_;
  std::vector<std::string> base_env_;
  std::optional<uid_t> uid_;
  std::optional<gid_t> gid_;
  std::vector<gid_t> groups_;
  int wake_fd_ = -1;
  std::mutex mtx_;
  std::vector<command> inbox_;
  bool stopping_ = false;
  std::atomic<size_t> active_{0};
  /// Owned by the runner thread.
  std::map<core::attempt_ref, std::unique_ptr<child>> children_;
  std::thread thread_;
};

} // namespace taskmaster
