#include "actors/core/scheduler_core.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace taskmaster::core {

namespace {

/// A queued task runs nowhere: the last attempt's worker, start and exit
/// code stay in its attempt record, not on the task, so a listing does not
/// show a waiting task as started on a worker. Its output stays: why a retry
/// waits is often in what the failed attempt wrote.
void clear_run_fields(task_record& task) {
  task.worker_id.clear();
  task.started_at = 0;
  task.has_exit_code = false;
  task.exit_code = 0;
}

size_t index_of(task_status x) {
  return static_cast<size_t>(x);
}

size_t index_of(priority x) {
  return static_cast<size_t>(x);
}

std::string describe_exit(const attempt_result& r) {
  if (!r.reason.empty())
    return r.reason;
  if (r.has_exit_code)
    return fmt::format("exit code {}", r.exit_code);
  return std::string{to_string(r.outcome)};
}

} // namespace

scheduler_core::scheduler_core(scheduler_settings settings,
                               std::function<double()> random)
  : settings_(settings),
    random_(std::move(random)),
    queue_(settings.aging_interval),
    held_after_restart_(settings.aging_interval) {
}

// -- tasks --------------------------------------------------------------------

admission scheduler_core::admit(std::vector<task_spec> specs, time_ms now) {
  admission result;
  // Count what would really be new, so a retried batch that only repeats
  // idempotency keys is never refused by the queue bound. A key reused for
  // another task refuses the whole batch, before anything is admitted.
  size_t fresh = 0;
  const spec_defaults defaults{settings_.default_max_retries,
                               settings_.retry.base, settings_.retry.cap};
  std::unordered_map<std::string_view, size_t> batch_keys;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    const auto& key = spec.idempotency_key;
    if (key.empty()) {
      ++fresh;
      continue;
    }
    if (const auto* existing = find_by_key(key)) {
      // A retry budget left to the master was fixed at admission: compare
      // an explicit one with that, not with today's default.
      auto admitted = existing->spec;
      if (admitted.max_retries < 0 && spec.max_retries >= 0)
        admitted.max_retries = static_cast<int32_t>(existing->max_retries);
      if (auto field = first_difference(admitted, spec, defaults);
          !field.empty()) {
        result.conflict = key_conflict{i, key, std::string{field}, existing->id,
                                       0};
        return result;
      }
      continue;
    }
    auto [first, inserted] = batch_keys.emplace(key, i);
    if (inserted) {
      ++fresh;
    } else if (auto field = first_difference(specs[first->second], spec,
                                             defaults);
               !field.empty()) {
      result.conflict = key_conflict{i, key, std::string{field}, 0,
                                     first->second};
      return result;
    }
  }
  if (settings_.max_queued > 0
      && by_status_[index_of(task_status::queued)].size() + fresh
           > settings_.max_queued) {
    result.queue_full = true;
    return result;
  }
  result.ids.reserve(specs.size());
  result.created.reserve(specs.size());
  for (auto& spec : specs) {
    if (!spec.idempotency_key.empty()) {
      if (const auto* existing = find_by_key(spec.idempotency_key)) {
        result.ids.push_back(existing->id);
        result.created.push_back(false);
        continue;
      }
    }
    auto id = next_id_++;
    task_record task;
    task.id = id;
    task.created_at = now;
    task.status = task_status::queued;
    task.max_retries = spec.max_retries >= 0
                         ? static_cast<uint32_t>(spec.max_retries)
                         : settings_.default_max_retries;
    task.spec = std::move(spec);
    if (!task.spec.idempotency_key.empty())
      by_idempotency_key_.insert_or_assign(task.spec.idempotency_key, id);
    by_status_[index_of(task_status::queued)].insert(id);
    ++queued_by_priority_[index_of(task.spec.prio)];
    pending_.insert(id);
    tasks_.emplace(id, std::move(task));
    result.ids.push_back(id);
    result.created.push_back(true);
  }
  return result;
}

const task_record* scheduler_core::find_by_key(const std::string& key) const {
  auto k = by_idempotency_key_.find(key);
  return k == by_idempotency_key_.end() ? nullptr : find(k->second);
}

void scheduler_core::activate(const std::vector<task_id>& ids, time_ms now,
                              plan& out) {
  for (auto id : ids) {
    if (pending_.erase(id) == 0)
      continue;
    auto* task = find_mutable(id);
    if (task == nullptr || task->status != task_status::queued)
      continue;
    task_change change;
    change.id = id;
    change.created = true;
    change.to = task_status::queued;
    change.prio = task->spec.prio;
    change.at = now;
    out.task_changes.push_back(change);
    task->not_before = task->spec.run_at > now ? task->spec.run_at : 0;
    if (task->not_before > 0)
      task->reason = fmt::format("scheduled to start at {}",
                                 format_rfc3339(task->not_before));
    enqueue(*task, now);
  }
  dispatch(now, out);
}

void scheduler_core::abandon(const std::vector<task_id>& ids) {
  for (auto id : ids) {
    if (pending_.erase(id) == 0)
      continue;
    auto i = tasks_.find(id);
    if (i == tasks_.end())
      continue;
    by_status_[index_of(i->second.status)].erase(id);
    if (i->second.status == task_status::queued)
      --queued_by_priority_[index_of(i->second.spec.prio)];
    const auto& key = i->second.spec.idempotency_key;
    if (!key.empty())
      by_idempotency_key_.erase(key);
    tasks_.erase(i);
  }
}

