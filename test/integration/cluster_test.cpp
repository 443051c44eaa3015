#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <thread>

#include <httplib.h>

#include "test/support/cluster.hpp"
#include "test/support/connect.hpp"
#include "test/support/wait.hpp"

using namespace taskmaster::test;
using namespace std::chrono_literals;

namespace {

json echo_task(int i) {
  return json{{"command", "echo out-" + std::to_string(i)},
              {"name", "echo-" + std::to_string(i)}};
}

} // namespace

TEST_CASE("a master and two workers run 200 tasks submitted singly and in "
          "batches",
          "[integration][cluster]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  auto w1 = daemon::worker(dir, master->cluster_addr(), "w1", 2);
  auto w2 = daemon::worker(dir, master->cluster_addr(), "w2", 2);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 2));

  std::vector<uint64_t> ids;
  // 50 single submissions ...
  for (int i = 0; i < 50; ++i) {
    auto a = api.post("/tasks", echo_task(i));
    REQUIRE(a.status == 201);
    ids.push_back(a.body["id"].get<uint64_t>());
  }
  // ... and 150 in three batches of 50.
  for (int b = 0; b < 3; ++b) {
    json batch = json::array();
    for (int i = 0; i < 50; ++i)
      batch.push_back(echo_task(50 + b * 50 + i));
    auto a = api.post("/tasks", batch);
    REQUIRE(a.status == 201);
    REQUIRE(a.body.is_array());
    REQUIRE(a.body.size() == 50);
    for (size_t i = 0; i < 50; ++i) {
      CHECK(a.body[i]["name"] == "echo-" + std::to_string(50 + b * 50 + i));
      ids.push_back(a.body[i]["id"].get<uint64_t>());
    }
  }
  REQUIRE(ids.size() == 200);
  REQUIRE(std::set<uint64_t>(ids.begin(), ids.end()).size() == 200);

  std::map<std::string, int> per_worker;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto t = api.wait_final(ids[i]);
    REQUIRE(t.value("status", "") == "SUCCEEDED");
    CHECK(t["stdout"] == "out-" + std::to_string(i) + "\n");
    CHECK(t["exit_code"] == 0);
    // It ran once. An attempt before that one may have been handed back
    // unstarted, taken back for a slot idling at the end of the queue.
    int runs = 0;
    for (const auto& a : t["attempts"]) {
      if (a["started_at"].is_null())
        CHECK(a["outcome"] == "RETURNED");
      else
        ++runs;
    }
    CHECK(runs == 1);
    ++per_worker[t["worker_id"].get<std::string>()];
  }
  CHECK(per_worker["w1"] > 0);
  CHECK(per_worker["w2"] > 0);
  CHECK(per_worker["w1"] + per_worker["w2"] == 200);

  auto workers = api.get("/workers");
  REQUIRE(workers.status == 200);
  std::set<std::string> listed;
  for (const auto& w : workers.body["workers"]) {
    listed.insert(w["id"].get<std::string>());
    CHECK(w["state"] == "UP");
    CHECK(w["slots"] == 2);
  }
  CHECK(listed == std::set<std::string>{"w1", "w2"});
  CHECK(workers.body["workers"][0]["tasks_finished"].get<int>()
          + workers.body["workers"][1]["tasks_finished"].get<int>()
        == 200);

  auto m = api.metrics_when("taskmaster_tasks_completed_total", 200);
  CHECK(m["taskmaster_tasks_submitted_total"] == 200);
  CHECK(m["taskmaster_tasks_completed_total"] == 200);
  CHECK(m["taskmaster_tasks_failed_total"] == 0);
  CHECK(m["taskmaster_task_queue_length"] == 0);
  CHECK(m["taskmaster_worker_count"] == 2);
  CHECK(m["taskmaster_slots_total"] == 4);
  CHECK(m["taskmaster_task_execution_seconds_count"] == 200);
  CHECK(m["taskmaster_task_queue_wait_seconds_count"] == 200);
  CHECK(m["taskmaster_tasks_by_priority_total{priority=\"MEDIUM\"}"] == 200);

  CHECK(w1->proc().stop(SIGTERM, 15s) == 0);
  CHECK(w2->proc().stop(SIGTERM, 15s) == 0);
  CHECK(master->proc().stop(SIGTERM, 15s) == 0);
}

