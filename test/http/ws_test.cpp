#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "http/gateway_server.hpp"
#include "test/support/cluster.hpp"
#include "test/support/connect.hpp"
#include "test/support/in_process_master.hpp"
#include "test/support/wait.hpp"

using namespace taskmaster;
using namespace taskmaster::test;
using namespace std::chrono_literals;

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

namespace {

/// A blocking WebSocket client for the stream.
class ws_client {
public:
  ws_client(const std::string& url, const std::string& target)
    : ws_(ioc_) {
    ws_.handshake(answer, connect_to(ws_.next_layer(), url), target);
  }

  /// The server's answer to the upgrade.
  websocket::response_type answer;

  /// The next message, or null after `limit`.
  json next(std::chrono::milliseconds limit = 5s) {
    // Read on a helper thread so the wait is bounded.
    beast::flat_buffer buffer;
    beast::error_code ec;
    bool done = false;
    ws_.async_read(buffer, [&](beast::error_code e, size_t) {
      ec = e;
      done = true;
    });
    ioc_.restart();
    ioc_.run_for(limit);
    if (!done) {
      beast::get_lowest_layer(ws_).cancel();
      ioc_.restart();
      ioc_.run();
      return nullptr;
    }
    if (ec)
      return nullptr;
    return json::parse(beast::buffers_to_string(buffer.data()));
  }

  /// Messages until `pred` holds for one (returned) or the limit passes.
  json until(const std::function<bool(const json&)>& pred,
             std::chrono::milliseconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      auto msg = next(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()));
      if (msg.is_null())
        return nullptr;
      seen.push_back(msg);
      if (pred(msg))
        return msg;
    }
    return nullptr;
  }

  std::vector<json> seen;

private:
  asio::io_context ioc_;
  websocket::stream<tcp::socket> ws_;
};

in_process_master::options with_stream(uint32_t slots,
                                       size_t max_queue_bytes = 16 << 20) {
  in_process_master::options o;
  o.worker_slots = slots;
  o.http = true;
  o.gateway.websocket.max_queue_bytes = max_queue_bytes;
  return o;
}

} // namespace

TEST_CASE("a stream client gets a snapshot, then a task's events in order "
          "QUEUED, RUNNING, SUCCEEDED",
          "[http][ws]") {
  in_process_master m{with_stream(1)};
  api_client api{m.url()};
  REQUIRE(wait_for_workers(api, 1));
  ws_client ws{m.url(), "/ws"};
  // How often a silent client is pinged (the default), for clients that
  // want to tell a stuck server from a quiet one.
  CHECK(ws.answer[http::ping_interval_header] == "15000");
  auto snap = ws.next();
  REQUIRE(snap["type"] == "snapshot");
  CHECK(snap["summary"]["workers_up"] == 1);
  CHECK(snap["workers"].size() == 1);
  auto id = api.post("/tasks", json{{"command", "echo streamed"}}).body["id"];
  std::vector<std::string> statuses;
  json submitted;
  auto last = ws.until([&](const json& msg) {
    if (msg["type"] != "task" || msg["task"]["id"] != id)
      return false;
    statuses.push_back(msg["task"]["status"].get<std::string>());
    if (msg["event"] == "submitted")
      submitted = msg["task"];
    return msg["event"] == "finished";
  });
  REQUIRE(!last.is_null());
  CHECK(statuses == std::vector<std::string>{"QUEUED", "RUNNING", "SUCCEEDED"});
  // Each event shows the task as that change left it, even when the next
  // one followed in the same step: submitted, it ran nowhere yet.
  CHECK(submitted["worker_id"].is_null());
  CHECK(submitted["started_at"].is_null());
  CHECK(submitted["attempts"].empty());
  CHECK(last["task"]["exit_code"] == 0);
  // Each change says when it happened: the finish at the task's finished_at.
  CHECK(last["at"] == last["task"]["finished_at"]);
  // Sequence numbers increase.
  uint64_t prev = 0;
  for (const auto& msg : ws.seen)
    if (msg["type"] == "task") {
      CHECK(msg["seq"].get<uint64_t>() > prev);
      prev = msg["seq"].get<uint64_t>();
      CHECK(core::parse_rfc3339(msg["at"].get<std::string>()));
    }
}

