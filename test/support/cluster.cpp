#include "test/support/cluster.hpp"

#include <algorithm>
#include <atomic>
#include <regex>
#include <stdexcept>
#include <thread>

#include <httplib.h>

#include "test/support/wait.hpp"

namespace taskmaster::test {

namespace {

std::atomic<int> counter{0};

} // namespace

std::string taskmasterd_path() {
  return TASKMASTERD_PATH;
}

api_client::api_client(std::string base_url, std::string token)
  : base_(std::move(base_url)), token_(std::move(token)) {
  while (!base_.empty() && base_.back() == '/')
    base_.pop_back();
}

namespace {

http_answer to_answer(const httplib::Result& res) {
  http_answer a;
  if (!res)
    return a;
  a.status = res->status;
  a.raw = res->body;
  a.body = json::parse(res->body, nullptr, false);
  if (res->has_header("Retry-After"))
    a.retry_after = res->get_header_value("Retry-After");
  return a;
}

httplib::Headers auth(const std::string& token) {
  httplib::Headers h;
  if (!token.empty())
    h.emplace("Authorization", "Bearer " + token);
  return h;
}

} // namespace

http_answer api_client::get(const std::string& path) const {
  httplib::Client cli{base_};
  cli.set_read_timeout(70);
  cli.set_tcp_nodelay(true);
  return to_answer(cli.Get(path, auth(token_)));
}

http_answer api_client::post(const std::string& path,
                             const std::string& body) const {
  httplib::Client cli{base_};
  cli.set_read_timeout(70);
  cli.set_tcp_nodelay(true);
  return to_answer(cli.Post(path, auth(token_), body, "application/json"));
}

json api_client::wait_final(uint64_t id, std::chrono::seconds limit) const {
  auto deadline = std::chrono::steady_clock::now() + limit;
  json last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto asked = std::chrono::steady_clock::now();
    auto a = get("/tasks/" + std::to_string(id) + "?wait=5");
    if (a.status == 200) {
      last = a.body;
      auto s = last.value("status", "");
      if (s != "QUEUED" && s != "RUNNING")
        return last;
      // A stopping master answers long polls at once: do not spin.
      if (std::chrono::steady_clock::now() - asked < std::chrono::seconds(1))
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return last;
}

std::map<std::string, double>
api_client::metrics_when(const std::string& name, double value,
                         std::chrono::milliseconds limit) const {
  std::map<std::string, double> m;
  eventually(
    [&] {
      m = metrics();
      auto i = m.find(name);
      return i != m.end() && i->second == value;
    },
    limit);
  return m;
}

std::map<std::string, double> api_client::metrics() const {
  std::map<std::string, double> result;
  auto a = get("/metrics");
  std::istringstream in{a.raw};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    auto space = line.rfind(' ');
    if (space == std::string::npos)
      continue;
    result[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return result;
}

std::unique_ptr<daemon> daemon::master(const temp_dir& dir,
                                       const std::string& name,
                                       std::vector<std::string> extra,
                                       bool standalone) {
  auto d = std::unique_ptr<daemon>(new daemon);
  d->out_path_ = dir / (name + ".out");
  d->err_path_ = dir / (name + ".err");
  std::vector<std::string> argv{taskmasterd_path()};
  if (!standalone)
    argv.push_back("--role=master");
  argv.push_back("--data-dir=" + (dir / (name + "-data")));
  bool http_port_given = false;
  auto sentinel = std::find(extra.begin(), extra.end(), "--cluster-port=default");
  bool cluster_port_given = sentinel != extra.end();
  if (cluster_port_given)
    extra.erase(sentinel);
  for (const auto& e : extra) {
    http_port_given = http_port_given || e.rfind("--http-port=", 0) == 0;
    cluster_port_given = cluster_port_given
                         || e.rfind("--cluster-port=", 0) == 0;
  }
  if (!http_port_given)
    argv.push_back("--http-port=0");
  if (!cluster_port_given)
    argv.push_back("--cluster-port=0");
  for (auto& e : extra)
    argv.push_back(std::move(e));
  // Start on a fresh output file so the ready line is this run's.
  std::remove(d->out_path_.c_str());
  d->proc_ = std::make_unique<process>(argv, d->out_path_, d->err_path_);
  std::smatch m;
  static const std::regex http_re{R"(API and dashboard: (http://[^/\s]+)/)"};
  static const std::regex cluster_re{R"(--master=([^)\s]+))"};
  bool ready = eventually(
    [&] {
      auto out = read_file(d->out_path_);
      return std::regex_search(out, m, http_re)
             || !d->proc_->running();
    },
    std::chrono::seconds(15));
  auto out = read_file(d->out_path_);
  if (!ready || !std::regex_search(out, m, http_re))
    throw std::runtime_error("master did not start: " + read_file(d->err_path_));
  d->http_url_ = m[1];
  if (std::regex_search(out, m, cluster_re))
    d->cluster_addr_ = m[1];
  return d;
}

std::unique_ptr<daemon> daemon::worker(const temp_dir& dir,
                                       const std::string& master_addr,
                                       const std::string& id, int slots,
                                       std::vector<std::string> extra) {
  auto d = std::unique_ptr<daemon>(new daemon);
  auto n = counter++;
  d->out_path_ = dir / (id + "-" + std::to_string(n) + ".out");
  d->err_path_ = dir / (id + "-" + std::to_string(n) + ".err");
  std::vector<std::string> argv{taskmasterd_path(), "--role=worker",
                                "--master=" + master_addr,
                                "--worker-id=" + id,
                                "--slots=" + std::to_string(slots)};
  // taskmasterd refuses an option given twice: a default goes only where
  // `extra` has none.
  if (std::none_of(extra.begin(), extra.end(), [](const std::string& e) {
        return e.rfind("--reconnect-backoff-max=", 0) == 0;
      }))
    argv.push_back("--reconnect-backoff-max=500ms");
  for (auto& e : extra)
    argv.push_back(std::move(e));
  d->proc_ = std::make_unique<process>(argv, d->out_path_, d->err_path_);
  return d;
}

uint16_t daemon::http_port() const {
  return static_cast<uint16_t>(
    std::stoi(http_url_.substr(http_url_.rfind(':') + 1)));
}

uint16_t daemon::cluster_port() const {
  return static_cast<uint16_t>(
    std::stoi(cluster_addr_.substr(cluster_addr_.rfind(':') + 1)));
}

bool daemon::log_contains(const std::string& text,
                          std::chrono::milliseconds limit) const {
  return eventually(
    [&] { return read_file(err_path_).find(text) != std::string::npos; },
    limit);
}

std::string worker_state(const api_client& api, const std::string& id) {
  auto answer = api.get("/workers");
  for (const auto& w : answer.body["workers"])
    if (w["id"] == id)
      return w["state"].get<std::string>();
  return {};
}

bool wait_for_workers(const api_client& api, size_t count,
                      std::chrono::milliseconds limit) {
  return eventually(
    [&] {
      auto a = api.get("/workers");
      if (a.status != 200)
        return false;
      size_t up = 0;
      for (const auto& w : a.body["workers"])
        if (w.value("state", "") == "UP")
          ++up;
      return up >= count;
    },
    limit, std::chrono::milliseconds(20));
}

int run_taskmasterd(const temp_dir& dir, std::vector<std::string> args,
                    const std::string& name) {
  args.insert(args.begin(), taskmasterd_path());
  process p{args, dir / (name + ".out"), dir / (name + ".err")};
  return p.wait(std::chrono::seconds(30)).value_or(-1);
}

} // namespace taskmaster::test
