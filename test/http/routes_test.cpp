#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "test/support/cluster.hpp"
#include "test/support/connect.hpp"
#include "test/support/file_size_cap.hpp"
#include "test/support/in_process_master.hpp"
#include "test/support/wait.hpp"

using namespace taskmaster;
using namespace taskmaster::test;

namespace {

in_process_master::options with_http(uint32_t slots, size_t max_queued = 0,
                                     size_t max_body = 16 * 1024 * 1024) {
  in_process_master::options o;
  o.worker_slots = slots;
  o.http = true;
  o.settings.max_queued = max_queued;
  o.gateway.routes.max_body_bytes = max_body;
  o.gateway.routes.limits.max_batch_tasks = 500;
  return o;
}

void check_error(const http_answer& a, int status, const std::string& code,
                 const std::string& message_part) {
  INFO(a.raw);
  CHECK(a.status == status);
  REQUIRE(a.body.is_object());
  REQUIRE(a.body.contains("error"));
  CHECK(a.body["error"]["code"] == code);
  CHECK(a.body["error"]["message"].get<std::string>().find(message_part)
        != std::string::npos);
}

uint64_t id_of(const http_answer& a) {
  return a.body["id"].get<uint64_t>();
}

} // namespace

TEST_CASE("POST /tasks answers 201 with the task and GET /tasks/{id} shows "
          "its result",
          "[http][tasks]") {
  in_process_master m{with_http(2)};
  api_client api{m.url()};
  auto a = api.post("/tasks", json{{"command", "echo hi; echo oops >&2"},
                                   {"name", "greet"},
                                   {"description", "says hi"},
                                   {"priority", "HIGH"},
                                   {"timeout_seconds", 30},
                                   {"env", {{"WHO", "you"}}}});
  REQUIRE(a.status == 201);
  CHECK(a.body["id"].is_number_unsigned());
  CHECK(a.body["name"] == "greet");
  CHECK(a.body["priority"] == "HIGH");
  CHECK(a.body["created_at"].get<std::string>().back() == 'Z');
  auto t = api.wait_final(id_of(a));
  CHECK(t["status"] == "SUCCEEDED");
  CHECK(t["stdout"] == "hi\n");
  CHECK(t["stderr"] == "oops\n");
  CHECK(t["exit_code"] == 0);
  CHECK(t["worker_id"] == "local");
  CHECK(t["env"]["WHO"] == "you");
  CHECK(t["timeout_seconds"] == 30);
  CHECK(t["description"] == "says hi");
  // RFC 3339, UTC, milliseconds.
  auto started = t["started_at"].get<std::string>();
  CHECK(started.size() == 24);
  CHECK(started[19] == '.');
  CHECK(started[23] == 'Z');
  CHECK(t["finished_at"].get<std::string>() >= started);
  REQUIRE(t["attempts"].size() == 1);
  CHECK(t["attempts"][0]["outcome"] == "SUCCEEDED");
}

TEST_CASE("the task's environment reaches the command", "[http][tasks]") {
  in_process_master m{with_http(1)};
  api_client api{m.url()};
  auto a = api.post("/tasks", json{{"command", "echo \"$GREETING $TASKMASTER_TASK_ID\""},
                                   {"env", {{"GREETING", "hello"}}}});
  auto t = api.wait_final(id_of(a));
  CHECK(t["stdout"] == "hello " + std::to_string(id_of(a)) + "\n");
}

TEST_CASE("a JSON array submits a batch and answers the tasks in order",
          "[http][tasks]") {
  in_process_master m{with_http(2)};
  api_client api{m.url()};
  json batch = json::array();
  for (int i = 0; i < 20; ++i)
    batch.push_back(json{{"command", "echo " + std::to_string(i)},
                         {"name", "n" + std::to_string(i)}});
  auto a = api.post("/tasks", batch);
  REQUIRE(a.status == 201);
  REQUIRE(a.body.size() == 20);
  for (int i = 0; i < 20; ++i) {
    CHECK(a.body[i]["name"] == "n" + std::to_string(i));
    auto t = api.wait_final(a.body[i]["id"].get<uint64_t>());
    CHECK(t["stdout"] == std::to_string(i) + "\n");
  }
}

