#include "actors/task_metrics.hpp"

#include <prometheus/text_serializer.h>

namespace taskmaster {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

prometheus::Counter& counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help) {
  return BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge& gauge(prometheus::Registry& r, const std::string& name,
                         const std::string& help) {
  return BuildGauge().Name(name).Help(help).Register(r).Add({});
}

/// From a millisecond to ten minutes: shell commands span that range.
prometheus::Histogram::BucketBoundaries seconds_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1,     2.5,    5,     10,   30,    60,   120, 300, 600};
}

double seconds(core::time_ms ms) {
  return static_cast<double>(ms) / 1000.0;
}

} // namespace

task_metrics::task_metrics()
  : registry_(std::make_shared<prometheus::Registry>()),
    submitted_(counter(*registry_, "taskmaster_tasks_submitted_total",
                       "Tasks accepted by the master")),
    completed_(counter(*registry_, "taskmaster_tasks_completed_total",
                       "Tasks that ended SUCCEEDED")),
    failed_(counter(*registry_, "taskmaster_tasks_failed_total",
                    "Tasks that ended FAILED or TIMED_OUT")),
    timed_out_(counter(*registry_, "taskmaster_tasks_timed_out_total",
                       "Tasks that ended TIMED_OUT")),
    cancelled_(counter(*registry_, "taskmaster_tasks_cancelled_total",
                       "Tasks that ended CANCELLED")),
    retried_(counter(*registry_, "taskmaster_task_retries_total",
                     "Failed attempts that were retried")),
    requeued_(counter(*registry_, "taskmaster_tasks_requeued_total",
                      "Attempts put back in the queue because their worker "
                      "was lost or handed them back")),
    workers_lost_(counter(*registry_, "taskmaster_workers_lost_total",
                          "Times a worker was declared LOST")),
    queue_length_(gauge(*registry_, "taskmaster_task_queue_length",
                        "Tasks in status QUEUED")),
    running_(gauge(*registry_, "taskmaster_tasks_running",
                   "Tasks in status RUNNING")),
    worker_count_(gauge(*registry_, "taskmaster_worker_count",
                        "Workers that are UP")),
    slots_total_(gauge(*registry_, "taskmaster_slots_total",
                       "Task slots of UP and DRAINING workers")),
    slots_used_(gauge(*registry_, "taskmaster_slots_used",
                      "Task slots occupied by running attempts")),
    journal_failed_(gauge(*registry_, "taskmaster_journal_failed",
                          "1 once the journal failed to store a change (the "
                          "master refuses work until it is restarted)")),
    execution_seconds_(
      BuildHistogram()
        .Name("taskmaster_task_execution_seconds")
        .Help("Run time of finished attempts")
        .Register(*registry_)
        .Add({}, seconds_buckets())),
    queue_wait_seconds_(
      BuildHistogram()
        .Name("taskmaster_task_queue_wait_seconds")
        .Help("Time from ready to dispatched")
        .Register(*registry_)
        .Add({}, seconds_buckets())) {
  auto& by_priority = BuildCounter()
                        .Name("taskmaster_tasks_by_priority_total")
                        .Help("Tasks accepted, by priority")
                        .Register(*registry_);
  auto& queue_by_priority = BuildGauge()
                              .Name("taskmaster_task_queue_length_by_priority")
                              .Help("Tasks in status QUEUED, by priority")
                              .Register(*registry_);
  for (size_t i = 0; i < core::priority_count; ++i) {
    std::string name{core::to_string(static_cast<core::priority>(i))};
    by_priority_[i] = &by_priority.Add({{"priority", name}});
    queue_by_priority_[i] = &queue_by_priority.Add({{"priority", name}});
  }
  auto& workers = BuildGauge()
                    .Name("taskmaster_workers")
                    .Help("Workers known to the master, by state")
                    .Register(*registry_);
  for (size_t i = 0; i < workers_by_state_.size(); ++i)
    workers_by_state_[i] = &workers.Add(
      {{"state",
        std::string{core::to_string(static_cast<core::worker_status>(i))}}});
}

void task_metrics::record(const event_batch& events) {
  using core::task_status;
  for (const auto& e : events.tasks) {
    const auto& c = e.change;
    auto prio = static_cast<size_t>(c.prio);
    if (c.created) {
      submitted_.Increment();
      by_priority_[prio]->Increment();
      continue;
    }
    if (c.from == task_status::queued && c.to == task_status::running
        && c.new_wait)
      queue_wait_seconds_.Observe(seconds(c.queue_wait));
    if (c.from == task_status::running && c.ran)
      execution_seconds_.Observe(seconds(c.run_time));
    switch (c.to) {
      case task_status::succeeded:
        completed_.Increment();
        break;
      case task_status::failed:
        failed_.Increment();
        break;
      case task_status::timed_out:
        failed_.Increment();
        timed_out_.Increment();
        break;
      case task_status::cancelled:
        cancelled_.Increment();
        break;
      case task_status::queued:
        if (c.from == task_status::running) {
          if (c.attempt_end == core::attempt_outcome::failed
              || c.attempt_end == core::attempt_outcome::timed_out)
            retried_.Increment();
          else
            requeued_.Increment();
        }
        break;
      case task_status::running:
        break;
    }
  }
  for (const auto& e : events.workers)
    if (e.change.to == core::worker_status::lost)
      workers_lost_.Increment();
  set_gauges(events.summary);
}

void task_metrics::set_gauges(const cluster_summary& s) {
  queue_length_.Set(static_cast<double>(s.queued));
  for (size_t i = 0; i < core::priority_count && i < s.queued_by_priority.size();
       ++i)
    queue_by_priority_[i]->Set(static_cast<double>(s.queued_by_priority[i]));
  running_.Set(static_cast<double>(s.running));
  worker_count_.Set(static_cast<double>(s.workers_up));
  workers_by_state_[static_cast<size_t>(core::worker_status::up)]->Set(
    static_cast<double>(s.workers_up));
  workers_by_state_[static_cast<size_t>(core::worker_status::draining)]->Set(
    static_cast<double>(s.workers_draining));
  workers_by_state_[static_cast<size_t>(core::worker_status::lost)]->Set(
    static_cast<double>(s.workers_lost));
  slots_total_.Set(static_cast<double>(s.slots_total));
  slots_used_.Set(static_cast<double>(s.slots_used));
}

std::string task_metrics::render() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

} // namespace taskmaster
