#include "app/client.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include <caf/actor_system_config.hpp>
#include <caf/config_option_adder.hpp>
#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "actors/core/task.hpp"
#include "app/terminal_text.hpp"
#include "app/watch.hpp"
#include "config/taskmaster_config.hpp"
#include "http/stream_target.hpp"

namespace taskmaster::client {

server_address split_server_url(std::string url) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  auto scheme_end = url.find("://");
  auto slash = scheme_end == std::string::npos
                 ? std::string::npos
                 : url.find('/', scheme_end + 3);
  server_address a;
  a.origin = slash == std::string::npos ? url : url.substr(0, slash);
  a.prefix = slash == std::string::npos ? std::string{} : url.substr(slash);
  if (scheme_end == std::string::npos)
    return a;
  a.hostport = a.origin.substr(scheme_end + 3);
  auto colon = a.hostport.rfind(':');
  auto bracket = a.hostport.rfind(']');
  bool has_port = colon != std::string::npos
                  && (bracket == std::string::npos || colon > bracket);
  a.host = has_port ? a.hostport.substr(0, colon) : a.hostport;
  if (has_port)
    a.port = a.hostport.substr(colon + 1);
  else
    a.port.reset();
  if (a.host.size() > 2 && a.host.front() == '[' && a.host.back() == ']')
    a.host = a.host.substr(1, a.host.size() - 2);
  return a;
}

bool is_number(const std::string& text) {
  return !text.empty()
         && text.find_first_not_of("0123456789") == std::string::npos;
}

std::string server_url_problem(const std::string& url) {
  if (url == "http:" || url == "https:") // "http://" without its slashes
    return fmt::format("--server '{}//' names no host", url);
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    return fmt::format("--server must be an http:// or https:// URL, not '{}'",
                       url);
  auto address = split_server_url(url);
  if (address.host.empty())
    return fmt::format("--server '{}' names no host", url);
  if (address.hostport.find('@') != std::string::npos)
    return fmt::format("--server '{}': a user or password in the URL is not "
                       "supported (the API token goes in --token)",
                       url);
  if (url.find_first_of("?#") != std::string::npos)
    return fmt::format("--server '{}': a query or fragment has no place in "
                       "the server's URL",
                       url);
  if (address.host.find(':') != std::string::npos
      && address.hostport.front() != '[')
    return fmt::format("--server '{}': an IPv6 address goes in brackets, as "
                       "in http://[::1]:8080",
                       url);
  if (!address.port)
    return {};
  const auto& port = *address.port;
  // Beyond 65535 a port would wrap around to another one.
  if (!is_number(port) || port.size() > 5 || std::stoi(port) < 1
      || std::stoi(port) > 65535)
    return fmt::format("--server '{}': the port must be 1 to 65535", url);
  return {};
}

std::string token_hint(bool token_given) {
  return token_given ? "; check --token or TASKMASTER_API_TOKEN"
                     : "; pass --token or set TASKMASTER_API_TOKEN";
}

namespace {

using nlohmann::json;

constexpr const char* commands[] = {"submit", "task",    "tasks",
                                    "cancel", "workers", "watch"};

/// Client options, parsed by CAF's option machinery like the daemon's.
struct client_options : caf::actor_system_config {
  const caf::config_option_set& options() const {
    return custom_options_;
  }

  std::string server;
  std::string token;
  bool json_output = false;
  // submit
  std::string cmd;
  std::string priority;
  std::string name;
  std::string desc;
  uint32_t timeout = 0;
  /// `retries_unset` until given (then the master's default applies).
  static constexpr int32_t retries_unset = INT32_MIN;
  int32_t retries = retries_unset;
  /// Each --labels and --env given (they may repeat; see run()).
  std::vector<std::string> labels;
  std::vector<std::string> env;
  double delay = 0;
  std::string idempotency_key;
  bool wait = false;
  /// How long a wait keeps trying when the server goes away (a restart);
  /// `wait_retry_unset` until given (then 60 s).
  static constexpr uint32_t wait_retry_unset = UINT32_MAX;
  uint32_t wait_retry = wait_retry_unset;
  // tasks
  std::string status;
  /// Read as text and checked by `tasks`, so that any wrong value gets the
  /// same message with the range.
  std::string limit = "20";
  std::string cursor;
  // watch
  std::string task;
  std::string topics;
  /// Registers --labels and --env for the help text; run() takes them out
  /// before CAF's parser, which would keep only the last of each.
  std::string unused_list;

