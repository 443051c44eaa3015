#include "config/taskmaster_config.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <caf/config_option.hpp>
#include <caf/config_option_adder.hpp>
#include <caf/config_value.hpp>
#include <caf/io/middleman.hpp>
#include <fmt/format.h>

#include "config/defaults.hpp"

namespace taskmaster {

namespace {

/// CAF's own options in the "global" group.
bool is_builtin(caf::string_view name) {
  return name == "help" || name == "long-help" || name == "dump-config"
         || name == "config-file";
}

/// 127.0.0.0/8, ::1 and localhost.
bool is_loopback(const std::string& address) {
  return address == "localhost" || address == "::1" || address == "[::1]"
         || address.rfind("127.", 0) == 0;
}

void trim_trailing_space(std::string& text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.pop_back();
}

core::time_ms to_ms(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x).count();
}

/// What a value of an option's type looks like, for error messages.
std::string expected_form(caf::string_view type) {
  if (type == "timespan")
    return "a duration with its unit, e.g. 250ms, 5s, 2min, 1h";
  if (type == "boolean")
    return "true or false";
  if (type == "string")
    return "a quoted string";
  if (type == "atom")
    return "a name in single quotes, e.g. 'sharing'";
  if (type == "uint16")
    return "a whole number from 0 to 65535";
  if (type.size() > 4 && type.substr(0, 4) == "uint")
    return "a whole number, 0 or more";
  if (type.size() > 3 && type.substr(0, 3) == "int")
    return "a whole number";
  if (type.size() > 4 && type.substr(0, 4) == "real")
    return "a number, e.g. 0.5";
  return std::string{type.begin(), type.end()};
}

/// One `key = value` line of a config file.
struct file_entry {
  std::string section;
  std::string key;
  /// As written, without surrounding blanks.
  std::string value;
  int line = 0;
};

/// How much deeper in lists and dictionaries `text` ends than it starts:
/// brackets inside quotes and after a `;` comment do not count.
int bracket_depth_change(std::string_view text) {
  int change = 0;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = text[i];
    if (quoted) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ';') {
      break;
    } else if (c == '[' || c == '{') {
      ++change;
    } else if (c == ']' || c == '}') {
      --change;
    }
  }
  return change;
}

/// The key = value lines of `file`, in order, each with its section
/// ("global" before the first header). Comments, headers and the inner
/// lines of a list or dictionary that spans several are not entries.
std::vector<file_entry> config_entries(const std::string& file) {
  std::vector<file_entry> result;
  std::ifstream in{file};
  std::string line;
  std::string section = "global";
  int depth = 0;
  for (int number = 1; std::getline(in, line); ++number) {
    if (depth > 0) {
      depth = std::max(0, depth + bracket_depth_change(line));
      continue;
    }
    auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos)
      continue;
    if (line[start] == '[') {
      auto end = line.find(']', start);
      if (end != std::string::npos) {
        // CAF reads "[ global ]" as [global].
        section = line.substr(start + 1, end - start - 1);
        section.erase(0, section.find_first_not_of(" \t"));
        trim_trailing_space(section);
      }
      continue;
    }
    auto eq = line.find('=', start);
    if (eq == std::string::npos
        || !std::isalnum(static_cast<unsigned char>(line[start])))
      continue;
    auto key = line.substr(start, eq - start);
    trim_trailing_space(key);
    if (key.find_first_of(" \t\"") != std::string::npos)
      continue;
    auto value = line.substr(eq + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    trim_trailing_space(value);
    depth = std::max(0, bracket_depth_change(value));
    result.push_back({section, std::move(key), std::move(value), number});
  }
  return result;
}

/// The first key set twice in one section of `file`, as "config file F:
/// KEY given twice in [SECTION] (lines A and B)", or "". CAF keeps one of the
/// two silently (the first when the second is not valid), so a line added
/// at the end of a copied file could be ignored without a word.
std::string repeated_config_key(const std::string& file) {
  std::map<std::string, int> seen; // "section.key" -> line
  for (const auto& e : config_entries(file)) {
    auto [at, fresh] = seen.emplace(e.section + "." + e.key, e.line);
    if (!fresh)
      return fmt::format("config file {}: {} given twice in [{}] (lines {} "
                         "and {})",
                         file, e.key, e.section, at->second, e.line);
  }
  return {};
}

