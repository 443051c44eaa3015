#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "actors/core/cluster_view.hpp"
#include "actors/core/retry_policy.hpp"
#include "actors/core/task.hpp"
#include "actors/core/task_queue.hpp"

namespace taskmaster::core {

/// Tunables of the scheduling logic (filled from the daemon's config).
struct scheduler_settings {
  /// This master start's epoch (see attempt_ref); the journal counts them.
  uint32_t epoch = 0;
  /// One priority level per this much waiting (see task_queue).
  time_ms aging_interval = 60'000;
  /// Retry budget for tasks that do not set `max_retries`.
  uint32_t default_max_retries = 0;
  retry_policy retry;
  /// A worker without a heartbeat for this long is LOST.
  time_ms heartbeat_timeout = 5'000;
  /// How often tick() runs. A longer gap between two ticks is time the
  /// master itself did not run (stopped, starved of CPU, a suspended
  /// machine, a clock step): nobody could be heard then, so it counts
  /// neither against workers' heartbeats nor against reconcile_grace.
  time_ms tick_interval = 100;
  /// After a master restart, how long a RUNNING task waits for its worker to
  /// reconnect and claim it before it is requeued.
  time_ms reconcile_grace = 30'000;
  /// After a master restart, how long the tasks the last master left wait
  /// at most for the workers that may run attempts of them (see
  /// awaited_after_restart_): a heartbeat timeout plus the longest reconnect
  /// backoff, so that a worker still backing off from the outage makes it.
  time_ms restart_hold = 10'000;
  /// A task whose worker vanished this many times fails instead of being
  /// requeued again (it is probably what kills its workers).
  uint32_t max_lost_attempts = 5;
  /// Prefetch: a worker with s slots whose recent attempts ran r ms on
  /// average, r <= prefetch_budget, is handed up to
  /// s x min(max_held_per_slot - 1, floor(prefetch_budget / r)) attempts
  /// beyond its free slots. It starts one the moment a process exits instead
  /// of waiting a round trip to the master (about 0.7 ms on loopback), which
  /// matters for tasks up to about a hundred milliseconds.
  /// The price: a task submitted later may wait behind the prefetched ones,
  /// by about this budget while the average holds (its s slots work through
  /// them side by side). Workers whose attempts average more than the budget
  /// get none; a prefetched attempt that has not started within
  /// prefetch_wait_limit() goes back to the master unstarted. 0 turns
  /// prefetching off.
  time_ms prefetch_budget = 100;
  /// Bound on queued tasks (0: unbounded); submissions beyond it are refused.
  size_t max_queued = 1'000'000;
  /// Finished tasks are forgotten after this long (0: never) ...
  time_ms retention = 7LL * 24 * 3600 * 1000;
  /// ... or when more than this many are kept (0: no bound).
  size_t retention_max_finished = 100'000;
};

/// A task moved from one status to another (or appeared).
struct task_change {
  task_id id = 0;
  /// True when the task is new (then `from` is meaningless).
  bool created = false;
  task_status from = task_status::queued;
  task_status to = task_status::queued;
  priority prio = priority::medium;
  time_ms at = 0;
  /// For QUEUED -> RUNNING: how long the task waited since it became ready
  /// ...
  time_ms queue_wait = 0;
  /// ... counted once per wait: false when the task went back to its place
  /// in the queue (a hand-back, a lost worker) and waits on from the same
  /// moment, which was counted at its first dispatch.
  bool new_wait = true;
  /// For RUNNING -> anything: how long the attempt ran ...
  time_ms run_time = 0;
  /// ... if it ran at all: false for an attempt that ended before it started
  /// (prefetched, then handed back or cancelled).
  bool ran = true;
  /// For RUNNING -> QUEUED: why it went back.
  attempt_outcome attempt_end = attempt_outcome::running;
  /// The task right after this change, for its event: a later change in the
  /// same plan (requeued, then started elsewhere) would otherwise show
  /// through. Its worker and start, how many attempts it had, and its own
  /// reason (empty when it had none).
  std::string worker_id;
  time_ms started_at = 0;
  uint32_t attempts = 0;
  std::string reason;
};

struct worker_change {
  std::string id;
  /// True when the worker is new (then `from` is meaningless).
  bool created = false;
  worker_status from = worker_status::up;
  worker_status to = worker_status::up;
  /// How many of the plan's task changes happened before this one, so that
  /// events keep the order of what happened (a worker joins, then its first
  /// task starts; the last result comes in, then the draining worker leaves).
  size_t task_changes_before = 0;
  /// Why a worker was lost (what it missed); empty otherwise.
  std::string reason;
  /// Tasks this change put back in the queue: what a lost or departed worker
  /// still held (its `running` is empty after the change).
  uint32_t requeued = 0;
};

/// A worker's result that came too late to count (see plan::dropped).
struct dropped_result {
  std::string worker_id;
  attempt_ref ref;
  /// Why, for the log: "the attempt was given up (LOST: ...); the task is
  /// RUNNING after 2 attempts", and the like.
  std::string why;
};

/// Everything one call into the core decided. The actor shell carries it out:
/// journal the changed tasks, send assignments and kills, acknowledge durable
/// results, publish the changes.
struct plan {
  std::vector<std::pair<std::string, assignment>> assignments;
  std::vector<std::pair<std::string, attempt_ref>> kills;
  /// Attempts to hand back if they have not started (to feed an idle slot).
  std::vector<std::pair<std::string, attempt_ref>> reclaims;
  /// Results to acknowledge to their worker once the journal has them.
  std::vector<std::pair<std::string, attempt_ref>> acks;
  std::vector<task_change> task_changes;
  std::vector<worker_change> worker_changes;
  /// Tasks forgotten by retention (to delete from the journal).
  std::vector<task_id> removed;
  /// Workers of the last master that did not come back within the wait
  /// after a restart (to forget in the journal: the next restart need not
  /// wait for them).
  std::vector<std::string> workers_not_back;
  /// Tasks changed without a change of status (to journal): a CANCELLED
  /// task given the output its killed process wrote.
  std::vector<task_id> amended;
  /// Results of attempts that ran but are no longer current, acknowledged
  /// and dropped (to log: the output is lost). Results of cancelled
  /// attempts are not among them.
  std::vector<dropped_result> dropped;
  /// RUNNING attempts no worker claimed within reconcile_grace after a
  /// restart or stall, with the worker they were on (to log: they end LOST,
  /// and a worker still running one would run its task twice).
  std::vector<std::pair<std::string, attempt_ref>> unclaimed;