  explicit client_options(const std::string& command) {
    config_file_path.clear();
    const char* env_server = std::getenv("TASKMASTER_SERVER");
    server = env_server != nullptr ? env_server : "http://127.0.0.1:8080";
    if (const char* t = std::getenv("TASKMASTER_API_TOKEN"))
      token = t;
    opt_group group{custom_options_, "global"};
    group
      .add(server, "server",
           "TaskMaster API URL (default $TASKMASTER_SERVER or "
           "http://127.0.0.1:8080)")
      .add(token, "token", "API token (default $TASKMASTER_API_TOKEN)")
      .add(json_output, "json",
           command == "watch" ? "print each message as JSON instead of lines"
                              : "print JSON instead of tables");
    if (command == "submit")
      group.add(cmd, "cmd", "the shell command to run (required)")
        .add(priority, "priority", "LOW, MEDIUM (default), HIGH or CRITICAL")
        .add(name, "name", "a short name")
        .add(desc, "desc", "a description")
        .add(timeout, "timeout", "seconds before the task is killed (0: none)")
        .add(retries, "retries", "retries after a failure")
        .add(unused_list, "labels",
             "placement constraints k=v,k=v (may repeat; \\, is a comma "
             "in a value)")
        .add(unused_list, "env",
             "environment as NAME=VALUE,NAME=VALUE (may repeat; \\, is a "
             "comma in a value)")
        .add(delay, "delay", "seconds to wait before the task may start")
        .add(idempotency_key, "idempotency-key",
             "submitting the same task again under this key returns the "
             "first one (another task under it is refused); without it the "
             "client makes one up")
        .add(wait, "wait",
             "wait for the task to end, print its output, exit with its "
             "exit code");
    if (command == "task")
      group.add(wait, "wait", "wait for the task to end; exit with its code");
    if (command == "submit" || command == "task")
      group.add(wait_retry, "wait-retry",
                "with --wait: seconds to keep trying while the server is "
                "unreachable or stopping (default 60; 0: exit 3 at once)");
    if (command == "tasks")
      group.add(status, "status", "only tasks with this status")
        .add(priority, "priority", "only tasks with this priority")
        .add(limit, "limit", "how many (1-1000)")
        .add(cursor, "cursor", "continue after this cursor");
    if (command == "watch")
      group.add(task, "task",
                "only this task; exit with its exit code when it ends")
        .add(topics, "topics",
             "tasks,workers,stats (default all; stats lines only when "
             "named)");
  }

