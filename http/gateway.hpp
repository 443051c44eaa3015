#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <variant>

#include <caf/actor_system.hpp>

#include "actors/messages.hpp"
#include "actors/task_metrics.hpp"
#include "http/gateway_server.hpp"
#include "http/routes.hpp"
#include "http/scheduler_client.hpp"
#include "http/ws_hub.hpp"

/// The HTTP side of the master: REST API, /metrics, the dashboard and the
/// WebSocket stream, all on one port.
namespace taskmaster::http {

struct gateway_options {
  std::string bind = "127.0.0.1";
  uint16_t port = 8080;
  size_t threads = 32;
  caf::timespan request_timeout = std::chrono::seconds(10);
  /// See gateway_server::set_slow_request_limit.
  std::chrono::milliseconds slow_request_limit = std::chrono::seconds(10);
  route_options routes;
  ws_options websocket;
};

class gateway {
public:
  gateway(caf::actor_system& sys, scheduler_actor scheduler,
          monitor_actor monitor, std::shared_ptr<task_metrics> metrics,
          gateway_options options);

  ~gateway();

  /// Binds and starts serving. Returns the bound port, or why not.
  std::variant<uint16_t, std::string> start();

  /// Stops serving: closes WebSocket sessions, stops the HTTP server and
  /// joins their threads.
  void stop();

  size_t websocket_sessions() const {
    return hub_ ? hub_->session_count() : 0;
  }

private:
  caf::actor_system& sys_;
  gateway_options options_;
  scheduler_actor scheduler_;
  monitor_actor monitor_;
  scheduler_client client_;
  rest_api api_;
  std::unique_ptr<ws_hub> hub_;
  gateway_actor bridge_;
  std::unique_ptr<gateway_server> server_;
  std::thread thread_;
};

} // namespace taskmaster::http
