#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <variant>

#include <caf/actor_system.hpp>

#include "actors/messages.hpp"
#include "actors/task_metrics.hpp"
#include "http/routes.hpp"
#include "http/scheduler_client.hpp"

/// The HTTP side of the master: REST API, /metrics, the dashboard and the
/// WebSocket stream, all on one port.
namespace taskmaster::http {

struct gateway_options {
  std::string bind = "127.0.0.1";
  uint16_t port = 8080;
  size_t threads = 16;
  size_t max_body_bytes = 16 * 1024 * 1024;
  caf::timespan request_timeout = std::chrono::seconds(10);
  route_options routes;
};

class gateway {
public:
  gateway(caf::actor_system& sys, scheduler_actor scheduler,
          std::shared_ptr<task_metrics> metrics, gateway_options options);

  ~gateway();

  /// Binds and starts serving. Returns the bound port, or why not.
  std::variant<uint16_t, std::string> start();

  /// Stops serving and joins the server thread.
  void stop();

private:
  caf::actor_system& sys_;
  gateway_options options_;
  scheduler_client client_;
  rest_api api_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

} // namespace taskmaster::http