cancel_outcome scheduler_core::cancel(task_id id, time_ms now, plan& out) {
  auto* task = find_mutable(id);
  if (task == nullptr)
    return cancel_outcome::not_found;
  if (task->status == task_status::cancelled)
    return cancel_outcome::already_cancelled;
  if (is_final(task->status))
    return cancel_outcome::conflict;
  task_change change;
  if (task->status == task_status::queued) {
    dequeue(*task);
    pending_.erase(id);
  } else {
    auto& attempt = task->attempts.back();
    attempt.outcome = attempt_outcome::cancelled;
    attempt.finished_at = now;
    attempt.reason = "cancelled by request";
    change.run_time = now - attempt.started_at;
    change.attempt_end = attempt_outcome::cancelled;
    orphans_.erase(task->current_ref());
    // The slot stays taken until the worker reports the process gone.
    out.kills.emplace_back(task->worker_id, task->current_ref());
  }
  task->reason = "cancelled by request";
  finish(*task, task_status::cancelled, now, out, change);
  return cancel_outcome::cancelled;
}

// -- workers ------------------------------------------------------------------

register_outcome
scheduler_core::register_worker(const worker_info& info,
                                const std::vector<attempt_ref>& running,
                                const std::vector<attempt_result>& results,
                                time_ms now, plan& out) {
  auto* worker = cluster_.find(info.id);
  if (worker != nullptr
      && (worker->status == worker_status::up
          || worker->status == worker_status::draining)
      && worker->info.incarnation != info.incarnation)
    return register_outcome::duplicate_id;
  std::set<attempt_ref> previously;
  if (worker == nullptr) {
    worker = &cluster_.workers()[info.id];
    worker->status = worker_status::up;
    worker->status_since = now;
    worker_change change;
    change.id = info.id;
    change.created = true;
    change.to = worker_status::up;
    change.task_changes_before = out.task_changes.size();
    out.worker_changes.push_back(std::move(change));
  } else {
    previously = worker->release_all();
    set_worker_status(*worker, worker_status::up, now, out);
  }
  worker->info = info;
  // A new start of the worker (maybe with other slots) learns afresh.
  worker->recent_run_ms = -1;
  worker->prefetch = 0;
  worker->connected_at = now;
  worker->last_heartbeat = now;
  awaited_after_restart_.erase(info.id);
  // Attempts the previous master sent but died before journaling: the task
  // is QUEUED here (or RUNNING on a worker that master had moved it away
  // from), and runs (or ran) there. Adopt them rather than run the task a
  // second time. Held results go first, in attempt order, each after
  // its own adoption: one that put its task back in the queue (handed back)
  // makes the worker's next attempt of it adoptable.
  auto held = results;
  std::sort(held.begin(), held.end(),
            [](const attempt_result& a, const attempt_result& b) {
              return a.ref < b.ref;
            });
  for (const auto& result : held) {
    adopt_unjournaled(info.id, result.ref, now, out);
    take_results(info.id, {result}, now, out);
  }
  for (const auto& ref : running)
    adopt_unjournaled(info.id, ref, now, out);
  std::set<attempt_ref> claimed;
  for (const auto& ref : running) {
    claimed.insert(ref);
    // A process occupies a slot whatever the master thinks of it.
    worker->running.insert(ref);
    auto* task = find_mutable(ref.task);
    if (task != nullptr && task->status == task_status::running
        && task->current_ref() == ref && task->worker_id == info.id) {
      if (orphans_.erase(ref) > 0)
        task->reason.clear();
    } else {
      out.kills.emplace_back(info.id, ref);
    }
  }
  for (const auto& result : results)
    claimed.insert(result.ref);
  // What the master had on this worker but the worker does not know about
  // is gone: requeue it.
  std::vector<attempt_ref> missing;
  for (const auto& ref : previously)
    if (claimed.count(ref) == 0)
      missing.push_back(ref);
  for (const auto& [ref, deadline] : orphans_) {
    auto* task = find_mutable(ref.task);
    if (task != nullptr && task->worker_id == info.id && claimed.count(ref) == 0)
      missing.push_back(ref);
  }
  for (const auto& ref : missing) {
    orphans_.erase(ref);
    auto* task = find_mutable(ref.task);
    if (task != nullptr && task->status == task_status::running
        && task->current_ref() == ref)
      requeue_attempt(*task, attempt_outcome::lost,
                      fmt::format("worker {} came back without this attempt",
                                  info.id),
                      now, out);
  }
  dispatch(now, out);
  return register_outcome::accepted;
}

heartbeat_outcome scheduler_core::heartbeat(const std::string& worker_id,
                                            uint64_t incarnation,
                                            double load_average, time_ms now) {
  auto* worker = cluster_.find(worker_id);
  if (worker == nullptr || worker->info.incarnation != incarnation
      || worker->status == worker_status::lost
      || worker->status == worker_status::left)
    return heartbeat_outcome::must_register;
  worker->last_heartbeat = now;
  worker->load_average = load_average;
  return heartbeat_outcome::ok;
}

void scheduler_core::report(const std::string& worker_id,
                            const std::vector<attempt_result>& results,
                            time_ms now, plan& out) {
  take_results(worker_id, results, now, out);
  dispatch(now, out);
}

