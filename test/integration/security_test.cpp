#include <catch2/catch.hpp>

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <httplib.h>

#include "test/support/cluster.hpp"
#include "test/support/connect.hpp"
#include "test/support/wait.hpp"

using namespace taskmaster::test;
using namespace std::chrono_literals;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

const std::string token = "s3cret-token-for-tests-0123456789";

int run(const temp_dir& dir, std::vector<std::string> args,
        const std::string& name, std::vector<std::string> env = {}) {
  args.insert(args.begin(), taskmasterd_path());
  process p{args, dir / (name + ".out"), dir / (name + ".err"), env};
  return p.wait(30s).value_or(-1);
}

/// Sends a WebSocket upgrade request by hand and returns the server's whole
/// answer (status line, headers, body), read until the server closes or
/// 101 arrives.
std::string raw_upgrade(const std::string& url, const std::string& target,
                        const std::string& extra_headers = {}) {
  asio::io_context ioc;
  tcp::socket sock{ioc};
  auto hostport = connect_to(sock, url);
  auto request = "GET " + target + " HTTP/1.1\r\nHost: " + hostport
                 + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 + extra_headers + "\r\n";
  asio::write(sock, asio::buffer(request));
  std::string response;
  char buf[4096];
  beast::error_code ec;
  while (!ec) {
    auto n = sock.read_some(asio::buffer(buf), ec);
    response.append(buf, n);
    if (response.rfind("HTTP/1.1 101", 0) == 0
        && response.find("\r\n\r\n") != std::string::npos)
      break;
  }
  return response;
}

int status_of(const std::string& response) {
  return response.size() > 12 ? std::stoi(response.substr(9, 3)) : 0;
}

bool listed(const api_client& api, const std::string& worker) {
  return !worker_state(api, worker).empty();
}

/// A TLS-terminating reverse proxy on a free loopback port, as a user puts
/// in front of the API: TLS with `cert` outside, plain TCP to `backend`.
class tls_proxy {
public:
  tls_proxy(const std::string& cert, const std::string& key, uint16_t backend)
    : tls_(asio::ssl::context::tls_server),
      acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}),
      backend_(asio::ip::make_address("127.0.0.1"), backend) {
    tls_.use_certificate_chain_file(cert);
    tls_.use_private_key_file(key, asio::ssl::context::pem);
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~tls_proxy() {
    ioc_.stop();
    thread_.join();
  }

  std::string url() const {
    return "https://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

private:
  /// One client: bytes both ways until either side closes.
  struct session : std::enable_shared_from_this<session> {
    session(asio::io_context& ioc, asio::ssl::context& tls)
      : outside(ioc, tls), inside(ioc) {}

    void start(tcp::endpoint backend) {
      auto self = shared_from_this();
      outside.async_handshake(asio::ssl::stream_base::server,
                              [self, backend](beast::error_code ec) {
        if (ec)
          return self->close();
        self->inside.async_connect(backend, [self](beast::error_code ec) {
          if (ec)
            return self->close();
          self->pump(self->outside, self->inside, self->up);
          self->pump(self->inside, self->outside, self->down);
        });
      });
    }

    template <class From, class To>
    void pump(From& from, To& to, std::array<char, 16384>& buf) {
      auto self = shared_from_this();
      from.async_read_some(asio::buffer(buf), [self, &from, &to, &buf](
                                                 beast::error_code ec,
                                                 size_t n) {
        if (ec)
          return self->close();
        asio::async_write(to, asio::buffer(buf.data(), n),
                          [self, &from, &to, &buf](beast::error_code ec,
                                                   size_t) {
          if (ec)
            return self->close();
          self->pump(from, to, buf);
        });
      });
    }

    void close() {
      beast::error_code ignored;
      outside.lowest_layer().close(ignored);
      inside.close(ignored);
    }

    asio::ssl::stream<tcp::socket> outside;
    tcp::socket inside;
    std::array<char, 16384> up{};
    std::array<char, 16384> down{};
  };

  void accept() {
    auto next = std::make_shared<session>(ioc_, tls_);
    acceptor_.async_accept(next->outside.lowest_layer(),
                           [this, next](beast::error_code ec) {
                             if (!ec)
                               next->start(backend_);
                             accept();
                           });
  }

  asio::io_context ioc_;
  asio::ssl::context tls_;
  tcp::acceptor acceptor_;
  tcp::endpoint backend_;
  std::thread thread_;
};

} // namespace

