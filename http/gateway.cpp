#include "http/gateway.hpp"

#include <pthread.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "http/dashboard.hpp"
#include "http/stream_bridge.hpp"

namespace taskmaster::http {

namespace {

/// Half the HTTP threads may hold long polls; the other half always serve
/// the rest (submissions, health checks, the dashboard, /metrics).
route_options with_poll_share(const gateway_options& options) {
  auto routes = options.routes;
  routes.max_waiting_polls = options.threads / 2;
  return routes;
}

} // namespace

gateway::gateway(caf::actor_system& sys, scheduler_actor scheduler,
                 monitor_actor monitor, std::shared_ptr<task_metrics> metrics,
                 gateway_options options)
  : sys_(sys),
    options_(std::move(options)),
    scheduler_(scheduler),
    monitor_(std::move(monitor)),
    client_(sys, std::move(scheduler), options_.request_timeout),
    api_(client_, std::move(metrics), with_poll_share(options_)) {
}

gateway::~gateway() {
  stop();
}

std::variant<uint16_t, std::string> gateway::start() {
  // The bridge actor needs the hub and the hub asks the bridge for
  // snapshots: create the hub first with a handle filled in right after.
  auto bridge_handle = std::make_shared<gateway_actor>();
  if (!options_.routes.api_token.empty() && !options_.websocket.authorize) {
    auto check = std::make_shared<token_check>(options_.routes.api_token);
    options_.websocket.authorize = [check](const std::string& authorization,
                                           const std::string& token,
                                           const std::string& protocols) {
      return check->check_websocket(authorization, token, protocols);
    };
  }
  options_.websocket.max_header_bytes = options_.routes.max_header_bytes;
  hub_ = std::make_unique<ws_hub>(
    options_.websocket,
    [bridge_handle](uint64_t session, core::task_id only, uint8_t topics) {
      caf::anon_send(*bridge_handle, snapshot_atom::value, session, only,
                     topics);
    });
  bridge_ = sys_.spawn(stream_bridge, hub_.get(), scheduler_, monitor_);
  *bridge_handle = bridge_;
  hub_->start();
  server_ = std::make_unique<gateway_server>(
    [hub = hub_.get()](int fd) { hub->accept(fd); },
    options_.routes.max_header_bytes);
  server_->use_threads(options_.threads);
  server_->set_slow_request_limit(options_.slow_request_limit);
  server_->set_payload_max_length(options_.routes.max_body_bytes);
  server_->set_keep_alive_max_count(100'000);
  // Idle keep-alive connections hold a pool thread each: let them go soon.
  server_->set_keep_alive_timeout(5);
  server_->set_read_timeout(30);
  server_->set_write_timeout(30);
  server_->set_tcp_nodelay(true);
  // httplib's default sets SO_REUSEPORT, which lets a second daemon bind the
  // same port silently. Allow quick restarts (SO_REUSEADDR), nothing more.
  auto listening = std::make_shared<socket_t>(INVALID_SOCKET);
  server_->set_socket_options([listening](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *listening = sock; // the last one tried is the one that binds
  });
  api_.install(*server_);
  server_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string{dashboard_html()}, "text/html; charset=utf-8");
  });
  server_->Get("/ws", [](const httplib::Request&, httplib::Response& res) {
    rest_api::reply(res, api_error{api_errc::invalid_request,
                                   "GET /ws expects a WebSocket upgrade "
                                   "(Connection: Upgrade, Upgrade: websocket)",
                                   0});
  });
  int port = options_.port;
  bool ok = false;
  errno = 0;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.bind);
    ok = port > 0;
  } else {
    ok = server_->bind_to_port(options_.bind, port);
  }
  if (!ok)
    return fmt::format("cannot listen for HTTP on {}:{}{}{}", options_.bind,
                       options_.port, errno != 0 ? ": " : "",
                       errno != 0 ? std::strerror(errno) : "");
  // httplib listens with a backlog of 5 (compiled into Debian's library):
  // a burst of clients connecting at once overflows it, and the kernel
  // drops their SYNs, to be sent again a second later. Listening again
  // raises it.
  if (*listening != INVALID_SOCKET)
    ::listen(*listening, SOMAXCONN);
  // The HTTP pool's threads inherit this name.
  thread_ = std::thread{[this] {
    ::pthread_setname_np(::pthread_self(), "tm.http");
    server_->listen_after_bind();
  }};
  return static_cast<uint16_t>(port);
}

void gateway::stop() {
  if (bridge_) {
    caf::anon_send_exit(bridge_, caf::exit_reason::user_shutdown);
    bridge_ = nullptr;
  }
  if (hub_)
    hub_->stop();
  if (server_)
    server_->stop();
  if (thread_.joinable())
    thread_.join();
}

} // namespace taskmaster::http