TEST_CASE("across processes, a CRITICAL task submitted after 100 queued LOW "
          "tasks is the next to start",
          "[integration][priority]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  auto worker = daemon::worker(dir, master->cluster_addr(), "solo", 1);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  // Occupy the only slot until the queue is built.
  auto blocker = api.post("/tasks", json{{"command", "sleep 1"}});
  REQUIRE(blocker.status == 201);
  json low = json::array();
  for (int i = 0; i < 100; ++i)
    low.push_back(json{{"command", "true"}, {"priority", "LOW"}});
  auto lows = api.post("/tasks", low);
  REQUIRE(lows.status == 201);
  auto critical = api.post("/tasks", json{{"command", "true"},
                                          {"priority", "CRITICAL"}});
  REQUIRE(critical.status == 201);
  CHECK(api.get("/tasks/" + critical.body["id"].dump()).body["status"]
        == "QUEUED");
  auto m = api.metrics_when(
    "taskmaster_task_queue_length_by_priority{priority=\"CRITICAL\"}", 1);
  CHECK(m["taskmaster_task_queue_length_by_priority{priority=\"LOW\"}"] == 100);
  CHECK(m["taskmaster_task_queue_length_by_priority{priority=\"CRITICAL\"}"]
        == 1);

  auto crit = api.wait_final(critical.body["id"].get<uint64_t>());
  REQUIRE(crit["status"] == "SUCCEEDED");
  auto first_low = api.wait_final(lows.body[0]["id"].get<uint64_t>());
  REQUIRE(first_low["status"] == "SUCCEEDED");
  // The CRITICAL task started before the oldest LOW task.
  CHECK(crit["attempts"][0]["started_at"].get<std::string>()
        <= first_low["attempts"][0]["started_at"].get<std::string>());
  CHECK(crit["finished_at"].get<std::string>()
        <= first_low["attempts"][0]["started_at"].get<std::string>());
  for (const auto& t : lows.body)
    CHECK(api.wait_final(t["id"].get<uint64_t>())["status"] == "SUCCEEDED");
}

TEST_CASE("a worker started before its master registers once the master is "
          "up",
          "[integration][reconnect]") {
  temp_dir dir;
  // Learn two free ports from a first master, then stop it.
  auto probe = daemon::master(dir, "probe");
  auto http_port = probe->http_port();
  auto cluster = probe->cluster_addr();
  auto cluster_port = probe->cluster_port();
  REQUIRE(probe->proc().stop(SIGTERM, 15s) == 0);
  auto worker = daemon::worker(dir, cluster, "early", 1);
  REQUIRE(worker->log_contains("cannot reach the master"));
  auto master = daemon::master(
    dir, "master",
    {"--http-port=" + std::to_string(http_port),
     "--cluster-port=" + std::to_string(cluster_port)});
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  auto a = api.post("/tasks", json{{"command", "echo late-but-fine"}});
  REQUIRE(a.status == 201);
  CHECK(api.wait_final(a.body["id"].get<uint64_t>())["stdout"]
        == "late-but-fine\n");
  // The master goes away and comes back: the worker reconnects.
  REQUIRE(master->proc().stop(SIGTERM, 15s) == 0);
  master = daemon::master(
    dir, "master",
    {"--http-port=" + std::to_string(http_port),
     "--cluster-port=" + std::to_string(cluster_port)});
  api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  auto b = api.post("/tasks", json{{"command", "echo again"}});
  CHECK(api.wait_final(b.body["id"].get<uint64_t>())["stdout"] == "again\n");
}

TEST_CASE("a task with labels waits for a fitting worker", "[integration]"
          "[labels]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  auto plain = daemon::worker(dir, master->cluster_addr(), "plain", 1);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  auto a = api.post("/tasks", json{{"command", "echo gpu"},
                                   {"labels", {{"gpu", "yes"}}}});
  REQUIRE(a.status == 201);
  auto id = a.body["id"].get<uint64_t>();
  REQUIRE(eventually([&] {
    auto t = api.get("/tasks/" + std::to_string(id)).body;
    return t["status"] == "QUEUED"
           && t["reason"] == "no connected worker has the labels gpu=yes";
  }));
  process watch{{taskmasterd_path(), "watch", "--server=" + master->http_url()},
                dir / "watch.out", dir / "watch.err"};
  REQUIRE(eventually([&] { return !read_file(dir / "watch.out").empty(); }));
  auto gpu = daemon::worker(dir, master->cluster_addr(), "gpu", 1,
                            {"--labels=gpu=yes"});
  auto t = api.wait_final(id);
  CHECK(t["status"] == "SUCCEEDED");
  CHECK(t["worker_id"] == "gpu");
  // The stream tells it in the order it happened: the worker joins, then the
  // task waiting for it starts there.
  auto task_line = "task " + std::to_string(id) + " SUCCEEDED";
  REQUIRE(eventually([&] {
    return read_file(dir / "watch.out").find(task_line) != std::string::npos;
  }));
  auto out = read_file(dir / "watch.out");
  auto joined = out.find("worker gpu joined");
  auto started = out.find("task " + std::to_string(id) + " started on gpu");
  REQUIRE(joined != std::string::npos);
  REQUIRE(started != std::string::npos);
  CHECK(joined < started);
  watch.signal(SIGTERM);
  watch.wait(10s);
}

