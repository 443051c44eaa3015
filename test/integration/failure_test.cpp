#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>

#include "actors/core/time.hpp"
#include "test/support/cluster.hpp"
#include "test/support/connect.hpp"
#include "test/support/file_size_cap.hpp"
#include "test/support/wait.hpp"

using namespace taskmaster::test;
using namespace std::chrono_literals;

namespace {

/// Fast liveness settings so failure tests finish quickly; the same on
/// masters and workers (each configures its own middleman heartbeats).
const std::vector<std::string> fast_liveness{"--heartbeat-interval=250ms",
                                             "--heartbeat-timeout=1500ms"};

std::vector<std::string> with(std::vector<std::string> a,
                              const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// Flags that start a master again on `master`'s ports, so its workers and
/// clients find it where it was.
std::vector<std::string> same_ports(const taskmaster::test::daemon& master) {
  return {"--http-port=" + std::to_string(master.http_port()),
          "--cluster-port=" + std::to_string(master.cluster_port())};
}

/// Milliseconds between two RFC 3339 timestamps of the same day.
double ms_between(const std::string& a, const std::string& b) {
  auto ms = [](const std::string& t) {
    return (std::stoi(t.substr(11, 2)) * 3600 + std::stoi(t.substr(14, 2)) * 60)
             * 1000.0
           + std::stod(t.substr(17, 6)) * 1000.0;
  };
  return ms(b) - ms(a);
}

bool pid_alive(long pid) {
  std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
  std::string p, comm, state;
  if (!(stat >> p >> comm >> state))
    return false;
  return state != "Z" && state != "X";
}

std::vector<long> read_pids(const std::string& path) {
  std::ifstream in{path};
  std::vector<long> pids;
  long pid;
  while (in >> pid)
    pids.push_back(pid);
  return pids;
}

/// A worker that finds a restarted master within a third of a second.
std::unique_ptr<taskmaster::test::daemon>
steady_worker(const temp_dir& dir, const taskmaster::test::daemon& master,
              int slots) {
  return taskmaster::test::daemon::worker(
    dir, master.cluster_addr(), "steady", slots,
    with({"--reconnect-backoff-max=300ms"}, fast_liveness));
}

std::vector<uint64_t> submit_batch(const api_client& api, const json& tasks) {
  auto a = api.post("/tasks", tasks);
  REQUIRE(a.status == 201);
  std::vector<uint64_t> ids;
  for (const auto& t : a.body)
    ids.push_back(t["id"].get<uint64_t>());
  return ids;
}

/// A TCP forwarder on a free loopback port in front of `backend` that can
/// spoil answers: for the next `lose_next(n)` connections it passes the
/// request on, waits for the backend's whole answer, and closes the client's
/// connection without it, as a network or a proxy failing mid-request does;
/// `replace_next(n)` sends a 503 in its place instead, as a gateway whose
/// scheduler answered too late. Other connections pass both ways untouched.
class answer_losing_proxy {
public:
  explicit answer_losing_proxy(uint16_t backend) : backend_(backend) {
    listener_ = listen_on_loopback(port_);
    REQUIRE(listener_ >= 0);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~answer_losing_proxy() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    ::close(listener_);
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& t : sessions_)
      t.join();
  }

  uint16_t port() const {
    return port_;
  }

  void lose_next(int n) {
    replace_ = false;
    to_spoil_ = n;
  }

  /// `code` is the error code of the 503's JSON body.
  void replace_next(int n, std::string code = "unavailable") {
    std::lock_guard<std::mutex> guard{mtx_};
    replace_code_ = std::move(code);
    replace_ = true;
    to_spoil_ = n;
  }

  /// Answers lost or replaced so far.
  int spoiled() const {
    return spoiled_;
  }

private:
  void accept_loop() {
    for (;;) {
      int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0 || stopping_) {
        if (client >= 0)
          ::close(client);
        return;
      }
      int left = to_spoil_.load();
      while (left > 0 && !to_spoil_.compare_exchange_weak(left, left - 1)) {
      }
      bool spoil = left > 0;
      std::lock_guard<std::mutex> guard{mtx_};
      sessions_.emplace_back([this, client, spoil] { serve(client, spoil); });
    }
  }

  void serve(int client, bool spoil) {
    int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(backend_);
    if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr)
        == 0)
      spoil ? spoil_answer(client, server) : pass(client, server);
    ::close(server);
    ::close(client);
  }

  /// Forwards the request, reads the answer to its end, and drops it or
  /// sends a 503 instead.
  void spoil_answer(int client, int server) {
    auto request = read_message(client);
    if (!send_all(server, request))
      return;
    read_message(server);
    ++spoiled_;
    if (replace_) {
      std::string code;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        code = replace_code_;
      }
      std::string body = R"({"error":{"code":")" + code + R"(","message":")"
                         + (code == "journal_failed"
                              ? "the journal could not store the task; "
                                "nothing was accepted"
                              : "the scheduler did not answer")
                         + R"("}})";
      send_all(client, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                       "application/json\r\nContent-Length: "
                         + std::to_string(body.size())
                         + "\r\nConnection: close\r\n\r\n" + body);
    }
  }

  /// MSG_NOSIGNAL: a peer gone must not raise SIGPIPE in the test.
  static bool send_all(int fd, const std::string& data) {
    return ::send(fd, data.data(), data.size(), MSG_NOSIGNAL)
           == static_cast<ssize_t>(data.size());
  }

  /// One HTTP message: its head, then Content-Length bytes (10 s at most).
  static std::string read_message(int fd) {
    std::string data;
    char buf[4096];
    for (;;) {
      auto head_end = data.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t length = 0;
        auto at = data.find("Content-Length: ");
        if (at != std::string::npos && at < head_end)
          length = std::stoul(data.substr(at + 16));
        if (data.size() >= head_end + 4 + length)
          return data;
      }
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10'000) <= 0)
        return data;
      auto n = ::read(fd, buf, sizeof buf);
      if (n <= 0)
        return data;
      data.append(buf, static_cast<size_t>(n));
    }
  }

  /// Copies both ways until either side closes.
  void pass(int client, int server) {
    char buf[16384];
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    while (!stopping_) {
      if (::poll(fds, 2, 200) < 0)
        return;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].revents == 0)
          continue;
        auto n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0
            || ::send(fds[1 - i].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL)
                 != n)
          return;
      }
    }
  }

  uint16_t backend_;
  uint16_t port_ = 0;
  int listener_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<int> to_spoil_{0};
  std::atomic<bool> replace_{false};
  std::string replace_code_ = "unavailable";
  std::atomic<int> spoiled_{0};
  std::thread acceptor_;
  std::mutex mtx_;
  std::vector<std::thread> sessions_;
};