TEST_CASE("task and worker events of one batch reach clients in seq order",
          "[http][ws]") {
  in_process_master m{with_stream(1)};
  api_client api{m.url()};
  REQUIRE(wait_for_workers(api, 1));
  ws_client ws{m.url(), "/ws"};
  auto snap = ws.next();
  REQUIRE(snap["type"] == "snapshot");
  auto seq = snap["seq"].get<uint64_t>();
  // One batch covering two plans: tasks then a worker, then a task. The
  // scheduler numbers events in the order they happened.
  event_batch batch;
  auto task_event_at = [](uint64_t s, core::task_id id) {
    task_event e;
    e.seq = s;
    e.change.id = id;
    e.change.to = core::task_status::queued;
    e.task.id = id;
    e.task.spec.command = "true";
    return e;
  };
  batch.tasks.push_back(task_event_at(seq + 1, 9001));
  batch.tasks.push_back(task_event_at(seq + 2, 9002));
  batch.tasks.push_back(task_event_at(seq + 4, 9003));
  worker_event w;
  w.seq = seq + 3;
  w.change.id = "batched";
  w.worker.info.id = "batched";
  batch.workers.push_back(w);
  batch.seq = seq + 4;
  caf::anon_send(m.monitor(), event_atom::value, std::move(batch));
  std::vector<uint64_t> got;
  for (int i = 0; i < 4; ++i) {
    auto msg = ws.next();
    REQUIRE(!msg.is_null());
    got.push_back(msg["seq"].get<uint64_t>());
  }
  CHECK(got == std::vector<uint64_t>{seq + 1, seq + 2, seq + 3, seq + 4});
}

TEST_CASE("?task= and ?topics= filter the stream", "[http][ws]") {
  in_process_master m{with_stream(2)};
  api_client api{m.url()};
  REQUIRE(wait_for_workers(api, 1));
  auto watched = api.post("/tasks", json{{"command", "sleep 0.3"}}).body["id"];
  ws_client one{m.url(), "/ws?task=" + watched.dump()};
  auto snap = one.next();
  REQUIRE(snap["type"] == "snapshot");
  REQUIRE(snap["tasks"].size() == 1);
  CHECK(snap["tasks"][0]["id"] == watched);
  CHECK(snap["workers"].size() == 1);
  api.post("/tasks", json{{"command", "true"}});
  auto end = one.until([](const json& msg) { return msg["event"] == "finished"; });
  REQUIRE(!end.is_null());
  for (const auto& msg : one.seen) {
    CHECK(msg["type"] == "task");
    CHECK(msg["task"]["id"] == watched);
  }
  // A snapshot carries only what the topics cover (the summary always).
  ws_client workers_only{m.url(), "/ws?topics=workers"};
  auto workers_snap = workers_only.next();
  CHECK(workers_snap["type"] == "snapshot");
  CHECK(workers_snap.contains("summary"));
  CHECK(workers_snap["workers"].size() == 1);
  CHECK(!workers_snap.contains("tasks"));
  api.post("/tasks", json{{"command", "true"}});
  CHECK(workers_only.next(700ms).is_null());
  ws_client stats_only{m.url(), "/ws?topics=stats"};
  auto stats_snap = stats_only.next();
  CHECK(stats_snap["type"] == "snapshot");
  CHECK(stats_snap["summary"]["workers_up"] == 1);
  CHECK(!stats_snap.contains("tasks"));
  CHECK(!stats_snap.contains("workers"));
  CHECK(stats_only.next(3s)["type"] == "stats");
}

TEST_CASE("a client that never reads delays neither other clients nor "
          "dispatch, and is resynced then dropped",
          "[http][ws][backpressure]") {
  in_process_master m{with_stream(2, 1 << 20)};
  api_client api{m.url()};
  REQUIRE(wait_for_workers(api, 1));
  // The slow client: a raw socket that completes the handshake and then
  // never reads, with a tiny receive buffer so the server feels it at once.
  asio::io_context ioc;
  websocket::stream<tcp::socket> slow{ioc};
  slow.next_layer().open(tcp::v4());
  slow.next_layer().set_option(asio::socket_base::receive_buffer_size(1024));
  slow.handshake(connect_to(slow.next_layer(), m.url()), "/ws");
  ws_client fast{m.url(), "/ws"};
  REQUIRE(fast.next()["type"] == "snapshot");
  REQUIRE(eventually([&] { return m.websocket_sessions() == 2; }));
  // Many events with long commands, in modest batches: far more than the
  // slow client's 1 MiB queue and the socket buffers can hold in all.
  std::string padding(2000, 'x');
  auto start = std::chrono::steady_clock::now();
  json last_id;
  for (int b = 0; b < 15; ++b) {
    json batch = json::array();
    for (int i = 0; i < 100; ++i)
      batch.push_back(json{{"command", "true # " + padding}});
    auto a = api.post("/tasks", batch);
    REQUIRE(a.status == 201);
    last_id = a.body.back()["id"];
  }
  // Two slots: tasks end in any order, so wait for every end (or a resync,
  // after which the fast client legitimately missed some events).
  std::set<uint64_t> finished;
  size_t resyncs = 0;
  auto done = fast.until(
    [&](const json& msg) {
      if (msg["type"] == "snapshot")
        ++resyncs;
      if (msg["type"] == "task" && msg["event"] == "finished")
        CHECK(finished.insert(msg["task"]["id"].get<uint64_t>()).second);
      return finished.size() == 1500 || resyncs > 0;
    },
    60s);
  REQUIRE(!done.is_null());
  auto took = std::chrono::steady_clock::now() - start;
  WARN("1500 tasks dispatched and streamed to the fast client in "
       << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
       << " ms while another client read nothing");
  // The fast client saw each task's end at most once (checked above), and
  // all of them unless it fell behind itself (a loaded machine) and was
  // resynced.
  if (resyncs == 0)
    CHECK(finished.size() == 1500);
  else
    WARN("the fast client was resynced after " << finished.size() << " ends");
  CHECK(eventually(
    [&] {
      return api.get("/tasks/" + last_id.dump()).body["status"] == "SUCCEEDED";
    },
    60s));
  // The slow client fell behind by more than its queue again and again.
  CHECK(eventually([&] { return m.websocket_sessions() == 1; }, 10s));
}