  bool empty() const {
    return assignments.empty() && kills.empty() && reclaims.empty()
           && acks.empty() && task_changes.empty() && worker_changes.empty()
           && removed.empty() && workers_not_back.empty() && amended.empty()
           && dropped.empty() && unclaimed.empty();
  }
};

/// A spec that reuses an idempotency key for a different task.
struct key_conflict {
  /// The offending spec's index in the batch, and its key.
  size_t index = 0;
  std::string key;
  /// The first field that differs (see first_difference).
  std::string field;
  /// The task the key names, or 0 when it names the spec at `earlier` in
  /// the same batch.
  task_id task = 0;
  size_t earlier = 0;
};

/// Result of `admit`.
struct admission {
  /// Set when the queue bound refused the whole batch.
  bool queue_full = false;
  /// Set when a key was reused for another task: nothing was admitted.
  std::optional<key_conflict> conflict;
  /// One id per spec, in order.
  std::vector<task_id> ids;
  /// Per spec: false when an idempotency key matched an existing task.
  std::vector<bool> created;
};

enum class cancel_outcome {
  cancelled,
  already_cancelled,
  /// The task already reached another final status.
  conflict,
  not_found,
};

enum class register_outcome { accepted, duplicate_id };

enum class heartbeat_outcome { ok, must_register };

/// Filter and page for listings. `cursor` is exclusive: only ids below it.
struct task_filter {
  std::optional<task_status> status;
  std::optional<priority> prio;
  task_id cursor = 0;
  size_t limit = 100;
};

struct task_page {
  std::vector<const task_record*> tasks;
  /// 0 when there is nothing after this page.
  task_id next_cursor = 0;
};

/// Counts for gauges and the dashboard summary.
struct scheduler_stats {
  std::array<size_t, priority_count> queued_by_priority{};
  size_t queued = 0;
  /// Ready-but-delayed tasks (run_at, retry backoff) are part of `queued`.
  size_t delayed = 0;
  size_t running = 0;
  std::array<size_t, task_status_count> tasks_by_status{};
  size_t workers_up = 0;
  size_t workers_lost = 0;
  size_t workers_draining = 0;
  uint32_t slots_total = 0;
  uint32_t slots_used = 0;
};

/// The scheduler's decisions as plain code: the task table, the queue, the
/// cluster view, placement, retries and liveness. No CAF, no I/O, no clock:
/// every call takes `now` and appends what it decided to a `plan`.
class scheduler_core {
public:
  /// `random` returns uniform values in [0, 1] for retry jitter.
  scheduler_core(scheduler_settings settings, std::function<double()> random);

