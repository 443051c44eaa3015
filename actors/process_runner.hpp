#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "actors/core/task.hpp"
#include "actors/orphan_guard.hpp"

/// Runs task commands as child processes on one dedicated I/O thread, so the
/// thread that runs the worker's actors never blocks on a pipe or on waitpid
/// (except in the destructor, which waits a bounded time for the killed
/// children: see stop_reap_limit).
///
/// At most `slots` children run at once. Attempts started beyond that wait in
/// the runner in the master's queue order (lowest rank first) and start on
/// this thread the moment a child exits: a prefetched attempt costs no round
/// trip to anyone. One that waits longer than its `start_within_ms` is handed
/// back unstarted.
///
/// Each command runs as `/bin/sh -c COMMAND` in a new process group with
/// stdin from /dev/null. The thread polls the children's pidfds and output
/// pipes, keeps the last `output_tail_bytes` of stdout and stderr, enforces
/// timeouts (SIGTERM to the group, `kill_grace`, then SIGKILL) and kills on
/// request. A task ends when its shell exits; whatever it left running in its
/// process group is killed then, so no task leaves processes behind.
///
/// Tasks start with every signal unblocked and at its default disposition.
/// The runner reads which dispositions need resetting when it starts (plus a
/// fixed list of commonly changed ones): a program that catches or ignores
/// some other signal must do so before it builds a runner.
namespace taskmaster {

struct runner_options {
  /// Children running at once; further attempts wait (0: no limit).
  uint32_t slots = 0;
  size_t output_tail_bytes = 64 * 1024;
  std::chrono::milliseconds kill_grace{5000};
  /// Run children as this user (uid/gid/supplementary groups set in the
  /// child only). Empty: run as the daemon's user.
  std::string run_as;
  /// Environment variables of the daemon that children must not inherit.
  std::vector<std::string> hidden_env;
  /// How long a result may wait to go out together with the next ones while
  /// attempts wait here for a slot. Every slot is busy meanwhile, so waiting
  /// costs no throughput, and one report then carries several results: half
  /// the messages, wake-ups and journal commits per task under a full load.
  /// Results go out at once when nothing waits (an idle worker's latency is
  /// untouched). Zero: every result at once.
  std::chrono::milliseconds report_hold{2};
  /// Where the runner lists its children's process groups, so they die
  /// with the daemon (see orphan_guard); not owned, outlives the runner.
  /// None: a daemon that dies leaves them running.
  orphan_guard* guard = nullptr;
};

class process_runner {
public:
  /// Called on the runner thread with the results of started assignments,
  /// one or more at a time (see `runner_options::report_hold`); every
  /// assignment's result comes exactly once.
  using exit_handler = std::function<void(std::vector<core::attempt_result>)>;

  /// How long the runner waits for a shell it killed with SIGKILL (after a
  /// timeout, a kill request or at shutdown). One in uninterruptible sleep
  /// (a stuck disk or FUSE file system) dies only when the sleep ends, and
  /// one traced by a debugger goes to its tracer first: neither holds a
  /// slot, a cancellation or a worker's shutdown for good. The attempt then
  /// ends as it was to end, without an exit code, and the process is left
  /// running (reaped when it ends, while the runner lives).
  static constexpr std::chrono::seconds stop_reap_limit{2};

  /// Throws std::runtime_error when the runner cannot be set up (bad
  /// `run_as` user, no eventfd).
  process_runner(runner_options options, exit_handler on_exit);

  ~process_runner();

  process_runner(const process_runner&) = delete;
  process_runner& operator=(const process_runner&) = delete;

  /// Starts `work`, or queues it while every slot is taken (thread-safe).
  void start(core::assignment work);
  void start(std::vector<core::assignment> work);

  /// Ends an attempt: SIGTERM to its group, then SIGKILL after the grace.
  /// Its result carries `outcome` and `reason`. An attempt still waiting for
  /// a slot ends at once without running. Unknown refs are ignored.
  void kill(const core::attempt_ref& ref, core::attempt_outcome outcome,
            std::string reason);