TEST_CASE("GET /tasks filters and pages newest first", "[http][tasks]") {
  in_process_master m{with_http(0)};
  api_client api{m.url()};
  json batch = json::array();
  for (int i = 0; i < 30; ++i)
    batch.push_back(json{{"command", "true"},
                         {"priority", i % 3 == 0 ? "CRITICAL" : "LOW"}});
  REQUIRE(api.post("/tasks", batch).status == 201);
  auto page = api.get("/tasks?limit=12");
  REQUIRE(page.status == 200);
  REQUIRE(page.body["tasks"].size() == 12);
  CHECK(page.body["tasks"][0]["id"] == 30);
  CHECK(page.body["tasks"][11]["id"] == 19);
  REQUIRE(page.body["next_cursor"].is_string());
  std::set<uint64_t> seen;
  std::string cursor;
  for (int pages = 0; pages < 10; ++pages) {
    auto p = api.get("/tasks?limit=7"
                     + (cursor.empty() ? "" : "&cursor=" + cursor));
    for (const auto& t : p.body["tasks"])
      CHECK(seen.insert(t["id"].get<uint64_t>()).second);
    if (p.body["next_cursor"].is_null())
      break;
    cursor = p.body["next_cursor"].get<std::string>();
  }
  CHECK(seen.size() == 30);
  auto critical = api.get("/tasks?priority=CRITICAL&status=QUEUED&limit=100");
  CHECK(critical.body["tasks"].size() == 10);
  for (const auto& t : critical.body["tasks"])
    CHECK(t["priority"] == "CRITICAL");
  CHECK(api.get("/tasks?status=SUCCEEDED").body["tasks"].empty());
  // Names in any case, as in a request body.
  CHECK(api.get("/tasks?priority=critical&status=Queued&limit=100")
          .body["tasks"]
          .size()
        == 10);
  // Listings leave out the output tails.
  CHECK_FALSE(page.body["tasks"][0].contains("stdout"));
  // A queued task says why it waits.
  CHECK(page.body["tasks"][0]["reason"] == "no worker is connected");
}

TEST_CASE("cancel ends queued and running tasks and refuses finished ones",
          "[http][cancel]") {
  in_process_master m{with_http(1)};
  api_client api{m.url()};
  auto running = id_of(api.post("/tasks", json{{"command", "sleep 60"}}));
  auto queued = id_of(api.post("/tasks", json{{"command", "sleep 60"}}));
  REQUIRE(eventually([&] {
    return api.get("/tasks/" + std::to_string(running)).body["status"]
           == "RUNNING";
  }));
  auto c = api.post("/tasks/" + std::to_string(queued) + "/cancel", "");
  CHECK(c.status == 200);
  CHECK(c.body["status"] == "CANCELLED");
  auto start = std::chrono::steady_clock::now();
  c = api.post("/tasks/" + std::to_string(running) + "/cancel", "");
  CHECK(c.status == 200);
  CHECK(c.body["status"] == "CANCELLED");
  // The process is gone within a second: its slot is free again.
  REQUIRE(eventually([&] {
    auto w = api.get("/workers").body["workers"][0];
    return w["slots_used"] == 0;
  }));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  CHECK(api.post("/tasks/" + std::to_string(running) + "/cancel", "").status
        == 200);
  auto done = id_of(api.post("/tasks", json{{"command", "true"}}));
  REQUIRE(api.wait_final(done)["status"] == "SUCCEEDED");
  check_error(api.post("/tasks/" + std::to_string(done) + "/cancel", ""), 409,
              "conflict", "already ended SUCCEEDED");
  check_error(api.post("/tasks/424242/cancel", ""), 404, "not_found",
              "no task with id '424242'");
}