TEST_CASE("with an API token every request but /healthz needs it",
          "[integration][security][auth]") {
  temp_dir dir;
  auto master = daemon::master(dir, "master", {"--api-token=" + token}, true);
  api_client anonymous{master->http_url()};
  api_client wrong{master->http_url(), "not-the-token-at-all"};
  api_client good{master->http_url(), token};
  auto refused = anonymous.post("/tasks", json{{"command", "true"}});
  CHECK(refused.status == 401);
  CHECK(refused.body["error"]["code"] == "unauthorized");
  for (const char* path : {"/tasks", "/workers", "/metrics", "/stats", "/tasks/1"})
    CHECK(anonymous.get(path).status == 401);
  CHECK(wrong.get("/tasks").status == 401);
  CHECK(wrong.get("/tasks").body["error"]["message"] == "the API token is wrong");
  CHECK(anonymous.get("/healthz").status == 200);
  CHECK(anonymous.get("/").status == 200);
  auto accepted = good.post("/tasks", json{{"command", "echo authorized"}});
  REQUIRE(accepted.status == 201);
  CHECK(good.wait_final(accepted.body["id"].get<uint64_t>())["stdout"]
        == "authorized\n");
  CHECK(good.get("/metrics").status == 200);
  // The WebSocket: refused without a token, accepted with it in the header,
  // the query or a subprotocol.
  auto refusal = raw_upgrade(master->http_url(), "/ws");
  CHECK(status_of(refusal) == 401);
  CHECK(refusal.find("needs the API token") != std::string::npos);
  auto wrong_token = raw_upgrade(master->http_url(), "/ws?token=wrong-token-xxxxxxxx");
  CHECK(status_of(wrong_token) == 401);
  CHECK(wrong_token.find("the API token is wrong") != std::string::npos);
  CHECK(status_of(raw_upgrade(master->http_url(), "/ws",
                              "Authorization: Bearer " + token + "\r\n"))
        == 101);
  CHECK(status_of(raw_upgrade(master->http_url(), "/ws?token=" + token)) == 101);
  auto by_protocol = raw_upgrade(master->http_url(), "/ws",
                                 "Sec-WebSocket-Protocol: taskmaster, "
                                 "taskmaster.bearer." + token + "\r\n");
  CHECK(status_of(by_protocol) == 101);
  CHECK(by_protocol.find("Sec-WebSocket-Protocol: taskmaster\r\n")
        != std::string::npos);
  // The client takes the token from --token or the environment.
  auto server = "--server=" + master->http_url();
  CHECK(run(dir, {"tasks", server}, "no-token") == 1);
  CHECK(read_file(dir / "no-token.err").find("(401)") != std::string::npos);
  CHECK(read_file(dir / "no-token.err")
          .find("pass --token or set TASKMASTER_API_TOKEN")
        != std::string::npos);
  CHECK(run(dir, {"tasks", server, "--token=" + token}, "flag") == 0);
  CHECK(run(dir, {"tasks", server}, "env", {"TASKMASTER_API_TOKEN=" + token})
        == 0);
  CHECK(run(dir, {"watch", server, "--task=1"}, "watch-env",
            {"TASKMASTER_API_TOKEN=" + token})
        == 0);
  // A stream the server refuses: its reason, not the WebSocket library's.
  CHECK(run(dir, {"watch", server, "--token=not-the-token"}, "watch-wrong")
        == 1);
  CHECK(read_file(dir / "watch-wrong.err")
        == "taskmasterd: the server refused the stream: the API token is "
           "wrong (401); check --token or TASKMASTER_API_TOKEN\n");
  CHECK(run(dir, {"watch", server}, "watch-none") == 1);
  CHECK(read_file(dir / "watch-none.err").find("; pass --token or set "
                                               "TASKMASTER_API_TOKEN\n")
        != std::string::npos);
  // The token never shows up in the daemon's output.
  CHECK(master->log().find(token) == std::string::npos);
  CHECK(master->output().find(token) == std::string::npos);
}