/// How many tasks the master has with `command`.
size_t tasks_with_command(const api_client& api, const std::string& command) {
  auto page = api.get("/tasks?limit=1000");
  size_t n = 0;
  for (const auto& t : page.body["tasks"])
    if (t["command"] == command)
      ++n;
  return n;
}

} // namespace

TEST_CASE("kill -9 of a worker: its tasks finish on the other worker, each "
          "with one final result and a second attempt",
          "[integration][failure]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", fast_liveness);
  auto doomed = daemon::worker(dir, master->cluster_addr(), "doomed", 2,
                               fast_liveness);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  process watch{{taskmasterd_path(), "watch", "--topics=workers",
                 "--server=" + master->http_url()},
                dir / "watch.out", dir / "watch.err"};
  REQUIRE(eventually([&] { return !read_file(dir / "watch.out").empty(); }));
  json tasks = json::array();
  for (int i = 0; i < 2; ++i)
    tasks.push_back(json{{"command", "sleep 1; echo survived-" + std::to_string(i)}});
  auto ids = submit_batch(api, tasks);
  REQUIRE(eventually([&] {
    return api.get("/stats").body["running"] == 2;
  }));
  auto survivor = daemon::worker(dir, master->cluster_addr(), "survivor", 2,
                                 fast_liveness);
  REQUIRE(wait_for_workers(api, 2));
  auto killed_at = std::chrono::steady_clock::now();
  doomed->proc().signal(SIGKILL);
  REQUIRE(eventually([&] { return worker_state(api, "doomed") == "LOST"; }));
  auto detected = std::chrono::steady_clock::now() - killed_at;
  WARN("kill -9 of a worker detected after "
       << std::chrono::duration_cast<std::chrono::milliseconds>(detected).count()
       << " ms");
  CHECK(detected < 3s);
  // The stream says what the lost worker held, and why it is lost.
  REQUIRE(eventually([&] {
    return read_file(dir / "watch.out").find("worker doomed lost")
           != std::string::npos;
  }));
  CHECK(read_file(dir / "watch.out")
          .find("worker doomed lost (2 slots, 2 tasks back in the queue): ")
        != std::string::npos);
  watch.signal(SIGTERM);
  watch.wait(10s);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto t = api.wait_final(ids[i]);
    CHECK(t["status"] == "SUCCEEDED");
    CHECK(t["worker_id"] == "survivor");
    CHECK(t["stdout"] == "survived-" + std::to_string(i) + "\n");
    REQUIRE(t["attempts"].size() == 2);
    CHECK(t["attempts"][0]["outcome"] == "LOST");
    CHECK(t["attempts"][0]["worker_id"] == "doomed");
    CHECK(t["attempts"][1]["outcome"] == "SUCCEEDED");
  }
  auto m = api.metrics_when("taskmaster_tasks_completed_total", 2);
  CHECK(m["taskmaster_tasks_completed_total"] == 2);
  CHECK(m["taskmaster_tasks_requeued_total"] == 2);
  CHECK(m["taskmaster_workers_lost_total"] == 1);
}

TEST_CASE("kill -9 of a worker or a standalone daemon takes its tasks' "
          "processes with it",
          "[integration][failure]") {
  // Left running, they would be a second copy beside the attempt run again.
  // A shell with a command of its own in the background and one it waits
  // for: the guard kills the whole group, not only the shell.
  temp_dir dir;
  auto pid_file = dir / "task.pids";
  auto command = "sleep 300 & echo \"$$ $!\" > " + pid_file + ".tmp && mv "
                 + pid_file + ".tmp " + pid_file + " && sleep 300";
  // Runs the task through `api`, kills `runner` (the daemon that runs it)
  // with SIGKILL and checks the shell and its child are gone.
  auto killed_with = [&](auto& api, taskmaster::test::daemon& runner) {
    submit_batch(api, json::array({json{{"command", command}}}));
    std::vector<long> pids;
    REQUIRE(eventually([&] {
      pids = read_pids(pid_file);
      return pids.size() == 2;
    }));
    REQUIRE(pid_alive(pids[0]));
    REQUIRE(pid_alive(pids[1]));
    runner.proc().signal(SIGKILL);
    CHECK(eventually([&] {
      return std::none_of(pids.begin(), pids.end(), pid_alive);
    }, 5s));
  };
  SECTION("a worker") {
    auto master = daemon::master(dir, "master", fast_liveness);
    auto doomed = daemon::worker(dir, master->cluster_addr(), "doomed", 1,
                                 fast_liveness);
    auto api = master->api();
    REQUIRE(wait_for_workers(api, 1));
    killed_with(api, *doomed);
  }
  SECTION("a standalone daemon") {
    auto standalone = daemon::master(dir, "standalone", {}, true);
    auto api = standalone->api();
    killed_with(api, *standalone);
  }
}

TEST_CASE("kill -9 of the master with 300 queued tasks and no worker: after "
          "a restart on the same data all 300 succeed",
          "[integration][failure][durability]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  auto api = master->api();
  std::vector<uint64_t> ids;
  for (int b = 0; b < 3; ++b) {
    json tasks = json::array();
    for (int i = 0; i < 100; ++i)
      tasks.push_back(json{{"command", "echo task-" + std::to_string(b * 100 + i)},
                           {"priority", i % 2 == 0 ? "HIGH" : "LOW"}});
    auto batch = submit_batch(api, tasks);
    ids.insert(ids.end(), batch.begin(), batch.end());
  }
  // Every 201 above means committed: kill without warning.
  master->proc().signal(SIGKILL);
  REQUIRE(master->proc().wait(10s));
  auto ports = same_ports(*master);
  auto restart_begin = std::chrono::steady_clock::now();
  master = daemon::master(dir, "master", ports);
  WARN("master restart to ready with 300 queued tasks: "
       << std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - restart_begin)
            .count()
       << " ms");
  CHECK(master->log_contains("restored 300 tasks (300 queued"));
  CHECK(api.get("/stats").body["queued"] == 300);
  // The metrics know too, before anything else happens.
  CHECK(api.metrics_when("taskmaster_task_queue_length", 300, 2s)
          ["taskmaster_task_queue_length"]
        == 300);
  auto worker = daemon::worker(dir, master->cluster_addr(), "late", 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto t = api.wait_final(ids[i]);
    REQUIRE(t["status"] == "SUCCEEDED");
    CHECK(t["stdout"] == "task-" + std::to_string(i) + "\n");
  }
  // New ids continue after the restored ones.
  auto next = api.post("/tasks", json{{"command", "true"}});
  CHECK(next.body["id"].get<uint64_t>() > ids.back());
}

