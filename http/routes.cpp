#include "http/routes.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "actors/log.hpp"

namespace taskmaster::http {

namespace {

/// Parses a decimal id; nullopt for anything else.
std::optional<uint64_t> parse_id(const std::string& text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(),
                                   value);
  if (ec != std::errc{} || end != text.data() + text.size() || value == 0)
    return std::nullopt;
  return value;
}

api_error not_found(const std::string& id) {
  return api_error{api_errc::not_found,
                   fmt::format("no task with id '{}'", id), 0};
}

/// 409 for an idempotency key reused for another task. Nothing of the
/// submission was accepted, so the client can fix it and send it again.
api_error key_conflict_error(const core::key_conflict& c, bool batch) {
  auto where = batch ? fmt::format("[{}]: ", c.index) : std::string{};
  auto other = c.task != 0
                 ? fmt::format("already names task {}, which was submitted",
                               c.task)
                 : fmt::format("is also given to [{}]", c.earlier);
  return api_error{api_errc::conflict,
                   fmt::format("{}idempotency_key '{}' {} with a different "
                               "{}; a new task needs a new key{}",
                               where, c.key, other, c.field,
                               batch ? " (nothing in the batch was accepted)"
                                     : ""),
                   0};
}

std::optional<api_error> unsigned_param(const httplib::Request& req,
                                        const char* name, uint64_t min,
                                        uint64_t max, uint64_t& out) {
  if (!req.has_param(name))
    return std::nullopt;
  auto text = req.get_param_value(name);
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(),
                                   value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min
      || value > max)
    return api_error{api_errc::invalid_request,
                     fmt::format("'{}' must be a whole number from {} to {}, "
                                 "not \"{}\"",
                                 name, min, max, text),
                     0};
  out = value;
  return std::nullopt;
}

/// A misspelled parameter (`?stauts=FAILED`) would otherwise be ignored and
/// answer something the client did not ask for.
std::optional<api_error> only_params(const httplib::Request& req,
                                     std::initializer_list<const char*> known,
                                     const char* listed) {
  for (const auto& [name, value] : req.params) {
    auto ok = std::any_of(known.begin(), known.end(),
                          [&](const char* k) { return name == k; });
    if (!ok)
      return api_error{api_errc::invalid_request,
                       fmt::format("unknown query parameter '{}' (this route "
                                   "takes {})",
                                   name, listed),
                       0};
    // Each takes one value: `?status=a&status=b` would silently mean `a`.
    if (req.get_param_value_count(name.c_str()) > 1)
      return api_error{api_errc::invalid_request,
                       fmt::format("query parameter '{}' is given more than "
                                   "once; it takes one value",
                                   name),
                       0};
  }
  return std::nullopt;
}

/// For routes that take no query parameters: `POST /tasks?wait=30` would
/// otherwise submit without waiting, and say nothing. The request target is
/// read, not `params`, which httplib also fills from a form-encoded body.
std::optional<api_error> no_params(const httplib::Request& req) {
  auto query = req.target.find('?');
  if (query == std::string::npos || query + 1 == req.target.size())
    return std::nullopt;
  auto end = req.target.find_first_of("=&", query + 1);
  auto name = req.target.substr(query + 1, end == std::string::npos
                                             ? std::string::npos
                                             : end - query - 1);
  return api_error{api_errc::invalid_request,
                   fmt::format("unknown query parameter '{}' (this route "
                               "takes none)",
                               name),
                   0};
}

/// An optional query parameter naming one of an enum's values.
template <class Parse>
std::optional<api_error> enum_param(const httplib::Request& req,
                                    const char* name, Parse parse,
                                    const char* choices, int16_t& out) {
  if (!req.has_param(name) || req.get_param_value(name).empty())
    return std::nullopt;
  auto text = req.get_param_value(name);
  auto value = parse(text);
  if (!value)
    return api_error{api_errc::invalid_request,
                     fmt::format("'{}' must be one of {}, not \"{}\"", name,
                                 choices, text),
                     0};
  out = static_cast<int16_t>(*value);
  return std::nullopt;
}

} // namespace

rest_api::rest_api(scheduler_client& scheduler,
                   std::shared_ptr<task_metrics> metrics,
                   route_options options)
  : scheduler_(scheduler),
    metrics_(std::move(metrics)),
    options_(std::move(options)),
    auth_(options_.api_token) {
}

void rest_api::reply(httplib::Response& res, int status, const json& body) {
  send_json(res, status, body);
}

void rest_api::reply(httplib::Response& res, const api_error& err) {
  send_error(res, err);
}