TEST_CASE("workers, metrics, health and the dashboard are served",
          "[http][endpoints]") {
  in_process_master m{with_http(3)};
  api_client api{m.url()};
  REQUIRE(wait_for_workers(api, 1));
  auto w = api.get("/workers");
  REQUIRE(w.status == 200);
  CHECK(w.body["workers"][0]["id"] == "local");
  CHECK(w.body["workers"][0]["slots"] == 3);
  CHECK(w.body["workers"][0]["state"] == "UP");
  auto id = id_of(api.post("/tasks", json{{"command", "true"},
                                          {"priority", "CRITICAL"}}));
  api.wait_final(id);
  REQUIRE(eventually([&] {
    return api.metrics()["taskmaster_tasks_completed_total"] == 1;
  }));
  auto raw = api.get("/metrics").raw;
  for (const char* name :
       {"taskmaster_tasks_submitted_total", "taskmaster_tasks_completed_total",
        "taskmaster_tasks_failed_total", "taskmaster_task_queue_length",
        "taskmaster_worker_count", "taskmaster_task_execution_seconds_bucket",
        "taskmaster_tasks_by_priority_total{priority=\"CRITICAL\"} 1",
        "taskmaster_task_queue_length_by_priority{priority=\"LOW\"}",
        "taskmaster_task_queue_wait_seconds_bucket", "taskmaster_slots_total 3",
        "taskmaster_slots_used", "taskmaster_journal_failed 0"})
    CHECK(raw.find(name) != std::string::npos);
  auto health = api.get("/healthz");
  CHECK(health.status == 200);
  CHECK(health.body["status"] == "ok");
  auto stats = api.get("/stats");
  CHECK(stats.body["workers_up"] == 1);
  CHECK(stats.body["tasks_by_status"]["SUCCEEDED"] == 1);
  auto page = api.get("/");
  CHECK(page.status == 200);
  CHECK(page.raw.find("<html") != std::string::npos);
}

TEST_CASE("a master whose journal failed says so in /healthz and /metrics",
          "[http][endpoints][journal]") {
  in_process_master m{with_http(0)};
  api_client api{m.url()};
  REQUIRE(api.post("/tasks", json{{"command", "true"}}).status == 201);
  m.journal().flush();
  {
    // The journal cannot grow any more, as on a full disk.
    file_size_cap cap{m.dir() / "data/taskmaster.db-wal"};
    check_error(api.post("/tasks", json{{"command", "true"}}), 503,
                "journal_failed", "nothing was accepted");
  }
  // It stays failed (what is in memory is not all on disk any more), so
  // there is no Retry-After to follow.
  auto again = api.post("/tasks", json{{"command", "true"}});
  check_error(again, 503, "journal_failed", "nothing was accepted");
  CHECK(again.retry_after.empty());
  auto health = api.get("/healthz");
  CHECK(health.status == 503);
  CHECK(health.body["status"] == "journal_failed");
  CHECK(health.body["message"].get<std::string>().find("restarted")
        != std::string::npos);
  CHECK(api.get("/metrics").raw.find("taskmaster_journal_failed 1")
        != std::string::npos);
}