void scheduler_core::take_results(const std::string& worker_id,
                                  const std::vector<attempt_result>& results,
                                  time_ms now, plan& out) {
  auto* worker = cluster_.find(worker_id);
  for (const auto& result : results) {
    out.acks.emplace_back(worker_id, result.ref);
    if (worker != nullptr && worker->running.erase(result.ref) > 0) {
      worker->prefetched.erase(result.ref);
      bool asked_back = worker->reclaiming.erase(result.ref) > 0;
      if (result.started_at != 0) {
        ++worker->tasks_finished;
        learn_run_time(*worker, result.finished_at - result.started_at);
      } else if (result.outcome == attempt_outcome::returned && !asked_back) {
        stop_prefetch(*worker);
      }
    }
    auto* task = find_mutable(result.ref.task);
    // A result for an attempt that is no longer current (the task was
    // requeued, cancelled or forgotten), or from a worker that does not hold
    // it, is acknowledged and ignored. A cancelled attempt's output is kept:
    // the task ended when the cancel was asked, its process some time after.
    bool current = task != nullptr && task->current_ref() == result.ref
                   && task->worker_id == worker_id;
    if (current && task->status == task_status::cancelled) {
      keep_cancelled_output(*task, result, out);
      continue;
    }
    if (!current || task->status != task_status::running) {
      if (result.started_at != 0 && !counted_before(task, result, worker_id))
        out.dropped.push_back({worker_id, result.ref,
                               why_not_current(task, result.ref, worker_id)});
      continue;
    }
    orphans_.erase(result.ref);
    auto checked = result;
    // Outcomes come over the wire: anything unknown counts as a failure.
    if (static_cast<uint8_t>(checked.outcome)
        > static_cast<uint8_t>(attempt_outcome::returned))
      checked.outcome = attempt_outcome::failed;
    apply_result(*task, checked, now, out);
  }
  if (worker != nullptr && worker->status == worker_status::draining
      && worker->running.empty())
    set_worker_status(*worker, worker_status::left, now, out);
}

void scheduler_core::keep_cancelled_output(task_record& task,
                                           const attempt_result& result,
                                           plan& out) {
  if (result.started_at == 0)
    return; // cancelled before it started: no output
  out.amended.push_back(task.id);
  task.stdout_tail = result.stdout_tail;
  task.stderr_tail = result.stderr_tail;
  task.stdout_bytes = result.stdout_bytes;
  task.stderr_bytes = result.stderr_bytes;
  auto& attempt = task.attempts.back();
  if (attempt.started_at == 0)
    attempt.started_at = result.started_at;
}

bool scheduler_core::cancelled_output_pending(task_id id) const {
  const auto* task = find(id);
  if (task == nullptr || task->status != task_status::cancelled
      || task->attempts.empty())
    return false;
  const auto* worker = cluster_.find(task->worker_id);
  return worker != nullptr && worker->running.count(task->current_ref()) > 0;
}

bool scheduler_core::counted_before(const task_record* task,
                                    const attempt_result& result,
                                    const std::string& worker_id) const {
  if (task == nullptr)
    return false; // forgotten: whether it counted is not known any more
  // The attempt's record was written from this very result.
  const auto* a = task->find_attempt(result.ref);
  return a != nullptr && a->worker_id == worker_id
         && a->outcome == result.outcome && a->started_at == result.started_at
         && a->finished_at == result.finished_at;
}

std::string scheduler_core::why_not_current(const task_record* task,
                                            const attempt_ref& ref,
                                            const std::string& worker_id) const {
  if (task == nullptr)
    return "the task is no longer kept (forgotten by retention; the result "
           "may have counted before)";
  const auto* attempt = task->find_attempt(ref);
  std::string why;
  if (attempt == nullptr && ref.epoch < settings_.epoch)
    why = "it was sent before the master restarted, and the master has no "
          "record of it";
  else if (attempt == nullptr)
    why = "the master has no such attempt";
  else if (attempt->worker_id != worker_id)
    why = fmt::format("the attempt is {}'s", attempt->worker_id);
  else if (attempt->outcome == attempt_outcome::running)
    why = "the attempt is no longer the task's current one";
  else
    why = fmt::format("the attempt was given up ({}{}{})",
                      to_string(attempt->outcome),
                      attempt->reason.empty() ? "" : ": ", attempt->reason);
  return fmt::format("{}; the task is {} after {} attempt{}", why,
                     to_string(task->status), task->attempts.size(),
                     task->attempts.size() == 1 ? "" : "s");
}

void scheduler_core::learn_run_time(worker_state& worker, time_ms run_time) {
  // Weight 1/4: a handful of slow attempts stop prefetching quickly, and it
  // takes a few dozen fast ones to resume after a very slow one.
  auto r = static_cast<double>(std::max<time_ms>(run_time, 0));
  worker.recent_run_ms = worker.recent_run_ms < 0
                           ? r
                           : worker.recent_run_ms + (r - worker.recent_run_ms) / 4;
  worker.prefetch = 0;
  if (settings_.prefetch_budget <= 0)
    return;
  // Each slot gets floor(budget / r) attempts (at most three): a task given
  // later waits behind about the budget's worth of work on any slot, and a
  // worker of tasks longer than the budget gets none. Millisecond clocks call
  // the fastest attempts 0 ms long.
  auto budget = static_cast<double>(settings_.prefetch_budget);
  if (worker.recent_run_ms > budget)
    return;
  auto per_slot = std::min(budget / std::max(worker.recent_run_ms, 0.5),
                           static_cast<double>(max_held_per_slot - 1));
  worker.prefetch = worker.info.slots * static_cast<uint32_t>(per_slot);
}