TEST_CASE("kill -9 of the master while tasks run: after a restart their "
          "results are not lost",
          "[integration][failure][durability]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", fast_liveness);
  auto worker = steady_worker(dir, *master, 4);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  json tasks = json::array();
  for (int i = 0; i < 4; ++i)
    tasks.push_back(json{{"command", "sleep 1.5; echo result-" + std::to_string(i)}});
  auto ids = submit_batch(api, tasks);
  REQUIRE(eventually([&] { return api.get("/stats").body["running"] == 4; }));
  auto ports = same_ports(*master);
  master->proc().signal(SIGKILL);
  REQUIRE(master->proc().wait(10s));
  // The tasks finish while the master is down; the worker holds the results.
  std::this_thread::sleep_for(2s);
  master = daemon::master(dir, "master",
                          with(ports, fast_liveness));
  for (size_t i = 0; i < ids.size(); ++i) {
    auto t = api.wait_final(ids[i]);
    CHECK(t["status"] == "SUCCEEDED");
    CHECK(t["stdout"] == "result-" + std::to_string(i) + "\n");
    CHECK(t["attempts"].size() == 1);
  }
  CHECK(worker->log_contains("registered with the master"));
}

TEST_CASE("kill -9 of the master before a dispatch is journaled: the task "
          "runs once, on the worker that has it",
          "[integration][failure][durability]") {
  temp_dir dir;
  // State changes wait 10 s for company: the task's RUNNING state is not on
  // disk when the master dies (new tasks still commit at once).
  auto master = daemon::master(
    dir, "master", with({"--journal-group-delay=10s"}, fast_liveness));
  auto worker_args = with({"--reconnect-backoff-max=300ms"}, fast_liveness);
  std::map<std::string, std::unique_ptr<taskmaster::test::daemon>> workers;
  for (const auto* name : {"w-a", "w-b"})
    workers[name] = daemon::worker(dir, master->cluster_addr(), name, 1,
                                   worker_args);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 2));
  auto runs = dir / "runs";
  auto id = submit_batch(
    api, json::array({json{{"command", "echo run >> " + runs + "; sleep 2"}}}))[0];
  REQUIRE(eventually([&] { return read_file(runs) == "run\n"; }));
  auto holder = api.get("/tasks/" + std::to_string(id)).body["worker_id"]
                  .get<std::string>();
  REQUIRE(workers.count(holder) == 1);
  // The worker that runs it comes back last: before, the restarted master
  // found the task QUEUED and gave it to the other one at once.
  workers[holder]->proc().signal(SIGSTOP);
  auto ports = same_ports(*master);
  master->proc().signal(SIGKILL);
  REQUIRE(master->proc().wait(10s));
  // Restarted masters wait up to 6 s + 5 s (heartbeat timeout plus the
  // longest reconnect backoff).
  auto restarted = with(ports, {"--heartbeat-interval=250ms",
                                "--heartbeat-timeout=6s"});
  auto check_held = [&] {
    REQUIRE(wait_for_workers(api, 1));
    auto t = api.get("/tasks/" + std::to_string(id)).body;
    CHECK(t["status"] == "QUEUED");
    CHECK(t["reason"].get<std::string>().rfind(
            "the master restarted: tasks queued before it wait until worker "
              + holder + " is back, or ",
            0)
          == 0);
    auto wait = api.get("/stats").body["restart_wait"];
    CHECK(wait["workers"] == json::array({holder}));
    CHECK(wait["until"].is_string());
  };
  master = daemon::master(dir, "master", restarted);
  CHECK(master->log_contains("may run attempts an earlier master sent"));
  check_held();
  // A task submitted meanwhile runs at once, on the worker that is back.
  auto fresh = submit_batch(api, json::array({json{{"command", "echo new"}}}))[0];
  auto fresh_done = api.wait_final(fresh, 5s);
  CHECK(fresh_done["status"] == "SUCCEEDED");
  CHECK(fresh_done["worker_id"] != holder);
  CHECK(api.get("/tasks/" + std::to_string(id)).body["status"] == "QUEUED");
  // Stopped cleanly while still waiting: its successor waits in its turn.
  master->proc().signal(SIGTERM);
  REQUIRE(master->proc().wait(30s));
  master = daemon::master(dir, "master", restarted);
  check_held();
  // watch says why nothing runs, and when that ends, right after the
  // worker's return (not at the next stats tick), whatever the topics.
  process watch{{taskmasterd_path(), "watch", "--topics=tasks,workers",
                 "--server=" + master->http_url()},
                dir / "watch.out", dir / "watch.err"};
  REQUIRE(eventually([&] {
    return read_file(dir / "watch.out")
             .find("the master restarted: tasks queued before it wait until "
                   "worker " + holder + " is back")
           != std::string::npos;
  }));
  workers[holder]->proc().signal(SIGCONT);
  CHECK(eventually([&] {
    return read_file(dir / "watch.out")
             .find("the wait after the master's restart is over: dispatching")
           != std::string::npos;
  }));
  watch.signal(SIGTERM);
  {
    auto said = read_file(dir / "watch.out");
    auto joined = said.find("worker " + holder + " joined");
    auto over = said.find("the wait after the master's restart is over");
    REQUIRE(joined != std::string::npos);
    // Both lines carry their time (HH:MM:SS.mmm): the same moment, give or
    // take the scheduling of two messages, not a stats tick (1 s) apart.
    auto ms_of_line = [&](size_t at) {
      auto start = said.rfind('\n', at);
      start = start == std::string::npos ? 0 : start + 1;
      auto clock = said.substr(start, 12);
      return (std::stoi(clock.substr(0, 2)) * 3600 + std::stoi(clock.substr(3, 2)) * 60
              + std::stoi(clock.substr(6, 2))) * 1000 + std::stoi(clock.substr(9, 3));
    };
    CHECK(joined < over);
    CHECK(ms_of_line(over) - ms_of_line(joined) < 500);
  }
  auto t = api.wait_final(id);
  CHECK(t["status"] == "SUCCEEDED");
  CHECK(t["worker_id"] == holder);
  CHECK(t["attempts"].size() == 1);
  CHECK(read_file(runs) == "run\n");
  CHECK(api.get("/stats").body["restart_wait"].is_null());
  // With every worker back, a clean stop leaves nothing to wait for: the
  // next master dispatches at once, even with a worker away.
  master->proc().signal(SIGTERM);
  REQUIRE(master->proc().wait(30s));
  workers[holder]->proc().signal(SIGSTOP);
  master = daemon::master(dir, "master", restarted);
  REQUIRE(wait_for_workers(api, 1));
  auto next = submit_batch(api, json::array({json{{"command", "true"}}}))[0];
  CHECK(eventually(
    [&] {
      return api.get("/tasks/" + std::to_string(next)).body["status"]
             == "SUCCEEDED";
    },
    4s));
  workers[holder]->proc().signal(SIGCONT);
}

