#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/timespan.hpp>

#include "actors/core/scheduler_core.hpp"
#include "actors/core/task.hpp"

namespace taskmaster {

/// The daemon's configuration: CAF's config with every TaskMaster option
/// bound to a member (defaults from config/defaults.hpp). Options come from
/// the command line and from `--config-file` (INI, strings quoted).
class taskmaster_config : public caf::actor_system_config {
public:
  taskmaster_config();

  // -- roles and addresses
  std::string role;
  std::string http_bind;
  uint16_t http_port;
  std::string cluster_bind;
  uint16_t cluster_port;
  std::string data_dir;
  std::string master;

  // -- worker
  std::string worker_id;
  uint32_t slots;
  std::string labels;
  caf::timespan kill_grace;
  caf::timespan shutdown_grace;
  size_t output_tail_bytes;
  caf::timespan reconnect_backoff;
  caf::timespan reconnect_backoff_max;

  // -- scheduling
  caf::timespan aging_interval;
  uint32_t max_retries;
  caf::timespan retry_backoff;
  caf::timespan retry_backoff_max;
  size_t max_queued;
  caf::timespan heartbeat_interval;
  caf::timespan heartbeat_timeout;
  caf::timespan reconcile_grace;
  caf::timespan prefetch_budget;
  uint32_t max_lost_attempts;
  caf::timespan retention;
  size_t retention_max_tasks;
  bool journal_fsync;
  caf::timespan journal_group_delay;

  // -- HTTP
  size_t max_body_bytes;
  size_t http_threads;
  caf::timespan request_timeout;
  size_t max_batch_tasks;

  // -- security
  std::string api_token;
  std::string api_token_file;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  bool insecure;
  std::string run_as;

  // -- request limits
  size_t max_command_bytes;
  size_t max_name_bytes;
  size_t max_description_bytes;
  size_t max_labels;
  size_t max_label_bytes;
  size_t max_env;
  size_t max_env_bytes;
  size_t max_header_bytes;
  size_t ws_max_message_bytes;
  size_t ws_max_clients_per_address;
  caf::timespan ws_ping_interval;

  /// Parses the command line (argv[0] excluded) and the config file. Returns
  /// an empty string on success, else one line saying what is wrong.
  std::string parse_args(const std::vector<std::string>& args);

  /// Checks values that parse but make no sense, reads the token file and
  /// $TASKMASTER_API_TOKEN, and refuses unsafe binds. Same convention as
  /// parse_args.
  std::string validate();

  /// Warnings for a valid but risky configuration (--insecure, tasks as
  /// root), to log at start.
  std::vector<std::string> warnings() const;

  /// The options of the "global" group with their descriptions.
  std::string options_help() const;

  /// Names of TaskMaster's own options (CAF's built-ins excluded).
  std::vector<std::string> option_names() const;

  /// Current values of TaskMaster's own options, rendered by CAF.
  std::vector<std::pair<std::string, std::string>> option_values() const;

  // -- derived values (valid after validate)

  core::string_map worker_labels;
  std::string master_host;
  uint16_t master_port = 0;

  /// True when --cluster-port came from the command line or the config
  /// file: a standalone master whose default port is taken moves to a free
  /// one only when the user did not ask for that port.
  bool cluster_port_chosen() const;

  /// True when nodes talk over mutual TLS (all three --tls-* given).
  bool tls() const {
    return !tls_cert.empty();
  }

  core::scheduler_settings scheduler_settings() const;

  /// The worker id, or the host name when none was given.
  std::string effective_worker_id() const;

  /// The slot count, or the number of cores when none was given.
  uint32_t effective_slots() const;
};

/// The first "--name" given more than once in `args` ("--name=value" or
/// "--name"), or "" when none is. CAF's parser keeps the last of a repeated
/// option silently; the daemon and the client both refuse it instead.
std::string repeated_option(const std::vector<std::string>& args);

/// What take_flag_values() found: true/false options set to false, to be
/// applied after CAF's parse (unset_flags), or why a value is not one.
struct flag_values {
  std::vector<const caf::config_option*> off;
  std::string error;
};

/// CAF 0.17 takes a true/false option only bare ("--insecure"). This takes
/// "--name=true" and "--name=false" too (or 1/0, yes/no, on/off, any case):
/// the first becomes "--name"; the second leaves `args` and is returned for
/// unset_flags(), which sets it after CAF's parse (so it also overrides a
/// config file). Any other value is an error.
flag_values take_flag_values(std::vector<std::string>& args,
                             const caf::config_option_set& options);

/// Sets the options take_flag_values() found given as false.
void unset_flags(const flag_values& flags);

/// One line for CAF's error from parsing command-line options
/// (`parser_error(code, {"argument" = "--x=y"})`): the unknown option, or the
/// option and the form of value it takes. Empty when `err` names no argument.
std::string describe_option_error(const caf::error& err,
                                  const caf::config_option_set& options);

} // namespace taskmaster
