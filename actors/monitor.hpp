#pragma once

#include <memory>

#include "actors/messages.hpp"
#include "actors/task_metrics.hpp"

/// The monitor owns the metrics and the list of event subscribers.
///
/// Takes: `event` batches from the scheduler (every task and worker change,
/// plus the cluster summary); `subscribe` / `unsubscribe` from gateways.
/// Sends: each batch on to every subscriber. A subscriber that terminates is
/// dropped (the monitor watches it).
namespace taskmaster {

struct monitor_state {
  static inline const char* name = "monitor";
  std::shared_ptr<task_metrics> metrics;
  std::vector<subscriber_actor> subscribers;
};

monitor_actor::behavior_type
monitor(monitor_actor::stateful_pointer<monitor_state> self,
        std::shared_ptr<task_metrics> metrics);

} // namespace taskmaster