TEST_CASE("an answered cancellation survives a kill -9 of the master right "
          "after it",
          "[integration][failure][durability]") {
  temp_dir dir;
  // State changes wait 10 s for company: only a cancellation that commits
  // before it answers is on disk when the master dies.
  auto master = daemon::master(dir, "master", {"--journal-group-delay=10s"});
  auto api = master->api();
  auto id = submit_batch(api, json::array({json{{"command", "true"}}}))[0];
  auto path = "/tasks/" + std::to_string(id);
  REQUIRE(api.post(path + "/cancel", "").status == 200);
  auto ports = same_ports(*master);
  master->proc().signal(SIGKILL);
  REQUIRE(master->proc().wait(10s));
  master = daemon::master(dir, "master", ports);
  CHECK(api.get(path).body["status"] == "CANCELLED");
}

TEST_CASE("a standalone daemon answers a long poll with an end that is on "
          "disk: a kill -9 right after does not undo it",
          "[integration][failure][durability]") {
  temp_dir dir;
  // State changes wait 10 s for company: only an end committed before the
  // answer is on disk when the daemon dies (with its worker and the result
  // the worker kept until then).
  auto extra = std::vector<std::string>{"--journal-group-delay=10s"};
  auto master = daemon::master(dir, "standalone", extra, true);
  auto api = master->api();
  auto ids = submit_batch(api, json::array({json{{"command", "echo first"}},
                                            json{{"command", "echo second"}}}));
  // One waited for while it runs, one asked for once it has ended.
  auto first = api.get("/tasks/" + std::to_string(ids[0]) + "?wait=20").body;
  REQUIRE(first["status"] == "SUCCEEDED");
  REQUIRE(eventually([&] {
    return api.get("/tasks/" + std::to_string(ids[1])).body["status"]
           == "SUCCEEDED";
  }));
  auto second = api.get("/tasks/" + std::to_string(ids[1]) + "?wait=20").body;
  REQUIRE(second["status"] == "SUCCEEDED");
  auto ports = same_ports(*master);
  master->proc().signal(SIGKILL);
  REQUIRE(master->proc().wait(10s));
  master = daemon::master(dir, "standalone", with(ports, extra), true);
  for (auto [id, out] : {std::pair{ids[0], "first\n"}, std::pair{ids[1], "second\n"}}) {
    auto t = api.get("/tasks/" + std::to_string(id)).body;
    CHECK(t["status"] == "SUCCEEDED");
    CHECK(t["stdout"] == out);
    CHECK(t["attempts"].size() == 1);
  }
}

TEST_CASE("a master restart while tasks run: the worker keeps running them "
          "and reports after it reconnects",
          "[integration][failure][durability]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", fast_liveness);
  auto worker = steady_worker(dir, *master, 2);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  auto id = submit_batch(api, json::array({json{{"command", "sleep 3; echo long"}}}))[0];
  REQUIRE(eventually([&] { return api.get("/stats").body["running"] == 1; }));
  auto ports = same_ports(*master);
  master->proc().signal(SIGKILL);
  REQUIRE(master->proc().wait(10s));
  master = daemon::master(dir, "master",
                          with(ports, fast_liveness));
  // The worker comes back with the attempt still running and keeps it.
  REQUIRE(wait_for_workers(api, 1));
  CHECK(api.get("/tasks/" + std::to_string(id)).body["status"] == "RUNNING");
  auto t = api.wait_final(id);
  CHECK(t["status"] == "SUCCEEDED");
  CHECK(t["stdout"] == "long\n");
  CHECK(t["attempts"].size() == 1);
}

TEST_CASE("a frozen worker (SIGSTOP) is detected, its tasks requeued, and its "
          "late result ignored after SIGCONT",
          "[integration][failure]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", fast_liveness);
  auto frozen = daemon::worker(dir, master->cluster_addr(), "frozen", 1,
                               with({"--labels=only=frozen"}, fast_liveness));
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  // Fast tasks first, so the worker also takes one ahead of its slot.
  for (auto warm : submit_batch(api, json::array({json{{"command", "true"}},
                                                  json{{"command", "true"}},
                                                  json{{"command", "true"}}})))
    REQUIRE(api.wait_final(warm)["status"] == "SUCCEEDED");
  auto marker = dir / "ran-on";
  auto held_runs = dir / "held-runs";
  auto ids = submit_batch(
    api, json::array({json{{"command", "echo $TASKMASTER_ATTEMPT >> " + marker
                                         + "; sleep 2; echo attempt-$TASKMASTER_ATTEMPT"}},
                      json{{"command", "echo run >> " + held_runs},
                           {"labels", {{"only", "frozen"}}}}}));
  auto id = ids[0];
  REQUIRE(eventually([&] { return api.get("/stats").body["running"] == 2; }));
  REQUIRE(api.get("/workers").body["workers"][0]["prefetched"] == 1);
  // The first one started on the worker, so the assignment message that
  // carried both arrived before the freeze.
  REQUIRE(eventually([&] { return !read_file(marker).empty(); }));
  auto healthy = daemon::worker(dir, master->cluster_addr(), "healthy", 1,
                                fast_liveness);
  REQUIRE(wait_for_workers(api, 2));
  auto stopped_at = std::chrono::steady_clock::now();
  frozen->proc().signal(SIGSTOP);
  REQUIRE(eventually([&] { return worker_state(api, "frozen") == "LOST"; },
                     10s));
  auto detected = std::chrono::steady_clock::now() - stopped_at;
  WARN("SIGSTOP of a worker detected after "
       << std::chrono::duration_cast<std::chrono::milliseconds>(detected).count()
       << " ms (heartbeat timeout 1500 ms)");
  CHECK(detected < 4s);
  auto t = api.wait_final(id);
  auto requeued = std::chrono::steady_clock::now() - stopped_at;
  WARN("its task finished elsewhere " << std::chrono::duration_cast<std::chrono::milliseconds>(requeued).count()
                                      << " ms after the SIGSTOP");
  CHECK(t["status"] == "SUCCEEDED");
  CHECK(t["worker_id"] == "healthy");
  CHECK(t["stdout"] == "attempt-2\n");
  frozen->proc().signal(SIGCONT);
  // The frozen worker wakes up, comes back, and its attempt 1 is killed or
  // ignored: the task keeps its one result.
  REQUIRE(wait_for_workers(api, 2, 15s));
  std::this_thread::sleep_for(2500ms);
  auto after = api.get("/tasks/" + std::to_string(id)).body;
  CHECK(after["status"] == "SUCCEEDED");
  CHECK(after["stdout"] == "attempt-2\n");
  CHECK(after["attempts"].size() == 2);
  CHECK(after["attempts"][1]["worker_id"] == "healthy");
  // The log says the late attempt's result (and output) went nowhere.
  CHECK(master->log_contains(
    "worker frozen: the result of task " + std::to_string(id)
    + " attempt 1 is dropped: the attempt was given up (LOST: worker frozen "
      "lost"));
  CHECK(api.metrics_when("taskmaster_tasks_completed_total", 5)["taskmaster_tasks_completed_total"] == 5);
  // The task it held unstarted (only it can run it) was requeued when it
  // was lost. When its slot freed after the SIGCONT, the worker handed the
  // stale attempt back instead of starting it (its wait limit had passed
  // long before), and ran the task once, as its second attempt.
  auto held = api.wait_final(ids[1]);
  CHECK(held["status"] == "SUCCEEDED");
  REQUIRE(held["attempts"].size() == 2);
  CHECK(held["attempts"][0]["outcome"] == "LOST");
  CHECK(read_file(held_runs) == "run\n");
}