  const scheduler_settings& settings() const {
    return settings_;
  }

  /// How long a prefetched attempt may wait on its worker before the worker
  /// hands it back: far beyond what a right guess takes (about one task of
  /// at most the budget), short next to what a wrong one could cost, and
  /// under half the heartbeat timeout, so a worker that was frozen long
  /// enough to be declared LOST hands back what it held on waking instead of
  /// starting it.
  time_ms prefetch_wait_limit() const {
    return std::min(std::max<time_ms>(50, 4 * settings_.prefetch_budget),
                    std::max<time_ms>(1, settings_.heartbeat_timeout / 2));
  }

  // -- tasks ----------------------------------------------------------------

  /// Creates records for `specs` (or finds them by idempotency key) but does
  /// not queue them yet: call `activate` once they are durable.
  admission admit(std::vector<task_spec> specs, time_ms now);

  /// Queues admitted tasks (their journal entries are committed) and
  /// dispatches.
  void activate(const std::vector<task_id>& ids, time_ms now, plan& out);

  /// Drops admitted tasks whose journal write failed (never activated, so
  /// nothing else knows them).
  void abandon(const std::vector<task_id>& ids);

  cancel_outcome cancel(task_id id, time_ms now, plan& out);

  // -- workers --------------------------------------------------------------

  /// A worker (re)connects. `running` are attempts it still runs, `results`
  /// attempts it finished but the master has not acknowledged.
  register_outcome register_worker(const worker_info& info,
                                   const std::vector<attempt_ref>& running,
                                   const std::vector<attempt_result>& results,
                                   time_ms now, plan& out);

  heartbeat_outcome heartbeat(const std::string& worker_id,
                              uint64_t incarnation, double load_average,
                              time_ms now);

  /// Attempts ended on a worker.
  void report(const std::string& worker_id,
              const std::vector<attempt_result>& results, time_ms now,
              plan& out);

  /// The worker stops taking work (graceful shutdown begins).
  void drain(const std::string& worker_id, time_ms now, plan& out);

  /// The worker is gone for good (graceful shutdown ends). Attempts it still
  /// held go back to the queue.
  void leave(const std::string& worker_id, time_ms now, plan& out);

  /// The worker's connection dropped or it stopped answering. Its
  /// attempts are requeued, except during or just after a stall of this
  /// master (see scheduler_settings::tick_interval): then the worker or the
  /// master may have dropped the connection only because the master was
  /// silent, so the attempts wait reconcile_grace for the worker to
  /// register again and claim them, as after a restart.
  void worker_lost(const std::string& worker_id, const std::string& reason,
                   time_ms now, plan& out);

  // -- time -----------------------------------------------------------------

  /// Liveness deadlines, delayed tasks coming due, reconciliation grace,
  /// retention, then dispatch. Returns how long the master had not run
  /// before this tick beyond one tick interval (see
  /// scheduler_settings::tick_interval), for the log; 0 normally.
  time_ms tick(time_ms now, plan& out);

  /// Places ready tasks into free slots (and prefetch room), then asks
  /// back prefetched attempts for slots left idle.
  void dispatch(time_ms now, plan& out);

  /// The master is stopping: from now on nothing is dispatched. Queued tasks
  /// stay queued (and journaled) for the next start; results still count.
  void stop_dispatching() {
    dispatching_ = false;
  }

  /// Workers an earlier master may have sent attempts it never journaled
  /// and that are not back yet, until the restored tasks stop waiting for
  /// them (see plan::workers_not_back). A master that stops keeps waiting
  /// for them: it dispatches nothing more, and the next start must wait in
  /// its turn.
  std::vector<std::string> awaited_after_restart() const {
    return {awaited_after_restart_.begin(), awaited_after_restart_.end()};
  }

  /// When the restored tasks stop waiting for awaited_after_restart() at the
  /// latest.
  time_ms restart_hold_until() const {
    return hold_dispatch_until_;
  }