TEST_CASE("the client submits, waits and reports exit codes",
          "[integration][client]") {
  temp_dir dir;
  auto master = daemon::master(dir, "standalone", {}, true);
  auto server = "--server=" + master->http_url();
  auto run = [&](std::vector<std::string> args, const std::string& name) {
    return run_taskmasterd(dir, std::move(args), name);
  };
  CHECK(run({"submit", "--cmd=echo from-client; exit 3", "--priority=HIGH",
             "--name=cli", "--wait", server},
            "submit")
        == 3);
  CHECK(read_file(dir / "submit.out") == "from-client\n");
  // To a script's stderr --wait adds no line naming the task (on a
  // terminal it does: checked at the end of this test).
  CHECK(read_file(dir / "submit.err").find("submitted as task")
        == std::string::npos);
  CHECK(run({"tasks", server}, "tasks") == 0);
  auto table = read_file(dir / "tasks.out");
  CHECK(table.find("FAILED") != std::string::npos);
  CHECK(table.find("cli") != std::string::npos);
  CHECK(run({"task", "1", "--json", server}, "task") == 0);
  auto task = json::parse(read_file(dir / "task.out"));
  CHECK(task["priority"] == "HIGH");
  CHECK(task["exit_code"] == 3);
  CHECK(run({"workers", server}, "workers") == 0);
  CHECK(read_file(dir / "workers.out").find("UP") != std::string::npos);
  CHECK(run({"task", "999", server}, "missing") == 1);
  // Bad input on the command line is exit 2, before the server is asked.
  CHECK(run({"task", "abc", server}, "not-id") == 2);
  CHECK(read_file(dir / "not-id.err")
        == "taskmasterd: task: 'abc' is not a task id (a number)\n");
  CHECK(run({"submit", "--cmd=true", "stray", server}, "stray") == 2);
  CHECK(run({"submit", "--cmd=true", "--retries=-1", server}, "neg") == 2);
  CHECK(run({"submit", "--cmd=true", "--delay=-3", server}, "neg-delay")
        == 2);
  CHECK(run({"submit", "--cmd=true", "--priority=urgent", server}, "urgent")
        == 2);
  CHECK(run({"tasks", "--status=bogus", server}, "bogus-status") == 2);
  CHECK(read_file(dir / "bogus-status.err").find("--status=bogus: not QUEUED")
        != std::string::npos);
  CHECK(read_file(dir / "missing.err").find("no task with id '999'")
        != std::string::npos);
  // Watching a task that does not exist: the error alone, no header.
  CHECK(run({"watch", "--task=999", server}, "watch-missing") == 1);
  CHECK(read_file(dir / "watch-missing.out").empty());
  CHECK(read_file(dir / "watch-missing.err")
        == "taskmasterd: no task with id '999'\n");
  CHECK(run({"tasks", "--server=http://127.0.0.1:9"}, "unreachable") == 3);
  auto err = read_file(dir / "unreachable.err");
  CHECK(err.find("cannot reach the TaskMaster server at http://127.0.0.1:9")
        != std::string::npos);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
  CHECK(run({"submit", "--bogus=1", server}, "bogus") == 2);
  CHECK(read_file(dir / "bogus.err")
        == "taskmasterd: submit: unknown option --bogus (see taskmasterd "
           "submit --help)\n");
  // A bad value names the form the option takes.
  CHECK(run({"submit", "--cmd=true", "--timeout=abc", server}, "nan") == 2);
  CHECK(read_file(dir / "nan.err")
        == "taskmasterd: submit: invalid value in --timeout=abc (expected a "
           "whole number, 0 or more) (see taskmasterd submit --help)\n");
  CHECK(run({"submit", "--cmd=", server}, "no-cmd") == 2);
  CHECK(read_file(dir / "no-cmd.err")
        == "taskmasterd: submit: --cmd needs a value (see taskmasterd submit "
           "--help)\n");
  // Output beyond the kept 64 KiB: the count comes with it, and the client
  // says the file it wrote is not everything.
  CHECK(run({"submit", "--cmd=seq 1 100000", "--wait", server}, "long") == 0);
  CHECK(read_file(dir / "long.out").size() == 65536);
  CHECK(read_file(dir / "long.err")
        == "taskmasterd: task 2 wrote 588895 bytes to stdout; only its last "
           "65536 are kept\n");
  CHECK(master->api().get("/tasks/2").body["stdout_bytes"] == 588895);
  // Filters in any case; a task's labels in its description.
  CHECK(run({"tasks", "--status=failed", server}, "lower") == 0);
  CHECK(read_file(dir / "lower.out").find("cli") != std::string::npos);
  CHECK(run({"submit", "--cmd=true", "--labels=zone=nowhere", server},
            "labelled")
        == 0);
  CHECK(run({"task", "3", server}, "labelled-task") == 0);
  CHECK(read_file(dir / "labelled-task.out").find("labels       zone=nowhere")
        != std::string::npos);
  CHECK(run({"submit", "--cmd=true", "--labels=a=1,a=2", server}, "twice")
        == 2);
  // A single-valued option given twice is a mistake, not an override.
  CHECK(run({"submit", "--cmd=echo", "--cmd=hello", server}, "cmd-twice")
        == 2);
  CHECK(read_file(dir / "cmd-twice.err")
        == "taskmasterd: submit: --cmd given twice (see taskmasterd submit "
           "--help)\n");
  // The same idempotency key again names the first task.
  CHECK(run({"submit", "--cmd=true", "--idempotency-key=once", server},
            "key-first")
        == 0);
  CHECK(read_file(dir / "key-first.out").rfind("submitted task ", 0) == 0);
  CHECK(run({"submit", "--cmd=true", "--idempotency-key=once", server},
            "key-again")
        == 0);
  auto first = read_file(dir / "key-first.out");
  auto first_id = first.substr(15, first.find(' ', 15) - 15);
  CHECK(read_file(dir / "key-again.out")
          .rfind("already submitted as task " + first_id + " under key 'once'",
                 0)
        == 0);
  // Tables cut by screen columns, never inside a character: eight wide
  // characters (16 columns) and the cut mark fill 17 of NAME's 18.
  CHECK(run({"submit", "--cmd=true", "--name=一二三四五六七八九十", server},
            "wide")
        == 0);
  CHECK(run({"tasks", "--limit=1", server}, "wide-table") == 0);
  CHECK(read_file(dir / "wide-table.out").find("一二三四五六七八~  ")
        != std::string::npos);
  // --env may repeat, and a backslash keeps a comma in a value.
  CHECK(run({"submit", "--cmd=echo \"$DIRS $B\"", "--env=DIRS=/a\\,/b",
             "--env=B=2", "--wait", server},
            "env")
        == 0);
  CHECK(read_file(dir / "env.out") == "/a,/b 2\n");
  CHECK(run({"submit", "--cmd=true", "--env=B=1", "--env=B=2", server},
            "env-twice")
        == 2);
  CHECK(read_file(dir / "env-twice.err").find("--env 'B=2'")
        != std::string::npos);
  // After a retry, the output says whose it is.
  CHECK(run({"submit", "--cmd=echo run $TASKMASTER_ATTEMPT; exit 1",
             "--retries=1", "--wait", server},
            "retried")
        == 1);
  auto retried = master->api().get("/tasks?limit=1").body["tasks"][0]["id"];
  CHECK(run({"task", retried.dump(), server}, "retried-task") == 0);
  CHECK(read_file(dir / "retried-task.out")
          .find("--- stdout (attempt 2) ---\nrun 2\n")
        != std::string::npos);
  // A path after the host goes in front of every request (as behind a
  // reverse proxy that strips it); this master has no such prefix.
  CHECK(run({"tasks", "--server=" + master->http_url() + "/prefix"}, "prefix")
        == 1);
  CHECK(read_file(dir / "prefix.err").find("no route for GET /prefix/tasks")
        != std::string::npos);
  // Something that is not TaskMaster answering: said so, exit 3.
  httplib::Server other;
  other.Get(".*", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("<html>not here</html>", "text/html");
  });
  auto other_port = other.bind_to_any_port("127.0.0.1");
  std::thread other_thread{[&] { other.listen_after_bind(); }};
  CHECK(run({"tasks", "--server=http://127.0.0.1:" + std::to_string(other_port)},
            "other")
        == 3);
  // A wait gives up at once too: that address never was TaskMaster (no
  // 60 s of retrying as for a restart).
  CHECK(run({"task", "1", "--wait",
             "--server=http://127.0.0.1:" + std::to_string(other_port)},
            "other-wait")
        == 3);
  // So does watch, rather than calling a web page's answer a refusal.
  CHECK(run({"watch", "--server=http://127.0.0.1:" + std::to_string(other_port)},
            "other-watch")
        == 3);
  CHECK(read_file(dir / "other-watch.err").find("is it a TaskMaster API?")
        != std::string::npos);
  other.stop();
  other_thread.join();
  // Another JSON service answering 200 to anything: not a task submitted,
  // and no endless wait (it printed "submitted task -" and exited 0, and
  // --wait never returned).
  httplib::Server json_service;
  auto hello = [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"hello":1})", "application/json");
  };
  json_service.Get(".*", hello);
  json_service.Post(".*", hello);
  auto json_port = json_service.bind_to_any_port("127.0.0.1");
  std::thread json_thread{[&] { json_service.listen_after_bind(); }};
  auto json_server = "--server=http://127.0.0.1:" + std::to_string(json_port);
  for (auto args : std::vector<std::vector<std::string>>{
         {"submit", "--cmd=true", json_server},
         {"submit", "--cmd=true", "--wait", json_server},
         {"task", "1", json_server},
         {"tasks", json_server},
         {"workers", json_server},
         {"cancel", "1", json_server}}) {
    auto name = "json-" + args[0] + std::to_string(args.size());
    CHECK(run(args, name) == 3);
    CHECK(read_file(dir / (name + ".err")).find("is it a TaskMaster API?")
          != std::string::npos);
  }
  json_service.stop();
  json_thread.join();
  // A server that accepts connections and never answers: watch gives up
  // after its handshake limit (10 s) instead of hanging.
  uint16_t silent_port = 0;
  int silent = listen_on_loopback(silent_port);
  REQUIRE(silent >= 0);
  CHECK(run({"watch", "--server=http://127.0.0.1:" + std::to_string(silent_port)},
            "silent-watch")
        == 3);
  ::close(silent);
  CHECK(read_file(dir / "silent-watch.err").find("no answer within 10 s")
        != std::string::npos);
  // One that hangs up at once: not TaskMaster either (it was exit 1 with
  // the WebSocket library's words).
  uint16_t hangs_up_port = 0;
  int hangs_up = listen_on_loopback(hangs_up_port);
  REQUIRE(hangs_up >= 0);
  std::thread hanger{[hangs_up] {
    int c = ::accept(hangs_up, nullptr, nullptr);
    if (c >= 0)
      ::close(c);
  }};
  CHECK(run({"watch", "--server=http://127.0.0.1:" + std::to_string(hangs_up_port)},
            "hangs-up-watch")
        == 3);
  hanger.join();
  ::close(hangs_up);
  CHECK(read_file(dir / "hangs-up-watch.err").find("did not open a TaskMaster "
                                                   "stream")
        != std::string::npos);
  // A port beyond 65535 would wrap around to another one.
  CHECK(run({"tasks", "--server=http://127.0.0.1:96483"}, "port-wrap") == 2);
  CHECK(read_file(dir / "port-wrap.err")
        == "taskmasterd: --server 'http://127.0.0.1:96483': the port must be "
           "1 to 65535\n");
  CHECK(run({"watch", "--server=http://127.0.0.1:96483"}, "port-wrap-watch")
        == 2);
  CHECK(read_file(dir / "other.err").find("is it a TaskMaster API?")
        != std::string::npos);
  // A stream the server refuses: its reason, not the WebSocket library's.
  CHECK(run({"watch", "--task=1", "--topics=workers", server},
            "watch-task-no-tasks")
        == 2);
  CHECK(run({"watch", "--topics=bogus", server}, "watch-bogus") == 2);
  CHECK(read_file(dir / "watch-bogus.err")
        == "taskmasterd: watch: --topics: unknown topic 'bogus' (tasks, "
           "workers, stats)\n");
  CHECK(run({"watch", "--task=1x", server}, "watch-bad-id") == 2);
  CHECK(run({server, "workers"}, "command-late") == 2);
  CHECK(read_file(dir / "command-late.err")
        == "taskmasterd: the command comes first, its options after it: "
           "taskmasterd workers [options]\n");
  CHECK(run({"tasks", "--limit=0", server}, "limit-zero") == 2);
  // Any wrong --limit gets the range (a word got CAF's "0 or more").
  CHECK(run({"tasks", "--limit=abc", server}, "limit-word") == 2);
  CHECK(read_file(dir / "limit-word.err")
        == "taskmasterd: --limit=abc: expected a whole number from 1 to "
           "1000\n");
  CHECK(run({"submit", "--cmd=true", "--delay=soon", server}, "delay-word")
        == 2);
  CHECK(read_file(dir / "delay-word.err").find("(expected a number, e.g. 0.5)")
        != std::string::npos);
  // A mistyped cursor is a usage error like the others (it was the server's
  // 400, exit 1).
  CHECK(run({"tasks", "--cursor=abc", server}, "bad-cursor") == 2);
  CHECK(read_file(dir / "bad-cursor.err")
        == "taskmasterd: --cursor=abc: expected a number, as a listing "
           "prints it in '(more: --cursor=N)'\n");
  CHECK(run({"tasks", "--cursor=99999999999999999999", server}, "big-cursor")
        == 2);
  // A command line that is not UTF-8 cannot travel in JSON: exit 2, naming
  // the option (the client used to abort).
  CHECK(run({"submit", "--cmd=echo \xe9t\xe9", server}, "latin1") == 2);
  CHECK(read_file(dir / "latin1.err")
        == "taskmasterd: submit: --cmd is not valid UTF-8 text (the API "
           "carries UTF-8 only)\n");
  // On a terminal, --wait names the task first. util-linux's script gives
  // the client one; without it (or a pseudo-terminal) this is skipped.
  if (::access("/usr/bin/script", X_OK) != 0) {
    WARN("no /usr/bin/script here; --wait on a terminal not checked");
    return;
  }
  {
    process tty{{"/usr/bin/script", "-qec",
                 "'" + taskmasterd_path() + "' submit --cmd='echo on-tty' "
                   "--wait " + server,
                 "/dev/null"},
                dir / "tty.out", dir / "tty.err",
                {"LC_ALL=C", "SHELL=/bin/sh"}};
    auto code = tty.wait(std::chrono::seconds(30)).value_or(-1);
    auto shown = read_file(dir / "tty.out");
    if (shown.find("on-tty") == std::string::npos) {
      // The task never ran under it: script could not set up a terminal.
      WARN("script could not run the client on a terminal (exit "
           << code << "): --wait on a terminal not checked");
      return;
    }
    CHECK(code == 0);
    auto named = shown.find("taskmasterd: submitted as task ");
    CHECK(named != std::string::npos);
    CHECK(shown.find("; waiting for it", named) != std::string::npos);
    CHECK(shown.find("on-tty") != std::string::npos);
  }
}