TEST_CASE("a master stopped (SIGSTOP) for longer than the heartbeat timeout "
          "runs nothing twice: a task that ended meanwhile keeps its result, "
          "one still running is reclaimed",
          "[integration][failure]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", fast_liveness);
  auto worker = steady_worker(dir, *master, 2);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  auto runs = dir / "runs";
  auto ids = submit_batch(
    api, json::array({json{{"command", "echo short >> " + runs + "; sleep 0.5"}},
                      json{{"command", "echo long >> " + runs + "; sleep 4"}}}));
  // Both started on the worker (RUNNING alone is the master's word: a stop
  // right after the dispatch would keep the assignments from going out).
  REQUIRE(eventually([&] {
    auto ran = read_file(runs);
    return std::count(ran.begin(), ran.end(), '\n') == 2;
  }));
  // 3 s stopped, twice the 1.5 s timeout: the worker's side gives up on the
  // connection, and the master finds its own silence on resuming.
  master->proc().signal(SIGSTOP);
  std::this_thread::sleep_for(3s);
  master->proc().signal(SIGCONT);
  for (auto id : ids) {
    auto t = api.wait_final(id);
    CHECK(t["status"] == "SUCCEEDED");
    // Before: both were LOST on resuming and ran again.
    CHECK(t["attempts"].size() == 1);
  }
  auto ran = read_file(runs);
  CHECK((ran == "short\nlong\n" || ran == "long\nshort\n"));
  CHECK(master->log().find("the master did not run for") != std::string::npos);
}

TEST_CASE("a timeout ends the task TIMED_OUT and leaves no process behind",
          "[integration][timeout]") {
  temp_dir dir;
  auto master = daemon::master(dir, "standalone", {"--kill-grace=1s"}, true);
  auto api = master->api();
  auto pids = dir / "pids";
  auto id = submit_batch(
    api, json::array({json{{"command", "sleep 30 & echo $! >> " + pids
                                         + "; echo $$ >> " + pids
                                         + "; sleep 30"},
                           {"timeout_seconds", 1}}}))[0];
  auto t = api.wait_final(id, 20s);
  CHECK(t["status"] == "TIMED_OUT");
  CHECK(t["reason"] == "timed out after 1 s");
  CHECK(ms_between(t["started_at"], t["finished_at"]) < 3000);
  auto started = read_pids(pids);
  REQUIRE(started.size() == 2);
  CHECK(eventually([&] {
    for (auto pid : started)
      if (pid_alive(pid))
        return false;
    return true;
  }, 3s));
  CHECK(api.metrics_when("taskmaster_tasks_timed_out_total", 1)["taskmaster_tasks_timed_out_total"] == 1);
}

TEST_CASE("cancel kills a running task within a second", "[integration][cancel]") {
  temp_dir dir;
  auto master = daemon::master(dir, "standalone", {}, true);
  auto api = master->api();
  auto echoed = dir / "echoed";
  auto id = submit_batch(api, json::array({json{
                                 {"command", "echo before the cancel; touch "
                                               + echoed + "; sleep 60"}}}))[0];
  // The echo is done (RUNNING alone would say only that it was sent).
  REQUIRE(eventually([&] { return std::ifstream{echoed}.good(); }));
  // A client waiting for the task to end (as submit --wait does).
  auto waiting = std::async(std::launch::async, [&] {
    return api.get("/tasks/" + std::to_string(id) + "?wait=30");
  });
  std::this_thread::sleep_for(300ms); // for its poll to reach the master
  auto start = std::chrono::steady_clock::now();
  auto c = api.post("/tasks/" + std::to_string(id) + "/cancel", "");
  CHECK(c.status == 200);
  // It hears of the end with the output the killed process wrote.
  auto heard = waiting.get().body;
  CHECK(heard["status"] == "CANCELLED");
  CHECK(heard["stdout"] == "before the cancel\n");
  REQUIRE(eventually([&] {
    return api.get("/stats").body["slots_used"] == 0;
  }));
  auto took = std::chrono::steady_clock::now() - start;
  WARN("cancel to process gone: "
       << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
       << " ms");
  CHECK(took < 1s);
  CHECK(api.post("/tasks/" + std::to_string(id) + "/cancel", "").status == 200);
  auto t = api.get("/tasks/" + std::to_string(id)).body;
  CHECK(t["status"] == "CANCELLED");
  CHECK(t["attempts"][0]["outcome"] == "CANCELLED");
  // What it wrote before the cancel is kept, as for a timeout.
  CHECK(t["stdout"] == "before the cancel\n");
  for (const char* cmd : {"true", "false"}) {
    auto done = submit_batch(api, json::array({json{{"command", cmd}}}))[0];
    api.wait_final(done);
    CHECK(api.post("/tasks/" + std::to_string(done) + "/cancel", "").status
          == 409);
  }
  auto timed = submit_batch(api, json::array({json{{"command", "sleep 5"},
                                                   {"timeout_seconds", 1}}}))[0];
  CHECK(api.wait_final(timed)["status"] == "TIMED_OUT");
  CHECK(api.post("/tasks/" + std::to_string(timed) + "/cancel", "").status
        == 409);
}

