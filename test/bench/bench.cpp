// taskmaster-bench: measures TaskMaster workloads against a running master
// and, in the same run, the baseline of spawning the same commands directly.
// scripts/bench.sh starts the cluster and calls this.
//
//   taskmaster-bench --server=URL [--workloads=w1,w2,w3] [--json=PATH]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// -- baselines: spawn and reap the commands directly ---------------------------

pid_t spawn_sh(const std::string& command) {
  std::string sh = "/bin/sh";
  std::string c = "-c";
  std::string cmd = command;
  char* argv[] = {sh.data(), c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  if (posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, environ) != 0) {
    std::perror("posix_spawn");
    std::exit(1);
  }
  return pid;
}

/// Runs `count` commands with `parallel` in flight; returns seconds.
double spawn_baseline(const std::string& command, int count, int parallel) {
  auto start = clock_type::now();
  int started = 0;
  int running = 0;
  while (started < count || running > 0) {
    while (running < parallel && started < count) {
      spawn_sh(command);
      ++started;
      ++running;
    }
    int status = 0;
    if (::wait(&status) > 0)
      --running;
  }
  return seconds_since(start);
}

/// One command at a time; returns each run's milliseconds.
std::vector<double> spawn_latencies(const std::string& command, int count) {
  std::vector<double> result;
  for (int i = 0; i < count; ++i) {
    auto start = clock_type::now();
    auto pid = spawn_sh(command);
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.push_back(seconds_since(start) * 1000.0);
  }
  return result;
}

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  if (values.empty())
    return 0;
  auto index = static_cast<size_t>(p * static_cast<double>(values.size() - 1)
                                   + 0.5);
  return values[std::min(index, values.size() - 1)];
}

// -- TaskMaster workloads -------------------------------------------------------

class client {
public:
  explicit client(std::string url) : url_(std::move(url)), cli_(url_) {
    cli_.set_read_timeout(120);
    cli_.set_keep_alive(true);
    cli_.set_tcp_nodelay(true);
  }

  json post(const std::string& path, const std::string& body) {
    auto res = cli_.Post(path, body, "application/json");
    if (!res || (res->status != 201 && res->status != 200)) {
      fmt::print(stderr, "POST {} failed: {}\n", path,
                 res ? res->body : httplib::to_string(res.error()));
      std::exit(1);
    }
    return json::parse(res->body);
  }

  json get(const std::string& path) {
    auto res = cli_.Get(path);
    if (!res || res->status != 200) {
      fmt::print(stderr, "GET {} failed\n", path);
      std::exit(1);
    }
    return json::parse(res->body);
  }

  uint64_t finished() {
    auto s = get("/stats")["tasks_by_status"];
    return s["SUCCEEDED"].get<uint64_t>() + s["FAILED"].get<uint64_t>()
           + s["TIMED_OUT"].get<uint64_t>() + s["CANCELLED"].get<uint64_t>();
  }

private:
  std::string url_;
  httplib::Client cli_;
};

/// The latest finished_at (ms since the epoch) among tasks with id >= `first`.
int64_t last_finish_ms(client& c, uint64_t first) {
  int64_t last = 0;
  std::string cursor;
  for (;;) {
    auto page = c.get("/tasks?limit=1000" + (cursor.empty() ? "" : "&cursor=" + cursor));
    bool older = false;
    for (const auto& t : page["tasks"]) {
      if (t["id"].get<uint64_t>() < first) {
        older = true;
        break;
      }
      if (t["finished_at"].is_string()) {
        auto text = t["finished_at"].get<std::string>();
        // "YYYY-MM-DDTHH:MM:SS.mmmZ" -> ms of the day is enough for a span.
        int64_t ms = (std::stoll(text.substr(11, 2)) * 3600
                      + std::stoll(text.substr(14, 2)) * 60
                      + std::stoll(text.substr(17, 2)))
                       * 1000
                     + std::stoll(text.substr(20, 3));
        last = std::max(last, ms);
      }
    }
    if (older || page["next_cursor"].is_null())
      return last;
    cursor = page["next_cursor"].get<std::string>();
  }
}

int64_t wall_ms_of_day() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::milliseconds>(now).count()
         % (24 * 3600 * 1000);
}

/// Submits `count` copies of `command` in batches and waits until all ended.
/// Completion is polled sparingly (the poll is not free for the master) and
/// the end time is the last task's own finished_at.
double run_batch_workload(client& c, const std::string& command, int count,
                          int batch) {
  auto before = c.finished();
  auto start_ms = wall_ms_of_day();
  uint64_t first_id = 0;
  for (int sent = 0; sent < count; sent += batch) {
    json tasks = json::array();
    for (int i = 0; i < std::min(batch, count - sent); ++i)
      tasks.push_back(json{{"command", command}, {"priority", "MEDIUM"}});
    auto answer = c.post("/tasks", tasks.dump());
    if (first_id == 0)
      first_id = answer[0]["id"].get<uint64_t>();
  }
  while (c.finished() < before + static_cast<uint64_t>(count))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return (last_finish_ms(c, first_id) - start_ms) / 1000.0;
}

