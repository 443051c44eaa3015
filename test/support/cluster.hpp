#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test/support/process.hpp"
#include "test/support/temp_dir.hpp"

/// Real taskmasterd processes on loopback for integration tests: ports are
/// chosen by the daemons (port 0) and read back from their startup line.
namespace taskmaster::test {

using nlohmann::json;

/// The path of the taskmasterd binary under test.
std::string taskmasterd_path();

struct http_answer {
  int status = 0;
  json body;
  std::string raw;
  std::string retry_after;
};

/// A small blocking HTTP client for the REST API.
class api_client {
public:
  explicit api_client(std::string base_url, std::string token = {});

  http_answer get(const std::string& path) const;
  http_answer post(const std::string& path, const std::string& body) const;
  http_answer post(const std::string& path, const char* body) const {
    return post(path, std::string{body});
  }
  http_answer post(const std::string& path, const json& body) const {
    return post(path, body.dump());
  }

  /// Waits (bounded) until the task is final; returns it.
  json wait_final(uint64_t id, std::chrono::seconds limit
                               = std::chrono::seconds(30)) const;

  /// GET /metrics parsed into "name{labels}" -> value.
  std::map<std::string, double> metrics() const;

  /// The metrics once `name` reads `value`, or the last read after `limit`.
  /// Metrics follow the task table by a moment (the scheduler hands events
  /// to the monitor in batches), so a test that has just seen a task end
  /// waits for them to catch up.
  std::map<std::string, double>
  metrics_when(const std::string& name, double value,
               std::chrono::milliseconds limit
               = std::chrono::seconds(5)) const;

  const std::string& base() const {
    return base_;
  }

private:
  std::string base_;
  std::string token_;
};

/// One taskmasterd process.
class daemon {
public:
  /// Starts a master (or standalone when `standalone`) with its data in
  /// `data_dir` and waits for its ready line. Ports are free ones unless
  /// `extra` names them; "--cluster-port=default" leaves the cluster port
  /// to taskmasterd's own default.
  static std::unique_ptr<daemon> master(const temp_dir& dir,
                                        const std::string& name,
                                        std::vector<std::string> extra = {},
                                        bool standalone = false);

  /// Starts a worker for `master_addr` (HOST:PORT).
  static std::unique_ptr<daemon> worker(const temp_dir& dir,
                                        const std::string& master_addr,
                                        const std::string& id, int slots,
                                        std::vector<std::string> extra = {});

  process& proc() {
    return *proc_;
  }

  const std::string& http_url() const {
    return http_url_;
  }

  const std::string& cluster_addr() const {
    return cluster_addr_;
  }

  uint16_t http_port() const;
  uint16_t cluster_port() const;

  api_client api(std::string token = {}) const {
    return api_client{http_url_, std::move(token)};
  }

  std::string log() const {
    return read_file(err_path_);
  }

  std::string output() const {
    return read_file(out_path_);
  }

  /// Waits (bounded) until the log contains `text`.
  bool log_contains(const std::string& text,
                    std::chrono::milliseconds limit
                    = std::chrono::seconds(10)) const;

private:
  std::unique_ptr<process> proc_;
  std::string out_path_;
  std::string err_path_;
  std::string http_url_;
  std::string cluster_addr_;
};

/// The state of one worker in GET /workers ("" when it is not listed).
std::string worker_state(const api_client& api, const std::string& id);

/// Waits (bounded) until GET /workers lists `count` workers in state UP.
bool wait_for_workers(const api_client& api, size_t count,
                      std::chrono::milliseconds limit
                      = std::chrono::seconds(15));

/// Runs `taskmasterd ARGS...` (the client, or a daemon that should exit) to
/// its end, with its output in `dir`/NAME.out and NAME.err; returns its exit
/// code, or -1 when it did not end within 30 s.
int run_taskmasterd(const temp_dir& dir, std::vector<std::string> args,
                    const std::string& name);

} // namespace taskmaster::test