TEST_CASE("watch exits 3 when the master goes away", "[integration][client]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  process watch{{taskmasterd_path(), "watch", "--server=" + master->http_url()},
                dir / "watch.out",
                dir / "watch.err"};
  // Streaming: the snapshot line comes first.
  REQUIRE(eventually([&] { return !read_file(dir / "watch.out").empty(); }));
  CHECK(master->proc().stop(SIGTERM, 20s) == 0);
  // A script must tell a server that went away from a normal end.
  CHECK(watch.wait(10s) == 3);
  CHECK(read_file(dir / "watch.err").find("the server closed the stream")
        != std::string::npos);
  // Killed: no close frame, the connection just ends; stats lines when the
  // topics name them.
  auto again = daemon::master(dir, "again");
  process stats{{taskmasterd_path(), "watch", "--topics=stats",
                 "--server=" + again->http_url()},
                dir / "stats.out",
                dir / "stats.err"};
  REQUIRE(eventually([&] {
    return read_file(dir / "stats.out").find(" stats: 0 queued, 0 running")
           != std::string::npos;
  }));
  again->proc().signal(SIGKILL);
  CHECK(stats.wait(10s) == 3);
  CHECK(read_file(dir / "stats.err").find("lost the stream from the server at "
                                          + again->http_url())
        != std::string::npos);
}