/// Whether a value that opens a quote closes it again.
bool quote_closed(std::string_view value) {
  for (size_t i = 1; i < value.size(); ++i) {
    if (value[i] == '\\')
      ++i;
    else if (value[i] == '"')
      return true;
  }
  return false;
}

/// CAF names only a line and column when it cannot read a config file at
/// all, and its hint (quote strings) is wrong for a number or a duration:
/// this names the entry and the form its key expects. CAF stops where the
/// value ends: on its line, or at column 1 of the next line when the value
/// ran to the end of its own; an unclosed quote runs to the end of the
/// file. "" when no entry fits.
std::string unreadable_entry(const std::string& file, int line, int column,
                             const caf::config_option_set& options) {
  auto entries = config_entries(file);
  auto describe_entry = [&](const file_entry& e, std::string hint) {
    if (hint.empty()) {
      auto opt = options.qualified_name_lookup(e.section, e.key);
      hint = opt != nullptr ? "expected " + expected_form(opt->type_name())
                            : std::string{"strings go in quotes: "
                                          "key=\"value\""};
    }
    if (e.value.find('#') != std::string::npos)
      hint += "; comments start with ;";
    return fmt::format("config file {}, line {}: {}={} is not a value ({})",
                       file, e.line, e.key, e.value, hint);
  };
  for (const auto& e : entries)
    if (!e.value.empty() && e.value.front() == '"' && !quote_closed(e.value))
      return describe_entry(e, "its closing quote is missing");
  auto at = column == 1 ? line - 1 : line;
  for (const auto& e : entries)
    if (e.line == at)
      return describe_entry(e, {});
  return {};
}

/// CAF reports parse errors as `parser_error(code, {"argument" = "--x"})`;
/// users get one line instead.
std::string describe(const caf::error& err, const std::string& config_file,
                     const caf::config_option_set& options) {
  if (auto line = describe_option_error(err, options); !line.empty())
    return line + " (see --help)";
  auto text = caf::to_string(err);
  if (text.find("not_an_option") != std::string::npos)
    return "unknown option (see --help)";
  if (text.find("line") != std::string::npos && !config_file.empty()) {
    // parser_error(unexpected_character, ({"column" = 9, "line" = 2}))
    auto number_after = [&](const char* field) -> std::string {
      auto at = text.find(field);
      if (at == std::string::npos)
        return "?";
      auto start = text.find_first_of("0123456789", at);
      auto end = text.find_first_not_of("0123456789", start);
      return start == std::string::npos ? "?" : text.substr(start, end - start);
    };
    auto line = number_after("\"line\"");
    auto column = number_after("\"column\"");
    if (line != "?" && line.size() < 9 && column != "?" && column.size() < 9)
      if (auto bad = unreadable_entry(config_file, std::stoi(line),
                                      std::stoi(column), options);
          !bad.empty())
        return bad;
    return fmt::format("cannot parse config file {} at line {}, column {} "
                       "(string values must be quoted: key=\"value\")",
                       config_file, number_after("\"line\""),
                       number_after("\"column\""));
  }
  return text;
}