TEST_CASE("the token comes from a file or the environment, and a task never "
          "sees it",
          "[integration][security][auth]") {
  temp_dir dir;
  {
    std::ofstream f{dir / "token"};
    f << token << "\n";
  }
  auto master = daemon::master(dir, "from-file",
                               {"--api-token-file=" + (dir / "token")}, true);
  CHECK(master->api().get("/tasks").status == 401);
  CHECK(master->api(token).get("/tasks").status == 200);
  master->proc().stop(SIGTERM, 15s);
  // From the environment of a standalone daemon: its local worker's tasks
  // must not inherit it.
  auto args = std::vector<std::string>{taskmasterd_path(),
                                       "--data-dir=" + (dir / "env-data"),
                                       "--http-port=0", "--cluster-port=0"};
  process p{args, dir / "env.out", dir / "env.err",
            {"TASKMASTER_API_TOKEN=" + token}};
  std::smatch m;
  REQUIRE(eventually([&] {
    return read_file(dir / "env.out").find("API and dashboard") != std::string::npos;
  }));
  auto out = read_file(dir / "env.out");
  auto start = out.find("http://");
  auto url = out.substr(start, out.find('/', start + 7) - start);
  api_client api{url, token};
  CHECK(api_client{url}.get("/tasks").status == 401);
  auto t = api.post("/tasks", json{{"command", "echo \"[${TASKMASTER_API_TOKEN:-}]\""}});
  REQUIRE(t.status == 201);
  CHECK(api.wait_final(t.body["id"].get<uint64_t>())["stdout"] == "[]\n");
  CHECK(run(dir, {"--api-token=short"}, "short") == 2);
  CHECK(read_file(dir / "short.err").find("at least 16 characters")
        != std::string::npos);
}

TEST_CASE("the master refuses open binds without a token or TLS unless told "
          "--insecure",
          "[integration][security][binds]") {
  temp_dir dir;
  CHECK(run(dir, {"--role=master", "--http-bind=0.0.0.0", "--http-port=0",
                  "--cluster-port=0", "--data-dir=" + (dir / "a")},
            "open-http")
        == 2);
  auto line = read_file(dir / "open-http.err");
  CHECK(line.find("refusing to serve the API on 0.0.0.0 without a token")
        != std::string::npos);
  CHECK(std::count(line.begin(), line.end(), '\n') == 1);
  CHECK(run(dir, {"--role=master", "--cluster-bind=0.0.0.0", "--http-port=0",
                  "--cluster-port=0", "--data-dir=" + (dir / "b")},
            "open-cluster")
        == 2);
  CHECK(read_file(dir / "open-cluster.err")
          .find("refusing to open the cluster port on 0.0.0.0 without TLS")
        != std::string::npos);
  // A token makes the open API acceptable.
  auto with_token = daemon::master(dir, "with-token",
                                   {"--http-bind=0.0.0.0", "--api-token=" + token});
  with_token->proc().stop(SIGTERM, 15s);
  // --insecure starts, loudly.
  auto insecure = daemon::master(dir, "insecure",
                                 {"--http-bind=0.0.0.0", "--cluster-bind=0.0.0.0",
                                  "--insecure"});
  CHECK(insecure->log_contains("INSECURE: the API on 0.0.0.0 accepts anyone"));
  CHECK(insecure->log_contains("INSECURE: the cluster port on 0.0.0.0 is "
                               "unauthenticated"));
}

