#pragma once

#include <array>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "actors/messages.hpp"

namespace taskmaster {

/// TaskMaster's Prometheus metrics, fed from the scheduler's event stream.
/// The registry is thread-safe: the gateway serializes it for GET /metrics
/// while the monitor actor updates it.
class task_metrics {
public:
  task_metrics();

  /// Applies one batch of scheduler events.
  void record(const event_batch& events);

  /// The Prometheus text exposition of everything.
  std::string render() const;

  /// Whether the journal has failed (it stays so until a restart).
  void set_journal_failed(bool failed) {
    journal_failed_.Set(failed ? 1 : 0);
  }

  const std::shared_ptr<prometheus::Registry>& registry() const {
    return registry_;
  }

private:
  void set_gauges(const cluster_summary& summary);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter& submitted_;
  prometheus::Counter& completed_;
  prometheus::Counter& failed_;
  prometheus::Counter& timed_out_;
  prometheus::Counter& cancelled_;
  prometheus::Counter& retried_;
  prometheus::Counter& requeued_;
  prometheus::Counter& workers_lost_;
  std::array<prometheus::Counter*, core::priority_count> by_priority_{};
  prometheus::Gauge& queue_length_;
  std::array<prometheus::Gauge*, core::priority_count> queue_by_priority_{};
  prometheus::Gauge& running_;
  prometheus::Gauge& worker_count_;
  std::array<prometheus::Gauge*, 4> workers_by_state_{};
  prometheus::Gauge& slots_total_;
  prometheus::Gauge& slots_used_;
  prometheus::Gauge& journal_failed_;
  prometheus::Histogram& execution_seconds_;
  prometheus::Histogram& queue_wait_seconds_;
};

} // namespace taskmaster