TEST_CASE("bad upgrade requests are rejected cleanly", "[http][ws]") {
  in_process_master m{with_stream(0)};
  auto host = m.url().substr(7);
  auto plain = raw_request(m.url(), "GET /ws HTTP/1.1\r\nHost: " + host
                                      + "\r\nConnection: close\r\n\r\n");
  CHECK(plain.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(plain.find("expects a WebSocket upgrade") != std::string::npos);
  auto no_key = raw_request(m.url(), "GET /ws HTTP/1.1\r\nHost: " + host
                                       + "\r\nConnection: Upgrade\r\n"
                                         "Upgrade: websocket\r\n\r\n");
  CHECK(no_key.rfind("HTTP/1.1 400", 0) == 0);
  // A complete upgrade request for `target`, answered or refused.
  auto upgrade_to = [&](const std::string& target) {
    return raw_request(m.url(),
                       "GET " + target + " HTTP/1.1\r\nHost: " + host
                         + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                           "Sec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  };
  auto bad_task = upgrade_to("/ws?task=abc");
  CHECK(bad_task.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(bad_task.find("'task' must be a task id") != std::string::npos);
  auto bad_topic = upgrade_to("/ws?topics=gossip");
  CHECK(bad_topic.find("unknown topic") != std::string::npos);
  auto task_without_tasks = upgrade_to("/ws?task=1&topics=workers");
  CHECK(task_without_tasks.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(task_without_tasks.find("'task' needs the tasks topic")
        != std::string::npos);
  auto twice = upgrade_to("/ws?topics=tasks&topics=workers");
  CHECK(twice.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(twice.find("query parameter 'topics' is given more than once")
        != std::string::npos);
  auto unknown = upgrade_to("/ws?foo=1");
  CHECK(unknown.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(unknown.find("unknown query parameter 'foo'") != std::string::npos);
  auto garbage = raw_request(m.url(), "\x01\x03\x01 not http at all\r\n\r\n");
  CHECK(garbage.find("200 OK") == std::string::npos);
  // The start of a TLS ClientHello (no blank line will ever come): told at
  // once that this port is plain HTTP.
  auto hello = raw_request(m.url(), std::string{"\x16\x03\x01\x02\x00\x01\x00", 7});
  CHECK(hello.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(hello.find("this port serves plain HTTP, not TLS") != std::string::npos);
  // The server still serves.
  api_client api{m.url()};
  CHECK(api.get("/healthz").status == 200);
  ws_client ok{m.url(), "/ws"};
  CHECK(ok.next()["type"] == "snapshot");
}

TEST_CASE("upgrade detection reads only what it must", "[http][ws]") {
  using http::is_websocket_upgrade;
  CHECK(is_websocket_upgrade("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"));
  CHECK(is_websocket_upgrade("GET /ws?task=3 HTTP/1.1\r\nUPGRADE: WebSocket\r\n\r\n"));
  CHECK_FALSE(is_websocket_upgrade("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK_FALSE(is_websocket_upgrade("GET /wsx HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
  CHECK_FALSE(is_websocket_upgrade("POST /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
  CHECK_FALSE(is_websocket_upgrade("GET /tasks HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
  CHECK_FALSE(is_websocket_upgrade("GET /ws"));
}

TEST_CASE("stopping the gateway closes stream sessions with a close frame",
          "[http][ws]") {
  auto m = std::make_unique<in_process_master>(with_stream(0));
  ws_client ws{m->url(), "/ws"};
  REQUIRE(ws.next()["type"] == "snapshot");
  m.reset();
  // The close frame ends the read: no hang, no message.
  CHECK(ws.next(3s).is_null());
}