/// CAF itself drops a config-file entry it cannot use, silently: an unknown
/// key, a misspelled section, a value of the wrong type or out of range. A
/// typo would then give a master on the wrong port. Every entry is checked
/// here first, and the first bad one is the error.
std::string check_config_file(const std::string& file,
                              const caf::config_option_set& options) {
  if (auto twice = repeated_config_key(file); !twice.empty())
    return twice;
  auto parsed = caf::actor_system_config::parse_config_file(file.c_str());
  if (!parsed)
    return {}; // a syntax error: CAF's own parse reports it with its line
  // CAF's sections for modules loaded after parsing (the network layer,
  // TLS) have no options registered yet: their keys pass through unchecked.
  auto later_module = [](const std::string& section) {
    return section == "middleman" || section == "openssl";
  };
  auto check_entry = [&](const std::string& section, const std::string& key,
                         const caf::config_value& value) -> std::string {
    auto opt = options.qualified_name_lookup(section, key);
    if (opt == nullptr)
      return fmt::format("config file {}: unknown key '{}' in [{}]", file, key,
                         section);
    if (opt->check(value))
      return fmt::format("config file {}: invalid value for {}: {} "
                         "(expected {})",
                         file, key, caf::to_string(value),
                         expected_form(opt->type_name()));
    return {};
  };
  // [global] entries sit at the top level, other sections as dictionaries.
  for (const auto& [top_key, content] : *parsed) {
    std::string name{top_key.begin(), top_key.end()};
    const auto* entries = caf::get_if<caf::settings>(&content);
    if (entries == nullptr) {
      if (auto problem = check_entry("global", name, content); !problem.empty())
        return problem;
      continue;
    }
    auto known_section = later_module(name);
    for (const auto& opt : options)
      known_section = known_section || opt.category() == name;
    if (!known_section)
      return fmt::format("config file {}: unknown section [{}]", file, name);
    if (later_module(name))
      continue;
    for (const auto& [key, value] : *entries)
      if (auto problem = check_entry(name, std::string{key.begin(), key.end()},
                                     value);
          !problem.empty())
        return problem;
  }
  return {};
}

} // namespace

std::string describe_option_error(const caf::error& err,
                                  const caf::config_option_set& options) {
  auto text = caf::to_string(err);
  auto quote = text.find("\"argument\" = \"");
  if (quote == std::string::npos)
    return {};
  auto start = quote + 14;
  auto argument = text.substr(start, text.find('"', start) - start);
  auto name = argument.substr(0, argument.find('='));
  if (text.find("not_an_option") != std::string::npos)
    return fmt::format("unknown option {}", name);
  if (argument.size() == name.size() + 1)
    return fmt::format("{} needs a value", name);
  while (!name.empty() && name.front() == '-')
    name.erase(0, 1);
  if (auto opt = options.cli_long_name_lookup(name))
    return fmt::format("invalid value in {} (expected {})", argument,
                       expected_form(opt->type_name()));
  return fmt::format("invalid value in {}", argument);
}