TEST_CASE("a command that fails twice succeeds on its third attempt, with the "
          "backoff visible in the attempt times",
          "[integration][retry]") {
  temp_dir dir;
  auto master = daemon::master(dir, "standalone", {}, true);
  auto api = master->api();
  auto counter = dir / "counter";
  auto command = "n=$(cat " + counter + " 2>/dev/null || echo 0); n=$((n+1)); "
                 "echo $n > " + counter + "; echo try-$n; [ $n -ge 3 ]";
  auto id = submit_batch(api, json::array({json{{"command", command},
                                                {"max_retries", 3},
                                                {"retry_backoff_seconds", 0.4},
                                                {"retry_backoff_max_seconds", 5}}}))[0];
  auto t = api.wait_final(id);
  CHECK(t["status"] == "SUCCEEDED");
  CHECK(t["stdout"] == "try-3\n");
  REQUIRE(t["attempts"].size() == 3);
  CHECK(t["attempts"][0]["outcome"] == "FAILED");
  CHECK(t["attempts"][0]["exit_code"] == 1);
  CHECK(t["attempts"][1]["outcome"] == "FAILED");
  CHECK(t["attempts"][2]["outcome"] == "SUCCEEDED");
  // Equal jitter: the first retry waits 200-400 ms, the second 400-800 ms.
  auto gap1 = ms_between(t["attempts"][0]["finished_at"], t["attempts"][1]["started_at"]);
  auto gap2 = ms_between(t["attempts"][1]["finished_at"], t["attempts"][2]["started_at"]);
  WARN("retry gaps: " << gap1 << " ms, " << gap2 << " ms");
  CHECK(gap1 >= 190);
  CHECK(gap1 < 1000);
  CHECK(gap2 >= 390);
  CHECK(gap2 < 1400);
  CHECK(api.metrics_when("taskmaster_task_retries_total", 2)["taskmaster_task_retries_total"] == 2);
}

TEST_CASE("the queue bound answers 429 with Retry-After; an idempotency key "
          "survives a restart",
          "[integration][backpressure]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", {"--max-queued=50"});
  auto api = master->api();
  json fifty = json::array();
  for (int i = 0; i < 50; ++i)
    fifty.push_back(json{{"command", "true"}});
  submit_batch(api, fifty);
  auto refused = api.post("/tasks", json{{"command", "one too many"}});
  CHECK(refused.status == 429);
  CHECK(refused.retry_after == "1");
  CHECK(refused.body["error"]["code"] == "queue_full");
  // The client exits 3 on it, as for anything that may work a moment later.
  CHECK(run_taskmasterd(dir, {"submit", "--cmd=one too many",
                              "--server=" + master->http_url()},
                        "full")
        == 3);
  CHECK(read_file(dir / "full.err").find("(429)") != std::string::npos);
  CHECK(api.get("/stats").body["queued"] == 50);
  // The bound counts queued tasks only; a deduplicated resubmission is fine.
  master->proc().stop(SIGTERM, 15s);
  master = daemon::master(dir, "master2");
  api = master->api();
  // Every field a client sets comes back from the journal as it was sent, or
  // the identical resubmission below would be refused as a conflict.
  json nightly = {{"command", "backup"},         {"idempotency_key", "nightly-1"},
                  {"name", "backup"},            {"description", "nightly"},
                  {"priority", "HIGH"},          {"timeout_seconds", 600},
                  {"max_retries", 2},            {"retry_backoff_seconds", 1.5},
                  {"retry_backoff_max_seconds", 90},
                  {"labels", {{"zone", "b"}}},   {"env", {{"DEST", "/mnt"}}},
                  {"delay_seconds", 3600}};
  auto first = api.post("/tasks", nightly);
  REQUIRE(first.status == 201);
  auto http_port = master->http_port();
  master->proc().signal(SIGKILL);
  master->proc().wait(10s);
  master = daemon::master(dir, "master2",
                          {"--http-port=" + std::to_string(http_port)});
  auto again = api.post("/tasks", nightly);
  CHECK(again.status == 200);
  CHECK(again.body["id"] == first.body["id"]);
  auto other = nightly;
  other["env"]["DEST"] = "/backup";
  auto conflict = api.post("/tasks", other);
  CHECK(conflict.status == 409);
  CHECK(conflict.body["error"]["message"].get<std::string>().find(
          "with a different env")
        != std::string::npos);
}

TEST_CASE("a delayed task stays queued until its time", "[integration][delay]") {
  temp_dir dir;
  auto master = daemon::master(dir, "standalone", {}, true);
  auto api = master->api();
  auto a = api.post("/tasks", json{{"command", "true"}, {"delay_seconds", 1.5}});
  REQUIRE(a.status == 201);
  auto id = a.body["id"].get<uint64_t>();
  auto t = api.get("/tasks/" + std::to_string(id)).body;
  CHECK(t["status"] == "QUEUED");
  CHECK(t["reason"].get<std::string>().rfind("scheduled to start at", 0) == 0);
  auto done = api.wait_final(id);
  CHECK(done["status"] == "SUCCEEDED");
  auto wait = ms_between(done["created_at"], done["started_at"]);
  CHECK(wait >= 1400);
  CHECK(wait < 3000);
}

TEST_CASE("SIGTERM on a worker lets running tasks finish, hands back the rest "
          "after the grace, and exits 0",
          "[integration][shutdown]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  auto api = master->api();
  auto quick = daemon::worker(dir, master->cluster_addr(), "quick", 1,
                              {"--shutdown-grace=10s"});
  REQUIRE(wait_for_workers(api, 1));
  // Each task marks its start: RUNNING in the master can precede the
  // assignment's arrival at the worker, and a worker that is already
  // stopping refuses it (handed back unstarted, as it should).
  auto started = [&](const std::string& name) {
    return eventually([&] { return std::ifstream{dir / name}.good(); });
  };
  auto short_id = submit_batch(
    api, json::array({json{{"command", "touch " + (dir / "short-started")
                                         + "; sleep 1; echo finished"}}}))[0];
  REQUIRE(started("short-started"));
  CHECK(quick->proc().stop(SIGTERM, 20s) == 0);
  auto t = api.get("/tasks/" + std::to_string(short_id)).body;
  CHECK(t["status"] == "SUCCEEDED");
  CHECK(t["stdout"] == "finished\n");

  auto slow = daemon::worker(dir, master->cluster_addr(), "slow", 1,
                             {"--shutdown-grace=500ms"});
  REQUIRE(eventually([&] { return worker_state(api, "slow") == "UP"; }));
  auto long_id = submit_batch(
    api, json::array({json{{"command", "touch " + (dir / "long-started")
                                         + "; sleep 30"}}}))[0];
  REQUIRE(started("long-started"));
  auto start = std::chrono::steady_clock::now();
  CHECK(slow->proc().stop(SIGTERM, 20s) == 0);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  // The hand-back comes at the end of the grace, not at the next heartbeat
  // (1 s) after it: the log's times, from "shutting down" to "grace over".
  auto log = slow->log();
  auto ms_at = [&](const std::string& line_text) -> int64_t {
    auto at = log.find(line_text);
    REQUIRE(at != std::string::npos);
    auto line_start = log.rfind('\n', at);
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    return *taskmaster::core::parse_rfc3339(
      log.substr(line_start, log.find(' ', line_start) - line_start));
  };
  auto grace_taken = ms_at("shutdown grace over") - ms_at("shutting down: taking");
  WARN("shutdown grace of 500 ms taken: " << grace_taken << " ms");
  CHECK(grace_taken >= 500);
  CHECK(grace_taken < 900);
  auto back = api.get("/tasks/" + std::to_string(long_id)).body;
  CHECK(back["status"] == "QUEUED");
  REQUIRE(back["attempts"].size() == 1);
  CHECK(back["attempts"][0]["outcome"] == "RETURNED");
  CHECK(worker_state(api, "slow") == "LEFT");
  // SIGTERM on the master: stops accepting, flushes, exits 0; the handed
  // back task is still there after the restart.
  CHECK(master->proc().stop(SIGTERM, 20s) == 0);
  master = daemon::master(dir, "master");
  CHECK(master->api().get("/tasks/" + std::to_string(long_id)).body["status"]
        == "QUEUED");
}

