#include "http/json_codec.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iterator>
#include <vector>

#include <fmt/format.h>

#include "actors/core/time.hpp"
#include "http/json_text.hpp"

namespace taskmaster::http {

namespace {

api_error invalid(std::string message) {
  return api_error{api_errc::invalid_request, std::move(message), 0};
}

std::string_view type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    default:
      return "something else";
  }
}

std::string field(const std::string& where, std::string_view name) {
  return where.empty() ? fmt::format("'{}'", name)
                       : fmt::format("{}.{}", where, name);
}

/// Reads an optional string member; errors name the field.
std::optional<api_error> read_string(const json& obj, std::string_view name,
                                     size_t max_bytes, const std::string& where,
                                     std::string& out) {
  auto i = obj.find(name);
  if (i == obj.end() || i->is_null())
    return std::nullopt;
  if (!i->is_string())
    return invalid(fmt::format("{} must be a string, not {}",
                               field(where, name), type_name(*i)));
  const auto& s = i->get_ref<const std::string&>();
  if (s.size() > max_bytes)
    return invalid(fmt::format("{} is {} bytes long; the limit is {}",
                               field(where, name), s.size(), max_bytes));
  if (s.find('\0') != std::string::npos)
    return invalid(fmt::format("{} must not contain NUL bytes",
                               field(where, name)));
  out = s;
  return std::nullopt;
}

/// Reads an optional non-negative number member.
std::optional<api_error> read_number(const json& obj, std::string_view name,
                                     double max, bool whole,
                                     const std::string& where,
                                     std::optional<double>& out) {
  auto i = obj.find(name);
  if (i == obj.end() || i->is_null())
    return std::nullopt;
  if (!i->is_number())
    return invalid(fmt::format("{} must be a number, not {}",
                               field(where, name), type_name(*i)));
  auto v = i->get<double>();
  if (!std::isfinite(v) || v < 0)
    return invalid(fmt::format("{} must not be negative", field(where, name)));
  if (whole && (!i->is_number_integer() && std::floor(v) != v))
    return invalid(fmt::format("{} must be a whole number",
                               field(where, name)));
  if (v > max)
    return invalid(fmt::format("{} must be at most {}", field(where, name),
                               max));
  out = v;
  return std::nullopt;
}

/// Reads an optional object of strings.
std::optional<api_error>
read_string_map(const json& obj, std::string_view name, size_t max_entries,
                size_t max_key_bytes, size_t max_value_bytes, bool env,
                const std::string& where, core::string_map& out) {
  auto i = obj.find(name);
  if (i == obj.end() || i->is_null())
    return std::nullopt;
  if (!i->is_object())
    return invalid(fmt::format("{} must be an object of strings, not {}",
                               field(where, name), type_name(*i)));
  if (i->size() > max_entries)
    return invalid(fmt::format("{} has {} entries; the limit is {}",
                               field(where, name), i->size(), max_entries));
  for (const auto& [key, value] : i->items()) {
    if (!value.is_string())
      return invalid(fmt::format("{}[\"{}\"] must be a string, not {}",
                                 field(where, name), key, type_name(value)));
    const auto& v = value.get_ref<const std::string&>();
    if (key.empty() || key.size() > max_key_bytes)
      return invalid(fmt::format("{} keys must be 1 to {} bytes long",
                                 field(where, name), max_key_bytes));
    if (v.size() > max_value_bytes)
      return invalid(fmt::format("{}[\"{}\"] is {} bytes long; the limit is {}",
                                 field(where, name), key, v.size(),
                                 max_value_bytes));
    // An environment variable's name ends at its first '='. Labels may hold
    // anything but NUL: written as k=v,k=v they escape ',', '=' and '\'.
    auto bad_key = env ? key.find_first_of(std::string_view{"=\0", 2})
                       : key.find('\0');
    if (bad_key != std::string::npos)
      return invalid(fmt::format("{} key \"{}\" must not contain {}",
                                 field(where, name), key,
                                 env ? "'=' or NUL" : "NUL"));
    if (v.find('\0') != std::string::npos)
      return invalid(fmt::format("{}[\"{}\"] must not contain NUL",
                                 field(where, name), key));
    out[key] = v;
  }
  return std::nullopt;
}

constexpr std::string_view known_fields[] = {
  "command",       "name",          "description",
  "priority",      "timeout_seconds", "max_retries",
  "labels",        "env",           "delay_seconds",
  "run_at",        "idempotency_key", "retry_backoff_seconds",
  "retry_backoff_max_seconds"};