  std::string help() const {
    std::string out;
    for (const auto& opt : custom_options_) {
      if (opt.category() != "global" || opt.long_name() == "help"
          || opt.long_name() == "long-help" || opt.long_name() == "dump-config"
          || opt.long_name() == "config-file")
        continue;
      std::string n{opt.long_name().begin(), opt.long_name().end()};
      std::string d{opt.description().begin(), opt.description().end()};
      out += fmt::format("  --{:<18} {}\n", n, d);
    }
    return out;
  }
};

/// Status and priority names go out upper case: a master built before names
/// were read in any case refuses "high".
std::string upper(std::string text) {
  for (auto& c : text)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

/// Digits only, at least one: the form of a task id on the command line.
int fail(int code, const std::string& message) {
  fmt::print(stderr, "taskmasterd: {}\n", message);
  return code;
}

/// The field every successful TaskMaster answer to `method path` has: the
/// task's "id", or the list asked for.
const char* answer_key(const std::string& method, const std::string& path) {
  if (path.rfind("/workers", 0) == 0)
    return "workers";
  if (method == "GET" && (path == "/tasks" || path.rfind("/tasks?", 0) == 0))
    return "tasks";
  return "id";
}

/// One HTTP exchange with the API: the JSON answer or an exit code.
class api {
public:
  explicit api(const client_options& o)
    : base_(o.server), address_(split_server_url(o.server)), token_(o.token) {
    while (!base_.empty() && base_.back() == '/')
      base_.pop_back();
  }

  bool valid(std::string& why) const {
    why = server_url_problem(base_);
    return why.empty();
  }

  /// Returns the status and parsed body, or nullopt (after printing why).
  std::optional<std::pair<int, json>>
  call(const std::string& method, const std::string& path,
       const std::string& body = {}, int read_timeout_s = 30,
       int connect_timeout_s = 5) {
    httplib::Client cli{address_.origin};
    cli.set_connection_timeout(connect_timeout_s);
    cli.set_tcp_nodelay(true);
    cli.set_read_timeout(read_timeout_s);
    httplib::Headers headers;
    if (!token_.empty())
      headers.emplace("Authorization", "Bearer " + token_);
    auto target = address_.prefix + path;
    httplib::Result res = method == "POST"
                            ? cli.Post(target, headers, body, "application/json")
                            : cli.Get(target, headers);
    if (!res) {
      unreachable_ = true;
      never_connected_ = res.error() == httplib::Error::Connection;
      last_failure_ = describe(res.error());
      tls_failure_ = res.error() == httplib::Error::SSLConnection
                     || res.error() == httplib::Error::SSLServerVerification;
      foreign_ = false;
      if (!quiet_)
        report_unreachable();
      return std::nullopt;
    }
    json parsed = json::parse(res->body, nullptr, false);
    // A success without the field TaskMaster's answer to this request has
    // is another JSON service at this address, not a task "-" submitted.
    bool ours = parsed.is_object()
                && (res->status < 200 || res->status >= 300
                    || parsed.contains(answer_key(method, path)));
    if (!ours) {
      // Some other server (a web server, a proxy's error page): TaskMaster
      // is not reachable at this address.
      unreachable_ = true;
      never_connected_ = false;
      // A proxy's error page (502, 503, 504) stands for TaskMaster behind it
      // restarting; any other page is something else at this address.
      foreign_ = res->status != 502 && res->status != 503 && res->status != 504;
      last_status_ = res->status;
      tls_failure_ = false;
      last_failure_ = fmt::format("HTTP {} without TaskMaster's JSON",
                                  res->status);
      if (!quiet_)
        report_unreachable();
      return std::nullopt;
    }
    // TaskMaster answered: whatever failed before, it is reachable now.
    unreachable_ = false;
    foreign_ = false;
    tls_failure_ = false;
    return std::make_pair(res->status, std::move(parsed));
  }

  bool unreachable() const {
    return unreachable_;
  }

  /// Says on stderr that the server could not be reached, and why.
  void report_unreachable() const {
    if (foreign_)
      fmt::print(stderr,
                 "taskmasterd: {} answered HTTP {} with something other "
                 "than TaskMaster's JSON; is it a TaskMaster API? (--server "
                 "or TASKMASTER_SERVER)\n",
                 base_, last_status_);
    else if (tls_failure_)
      fmt::print(stderr,
                 "taskmasterd: cannot reach the TaskMaster server at {}: {} "
                 "(--server or TASKMASTER_SERVER)\n",
                 base_, last_failure_);
    else
      fmt::print(stderr,
                 "taskmasterd: cannot reach the TaskMaster server at {} ({}); "
                 "is it running? (--server or TASKMASTER_SERVER)\n",
                 base_, last_failure_);
  }

  /// True when the last call could not even connect (rather than losing
  /// the connection, or finding something other than TaskMaster).
  bool never_connected() const {
    return never_connected_;
  }

  /// True when the last answer came from something other than TaskMaster.
  bool foreign() const {
    return foreign_;
  }

  /// True when the last call failed in TLS: a setting to fix, not a server
  /// that is restarting.
  bool tls_failure() const {
    return tls_failure_;
  }

  /// Why the last call found no TaskMaster ("connection failed", "no
  /// answer", "HTTP 502 without TaskMaster's JSON").
  const std::string& last_failure() const {
    return last_failure_;
  }

  /// For a caller that gave up on a server that answers but does not serve
  /// (503 for longer than it waits): exit 3 like an unreachable one.
  void set_unreachable() {
    unreachable_ = true;
  }

  /// While set, `call` does not print that the server is unreachable (the
  /// caller retries and says so once).
  void set_quiet(bool quiet) {
    quiet_ = quiet;
  }

  /// `call` that expects 200: the body, or nullopt after printing why (the
  /// exit code is in `failure`).
  std::optional<json> expect_ok(const std::string& method,
                                const std::string& path, int& failure);

  const std::string& base() const {
    return base_;
  }

  const std::string& token() const {
    return token_;
  }

private:
  static std::string describe(httplib::Error e) {
    switch (e) {
      case httplib::Error::Connection:
        return "connection failed";
      case httplib::Error::Read:
        return "the connection ended or timed out without an answer";
      // taskmasterd answers a TLS handshake on its plain port at once, and
      // OpenSSL reports that as a failed connection.
      case httplib::Error::SSLConnection:
        return "TLS handshake failed; if this is taskmasterd's own port: it "
               "serves plain HTTP, and https:// goes through a TLS proxy";
      case httplib::Error::SSLServerVerification:
        return "its TLS certificate is not trusted here or not for this host "
               "name; for a private CA set SSL_CERT_FILE to it";
      default:
        return httplib::to_string(e);
    }
  }

  std::string base_;
  server_address address_;
  std::string token_;
  bool unreachable_ = false;
  bool quiet_ = false;
  bool never_connected_ = false;
  /// The last call got an answer that was not TaskMaster's.
  bool foreign_ = false;
  /// The HTTP status of that answer.
  int last_status_ = 0;
  /// The last failure was TLS's: something answers, so "is it running?" is
  /// the wrong question.
  bool tls_failure_ = false;
  std::string last_failure_;
};

/// Prints an API error answer; returns the exit code for it.
int api_error(const api& server, int status, const json& body) {
  // Some other JSON API: TaskMaster is not reachable there (as for HTML).
  if (!body.contains("error") || !body["error"].contains("message"))
    return fail(client::unreachable,
                fmt::format("{} answered HTTP {} without a TaskMaster error; "
                            "is it a TaskMaster API? (--server or "
                            "TASKMASTER_SERVER)",
                            server.base(), status));
  auto message = body["error"]["message"].get<std::string>();
  if (status == 401)
    message += token_hint(!server.token().empty());
  // A 503 is a master stopping or unable to store what it was asked, a 429
  // one whose queue is full: the same request may succeed later, as with an
  // unreachable one, so a script tells them from a refusal by the exit code.
  return fail(status == 503 || status == 429 ? client::unreachable
                                             : api_failure,
              fmt::format("{} ({})", message, status));
}

std::optional<json> api::expect_ok(const std::string& method,
                                   const std::string& path, int& failure) {
  auto res = call(method, path);
  if (!res) {
    failure = client::unreachable;
    return std::nullopt;
  }
  if (res->first != 200) {
    failure = api_error(*this, res->first, res->second);
    return std::nullopt;
  }
  return std::move(res->second);
}

std::string text(const json& j, const char* key) {
  auto i = j.find(key);
  if (i == j.end() || i->is_null()
      || (i->is_string() && i->get_ref<const std::string&>().empty()))
    return "-";
  if (i->is_string())
    return i->get<std::string>();
  return i->dump();
}

/// "2026-11-26T18:55:03.123Z" -> "18:55:03".
std::string short_time(const std::string& t) {
  return t.size() >= 19 ? t.substr(11, 8) : t;
}

void print_task_table(const json& tasks) {
  fmt::print("{:<8} {:<10} {:<9} {:<18} {:<12} {:>5} {:<9} {}\n", "ID",
             "STATUS", "PRIORITY", "NAME", "WORKER", "EXIT", "CREATED",
             "COMMAND");
  for (const auto& t : tasks)
    fmt::print("{:<8} {:<10} {:<9} {} {} {:>5} {:<9} {}\n",
               text(t, "id"), text(t, "status"), text(t, "priority"),
               cell(text(t, "name"), 18), cell(text(t, "worker_id"), 12),
               text(t, "exit_code"), short_time(text(t, "created_at")),
               clip(text(t, "command"), 60));
}

/// "k=v,k=v" of an object's "labels" as --labels takes them (format_labels),
/// or "" when it has none.
std::string joined_labels(const json& j) {
  auto i = j.find("labels");
  if (i == j.end() || !i->is_object())
    return {};
  core::string_map labels;
  for (const auto& [k, v] : i->items())
    labels.emplace(k, v.is_string() ? v.get<std::string>() : v.dump());
  return core::format_labels(labels);
}

void print_task(const json& t) {
  // Values from users print without their control characters (an escape
  // sequence in a name must not drive the terminal); --json has them as
  // they are.
  auto line = [&](const char* label, const std::string& value) {
    fmt::print("{:<12} {}\n", label, printable(value));
  };
  line("id", text(t, "id"));
  line("name", text(t, "name"));
  if (text(t, "description") != "-")
    line("description", text(t, "description"));
  // A script keeps its lines, each under the one before.
  auto command = text(t, "command");
  for (size_t at = 0, n = 0; at <= command.size(); ++n) {
    auto end = std::min(command.find('\n', at), command.size());
    line(n == 0 ? "command" : "", command.substr(at, end - at));
    at = end + 1;
  }
  line("priority", text(t, "priority"));
  if (auto labels = joined_labels(t); !labels.empty())
    line("labels", labels);
  if (t.contains("env") && t["env"].is_object() && !t["env"].empty()) {
    std::string names;
    for (const auto& [name, value] : t["env"].items())
      names += (names.empty() ? "" : " ") + name;
    line("env", names + " (values: --json)");
  }
  if (t.value("timeout_seconds", 0) > 0)
    line("timeout", fmt::format("{} s", t.value("timeout_seconds", 0)));
  if (t.contains("max_retries"))
    line("retries", t.value("max_retries", 0) == 0
                      ? std::string{"none"}
                      : fmt::format("up to {}", t.value("max_retries", 0)));
  line("status", text(t, "status"));
  if (text(t, "reason") != "-")
    line("reason", text(t, "reason"));
  line("worker", text(t, "worker_id"));
  line("exit code", text(t, "exit_code"));
  line("created", text(t, "created_at"));
  line("started", text(t, "started_at"));
  line("finished", text(t, "finished_at"));
  if (t.contains("attempts") && !t["attempts"].empty()) {
    fmt::print("attempts:\n");
    for (const auto& a : t["attempts"]) {
      auto reason = a.value("reason", "");
      fmt::print("  #{:<3} {:<10} on {} exit {:>4}  {} .. {}{}\n",
                 text(a, "attempt"), text(a, "outcome"),
                 cell(text(a, "worker_id"), 12), text(a, "exit_code"),
                 short_time(text(a, "started_at")),
                 short_time(text(a, "finished_at")),
                 reason.empty() ? "" : "  " + printable(reason));
    }
  }
  // The output is the last ended attempt's: after a retry, say which (the
  // task may be running or waiting for the next one meanwhile).
  std::string whose;
  const auto& attempts = t.value("attempts", json::array());
  if (attempts.size() > 1)
    for (auto a = attempts.rbegin(); a != attempts.rend(); ++a)
      if (!a->value("finished_at", json{}).is_null()) {
        whose = fmt::format("attempt {}", a->value("attempt", 0));
        break;
      }
  for (const char* stream : {"stdout", "stderr"}) {
    auto s = t.value(stream, "");
    if (s.empty())
      continue;
    auto written = t.value(std::string{stream} + "_bytes", uint64_t{0});
    std::string about = whose;
    if (t.value(std::string{stream} + "_truncated", false))
      about += fmt::format("{}the last {} of {} bytes",
                           about.empty() ? "" : ", ", s.size(), written);
    fmt::print("--- {}{} ---\n{}", stream,
               about.empty() ? "" : " (" + about + ")", s);
    if (s.back() != '\n')
      fmt::print("\n");
  }
}

bool is_final_status(const std::string& s) {
  auto status = core::parse_task_status(s);
  return status && core::is_final(*status);
}

/// The time a client command keeps trying while the server is away or not
/// serving: `length` seconds from `since`, with pauses from 0.25 s doubling
/// to 2 s between tries.
class retry_window {
public:
  using clock = std::chrono::steady_clock;

  retry_window(clock::time_point since, uint32_t length_s)
    : since_(since), length_(std::chrono::seconds(length_s)) {
  }

  /// Whole seconds left (0 when over).
  int64_t left() const {
    auto rest = length_ - (clock::now() - since_);
    return std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::seconds>(rest).count());
  }

  bool over() const {
    return clock::now() - since_ >= length_;
  }

  /// A read timeout for the next try that does not outlast the window.
  int read_timeout(int longest) const {
    return static_cast<int>(std::clamp<int64_t>(left(), 1, longest));
  }

  void pause() {
    std::this_thread::sleep_for(pause_);
    pause_ = std::min<std::chrono::milliseconds>(pause_ * 2,
                                                 std::chrono::seconds(2));
  }

  /// The server answered: the next loss starts with a short pause again.
  void answered() {
    pause_ = std::chrono::milliseconds(250);
  }

private:
  clock::time_point since_;
  clock::duration length_;
  std::chrono::milliseconds pause_{250};
};

/// The error message of an API answer, or its status alone.
std::string answer_text(int status, const json& body) {
  auto e = body.find("error");
  return e != body.end() && e->is_object() && e->contains("message")
           ? fmt::format("HTTP {}: {}", status, text(*e, "message"))
           : fmt::format("HTTP {}", status);
}

/// The error code of an API answer ("journal_failed", ...), or "".
std::string error_code_of(const json& body) {
  auto e = body.find("error");
  return e != body.end() && e->is_object() && e->contains("code")
           ? text(*e, "code")
           : std::string{};
}

/// Long-polls GET /tasks/{id}?wait= until the task is final.
///
/// The task is in the master's journal, so a master that restarts (an
/// upgrade, a crash under a supervisor) still knows it: while the server is
/// unreachable or answers 503, the wait keeps trying for `retry_s` seconds
/// instead of failing the script that waits.
std::optional<json> wait_for(api& server, const std::string& id,
                             uint32_t retry_s, bool reached) {
  using clock = retry_window::clock;
  bool lost = false;
  retry_window window{clock::now(), retry_s};
  for (;;) {
    auto asked = clock::now();
    // Retrying: the one line below says what happened, not every call, and
    // no try outlasts the time left (a hung server would hold it 45 s).
    server.set_quiet(retry_s > 0);
    int read_s = lost ? window.read_timeout(45) : 45;
    int connect_s = std::min(5, read_s);
    auto res = server.call("GET", "/tasks/" + id + "?wait=30", {}, read_s,
                           connect_s);
    server.set_quiet(false);
    // No answer, or not TaskMaster's (a proxy's error page while the master
    // restarts behind it), or a master that is stopping.
    bool gone = !res;
    bool stopping = res && res->first == 503;
    // No connection to a server never reached is a wrong address, not a
    // restart: say so now. (A connection lost in the first long poll is a
    // server that was there.)
    // Nor is something that never answered as TaskMaster (a web server at
    // a wrong address); a proxy's error page after TaskMaster answered is a
    // restart behind it.
    if (gone
        && ((!reached && (server.never_connected() || server.foreign()))
            || server.tls_failure())) {
      if (retry_s > 0)
        server.report_unreachable();
      return std::nullopt;
    }
    reached = true;
    if (!gone && !stopping) {
      if (res->first != 200) {
        api_error(server, res->first, res->second);
        return std::nullopt;
      }
      if (lost)
        fmt::print(stderr, "taskmasterd: the server is back; still waiting "
                           "for task {}\n",
                   id);
      lost = false;
      window.answered();
      if (is_final_status(text(res->second, "status")))
        return res->second;
      // An early answer for a task still running means the master is
      // stopping, or has no long-poll slot free (it answers at once then):
      // ask again calmly.
      if (clock::now() - asked < std::chrono::seconds(1))
        std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    auto why = stopping ? answer_text(res->first, res->second)
                        : server.last_failure();
    if (!lost) {
      if (retry_s == 0) {
        if (stopping) {
          // A master that does not serve: exit 3, as for one that is gone.
          api_error(server, res->first, res->second);
          server.set_unreachable();
        }
        return std::nullopt;
      }
      // Counted from when the answer was due: the master may hold a long
      // poll for 30 s, so a stopped one is found only after its read
      // timeout, and one killed mid-poll still gets the whole window.
      lost = true;
      window = retry_window{std::min(clock::now(), asked + std::chrono::seconds(30)),
                            retry_s};
      if (!window.over())
        fmt::print(stderr,
                   "taskmasterd: lost the TaskMaster server at {} ({}) while "
                   "waiting for task {}; trying again for up to {} s\n",
                   server.base(), why, id, window.left());
    }
    if (window.over()) {
      fmt::print(stderr,
                 "taskmasterd: gave up waiting for task {} after {} s without "
                 "the server at {} ({}); the task is kept: 'taskmasterd task "
                 "{} --wait' waits again once the server answers\n",
                 id, retry_s, server.base(), why, id);
      server.set_unreachable();
      return std::nullopt;
    }
    window.pause();
  }
}

/// The master keeps the last 64 KiB of each stream: say when that is not all
/// of it, so `submit --wait > file` is not mistaken for the whole output.
void note_cut_output(const json& t) {
  for (const char* stream : {"stdout", "stderr"}) {
    auto kept = t.value(stream, "").size();
    auto written = t.value(std::string{stream} + "_bytes", uint64_t{0});
    if (t.value(std::string{stream} + "_truncated", false))
      fmt::print(stderr,
                 "taskmasterd: task {} wrote {} bytes to {}; only its last {} "
                 "are kept\n",
                 text(t, "id"), written, stream, kept);
  }
}

int finish_waiting(const client_options& o, const json& t) {
  if (o.json_output) {
    fmt::print("{}\n", t.dump(2));
  } else {
    std::cout << t.value("stdout", "") << std::flush;
    std::cerr << t.value("stderr", "") << std::flush;
    note_cut_output(t);
    auto status = text(t, "status");
    if (status != "SUCCEEDED")
      fmt::print(stderr, "taskmasterd: task {} ended {}{}\n", text(t, "id"),
                 status,
                 text(t, "reason") == "-" ? "" : ": " + text(t, "reason"));
  }
  return exit_code_of(t);
}

uint32_t retry_seconds(const client_options& o) {
  return o.wait_retry == client_options::wait_retry_unset ? 60 : o.wait_retry;
}

/// --wait-retry alone would be ignored without a word.
bool retry_without_wait(const client_options& o) {
  return !o.wait && o.wait_retry != client_options::wait_retry_unset;
}

/// Exit 2, said why, unless `priority` is empty or a priority name.
std::optional<int> bad_priority(const std::string& priority) {
  if (priority.empty() || core::parse_priority(priority))
    return std::nullopt;
  return fail(usage, fmt::format("--priority={}: not LOW, MEDIUM, HIGH or "
                                 "CRITICAL",
                                 priority));
}

/// The entries of every `flag` given, each parsed on its own (a backslash
/// at the end of one cannot escape the next one's comma); a name given
/// twice, in one flag or across them, is an error like a malformed entry.
std::optional<core::string_map> merged_lists(
  const std::vector<std::string>& lists, const char* flag, const char* form,
  std::string& error) {
  core::string_map result;
  for (const auto& text : lists) {
    auto entries = core::parse_labels(text);
    bool clash = false;
    if (entries)
      for (auto& [key, value] : *entries)
        clash = !result.emplace(key, value).second || clash;
    if (!entries || clash) {
      error = fmt::format("{} '{}': expected {} with each name once "
                          "(\\, for a comma in a value)",
                          flag, text, form);
      return std::nullopt;
    }
  }
  return result;
}

/// The idempotency key of a submission the user gave none for: with it the
/// client can repeat a POST whose answer was lost without the task running
/// twice (the master answers a repeat with the task it already has).
std::string submission_key() {
  std::random_device random;
  auto word = [&] { return (uint64_t{random()} << 32) | random(); };
  return fmt::format("taskmasterd-submit-{:016x}{:016x}", word(), word());
}

/// POSTs a submission. An answer that leaves the task's fate open is
/// retried under the same key for `retry_s` seconds, counted from the first
/// try: no answer after the request went out, a 503 (a scheduler that timed
/// out may still admit the task; a master stopping or restarting) and, on a
/// retry, a 429. When the time is up, or a plain submit has none, it says
/// the task may have been accepted and names the key that makes a repeat
/// safe. Returns TaskMaster's settling answer, or nullopt after printing
/// why (exit 3).
std::optional<std::pair<int, json>>
post_submission(api& server, const std::string& payload, const std::string& key,
                uint32_t retry_s) {
  retry_window window{retry_window::clock::now(), retry_s};
  bool retrying = false;
  for (;;) {
    int read_s = retrying ? window.read_timeout(30) : 30;
    server.set_quiet(true);
    auto res = server.call("POST", "/tasks", payload, read_s,
                           std::min(5, read_s));
    server.set_quiet(false);
    std::string why;
    if (res) {
      auto status = res->first;
      // A journal that refused the task settles it: nothing was accepted.
      bool settled_503 = status == 503
                         && error_code_of(res->second) == "journal_failed";
      if ((status != 503 || settled_503) && (status != 429 || !retrying)) {
        if (retrying)
          fmt::print(stderr, "taskmasterd: the server answered\n");
        return res;
      }
      why = answer_text(status, res->second);
    } else {
      // A refused connection, a TLS failure or another server: this try
      // never reached TaskMaster. On a first try that settles it; while
      // retrying, a refused connection is a master restarting (the retries
      // go on), the others a setting to fix.
      bool elsewhere = server.tls_failure() || server.foreign();
      if (elsewhere || (!retrying && server.never_connected())) {
        server.report_unreachable();
        if (retrying)
          fmt::print(stderr, "taskmasterd: the task may have been accepted "
                             "before; submitting again with "
                             "--idempotency-key={} cannot run it twice\n",
                     key);
        return std::nullopt;
      }
      why = server.last_failure();
    }
    if (window.over()) {
      fmt::print(stderr,
                 "taskmasterd: no clear answer from the TaskMaster server at "
                 "{} ({}): the task may or may not have been accepted; "
                 "submitting again with --idempotency-key={} cannot run it "
                 "twice\n",
                 server.base(), why, key);
      server.set_unreachable();
      return std::nullopt;
    }
    if (!retrying)
      fmt::print(stderr,
                 "taskmasterd: no clear answer from the TaskMaster server at "
                 "{} ({}); submitting again under the same idempotency key "
                 "for up to {} s\n",
                 server.base(), why, window.left());
    retrying = true;
    window.pause();
  }
}

int submit(const client_options& o, api& server) {
  if (o.cmd.empty())
    return fail(usage, "submit needs --cmd=COMMAND");
  if (retry_without_wait(o))
    return fail(usage, "--wait-retry goes with --wait");
  if (auto bad = bad_priority(o.priority))
    return *bad;
  json task{{"command", o.cmd}};
  if (!o.priority.empty())
    task["priority"] = upper(o.priority);
  if (!o.name.empty())
    task["name"] = o.name;
  if (!o.desc.empty())
    task["description"] = o.desc;
  if (o.timeout > 0)
    task["timeout_seconds"] = o.timeout;
  if (o.retries != client_options::retries_unset) {
    if (o.retries < 0)
      return fail(usage, fmt::format("--retries={}: must be 0 or more",
                                     o.retries));
    task["max_retries"] = o.retries;
  }
  if (!(o.delay >= 0)) // NaN too
    return fail(usage, fmt::format("--delay={}: must be 0 or more", o.delay));
  if (o.delay > 0)
    task["delay_seconds"] = o.delay;
  bool own_key = o.idempotency_key.empty();
  auto key = own_key ? submission_key() : o.idempotency_key;
  task["idempotency_key"] = key;
  std::string error;
  auto labels = merged_lists(o.labels, "--labels", "k=v,k=v", error);
  if (!labels)
    return fail(usage, error);
  if (!labels->empty())
    task["labels"] = *labels;
  auto env = merged_lists(o.env, "--env", "NAME=VALUE,...", error);
  if (!env)
    return fail(usage, error);
  if (!env->empty())
    task["env"] = *env;
  // JSON carries UTF-8 text only: say which option is not, rather than send
  // a replacement character in a command.
  std::string payload;
  try {
    payload = task.dump();
  } catch (const json::type_error&) {
    static const std::map<std::string, std::string> option_of{
      {"command", "--cmd"},       {"name", "--name"},
      {"description", "--desc"},  {"labels", "--labels"},
      {"env", "--env"},           {"idempotency_key", "--idempotency-key"}};
    std::string option = "an option";
    for (const auto& [key, value] : task.items()) {
      try {
        (void)value.dump();
      } catch (const json::type_error&) {
        auto i = option_of.find(key);
        option = i != option_of.end() ? i->second : key;
        break;
      }
    }
    return fail(usage, fmt::format("submit: {} is not valid UTF-8 text (the "
                                   "API carries UTF-8 only)",
                                   option));
  }
  // Without --wait a lost answer is not retried: the user learns at once,
  // with the key that makes a repeat safe.
  auto res = post_submission(server, payload, key, o.wait ? retry_seconds(o) : 0);
  if (!res)
    return unreachable;
  auto& [status, body] = *res;
  if (status != 201 && status != 200)
    return api_error(server, status, body);
  // A 200 under the client's own key is its own earlier try, answered late.
  if (own_key)
    status = 201;
  auto id = text(body, "id");
  if ((o.wait || o.json_output) && status == 200)
    fmt::print(stderr, "taskmasterd: already submitted as task {} under key "
                       "'{}'{}\n",
               id, printable(o.idempotency_key),
               o.wait ? "; waiting for it" : "");
  else if (o.wait && !o.json_output && ::isatty(STDERR_FILENO) == 1)
    // Someone at a terminal may want to look at it meanwhile; a script's
    // stderr gets only the task's own.
    fmt::print(stderr, "taskmasterd: submitted as task {}; waiting for it\n",
               id);
  if (o.wait) {
    auto done = wait_for(server, id, retry_seconds(o), true);
    if (!done)
      return server.unreachable() ? unreachable : api_failure;
    return finish_waiting(o, *done);
  }
  if (o.json_output)
    fmt::print("{}\n", body.dump(2));
  else if (status == 200) // the key named a task the master already has
    fmt::print("already submitted as task {} under key '{}' ({}, {})\n", id,
               printable(o.idempotency_key), text(body, "priority"),
               text(body, "status"));
  else
    fmt::print("submitted task {} ({}, {})\n", id, text(body, "priority"),
               text(body, "status"));
  return ok;
}

int show_task(const client_options& o, api& server) {
  if (o.remainder.size() != 1)
    return fail(usage, "usage: taskmasterd task ID [--wait] [--json]");
  if (retry_without_wait(o))
    return fail(usage, "--wait-retry goes with --wait");
  const auto& id = o.remainder[0];
  if (o.wait) {
    auto done = wait_for(server, id, retry_seconds(o), false);
    if (!done)
      return server.unreachable() ? unreachable : api_failure;
    return finish_waiting(o, *done);
  }
  int failure = ok;
  auto task = server.expect_ok("GET", "/tasks/" + id, failure);
  if (!task)
    return failure;
  if (o.json_output)
    fmt::print("{}\n", task->dump(2));
  else
    print_task(*task);
  return ok;
}

int list_tasks(const client_options& o, api& server) {
  if (!o.status.empty() && !core::parse_task_status(o.status))
    return fail(usage, fmt::format("--status={}: not QUEUED, RUNNING, "
                                   "SUCCEEDED, FAILED, TIMED_OUT or CANCELLED",
                                   o.status));
  if (auto bad = bad_priority(o.priority))
    return *bad;
  uint32_t limit = 0;
  {
    auto end = o.limit.data() + o.limit.size();
    auto [stop, ec] = std::from_chars(o.limit.data(), end, limit);
    if (ec != std::errc{} || stop != end || limit < 1 || limit > 1000)
      return fail(usage, fmt::format("--limit={}: expected a whole number "
                                     "from 1 to 1000",
                                     o.limit));
  }
  // A cursor is what an earlier page printed: a number. Anything else is a
  // typo, caught here like the other options (exit 2).
  uint64_t cursor = 0;
  if (!o.cursor.empty()) {
    auto end = o.cursor.data() + o.cursor.size();
    auto [stop, ec] = std::from_chars(o.cursor.data(), end, cursor);
    if (ec != std::errc{} || stop != end)
      return fail(usage, fmt::format("--cursor={}: expected a number, as a "
                                     "listing prints it in '(more: "
                                     "--cursor=N)'",
                                     o.cursor));
  }
  std::string query = fmt::format("/tasks?limit={}", limit);
  if (!o.status.empty())
    query += "&status=" + upper(o.status);
  if (!o.priority.empty())
    query += "&priority=" + upper(o.priority);
  if (!o.cursor.empty())
    query += fmt::format("&cursor={}", cursor);
  int failure = ok;
  auto page = server.expect_ok("GET", query, failure);
  if (!page)
    return failure;
  if (o.json_output) {
    fmt::print("{}\n", page->dump(2));
    return ok;
  }
  print_task_table((*page)["tasks"]);
  if (!(*page)["next_cursor"].is_null())
    fmt::print("(more: --cursor={})\n", text(*page, "next_cursor"));
  return ok;
}

int cancel(const client_options& o, api& server) {
  if (o.remainder.size() != 1)
    return fail(usage, "usage: taskmasterd cancel ID");
  int failure = ok;
  auto task = server.expect_ok("POST", "/tasks/" + o.remainder[0] + "/cancel",
                               failure);
  if (!task)
    return failure;
  if (o.json_output)
    fmt::print("{}\n", task->dump(2));
  else
    fmt::print("task {} is {}\n", text(*task, "id"), text(*task, "status"));
  return ok;
}

int workers(const client_options& o, api& server) {
  int failure = ok;
  auto answer = server.expect_ok("GET", "/workers", failure);
  if (!answer)
    return failure;
  if (o.json_output) {
    fmt::print("{}\n", answer->dump(2));
    return ok;
  }
  // Labels come last and whole: they are what a task's --labels must match.
  fmt::print("{:<16} {:<9} {:>7} {:>6} {:>9} {:<24} {}\n", "ID", "STATE",
             "SLOTS", "LOAD", "HEARTBEAT", "HOST", "LABELS");
  for (const auto& w : (*answer)["workers"]) {
    auto labels = joined_labels(w);
    auto age = w["last_heartbeat_age_seconds"];
    fmt::print("{} {:<9} {:>7} {:>6.2f} {:>9} {} {}\n",
               cell(text(w, "id"), 16), text(w, "state"),
               fmt::format("{}/{}", text(w, "slots_used"), text(w, "slots")),
               w.value("load_average", 0.0),
               age.is_number() ? fmt::format("{:.1f}s", age.get<double>())
                               : "-",
               cell(text(w, "host"), 24),
               labels.empty() ? "-" : printable(labels));
  }
  return ok;
}

} // namespace

int exit_code_of(const json& t) {
  auto status = text(t, "status");
  if (status == "SUCCEEDED")
    return ok;
  if (status == "TIMED_OUT")
    return timed_out;
  if (status == "FAILED" && t.contains("exit_code")
      && t["exit_code"].is_number_integer()) {
    auto code = t["exit_code"].get<int>();
    return code > 0 && code < 256 ? code : 1;
  }
  return no_exit_code;
}

bool is_command(const std::string& name) {
  return std::find(std::begin(commands), std::end(commands), name)
         != std::end(commands);
}

int run(const std::string& command, const std::vector<std::string>& args) {
  client_options o{command};
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      fmt::print("usage: taskmasterd {} [options]{}\n\noptions:\n{}", command,
                 command == "task" || command == "cancel" ? " ID" : "",
                 o.help());
      return ok;
    }
  // Positional arguments (the task id) may come before or after options;
  // CAF's parser stops at the first one, so split them off first. --labels
  // and --env may repeat, which CAF's parser would not add up.
  std::vector<std::string> options;
  std::vector<std::string> positional;
  for (const auto& a : args) {
    if (command == "submit" && a.rfind("--labels=", 0) == 0)
      o.labels.push_back(a.substr(9));
    else if (command == "submit" && a.rfind("--env=", 0) == 0)
      o.env.push_back(a.substr(6));
    else
      (a.rfind("-", 0) == 0 ? options : positional).push_back(a);
  }
  auto given = options; // as typed, for repeated_option below
  auto flags = take_flag_values(options, o.options());
  if (!flags.error.empty())
    return fail(usage, fmt::format("{}: {} (see taskmasterd {} --help)",
                                   command, flags.error, command));
  if (auto err = o.parse(options)) {
    auto what = describe_option_error(err, o.options());
    return fail(usage, fmt::format("{}: {} (see taskmasterd {} --help)",
                                   command,
                                   what.empty() ? caf::to_string(err) : what,
                                   command));
  }
  unset_flags(flags);
  // A second --cmd is more likely a mistake (an unquoted command) than a
  // correction.
  if (auto name = repeated_option(given); !name.empty())
    return fail(usage, fmt::format("{}: {} given twice (see taskmasterd {} "
                                   "--help)",
                                   command, name, command));
  // An id for task and cancel, nothing for the others: a stray word is a
  // mistake (an unquoted command, say), not something to ignore.
  bool takes_id = command == "task" || command == "cancel";
  if (!takes_id && !positional.empty())
    return fail(usage, fmt::format("{}: unexpected argument '{}' (see "
                                   "taskmasterd {} --help)",
                                   command, positional[0], command));
  if (takes_id && positional.size() == 1 && !is_number(positional[0]))
    return fail(usage, fmt::format("{}: '{}' is not a task id (a number)",
                                   command, positional[0]));
  o.remainder = std::move(positional);
  api server{o};
  std::string why;
  if (!server.valid(why))
    return fail(usage, why);
  if (command == "submit")
    return submit(o, server);
  if (command == "task")
    return show_task(o, server);
  if (command == "tasks")
    return list_tasks(o, server);
  if (command == "cancel")
    return cancel(o, server);
  if (command == "workers")
    return workers(o, server);
  if (command == "watch") {
    if (!o.task.empty()
        && (!is_number(o.task)
            || o.task.find_first_not_of('0') == std::string::npos))
      return fail(usage, fmt::format("watch: --task={}: not a task id (a "
                                     "number)",
                                     printable(o.task)));
    std::string unknown;
    auto topics = http::parse_topics(o.topics, unknown);
    if (!topics)
      return fail(usage, fmt::format("watch: --topics: unknown topic '{}' "
                                     "(tasks, workers, stats)",
                                     printable(unknown)));
    if (!o.task.empty() && !o.topics.empty()
        && (*topics & http::topic_tasks) == 0)
      return fail(usage, "watch: --task needs the tasks topic (its events "
                         "are task events)");
    return watch(server.base(), server.token(), o.task, o.topics,
                 o.json_output);
  }
  return fail(usage, fmt::format("unknown command '{}'", command));
}

} // namespace taskmaster::client
