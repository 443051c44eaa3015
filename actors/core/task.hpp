#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/time.hpp"

/// The task model: what a user submits, what the master keeps about it, and
/// the attempt history. Plain data, shared by the scheduling core, the store,
/// the JSON codec and (through `inspect` overloads in actors/messages.hpp) the
/// actors.
namespace taskmaster::core {

using task_id = uint64_t;

/// Scheduling priority. The numeric value is the rank used by the queue.
enum class priority : uint8_t { low = 0, medium = 1, high = 2, critical = 3 };

constexpr size_t priority_count = 4;

/// The status of a task. QUEUED and RUNNING are live; the others are final.
enum class task_status : uint8_t {
  queued = 0,
  running = 1,
  succeeded = 2,
  failed = 3,
  timed_out = 4,
  cancelled = 5,
};

constexpr size_t task_status_count = 6;

/// How one attempt ended. `lost` (the worker vanished) and `returned` (the
/// worker handed the task back unstarted or on shutdown) put the task back in
/// the queue without counting as a failure of the command.
enum class attempt_outcome : uint8_t {
  running = 0,
  succeeded = 1,
  failed = 2,
  timed_out = 3,
  cancelled = 4,
  lost = 5,
  returned = 6,
};

std::string_view to_string(priority x);
std::string_view to_string(task_status x);
std::string_view to_string(attempt_outcome x);

std::optional<priority> parse_priority(std::string_view text);
std::optional<task_status> parse_task_status(std::string_view text);
std::optional<attempt_outcome> parse_attempt_outcome(std::string_view text);

/// True for SUCCEEDED, FAILED, TIMED_OUT and CANCELLED.
bool is_final(task_status x);

using string_map = std::map<std::string, std::string>;

/// What a client asks for. Validated by the HTTP codec before it gets here.
struct task_spec {
  std::string command;
  std::string name;
  std::string description;
  priority prio = priority::medium;
  /// 0 means no timeout.
  uint32_t timeout_seconds = 0;
  /// -1 means "use the master's default".
  int32_t max_retries = -1;
  /// Placement constraints: a worker must carry every one of these labels.
  string_map labels;
  string_map env;
  /// Earliest start (ms since epoch); 0 means "as soon as possible".
  time_ms run_at = 0;
  /// Empty means "no deduplication".
  std::string idempotency_key;
  /// Per-task retry backoff overrides in milliseconds; 0 means the default.
  uint32_t retry_backoff_ms = 0;
  uint32_t retry_backoff_max_ms = 0;
};

/// Identifies one attempt of one task. A report that names an attempt that is
/// no longer the task's current one is stale.
///
/// `epoch` counts master starts on a data directory. A master that crashed
/// after sending an assignment but before journaling it numbers the task's
/// next attempt the same again; the epoch keeps the two apart, so a worker's
/// result for the forgotten one cannot end the new one.
struct attempt_ref {
  task_id task = 0;
  uint32_t attempt = 0;
  uint32_t epoch = 0;

  friend bool operator==(const attempt_ref& a, const attempt_ref& b) {
    return a.task == b.task && a.attempt == b.attempt && a.epoch == b.epoch;
  }
  friend bool operator!=(const attempt_ref& a, const attempt_ref& b) {
    return !(a == b);
  }
  friend bool operator<(const attempt_ref& a, const attempt_ref& b) {
    if (a.task != b.task)
      return a.task < b.task;
    if (a.attempt != b.attempt)
      return a.attempt < b.attempt;
    return a.epoch < b.epoch;
  }
};

std::string to_string(const attempt_ref& x);

/// The history entry for one attempt.
struct attempt_record {
  uint32_t number = 0;
  /// The master epoch that started it (see attempt_ref).
  uint32_t epoch = 0;
  std::string worker_id;
  time_ms started_at = 0;
  time_ms finished_at = 0;
  /// Meaningful only when `has_exit_code`.
  int32_t exit_code = 0;
  bool has_exit_code = false;
  attempt_outcome outcome = attempt_outcome::running;
  std::string reason;

  /// False for an attempt that ended before its command started (prefetched,
  /// then handed back): it stays in the history but was not a run.
  bool ran() const {
    return started_at != 0;
  }
};

/// The master's full record of a task.
struct task_record {
  task_id id = 0;
  task_spec spec;
  task_status status = task_status::queued;
  time_ms created_at = 0;
  time_ms started_at = 0;
  time_ms finished_at = 0;
  /// While QUEUED: not dispatched before this time (delayed start, retry
  /// backoff). 0 when the task may run now.
  time_ms not_before = 0;
  /// When the task last entered the queue (for the queue-wait metric).
  time_ms queued_at = 0;
  /// The effective retry budget (spec value or the master's default).
  uint32_t max_retries = 0;
  std::vector<attempt_record> attempts;
  /// The worker of the running or final attempt; empty while QUEUED (the
  /// attempts keep where each ran). started_at and the exit code likewise.
  std::string worker_id;
  int32_t exit_code = 0;
  bool has_exit_code = false;
  std::string stdout_tail;
  std::string stderr_tail;
  /// Everything the last attempt wrote to each stream; more than the tail's
  /// size means the tail is cut (it keeps the end).
  uint64_t stdout_bytes = 0;
  uint64_t stderr_bytes = 0;
  /// Why the task is where it is (placement problems, retry, cancel, ...).
  std::string reason;
  /// Set when an attempt came back unstarted from a worker's prefetch: from
  /// then on the task waits for a free slot, so it cannot hop from one busy
  /// worker to the next. Not journaled.
  bool no_prefetch = false;
  /// The queue-wait metric has counted the wait since `queued_at`: a task
  /// that goes back to its place waits on from the same moment. Not
  /// journaled.
  bool wait_counted = false;