json time_or_null(core::time_ms t) {
  return t == 0 ? json(nullptr) : json(core::format_rfc3339(t));
}

} // namespace

std::variant<core::task_spec, api_error>
decode_task_spec(const json& j, const request_limits& limits,
                 core::time_ms now, const std::string& where) {
  if (!j.is_object())
    return invalid(fmt::format("{} must be a JSON object, not {}",
                               where.empty() ? "the task" : where,
                               type_name(j)));
  for (const auto& [key, value] : j.items())
    if (std::find(std::begin(known_fields), std::end(known_fields), key)
        == std::end(known_fields))
      return invalid(fmt::format("unknown field {}", field(where, key)));
  core::task_spec spec;
  auto cmd = j.find("command");
  if (cmd == j.end() || cmd->is_null())
    return invalid(fmt::format("{} is required", field(where, "command")));
  if (auto err = read_string(j, "command", limits.max_command_bytes, where,
                             spec.command))
    return *err;
  if (std::all_of(spec.command.begin(), spec.command.end(),
                  [](unsigned char c) { return std::isspace(c); }))
    return invalid(fmt::format("{} must not be empty",
                               field(where, "command")));
  if (auto err = read_string(j, "name", limits.max_name_bytes, where,
                             spec.name))
    return *err;
  if (auto err = read_string(j, "description", limits.max_description_bytes,
                             where, spec.description))
    return *err;
  std::string prio_text;
  if (auto err = read_string(j, "priority", 64, where, prio_text))
    return *err;
  if (!prio_text.empty()) {
    auto prio = core::parse_priority(prio_text);
    if (!prio)
      return invalid(fmt::format("{} must be one of LOW, MEDIUM, HIGH, "
                                 "CRITICAL, not \"{}\"",
                                 field(where, "priority"), prio_text));
    spec.prio = *prio;
  }
  std::optional<double> number;
  if (auto err = read_number(j, "timeout_seconds", limits.max_timeout_seconds,
                             true, where, number))
    return *err;
  if (number)
    spec.timeout_seconds = static_cast<uint32_t>(*number);
  number.reset();
  if (auto err = read_number(j, "max_retries", limits.max_retries, true, where,
                             number))
    return *err;
  if (number)
    spec.max_retries = static_cast<int32_t>(*number);
  if (auto err = read_string_map(j, "labels", limits.max_labels,
                                 limits.max_label_bytes, limits.max_label_bytes,
                                 false, where, spec.labels))
    return *err;
  // A label no worker may carry would keep the task QUEUED for good.
  if (auto why = core::worker_labels_problem(spec.labels); !why.empty())
    return invalid(fmt::format("{}: {} (no worker can have such a label)",
                               field(where, "labels"), why));
  if (auto err = read_string_map(j, "env", limits.max_env,
                                 limits.max_label_bytes,
                                 limits.max_env_value_bytes, true, where,
                                 spec.env))
    return *err;
  // Each attempt gets these from the worker; a task must not be able to
  // pass for another (scripts dedupe or name their files by them).
  for (auto reserved : {core::task_id_variable, core::attempt_variable})
    if (spec.env.count(std::string{reserved}) != 0)
      return invalid(fmt::format("{}[\"{}\"] is set by TaskMaster for each "
                                 "attempt",
                                 field(where, "env"), reserved));
  number.reset();
  constexpr double year = 366.0 * 24 * 3600;
  if (auto err = read_number(j, "delay_seconds", year, false, where, number))
    return *err;
  std::string run_at;
  if (auto err = read_string(j, "run_at", 64, where, run_at))
    return *err;
  if (number && !run_at.empty())
    return invalid(fmt::format("give {} or {}, not both",
                               field(where, "delay_seconds"),
                               field(where, "run_at")));
  if (number && *number > 0)
    spec.run_at = now + static_cast<core::time_ms>(*number * 1000.0);
  if (!run_at.empty()) {
    auto t = core::parse_rfc3339(run_at);
    if (!t)
      return invalid(fmt::format("{} must be an RFC 3339 time such as "
                                 "2026-01-31T12:00:00Z, not \"{}\"",
                                 field(where, "run_at"), run_at));
    spec.run_at = *t > now ? *t : 0;
  }
  if (auto err = read_string(j, "idempotency_key",
                             limits.max_idempotency_key_bytes, where,
                             spec.idempotency_key))
    return *err;
  number.reset();
  if (auto err = read_number(j, "retry_backoff_seconds", 86400, false, where,
                             number))
    return *err;
  // 0 ms means "the master's default" inside: a backoff below 1 ms would
  // silently turn into the default (1 s, doubling) instead of no wait.
  auto at_least_1ms = [&](std::string_view name) {
    return invalid(fmt::format("{} must be at least 0.001 (1 ms); leave it "
                               "out for the master's --retry-backoff",
                               field(where, name)));
  };
  if (number) {
    spec.retry_backoff_ms = static_cast<uint32_t>(*number * 1000.0);
    if (spec.retry_backoff_ms == 0)
      return at_least_1ms("retry_backoff_seconds");
  }
  number.reset();
  if (auto err = read_number(j, "retry_backoff_max_seconds", 86400, false,
                             where, number))
    return *err;
  if (number) {
    spec.retry_backoff_max_ms = static_cast<uint32_t>(*number * 1000.0);
    if (spec.retry_backoff_max_ms == 0)
      return at_least_1ms("retry_backoff_max_seconds");
  }
  if (spec.retry_backoff_max_ms > 0
      && spec.retry_backoff_max_ms < spec.retry_backoff_ms)
    return invalid(fmt::format("{} must not be less than {}",
                               field(where, "retry_backoff_max_seconds"),
                               field(where, "retry_backoff_seconds")));
  return spec;
}