TEST_CASE("bad requests get a clear JSON error and lose nothing",
          "[http][errors]") {
  in_process_master m{with_http(0, 0, 4096)};
  api_client api{m.url()};
  auto kept = api.post("/tasks", json{{"command", "echo keep me"}});
  REQUIRE(kept.status == 201);

  check_error(api.post("/tasks", "{\"command\": "), 400, "invalid_json",
              "not valid JSON");
  // A POST that says nothing of its body length (`curl -XPOST URL`) is
  // answered at once, not after the read timeout.
  auto bare = raw_request(m.url(), "POST /tasks/1/cancel HTTP/1.1\r\n"
                                   "Host: test\r\n\r\n");
  CHECK(bare.rfind("HTTP/1.1 411 Length Required", 0) == 0);
  CHECK(bare.find("\"code\":\"length_required\"") != std::string::npos);
  CHECK(bare.find("POST needs a Content-Length header, 0 for no body")
        != std::string::npos);
  check_error(api.post("/tasks", "not json at all"), 400, "invalid_json",
              "not valid JSON");
  check_error(api.post("/tasks", json::object()), 400, "invalid_request",
              "'command' is required");
  check_error(api.post("/tasks", json{{"command", ""}}), 400,
              "invalid_request", "'command' must not be empty");
  check_error(api.post("/tasks", json{{"command", "   "}}), 400,
              "invalid_request", "'command' must not be empty");
  check_error(api.post("/tasks", json{{"command", 42}}), 400,
              "invalid_request", "'command' must be a string, not a number");
  check_error(api.post("/tasks", json{{"command", "true"},
                                      {"priority", "URGENT"}}),
              400, "invalid_request",
              "'priority' must be one of LOW, MEDIUM, HIGH, CRITICAL, not "
              "\"URGENT\"");
  check_error(api.post("/tasks", json{{"command", "true"},
                                      {"timeout_seconds", "10"}}),
              400, "invalid_request",
              "'timeout_seconds' must be a number, not a string");
  check_error(api.post("/tasks", json{{"command", "true"},
                                      {"timeout_seconds", -1}}),
              400, "invalid_request", "must not be negative");
  check_error(api.post("/tasks", json{{"command", "true"},
                                      {"timeout_seconds", 1.5}}),
              400, "invalid_request", "whole number");
  check_error(api.post("/tasks", json{{"command", "true"},
                                      {"env", {{"A", 1}}}}),
              400, "invalid_request", "'env'[\"A\"] must be a string");
  check_error(api.post("/tasks", json{{"command", "true"},
                                      {"labels", json::array()}}),
              400, "invalid_request", "'labels' must be an object");
  check_error(api.post("/tasks", json{{"command", "true"}, {"priorty", "HIGH"}}),
              400, "invalid_request", "unknown field 'priorty'");
  check_error(api.post("/tasks", json{{"command", "true"},
                                      {"run_at", "tomorrow"}}),
              400, "invalid_request", "RFC 3339");
  check_error(api.post("/tasks", "[]"), 400, "invalid_request",
              "the task array is empty");
  // nlohmann alone keeps the last of two equal keys.
  check_error(api.post("/tasks", R"({"command": "true", "command": "rm -rf x"})"),
              400, "invalid_request",
              "the key \"command\" appears twice in one object");
  check_error(api.post("/tasks", R"([{"command": "true"},
                                    {"command": "true", "env": {"A": "1", "A": "2"}}])"),
              400, "invalid_request", "the key \"A\" appears twice");
  check_error(api.post("/tasks", "[{\"command\": \"true\"}, 3]"), 400,
              "invalid_request", "[1] must be a JSON object, not a number");
  check_error(api.post("/tasks", "\"just a string\""), 400, "invalid_request",
              "a task object or an array");
  std::string big(5000, 'x');
  check_error(api.post("/tasks", json{{"command", big}}), 413,
              "payload_too_large", "bytes; the limit is 4096 (--max-body-bytes)");
  json too_many = json::array();
  for (int i = 0; i < 501; ++i)
    too_many.push_back(json{{"command", "t"}});
  auto many = api.post("/tasks", too_many.dump());
  CHECK((many.status == 413 || many.status == 400));
  check_error(api.get("/tasks/99999"), 404, "not_found",
              "no task with id '99999'");
  check_error(api.get("/tasks/abc"), 404, "not_found", "no task with id 'abc'");
  check_error(api.get("/tasks?status=DONE"), 400, "invalid_request",
              "'status' must be one of");
  check_error(api.get("/tasks?status=QUEUED&status=FAILED"), 400,
              "invalid_request",
              "query parameter 'status' is given more than once");
  check_error(api.get("/tasks?priority=lowest"), 400, "invalid_request",
              "'priority' must be one of");
  check_error(api.get("/tasks?limit=0"), 400, "invalid_request",
              "'limit' must be a whole number from 1 to 1000, not \"0\"");
  check_error(api.get("/tasks?limit=abc"), 400, "invalid_request", "'limit'");
  check_error(api.get("/tasks?cursor=-3"), 400, "invalid_request", "'cursor'");
  check_error(api.get("/tasks/1?wait=3600"), 400, "invalid_request", "'wait'");
  // A misspelled filter used to list every task.
  check_error(api.get("/tasks?stauts=FAILED"), 400, "invalid_request",
              "unknown query parameter 'stauts' (this route takes 'status', "
              "'priority', 'limit' and 'cursor')");
  check_error(api.get("/tasks/1?wiat=5"), 400, "invalid_request",
              "unknown query parameter 'wiat'");
  check_error(api.get("/nowhere"), 404, "not_found", "no route for GET /nowhere");
  // Routes that take none say so (POST /tasks?wait=30 submitted without
  // waiting, silently).
  check_error(api.post("/tasks?wait=30", json{{"command", "true"}}), 400,
              "invalid_request",
              "unknown query parameter 'wait' (this route takes none)");
  check_error(api.post("/tasks/" + std::to_string(id_of(kept)) + "/cancel?now",
                       json::object()),
              400, "invalid_request", "unknown query parameter 'now'");
  check_error(api.get("/workers?x=1"), 400, "invalid_request",
              "unknown query parameter 'x'");
  check_error(api.get("/stats?x=1"), 400, "invalid_request",
              "unknown query parameter 'x'");

  // Still serving, and the accepted task is intact.
  CHECK(api.get("/healthz").status == 200);
  auto t = api.get("/tasks/" + std::to_string(id_of(kept)));
  CHECK(t.status == 200);
  CHECK(t.body["command"] == "echo keep me");
  CHECK(t.body["status"] == "QUEUED");
  CHECK(api.get("/tasks").body["tasks"].size() == 1);
  // A small JSON body sent as a form (curl's plain -d) is still a
  // submission: httplib reads its "parameters" from the body, which are not
  // the query's.
  httplib::Client form{m.url()};
  auto as_form = form.Post("/tasks", R"({"command": "echo form"})",
                           "application/x-www-form-urlencoded");
  REQUIRE(as_form);
  CHECK(as_form->status == 201);
  // Equal keys in different objects are fine.
  auto apart = api.post("/tasks", R"([{"command": "true", "env": {"A": "1"}},
                                      {"command": "true", "env": {"A": "2"}}])");
  CHECK(apart.status == 201);
}