void scheduler_core::stop_prefetch(worker_state& worker) {
  worker.recent_run_ms = std::max(worker.recent_run_ms,
                                  static_cast<double>(prefetch_wait_limit()));
  worker.prefetch = 0;
}

void scheduler_core::drain(const std::string& worker_id, time_ms now,
                           plan& out) {
  auto* worker = cluster_.find(worker_id);
  if (worker == nullptr || worker->status != worker_status::up)
    return;
  set_worker_status(*worker, worker_status::draining, now, out);
}

void scheduler_core::leave(const std::string& worker_id, time_ms now,
                           plan& out) {
  auto* worker = cluster_.find(worker_id);
  if (worker == nullptr)
    return;
  auto held = worker->release_all();
  uint32_t requeued = 0;
  for (const auto& ref : held) {
    auto* task = find_mutable(ref.task);
    if (task != nullptr && task->status == task_status::running
        && task->current_ref() == ref) {
      requeue_attempt(*task, attempt_outcome::returned,
                      fmt::format("worker {} left", worker_id), now, out);
      if (task->status == task_status::queued)
        ++requeued;
    }
  }
  auto change = out.worker_changes.size();
  set_worker_status(*worker, worker_status::left, now, out);
  if (change < out.worker_changes.size())
    out.worker_changes[change].requeued = requeued;
  dispatch(now, out);
}

void scheduler_core::worker_lost(const std::string& worker_id,
                                 const std::string& reason, time_ms now,
                                 plan& out) {
  auto* worker = cluster_.find(worker_id);
  if (worker == nullptr || worker->status == worker_status::lost
      || worker->status == worker_status::left)
    return;
  auto held = worker->release_all();
  auto change = out.worker_changes.size();
  set_worker_status(*worker, worker_status::lost, now, out);
  // A stall long enough for a peer to give up on the connection: still
  // going (no tick since), or just over.
  bool stalling = last_tick_ != 0
                  && now - last_tick_ > settings_.heartbeat_timeout / 2;
  bool after_stall = stall_ended_ != 0
                     && now - stall_ended_ <= settings_.heartbeat_timeout;
  uint32_t requeued = 0;
  uint32_t waiting = 0;
  for (const auto& ref : held) {
    auto* task = find_mutable(ref.task);
    if (task != nullptr && task->status == task_status::running
        && task->current_ref() == ref) {
      if (stalling || after_stall) {
        orphans_[ref] = now + settings_.reconcile_grace;
        task->reason = awaiting_claim(worker_id, "the master stalled");
        ++waiting;
        continue;
      }
      requeue_attempt(*task, attempt_outcome::lost,
                      fmt::format("worker {} lost: {}", worker_id, reason),
                      now, out);
      // A task whose workers were lost too often ends FAILED instead.
      if (task->status == task_status::queued)
        ++requeued;
    }
  }
  out.worker_changes[change].reason
    = waiting == 0 ? reason
                   : fmt::format("{} while the master was stalled; {} running "
                                 "task(s) wait {} ms for it to come back",
                                 reason, waiting, settings_.reconcile_grace);
  out.worker_changes[change].requeued = requeued;
  dispatch(now, out);
}

// -- time ---------------------------------------------------------------------

time_ms scheduler_core::tick(time_ms now, plan& out) {
  // Time this master did not run is nobody's silence: without this, a
  // master stopped for longer than the heartbeat timeout would call every
  // worker LOST the moment it resumed, requeue what they run and drop the
  // results they hold for it, although they never stopped.
  time_ms stalled = 0;
  if (last_tick_ != 0 && now - last_tick_ > 2 * settings_.tick_interval)
    stalled = now - last_tick_ - settings_.tick_interval;
  last_tick_ = now;
  if (stalled >= settings_.heartbeat_timeout / 2)
    stall_ended_ = now;
  if (stalled > 0) {
    for (auto& [id, worker] : cluster_.workers())
      worker.last_heartbeat = std::min(now, worker.last_heartbeat + stalled);
    for (auto& [ref, deadline] : orphans_)
      deadline += stalled;
  }
  std::vector<std::string> silent;
  for (const auto& [id, worker] : cluster_.workers())
    if ((worker.status == worker_status::up
         || worker.status == worker_status::draining)
        && now - worker.last_heartbeat > settings_.heartbeat_timeout)
      silent.push_back(id);
  for (const auto& id : silent)
    worker_lost(id,
                fmt::format("no heartbeat for {} ms",
                            now - cluster_.find(id)->last_heartbeat),
                now, out);
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    auto id = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    auto* task = find_mutable(id);
    if (task == nullptr || task->status != task_status::queued)
      continue;
    task->not_before = 0;
    task->reason.clear();
    enqueue(*task, now);
  }
  std::vector<attempt_ref> expired;
  for (const auto& [ref, deadline] : orphans_)
    if (deadline <= now)
      expired.push_back(ref);
  for (const auto& ref : expired) {
    orphans_.erase(ref);
    auto* task = find_mutable(ref.task);
    if (task != nullptr && task->status == task_status::running
        && task->current_ref() == ref) {
      out.unclaimed.emplace_back(task->worker_id, ref);
      requeue_attempt(
        *task, attempt_outcome::lost,
        fmt::format("worker {} did not reclaim the attempt within {} ms of "
                    "the master restarting or stalling",
                    task->worker_id, settings_.reconcile_grace),
        now, out);
    }
  }
  prune(now, out);
  dispatch(now, out);
  return stalled;
}