TEST_CASE("submit --wait outlives a master restart, and gives up after "
          "--wait-retry when the master stays away",
          "[integration][client][durability]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", fast_liveness);
  auto worker = steady_worker(dir, *master, 2);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  auto server = "--server=" + master->http_url();
  process waiting{{taskmasterd_path(), "submit", "--cmd=sleep 3; echo survived",
                   "--wait", server},
                  dir / "wait.out",
                  dir / "wait.err"};
  REQUIRE(eventually([&] { return api.get("/stats").body["running"] == 1; }));
  auto ports = same_ports(*master);
  master->proc().signal(SIGKILL);
  REQUIRE(master->proc().wait(10s));
  // The client finds the master gone while it is down.
  REQUIRE(eventually([&] {
    return read_file(dir / "wait.err").find("lost the TaskMaster server")
           != std::string::npos;
  }));
  master = daemon::master(dir, "master", with(ports, fast_liveness));
  // Before: exit 3 at once, without the task's end.
  CHECK(waiting.wait(30s).value_or(-1) == 0);
  CHECK(read_file(dir / "wait.out") == "survived\n");
  auto said = read_file(dir / "wait.err");
  CHECK(said.find("the server is back; still waiting for task 1")
        != std::string::npos);
  // One line for the loss, not the unreachable-server error of every try.
  CHECK(said.find("cannot reach") == std::string::npos);

  // A master that stays away: exit 3 after --wait-retry, saying the task is
  // kept; with --wait-retry=0, at once.
  auto id = std::to_string(
    submit_batch(api, json::array({json{{"command", "sleep 60"}}}))[0]);
  process gone{{taskmasterd_path(), "task", id, "--wait", "--wait-retry=1",
                server},
               dir / "gone.out",
               dir / "gone.err"};
  std::this_thread::sleep_for(1s); // polling
  REQUIRE(master->proc().stop(SIGTERM, 20s) == 0);
  CHECK(gone.wait(30s).value_or(-1) == 3);
  CHECK(read_file(dir / "gone.err").find("gave up waiting for task " + id
                                         + " after 1 s")
        != std::string::npos);
  auto run = [&](std::vector<std::string> args, const std::string& name) {
    return run_taskmasterd(dir, std::move(args), name);
  };
  CHECK(run({"task", id, "--wait", "--wait-retry=0", server}, "at-once") == 3);
  CHECK(read_file(dir / "at-once.err").find("cannot reach the TaskMaster")
        != std::string::npos);
  // A server this client never reached is a wrong address: no retrying.
  auto start = std::chrono::steady_clock::now();
  CHECK(run({"task", id, "--wait", "--server=http://127.0.0.1:9"}, "wrong")
        == 3);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK(read_file(dir / "wrong.err").find("lost") == std::string::npos);
  CHECK(run({"task", id, "--wait-retry=5", server}, "alone") == 2);
  CHECK(read_file(dir / "alone.err")
        == "taskmasterd: --wait-retry goes with --wait\n");

  // A master that comes back without the task (another data directory):
  // its 404 is the API's answer, exit 1, not "unreachable".
  master = daemon::master(dir, "master", with(ports, fast_liveness));
  process orphan{{taskmasterd_path(), "task", id, "--wait", server},
                 dir / "orphan.out",
                 dir / "orphan.err"};
  std::this_thread::sleep_for(1s); // polling
  master->proc().signal(SIGKILL);
  REQUIRE(master->proc().wait(10s));
  master = daemon::master(dir, "elsewhere", with(ports, fast_liveness));
  CHECK(orphan.wait(30s).value_or(-1) == 1);
  CHECK(read_file(dir / "orphan.err").find("no task with id '" + id + "'")
        != std::string::npos);
}

