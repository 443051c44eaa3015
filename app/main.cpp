// taskmasterd: one binary for every TaskMaster role and its client.
//
//   taskmasterd [--role=standalone|master|worker] [options]   the daemon
//   taskmasterd submit|task|tasks|cancel|workers ...          the client
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "app/client.hpp"
#include "app/daemon.hpp"
#include "config/taskmaster_config.hpp"

namespace {

constexpr const char* version = "0.1.0";

void print_help(const taskmaster::taskmaster_config& cfg) {
  fmt::print(
    "TaskMaster {} - a distributed task scheduler for shell commands\n"
    "\n"
    "usage:\n"
    "  taskmasterd [options]                  standalone: master + local "
    "worker\n"
    "  taskmasterd --role=master [options]    scheduler, journal, HTTP API\n"
    "  taskmasterd --role=worker --master=HOST:PORT [options]\n"
    "                                         runs tasks for a master\n"
    "  taskmasterd submit --cmd=COMMAND [--priority=HIGH] [--name=N] "
    "[--desc=D] [--wait]\n"
    "  taskmasterd task ID [--wait]           one task, with its output\n"
    "  taskmasterd tasks [--status=S] [--priority=P]\n"
    "  taskmasterd cancel ID\n"
    "  taskmasterd workers\n"
    "  taskmasterd watch [--task=ID] [--topics=tasks,workers,stats]\n"
    "  (client commands: --server=URL, --json, --help for their options)\n"
    "\n"
    "daemon options (also in a file with --config-file=PATH, INI, section "
    "[global];\n"
    "config/taskmasterd.ini lists them all; --dump-config prints the values\n"
    "the daemon would run with):\n"
    "{}"
    "  --config-file=PATH                   read options from PATH\n",
    version, cfg.options_help());
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && taskmaster::client::is_command(args[0])) {
    auto command = args[0];
    args.erase(args.begin());
    return taskmaster::client::run(command, args);
  }
  taskmaster::taskmaster_config cfg;
  for (const auto& a : args) {
    if (a == "--help" || a == "-h" || a == "help" || a == "--long-help") {
      print_help(cfg);
      return 0;
    }
    if (a == "--version" || a == "version") {
      fmt::print("taskmasterd {}\n", version);
      return 0;
    }
  }
  // "taskmasterd --server=URL workers": the command must come first.
  for (size_t i = 1; i < args.size(); ++i)
    if (taskmaster::client::is_command(args[i])
        && args[i - 1].rfind("-", 0) == 0 && args[i - 1] != "--config-file") {
      fmt::print(stderr,
                 "taskmasterd: the command comes first, its options after "
                 "it: taskmasterd {} [options]\n",
                 args[i]);
      return 2;
    }
  if (!args.empty() && args[0].rfind("-", 0) != 0) {
    fmt::print(stderr,
               "taskmasterd: unknown command '{}' (see taskmasterd --help)\n",
               args[0]);
    return 2;
  }
  if (auto err = cfg.parse_args(args); !err.empty()) {
    fmt::print(stderr, "taskmasterd: {}\n", err);
    return 2;
  }
  // --dump-config printed the configuration: that was the whole request.
  if (cfg.cli_helptext_printed)
    return 0;
  if (auto err = cfg.validate(); !err.empty()) {
    fmt::print(stderr, "taskmasterd: {}\n", err);
    return 2;
  }
  taskmaster::open_standard_descriptors();
  taskmaster::tune_malloc();
  taskmaster::block_shutdown_signals();
  return taskmaster::run_daemon(cfg);
}