void scheduler_core::dispatch(time_ms now, plan& out) {
  if (!dispatching_)
    return;
  if (!awaited_after_restart_.empty() && now >= hold_dispatch_until_) {
    out.workers_not_back.assign(awaited_after_restart_.begin(),
                                awaited_after_restart_.end());
    awaited_after_restart_.clear();
  }
  if (awaited_after_restart_.empty() && held_after_restart_.size() > 0)
    queue_.absorb(held_after_restart_);
  place_queued(now, out);
  reclaim_for_idle_slots(out);
}

void scheduler_core::place_queued(time_ms now, plan& out) {
  if (queue_.size() == 0)
    return;
  auto free = cluster_.room();
  while (free > 0 && queue_.size() > 0) {
    const std::string* best_class = nullptr;
    std::pair<time_ms, task_id> best_entry;
    std::string best_worker;
    for (const auto& [key, cls] : queue_.classes()) {
      const auto& head = cls.entries.begin()->first;
      if (best_class != nullptr && !(head < best_entry))
        continue;
      const auto* head_task = find(head.second);
      auto where = cluster_.place(cls.labels,
                                  head_task != nullptr && head_task->no_prefetch);
      if (where.worker_id.empty())
        continue;
      best_class = &key;
      best_entry = head;
      best_worker = std::move(where.worker_id);
    }
    if (best_class == nullptr)
      break;
    auto id = queue_.pop_front(*best_class);
    start_attempt(*find_mutable(id), *cluster_.find(best_worker),
                  best_entry.first, now, out);
    --free;
  }
}

void scheduler_core::reclaim_for_idle_slots(plan& out) {
  // Cheap for the usual cases: no free slot, or nobody holds attempts that
  // may be waiting.
  if (cluster_.free_slots() == 0)
    return;
  auto& workers = cluster_.workers();
  if (std::none_of(workers.begin(), workers.end(), [](const auto& w) {
        return w.second.may_hand_back();
      }))
    return;
  // Requests still out, per worker whose slot idled.
  std::map<std::string, uint32_t> asked_for;
  for (const auto& [id, w] : workers)
    for (const auto& [ref, taker] : w.reclaiming)
      ++asked_for[taker];
  struct candidate {
    time_ms rank;
    attempt_ref ref;
    worker_state* holder;
    const string_map* labels;
  };
  std::vector<candidate> candidates;
  for (auto& [id, w] : workers) {
    // Tasks this short start on their holder about as soon as a hand-back
    // and a new assignment could start them elsewhere.
    if (!w.may_hand_back() || w.recent_run_ms < reclaim_min_run_ms)
      continue;
    for (const auto& [ref, rank] : w.prefetched) {
      const auto* t = find(ref.task);
      if (t != nullptr && t->status == task_status::running
          && t->current_ref() == ref && w.reclaiming.count(ref) == 0)
        candidates.push_back({rank, ref, &w, &t->spec.labels});
    }
  }
  // A worker starts what it holds lowest rank first: the highest ranks are
  // the likeliest to be waiting still, and the longest.
  std::sort(candidates.begin(), candidates.end(),
            [](const candidate& a, const candidate& b) {
              return std::tie(b.rank, b.ref) < std::tie(a.rank, a.ref);
            });
  for (auto& [id, taker] : workers) {
    if (taker.status != worker_status::up)
      continue;
    auto free = taker.free_slots();
    auto asked = asked_for.find(id);
    if (asked != asked_for.end())
      free = free > asked->second ? free - asked->second : 0;
    for (auto& c : candidates) {
      if (free == 0)
        break;
      if (c.holder == nullptr || c.holder == &taker
          || !c.holder->may_hand_back()
          || !labels_match(*c.labels, taker.info.labels))
        continue;
      c.holder->reclaiming.emplace(c.ref, id);
      out.reclaims.emplace_back(c.holder->info.id, c.ref);
      c.holder = nullptr;
      --free;
    }
  }
}

// -- recovery -----------------------------------------------------------------