  /// The attempt currently running or last run, if any.
  const attempt_record* current_attempt() const {
    return attempts.empty() ? nullptr : &attempts.back();
  }
  attempt_ref current_ref() const {
    if (attempts.empty())
      return {id, 0, 0};
    return {id, attempts.back().number, attempts.back().epoch};
  }
  /// The attempt `ref` names (number and epoch), if this task has it.
  const attempt_record* find_attempt(const attempt_ref& ref) const {
    for (const auto& a : attempts)
      if (a.number == ref.attempt && a.epoch == ref.epoch)
        return &a;
    return nullptr;
  }
};

/// What a worker reports when an attempt ends.
struct attempt_result {
  attempt_ref ref;
  attempt_outcome outcome = attempt_outcome::failed;
  int32_t exit_code = 0;
  bool has_exit_code = false;
  time_ms started_at = 0;
  time_ms finished_at = 0;
  std::string stdout_tail;
  std::string stderr_tail;
  /// Bytes written to each stream in all (the tails keep the last ones).
  uint64_t stdout_bytes = 0;
  uint64_t stderr_bytes = 0;
  std::string reason;
};

/// What the master hands to a worker.
struct assignment {
  attempt_ref ref;
  std::string command;
  string_map env;
  uint32_t timeout_seconds = 0;
  /// The task's rank in the master's queue (see task_queue): a worker that
  /// holds attempts beyond its free slots starts the lowest rank first, in
  /// the master's order, aging included.
  time_ms rank = 0;
  /// For a prefetched attempt: if it has not started within this many ms,
  /// the worker hands it back unstarted (0: no limit). A prefetch guessed
  /// wrong (a long task ahead of it) then costs a bounded wait.
  uint32_t start_within_ms = 0;
};

/// Variables every attempt finds in its environment, set by the worker; a
/// task's own `env` may not set them.
inline constexpr std::string_view task_id_variable = "TASKMASTER_TASK_ID";
inline constexpr std::string_view attempt_variable = "TASKMASTER_ATTEMPT";

/// Labels are written `k=v,k=v` on command lines and in config files;
/// `\,`, `\=` and `\\` stand for the character itself (`PATH=/a\,/b` is
/// one entry), and any other backslash is kept (`RE=^\d+$`).
/// Returns nullopt when an entry has no `=`, an empty key, or a key seen
/// before (`gpu=1,gpu=2` would otherwise keep one value without a word).
std::optional<string_map> parse_labels(std::string_view text);

/// Canonical `k=v,k=v` form (sorted by key), with `\`, `,` and `=` inside a
/// key or value escaped: parse_labels reads it back, and two different maps
/// never share a form. The empty string for no labels.
std::string format_labels(const string_map& labels);

/// Length of the valid UTF-8 sequence starting at `s[i]`, or 0.
size_t utf8_sequence(std::string_view s, size_t i);

/// Why `id` cannot name a worker, or "" when it can. Ids appear in logs,
/// tables and stream lines, and must tell workers apart as printed: 1 to 128
/// bytes of UTF-8 without spaces or control characters.
std::string worker_id_problem(std::string_view id);

/// Why a worker's labels cannot be used, or "": keys and values are UTF-8
/// without control characters (a label is printed where its worker is).
std::string worker_labels_problem(const string_map& labels);

/// True when `have` carries every key of `want` with the same value.
bool labels_match(const string_map& want, const string_map& have);

/// What a spec leaves to the master (`max_retries` -1, a backoff 0).
struct spec_defaults {
  uint32_t max_retries = 0;
  time_ms retry_backoff_ms = 0;
  time_ms retry_backoff_max_ms = 0;
};

/// The API name of the first field in which `a` and `b` ask for different
/// tasks, or "" when they ask for the same one. An idempotency key names one
/// task: resubmitting it with another command is a client bug, not a retry.
/// A field left to the master equals that field given as its default.
/// `run_at` is left out: `delay_seconds` counts from each submission, so a
/// retried request asks for a later start every time.
std::string_view first_difference(const task_spec& a, const task_spec& b,
                                  const spec_defaults& defaults);

} // namespace taskmaster::core