TEST_CASE("with mutual TLS a worker from another CA and a plain worker are "
          "kept out while a good one joins and runs tasks",
          "[integration][security][tls]") {
  temp_dir dir;
  auto certs = dir / "certs";
  auto rogue = dir / "rogue";
  auto script = std::string{TASKMASTER_SOURCE_DIR} + "/scripts/gen-certs.sh";
  REQUIRE(std::system((script + " " + certs + " master good >/dev/null").c_str()) == 0);
  REQUIRE(std::system((script + " " + rogue + " intruder >/dev/null").c_str()) == 0);
  auto tls = [&](const std::string& ca_dir, const std::string& node) {
    return std::vector<std::string>{"--tls-ca=" + ca_dir + "/ca.pem",
                                    "--tls-cert=" + ca_dir + "/" + node + ".pem",
                                    "--tls-key=" + ca_dir + "/" + node + ".key"};
  };
  auto master = daemon::master(dir, "master", tls(certs, "master"));
  auto api = master->api();
  CHECK(master->output().find("mutual TLS") != std::string::npos);
  auto intruder = daemon::worker(dir, master->cluster_addr(), "intruder", 1,
                                 tls(rogue, "intruder"));
  auto plain = daemon::worker(dir, master->cluster_addr(), "plain", 1);
  REQUIRE(intruder->log_contains("cannot reach the master"));
  REQUIRE(plain->log_contains("cannot reach the master"));
  // Each is told what to check (CAF says only "disconnect_during_handshake").
  CHECK(intruder->log_contains("(this worker uses TLS): if the cluster uses "
                               "mutual TLS"));
  CHECK(plain->log_contains("(this worker does not use TLS): if the cluster "
                            "uses mutual TLS"));
  auto good = daemon::worker(dir, master->cluster_addr(), "good", 1,
                             tls(certs, "good"));
  REQUIRE(wait_for_workers(api, 1));
  json tasks = json::array();
  for (int i = 0; i < 5; ++i)
    tasks.push_back(json{{"command", "echo secure-" + std::to_string(i)}});
  auto a = api.post("/tasks", tasks);
  REQUIRE(a.status == 201);
  for (const auto& t : a.body) {
    auto done = api.wait_final(t["id"].get<uint64_t>());
    CHECK(done["status"] == "SUCCEEDED");
    CHECK(done["worker_id"] == "good");
  }
  // The rejected ones kept trying all along; none ever got in, and the good
  // worker was never disconnected by their attempts.
  CHECK_FALSE(listed(api, "intruder"));
  CHECK_FALSE(listed(api, "plain"));
  CHECK(worker_state(api, "good") == "UP");
  CHECK(master->log().find("worker good is LOST") == std::string::npos);
  CHECK(api.metrics()["taskmaster_workers_lost_total"] == 0);
  // Half a TLS configuration is refused at start.
  CHECK(run(dir, {"--role=worker", "--tls-ca=" + certs + "/ca.pem"}, "half") == 2);
  CHECK(read_file(dir / "half.err").find("needs all of --tls-ca, --tls-cert "
                                         "and --tls-key")
        != std::string::npos);
}

TEST_CASE("--run-as runs tasks as another user", "[integration][security][run-as]") {
  if (::geteuid() != 0) {
    WARN("skipped: creating a user and switching to it needs root");
    return;
  }
  const char* user = "taskmaster-test";
  if (::getpwnam(user) == nullptr)
    REQUIRE(std::system("useradd --system --no-create-home taskmaster-test") == 0);
  temp_dir dir;
  auto master = daemon::master(dir, "master");
  auto worker = daemon::worker(dir, master->cluster_addr(), "dropped", 1,
                               {std::string{"--run-as="} + user});
  auto api = master->api();
  REQUIRE(wait_for_workers(api, 1));
  CHECK(worker->log().find("tasks run as root") == std::string::npos);
  auto t = api.post("/tasks", json{{"command", "id -un; echo $HOME $USER; "
                                               "cat /etc/shadow >/dev/null 2>&1 "
                                               "&& echo can-read-shadow || "
                                               "echo no-shadow"}});
  auto done = api.wait_final(t.body["id"].get<uint64_t>());
  CHECK(done["status"] == "SUCCEEDED");
  auto out = done["stdout"].get<std::string>();
  CHECK(out.find("taskmaster-test\n") == 0);
  CHECK(out.find("no-shadow") != std::string::npos);
  // A worker running tasks as root says so.
  auto root_worker = daemon::worker(dir, master->cluster_addr(), "rooted", 1);
  CHECK(root_worker->log_contains("tasks run as root: consider --run-as=USER"));
  CHECK(run(dir, {"--role=worker", "--run-as=no-such-user-here"}, "nouser") == 2);
  CHECK(read_file(dir / "nouser.err").find("no such user 'no-such-user-here'")
        != std::string::npos);
}