  // -- recovery -------------------------------------------------------------

  /// Rebuilds state from journaled records after a restart (before any
  /// worker registers). `last_id` is the highest id ever handed out;
  /// `connected_before` the workers that may run attempts an earlier master
  /// never journaled (the journal's connected workers, see
  /// store::journal_contents). Holds the restored tasks back until those workers
  /// (if a task has not ended, which one of them might run) and the ones
  /// the journal has tasks running on are back, restart_hold at most (see
  /// awaited_after_restart_).
  void restore(std::vector<task_record> records, task_id last_id, time_ms now,
               const std::vector<std::string>& connected_before = {});

  // -- queries --------------------------------------------------------------

  const task_record* find(task_id id) const;

  /// True for a CANCELLED task whose killed process its worker has not
  /// reported gone yet: its output (plan::amended) is still to come.
  bool cancelled_output_pending(task_id id) const;

  /// Why a QUEUED task is not running yet (empty for other statuses).
  std::string reason_of(const task_record& task) const;

  task_page list(const task_filter& filter) const;

  scheduler_stats stats() const;

  const cluster_view& cluster() const {
    return cluster_;
  }

  size_t task_count() const {
    return tasks_.size();
  }

  task_id last_id() const {
    return next_id_ - 1;
  }

private:
  task_record* find_mutable(task_id id);

  /// Every status change goes through here so the indexes stay right.
  void set_status(task_record& task, task_status to, time_ms now, plan& out,
                  task_change change);

  /// Puts a QUEUED task where it belongs: the ready queue, or the delayed
  /// set while `not_before` is in the future.
  /// `keep_place`: the task goes back where it was (its old `queued_at`), for
  /// attempts that ended through no fault of the task.
  void enqueue(task_record& task, time_ms now, bool keep_place = false);

  /// Free slots first, then prefetch room, in queue order.
  void place_queued(time_ms now, plan& out);

  /// Work stealing at the end of a queue: a slot that idles (nothing queued
  /// fits it) while another worker holds prefetched attempts it has not
  /// started gets one of them. The holder is asked to hand it back unstarted;
  /// it returns to its place in the queue and goes to a free slot. One
  /// request per idle slot at a time; a request that comes too late (the
  /// attempt started) is ignored by the worker and ends with its result.
  void reclaim_for_idle_slots(plan& out);

  /// Attempts of a worker whose tasks average less than this are not asked
  /// back: it starts them about as soon as a hand-back and a new assignment
  /// (three network trips and a journal commit, about 1 ms on loopback) could
  /// start them elsewhere, and each hand-back stays in the task's history.
  static constexpr double reclaim_min_run_ms = 5;

  /// The task's next attempt number.
  static uint32_t next_attempt_number(const task_record& task) {
    return task.attempts.empty() ? 1 : task.attempts.back().number + 1;
  }

  /// The reason of a RUNNING task whose worker must claim it within
  /// reconcile_grace (see orphans_).
  std::string awaiting_claim(const std::string& worker_id,
                             const char* why) const;

  /// The reason of a queued task while dispatching waits for the last
  /// master's workers (see awaited_after_restart_): whom, and until when.
  std::string restart_hold_reason() const;

  /// True while `task` is one the last master left and the restart wait
  /// is on: it queues in held_after_restart_.
  bool held_for_restart(const task_record& task) const;

  /// Takes a QUEUED task out of the ready queue or the delayed set.
  void dequeue(task_record& task);

  /// Starts the task's next attempt on `worker_id` in the books: the
  /// attempt, the task's run fields, RUNNING.
  void mark_running(task_record& task, const std::string& worker_id,
                    uint32_t epoch, time_ms now, plan& out);

  /// A worker registering after a master restart names an attempt (running,
  /// or its held result) of a task that is QUEUED here, or RUNNING on
  /// another worker whose claim is still awaited: when it is the task's
  /// next attempt from an earlier epoch, the previous master sent it and
  /// died before journaling it. The task becomes RUNNING with that attempt
  /// on that worker (the awaited attempt ends LOST first). True if adopted.
  bool adopt_unjournaled(const std::string& worker_id, const attempt_ref& ref,
                         time_ms now, plan& out);

  /// `rank` is the task's place in the queue it was taken from.
  void start_attempt(task_record& task, worker_state& worker, time_ms rank,
                     time_ms now, plan& out);