TEST_CASE("a batch limit and the body limit are enforced", "[http][errors]") {
  in_process_master m{with_http(0)};
  api_client api{m.url()};
  json too_many = json::array();
  for (int i = 0; i < 501; ++i)
    too_many.push_back(json{{"command", "t"}});
  check_error(api.post("/tasks", too_many), 400, "invalid_request",
              "the batch has 501 tasks; the limit is 500");
  CHECK(api.get("/tasks").body["tasks"].empty());
}

TEST_CASE("a request refused on its head is answered at once and its body "
          "is never read as a request",
          "[http][errors]") {
  auto opts = with_http(0, 0, 4096);
  opts.gateway.routes.api_token = "0123456789abcdef-token";
  in_process_master m{opts};
  std::string auth = "Authorization: Bearer 0123456789abcdef-token\r\n";
  // A body declared far over the limit, of which only a few bytes come:
  // httplib alone would wait its 30 s read timeout for the rest.
  auto started = std::chrono::steady_clock::now();
  auto huge = raw_request(m.url(), "POST /tasks HTTP/1.1\r\nHost: t\r\n" + auth
                                     + "Content-Type: application/json\r\n"
                                       "Content-Length: 1000000000\r\n\r\n"
                                       "{\"command\": ");
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
  INFO(huge);
  CHECK(huge.rfind("HTTP/1.1 413", 0) == 0);
  CHECK(huge.find("Connection: close") != std::string::npos);
  CHECK(huge.find("the request body is 1000000000 bytes; the limit is 4096 "
                  "(--max-body-bytes)")
        != std::string::npos);
  // With Expect: 100-continue the refusal comes instead of "100 Continue".
  auto expecting = raw_request(m.url(), "POST /tasks HTTP/1.1\r\nHost: t\r\n"
                                          + auth
                                          + "Expect: 100-continue\r\n"
                                            "Content-Length: 5000\r\n\r\n");
  INFO(expecting);
  CHECK(expecting.rfind("HTTP/1.1 413", 0) == 0);
  CHECK(expecting.find("100 Continue") == std::string::npos);
  // A body that looks like a request, behind a head that is refused (a
  // wrong token), on a keep-alive connection: one answer, then the
  // connection closes. Before, the body was served as a second request.
  std::string smuggled = "GET /tasks HTTP/1.1\r\nHost: t\r\n" + auth + "\r\n";
  auto refused = raw_request(
    m.url(), fmt::format("POST /tasks HTTP/1.1\r\nHost: t\r\n"
                         "Authorization: Bearer wrong-token-0123456789\r\n"
                         "Content-Length: {}\r\n\r\n{}",
                         smuggled.size(), smuggled));
  INFO(refused);
  CHECK(refused.rfind("HTTP/1.1 401", 0) == 0);
  CHECK(refused.find("HTTP/1.1", 1) == std::string::npos);
  // Framings that parties may read differently are refused, and close: a
  // signed or listed length (httplib reads "+N" as N), two lengths, a
  // length beside chunked, another encoding.
  for (const std::string& framing :
       {fmt::format("Content-Length: +{}\r\n", smuggled.size()),
        fmt::format("Content-Length: {0}\r\nContent-Length: {0}\r\n",
                    smuggled.size()),
        fmt::format("Content-Length: {0},{0}\r\n", smuggled.size()),
        fmt::format("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    smuggled.size()),
        std::string{"Transfer-Encoding: gzip, chunked\r\n"}}) {
    auto answer = raw_request(m.url(), "POST /tasks HTTP/1.1\r\nHost: t\r\n"
                                         + auth + framing + "\r\n" + smuggled);
    INFO(framing << answer);
    CHECK(answer.rfind("HTTP/1.1 400", 0) == 0);
    CHECK(answer.find("HTTP/1.1", 1) == std::string::npos);
  }
  // httplib's own refusals before the headers are through (a URI over its
  // 8 KiB) close too.
  auto long_uri = raw_request(
    m.url(), fmt::format("POST /tasks?{} HTTP/1.1\r\nHost: t\r\n"
                         "Content-Length: {}\r\n\r\n{}",
                         std::string(9000, 'a'), smuggled.size(), smuggled));
  INFO(long_uri.substr(0, 200));
  CHECK(long_uri.rfind("HTTP/1.1 414", 0) == 0);
  CHECK(long_uri.find("HTTP/1.1", 1) == std::string::npos);
  // A request whose body was read (here refused after reading: not JSON)
  // keeps its connection for the next one.
  auto kept = raw_request(
    m.url(), "POST /tasks HTTP/1.1\r\nHost: t\r\n" + auth
               + "Content-Type: application/json\r\nContent-Length: 5\r\n"
                 "\r\nnope!"
                 "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                 "\r\n");
  INFO(kept);
  CHECK(kept.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(kept.find("HTTP/1.1 200", 1) != std::string::npos);
  // The API still serves, and nothing was submitted.
  httplib::Client client{m.url()};
  client.set_default_headers({{"Authorization", "Bearer 0123456789abcdef-token"}});
  auto listing = client.Get("/tasks");
  REQUIRE(listing);
  CHECK(listing->status == 200);
  CHECK(nlohmann::json::parse(listing->body)["tasks"].empty());
}

TEST_CASE("an idempotency key returns the existing task", "[http][tasks]") {
  in_process_master m{with_http(0)};
  api_client api{m.url()};
  auto task = json{{"command", "backup"}, {"idempotency_key", "backup-42"}};
  auto first = api.post("/tasks", task);
  CHECK(first.status == 201);
  auto again = api.post("/tasks", task);
  CHECK(again.status == 200);
  CHECK(id_of(again) == id_of(first));
  CHECK(api.get("/tasks").body["tasks"].size() == 1);
}

TEST_CASE("an idempotency key reused for another task answers 409 and "
          "accepts nothing",
          "[http][tasks][errors]") {
  in_process_master m{with_http(0)};
  api_client api{m.url()};
  auto first = api.post("/tasks", json{{"command", "backup /srv"},
                                       {"idempotency_key", "backup-42"}});
  REQUIRE(first.status == 201);
  check_error(api.post("/tasks", json{{"command", "backup /home"},
                                      {"idempotency_key", "backup-42"}}),
              409, "conflict",
              fmt::format("idempotency_key 'backup-42' already names task {}, "
                          "which was submitted with a different command; a "
                          "new task needs a new key",
                          id_of(first)));
  json batch = json::array({json{{"command", "other"}},
                            json{{"command", "a"}, {"idempotency_key", "k"}},
                            json{{"command", "b"}, {"idempotency_key", "k"}}});
  check_error(api.post("/tasks", batch), 409, "conflict",
              "[2]: idempotency_key 'k' is also given to [1] with a different "
              "command; a new task needs a new key (nothing in the batch was "
              "accepted)");
  CHECK(api.get("/tasks").body["tasks"].size() == 1);
}

TEST_CASE("a full queue answers 429 with Retry-After and keeps what it has",
          "[http][backpressure]") {
  in_process_master m{with_http(0, 3)};
  api_client api{m.url()};
  json three = json::array({json{{"command", "a"}}, json{{"command", "b"}},
                            json{{"command", "c"}}});
  REQUIRE(api.post("/tasks", three).status == 201);
  auto refused = api.post("/tasks", json{{"command", "d"}});
  check_error(refused, 429, "queue_full", "the queue is full");
  CHECK(refused.retry_after == "1");
  CHECK(api.get("/tasks").body["tasks"].size() == 3);
}

TEST_CASE("long polls take at most half the HTTP threads; the rest of the "
          "API stays answerable",
          "[http][tasks]") {
  auto o = with_http(0);
  o.gateway.threads = 4; // two may hold long polls
  in_process_master m{o};
  api_client api{m.url()};
  // No worker: the task stays QUEUED, and every poll could wait 20 s.
  auto id = std::to_string(id_of(api.post("/tasks", json{{"command", "true"}})));
  std::vector<std::future<http_answer>> polls;
  for (int i = 0; i < 2; ++i) {
    polls.push_back(std::async(std::launch::async, [&] {
      return api_client{m.url()}.get("/tasks/" + id + "?wait=20");
    }));
  }
  // Both waiting (a local request, on a loaded machine).
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (auto& p : polls)
    REQUIRE(p.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);
  // A third poll answers at once with the task as it is, and so does
  // everything else. (Before, the fourth request of any kind waited behind
  // the polls for up to 20 s.)
  auto start = std::chrono::steady_clock::now();
  auto third = api.get("/tasks/" + id + "?wait=20");
  CHECK(third.status == 200);
  CHECK(third.body["status"] == "QUEUED");
  CHECK(api.get("/healthz").status == 200);
  CHECK(api.get("/stats").status == 200);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  // The task ends: the waiting polls answer.
  api.post("/tasks/" + id + "/cancel", json::object());
  for (auto& p : polls) {
    REQUIRE(p.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(p.get().body["status"] == "CANCELLED");
  }
}

TEST_CASE("busy keep-alive connections give their thread up when another "
          "connection waits",
          "[http][errors]") {
  auto o = with_http(0);
  o.gateway.threads = 2;
  in_process_master m{o};
  // Two clients on keep-alive connections, each asking every 200 ms (a
  // dashboard tab does so every few seconds): before, they held both
  // threads for as long as they kept asking.
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> pollers;
  for (int i = 0; i < 2; ++i)
    pollers.emplace_back([&] {
      httplib::Client poller{m.url()};
      poller.set_keep_alive(true);
      while (!stop) {
        auto res = poller.Get("/workers");
        // A connection closed while idle can cross a request on its way:
        // like any HTTP client, ask again on a new one.
        if (!res)
          res = poller.Get("/workers");
        if (!res || res->status != 200)
          ++failures;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto start = std::chrono::steady_clock::now();
  CHECK(api_client{m.url()}.get("/healthz").status == 200);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
  stop = true;
  for (auto& t : pollers)
    t.join();
  CHECK(failures == 0);
}

TEST_CASE("a request trickling in is cut off while other connections wait",
          "[http][errors]") {
  auto o = with_http(0);
  o.gateway.threads = 2;
  o.gateway.slow_request_limit = std::chrono::seconds(1);
  in_process_master m{o};
  // Two clients that each send a byte of their body every 200 ms, well
  // within the read timeout: before, they held both threads for as long as
  // they kept going, and every other client waited.
  std::atomic<bool> stop{false};
  std::atomic<int> cut{0};
  std::vector<std::thread> tricklers;
  for (int i = 0; i < 2; ++i)
    tricklers.emplace_back([&] {
      boost::asio::io_context ioc;
      boost::asio::ip::tcp::socket sock{ioc};
      auto host = connect_to(sock, m.url());
      boost::system::error_code ec;
      boost::asio::write(sock,
                         boost::asio::buffer("POST /tasks HTTP/1.1\r\nHost: "
                                             + host
                                             + "\r\nContent-Type: "
                                               "application/json\r\n"
                                               "Content-Length: 1000\r\n\r\n"),
                         ec);
      while (!stop && !ec) {
        boost::asio::write(sock, boost::asio::buffer(" ", 1), ec);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      if (ec)
        ++cut;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto start = std::chrono::steady_clock::now();
  CHECK(api_client{m.url()}.get("/healthz").status == 200);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(8));
  // The cut connection is closed: its next writes fail.
  CHECK(eventually([&] { return cut >= 1; }));
  stop = true;
  for (auto& t : tricklers)
    t.join();
  // Nothing of a cut request was admitted.
  CHECK(api_client{m.url()}.get("/tasks").body["tasks"].empty());
}

TEST_CASE("a long poll returns as soon as the task ends", "[http][tasks]") {
  in_process_master m{with_http(1)};
  api_client api{m.url()};
  auto id = id_of(api.post("/tasks", json{{"command", "sleep 0.3; echo done"}}));
  auto start = std::chrono::steady_clock::now();
  auto t = api.get("/tasks/" + std::to_string(id) + "?wait=20");
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(t.body["status"] == "SUCCEEDED");
  CHECK(took < std::chrono::seconds(5));
  // A poll that times out answers with the task as it is.
  auto slow = id_of(api.post("/tasks", json{{"command", "sleep 30"}}));
  auto w = api.get("/tasks/" + std::to_string(slow) + "?wait=1");
  CHECK(w.status == 200);
  CHECK((w.body["status"] == "RUNNING" || w.body["status"] == "QUEUED"));
}