TEST_CASE("every request limit is configurable and enforced with a clear "
          "error",
          "[integration][security][limits]") {
  temp_dir dir;
  auto master = daemon::master(
    dir, "master",
    {"--max-command-bytes=100", "--max-name-bytes=10",
     "--max-description-bytes=20", "--max-labels=2", "--max-label-bytes=8",
     "--max-env=2", "--max-env-bytes=16", "--max-body-bytes=100000",
     "--max-batch-tasks=5", "--max-header-bytes=2048",
     "--ws-max-message-bytes=1024", "--ws-max-clients-per-address=3"});
  auto api = master->api();
  auto expect = [&](const json& body, int status, const std::string& text) {
    auto a = api.post("/tasks", body);
    INFO(a.raw);
    CHECK(a.status == status);
    CHECK(a.body["error"]["message"].get<std::string>().find(text)
          != std::string::npos);
  };
  expect(json{{"command", std::string(101, 'x')}}, 400,
         "'command' is 101 bytes long; the limit is 100");
  expect(json{{"command", "true"}, {"name", std::string(11, 'n')}}, 400,
         "'name' is 11 bytes long; the limit is 10");
  expect(json{{"command", "true"}, {"description", std::string(21, 'd')}}, 400,
         "'description' is 21 bytes long; the limit is 20");
  expect(json{{"command", "true"}, {"labels", {{"a", "1"}, {"b", "2"}, {"c", "3"}}}},
         400, "'labels' has 3 entries; the limit is 2");
  expect(json{{"command", "true"}, {"labels", {{"a", "123456789"}}}}, 400,
         "is 9 bytes long; the limit is 8");
  expect(json{{"command", "true"}, {"env", {{"A", "1"}, {"B", "2"}, {"C", "3"}}}},
         400, "'env' has 3 entries; the limit is 2");
  expect(json{{"command", "true"}, {"env", {{"A", std::string(17, 'v')}}}}, 400,
         "is 17 bytes long; the limit is 16");
  json six = json::array();
  for (int i = 0; i < 6; ++i)
    six.push_back(json{{"command", "true"}});
  expect(six, 400, "the batch has 6 tasks; the limit is 5");
  auto big = api.post("/tasks", std::string(100'001, ' '));
  CHECK(big.status == 413);
  CHECK(big.body["error"]["code"] == "payload_too_large");
  // Request heads: one huge header, and many small ones.
  httplib::Client cli{master->http_url()};
  auto huge = cli.Get("/tasks", {{"X-Filler", std::string(3000, 'f')}});
  REQUIRE(huge);
  CHECK(huge->status == 431);
  CHECK(json::parse(huge->body)["error"]["code"] == "headers_too_large");
  httplib::Headers many;
  for (int i = 0; i < 40; ++i)
    many.emplace("X-Filler-" + std::to_string(i), std::string(60, 'f'));
  auto lots = cli.Get("/tasks", many);
  REQUIRE(lots);
  CHECK(lots->status == 431);
  // WebSocket: sessions per address, and the size of what a client sends.
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<std::unique_ptr<websocket::stream<tcp::socket>>> sessions;
  for (int i = 0; i < 3; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>());
    sessions.push_back(std::make_unique<websocket::stream<tcp::socket>>(*contexts.back()));
    auto& ws = *sessions.back();
    ws.handshake(connect_to(ws.next_layer(), master->http_url()), "/ws");
  }
  auto refused = raw_upgrade(master->http_url(), "/ws");
  CHECK(status_of(refused) == 429);
  CHECK(refused.find("the limit is 3 (--ws-max-clients-per-address)")
        != std::string::npos);
  // `watch` turned away alike exits 3, as any command that may succeed
  // later does.
  CHECK(run_taskmasterd(dir, {"watch", "--server=" + master->http_url()},
                        "watch-refused")
        == 3);
  CHECK(read_file(dir / "watch-refused.err")
          .find("the server refused the stream: 3 WebSocket sessions")
        != std::string::npos);
  beast::error_code ec;
  // A message over the limit closes that session with "message too big".
  auto& first = *sessions.front();
  beast::flat_buffer buffer;
  first.read(buffer);  // the snapshot
  first.write(asio::buffer(std::string(2000, 'm')), ec);
  buffer.clear();
  beast::error_code read_ec;
  for (int i = 0; i < 10 && !read_ec; ++i)
    first.read(buffer, read_ec);
  // The server fails the connection (close code 1009, "too big"); the close
  // frame may be cut short by a reset since the oversized message was not
  // read, so any end of the connection counts.
  CHECK(read_ec);
  if (read_ec == websocket::error::closed)
    CHECK(first.reason().code == websocket::close_code::too_big);
  // Still serving.
  CHECK(api.get("/healthz").status == 200);
  CHECK(api.post("/tasks", json{{"command", "true"}}).status == 201);
}

TEST_CASE("behind a TLS proxy the client and watch speak https://, check the "
          "certificate, and an https:// URL on the plain port fails at once",
          "[integration][security][tls]") {
  temp_dir dir;
  auto cert = dir / "proxy.pem";
  auto key = dir / "proxy.key";
  REQUIRE(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 "
                       "-subj /CN=127.0.0.1 -addext "
                       "subjectAltName=IP:127.0.0.1 -keyout "
                       + key + " -out " + cert + " 2>/dev/null")
                        .c_str())
          == 0);
  auto master = daemon::master(dir, "standalone", {}, true);
  tls_proxy proxy{cert, key, master->http_port()};
  auto https = "--server=" + proxy.url();
  auto trusted = std::vector<std::string>{"SSL_CERT_FILE=" + cert};
  CHECK(run(dir, {"submit", "--cmd=echo over-tls", "--wait", https}, "submit",
            trusted)
        == 0);
  CHECK(read_file(dir / "submit.out") == "over-tls\n");
  CHECK(run(dir, {"watch", "--task=1", https}, "watch", trusted) == 0);
  CHECK(read_file(dir / "watch.out").find("task 1 already ended SUCCEEDED\n")
        != std::string::npos);
  // Events stream over wss:// until the watched task ends.
  auto running = master->api()
                   .post("/tasks", json{{"command", "sleep 1"}})
                   .body["id"]
                   .dump();
  CHECK(run(dir, {"watch", "--task=" + running, https}, "watch-live", trusted)
        == 0);
  CHECK(read_file(dir / "watch-live.out")
          .find("task " + running + " SUCCEEDED")
        != std::string::npos);
  // A certificate this machine does not trust: exit 3, saying so, and a
  // wait gives up at once (no server restart fixes a certificate).
  CHECK(run(dir, {"tasks", https}, "untrusted") == 3);
  CHECK(read_file(dir / "untrusted.err").find("TLS certificate is not trusted")
        != std::string::npos);
  CHECK(run(dir, {"task", "1", "--wait", https}, "wait-untrusted") == 3);
  CHECK(run(dir, {"watch", https}, "watch-untrusted") == 3);
  CHECK(read_file(dir / "watch-untrusted.err").find("(TLS: ")
        != std::string::npos);
  // A trusted certificate for another name (it names 127.0.0.1 only).
  auto by_name = "--server=https://localhost:" + proxy.url().substr(18);
  CHECK(run(dir, {"tasks", by_name}, "other-name", trusted) == 3);
  CHECK(read_file(dir / "other-name.err").find("not for this host name")
        != std::string::npos);
  CHECK(run(dir, {"watch", by_name}, "watch-other-name", trusted) == 3);
  CHECK(read_file(dir / "watch-other-name.err").find("(TLS: ")
        != std::string::npos);
  // https:// on taskmasterd's own port: answered at once, not after a
  // timeout, and the client says why.
  auto plain_port = "--server=https://127.0.0.1:"
                    + std::to_string(master->http_port());
  CHECK(run(dir, {"tasks", plain_port}, "wrong-scheme") == 3);
  CHECK(read_file(dir / "wrong-scheme.err")
          .find("if this is taskmasterd's own port: it serves plain HTTP")
        != std::string::npos);
  // The API is intact.
  CHECK(master->api().get("/healthz").status == 200);
}