  void apply_result(task_record& task, const attempt_result& result,
                    time_ms now, plan& out);

  /// report() without the dispatch: acknowledges and applies results.
  void take_results(const std::string& worker_id,
                    const std::vector<attempt_result>& results, time_ms now,
                    plan& out);

  /// The result of a CANCELLED task's killed attempt: its output is kept
  /// (the status, times and reason stay the cancellation's).
  void keep_cancelled_output(task_record& task, const attempt_result& result,
                             plan& out);

  /// True when `result` from `worker_id` is one sent again (its
  /// acknowledgement was lost): the attempt already ended with it here.
  bool counted_before(const task_record* task, const attempt_result& result,
                      const std::string& worker_id) const;

  /// Why a result of `ref` from `worker_id` no longer counts, for the log.
  std::string why_not_current(const task_record* task, const attempt_ref& ref,
                              const std::string& worker_id) const;

  /// Folds an attempt's run time into the worker's average and sets how far
  /// ahead of its slots it may be fed.
  void learn_run_time(worker_state& worker, time_ms run_time);

  /// A worker handed back an attempt it never started: whatever it holds
  /// runs longer than its average said. No prefetch until fast results
  /// bring the average down again.
  void stop_prefetch(worker_state& worker);

  /// The current attempt ended without a result of the command (worker lost,
  /// returned, reconciliation): back to its place in the queue (it was not
  /// the task's fault) or, past the limit, FAILED.
  void requeue_attempt(task_record& task, attempt_outcome outcome,
                       const std::string& reason, time_ms now, plan& out);

  /// QUEUED again (retry, requeue), without the last attempt's run fields.
  void back_to_queue(task_record& task, time_ms now, plan& out,
                     task_change change, bool keep_place);

  void finish(task_record& task, task_status status, time_ms now, plan& out,
              task_change change);

  void prune(time_ms now, plan& out);

  void set_worker_status(worker_state& worker, worker_status to, time_ms now,
                         plan& out);

  uint32_t failures(const task_record& task) const;

  scheduler_settings settings_;
  std::function<double()> random_;
  task_id next_id_ = 1;
  std::map<task_id, task_record> tasks_;
  std::array<std::set<task_id>, task_status_count> by_status_;
  std::array<size_t, priority_count> queued_by_priority_{};
  std::unordered_map<std::string, task_id> by_idempotency_key_;
  /// The live task an idempotency key names, if any.
  const task_record* find_by_key(const std::string& key) const;
  /// Admitted, not yet durable.
  std::unordered_set<task_id> pending_;
  task_queue queue_;
  /// During the wait after a restart (see awaited_after_restart_), the
  /// tasks the last master left queued (ids up to restored_up_to_): any of
  /// them may run on a worker not back yet. Dispatched once the wait ends.
  task_queue held_after_restart_;
  task_id restored_up_to_ = 0;
  /// QUEUED tasks waiting for a time (run_at, retry backoff).
  std::set<std::pair<time_ms, task_id>> delayed_;
  /// RUNNING attempts waiting for their worker to claim them (restored after
  /// a restart, or held by a worker lost around a stall), with their
  /// deadline.
  std::map<attempt_ref, time_ms> orphans_;
  /// After a restart, no task the last master left is dispatched until the
  /// workers that may run its attempts have all registered again, or until
  /// hold_dispatch_until_ (restart_hold): a task the last master sent
  /// one of them but died before journaling is then adopted there, not run
  /// a second time. Those awaited workers are the ones the journal has
  /// tasks running on, and those it records as connected (assignments go
  /// out before their RUNNING state is committed): after a crash every
  /// worker that was connected, after a clean stop only those that master
  /// still awaited. Tasks submitted after the restart are dispatched as
  /// usual meanwhile, on the workers that are back.
  std::set<std::string> awaited_after_restart_;
  time_ms hold_dispatch_until_ = 0;
  /// When tick() last ran (0: never).
  time_ms last_tick_ = 0;
  /// When the last stall of at least half the heartbeat timeout ended (see
  /// scheduler_settings::tick_interval; 0: none). Connections lost around
  /// it are the stall's doing as likely as the worker's.
  time_ms stall_ended_ = 0;
  /// Final tasks by finish time, for retention.
  std::set<std::pair<time_ms, task_id>> finished_;
  cluster_view cluster_;
  bool dispatching_ = true;
};

} // namespace taskmaster::core
