#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/typed_broker.hpp>

#include "actors/core/cluster_view.hpp"
#include "actors/core/scheduler_core.hpp"
#include "actors/core/task.hpp"

/// The whole TaskMaster protocol on one screen: the atoms, the message types
/// with their `inspect` overloads, the one type-ID block, and the typed-actor
/// interfaces of every actor.
namespace taskmaster {

/// Bumped whenever a message type or an interface below changes. It is part
/// of the middleman's app identifier, so nodes of different versions refuse
/// each other at the handshake.
constexpr uint32_t protocol_version = 7;

// -- messages between workers and the master ----------------------------------

/// A worker introduces itself: what it is, what it still runs, and results
/// the master has not acknowledged yet (kept across master restarts).
struct register_request {
  core::worker_info info;
  std::vector<core::attempt_ref> running;
  std::vector<core::attempt_result> results;
};

struct register_reply {
  bool accepted = false;
  /// Why not, when not accepted.
  std::string message;
  /// How often the master wants heartbeats.
  uint32_t heartbeat_interval_ms = 1000;
};

// -- messages between the gateway and the scheduler ---------------------------

enum class submit_status : uint8_t {
  ok,
  queue_full,
  journal_failed,
  stopping,
  /// An idempotency key was reused for another task (see `conflict`).
  key_conflict,
};

struct submit_reply {
  submit_status status = submit_status::ok;
  std::vector<core::task_record> tasks;
  /// Per task: 1 if created, 0 if an idempotency key matched an existing one.
  std::vector<uint8_t> created;
  /// With key_conflict: which spec, and what it collided with.
  core::key_conflict conflict;
};

struct task_lookup {
  bool found = false;
  core::task_record task;
};

/// GET /tasks filters; -1 means "any".
struct task_query {
  int16_t status = -1;
  int16_t prio = -1;
  core::task_id cursor = 0;
  uint32_t limit = 100;
};

struct task_listing {
  /// Without output tails and environment (those come with GET /tasks/{id}).
  std::vector<core::task_record> tasks;
  core::task_id next_cursor = 0;
};

enum class cancel_result : uint8_t {
  cancelled,
  already_cancelled,
  conflict,
  not_found,
  /// Cancelled in memory, but the journal failed to store it.
  journal_failed,
  /// The master is shutting down: nothing was changed.
  stopping,
};

struct cancel_reply {
  cancel_result result = cancel_result::not_found;
  core::task_record task;
};

struct worker_view {
  core::worker_info info;
  core::worker_status status = core::worker_status::up;
  core::time_ms connected_at = 0;
  core::time_ms last_heartbeat = 0;
  core::time_ms status_since = 0;
  std::vector<core::attempt_ref> running;
  double load_average = 0;
  uint64_t tasks_finished = 0;
};

struct cluster_summary {
  std::vector<uint64_t> queued_by_priority;
  uint64_t queued = 0;
  uint64_t delayed = 0;
  uint64_t running = 0;
  std::vector<uint64_t> tasks_by_status;
  uint64_t workers_up = 0;
  uint64_t workers_lost = 0;
  uint64_t workers_draining = 0;
  uint64_t slots_total = 0;
  uint64_t slots_used = 0;
  /// After a restart: the workers the restored tasks wait for, and until
  /// when at the latest (see scheduler_core::awaited_after_restart).
  std::vector<std::string> restart_wait_for;
  int64_t restart_wait_until = 0;
};

// -- events from the scheduler to the monitor and its subscribers -------------

struct task_event {
  /// Increases by one per event (task or worker) across all batches.
  uint64_t seq = 0;
  core::task_change change;
  /// The task as of this change (its status is `change.to`), without output
  /// tails and environment.
  core::task_record task;
};

struct worker_event {
  uint64_t seq = 0;
  core::worker_change change;
  worker_view worker;
};

struct event_batch {
  /// The seq of the last event in the batch; a snapshot carries the last
  /// one it covers.
  uint64_t seq = 0;
  std::vector<task_event> tasks;
  std::vector<worker_event> workers;
  cluster_summary summary;
  /// The wait after a restart narrowed or ended (see
  /// cluster_summary::restart_wait_for): watchers hear it now, not at the
  /// next once-a-second stats message.
  bool restart_wait_changed = false;
};

/// Everything a new watcher needs before the deltas.
struct cluster_snapshot {
  /// The last event batch this snapshot includes.
  uint64_t seq = 0;
  cluster_summary summary;
  std::vector<worker_view> workers;
  /// The newest tasks (or the one asked for), without output tails.
  std::vector<core::task_record> tasks;
};

// -- inspect overloads ----------------------------------------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, register_request& x) {
  return f(caf::meta::type_name("register_request"), x.info, x.running,
           x.results);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, register_reply& x) {
  return f(caf::meta::type_name("register_reply"), x.accepted, x.message,
           x.heartbeat_interval_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, submit_reply& x) {
  return f(caf::meta::type_name("submit_reply"), x.status, x.tasks, x.created,
           x.conflict);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_lookup& x) {
  return f(caf::meta::type_name("task_lookup"), x.found, x.task);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_query& x) {
  return f(caf::meta::type_name("task_query"), x.status, x.prio, x.cursor,
           x.limit);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_listing& x) {
  return f(caf::meta::type_name("task_listing"), x.tasks, x.next_cursor);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cancel_reply& x) {
  return f(caf::meta::type_name("cancel_reply"), x.result, x.task);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_view& x) {
  return f(caf::meta::type_name("worker_view"), x.info, x.status,
           x.connected_at, x.last_heartbeat, x.status_since, x.running,
           x.load_average, x.tasks_finished);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_summary& x) {
  return f(caf::meta::type_name("cluster_summary"), x.queued_by_priority,
           x.queued, x.delayed, x.running, x.tasks_by_status, x.workers_up,
           x.workers_lost, x.workers_draining, x.slots_total, x.slots_used,
           x.restart_wait_for, x.restart_wait_until);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_event& x) {
  return f(caf::meta::type_name("task_event"), x.seq, x.change, x.task);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_event& x) {
  return f(caf::meta::type_name("worker_event"), x.seq, x.change, x.worker);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_batch& x) {
  return f(caf::meta::type_name("event_batch"), x.seq, x.tasks, x.workers,
           x.summary, x.restart_wait_changed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_snapshot& x) {
  return f(caf::meta::type_name("cluster_snapshot"), x.seq, x.summary,
           x.workers, x.tasks);
}

} // namespace taskmaster

namespace taskmaster::core {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_spec& x) {
  return f(caf::meta::type_name("task_spec"), x.command, x.name, x.description,
           x.prio, x.timeout_seconds, x.max_retries, x.labels, x.env, x.run_at,
           x.idempotency_key, x.retry_backoff_ms, x.retry_backoff_max_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_conflict& x) {
  return f(caf::meta::type_name("key_conflict"), x.index, x.key, x.field,
           x.task, x.earlier);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attempt_ref& x) {
  return f(caf::meta::type_name("attempt_ref"), x.task, x.attempt, x.epoch);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attempt_record& x) {
  return f(caf::meta::type_name("attempt_record"), x.number, x.epoch,
           x.worker_id,
           x.started_at, x.finished_at, x.exit_code, x.has_exit_code,
           x.outcome, x.reason);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_record& x) {
  return f(caf::meta::type_name("task_record"), x.id, x.spec, x.status,
           x.created_at, x.started_at, x.finished_at, x.not_before,
           x.queued_at, x.max_retries, x.attempts, x.worker_id, x.exit_code,
           x.has_exit_code, x.stdout_tail, x.stderr_tail, x.stdout_bytes,
           x.stderr_bytes, x.reason);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attempt_result& x) {
  return f(caf::meta::type_name("attempt_result"), x.ref, x.outcome,
           x.exit_code, x.has_exit_code, x.started_at, x.finished_at,
           x.stdout_tail, x.stderr_tail, x.stdout_bytes, x.stderr_bytes,
           x.reason);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, assignment& x) {
  return f(caf::meta::type_name("assignment"), x.ref, x.command, x.env,
           x.timeout_seconds, x.rank, x.start_within_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_info& x) {
  return f(caf::meta::type_name("worker_info"), x.id, x.host, x.slots,
           x.labels, x.incarnation);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_change& x) {
  return f(caf::meta::type_name("task_change"), x.id, x.created, x.from, x.to, x.prio,
           x.at, x.queue_wait, x.run_time, x.attempt_end);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_change& x) {
  return f(caf::meta::type_name("worker_change"), x.id, x.created, x.from,
           x.to, x.reason, x.requeued);
}

} // namespace taskmaster::core

// -- atoms (at most 10 characters; they take no type IDs in CAF 0.17) ---------

  CAF_ADD_ATOM(taskmaster, taskmaster, register_atom, "register")
  CAF_ADD_ATOM(taskmaster, taskmaster, heartbeat_atom, "heartbeat")
  CAF_ADD_ATOM(taskmaster, taskmaster, report_atom, "report")
  CAF_ADD_ATOM(taskmaster, taskmaster, drain_atom, "drain")
  CAF_ADD_ATOM(taskmaster, taskmaster, leave_atom, "leave")
  CAF_ADD_ATOM(taskmaster, taskmaster, assign_atom, "assign")
  CAF_ADD_ATOM(taskmaster, taskmaster, kill_atom, "kill")
  CAF_ADD_ATOM(taskmaster, taskmaster, reclaim_atom, "reclaim")
  CAF_ADD_ATOM(taskmaster, taskmaster, ack_atom, "ack")
  CAF_ADD_ATOM(taskmaster, taskmaster, submit_atom, "submit")
  CAF_ADD_ATOM(taskmaster, taskmaster, lookup_atom, "lookup")
  CAF_ADD_ATOM(taskmaster, taskmaster, list_atom, "list")
  CAF_ADD_ATOM(taskmaster, taskmaster, cancel_atom, "cancel")
  CAF_ADD_ATOM(taskmaster, taskmaster, workers_atom, "workers")
  CAF_ADD_ATOM(taskmaster, taskmaster, stats_atom, "stats")
  CAF_ADD_ATOM(taskmaster, taskmaster, committed_atom, "committed")
  CAF_ADD_ATOM(taskmaster, taskmaster, shutdown_atom, "shutdown")
  CAF_ADD_ATOM(taskmaster, taskmaster, event_atom, "event")
  CAF_ADD_ATOM(taskmaster, taskmaster, run_atom, "run")
  CAF_ADD_ATOM(taskmaster, taskmaster, exited_atom, "exited")
  CAF_ADD_ATOM(taskmaster, taskmaster, reconnect_atom, "reconnect")
  CAF_ADD_ATOM(taskmaster, taskmaster, beat_atom, "beat")
  CAF_ADD_ATOM(taskmaster, taskmaster, tick_atom, "tick")
  CAF_ADD_ATOM(taskmaster, taskmaster, flush_atom, "flush")
  CAF_ADD_ATOM(taskmaster, taskmaster, snapshot_atom, "snapshot")

// -- actor interfaces -------------------------------------------------------------

namespace taskmaster {

/// A worker, as the master sees it. An assignment also carries the
/// acknowledgements of results the master journaled since the last message
/// to that worker (one message instead of two per task under load); `ack`
/// alone carries the rest. `reclaim` asks for prefetched attempts back if
/// they have not started (for a slot idling elsewhere).
using worker_actor = caf::typed_actor<
  caf::reacts_to<assign_atom, std::vector<core::assignment>,
                 std::vector<core::attempt_ref>>,
  caf::reacts_to<kill_atom, std::vector<core::attempt_ref>>,
  caf::reacts_to<reclaim_atom, std::vector<core::attempt_ref>>,
  caf::reacts_to<ack_atom, std::vector<core::attempt_ref>>>;

/// What workers may say to the master. This is all the cluster port exposes
/// (see cluster_endpoint): a node that can reach it cannot submit tasks.
using cluster_actor = caf::typed_actor<
  caf::replies_to<register_atom, register_request, worker_actor>::with<
    register_reply>,
  caf::replies_to<heartbeat_atom, std::string, uint64_t, double>::with<bool>,
  caf::reacts_to<report_atom, std::string, std::vector<core::attempt_result>>,
  caf::reacts_to<drain_atom, std::string>,
  caf::replies_to<leave_atom, std::string>::with<bool>>;

/// The scheduler: the cluster interface plus what the gateway asks.
using scheduler_actor = cluster_actor::extend<
  caf::replies_to<submit_atom, std::vector<core::task_spec>>::with<
    submit_reply>,
  /// Waits up to the given milliseconds for the task to reach a final status.
  caf::replies_to<lookup_atom, core::task_id, uint32_t>::with<task_lookup>,
  caf::replies_to<list_atom, task_query>::with<task_listing>,
  caf::replies_to<cancel_atom, core::task_id>::with<cancel_reply>,
  caf::replies_to<workers_atom>::with<std::vector<worker_view>>,
  caf::replies_to<stats_atom>::with<cluster_summary>,
  /// The summary, workers and the newest `limit` tasks (none for 0), or only
  /// the given task when it is not 0.
  caf::replies_to<snapshot_atom, core::task_id, uint32_t>::with<
    cluster_snapshot>,
  /// Stops accepting tasks and flushes the journal.
  caf::replies_to<shutdown_atom>::with<bool>,
  caf::reacts_to<tick_atom>,
  /// Sends the events held back for batching (see scheduler.cpp).
  caf::reacts_to<flush_atom>,
  /// Sends the acknowledgements no assignment took along.
  caf::reacts_to<ack_atom>,
  caf::reacts_to<committed_atom, uint64_t, bool>>;

/// Receives the event stream.
using subscriber_actor = caf::typed_actor<caf::reacts_to<event_atom, event_batch>>;

/// The gateway's actor: bridges the event stream and snapshot requests to
/// the WebSocket sessions (which live on the gateway's Asio thread).
using gateway_actor = subscriber_actor::extend<
  /// A new session (id) wants a snapshot, of one task or (0) of everything,
  /// with the parts its topics (http::stream_event::topic_t bits) cover.
  caf::reacts_to<snapshot_atom, uint64_t, core::task_id, uint8_t>,
  caf::reacts_to<tick_atom>>;

/// Keeps the metrics and fans events out to subscribers.
using monitor_actor = caf::typed_actor<
  caf::reacts_to<event_atom, event_batch>,
  caf::reacts_to<caf::subscribe_atom, subscriber_actor>,
  caf::reacts_to<caf::unsubscribe_atom, subscriber_actor>>;

/// Runs attempts as processes on this node and reports how they end.
using executor_actor = caf::typed_actor<
  caf::reacts_to<run_atom, std::vector<core::assignment>>,
  caf::reacts_to<kill_atom, core::attempt_ref, core::attempt_outcome,
                 std::string>,
  // Hands back one attempt if it is still waiting for a slot.
  caf::reacts_to<reclaim_atom, core::attempt_ref>,
  // Hands back, unstarted, every attempt still waiting for a slot.
  caf::reacts_to<drain_atom, std::string>>;

/// The worker's full interface: what the master sends, plus its own timers
/// and the executor's reports.
using worker_node_actor = worker_actor::extend<
  // Results from the executor, as the runner batches them.
  caf::reacts_to<exited_atom, std::vector<core::attempt_result>>,
  caf::reacts_to<reconnect_atom>,
  caf::reacts_to<beat_atom>,
  // The shutdown grace is over: hand back what still runs.
  caf::reacts_to<tick_atom>,
  caf::replies_to<shutdown_atom, uint32_t>::with<bool>>;

namespace detail {
template <class Handle>
struct broker_of_impl;
template <class... Sigs>
struct broker_of_impl<caf::typed_actor<Sigs...>> {
  using type = caf::io::typed_broker<Sigs...>;
};
} // namespace detail

/// The implementation type of an actor with interface `Handle` that runs on
/// the middleman's network thread (a CAF typed broker) instead of an actor
/// thread. A message from another node reaches it without waking a second
/// thread, and what it sends to another node is written by the same thread.
template <class Handle>
using broker_of = typename detail::broker_of_impl<Handle>::type;

} // namespace taskmaster

// -- type IDs -----------------------------------------------------------------------

CAF_BEGIN_TYPE_ID_BLOCK(taskmaster, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::priority))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::task_status))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::attempt_outcome))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::worker_status))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::task_spec))
  CAF_ADD_TYPE_ID(taskmaster, (std::vector<taskmaster::core::task_spec>))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::attempt_ref))
  CAF_ADD_TYPE_ID(taskmaster, (std::vector<taskmaster::core::attempt_ref>))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::attempt_record))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::task_record))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::attempt_result))
  CAF_ADD_TYPE_ID(taskmaster, (std::vector<taskmaster::core::attempt_result>))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::assignment))
  CAF_ADD_TYPE_ID(taskmaster, (std::vector<taskmaster::core::assignment>))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::worker_info))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::task_change))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::core::worker_change))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::register_request))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::register_reply))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::submit_status))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::submit_reply))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::task_lookup))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::task_query))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::task_listing))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::cancel_result))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::cancel_reply))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::worker_view))
  CAF_ADD_TYPE_ID(taskmaster, (std::vector<taskmaster::worker_view>))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::cluster_summary))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::task_event))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::worker_event))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::event_batch))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::cluster_snapshot))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::worker_actor))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::cluster_actor))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::scheduler_actor))
  CAF_ADD_TYPE_ID(taskmaster, (taskmaster::subscriber_actor))
CAF_END_TYPE_ID_BLOCK(taskmaster)