TEST_CASE("watch stays on a quiet stream and gives up on a stopped master "
          "after three missed pings",
          "[integration][client]") {
  temp_dir dir;
  // 2 s: at 1 s a watch descheduled for a second on a busy machine would be
  // dropped by the server before the master is stopped.
  auto master = daemon::master(dir, "master", {"--ws-ping-interval=2s"});
  // Workers only: on a master without workers nothing is ever published.
  process watch{{taskmasterd_path(), "watch", "--topics=workers",
                 "--server=" + master->http_url()},
                dir / "watch.out",
                dir / "watch.err"};
  REQUIRE(eventually([&] { return !read_file(dir / "watch.out").empty(); }));
  // Longer than the 6 s limit without an event: the pings keep it up.
  std::this_thread::sleep_for(7s);
  CHECK(watch.running());
  // A stopped master keeps its TCP connections open and answers nothing.
  master->proc().signal(SIGSTOP);
  auto stopped_at = std::chrono::steady_clock::now();
  // The last ping came at most one interval before the stop.
  CHECK(watch.wait(15s) == 3);
  auto waited = std::chrono::steady_clock::now() - stopped_at;
  master->proc().signal(SIGCONT);
  CHECK(waited > 3s);
  CHECK(waited < 9s);
  CHECK(read_file(dir / "watch.err")
        == "taskmasterd: the server at " + master->http_url()
             + " sent nothing for 6 s although it pings every 2 s: it is "
               "stuck, or the connection to it is (--server or "
               "TASKMASTER_SERVER)\n");
}