void scheduler_core::restore(std::vector<task_record> records, task_id last_id,
                             time_ms now,
                             const std::vector<std::string>& connected_before) {
  task_id max_id = last_id;
  for (auto& record : records) {
    auto id = record.id;
    max_id = std::max(max_id, id);
    if (!record.spec.idempotency_key.empty())
      by_idempotency_key_[record.spec.idempotency_key] = id;
    by_status_[index_of(record.status)].insert(id);
    auto& task = tasks_[id] = std::move(record);
    switch (task.status) {
      case task_status::queued:
        ++queued_by_priority_[index_of(task.spec.prio)];
        // Journals of earlier versions kept these on a queued task.
        clear_run_fields(task);
        // A delayed task is journaled when admitted, before its not_before
        // is set: derive it from the spec.
        if (task.not_before == 0 && task.spec.run_at > now) {
          task.not_before = task.spec.run_at;
          task.reason = fmt::format("scheduled to start at {}",
                                    format_rfc3339(task.not_before));
        }
        if (task.not_before > now) {
          delayed_.emplace(task.not_before, id);
        } else {
          // Keep the original rank so the order survives the restart.
          task.not_before = 0;
          auto ready_since = task.queued_at != 0 ? task.queued_at
                                                 : task.created_at;
          queue_.push(id, task.spec.prio, task.spec.labels, ready_since);
          task.queued_at = ready_since;
        }
        break;
      case task_status::running:
        orphans_[task.current_ref()] = now + settings_.reconcile_grace;
        awaited_after_restart_.insert(task.worker_id);
        task.reason = awaiting_claim(task.worker_id, "the master restarted");
        break;
      default:
        finished_.emplace(task.finished_at, id);
    }
  }
  next_id_ = max_id + 1;
  // Only a task that did not end can have an attempt the last master sent
  // and never journaled: a queued one, or a running one whose worker was
  // lost and whose next attempt went out unjournaled. With every task
  // ended, the connected workers need not be waited for.
  if (queue_.size() > 0 || !delayed_.empty() || !orphans_.empty())
    awaited_after_restart_.insert(connected_before.begin(),
                                  connected_before.end());
  hold_dispatch_until_ = now + settings_.restart_hold;
  // What is queued now is what the last master left: held apart for the
  // wait, while tasks submitted from now on are dispatched as usual.
  if (!awaited_after_restart_.empty()) {
    std::swap(queue_, held_after_restart_);
    restored_up_to_ = max_id;
  }
}

// -- queries ------------------------------------------------------------------

const task_record* scheduler_core::find(task_id id) const {
  auto i = tasks_.find(id);
  return i == tasks_.end() ? nullptr : &i->second;
}

std::string scheduler_core::reason_of(const task_record& task) const {
  if (task.status != task_status::queued)
    return task.reason;
  if (pending_.count(task.id) != 0)
    return "being written to the journal";
  if (task.not_before > 0)
    return task.reason;
  if (held_for_restart(task))
    return restart_hold_reason();
  const auto* cls = queue_.class_of(task.spec.labels);
  if (cls == nullptr)
    return task.reason;
  auto where = cluster_.place(cls->labels);
  if (!where.worker_id.empty())
    return "about to be dispatched";
  if (!task.reason.empty() && where.waiting_for_slot)
    return task.reason;
  return where.reason;
}

task_page scheduler_core::list(const task_filter& filter) const {
  task_page page;
  auto limit = std::clamp<size_t>(filter.limit, 1, 1000);
  auto accept = [&](const task_record& task) {
    if (filter.prio && task.spec.prio != *filter.prio)
      return true;
    page.tasks.push_back(&task);
    return page.tasks.size() <= limit;
  };
  if (filter.status) {
    const auto& ids = by_status_[index_of(*filter.status)];
    auto i = filter.cursor != 0 ? ids.lower_bound(filter.cursor) : ids.end();
    while (i != ids.begin()) {
      --i;
      if (!accept(tasks_.at(*i)))
        break;
    }
  } else {
    auto i = filter.cursor != 0 ? tasks_.lower_bound(filter.cursor)
                                : tasks_.end();
    while (i != tasks_.begin()) {
      --i;
      if (!accept(i->second))
        break;
    }
  }
  if (page.tasks.size() > limit) {
    page.tasks.pop_back();
    page.next_cursor = page.tasks.back()->id;
  }
  return page;
}

scheduler_stats scheduler_core::stats() const {
  scheduler_stats s;
  s.queued_by_priority = queued_by_priority_;
  s.queued = by_status_[index_of(task_status::queued)].size();
  s.delayed = delayed_.size();
  s.running = by_status_[index_of(task_status::running)].size();
  for (size_t i = 0; i < task_status_count; ++i)
    s.tasks_by_status[i] = by_status_[i].size();
  s.workers_up = cluster_.count(worker_status::up);
  s.workers_lost = cluster_.count(worker_status::lost);
  s.workers_draining = cluster_.count(worker_status::draining);
  s.slots_total = cluster_.total_slots();
  s.slots_used = cluster_.used_slots();
  return s;
}

// -- private ------------------------------------------------------------------

task_record* scheduler_core::find_mutable(task_id id) {
  auto i = tasks_.find(id);
  return i == tasks_.end() ? nullptr : &i->second;
}

void scheduler_core::set_status(task_record& task, task_status to, time_ms now,
                                plan& out, task_change change) {
  auto from = task.status;
  by_status_[index_of(from)].erase(task.id);
  by_status_[index_of(to)].insert(task.id);
  if (from == task_status::queued)
    --queued_by_priority_[index_of(task.spec.prio)];
  if (to == task_status::queued)
    ++queued_by_priority_[index_of(task.spec.prio)];
  task.status = to;
  change.id = task.id;
  change.from = from;
  change.to = to;
  change.prio = task.spec.prio;
  change.at = now;
  change.worker_id = task.worker_id;
  change.started_at = task.started_at;
  change.attempts = static_cast<uint32_t>(task.attempts.size());
  change.reason = task.reason;
  out.task_changes.push_back(std::move(change));
}

