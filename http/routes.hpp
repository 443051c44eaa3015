#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include <httplib.h>

#include "actors/task_metrics.hpp"
#include "http/auth.hpp"
#include "http/json_codec.hpp"
#include "http/request_guards.hpp"
#include "http/scheduler_client.hpp"

/// The REST routes: decode the request, ask the scheduler through the
/// facade, encode the answer. Errors go through api_error, one mapping.
namespace taskmaster::http {

struct route_options {
  request_limits limits;
  /// Longest `?wait=` a client may ask for on GET /tasks/{id}.
  uint32_t max_wait_seconds = 60;
  /// How many long polls may wait at once. Each holds an HTTP thread while
  /// it waits, so they get at most this many (the gateway: half its pool);
  /// beyond that a poll answers at once with the task as it is, and the
  /// other threads stay for the rest of the API however many clients wait.
  size_t max_waiting_polls = 8;
  /// Requests need `Authorization: Bearer TOKEN` when set (not /healthz and
  /// the dashboard page itself).
  std::string api_token;
  /// Request line plus headers beyond this answer 431.
  size_t max_header_bytes = 16 * 1024;
  /// A request body beyond this answers 413 (before it is read, when its
  /// Content-Length says so).
  size_t max_body_bytes = 16 * 1024 * 1024;
  /// Why the journal failed, or empty while it works (GET /healthz answers
  /// 503 then, and /metrics says so). Unset: it always works.
  std::function<std::string()> journal_problem;
};

class rest_api {
public:
  rest_api(scheduler_client& scheduler, std::shared_ptr<task_metrics> metrics,
           route_options options);

  /// Installs every route and the JSON error handler on `server`.
  void install(httplib::Server& server);

  static void reply(httplib::Response& res, int status, const json& body);
  static void reply(httplib::Response& res, const api_error& err);

private:
  /// options_.journal_problem, or empty without one.
  std::string journal_problem() const;

  void submit(const httplib::Request& req, httplib::Response& res);
  void get_task(const httplib::Request& req, httplib::Response& res);
  void list_tasks(const httplib::Request& req, httplib::Response& res);
  void cancel_task(const httplib::Request& req, httplib::Response& res);
  void workers(const httplib::Request& req, httplib::Response& res);
  void stats(const httplib::Request& req, httplib::Response& res);
  void metrics(const httplib::Request& req, httplib::Response& res);

  scheduler_client& scheduler_;
  std::shared_ptr<task_metrics> metrics_;
  route_options options_;
  token_check auth_;
  /// Long polls waiting now (see max_waiting_polls).
  std::atomic<size_t> waiting_polls_{0};
};

} // namespace taskmaster::http