void rest_api::install(httplib::Server& server) {
  install_request_guards(server, auth_, options_.max_header_bytes,
                         options_.max_body_bytes);
  install_error_handlers(server);
  server.Post("/tasks", [this](const auto& req, auto& res) { submit(req, res); });
  server.Get("/tasks", [this](const auto& req, auto& res) { list_tasks(req, res); });
  server.Get(R"(/tasks/([^/]+))",
             [this](const auto& req, auto& res) { get_task(req, res); });
  server.Post(R"(/tasks/([^/]+)/cancel)",
              [this](const auto& req, auto& res) { cancel_task(req, res); });
  server.Get("/workers", [this](const auto& req, auto& res) { workers(req, res); });
  server.Get("/stats", [this](const auto& req, auto& res) { stats(req, res); });
  server.Get("/metrics", [this](const auto& req, auto& res) { metrics(req, res); });
  // A master whose journal failed refuses every change until a restart:
  // not healthy, whatever else works.
  server.Get("/healthz", [this](const auto&, auto& res) {
    auto problem = journal_problem();
    if (problem.empty())
      return reply(res, 200, json{{"status", "ok"}});
    reply(res, 503,
          json{{"status", "journal_failed"},
               {"message", "the journal failed (" + problem
                             + "): every change is refused until the master "
                               "is restarted"}});
  });
}

void rest_api::submit(const httplib::Request& req, httplib::Response& res) {
  if (auto err = no_params(req))
    return reply(res, *err);
  auto decoded = decode_submission(req.body, options_.limits,
                                   log::wall_clock_ms());
  if (auto* err = std::get_if<api_error>(&decoded))
    return reply(res, *err);
  auto& sub = std::get<submission>(decoded);
  auto answer = scheduler_.ask<submit_reply>(submit_atom::value,
                                             std::move(sub.specs));
  if (auto* err = std::get_if<api_error>(&answer))
    return reply(res, *err);
  auto& result = std::get<submit_reply>(answer);
  switch (result.status) {
    case submit_status::ok:
      break;
    case submit_status::queue_full:
      return reply(res, api_error{api_errc::queue_full,
                                  "the queue is full (--max-queued); retry "
                                  "later",
                                  1});
    case submit_status::journal_failed:
      // No Retry-After: the journal stays failed until a restart.
      return reply(res, api_error{api_errc::journal_failed,
                                  "the journal could not store the task; "
                                  "nothing was accepted (see GET /healthz)",
                                  0});
    case submit_status::stopping:
      return reply(res, api_error{api_errc::unavailable,
                                  "the master is shutting down", 5});
    case submit_status::key_conflict:
      return reply(res, key_conflict_error(result.conflict, sub.batch));
  }
  bool any_created = false;
  for (auto c : result.created)
    any_created = any_created || c != 0;
  res.status = any_created ? 201 : 200;
  if (sub.batch) {
    std::string body = "[";
    for (size_t i = 0; i < result.tasks.size(); ++i) {
      if (i > 0)
        body += ',';
      append_task(body, result.tasks[i], false);
    }
    body += ']';
    return res.set_content(std::move(body), "application/json");
  }
  if (result.tasks.empty())
    return reply(res, api_error{api_errc::internal, "no task in the answer", 0});
  res.set_content(task_text(result.tasks.front(), false), "application/json");
}

void rest_api::get_task(const httplib::Request& req, httplib::Response& res) {
  auto text = req.matches[1].str();
  auto id = parse_id(text);
  if (!id)
    return reply(res, not_found(text));
  if (auto err = only_params(req, {"wait"}, "'wait'"))
    return reply(res, *err);
  uint64_t wait = 0;
  if (auto err = unsigned_param(req, "wait", 0, options_.max_wait_seconds, wait))
    return reply(res, *err);
  // A slot among the long polls, or an answer at once (a client waiting
  // in a loop asks again; see route_options::max_waiting_polls).
  bool waiting = wait > 0
                 && waiting_polls_.fetch_add(1) < options_.max_waiting_polls;
  if (wait > 0 && !waiting) {
    waiting_polls_.fetch_sub(1);
    wait = 0;
  }
  struct poll_slot {
    std::atomic<size_t>& count;
    bool held;
    ~poll_slot() {
      if (held)
        count.fetch_sub(1);
    }
  } slot{waiting_polls_, waiting};
  auto wait_ms = static_cast<uint32_t>(wait * 1000);
  auto answer = scheduler_.ask_within<task_lookup>(
    std::chrono::milliseconds(wait_ms), lookup_atom::value, *id, wait_ms);
  if (auto* err = std::get_if<api_error>(&answer))
    return reply(res, *err);
  auto& found = std::get<task_lookup>(answer);
  if (!found.found)
    return reply(res, not_found(text));
  res.status = 200;
  res.set_content(task_text(found.task, true), "application/json");
}