std::variant<submission, api_error>
decode_submission(std::string_view body, const request_limits& limits,
                  core::time_ms now) {
  json doc;
  // nlohmann keeps the last of two equal keys in an object, silently: a
  // client that sends "command" twice would run a command it may not mean.
  // The parser's callback sees every key: the keys of each open object are
  // listed, and an object that ends with fewer members than keys had one
  // twice. (Lists, not sets: clearing a list costs what was put in it,
  // clearing a big set costs its buckets again for every small object.)
  std::vector<std::vector<std::string>> open_objects;
  size_t depth = 0;
  std::string repeated;
  auto no_repeated_keys = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        if (++depth > open_objects.size())
          open_objects.emplace_back();
        open_objects[depth - 1].clear();
        break;
      case json::parse_event_t::key:
        open_objects[depth - 1].push_back(parsed.get<std::string>());
        break;
      case json::parse_event_t::object_end: {
        auto& keys = open_objects[depth - 1];
        if (keys.size() != parsed.size() && repeated.empty()) {
          std::sort(keys.begin(), keys.end());
          auto twice = std::adjacent_find(keys.begin(), keys.end());
          if (twice != keys.end())
            repeated = *twice;
        }
        --depth;
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    doc = json::parse(body, no_repeated_keys);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for numbers beyond double's range.
    std::string what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " prefix.
    auto bracket = what.find("] ");
    if (bracket != std::string::npos)
      what = what.substr(bracket + 2);
    return api_error{api_errc::invalid_json,
                     fmt::format("the body is not valid JSON: {}", what), 0};
  }
  if (!repeated.empty())
    return invalid(
      repeated.size() <= 64
        ? fmt::format("the key {} appears twice in one object",
                      json(repeated).dump())
        : fmt::format("a key of {} bytes appears twice in one object",
                      repeated.size()));
  submission result;
  if (doc.is_array()) {
    result.batch = true;
    if (doc.empty())
      return invalid("the task array is empty");
    if (doc.size() > limits.max_batch_tasks)
      return invalid(fmt::format("the batch has {} tasks; the limit is {}",
                                 doc.size(), limits.max_batch_tasks));
    result.specs.reserve(doc.size());
    for (size_t i = 0; i < doc.size(); ++i) {
      auto spec = decode_task_spec(doc[i], limits, now, fmt::format("[{}]", i));
      if (auto* err = std::get_if<api_error>(&spec))
        return *err;
      result.specs.push_back(std::move(std::get<core::task_spec>(spec)));
    }
    return result;
  }
  if (!doc.is_object())
    return invalid(fmt::format("the body must be a task object or an array "
                               "of them, not {}",
                               type_name(doc)));
  auto spec = decode_task_spec(doc, limits, now, "");
  if (auto* err = std::get_if<api_error>(&spec))
    return *err;
  result.specs.push_back(std::move(std::get<core::task_spec>(spec)));
  return result;
}

json encode_task(const core::task_record& t, bool full) {
  return json::parse(task_text(t, full));
}

