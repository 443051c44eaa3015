#include "test/support/in_process_master.hpp"

#include <stdexcept>

namespace taskmaster::test {

in_process_master::in_process_master(options opts) {
  sys_ = std::make_unique<caf::actor_system>(cfg_);
  std::string error;
  journal_ = store::task_journal::open(dir_ / "data", {}, error);
  if (!journal_)
    throw std::runtime_error(error);
  auto restored = journal_->load();
  metrics_ = std::make_shared<task_metrics>();
  monitor_ = sys_->spawn(taskmaster::monitor, metrics_);
  scheduler_options sched;
  sched.settings = opts.settings;
  sched.ack_delay = opts.ack_delay;
  scheduler_ = sys_->spawn(taskmaster::scheduler, sched, journal_,
                           std::move(restored), monitor_);
  endpoint_ = sys_->spawn(cluster_endpoint, scheduler_);
  if (opts.worker_slots > 0) {
    worker_options w;
    w.info.id = "local";
    w.info.host = "localhost";
    w.info.slots = opts.worker_slots;
    w.info.incarnation = 42;
    worker_ = spawn_worker_node(*sys_, w, endpoint_);
  }
  if (opts.http) {
    opts.gateway.port = 0;
    if (!opts.gateway.routes.journal_problem)
      opts.gateway.routes.journal_problem = [j = journal_] {
        return j->failure();
      };
    gateway_ = std::make_unique<http::gateway>(*sys_, scheduler_, monitor_,
                                               metrics_, opts.gateway);
    auto bound = gateway_->start();
    if (auto* why = std::get_if<std::string>(&bound))
      throw std::runtime_error(*why);
    url_ = "http://127.0.0.1:" + std::to_string(std::get<uint16_t>(bound));
  }
}

in_process_master::~in_process_master() {
  if (gateway_)
    gateway_->stop();
  if (worker_)
    caf::anon_send_exit(worker_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(endpoint_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(scheduler_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(monitor_, caf::exit_reason::user_shutdown);
  {
    caf::scoped_actor self{*sys_};
    if (worker_)
      self->wait_for(worker_);
    self->wait_for(endpoint_, scheduler_, monitor_);
  }
  worker_ = nullptr;
  endpoint_ = nullptr;
  scheduler_ = nullptr;
  monitor_ = nullptr;
  // Before the actor system goes: the journal's last callbacks send to the
  // scheduler, and must find the system they send through.
  journal_->close();
  sys_.reset();
}

} // namespace taskmaster::test