  /// Reports `ref` as `returned` with `reason` if it is still waiting for a
  /// slot; a started or unknown attempt goes on as if nothing was asked.
  void take_back(const core::attempt_ref& ref, std::string reason);

  /// Reports every attempt still waiting for a slot as `returned` with
  /// `reason`, without running it (thread-safe).
  void hand_back_waiting(std::string reason);

  /// Number of attempts given to start() and not yet reported (held results
  /// count as not reported).
  size_t active() const {
    return active_.load();
  }

private:
  struct command {
    enum kind_t { start, kill, take_back, hand_back } kind;
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
  /// Spawns waiting attempts while a slot is free.
  void start_waiting();
  /// Hands back waiting attempts past their `start_within_ms`.
  void give_up_waiting(std::chrono::steady_clock::time_point now);
  /// Reports an attempt that never started.
  void end_unstarted(const core::assignment& work,
                     core::attempt_outcome outcome, std::string reason);
  void signal_group(child& c, int sig);
  /// Reaps the shell if it exited (killing its group first); true if so.
  bool reap(child& c);
  /// At shutdown, after SIGKILL to every group: reaps the shells until all
  /// are, or until `give_up_at`.
  void reap_killed(std::chrono::steady_clock::time_point give_up_at);
  /// Stops waiting for a shell that SIGKILL has not ended in
  /// stop_reap_limit: its attempt ends without an exit code, its slot is
  /// free, and its pid goes to abandoned_.
  void abandon(child& c);
  /// Reaps what of abandoned_ has ended by now.
  void reap_abandoned();
  /// Takes the child's group off the orphan guard (before it is reaped).
  void unguard(child& c);
  void unguard(int& guard_entry);
  enum class reap_outcome { not_yet, reaped, gone };
  /// Reaps `pid` if it has exited, taking `guard_entry` off the orphan
  /// guard first; `gone` when it is no child of ours any more.
  reap_outcome reap_if_exited(pid_t pid, int& guard_entry, int& status);
  void finish(child& c);
  /// Queues a result for the next report.
  void report(core::attempt_result r);
  /// Hands every queued result to the exit handler.
  void flush_reports();
  /// Flushes unless the results may still wait (see report_hold).
  void flush_due_reports();

  runner_options options_;
  exit_handler on_exit_;
  std::vector<std::string> base_env_;
  std::optional<uid_t> uid_;
  std::optional<gid_t> gid_;
  std::vector<gid_t> groups_;
  int wake_fd_ = -1;
  /// The stack children run on between clone and exec (see spawn).
  static constexpr size_t spawn_stack_size = 64 * 1024;
  std::unique_ptr<char[]> spawn_stack_;
  /// Signals a child sets back to SIG_DFL before exec.
  std::vector<int> reset_;
  /// Cleared once the kernel refuses CLONE_PIDFD.
  bool clone_pidfd_ = true;
  std::mutex mtx_;
  std::vector<command> inbox_;
  bool stopping_ = false;
  std::atomic<size_t> active_{0};
  /// Owned by the runner thread.
  std::map<core::attempt_ref, std::unique_ptr<child>> children_;
  /// Children whose shell has not exited yet (each holds a slot).
  uint32_t live_ = 0;
  /// Shells given up on (see abandon) and their orphan_guard entries,
  /// reaped when they end at last.
  std::vector<std::pair<pid_t, int>> abandoned_;
  struct waiting_attempt {
    core::assignment work;
    /// When it goes back unstarted (from `work.start_within_ms`).
    std::optional<std::chrono::steady_clock::time_point> give_up_at;
  };
  /// Attempts waiting for a slot, lowest rank first, then in arrival order.
  std::deque<waiting_attempt> waiting_;
  /// Results not reported yet, and since when the oldest waits.
  std::vector<core::attempt_result> held_;
  std::chrono::steady_clock::time_point held_since_;
  /// Descriptors to close in a child when close_range is missing (kernels
  /// before 5.9).
  int max_fd_ = 1024;
  std::thread thread_;
};

} // namespace taskmaster