json encode_worker(const worker_view& w, core::time_ms now) {
  // Beyond its slots a worker may hold prefetched attempts (they are in
  // `running` too, as the master counts them RUNNING).
  auto used = std::min<size_t>(w.running.size(), w.info.slots);
  auto running = json::array();
  for (const auto& ref : w.running)
    running.push_back(json{{"task_id", ref.task}, {"attempt", ref.attempt}});
  return json{
    {"id", w.info.id},
    {"host", w.info.host},
    {"state", core::to_string(w.status)},
    {"slots", w.info.slots},
    {"slots_used", used},
    {"prefetched", w.running.size() - used},
    {"labels", w.info.labels},
    {"running", std::move(running)},
    {"load_average", w.load_average},
    {"tasks_finished", w.tasks_finished},
    {"connected_at", time_or_null(w.connected_at)},
    {"last_heartbeat", time_or_null(w.last_heartbeat)},
    {"last_heartbeat_age_seconds",
     w.last_heartbeat == 0
       ? json(nullptr)
       : json(static_cast<double>(now - w.last_heartbeat) / 1000.0)},
    {"state_since", time_or_null(w.status_since)},
  };
}

json encode_summary(const cluster_summary& s) {
  json by_priority = json::object();
  for (size_t i = 0; i < s.queued_by_priority.size(); ++i)
    by_priority[std::string{core::to_string(static_cast<core::priority>(i))}]
      = s.queued_by_priority[i];
  json by_status = json::object();
  for (size_t i = 0; i < s.tasks_by_status.size(); ++i)
    by_status[std::string{core::to_string(static_cast<core::task_status>(i))}]
      = s.tasks_by_status[i];
  return json{
    {"queued", s.queued},
    {"queued_by_priority", std::move(by_priority)},
    {"delayed", s.delayed},
    {"running", s.running},
    {"tasks_by_status", std::move(by_status)},
    {"workers_up", s.workers_up},
    {"workers_lost", s.workers_lost},
    {"workers_draining", s.workers_draining},
    {"slots_total", s.slots_total},
    {"slots_used", s.slots_used},
    // After a master restart, while the tasks it left are held back.
    {"restart_wait",
     s.restart_wait_for.empty()
       ? json(nullptr)
       : json{{"workers", s.restart_wait_for},
              {"until", core::format_rfc3339(s.restart_wait_until)}}},
  };
}

std::string encode_task_event(const task_event& e) {
  const auto& c = e.change;
  std::string_view event = "finished";
  if (c.created)
    event = "submitted";
  else if (c.to == core::task_status::running)
    event = "started";
  else if (c.to == core::task_status::queued)
    event = "requeued";
  std::string out = fmt::format(
    R"({{"type":"task","seq":{},"event":"{}","at":"{}","from":)", e.seq, event,
    core::format_rfc3339(c.at));
  if (c.created)
    out += "null";
  else
    fmt::format_to(std::back_inserter(out), "\"{}\"", core::to_string(c.from));
  out += ",\"task\":";
  append_task(out, e.task, false);
  out += '}';
  return out;
}

json encode_worker_event(const worker_event& e, core::time_ms now) {
  std::string_view event = "joined";
  switch (e.change.to) {
    case core::worker_status::up:
      event = "joined";
      break;
    case core::worker_status::draining:
      event = "draining";
      break;
    case core::worker_status::lost:
      event = "lost";
      break;
    case core::worker_status::left:
      event = "left";
      break;
  }
  return json{{"type", "worker"},
              {"seq", e.seq},
              {"event", event},
              {"reason", e.change.reason.empty() ? json(nullptr)
                                                 : json(e.change.reason)},
              {"requeued", e.change.requeued},
              {"worker", encode_worker(e.worker, now)}};
}

std::string encode_snapshot(const cluster_snapshot& s, core::time_ms now,
                            bool with_workers, bool with_tasks) {
  std::string out = fmt::format(R"({{"type":"snapshot","seq":{},"summary":{})",
                                s.seq, dump(encode_summary(s.summary)));
  if (with_workers) {
    auto workers = json::array();
    for (const auto& w : s.workers)
      workers.push_back(encode_worker(w, now));
    out += ",\"workers\":" + dump(workers);
  }
  if (with_tasks) {
    out += ",\"tasks\":[";
    for (size_t i = 0; i < s.tasks.size(); ++i) {
      if (i > 0)
        out += ',';
      append_task(out, s.tasks[i], false);
    }
    out += ']';
  }
  out += '}';
  return out;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace taskmaster::http
