#include "actors/scheduler.hpp"

#include <algorithm>
#include <limits>
#include <unordered_set>

#include "actors/log.hpp"

namespace taskmaster {

namespace {

using self_ptr = scheduler_actor::stateful_pointer<scheduler_state>;

/// How long a long poll on a task cancelled while it ran waits for the
/// output of its killed process: a worker's default --kill-grace (SIGTERM,
/// then SIGKILL 5 s later) and a second for the report.
constexpr uint32_t cancelled_output_wait_ms = 6'000;

/// The most new tasks a submission may commit on the scheduler's own thread
/// (task_journal::insert_now, which also bounds the bytes): measured here,
/// one row takes about 20 us and 64 rows about 120 us.
constexpr size_t inline_commit_rows = 64;

cluster_summary summarize(const core::scheduler_core& core) {
  auto s = core.stats();
  cluster_summary out;
  out.queued_by_priority.assign(s.queued_by_priority.begin(),
                                s.queued_by_priority.end());
  out.queued = s.queued;
  out.delayed = s.delayed;
  out.running = s.running;
  out.tasks_by_status.assign(s.tasks_by_status.begin(),
                             s.tasks_by_status.end());
  out.workers_up = s.workers_up;
  out.workers_lost = s.workers_lost;
  out.workers_draining = s.workers_draining;
  out.slots_total = s.slots_total;
  out.slots_used = s.slots_used;
  out.restart_wait_for = core.awaited_after_restart();
  if (!out.restart_wait_for.empty())
    out.restart_wait_until = core.restart_hold_until();
  return out;
}

worker_view view_of(const core::worker_state& w) {
  worker_view v;
  v.info = w.info;
  v.status = w.status;
  v.connected_at = w.connected_at;
  v.last_heartbeat = w.last_heartbeat;
  v.status_since = w.status_since;
  v.running.assign(w.running.begin(), w.running.end());
  v.load_average = w.load_average;
  v.tasks_finished = w.tasks_finished;
  return v;
}

/// Events go to the monitor once the messages already queued are handled:
/// idle, at once; under load, one batch for many plans.
void schedule_event_flush(self_ptr self) {
  auto& st = self->state;
  if (st.events_flush_queued)
    return;
  st.events_flush_queued = true;
  self->send(self, flush_atom::value);
}

void flush_events(self_ptr self) {
  auto& st = self->state;
  st.events_flush_queued = false;
  auto& events = st.unsent_events;
  if (events.tasks.empty() && events.workers.empty()
      && !events.restart_wait_changed)
    return;
  events.summary = summarize(*st.core);
  events.seq = st.event_seq;
  self->send(st.monitor, event_atom::value, std::move(events));
  events = event_batch{};
}

/// Journaled results are acknowledged with the worker's next assignment, or
/// after ack_delay by a message of their own.
void schedule_ack_flush(self_ptr self) {
  auto& st = self->state;
  if (st.acks_flush_scheduled)
    return;
  st.acks_flush_scheduled = true;
  self->delayed_send(self, st.options.ack_delay, ack_atom::value);
}

void flush_acks(self_ptr self) {
  auto& st = self->state;
  st.acks_flush_scheduled = false;
  for (auto& [worker, refs] : st.unsent_acks) {
    auto w = st.workers.find(worker);
    if (w != st.workers.end())
      self->send(w->second, ack_atom::value, std::move(refs));
  }
  st.unsent_acks.clear();
}

/// Answers long polls on `id` with the task as it is now.
void deliver(self_ptr self, core::task_id id,
             std::vector<scheduler_state::waiter>& waiters) {
  auto& st = self->state;
  const auto* t = st.core->find(id);
  auto answer = t == nullptr ? task_lookup{}
                             : task_lookup{true, client_view(*st.core, *t, true)};
  for (auto& waiter : waiters)
    waiter.promise.deliver(answer);
}

/// Answers long polls on a task that ended: at once, or once that is on
/// disk (scheduler_options::answers_wait_for_disk).
void answer_ended(self_ptr self, core::task_id id,
                  std::vector<scheduler_state::waiter> waiters) {
  auto& st = self->state;
  if (!st.options.answers_wait_for_disk || st.stopping) {
    deliver(self, id, waiters);
    return;
  }
  auto token = ++st.next_token;
  st.answers_after_barrier.emplace(token,
                                   std::make_pair(id, std::move(waiters)));
  auto me = caf::actor_cast<scheduler_actor>(self);
  st.journal->barrier([me, token](bool ok) {
    caf::anon_send(me, committed_atom::value, token, ok);
  });
}

/// Answers the long polls on a task that ended, or, for one cancelled while
/// it ran, when its output is in (a bounded wait: a worker that never
/// reports does not hold them past cancelled_output_wait_ms).
void answer_waiters(self_ptr self, core::task_id id) {
  auto& st = self->state;
  auto w = st.waiters.find(id);
  if (w == st.waiters.end())
    return;
  const auto* t = st.core->find(id);
  if (t == nullptr || !core::is_final(t->status))
    return;
  if (st.core->cancelled_output_pending(id)) {
    auto latest = log::wall_clock_ms() + cancelled_output_wait_ms;
    for (auto& waiter : w->second)
      waiter.deadline = std::min(waiter.deadline, latest);
    return;
  }
  auto waiters = std::move(w->second);
  st.waiters.erase(w);
  answer_ended(self, id, std::move(waiters));
}

/// Carries out what the core decided.
void carry_out(self_ptr self, core::plan& plan) {
  auto& st = self->state;
  if (auto awaited = st.core->awaited_after_restart().size();
      awaited != st.awaited_seen) {
    st.awaited_seen = awaited;
    // A stopping master dispatches nothing: no wait ends there.
    if (!st.stopping) {
      st.unsent_events.restart_wait_changed = true;
      schedule_event_flush(self);
    }
  }
  if (plan.empty())
    return;
  // 1. Journal every changed task. New tasks were journaled when admitted.
  std::vector<core::task_record> upserts;
  std::unordered_set<core::task_id> seen;
  for (const auto& c : plan.task_changes) {
    if (c.created || !seen.insert(c.id).second)
      continue;
    if (const auto* t = st.core->find(c.id))
      upserts.push_back(*t);
  }
  for (auto id : plan.amended)
    if (seen.insert(id).second)
      if (const auto* t = st.core->find(id))
        upserts.push_back(*t);
  // Rare (a worker back after its attempts were given up): the output of
  // those runs is lost, and the log is where an operator can find out why.
  for (const auto& d : plan.dropped)
    log::warn("worker {}: the result of task {} attempt {} is dropped: {}",
              d.worker_id, d.ref.task, d.ref.attempt, d.why);
  for (const auto& [worker, ref] : plan.unclaimed)
    log::warn("task {} attempt {}: worker {} did not claim it within {} ms "
              "of the restart or stall; the attempt ends LOST",
              ref.task, ref.attempt, worker, st.options.settings.reconcile_grace);
  if (!upserts.empty() || !plan.removed.empty() || !plan.acks.empty()) {
    store::task_journal::commit_callback done;
    if (!plan.acks.empty()) {
      // Workers drop a result only once the master has it on disk.
      auto token = ++st.next_token;
      st.acks.emplace(token, std::move(plan.acks));
      auto me = caf::actor_cast<scheduler_actor>(self);
      done = [me, token](bool ok) {
        caf::anon_send(me, committed_atom::value, token, ok);
      };
    }
    st.journal->write(std::move(upserts), std::move(plan.removed),
                      std::move(done));
  }
  // The next start after a crash need not wait for workers that hold no
  // unjournaled attempt: lost or departed ones (their tasks are requeued
  // just above), and the last master's that did not come back in time.
  if (!plan.workers_not_back.empty())
    log::warn("dispatching the tasks the last master left without worker{} "
              "{}: not back within {} ms of the restart",
              plan.workers_not_back.size() == 1 ? "" : "s",
              fmt::join(plan.workers_not_back, ", "),
              st.options.settings.restart_hold);
  auto gone = std::move(plan.workers_not_back);
  for (const auto& c : plan.worker_changes)
    if (c.to == core::worker_status::lost || c.to == core::worker_status::left)
      gone.push_back(c.id);
  // A worker whose row is being written for a new registration keeps it
  // (registrations wait a commit each: a handful at most).
  gone.erase(std::remove_if(gone.begin(), gone.end(),
                            [&](const std::string& id) {
                              return std::any_of(
                                st.registrations.begin(),
                                st.registrations.end(), [&](const auto& r) {
                                  return r.second.request.info.id == id;
                                });
                            }),
             gone.end());
  if (!gone.empty())
    st.journal->note_workers({}, std::move(gone));
  // 2. Assignments, kills and reclaims, one message per worker.
  std::map<std::string, std::vector<core::assignment>> work;
  for (auto& [worker, a] : plan.assignments)
    work[worker].push_back(std::move(a));
  for (auto& [worker, batch] : work) {
    auto i = st.workers.find(worker);
    if (i == st.workers.end())
      continue;
    std::vector<core::attempt_ref> acks;
    if (auto a = st.unsent_acks.find(worker); a != st.unsent_acks.end()) {
      acks = std::move(a->second);
      st.unsent_acks.erase(a);
    }
    self->send(i->second, assign_atom::value, std::move(batch),
               std::move(acks));
  }
  auto send_per_worker = [&](const auto& atom, const auto& pairs) {
    std::map<std::string, std::vector<core::attempt_ref>> by_worker;
    for (const auto& [worker, ref] : pairs)
      by_worker[worker].push_back(ref);
    for (auto& [worker, refs] : by_worker) {
      auto i = st.workers.find(worker);
      if (i != st.workers.end())
        self->send(i->second, atom, std::move(refs));
    }
  };
  send_per_worker(kill_atom::value, plan.kills);
  send_per_worker(reclaim_atom::value, plan.reclaims);
  for (auto id : plan.amended)
    answer_waiters(self, id);
  // 3. Events for the monitor (batched, see schedule_event_flush), and
  // answers for long-polling clients (at once).
  if (plan.task_changes.empty() && plan.worker_changes.empty())
    return;
  auto& events = st.unsent_events;
  // Sequence numbers follow the order in which the changes happened.
  size_t next_task_change = 0;
  auto publish_task_changes_before = [&](size_t end) {
    for (; next_task_change < end; ++next_task_change) {
      const auto& c = plan.task_changes[next_task_change];
      const auto* t = st.core->find(c.id);
      if (t == nullptr)
        continue;
      auto view = client_view(*st.core, *t, false);
      // One call can move a task more than once (submitted and started, or
      // requeued and started again): each event shows the task as that
      // change left it.
      view.status = c.to;
      view.worker_id = c.worker_id;
      view.started_at = c.started_at;
      if (view.attempts.size() > c.attempts)
        view.attempts.resize(c.attempts);
      if (t->status != c.to || !c.reason.empty())
        view.reason = c.reason;
      if (!core::is_final(c.to)) {
        view.finished_at = 0;
        view.has_exit_code = false;
      }
      events.tasks.push_back(task_event{++st.event_seq, c, std::move(view)});
      if (core::is_final(c.to))
        answer_waiters(self, c.id);
    }
  };
  for (const auto& c : plan.worker_changes) {
    publish_task_changes_before(c.task_changes_before);
    const auto* w = st.core->cluster().find(c.id);
    if (w == nullptr)
      continue;
    events.workers.push_back(worker_event{++st.event_seq, c, view_of(*w)});
    if (c.to == core::worker_status::lost)
      log::warn("worker {} is LOST", c.id);
  }
  publish_task_changes_before(plan.task_changes.size());
  schedule_event_flush(self);
}

/// Answers a submission once its new tasks' commit was tried: on success
/// they become QUEUED (and dispatchable); on failure they are forgotten.
submit_reply finish_submit(self_ptr self, const core::admission& admission,
                           bool committed) {
  auto& st = self->state;
  std::vector<core::task_id> created;
  for (size_t k = 0; k < admission.ids.size(); ++k)
    if (admission.created[k])
      created.push_back(admission.ids[k]);
  if (!committed) {
    st.core->abandon(created);
    return submit_reply{submit_status::journal_failed, {}, {}};
  }
  core::plan plan;
  st.core->activate(created, log::wall_clock_ms(), plan);
  submit_reply reply;
  reply.tasks.reserve(admission.ids.size());
  for (size_t k = 0; k < admission.ids.size(); ++k) {
    if (const auto* t = st.core->find(admission.ids[k])) {
      reply.tasks.push_back(client_view(*st.core, *t, false));
      reply.created.push_back(admission.created[k] ? 1 : 0);
    }
  }
  carry_out(self, plan);
  return reply;
}

/// Registers a worker once its row's commit was tried (or at once while
/// the master stops): the core takes what it runs and holds, and may give
/// it work at once.
register_reply admit_worker(self_ptr self, const register_request& req,
                            const worker_actor& handle) {
  auto& st = self->state;
  core::plan plan;
  const auto& id = req.info.id;
  bool awaited_before = !st.core->awaited_after_restart().empty();
  auto outcome = st.core->register_worker(req.info, req.running, req.results,
                                          log::wall_clock_ms(), plan);
  if (outcome == core::register_outcome::duplicate_id) {
    log::warn("refused worker {}: that id is connected from another process",
              id);
    return {false,
            fmt::format("worker id '{}' is already connected from another "
                        "process",
                        id),
            st.options.heartbeat_interval_ms};
  }
  if (awaited_before && st.core->awaited_after_restart().empty()
      && plan.workers_not_back.empty())
    log::info("the workers an earlier master may have sent attempts to are "
              "back: dispatching the tasks it left");
  auto i = st.workers.find(id);
  if (i != st.workers.end() && i->second != handle)
    self->demonitor(i->second.address());
  st.workers[id] = handle;
  self->monitor(handle);
  log::info("worker {} registered from {} ({} slot{}{}{}, {} running, {} "
            "results held)",
            id, req.info.host, req.info.slots, req.info.slots == 1 ? "" : "s",
            req.info.labels.empty() ? "" : ", labels ",
            core::format_labels(req.info.labels), req.running.size(),
            req.results.size());
  // Kills in a registration's plan are its stale claims: processes of
  // attempts given up meanwhile (their results, when they come, are logged
  // as dropped).
  for (const auto& [worker, ref] : plan.kills)
    log::warn("worker {} still runs task {} attempt {}, which no longer "
              "counts: killing it",
              worker, ref.task, ref.attempt);
  carry_out(self, plan);
  return {true, {}, st.options.heartbeat_interval_ms};
}

/// Answers long polls whose time is up.
void expire_waiters(self_ptr self, core::time_ms now) {
  auto& st = self->state;
  std::vector<core::task_id> ended;
  for (auto i = st.waiters.begin(); i != st.waiters.end();) {
    auto& list = i->second;
    auto* task = st.core->find(i->first);
    // A task cancelled while it ran whose worker went away without a word:
    // its output will not come.
    if (task != nullptr && core::is_final(task->status)
        && !st.core->cancelled_output_pending(task->id)) {
      ended.push_back(task->id);
      ++i;
      continue;
    }
    for (auto w = list.begin(); w != list.end();) {
      if (w->deadline <= now || task == nullptr) {
        w->promise.deliver(task == nullptr
                             ? task_lookup{}
                             : task_lookup{true,
                                           client_view(*st.core, *task, true)});
        w = list.erase(w);
      } else {
        ++w;
      }
    }
    i = list.empty() ? st.waiters.erase(i) : std::next(i);
  }
  for (auto id : ended) {
    auto w = st.waiters.find(id);
    auto waiters = std::move(w->second);
    st.waiters.erase(w);
    answer_ended(self, id, std::move(waiters));
  }
}

} // namespace

core::task_record client_view(const core::scheduler_core& core,
                              const core::task_record& task, bool full) {
  core::task_record copy;
  if (full) {
    copy = task;
  } else {
    // Copy field by field to avoid copying the output tails.
    copy.id = task.id;
    copy.spec.command = task.spec.command;
    copy.spec.name = task.spec.name;
    copy.spec.description = task.spec.description;
    copy.spec.prio = task.spec.prio;
    copy.spec.timeout_seconds = task.spec.timeout_seconds;
    copy.spec.max_retries = task.spec.max_retries;
    copy.spec.labels = task.spec.labels;
    copy.spec.run_at = task.spec.run_at;
    copy.spec.idempotency_key = task.spec.idempotency_key;
    copy.status = task.status;
    copy.created_at = task.created_at;
    copy.started_at = task.started_at;
    copy.finished_at = task.finished_at;
    copy.not_before = task.not_before;
    copy.queued_at = task.queued_at;
    copy.max_retries = task.max_retries;
    copy.attempts = task.attempts;
    copy.worker_id = task.worker_id;
    copy.exit_code = task.exit_code;
    copy.has_exit_code = task.has_exit_code;
  }
  copy.reason = core.reason_of(task);
  return copy;
}

scheduler_actor::behavior_type
scheduler(self_ptr self, scheduler_options options,
          std::shared_ptr<store::task_journal> journal,
          store::journal_contents restored, monitor_actor monitor) {
  auto& st = self->state;
  st.options = options;
  st.journal = std::move(journal);
  st.monitor = std::move(monitor);
  st.rng.seed(std::random_device{}());
  options.settings.epoch = restored.epoch;
  st.core = std::make_unique<core::scheduler_core>(
    options.settings, [self] {
      return std::uniform_real_distribution<double>{0.0, 1.0}(self->state.rng);
    });
  auto now = log::wall_clock_ms();
  if (!restored.tasks.empty()) {
    auto count = restored.tasks.size();
    st.core->restore(std::move(restored.tasks), restored.last_id, now,
                     restored.connected_workers);
    auto stats = st.core->stats();
    log::info("journal: restored {} tasks ({} queued, {} running awaiting "
              "their workers)",
              count, stats.queued, stats.running);
    auto awaited = st.core->awaited_after_restart();
    st.awaited_seen = awaited.size();
    if (!awaited.empty())
      log::info("worker{} {} may run attempts an earlier master sent: "
                "the tasks it left wait up to {} ms for {} to register "
                "again (new tasks do not)",
                awaited.size() == 1 ? "" : "s", fmt::join(awaited, ", "),
                options.settings.restart_hold,
                awaited.size() == 1 ? "it" : "them");
    // The metrics' gauges start from the restored state, not from zero
    // until the next change.
    event_batch restored_state;
    restored_state.summary = summarize(*st.core);
    self->send(st.monitor, event_atom::value, std::move(restored_state));
  }
  // Recorded workers the core does not wait for (every task ended, so none
  // they could run unjournaled) need not be waited for after the next
  // crash either.
  std::vector<std::string> not_awaited;
  auto awaited = st.core->awaited_after_restart();
  for (auto& id : restored.connected_workers)
    if (std::find(awaited.begin(), awaited.end(), id) == awaited.end())
      not_awaited.push_back(std::move(id));
  if (!not_awaited.empty())
    st.journal->note_workers({}, std::move(not_awaited));
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    for (auto i = st.workers.begin(); i != st.workers.end(); ++i) {
      if (i->second.address() != msg.source)
        continue;
      auto id = i->first;
      st.workers.erase(i);
      core::plan plan;
      st.core->worker_lost(id, "connection lost", log::wall_clock_ms(), plan);
      carry_out(self, plan);
      return;
    }
  });
  self->send(self, tick_atom::value);
  return {
    // -- the worker protocol ---------------------------------------------------
    [self](register_atom, register_request& req,
           worker_actor& handle) -> caf::result<register_reply> {
      auto& st = self->state;
      // A worker of this release checks its own id and labels; this keeps
      // out anything else that would print as something it is not.
      auto problem = core::worker_id_problem(req.info.id);
      if (!problem.empty())
        problem = "its worker id " + problem;
      else
        problem = core::worker_labels_problem(req.info.labels);
      if (!problem.empty()) {
        log::warn("refused a worker: {}", problem);
        return register_reply{false, fmt::format("refused: {}", problem),
                              st.options.heartbeat_interval_ms};
      }
      // A stopping master dispatches nothing: no need to wait for it.
      if (st.stopping)
        return admit_worker(self, req, handle);
      // The worker is recorded as connected before it is given anything: a
      // master that crashes with assignments not yet journaled then knows,
      // at its next start, whom to wait for (scheduler_core::restore).
      auto token = ++st.next_token;
      auto promise = self->make_response_promise<register_reply>();
      auto id = req.info.id;
      st.registrations.emplace(
        token, scheduler_state::pending_registration{promise, std::move(req),
                                                     std::move(handle)});
      auto me = caf::actor_cast<scheduler_actor>(self);
      st.journal->note_workers({std::move(id)}, {}, [me, token](bool ok) {
        caf::anon_send(me, committed_atom::value, token, ok);
      });
      return promise;
    },
    [self](heartbeat_atom, const std::string& id, uint64_t incarnation,
           double load) -> bool {
      return self->state.core->heartbeat(id, incarnation, load,
                                         log::wall_clock_ms())
             == core::heartbeat_outcome::ok;
    },
    [self](report_atom, const std::string& id,
           const std::vector<core::attempt_result>& results) {
      core::plan plan;
      self->state.core->report(id, results, log::wall_clock_ms(), plan);
      carry_out(self, plan);
    },
    [self](drain_atom, const std::string& id) {
      core::plan plan;
      self->state.core->drain(id, log::wall_clock_ms(), plan);
      log::info("worker {} is draining", id);
      carry_out(self, plan);
    },
    [self](leave_atom, const std::string& id) -> bool {
      auto& st = self->state;
      core::plan plan;
      st.core->leave(id, log::wall_clock_ms(), plan);
      auto i = st.workers.find(id);
      if (i != st.workers.end()) {
        self->demonitor(i->second.address());
        st.workers.erase(i);
      }
      log::info("worker {} left", id);
      carry_out(self, plan);
      return true;
    },
    // -- the gateway --------------------------------------------------------------
    [self](submit_atom,
           std::vector<core::task_spec>& specs) -> caf::result<submit_reply> {
      auto& st = self->state;
      if (st.stopping)
        return submit_reply{submit_status::stopping, {}, {}};
      auto admitted = st.core->admit(std::move(specs), log::wall_clock_ms());
      if (admitted.queue_full)
        return submit_reply{submit_status::queue_full, {}, {}};
      if (admitted.conflict)
        return submit_reply{submit_status::key_conflict, {}, {},
                            std::move(*admitted.conflict)};
      std::vector<core::task_record> fresh;
      fresh.reserve(admitted.ids.size());
      for (size_t i = 0; i < admitted.ids.size(); ++i)
        if (admitted.created[i])
          fresh.push_back(*st.core->find(admitted.ids[i]));
      // Idle, the commit runs here: a few rows take tens of microseconds,
      // less than handing them to the writer thread and back. Busy, or
      // many rows: the writer thread groups them with others while this
      // goes on with the mailbox. Not while an earlier submission or
      // registration waits for its commit either: commits are acted on in
      // their order (tasks activated first are dispatched first).
      if (fresh.size() <= inline_commit_rows && st.submits.empty()
          && st.registrations.empty() && self->mailbox().empty()) {
        if (auto ok = st.journal->insert_now(fresh)) {
          if (!*ok)
            log::error("journal commit failed: {}", st.journal->failure());
          return finish_submit(self, admitted, *ok);
        }
      }
      auto token = ++st.next_token;
      auto promise = self->make_response_promise<submit_reply>();
      st.submits.emplace(token,
                         scheduler_state::pending_submit{promise,
                                                         std::move(admitted)});
      auto me = caf::actor_cast<scheduler_actor>(self);
      st.journal->insert(std::move(fresh), [me, token](bool ok) {
        caf::anon_send(me, committed_atom::value, token, ok);
      });
      return promise;
    },
    [self](committed_atom, uint64_t token, bool ok) {
      auto& st = self->state;
      if (!ok && st.journal && !st.journal->failure().empty())
        log::error("journal commit failed: {}", st.journal->failure());
      if (auto i = st.cancels.find(token); i != st.cancels.end()) {
        auto [promise, reply] = std::move(i->second);
        st.cancels.erase(i);
        // The cancellation stands in memory all the same (the task's process
        // is killed), but the user must know a restart may undo it.
        if (!ok) {
          reply.result = cancel_result::journal_failed;
          st.unstored_cancels.insert(reply.task.id);
        }
        promise.deliver(std::move(reply));
        return;
      }
      if (auto i = st.registrations.find(token);
          i != st.registrations.end()) {
        auto pending = std::move(i->second);
        st.registrations.erase(i);
        // Without its row the worker is admitted all the same, as before
        // rows existed: a refusal would make it give up for good, and a
        // master whose journal fails keeps nothing else either.
        pending.promise.deliver(
          admit_worker(self, pending.request, pending.handle));
        return;
      }
      if (auto i = st.submits.find(token); i != st.submits.end()) {
        auto pending = std::move(i->second);
        st.submits.erase(i);
        pending.promise.deliver(finish_submit(self, pending.admission, ok));
        return;
      }
      if (auto i = st.acks.find(token); i != st.acks.end()) {
        auto durable = std::move(i->second);
        st.acks.erase(i);
        if (!ok)
          return;
        for (auto& [worker, ref] : durable)
          st.unsent_acks[worker].push_back(ref);
        // Stopping: the daemon exits once the barrier below is answered.
        if (st.stopping)
          flush_acks(self);
        else
          schedule_ack_flush(self);
      }
      if (auto i = st.barriers.find(token); i != st.barriers.end()) {
        i->second.deliver(ok);
        st.barriers.erase(i);
      }
      // On disk (or the journal failed, which the log says: the answer is
      // what this master knows all the same).
      if (auto i = st.answers_after_barrier.find(token);
          i != st.answers_after_barrier.end()) {
        auto [id, waiters] = std::move(i->second);
        st.answers_after_barrier.erase(i);
        deliver(self, id, waiters);
      }
    },
    [self](lookup_atom, core::task_id id,
           uint32_t wait_ms) -> caf::result<task_lookup> {
      auto& st = self->state;
      const auto* task = st.core->find(id);
      if (task == nullptr)
        return task_lookup{};
      // A task cancelled while it ran ends before its output is in: a
      // client waiting for it to end wants that output too.
      bool output_due = st.core->cancelled_output_pending(id);
      if (wait_ms == 0 || st.stopping)
        return task_lookup{true, client_view(*st.core, *task, true)};
      if (core::is_final(task->status) && !output_due) {
        // Ended a moment ago, maybe not on disk yet.
        auto promise = self->make_response_promise<task_lookup>();
        answer_ended(self, id,
                     {scheduler_state::waiter{promise, log::wall_clock_ms()}});
        return promise;
      }
      if (output_due)
        wait_ms = std::min<uint32_t>(wait_ms, cancelled_output_wait_ms);
      auto promise = self->make_response_promise<task_lookup>();
      st.waiters[id].push_back(
        scheduler_state::waiter{promise, log::wall_clock_ms() + wait_ms});
      return promise;
    },
    [self](list_atom, const task_query& query) -> task_listing {
      auto& st = self->state;
      core::task_filter filter;
      if (query.status >= 0)
        filter.status = static_cast<core::task_status>(query.status);
      if (query.prio >= 0)
        filter.prio = static_cast<core::priority>(query.prio);
      filter.cursor = query.cursor;
      filter.limit = query.limit;
      auto page = st.core->list(filter);
      task_listing result;
      result.next_cursor = page.next_cursor;
      result.tasks.reserve(page.tasks.size());
      for (const auto* t : page.tasks)
        result.tasks.push_back(client_view(*st.core, *t, false));
      return result;
    },
    [self](cancel_atom, core::task_id id) -> caf::result<cancel_reply> {
      auto& st = self->state;
      // Its answer would wait for a commit the stopping master may not
      // live to see.
      if (st.stopping)
        return cancel_reply{cancel_result::stopping, {}};
      core::plan plan;
      auto outcome = st.core->cancel(id, log::wall_clock_ms(), plan);
      carry_out(self, plan);
      cancel_reply reply;
      switch (outcome) {
        case core::cancel_outcome::cancelled:
          reply.result = cancel_result::cancelled;
          break;
        case core::cancel_outcome::already_cancelled:
          reply.result = cancel_result::already_cancelled;
          break;
        case core::cancel_outcome::conflict:
          reply.result = cancel_result::conflict;
          break;
        case core::cancel_outcome::not_found:
          reply.result = cancel_result::not_found;
          break;
      }
      if (const auto* t = st.core->find(id))
        reply.task = client_view(*st.core, *t, false);
      // The user is told once a restart cannot bring the task back (state
      // changes otherwise wait --journal-group-delay for company); a second
      // cancel waits for the first one's commit if it is still pending. One
      // the journal failed to store is tried again (a failed journal fails
      // it at once, until a restart): retrying must not turn a cancel that
      // is not on disk into a success.
      bool pending = std::any_of(
        st.cancels.begin(), st.cancels.end(),
        [id](const auto& c) { return c.second.second.task.id == id; });
      bool unsure = outcome == core::cancel_outcome::already_cancelled
                    && (pending || st.unstored_cancels.count(id) > 0);
      if (outcome != core::cancel_outcome::cancelled && !unsure)
        return reply;
      auto token = ++st.next_token;
      auto promise = self->make_response_promise<cancel_reply>();
      st.cancels.emplace(token, std::make_pair(promise, std::move(reply)));
      auto me = caf::actor_cast<scheduler_actor>(self);
      st.journal->barrier([me, token](bool ok) {
        caf::anon_send(me, committed_atom::value, token, ok);
      });
      return promise;
    },
    [self](workers_atom) -> std::vector<worker_view> {
      std::vector<worker_view> result;
      for (const auto& [id, w] : self->state.core->cluster().workers())
        result.push_back(view_of(w));
      return result;
    },
    [self](stats_atom) -> cluster_summary {
      return summarize(*self->state.core);
    },
    [self](snapshot_atom, core::task_id only,
           uint32_t limit) -> cluster_snapshot {
      auto& st = self->state;
      cluster_snapshot snap;
      snap.seq = st.event_seq;
      snap.summary = summarize(*st.core);
      for (const auto& [id, w] : st.core->cluster().workers())
        snap.workers.push_back(view_of(w));
      if (only != 0) {
        if (const auto* t = st.core->find(only))
          snap.tasks.push_back(client_view(*st.core, *t, false));
      } else if (limit > 0) {
        core::task_filter filter;
        filter.limit = limit;
        for (const auto* t : st.core->list(filter).tasks)
          snap.tasks.push_back(client_view(*st.core, *t, false));
      }
      return snap;
    },
    [self](shutdown_atom) -> caf::result<bool> {
      auto& st = self->state;
      st.stopping = true;
      st.core->stop_dispatching();
      // Long polls get the task as it is now rather than holding the HTTP
      // server (and so the master's exit) for up to their full wait.
      expire_waiters(self, std::numeric_limits<core::time_ms>::max());
      flush_acks(self);
      flush_events(self);
      auto token = ++st.next_token;
      auto promise = self->make_response_promise<bool>();
      st.barriers.emplace(token, promise);
      auto me = caf::actor_cast<scheduler_actor>(self);
      st.journal->stopped_dispatching(
        st.core->awaited_after_restart(),
        [me, token](bool ok) {
          caf::anon_send(me, committed_atom::value, token, ok);
        });
      return promise;
    },
    // -- time -----------------------------------------------------------------------
    [self](flush_atom) { flush_events(self); },
    [self](ack_atom) { flush_acks(self); },
    [self](tick_atom) {
      auto& st = self->state;
      auto now = log::wall_clock_ms();
      core::plan plan;
      auto stalled = st.core->tick(now, plan);
      if (stalled >= st.options.settings.heartbeat_timeout)
        log::warn("the master did not run for {} ms (stopped, starved or "
                  "suspended); workers are not blamed for that silence",
                  stalled);
      carry_out(self, plan);
      expire_waiters(self, now);
      self->delayed_send(self,
                         std::chrono::milliseconds(
                           st.options.settings.tick_interval),
                         tick_atom::value);
    },
  };
}

cluster_actor::behavior_type cluster_endpoint(cluster_actor::pointer self,
                                              scheduler_actor scheduler) {
  return {
    [=](register_atom a, register_request& req, worker_actor& w) {
      return self->delegate(scheduler, a, std::move(req), std::move(w));
    },
    [=](heartbeat_atom a, std::string& id, uint64_t incarnation, double load) {
      return self->delegate(scheduler, a, std::move(id), incarnation, load);
    },
    [=](report_atom a, std::string& id,
        std::vector<core::attempt_result>& results) {
      self->send(scheduler, a, std::move(id), std::move(results));
    },
    [=](drain_atom a, std::string& id) {
      self->send(scheduler, a, std::move(id));
    },
    [=](leave_atom a, std::string& id) {
      return self->delegate(scheduler, a, std::move(id));
    },
  };
}

} // namespace taskmaster
