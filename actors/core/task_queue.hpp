#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "actors/core/task.hpp"

namespace taskmaster::core {

/// The ready queue: tasks that may start now, waiting for a slot.
///
/// Order: every task gets a rank when it enters the queue,
/// `rank = ready_since - priority * aging_interval`, and the lowest rank goes
/// first. Within one priority that is FIFO. Across priorities a higher one
/// wins, but only by `aging_interval` per level: a LOW task that has waited
/// three intervals longer than a CRITICAL one goes before it. That is aging
/// with a fixed rank, so the queue stays a plain ordered set (O(log n) push,
/// erase and pop) and LOW tasks cannot starve under a steady stream of
/// higher ones.
///
/// Tasks are grouped into placement classes by their label constraints, so a
/// task no worker can take does not block the tasks behind it.
class task_queue {
public:
  explicit task_queue(time_ms aging_interval);

  /// One group of tasks with identical label constraints.
  struct placement_class {
    string_map labels;
    /// Ordered by (rank, id); the value is the task's priority.
    std::map<std::pair<time_ms, task_id>, priority> entries;
  };

  /// Queues a task. The queue keeps no per-task index (a million queued
  /// tasks cost one tree node each): callers name a task by what they
  /// queued it with.
  void push(task_id id, priority prio, const string_map& labels,
            time_ms ready_since);

  /// Removes a queued task; false when it is not queued.
  bool erase(task_id id, priority prio, const string_map& labels,
             time_ms ready_since);

  size_t size() const {
    return size_;
  }

  size_t size(priority prio) const {
    return per_priority_[static_cast<size_t>(prio)];
  }

  /// The classes with at least one task, keyed by canonical label text.
  std::map<std::string, placement_class>& classes() {
    return classes_;
  }

  const std::map<std::string, placement_class>& classes() const {
    return classes_;
  }

  /// The class for these labels, or nullptr when none of its tasks queue.
  const placement_class* class_of(const string_map& labels) const;

  /// Removes and returns the head of a class (which must not be empty).
  task_id pop_front(const std::string& class_key);

  /// Moves every task of `other` (same aging interval) in here, each at its
  /// rank, and leaves `other` empty. Tree nodes move, nothing is copied.
  void absorb(task_queue& other);

  time_ms rank(priority prio, time_ms ready_since) const {
    return ready_since - static_cast<time_ms>(prio) * aging_interval_;
  }

private:
  time_ms aging_interval_;
  std::map<std::string, placement_class> classes_;
  size_t size_ = 0;
  std::array<size_t, priority_count> per_priority_{};
};

} // namespace taskmaster::core