void scheduler_core::enqueue(task_record& task, time_ms now, bool keep_place) {
  if (task.not_before > now) {
    delayed_.emplace(task.not_before, task.id);
    return;
  }
  task.not_before = 0;
  if (!keep_place || task.queued_at == 0) {
    task.queued_at = now;
    task.wait_counted = false;
  }
  (held_for_restart(task) ? held_after_restart_ : queue_)
    .push(task.id, task.spec.prio, task.spec.labels, task.queued_at);
}

bool scheduler_core::held_for_restart(const task_record& task) const {
  return !awaited_after_restart_.empty() && task.id <= restored_up_to_;
}

void scheduler_core::mark_running(task_record& task, const std::string& worker_id,
                                  uint32_t epoch, time_ms now, plan& out) {
  attempt_record attempt;
  attempt.number = next_attempt_number(task);
  attempt.epoch = epoch;
  attempt.worker_id = worker_id;
  attempt.started_at = now;
  task.attempts.push_back(std::move(attempt));
  task.worker_id = worker_id;
  task.started_at = now;
  task.finished_at = 0;
  task.has_exit_code = false;
  task.reason.clear();
  task_change change;
  change.queue_wait = now - task.queued_at;
  change.new_wait = !task.wait_counted;
  task.wait_counted = true;
  set_status(task, task_status::running, now, out, change);
}

bool scheduler_core::adopt_unjournaled(const std::string& worker_id,
                                       const attempt_ref& ref, time_ms now,
                                       plan& out) {
  auto* task = find_mutable(ref.task);
  if (task == nullptr || ref.epoch >= settings_.epoch
      || ref.attempt != next_attempt_number(*task))
    return false;
  if (task->status == task_status::running) {
    // Journaled RUNNING on another worker, whose claim is still awaited:
    // the last master had moved the task on (that worker lost, or the
    // attempt ended and a retry went out) without journaling it. Replay
    // that, then adopt.
    auto current = task->current_ref();
    if (task->worker_id == worker_id || orphans_.count(current) == 0)
      return false;
    orphans_.erase(current);
    requeue_attempt(*task, attempt_outcome::lost,
                    fmt::format("the master before the restart had moved it "
                                "on to worker {}",
                                worker_id),
                    now, out);
  }
  if (task->status != task_status::queued)
    return false;
  dequeue(*task);
  mark_running(*task, worker_id, ref.epoch, now, out);
  return true;
}

std::string scheduler_core::awaiting_claim(const std::string& worker_id,
                                           const char* why) const {
  return fmt::format("{}: waiting up to {} s for worker {} to come back and "
                     "claim it",
                     why, settings_.reconcile_grace / 1000, worker_id);
}

std::string scheduler_core::restart_hold_reason() const {
  // Names a few: hundreds of workers would bury the point.
  constexpr size_t named = 3;
  std::string who;
  size_t n = 0;
  for (const auto& id : awaited_after_restart_) {
    if (n == named)
      break;
    who += (n++ == 0 ? "" : ", ") + id;
  }
  if (awaited_after_restart_.size() > named)
    who += fmt::format(" and {} more", awaited_after_restart_.size() - named);
  return fmt::format("the master restarted: tasks queued before it wait "
                     "until worker{} {} {} back, or {} at the latest",
                     awaited_after_restart_.size() == 1 ? "" : "s", who,
                     awaited_after_restart_.size() == 1 ? "is" : "are",
                     format_rfc3339(hold_dispatch_until_));
}

void scheduler_core::dequeue(task_record& task) {
  if (!queue_.erase(task.id, task.spec.prio, task.spec.labels, task.queued_at))
    held_after_restart_.erase(task.id, task.spec.prio, task.spec.labels,
                              task.queued_at);
  delayed_.erase({task.not_before, task.id});
  task.not_before = 0;
}

void scheduler_core::start_attempt(task_record& task, worker_state& worker,
                                   time_ms rank, time_ms now, plan& out) {
  bool prefetched = worker.running.size() >= worker.info.slots;
  mark_running(task, worker.info.id, settings_.epoch, now, out);
  auto ref = task.current_ref();
  cluster_.assign(worker, ref);
  if (prefetched)
    worker.prefetched.emplace(ref, rank);
  assignment work;
  work.ref = ref;
  work.command = task.spec.command;
  work.env = task.spec.env;
  work.timeout_seconds = task.spec.timeout_seconds;
  work.rank = rank;
  if (prefetched)
    work.start_within_ms = static_cast<uint32_t>(prefetch_wait_limit());
  out.assignments.emplace_back(worker.info.id, std::move(work));
}

