#pragma once

#include <cstdint>

#include "actors/messages.hpp"
#include "http/ws_hub.hpp"

/// The gateway actor: subscribes to the monitor's event stream, turns each
/// batch into WebSocket messages (serialized once for all sessions), answers
/// sessions' snapshot requests by asking the scheduler, and once a second
/// publishes a "stats" message with the summary and throughput.
namespace taskmaster::http {

struct stream_bridge_state {
  static inline const char* name = "gateway";
  ws_hub* hub = nullptr;
  scheduler_actor scheduler;
  /// Task ends and submissions since the last stats message.
  uint64_t finished = 0;
  uint64_t submitted = 0;
  core::time_ms last_tick = 0;
};

gateway_actor::behavior_type
stream_bridge(gateway_actor::stateful_pointer<stream_bridge_state> self,
              ws_hub* hub, scheduler_actor scheduler, monitor_actor monitor);

} // namespace taskmaster::http