taskmaster_config::taskmaster_config()
  : role(defaults::role),
    http_bind(defaults::http_bind),
    http_port(defaults::http_port),
    cluster_bind(defaults::cluster_bind),
    cluster_port(defaults::cluster_port),
    data_dir(defaults::data_dir),
    master(defaults::master),
    worker_id(defaults::worker_id),
    slots(defaults::slots),
    labels(defaults::labels),
    kill_grace(defaults::kill_grace),
    shutdown_grace(defaults::shutdown_grace),
    output_tail_bytes(defaults::output_tail_bytes),
    reconnect_backoff(defaults::reconnect_backoff),
    reconnect_backoff_max(defaults::reconnect_backoff_max),
    aging_interval(defaults::aging_interval),
    max_retries(defaults::max_retries),
    retry_backoff(defaults::retry_backoff),
    retry_backoff_max(defaults::retry_backoff_max),
    max_queued(defaults::max_queued),
    heartbeat_interval(defaults::heartbeat_interval),
    heartbeat_timeout(defaults::heartbeat_timeout),
    reconcile_grace(defaults::reconcile_grace),
    prefetch_budget(defaults::prefetch_budget),
    max_lost_attempts(defaults::max_lost_attempts),
    retention(defaults::retention),
    retention_max_tasks(defaults::retention_max_tasks),
    journal_fsync(defaults::journal_fsync),
    journal_group_delay(defaults::journal_group_delay),
    max_body_bytes(defaults::max_body_bytes),
    http_threads(defaults::http_threads),
    request_timeout(defaults::request_timeout),
    max_batch_tasks(defaults::max_batch_tasks),
    api_token(defaults::api_token),
    api_token_file(defaults::api_token_file),
    tls_ca(defaults::tls_ca),
    tls_cert(defaults::tls_cert),
    tls_key(defaults::tls_key),
    insecure(defaults::insecure),
    run_as(defaults::run_as),
    max_command_bytes(defaults::max_command_bytes),
    max_name_bytes(defaults::max_name_bytes),
    max_description_bytes(defaults::max_description_bytes),
    max_labels(defaults::max_labels),
    max_label_bytes(defaults::max_label_bytes),
    max_env(defaults::max_env),
    max_env_bytes(defaults::max_env_bytes),
    max_header_bytes(defaults::max_header_bytes),
    ws_max_message_bytes(defaults::ws_max_message_bytes),
    ws_max_clients_per_address(defaults::ws_max_clients_per_address),
    ws_ping_interval(defaults::ws_ping_interval) {
  config_file_path.clear();
  opt_group{custom_options_, "global"}
    .add(role, "role", "standalone (default), master or worker")
    .add(http_bind, "http-bind", "address of the REST API and dashboard")
    .add(http_port, "http-port", "port of the REST API and dashboard")
    .add(cluster_bind, "cluster-bind", "address workers connect to")
    .add(cluster_port, "cluster-port",
         "port workers connect to (0: any free port)")
    .add(data_dir, "data-dir", "where the master keeps its journal")
    .add(master, "master", "worker: HOST:PORT of the master's cluster port")
    .add(worker_id, "worker-id", "worker: its id (default: the host name)")
    .add(slots, "slots",
         "worker: tasks run at once (default 0: the number of cores)")
    .add(labels, "labels", "worker: labels as k=v,k=v for task placement")
    .add(kill_grace, "kill-grace",
         "worker: SIGTERM to SIGKILL delay on timeout or cancel")
    .add(shutdown_grace, "shutdown-grace",
         "worker: on SIGTERM, how long running tasks may finish")
    .add(output_tail_bytes, "output-tail-bytes",
         "worker: bytes of stdout and of stderr kept per task")
    .add(reconnect_backoff, "reconnect-backoff",
         "worker: first delay before reconnecting to the master")
    .add(reconnect_backoff_max, "reconnect-backoff-max",
         "worker: longest delay between reconnect attempts; master: "
         "after a crash, how long (beyond --heartbeat-timeout) to wait for "
         "them, so keep it at least the workers'")
    .add(aging_interval, "aging-interval",
         "waiting this long raises a queued task one priority level")
    .add(max_retries, "max-retries", "retries for tasks that set none")
    .add(retry_backoff, "retry-backoff", "first retry delay (doubles)")
    .add(retry_backoff_max, "retry-backoff-max", "longest retry delay")
    .add(max_queued, "max-queued",
         "queued tasks beyond which POST /tasks answers 429 (0: no bound)")
    .add(heartbeat_interval, "heartbeat-interval",
         "how often workers and the master check on each other")
    .add(heartbeat_timeout, "heartbeat-timeout",
         "silence after which a worker is LOST")
    .add(reconcile_grace, "reconcile-grace",
         "after a master restart, how long running tasks wait for their "
         "worker")
    .add(prefetch_budget, "prefetch-budget",
         "feed workers of short tasks ahead of their free slots by about "
         "this much work per slot (0s: only into free slots)")
    .add(max_lost_attempts, "max-lost-attempts",
         "a task whose worker is lost this often fails")
    .add(retention, "retention", "how long finished tasks are kept")
    .add(retention_max_tasks, "retention-max-tasks",
         "how many finished tasks are kept at most")
    .add(journal_fsync, "journal-fsync",
         "fsync every journal commit (survives power loss, slower)")
    .add(journal_group_delay, "journal-group-delay",
         "how long a state change may wait for others to share its journal "
         "commit (new tasks never wait)")
    .add(max_body_bytes, "max-body-bytes", "largest request body (413 above)")
    .add(http_threads, "http-threads", "HTTP worker threads")
    .add(request_timeout, "request-timeout",
         "how long an HTTP request may wait for the scheduler")
    .add(max_batch_tasks, "max-batch-tasks",
         "most tasks in one POST /tasks array")
    .add(api_token, "api-token",
         "require 'Authorization: Bearer TOKEN' on the API (also "
         "$TASKMASTER_API_TOKEN)")
    .add(api_token_file, "api-token-file", "read the API token from a file")
    .add(tls_ca, "tls-ca", "cluster CA certificate (PEM) for mutual TLS")
    .add(tls_cert, "tls-cert", "this node's certificate (PEM)")
    .add(tls_key, "tls-key", "this node's private key (PEM)")
    .add(insecure, "insecure",
         "allow a non-loopback API without token or cluster port without TLS")
    .add(run_as, "run-as", "worker: run tasks as this user")
    .add(max_command_bytes, "max-command-bytes", "longest task command")
    .add(max_name_bytes, "max-name-bytes", "longest task name")
    .add(max_description_bytes, "max-description-bytes",
         "longest task description")
    .add(max_labels, "max-labels", "most labels on a task")
    .add(max_label_bytes, "max-label-bytes",
         "longest label or environment key or label value")
    .add(max_env, "max-env", "most environment entries on a task")
    .add(max_env_bytes, "max-env-bytes", "longest environment value")
    .add(max_header_bytes, "max-header-bytes",
         "largest request head (431 above)")
    .add(ws_max_message_bytes, "ws-max-message-bytes",
         "largest message a WebSocket client may send")
    .add(ws_max_clients_per_address, "ws-max-clients-per-address",
         "WebSocket sessions allowed from one address")
    .add(ws_ping_interval, "ws-ping-interval",
         "WebSocket stream: ping every client this often (1s to 1h), drop "
         "one that answers nothing within another interval (watch gives up "
         "on a server silent for three)");
}