TEST_CASE("bad command lines exit non-zero with one clear line",
          "[integration][options]") {
  temp_dir dir;
  auto run = [&](std::vector<std::string> args, const std::string& name) {
    return run_taskmasterd(dir, std::move(args), name);
  };
  CHECK(run({"--bogus=1"}, "bogus") == 2);
  CHECK(read_file(dir / "bogus.err")
        == "taskmasterd: unknown option --bogus (see --help)\n");
  CHECK(run({"--role=chef"}, "role") == 2);
  CHECK(read_file(dir / "role.err")
        == "taskmasterd: unknown role 'chef' (standalone, master or worker)\n");
  CHECK(run({"--http-port=http"}, "port") == 2);
  CHECK(run({"frobnicate"}, "cmd") == 2);
  CHECK(run({"--help"}, "help") == 0);
  CHECK(read_file(dir / "help.out").find("--cluster-port") != std::string::npos);
  CHECK(read_file(dir / "help.out").find("taskmasterd watch") != std::string::npos);
  // These print and exit; they used to go on to start a standalone daemon
  // on the default ports.
  CHECK(run({"--long-help"}, "long-help") == 0);
  CHECK(run({"--dump-config", "--data-dir=" + (dir / "dump-data"),
             "--http-port=0", "--cluster-port=0"},
            "dump")
        == 0);
  CHECK(read_file(dir / "dump.out").find("http-port") != std::string::npos);
  CHECK_FALSE(std::ifstream{dir / "dump-data"}.good());
  // A typo in a config file is refused, not ignored.
  {
    std::ofstream ini{dir / "typo.ini"};
    ini << "[global]\nhtp-port=8081\n";
  }
  CHECK(run({"--config-file=" + (dir / "typo.ini")}, "typo") == 2);
  CHECK(read_file(dir / "typo.err").find("unknown key 'htp-port' in [global]")
        != std::string::npos);
  CHECK(run({"--config-file=/nonexistent.ini"}, "nofile") == 2);
  CHECK(run({"--prefetch-budget=-1s"}, "negative") == 2);
  CHECK(read_file(dir / "negative.err")
        == "taskmasterd: --prefetch-budget must be 0 or more\n");
  // A port in use is reported, not ignored.
  auto master = daemon::master(dir, "master");
  CHECK(run({"--role=master", "--data-dir=" + (dir / "other"),
             "--http-port=" + std::to_string(master->http_port()),
             "--cluster-port=0"},
            "busy")
        == 1);
  CHECK(read_file(dir / "busy.err").find("cannot listen for HTTP")
        != std::string::npos);
  // Two masters cannot share a data directory.
  CHECK(run({"--role=master", "--data-dir=" + (dir / "master-data"),
             "--http-port=0", "--cluster-port=0"},
            "shared")
        == 1);
  CHECK(read_file(dir / "shared.err")
          .find("in use by another master (pid "
                + std::to_string(master->proc().pid()) + ")")
        != std::string::npos);
}

