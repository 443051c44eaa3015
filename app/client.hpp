#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

/// The command-line client: submit, task, tasks, cancel, workers, watch.
/// It speaks the REST API (and the WebSocket stream for watch).
namespace taskmaster::client {

/// True when `name` is a client subcommand.
bool is_command(const std::string& name);

/// Runs `command` with its arguments; returns the process exit code.
int run(const std::string& command, const std::vector<std::string>& args);

/// A --server URL split where request paths go: "http://h:8080/api/" is
/// origin "http://h:8080" and prefix "/api" (a reverse proxy's; empty when
/// there is none). httplib and Beast take the origin; every path the client
/// asks for goes after the prefix.
struct server_address {
  std::string origin;
  std::string prefix;
  /// The origin's "h:8080", and in it the host (without an IPv6 address's
  /// brackets) and the port as written, if the URL names one.
  std::string hostport;
  std::string host;
  std::optional<std::string> port;
};

server_address split_server_url(std::string url);

/// True for a non-empty run of ASCII digits.
bool is_number(const std::string& text);

/// What is wrong with a --server URL (not http:// or https://, a port
/// outside 1 to 65535), or an empty string.
std::string server_url_problem(const std::string& url);

/// What to tell a user the API refused for want of a token (401).
std::string token_hint(bool token_given);

/// Exit codes of the client.
enum exit_code : int {
  ok = 0,
  /// The server answered with an error.
  api_failure = 1,
  /// Bad command line.
  usage = 2,
  /// The server could not be reached, or answered 503 (stopping, or unable
  /// to store the change) or 429 (queue full): the same request may succeed
  /// later.
  unreachable = 3,
  /// --wait: the task TIMED_OUT (as timeout(1) does).
  timed_out = 124,
  /// --wait: the task ended without an exit code (CANCELLED, lost).
  no_exit_code = 125,
};

/// The exit code `submit --wait`, `task --wait` and `watch --task` report
/// for a finished task (as the API shows it).
int exit_code_of(const nlohmann::json& task);

} // namespace taskmaster::client