std::string taskmaster_config::parse_args(const std::vector<std::string>& args) {
  std::vector<std::string> list = args;
  // CAF only reads a config file named with --config-file=PATH; accept the
  // two-word form too.
  for (size_t i = 0; i + 1 < list.size(); ++i)
    if (list[i] == "--config-file") {
      list[i] += "=" + list[i + 1];
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  // Two --role or --labels on one command line are more likely a mistake
  // than an override (the config file is where defaults go, and the command
  // line overrides it).
  if (auto name = repeated_option(list); !name.empty())
    return fmt::format("{} given twice", name);
  std::string file;
  for (const auto& a : list)
    if (a.rfind("--config-file=", 0) == 0)
      file = a.substr(14);
  if (!file.empty() && ::access(file.c_str(), R_OK) != 0)
    return fmt::format("cannot read config file {}", file);
  if (!file.empty())
    if (auto problem = check_config_file(file, custom_options_);
        !problem.empty())
      return problem;
  auto flags = take_flag_values(list, custom_options_);
  if (!flags.error.empty())
    return flags.error + " (see --help)";
  // CAF's own --dump-config prints its settings before the command line's
  // `=false` options apply, and CAF's defaults, several of which the daemon
  // changes: this prints TaskMaster's options as the file and the command
  // line set them instead (unchecked: validate() comes after).
  auto dump = std::find(list.begin(), list.end(), "--dump-config");
  bool dump_config = dump != list.end();
  if (dump_config)
    list.erase(dump);
  if (auto err = parse(std::move(list)))
    return describe(err, file, custom_options_);
  unset_flags(flags);
  if (!remainder.empty())
    return fmt::format("unexpected argument '{}' (see --help)", remainder[0]);
  if (dump_config && !cli_helptext_printed) {
    // A config file the daemon reads back, the secret aside.
    std::string text = "[global]\n";
    for (const auto& [name, value] : option_values()) {
      if (name == "api-token" && value != "\"\"")
        text += "; api-token is set (not shown)\n";
      else
        text += fmt::format("{}={}\n", name, value);
    }
    std::cout << text << std::flush;
    cli_helptext_printed = true;
  }
  return {};
}

bool taskmaster_config::cluster_port_chosen() const {
  // CAF keeps what the command line and the file set ([global] at the top).
  return caf::get_if(&content, "cluster-port") != nullptr
         || caf::get_if(&content, "global.cluster-port") != nullptr;
}

std::string taskmaster_config::validate() {
  if (role != "standalone" && role != "master" && role != "worker")
    return fmt::format("unknown role '{}' (standalone, master or worker)",
                       role);
  auto parsed = core::parse_labels(labels);
  if (!parsed)
    return fmt::format("invalid --labels '{}': expected k=v,k=v with each key "
                       "once",
                       labels);
  worker_labels = std::move(*parsed);
  if (auto why = core::worker_labels_problem(worker_labels); !why.empty())
    return fmt::format("invalid --labels: {}", why);
  if (role != "master") {
    if (auto why = core::worker_id_problem(effective_worker_id());
        !why.empty())
      return fmt::format("invalid worker id (--worker-id, or the host name): "
                         "it {}",
                         why);
  }
  auto colon = master.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return fmt::format("invalid --master '{}': expected HOST:PORT", master);
  master_host = master.substr(0, colon);
  if (master_host.size() > 2 && master_host.front() == '['
      && master_host.back() == ']')
    master_host = master_host.substr(1, master_host.size() - 2);
  try {
    auto port = std::stoul(master.substr(colon + 1));
    if (port == 0 || port > 65535)
      throw std::out_of_range("port");
    master_port = static_cast<uint16_t>(port);
  } catch (...) {
    return fmt::format("invalid --master '{}': bad port", master);
  }
  if (http_threads == 0)
    return "--http-threads must be at least 1";
  // No duration may be negative; where 0 has no meaning it must be positive.
  struct duration_rule {
    const char* name;
    caf::timespan value;
    bool zero_allowed;
  };
  for (const auto& d : {
         duration_rule{"kill-grace", kill_grace, true},
         duration_rule{"shutdown-grace", shutdown_grace, true},
         duration_rule{"reconnect-backoff", reconnect_backoff, false},
         duration_rule{"reconnect-backoff-max", reconnect_backoff_max, false},
         duration_rule{"retry-backoff", retry_backoff, true},
         duration_rule{"retry-backoff-max", retry_backoff_max, true},
         duration_rule{"reconcile-grace", reconcile_grace, true},
         duration_rule{"prefetch-budget", prefetch_budget, true},
         duration_rule{"retention", retention, true},
         duration_rule{"request-timeout", request_timeout, false},
       }) {
    if (d.value.count() < 0 || (!d.zero_allowed && d.value.count() == 0))
      return fmt::format("--{} must be {}", d.name,
                         d.zero_allowed ? "0 or more" : "positive");
  }
  if (journal_group_delay.count() < 0
      || journal_group_delay > std::chrono::seconds(10))
    return "--journal-group-delay must be between 0s and 10s";
  if (retry_backoff_max < retry_backoff)
    return "--retry-backoff-max must not be less than --retry-backoff";
  if (heartbeat_interval.count() <= 0)
    return "--heartbeat-interval must be positive";
  if (heartbeat_timeout <= heartbeat_interval)
    return "--heartbeat-timeout must be longer than --heartbeat-interval";
  if (ws_ping_interval < std::chrono::seconds(1)
      || ws_ping_interval > std::chrono::hours(1))
    return "--ws-ping-interval must be between 1s and 1h";
  if (max_batch_tasks == 0)
    return "--max-batch-tasks must be at least 1";
  // Below that not even one task with a short command fits.
  if (max_body_bytes < 1024)
    return "--max-body-bytes must be at least 1024";
  if (aging_interval.count() <= 0)
    return "--aging-interval must be positive";
  if (!api_token_file.empty()) {
    if (!api_token.empty())
      return "give --api-token or --api-token-file, not both";
    std::ifstream in{api_token_file};
    if (!in)
      return fmt::format("cannot read --api-token-file {}", api_token_file);
    std::getline(in, api_token);
    trim_trailing_space(api_token);
    // An empty or unmounted secret must not quietly turn authentication off.
    if (api_token.empty())
      return fmt::format("--api-token-file {} holds no token (its first line "
                         "is empty)",
                         api_token_file);
  } else if (api_token.empty()) {
    if (const char* env = std::getenv("TASKMASTER_API_TOKEN"))
      api_token = env;
  }
  trim_trailing_space(api_token);
  if (!api_token.empty() && api_token.size() < 16)
    return "the API token must be at least 16 characters long";
  if (!run_as.empty() && role != "master" && ::getpwnam(run_as.c_str()) == nullptr)
    return fmt::format("--run-as: no such user '{}'", run_as);
  auto tls_given = !tls_ca.empty() + !tls_cert.empty() + !tls_key.empty();
  if (tls_given != 0 && tls_given != 3)
    return "mutual TLS needs all of --tls-ca, --tls-cert and --tls-key";
  for (const auto* path : {&tls_ca, &tls_cert, &tls_key})
    if (!path->empty() && ::access(path->c_str(), R_OK) != 0)
      return fmt::format("cannot read {}", *path);
  if (role != "worker" && !insecure) {
    if (!is_loopback(http_bind) && api_token.empty())
      return fmt::format("refusing to serve the API on {} without a token: "
                         "set --api-token (or --api-token-file), bind to "
                         "127.0.0.1, or pass --insecure",
                         http_bind);
    if (!is_loopback(cluster_bind) && !tls())
      return fmt::format("refusing to open the cluster port on {} without "
                         "TLS: set --tls-ca/--tls-cert/--tls-key, bind to "
                         "127.0.0.1, or pass --insecure",
                         cluster_bind);
  }
  return {};
}

std::vector<std::string> taskmaster_config::warnings() const {
  std::vector<std::string> result;
  if (insecure && role != "worker") {
    if (!is_loopback(http_bind) && api_token.empty())
      result.push_back(fmt::format(
        "INSECURE: the API on {} accepts anyone who can reach it; they can run "
        "any command on every worker",
        http_bind));
    if (!is_loopback(cluster_bind) && !tls())
      result.push_back(fmt::format(
        "INSECURE: the cluster port on {} is unauthenticated and unencrypted",
        cluster_bind));
  }
  if (role != "master" && run_as.empty() && ::geteuid() == 0)
    result.push_back("tasks run as root: consider --run-as=USER");
  return result;
}

namespace {

/// An option's value as a config file writes it, for CAF to read back.
/// CAF's own rendering does not always: it writes whole days as "7d" (a
/// unit it does not read) and, in 0.17.6, any even number of hours as
/// days rounded down (12h as "0d"); and it leaves a string that starts
/// with a quote unquoted.
std::string file_form(const caf::config_option& opt) {
  auto v = opt.get();
  if (!v)
    return {};
  if (const auto* t = caf::get_if<caf::timespan>(&*v)) {
    auto ns = t->count();
    static constexpr std::pair<int64_t, const char*> units[] = {
      {int64_t{3'600'000'000'000}, "h"}, {int64_t{60'000'000'000}, "min"},
      {int64_t{1'000'000'000}, "s"},     {int64_t{1'000'000}, "ms"},
      {int64_t{1'000}, "us"},            {int64_t{1}, "ns"}};
    if (ns == 0)
      return "0s";
    for (const auto& [size, name] : units)
      if (ns % size == 0)
        return fmt::format("{}{}", ns / size, name);
  }
  if (const auto* text = caf::get_if<std::string>(&*v)) {
    std::string quoted = "\"";
    for (char c : *text) {
      if (c == '"' || c == '\\')
        quoted += '\\';
      quoted += c;
    }
    return quoted + "\"";
  }
  return caf::to_string(*v);
}

} // namespace

std::string taskmaster_config::options_help() const {
  std::string result;
  for (const auto& opt : custom_options_) {
    if (opt.category() != "global" || is_builtin(opt.long_name()))
      continue;
    std::string name{opt.long_name().begin(), opt.long_name().end()};
    auto value = file_form(opt);
    if (name == "api-token" && value != "\"\"")
      value = "\"***\"";
    std::string desc{opt.description().begin(), opt.description().end()};
    auto left = fmt::format("--{}={}", name, value);
    result += fmt::format("  {:<36} {}\n", left, desc);
  }
  return result;
}

std::vector<std::string> taskmaster_config::option_names() const {
  std::vector<std::string> names;
  for (const auto& opt : custom_options_)
    if (opt.category() == "global" && !is_builtin(opt.long_name()))
      names.emplace_back(opt.long_name().begin(), opt.long_name().end());
  return names;
}

std::vector<std::pair<std::string, std::string>>
taskmaster_config::option_values() const {
  std::vector<std::pair<std::string, std::string>> result;
  for (const auto& opt : custom_options_) {
    if (opt.category() != "global" || is_builtin(opt.long_name()))
      continue;
    result.emplace_back(std::string{opt.long_name().begin(),
                                    opt.long_name().end()},
                        file_form(opt));
  }
  return result;
}

core::scheduler_settings taskmaster_config::scheduler_settings() const {
  core::scheduler_settings s;
  s.aging_interval = to_ms(aging_interval);
  s.default_max_retries = max_retries;
  s.retry = core::retry_policy{to_ms(retry_backoff), to_ms(retry_backoff_max)};
  s.heartbeat_timeout = to_ms(heartbeat_timeout);
  s.reconcile_grace = to_ms(reconcile_grace);
  s.restart_hold = to_ms(heartbeat_timeout + reconnect_backoff_max);
  s.prefetch_budget = to_ms(prefetch_budget);
  s.max_lost_attempts = max_lost_attempts;
  s.max_queued = max_queued;
  s.retention = to_ms(retention);
  s.retention_max_finished = retention_max_tasks;
  return s;
}

std::string taskmaster_config::effective_worker_id() const {
  if (!worker_id.empty())
    return worker_id;
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
    return "worker";
  return host;
}

uint32_t taskmaster_config::effective_slots() const {
  if (slots > 0)
    return slots;
  return std::max(1u, std::thread::hardware_concurrency());
}

flag_values take_flag_values(std::vector<std::string>& args,
                             const caf::config_option_set& options) {
  flag_values result;
  std::vector<std::string> kept;
  for (auto& a : args) {
    auto eq = a.find('=');
    const caf::config_option* opt = nullptr;
    if (a.rfind("--", 0) == 0 && eq != std::string::npos)
      opt = options.cli_long_name_lookup(a.substr(2, eq - 2));
    if (opt == nullptr || !opt->is_flag()) {
      kept.push_back(std::move(a));
      continue;
    }
    auto value = a.substr(eq + 1);
    std::transform(value.begin(), value.end(), value.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (value == "true" || value == "1" || value == "yes" || value == "on") {
      kept.push_back(a.substr(0, eq));
    } else if (value == "false" || value == "0" || value == "no"
               || value == "off") {
      result.off.push_back(opt);
    } else if (result.error.empty()) {
      result.error = fmt::format("invalid value in {} (expected true or "
                                 "false)",
                                 a);
    }
  }
  args = std::move(kept);
  return result;
}

void unset_flags(const flag_values& flags) {
  for (const auto* opt : flags.off)
    opt->store(caf::config_value{false});
}

std::string repeated_option(const std::vector<std::string>& args) {
  std::set<std::string> seen;
  for (const auto& a : args) {
    auto name = a.substr(0, a.find('='));
    if (name.rfind("--", 0) == 0 && !seen.insert(name).second)
      return name;
  }
  return {};
}

} // namespace taskmaster