void scheduler_core::apply_result(task_record& task,
                                  const attempt_result& result, time_ms now,
                                  plan& out) {
  auto& attempt = task.attempts.back();
  // A worker reports started_at 0 for an attempt it never started.
  bool never_started = result.started_at == 0;
  attempt.started_at = result.started_at;
  attempt.finished_at = result.finished_at != 0 ? result.finished_at : now;
  attempt.exit_code = result.exit_code;
  attempt.has_exit_code = result.has_exit_code;
  attempt.outcome = result.outcome;
  attempt.reason = result.reason;
  task.started_at = attempt.started_at;
  task.exit_code = result.exit_code;
  task.has_exit_code = result.has_exit_code;
  task.stdout_tail = result.stdout_tail;
  task.stderr_tail = result.stderr_tail;
  task.stdout_bytes = result.stdout_bytes;
  task.stderr_bytes = result.stderr_bytes;
  task_change change;
  change.ran = !never_started;
  change.run_time = never_started ? 0
                                  : std::max<time_ms>(0, attempt.finished_at
                                                           - attempt.started_at);
  change.attempt_end = result.outcome;
  switch (result.outcome) {
    case attempt_outcome::succeeded:
      task.reason.clear();
      finish(task, task_status::succeeded, attempt.finished_at, out, change);
      return;
    case attempt_outcome::returned:
    case attempt_outcome::lost:
      // Handed back before it started (prefetch, refusal): it keeps its place
      // and is not prefetched again.
      if (never_started)
        task.no_prefetch = true;
      requeue_attempt(task, result.outcome, describe_exit(result), now, out);
      return;
    case attempt_outcome::cancelled:
      task.reason = describe_exit(result);
      finish(task, task_status::cancelled, attempt.finished_at, out, change);
      return;
    case attempt_outcome::running:
    case attempt_outcome::failed:
    case attempt_outcome::timed_out:
      break;
  }
  auto final_status = result.outcome == attempt_outcome::timed_out
                        ? task_status::timed_out
                        : task_status::failed;
  auto failed = failures(task);
  if (failed > task.max_retries) {
    task.reason = describe_exit(result);
    finish(task, final_status, attempt.finished_at, out, change);
    return;
  }
  auto policy = settings_.retry;
  if (task.spec.retry_backoff_ms > 0)
    policy.base = task.spec.retry_backoff_ms;
  if (task.spec.retry_backoff_max_ms > 0)
    policy.cap = task.spec.retry_backoff_max_ms;
  task.not_before = now + policy.delay(failed, random_());
  task.reason = fmt::format("attempt {} {}; retry {} of {} at {}",
                            attempt.number, describe_exit(result), failed,
                            task.max_retries, format_rfc3339(task.not_before));
  back_to_queue(task, now, out, change, false);
}

void scheduler_core::requeue_attempt(task_record& task,
                                     attempt_outcome outcome,
                                     const std::string& reason, time_ms now,
                                     plan& out) {
  auto& attempt = task.attempts.back();
  attempt.outcome = outcome;
  if (attempt.finished_at == 0)
    attempt.finished_at = now;
  attempt.reason = reason;
  task_change change;
  change.ran = attempt.ran();
  change.run_time = change.ran ? std::max<time_ms>(0, attempt.finished_at
                                                        - attempt.started_at)
                               : 0;
  change.attempt_end = outcome;
  if (outcome == attempt_outcome::lost) {
    auto lost = std::count_if(task.attempts.begin(), task.attempts.end(),
                              [](const attempt_record& a) {
                                return a.outcome == attempt_outcome::lost;
                              });
    if (static_cast<uint32_t>(lost) >= settings_.max_lost_attempts) {
      task.reason = fmt::format("its worker was lost {} times; last: {}", lost,
                                reason);
      finish(task, task_status::failed, now, out, change);
      return;
    }
  }
  task.reason = reason;
  task.not_before = 0;
  // Its place in the queue, as a broker requeues an unacknowledged message:
  // the task waited its turn once already.
  back_to_queue(task, now, out, change, true);
}

void scheduler_core::back_to_queue(task_record& task, time_ms now, plan& out,
                                   task_change change, bool keep_place) {
  clear_run_fields(task);
  set_status(task, task_status::queued, now, out, change);
  enqueue(task, now, keep_place);
}

void scheduler_core::finish(task_record& task, task_status status, time_ms now,
                            plan& out, task_change change) {
  task.finished_at = now;
  set_status(task, status, now, out, change);
  finished_.emplace(task.finished_at, task.id);
}

void scheduler_core::prune(time_ms now, plan& out) {
  while (!finished_.empty()) {
    auto [at, id] = *finished_.begin();
    bool too_many = settings_.retention_max_finished > 0
                    && finished_.size() > settings_.retention_max_finished;
    bool too_old = settings_.retention > 0 && at < now - settings_.retention;
    if (!too_many && !too_old)
      break;
    finished_.erase(finished_.begin());
    auto i = tasks_.find(id);
    if (i == tasks_.end())
      continue;
    by_status_[index_of(i->second.status)].erase(id);
    const auto& key = i->second.spec.idempotency_key;
    if (!key.empty()) {
      auto k = by_idempotency_key_.find(key);
      if (k != by_idempotency_key_.end() && k->second == id)
        by_idempotency_key_.erase(k);
    }
    tasks_.erase(i);
    out.removed.push_back(id);
  }
}

void scheduler_core::set_worker_status(worker_state& worker, worker_status to,
                                       time_ms now, plan& out) {
  if (worker.status == to)
    return;
  worker_change change;
  change.id = worker.info.id;
  change.from = worker.status;
  change.to = to;
  worker.status = to;
  worker.status_since = now;
  change.task_changes_before = out.task_changes.size();
  out.worker_changes.push_back(std::move(change));
}

uint32_t scheduler_core::failures(const task_record& task) const {
  return static_cast<uint32_t>(
    std::count_if(task.attempts.begin(), task.attempts.end(),
                  [](const attempt_record& a) {
                    return a.outcome == attempt_outcome::failed
                           || a.outcome == attempt_outcome::timed_out;
                  }));
}

} // namespace taskmaster::core
