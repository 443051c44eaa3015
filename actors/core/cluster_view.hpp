#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <optional>

#include "actors/core/task.hpp"

namespace taskmaster::core {

/// Liveness of a worker as the master sees it.
///   UP ──drain──► DRAINING ──last task done──► LEFT
///   UP/DRAINING ──connection lost or heartbeats stop──► LOST
///   LOST/LEFT ──registers again──► UP
enum class worker_status : uint8_t { up = 0, draining = 1, lost = 2, left = 3 };

std::string_view to_string(worker_status x);

/// What a worker says about itself when it registers.
struct worker_info {
  std::string id;
  std::string host;
  uint32_t slots = 1;
  string_map labels;
  /// Random per worker process: tells a reconnect of the same process from a
  /// second process that uses the same id.
  uint64_t incarnation = 0;
};

struct worker_state {
  worker_info info;
  worker_status status = worker_status::up;
  time_ms connected_at = 0;
  time_ms last_heartbeat = 0;
  time_ms status_since = 0;
  /// Attempts the master believes this worker holds: running, or prefetched
  /// and waiting there for a slot.
  std::set<attempt_ref> running;
  /// Load average reported by the worker's heartbeat (informational).
  double load_average = 0;
  /// Increasing counter of the last assignment, for round-robin tie breaks.
  uint64_t last_assigned = 0;
  uint64_t tasks_finished = 0;
  /// How long this worker's recent attempts ran (ms, exponentially
  /// weighted); negative until one has ended.
  double recent_run_ms = -1;
  /// Attempts the master may hand this worker beyond its slots (see
  /// scheduler_settings::prefetch_budget); at most
  /// `info.slots * (max_held_per_slot - 1)`.
  uint32_t prefetch = 0;
  /// The attempts of `running` handed to it beyond its free slots, with
  /// their queue rank: the only ones that may still wait there unstarted
  /// (one handed to a free slot starts at once), until their result comes.
  std::map<attempt_ref, time_ms> prefetched;
  /// The attempts of `prefetched` asked back for a slot idling elsewhere,
  /// with the worker whose slot idled (see
  /// scheduler_core::reclaim_for_idle_slots), until their result comes:
  /// handed back unstarted, or run after all.
  std::map<attempt_ref, std::string> reclaiming;

  /// Forgets everything the worker holds (it was lost, left or registered
  /// afresh) and returns what it held.
  std::set<attempt_ref> release_all() {
    prefetched.clear();
    reclaiming.clear();
    auto held = std::move(running);
    running.clear();
    return held;
  }

  /// True while it holds more than its slots can run, so some attempts wait
  /// there, and not all it was handed beyond its slots have been asked back.
  bool may_hand_back() const {
    return running.size() > info.slots + reclaiming.size()
           && prefetched.size() > reclaiming.size();
  }

  uint32_t used_slots() const {
    return std::min(static_cast<uint32_t>(running.size()), info.slots);
  }

  uint32_t free_slots() const {
    return info.slots - used_slots();
  }

  /// Attempts it can take now, prefetch included.
  uint32_t room() const {
    auto held = static_cast<uint32_t>(running.size());
    auto limit = info.slots + prefetch;
    return held >= limit ? 0 : limit - held;
  }
};

/// A worker holds at most this many attempts per slot (running plus
/// prefetched); more is a protocol error it refuses. More prefetched per slot
/// let one report carry more results (see runner_options::report_hold):
/// under a full load of short tasks, two instead of one took about 8% off
/// the daemons' CPU per task (7 alternating pairs), three instead of two
/// another 7% (3 alternating triples; four gave 2% more).
constexpr uint32_t max_held_per_slot = 4;

/// Where a task of a given placement class could go, or why it cannot.
struct placement {
  /// Empty when no worker can take the task now.
  std::string worker_id;
  /// Set when `worker_id` is empty.
  std::string reason;
  /// True when some live worker matches the labels but all are busy (the
  /// ordinary case of waiting for a slot, as opposed to a constraint that no
  /// connected worker can satisfy).
  bool waiting_for_slot = false;
};

/// The master's view of its workers. Placement lives here because it is a
/// pure question about this view: which live worker with a free slot and the
/// right labels is least loaded?
class cluster_view {
public:
  std::map<std::string, worker_state>& workers() {
    return workers_;
  }

  const std::map<std::string, worker_state>& workers() const {
    return workers_;
  }

  worker_state* find(const std::string& id);

  const worker_state* find(const std::string& id) const;

  /// Least loaded (held/slots, then fewest held, then longest since its last
  /// assignment) UP worker with room whose labels cover `want`. A free slot
  /// always wins over prefetching; `free_slot_only` rules prefetching out.
  placement place(const string_map& want, bool free_slot_only = false) const;

  /// Marks that `worker` got one more attempt.
  void assign(worker_state& worker, const attempt_ref& ref);

  uint32_t free_slots() const;
  /// Sum of room() over UP workers.
  uint32_t room() const;
  uint32_t total_slots() const;
  uint32_t used_slots() const;
  size_t count(worker_status status) const;

private:
  std::map<std::string, worker_state> workers_;
  uint64_t assign_counter_ = 0;
};

} // namespace taskmaster::core
