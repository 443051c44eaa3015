#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>

#include "actors/core/retry_policy.hpp"
#include "actors/messages.hpp"
#include "actors/process_runner.hpp"

/// The worker actor: one per worker node.
///
/// Owns: the connection to the master (connect, register, heartbeat,
/// reconnect with backoff forever), the attempts it runs, and finished
/// results until the master acknowledges them as durable — so a result
/// survives a master crash and is reported again after the reconnect.
///
/// Takes: `assign`, `kill`, `ack` from the scheduler; `exited` from its
/// executor; `reconnect` and `beat` from its own timers; `shutdown` from the
/// process (SIGTERM).
/// Sends: `register`, `heartbeat`, `report`, `drain`, `leave` to the master;
/// `run`, `kill` to the executor.
///
/// Connection states:
///
///   disconnected ──connect ok──► registering ──accepted──► registered
///        ▲                            │                        │
///        └──── failure / backoff ─────┴──── master down ───────┘
namespace taskmaster {

struct worker_options {
  core::worker_info info;
  std::string master_host;
  uint16_t master_port = 0;
  /// Use the openssl middleman (mutual TLS) to reach the master.
  bool tls = false;
  core::retry_policy reconnect{100, 5000};
  runner_options runner;
};

struct worker_node_state {
  static inline const char* name = "worker";

  worker_options options;
  executor_actor executor;
  /// Set in standalone mode: the master lives in this process.
  cluster_actor local_master;
  cluster_actor master;
  bool connecting = false;
  bool registered = false;
  uint32_t failures = 0;
  uint32_t heartbeat_interval_ms = 1000;
  std::map<core::attempt_ref, core::assignment> running;
  std::map<core::attempt_ref, core::attempt_result> unacked;
  std::mt19937_64 rng;
  bool stopping = false;
  core::time_ms stop_deadline = 0;
  /// Set by the timer of the grace itself (CAF's steady clock), so a wall
  /// clock stepped back cannot stretch the grace.
  bool grace_over = false;
  bool handed_back = false;
  /// Stopping with results the master has not acknowledged, while the master
  /// is away: said once in the log.
  bool holding_announced = false;
  /// The master refused this worker for good (another protocol version, or
  /// its id in use): holding results for it would wait forever.
  bool master_refused = false;
  /// Stopping: when the wait for the last acknowledgements began (the stop
  /// deadline, or a registration after it).
  core::time_ms ack_wait_from = 0;
  caf::typed_response_promise<bool> stopped;
  /// Later askers of the same stop (the daemon asks again after each of its
  /// timeouts): answered together with `stopped`.
  std::vector<caf::typed_response_promise<bool>> also_stopped;
};

/// The worker actor as a CAF typed broker: run by the middleman's network
/// thread (see broker_of).
using worker_node_broker
  = caf::stateful_actor<worker_node_state, broker_of<worker_node_actor>>;

/// Spawns the worker actor and its executor. A worker process's run on its
/// network thread (worker_node_broker): an assignment from the master reaches
/// the worker, and its report is written, without waking a second thread.
/// One that shares its process with the master (`local_master` set, the
/// standalone daemon) runs on the actor thread with the master's actors, so
/// that they hand each other messages on one thread too.
worker_node_actor spawn_worker_node(caf::actor_system& sys,
                                    worker_options options,
                                    cluster_actor local_master);

} // namespace taskmaster