/// Submits one task at a time and waits for it with a long poll.
std::vector<double> run_latency_workload(client& c, const std::string& command,
                                         int count) {
  std::vector<double> result;
  for (int i = 0; i < count; ++i) {
    auto start = clock_type::now();
    auto task = c.post("/tasks", json{{"command", command}}.dump());
    auto id = task["id"].get<uint64_t>();
    for (;;) {
      auto t = c.get(fmt::format("/tasks/{}?wait=30", id));
      auto status = t["status"].get<std::string>();
      if (status != "QUEUED" && status != "RUNNING")
        break;
    }
    result.push_back(seconds_since(start) * 1000.0);
  }
  return result;
}

struct row {
  std::string name;
  std::string unit;
  double value;
  double baseline;
  double ratio;
  std::string target;
  bool met;
};

} // namespace

int main(int argc, char** argv) {
  std::string server = "http://127.0.0.1:8080";
  std::string workloads = "w1,w2,w3";
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--server=", 0) == 0)
      server = a.substr(9);
    else if (a.rfind("--workloads=", 0) == 0)
      workloads = a.substr(12);
    else if (a.rfind("--json=", 0) == 0)
      json_path = a.substr(7);
  }
  auto wants = [&](const char* w) {
    return workloads.find(w) != std::string::npos;
  };
  client c{server};
  std::vector<row> rows;
  json out = json::object();

  if (wants("w1")) {
    constexpr int count = 2000;
    auto base = spawn_baseline("true", count, 4);
    auto tm = run_batch_workload(c, "true", count, 100);
    double base_rate = count / base;
    double tm_rate = count / tm;
    rows.push_back({"W1 throughput, 2000 x true", "tasks/s", tm_rate,
                    base_rate, tm_rate / base_rate, ">= 0.5 (issue 6: 0.85)",
                    tm_rate / base_rate >= 0.5});
    out["w1"] = {{"tasks", count},          {"seconds", tm},
                 {"tasks_per_second", tm_rate},
                 {"baseline_seconds", base}, {"baseline_per_second", base_rate},
                 {"ratio", tm_rate / base_rate}};
  }
  if (wants("w2")) {
    constexpr int count = 200;
    constexpr double ideal = count * 0.05 / 4;
    auto base = spawn_baseline("sleep 0.05", count, 4);
    auto tm = run_batch_workload(c, "sleep 0.05", count, 200);
    double eff = ideal / tm;
    double base_eff = ideal / base;
    rows.push_back({"W2 efficiency, 200 x sleep 0.05", "efficiency", eff,
                    base_eff, eff / base_eff, ">= 0.9 (issue 6: 0.98)",
                    eff / base_eff >= 0.9});
    out["w2"] = {{"tasks", count},          {"seconds", tm},
                 {"ideal_seconds", ideal},   {"efficiency", eff},
                 {"baseline_seconds", base}, {"baseline_efficiency", base_eff},
                 {"ratio", eff / base_eff}};
  }
  if (wants("w3")) {
    constexpr int count = 100;
    auto base = spawn_latencies("true", count);
    auto tm = run_latency_workload(c, "true", count);
    double p50 = percentile(tm, 0.5);
    double p99 = percentile(tm, 0.99);
    double b50 = percentile(base, 0.5);
    double b99 = percentile(base, 0.99);
    rows.push_back({"W3 latency p50, 100 x true", "ms", p50, b50, p50 - b50,
                    "<= baseline + 5 ms (issue 6: +1 ms)", p50 - b50 <= 5});
    rows.push_back({"W3 latency p99", "ms", p99, b99, p99 - b99,
                    "issue 6: <= baseline + 3 ms", p99 - b99 <= 3});
    out["w3"] = {{"tasks", count},       {"p50_ms", p50},
                 {"p99_ms", p99},        {"baseline_p50_ms", b50},
                 {"baseline_p99_ms", b99}, {"p50_over_baseline_ms", p50 - b50},
                 {"p99_over_baseline_ms", p99 - b99}};
  }

  fmt::print("\n{:<34} {:>12} {:>12} {:>10}  {:<10} {}\n", "workload",
             "TaskMaster", "baseline", "ratio", "unit", "target");
  for (const auto& r : rows)
    fmt::print("{:<34} {:>12.2f} {:>12.2f} {:>10.3f}  {:<10} {} {}\n", r.name,
               r.value, r.baseline, r.ratio, r.unit, r.target,
               r.met ? "(met)" : "(NOT met)");
  fmt::print("(W3 rows: ratio column is TaskMaster minus baseline, in ms)\n");
  if (!json_path.empty()) {
    std::ofstream f{json_path};
    f << out.dump(2) << "\n";
    fmt::print("results written to {}\n", json_path);
  }
  return 0;
}
