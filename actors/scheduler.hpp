#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/core/scheduler_core.hpp"
#include "actors/messages.hpp"
#include "actors/store/task_journal.hpp"

/// The scheduler actor: the actor shell around core::scheduler_core.
///
/// Owns: the core (task table, queue, cluster view), the handles of
/// registered workers, pending submissions waiting for their journal commit,
/// and long-poll waiters.
///
/// Takes: from workers (through cluster_endpoint) `register`, `heartbeat`,
/// `report`, `drain`, `leave`; from the gateway `submit`, `lookup`, `list`,
/// `cancel`, `workers`, `stats`, `shutdown`; from itself `tick`, `flush`
/// (held-back events), `ack` (held-back acknowledgements) and `committed`
/// (the journal's commit callback).
///
/// Sends: `assign`, `kill`, `ack` to workers; `event` batches to the monitor.
///
/// Every handler decodes, calls one core function with `now`, and carries out
/// the returned plan: journal the changed tasks, send assignments and kills,
/// acknowledge results once durable, publish events.
namespace taskmaster {

struct scheduler_options {
  /// Its tick_interval paces the scheduler's timer.
  core::scheduler_settings settings;
  /// How long an acknowledgement may wait for an assignment to the same
  /// worker to ride on. Under load most do (one message per task instead of
  /// two); idle, this is how much longer a worker holds a result.
  caf::timespan ack_delay = std::chrono::milliseconds(5);
  uint32_t heartbeat_interval_ms = 1000;
  /// A long poll tells a task ended only once that is on disk. A standalone
  /// master needs it: its worker, which keeps a result until the master has
  /// it on disk, dies with it. A master of worker processes does not (only
  /// both dying within --journal-group-delay could undo what a client was
  /// told), and answers at once.
  bool answers_wait_for_disk = false;
};

struct scheduler_state {
  static inline const char* name = "scheduler";

  struct pending_submit {
    caf::typed_response_promise<submit_reply> promise;
    core::admission admission;
  };

  /// A registration waiting for its worker's row in the journal.
  struct pending_registration {
    caf::typed_response_promise<register_reply> promise;
    register_request request;
    worker_actor handle;
  };

  struct waiter {
    caf::typed_response_promise<task_lookup> promise;
    core::time_ms deadline;
  };

  std::unique_ptr<core::scheduler_core> core;
  std::shared_ptr<store::task_journal> journal;
  monitor_actor monitor;
  scheduler_options options;
  std::map<std::string, worker_actor> workers;
  std::mt19937_64 rng;
  uint64_t next_token = 0;
  std::unordered_map<uint64_t, pending_submit> submits;
  std::unordered_map<uint64_t, pending_registration> registrations;
  std::unordered_map<uint64_t,
                     std::vector<std::pair<std::string, core::attempt_ref>>>
    acks;
  std::unordered_map<uint64_t, caf::typed_response_promise<bool>> barriers;
  /// Cancellations answered once their CANCELLED state is on disk.
  std::unordered_map<uint64_t, std::pair<caf::typed_response_promise<
                                           cancel_reply>,
                                         cancel_reply>>
    cancels;
  /// Tasks whose cancellation the journal failed to store: asked again,
  /// they are answered the same way, not as a success.
  std::unordered_set<core::task_id> unstored_cancels;
  /// Journaled results not yet acknowledged to their worker.
  std::map<std::string, std::vector<core::attempt_ref>> unsent_acks;
  bool acks_flush_scheduled = false;
  /// Events not yet sent to the monitor.
  event_batch unsent_events;
  /// How many workers the restart wait awaited when last told (a change is
  /// told to watchers at once: event_batch::restart_wait_changed).
  size_t awaited_seen = 0;
  bool events_flush_queued = false;
  std::unordered_map<core::task_id, std::vector<waiter>> waiters;
  /// Long polls answered once a journal barrier is through (see
  /// scheduler_options::answers_wait_for_disk), by barrier token.
  std::unordered_map<uint64_t, std::pair<core::task_id, std::vector<waiter>>>
    answers_after_barrier;
  bool stopping = false;
  /// Sequence number of the last event sent to the monitor.
  uint64_t event_seq = 0;
};

/// `restored` is what the journal held at start.
scheduler_actor::behavior_type
scheduler(scheduler_actor::stateful_pointer<scheduler_state> self,
          scheduler_options options,
          std::shared_ptr<store::task_journal> journal,
          store::journal_contents restored, monitor_actor monitor);

/// The actor published on the cluster port. It only forwards the worker
/// protocol to the scheduler, so whoever reaches the port cannot submit,
/// cancel or read tasks.
cluster_actor::behavior_type cluster_endpoint(cluster_actor::pointer self,
                                              scheduler_actor scheduler);

/// A task as clients see it: the record with its current `reason`, and
/// without output tails and environment unless `full`.
core::task_record client_view(const core::scheduler_core& core,
                              const core::task_record& task, bool full);

} // namespace taskmaster