void rest_api::list_tasks(const httplib::Request& req, httplib::Response& res) {
  task_query query;
  if (auto err = only_params(req, {"status", "priority", "limit", "cursor"},
                             "'status', 'priority', 'limit' and 'cursor'"))
    return reply(res, *err);
  if (auto err = enum_param(req, "status", core::parse_task_status,
                            "QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, "
                            "CANCELLED",
                            query.status))
    return reply(res, *err);
  if (auto err = enum_param(req, "priority", core::parse_priority,
                            "LOW, MEDIUM, HIGH, CRITICAL", query.prio))
    return reply(res, *err);
  uint64_t limit = 100;
  if (auto err = unsigned_param(req, "limit", 1, 1000, limit))
    return reply(res, *err);
  query.limit = static_cast<uint32_t>(limit);
  uint64_t cursor = 0;
  if (auto err = unsigned_param(req, "cursor", 0, UINT64_MAX, cursor))
    return reply(res, *err);
  query.cursor = cursor;
  auto answer = scheduler_.ask<task_listing>(list_atom::value, query);
  if (auto* err = std::get_if<api_error>(&answer))
    return reply(res, *err);
  auto& listing = std::get<task_listing>(answer);
  std::string body = "{\"tasks\":[";
  for (size_t i = 0; i < listing.tasks.size(); ++i) {
    if (i > 0)
      body += ',';
    append_task(body, listing.tasks[i], false);
  }
  body += "],\"next_cursor\":";
  body += listing.next_cursor == 0
            ? std::string{"null"}
            : "\"" + std::to_string(listing.next_cursor) + "\"";
  body += '}';
  res.status = 200;
  res.set_content(std::move(body), "application/json");
}

void rest_api::cancel_task(const httplib::Request& req,
                           httplib::Response& res) {
  auto text = req.matches[1].str();
  auto id = parse_id(text);
  if (!id)
    return reply(res, not_found(text));
  if (auto err = no_params(req))
    return reply(res, *err);
  auto answer = scheduler_.ask<cancel_reply>(cancel_atom::value, *id);
  if (auto* err = std::get_if<api_error>(&answer))
    return reply(res, *err);
  auto& result = std::get<cancel_reply>(answer);
  switch (result.result) {
    case cancel_result::cancelled:
    case cancel_result::already_cancelled:
      res.status = 200;
      return res.set_content(task_text(result.task, false), "application/json");
    case cancel_result::conflict:
      return reply(res, api_error{api_errc::conflict,
                                  fmt::format("task {} already ended {}", *id,
                                              core::to_string(
                                                result.task.status)),
                                  0});
    case cancel_result::not_found:
      return reply(res, not_found(text));
    case cancel_result::journal_failed:
      return reply(res, api_error{api_errc::journal_failed,
                                  fmt::format("task {} was cancelled, but the "
                                              "journal could not store it: a "
                                              "restart of the master may run "
                                              "it again",
                                              *id),
                                  0});
    case cancel_result::stopping:
      return reply(res, api_error{api_errc::unavailable,
                                  "the master is shutting down", 5});
  }
}

void rest_api::workers(const httplib::Request& req, httplib::Response& res) {
  if (auto err = no_params(req))
    return reply(res, *err);
  auto answer = scheduler_.ask<std::vector<worker_view>>(workers_atom::value);
  if (auto* err = std::get_if<api_error>(&answer))
    return reply(res, *err);
  auto now = log::wall_clock_ms();
  auto list = json::array();
  for (const auto& w : std::get<std::vector<worker_view>>(answer))
    list.push_back(encode_worker(w, now));
  reply(res, 200, json{{"workers", std::move(list)}});
}

void rest_api::stats(const httplib::Request& req, httplib::Response& res) {
  if (auto err = no_params(req))
    return reply(res, *err);
  auto answer = scheduler_.ask<cluster_summary>(stats_atom::value);
  if (auto* err = std::get_if<api_error>(&answer))
    return reply(res, *err);
  reply(res, 200, encode_summary(std::get<cluster_summary>(answer)));
}

std::string rest_api::journal_problem() const {
  return options_.journal_problem ? options_.journal_problem() : std::string{};
}

void rest_api::metrics(const httplib::Request&, httplib::Response& res) {
  metrics_->set_journal_failed(!journal_problem().empty());
  res.status = 200;
  res.set_content(metrics_->render(), "text/plain; version=0.0.4");
}

} // namespace taskmaster::http