TEST_CASE("a standalone master whose default cluster port is taken moves "
          "to a free one; a chosen port is refused",
          "[integration][options]") {
  temp_dir dir;
  // 50051 is taken: by this listener, or by whatever already holds it.
  uint16_t held = 0;
  int holder = listen_on_loopback(held, 50051);
  auto master = daemon::master(dir, "standalone",
                               {"--cluster-port=default"}, true);
  CHECK(master->cluster_port() != 50051);
  CHECK(master->log_contains("cluster port 50051 is taken"));
  // Its own worker runs tasks, and so does one that joins on the new port.
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  auto joined = daemon::worker(dir, master->cluster_addr(), "joined", 1,
                               {"--labels=where=joined"});
  REQUIRE(wait_for_workers(api, 2));
  for (auto labels : {json::object(), json{{"where", "joined"}}}) {
    auto ran = api.post("/tasks", json{{"command", "echo ok"}, {"labels", labels}});
    REQUIRE(ran.status == 201);
    auto id = ran.body["id"].get<uint64_t>();
    auto done = api.get("/tasks/" + std::to_string(id) + "?wait=20");
    CHECK(done.body["status"] == "SUCCEEDED");
  }
  // Restarted, it takes the same port again: the worker that joined there
  // comes back.
  auto moved_to = master->cluster_port();
  REQUIRE(master->proc().stop(SIGTERM, 20s) == 0);
  master = daemon::master(dir, "standalone", {"--cluster-port=default"}, true);
  CHECK(master->cluster_port() == moved_to);
  api = master->api();
  CHECK(wait_for_workers(api, 2, 20s));
  // Asked for by name, the taken port is an error, as any port in use is.
  CHECK(run_taskmasterd(dir,
                        {"--data-dir=" + (dir / "other"), "--http-port=0",
                         "--cluster-port=50051"},
                        "chosen")
        == 1);
  CHECK(read_file(dir / "chosen.err").find("cannot listen for workers on "
                                           "127.0.0.1:50051")
        != std::string::npos);
  // Even with 50051 free again, it keeps the port its workers know.
  if (holder >= 0) {
    ::close(holder);
    holder = -1;
    REQUIRE(master->proc().stop(SIGTERM, 20s) == 0);
    master = daemon::master(dir, "standalone", {"--cluster-port=default"}, true);
    CHECK(master->cluster_port() == moved_to);
    CHECK(master->log_contains("as at the last start"));
  }
  // A file that holds no port is said to be removed; the master starts on
  // the default port when it is free (this test's listener is closed by
  // now), else on another it keeps in a new file.
  REQUIRE(master->proc().stop(SIGTERM, 20s) == 0);
  auto port_file = dir / "standalone-data/cluster-port";
  {
    std::ofstream garbage{port_file, std::ios::trunc};
    garbage << "port 80\n";
  }
  master = daemon::master(dir, "standalone", {"--cluster-port=default"}, true);
  CHECK(master->log_contains("cluster-port held no port number ('port "
                             "80'): removed, trying port 50051"));
  if (master->cluster_port() == 50051)
    CHECK(::access(port_file.c_str(), F_OK) != 0);
  else
    CHECK(read_file(port_file)
          == std::to_string(master->cluster_port()) + "\n");
  if (holder >= 0)
    ::close(holder);
}