TEST_CASE("a submission whose answer is lost runs once: submit --wait "
          "repeats it under the client's own key, plain submit names the key "
          "that makes a repeat safe",
          "[integration][client][durability]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  auto worker = steady_worker(dir, *master, 1);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  answer_losing_proxy proxy{master->http_port()};
  auto server = "--server=http://127.0.0.1:" + std::to_string(proxy.port());
  auto run = [&](std::vector<std::string> args, const std::string& name) {
    return run_taskmasterd(dir, std::move(args), name);
  };
  // --wait: the answer to the POST is lost; the client submits again
  // under the same key, gets the task it already made, and waits for it.
  proxy.lose_next(1);
  CHECK(run({"submit", "--cmd=echo once", "--wait", server}, "wait") == 0);
  CHECK(proxy.spoiled() == 1);
  CHECK(read_file(dir / "wait.out") == "once\n");
  CHECK(read_file(dir / "wait.err").find("submitting again under the same "
                                         "idempotency key")
        != std::string::npos);
  CHECK(tasks_with_command(api, "echo once") == 1);
  // Without --wait: exit 3, saying the task may have been accepted, with
  // the key under which a repeat cannot run it twice.
  proxy.lose_next(1);
  CHECK(run({"submit", "--cmd=echo maybe", server}, "plain") == 3);
  auto said = read_file(dir / "plain.err");
  auto at = said.find("--idempotency-key=");
  REQUIRE(at != std::string::npos);
  CHECK(said.find("may or may not have been accepted") != std::string::npos);
  auto key = said.substr(at + 18, said.find(' ', at) - at - 18);
  CHECK(key.rfind("taskmasterd-submit-", 0) == 0);
  REQUIRE(eventually([&] { return tasks_with_command(api, "echo maybe") == 1; }));
  CHECK(run({"submit", "--cmd=echo maybe", "--idempotency-key=" + key, server},
            "again")
        == 0);
  CHECK(read_file(dir / "again.out").find("already submitted as task")
        != std::string::npos);
  CHECK(tasks_with_command(api, "echo maybe") == 1);
  // A 503 from a gateway whose scheduler answered too late (the master
  // admitted the task all the same): the same, not "the API refused".
  proxy.replace_next(1);
  CHECK(run({"submit", "--cmd=echo late", "--wait", server}, "late-wait") == 0);
  CHECK(read_file(dir / "late-wait.out") == "late\n");
  CHECK(tasks_with_command(api, "echo late") == 1);
  proxy.replace_next(1);
  CHECK(run({"submit", "--cmd=echo late too", server}, "late-plain") == 3);
  CHECK(read_file(dir / "late-plain.err")
          .find("(HTTP 503: the scheduler did not answer): the task may or "
                "may not have been accepted; submitting again with "
                "--idempotency-key=taskmasterd-submit-")
        != std::string::npos);
  REQUIRE(eventually([&] { return tasks_with_command(api, "echo late too") == 1; }));
  // A 503 saying the journal refused the task settles it: no "may or may
  // not", no retry (the proxy passed the request on: the master did take
  // it, which a real journal failure would not have).
  proxy.replace_next(1, "journal_failed");
  CHECK(run({"submit", "--cmd=echo refused", "--wait", server}, "refused") == 3);
  CHECK(read_file(dir / "refused.err")
        == "taskmasterd: the journal could not store the task; nothing was "
           "accepted (503)\n");
  CHECK(proxy.spoiled() == 5);
  // Any other command answered 503 exits 3 as well (try again later), not 1
  // as for a refusal; the repeat does what was asked.
  auto queued = submit_batch(api, json::array({json{{"command", "true"},
                                                    {"delay_seconds", 600}}}))[0];
  proxy.replace_next(1);
  CHECK(run({"cancel", std::to_string(queued), server}, "cancel-503") == 3);
  CHECK(read_file(dir / "cancel-503.err").find("the scheduler did not answer (503)")
        != std::string::npos);
  CHECK(run({"cancel", std::to_string(queued), server}, "cancel-again") == 0);
  CHECK(read_file(dir / "cancel-again.out") == "task " + std::to_string(queued)
                                                 + " is CANCELLED\n");
}

TEST_CASE("SIGTERM on a master answers open long polls at once, dispatches "
          "nothing more, and exits 0",
          "[integration][shutdown]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  auto api = master->api();
  // No worker: the task stays QUEUED, and a client waits on it for 60 s.
  auto id = submit_batch(api, json::array({json{{"command", "true"}}}))[0];
  auto poll = std::async(std::launch::async, [&] {
    return api.get("/tasks/" + std::to_string(id) + "?wait=60");
  });
  // Time for the poll to reach the master (a local request, on a loaded
  // machine).
  std::this_thread::sleep_for(1s);
  auto start = std::chrono::steady_clock::now();
  // Before: the master's exit waited for the poll (up to 60 s), and it still
  // handed queued tasks to workers meanwhile.
  CHECK(master->proc().stop(SIGTERM, 20s) == 0);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  REQUIRE(poll.wait_for(5s) == std::future_status::ready);
  auto answer = poll.get();
  CHECK(answer.status == 200);
  CHECK(answer.body["status"] == "QUEUED");
  master = daemon::master(dir, "master");
  CHECK(master->api().get("/tasks/" + std::to_string(id)).body["status"]
        == "QUEUED");
}

TEST_CASE("a master whose journal failed refuses submissions and exits 1 "
          "on SIGTERM; what it accepted before is kept",
          "[integration][shutdown][journal]") {
  temp_dir dir;
  // Files this master writes may not grow past 400 KB (a full disk): its
  // WAL reaches that after some hundred submissions. The master inherits
  // the cap while it is started.
  std::unique_ptr<taskmaster::test::daemon> master;
  {
    file_size_cap cap{400 * 1024};
    master = daemon::master(dir, "master");
  }
  auto api = master->api();
  std::vector<uint64_t> accepted;
  int status = 0;
  // One task at a time with a long description: each commit adds pages.
  for (int i = 0; i < 2000 && status != 503; ++i) {
    auto r = api.post("/tasks", json{{"command", "true"},
                                     {"description", std::string(2000, 'd')}});
    status = r.status;
    if (status == 201)
      accepted.push_back(r.body["id"].get<uint64_t>());
  }
  REQUIRE(status == 503);
  CHECK_FALSE(accepted.empty());
  CHECK(api.get("/healthz").status == 503);
  CHECK(master->proc().stop(SIGTERM, 20s) == 1);
  CHECK(master->log_contains("the journal had failed"));
  // Restarted with room to write, it has every task it answered 201 for.
  master = daemon::master(dir, "master");
  auto again = master->api();
  for (auto id : accepted)
    CHECK(again.get("/tasks/" + std::to_string(id)).status == 200);
}

TEST_CASE("a worker stopped while its master is down keeps its finished "
          "results until the master is back",
          "[integration][shutdown][durability]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", fast_liveness);
  auto worker = daemon::worker(dir, master->cluster_addr(), "holder", 1,
                               with({"--reconnect-backoff-max=300ms",
                                     "--shutdown-grace=10s"},
                                    fast_liveness));
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  auto marker = dir / "runs";
  auto gate = dir / "gate";
  // The command ends only once the master is gone (the test opens the gate).
  auto id = submit_batch(
    api, json::array({json{{"command", "echo run >> " + marker
                                         + "; while [ ! -e " + gate
                                         + " ]; do sleep 0.05; done; echo done"}}}))[0];
  REQUIRE(eventually([&] { return api.get("/stats").body["running"] == 1; }));
  auto ports = same_ports(*master);
  CHECK(master->proc().stop(SIGTERM, 20s) == 0);
  std::ofstream{gate} << "open\n";
  // Then the worker is told to stop. It used to leave with the result, and
  // the command ran again.
  worker->proc().signal(SIGTERM);
  REQUIRE(worker->log_contains("holding 1 finished result"));
  CHECK(worker->proc().running());
  master = daemon::master(dir, "master",
                          with(ports, fast_liveness));
  // The worker hands the result over and leaves.
  CHECK(worker->proc().wait(20s) == 0);
  auto t = master->api().wait_final(id);
  CHECK(t["status"] == "SUCCEEDED");
  CHECK(t["stdout"] == "done\n");
  CHECK(t["attempts"].size() == 1);
  std::ifstream runs{marker};
  std::string all{std::istreambuf_iterator<char>(runs), {}};
  CHECK(all == "run\n");
}
