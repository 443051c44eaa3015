#pragma once

#include <memory>
#include <string>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/messages.hpp"
#include "actors/monitor.hpp"
#include "actors/scheduler.hpp"
#include "actors/store/task_journal.hpp"
#include "actors/task_metrics.hpp"
#include "actors/worker.hpp"
#include "http/gateway.hpp"
#include "test/support/temp_dir.hpp"

/// A master (scheduler, monitor, journal, optionally a local worker and the
/// HTTP gateway) inside the test process, on the real CAF scheduler.
namespace taskmaster::test {

struct test_config : caf::actor_system_config {
  test_config() {
    add_message_types<caf::id_block::taskmaster>();
    load<caf::io::middleman>();
    set("scheduler.max-threads", 2);
  }
};

class in_process_master {
public:
  struct options {
    core::scheduler_settings settings;
    /// How long the scheduler holds acknowledgements back.
    std::chrono::milliseconds ack_delay{5};
    uint32_t worker_slots = 0;
    bool http = false;
    http::gateway_options gateway;
  };

  explicit in_process_master(options opts);
  ~in_process_master();

  caf::actor_system& system() {
    return *sys_;
  }

  scheduler_actor& scheduler() {
    return scheduler_;
  }

  cluster_actor& endpoint() {
    return endpoint_;
  }

  monitor_actor& monitor() {
    return monitor_;
  }

  task_metrics& metrics() {
    return *metrics_;
  }

  store::task_journal& journal() {
    return *journal_;
  }

  /// "http://127.0.0.1:PORT" when the gateway runs.
  const std::string& url() const {
    return url_;
  }

  const temp_dir& dir() const {
    return dir_;
  }

  size_t websocket_sessions() const {
    return gateway_ ? gateway_->websocket_sessions() : 0;
  }

private:
  temp_dir dir_;
  test_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::shared_ptr<store::task_journal> journal_;
  std::shared_ptr<task_metrics> metrics_;
  monitor_actor monitor_;
  scheduler_actor scheduler_;
  cluster_actor endpoint_;
  worker_node_actor worker_;
  std::unique_ptr<http::gateway> gateway_;
  std::string url_;
};

} // namespace taskmaster::test