TEST_CASE("across processes, a worker of fast tasks holds one task ahead; "
          "stuck behind a long task, it goes back to the master unstarted",
          "[integration][prefetch]") {
  temp_dir dir;
  // A budget of 50 ms: fast tasks anywhere count as fast; the wait limit
  // is 4 x 50 ms.
  auto master = daemon::master(dir, "master", {"--prefetch-budget=50ms"});
  auto worker = daemon::worker(dir, master->cluster_addr(), "solo", 1);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  json warm = json::array();
  for (int i = 0; i < 10; ++i)
    warm.push_back(json{{"command", "true"}});
  auto warmed = api.post("/tasks", warm);
  REQUIRE(warmed.status == 201);
  for (const auto& t : warmed.body)
    REQUIRE(api.wait_final(t["id"].get<uint64_t>())["status"] == "SUCCEEDED");
  auto slow = api.post("/tasks", json{{"command", "sleep 2"}});
  auto fast = api.post("/tasks", json{{"command", "echo ahead"}});
  REQUIRE(fast.status == 201);
  auto fast_id = fast.body["id"].get<uint64_t>();
  // Prefetched: RUNNING on the worker, which shows it beyond its slot.
  CHECK(fast.body["status"] == "RUNNING");
  auto workers = api.get("/workers").body["workers"];
  REQUIRE(workers.size() == 1);
  CHECK(workers[0]["slots_used"] == 1);
  CHECK(workers[0]["prefetched"] == 1);
  CHECK(workers[0]["running"].size() == 2);
  // The slot stays busy for 2 s: after 200 ms the task goes back, and runs
  // when the slot frees.
  auto done = api.wait_final(fast_id);
  REQUIRE(done["status"] == "SUCCEEDED");
  CHECK(done["stdout"] == "ahead\n");
  REQUIRE(done["attempts"].size() == 2);
  CHECK(done["attempts"][0]["outcome"] == "RETURNED");
  CHECK(done["attempts"][0]["reason"].get<std::string>().find(
          "not started within 200 ms")
        != std::string::npos);
  auto sleeper = api.wait_final(slow.body["id"].get<uint64_t>());
  CHECK(sleeper["finished_at"].get<std::string>()
        <= done["attempts"][1]["started_at"].get<std::string>());
}

TEST_CASE("across processes, a slot that idles takes back a task another "
          "worker holds unstarted",
          "[integration][prefetch]") {
  temp_dir dir;
  // A budget of 1 s: a prefetched task goes back by itself only after 4 s,
  // long after the slot elsewhere idles.
  auto master = daemon::master(dir, "master", {"--prefetch-budget=1s"});
  auto a = daemon::worker(dir, master->cluster_addr(), "a", 1);
  auto b = daemon::worker(dir, master->cluster_addr(), "b", 1);
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 2));
  // Tasks of 10 ms on both: both take prefetched tasks, and tasks that long
  // are worth asking back.
  json warm = json::array();
  for (int i = 0; i < 10; ++i)
    warm.push_back(json{{"command", "sleep 0.01"}});
  auto warmed = api.post("/tasks", warm);
  REQUIRE(warmed.status == 201);
  for (const auto& t : warmed.body)
    REQUIRE(api.wait_final(t["id"].get<uint64_t>())["status"] == "SUCCEEDED");
  // One long and one short task fill both slots; the third is prefetched
  // behind the long one (the worker assigned to longest ago).
  auto batch = api.post("/tasks", json::array({
                                    json{{"command", "sleep 3"}},
                                    json{{"command", "sleep 0.3"}},
                                    json{{"command", "echo moved"}},
                                  }));
  REQUIRE(batch.status == 201);
  auto long_worker = batch.body[0]["worker_id"].get<std::string>();
  REQUIRE(batch.body[2]["status"] == "RUNNING");
  REQUIRE(batch.body[2]["worker_id"] == long_worker);
  auto moved = api.wait_final(batch.body[2]["id"].get<uint64_t>());
  REQUIRE(moved["status"] == "SUCCEEDED");
  CHECK(moved["stdout"] == "moved\n");
  // Once the short task ended, the other worker asked for it: handed back
  // unstarted and run there, long before the long task ends.
  CHECK(moved["worker_id"] != long_worker);
  REQUIRE(moved["attempts"].size() == 2);
  CHECK(moved["attempts"][0]["outcome"] == "RETURNED");
  CHECK(moved["attempts"][0]["reason"].get<std::string>().find(
          "idling on another worker")
        != std::string::npos);
  auto long_task = api.get(
    "/tasks/" + std::to_string(batch.body[0]["id"].get<uint64_t>()));
  CHECK(long_task.body["status"] == "RUNNING");
  CHECK(long_task.body["attempts"].size() == 1);
}
