#include "app/watch.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <limits>
#include <optional>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actors/core/task.hpp"
#include "app/client.hpp"
#include "app/terminal_text.hpp"
#include "http/stream_target.hpp"

namespace taskmaster::client {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;

/// A field as printed: user text without its control characters.
std::string str(const json& j, const char* key) {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return "-";
  return i->is_string() ? printable(i->get<std::string>()) : i->dump();
}

/// "2026-11-26T18:55:03.123Z" -> "18:55:03.123".
std::string clock_of(const std::string& t) {
  return t.size() >= 23 ? t.substr(11, 12) : t;
}

void print_task_event(const json& msg) {
  const auto& t = msg["task"];
  auto event = str(msg, "event");
  auto id = str(t, "id");
  auto name = str(t, "name") == "-" || str(t, "name").empty()
                ? str(t, "command")
                : str(t, "name");
  name = clip(name, 60);
  if (event == "submitted")
    fmt::print("{} task {} submitted [{}]: {}\n", clock_of(str(t, "created_at")),
               id, str(t, "priority"), name);
  else if (event == "started")
    fmt::print("{} task {} started on {} (attempt {})\n",
               clock_of(str(t, "started_at")), id, str(t, "worker_id"),
               t["attempts"].size());
  else if (event == "requeued") {
    auto reason = str(t, "reason");
    fmt::print("{} task {} back in the queue{}\n", clock_of(str(msg, "at")), id,
               reason == "-" || reason.empty() ? std::string{} : ": " + reason);
  }
  else {
    auto reason = str(t, "reason");
    auto exit = t["exit_code"].is_null() ? std::string{}
                                         : " exit " + str(t, "exit_code");
    // "exit code N" says nothing the exit column does not.
    if (reason == "-" || reason.rfind("exit code ", 0) == 0)
      reason.clear();
    fmt::print("{} task {} {}{}{}\n", clock_of(str(t, "finished_at")), id,
               str(t, "status"), exit, reason.empty() ? "" : " (" + reason + ")");
  }
}

void print_worker_event(const json& msg) {
  const auto& w = msg["worker"];
  auto event = str(msg, "event");
  // A lost or departed worker runs nothing any more: say what it held.
  std::string detail;
  auto slots = fmt::format("{} slot{}", str(w, "slots"),
                           str(w, "slots") == "1" ? "" : "s");
  // A worker that shuts down hands its tasks back before it leaves: its
  // "left" rarely puts any back itself.
  if ((event == "lost" || (event == "left" && msg.value("requeued", 0) > 0))
      && msg.contains("requeued")) {
    auto requeued = msg.value("requeued", 0);
    detail = fmt::format("{}, {} task{} back in the queue", slots,
                         requeued, requeued == 1 ? "" : "s");
  } else if (event == "lost" || event == "left") {
    detail = slots; // an older master
  } else {
    detail = fmt::format("{}, {} running", slots, str(w, "slots_used"));
  }
  auto reason = str(msg, "reason");
  fmt::print("{} worker {} {} ({}){}\n", clock_of(str(w, "state_since")),
             str(w, "id"), event, detail,
             reason == "-" || reason.empty() ? std::string{} : ": " + reason);
}

/// The summary's restart wait (null when there is none).
json restart_wait_of(const json& summary) {
  if (!summary.is_object())
    return nullptr;
  auto w = summary.find("restart_wait");
  return w == summary.end() || !w->is_object() ? json(nullptr) : *w;
}

/// The first `named` of a restart wait's workers, printable, and how many
/// more ("a, b and 2 more"); empty without any.
std::string names_of(const json& workers, size_t named) {
  std::string who;
  for (size_t i = 0; workers.is_array() && i < workers.size() && i < named; ++i)
    who += (i == 0 ? "" : ", ")
           + (workers[i].is_string() ? printable(workers[i].get<std::string>())
                                     : workers[i].dump());
  if (workers.is_array() && workers.size() > named)
    who += fmt::format(" and {} more", workers.size() - named);
  return who;
}

/// After a master restart the tasks it left wait for a while: say why
/// (`wait` as restart_wait_of gives it), after `prefix` (a time, or nothing).
void print_restart_wait(const json& wait, const std::string& prefix = {}) {
  if (!wait.is_object())
    return;
  auto workers = wait.value("workers", json::array());
  if (!workers.is_array())
    return;
  // Worded as a waiting task's reason, naming a few as it does.
  auto who = names_of(workers, 3);
  fmt::print("{}the master restarted: tasks queued before it wait until "
             "worker{} {} {} back, or {} at the latest\n",
             prefix, workers.size() == 1 ? "" : "s", who,
             workers.size() == 1 ? "is" : "are", clock_of(str(wait, "until")));
}

/// Stats messages (every second) carry the restart wait: says when it
/// changes (fewer workers awaited) and when it ends.
void note_restart_wait_change(const json& msg, json& seen) {
  auto now = restart_wait_of(msg.value("summary", json(nullptr)));
  if (now == seen)
    return;
  auto prefix = clock_of(str(msg, "at")) + " ";
  // Past the deadline, the workers still awaited did not come back (RFC 3339
  // UTC times of one format compare as text).
  std::string missing;
  if (now.is_null() && seen.is_object() && str(msg, "at") >= str(seen, "until"))
    missing = names_of(seen.value("workers", json::array()),
                       std::numeric_limits<size_t>::max());
  if (now.is_null())
    fmt::print("{}the wait after the master's restart is over{}: dispatching "
               "the tasks queued before it\n",
               prefix,
               missing.empty() ? std::string{}
                               : " (not back in time: " + missing + ")");
  else
    print_restart_wait(now, prefix);
  seen = std::move(now);
}

void print_snapshot(const json& msg, const std::string& url) {
  const auto& s = msg["summary"];
  auto up = str(s, "workers_up");
  fmt::print("watching {}: {} worker{} up, {} queued, {} running, slots {}/{}\n",
             url, up, up == "1" ? "" : "s", str(s, "queued"),
             str(s, "running"), str(s, "slots_used"), str(s, "slots_total"));
  print_restart_wait(restart_wait_of(s));
}

/// A stats message as one line (asked for with --topics naming stats: the
/// default stream has them too, every second, too many to print).
void print_stats(const json& msg) {
  const auto& s = msg["summary"];
  auto rate = [&](const char* key) {
    auto i = msg.find(key);
    return i != msg.end() && i->is_number() ? fmt::format("{:.1f}", i->get<double>())
                                            : std::string{"-"};
  };
  auto up = str(s, "workers_up");
  fmt::print("{} stats: {} queued, {} running, slots {}/{}, {} worker{} up, "
             "{} finished/s, {} submitted/s\n",
             clock_of(str(msg, "at")), str(s, "queued"), str(s, "running"),
             str(s, "slots_used"), str(s, "slots_total"), up,
             up == "1" ? "" : "s", rate("finished_per_second"),
             rate("submitted_per_second"));
}

bool is_final(const json& t) {
  auto status = core::parse_task_status(str(t, "status"));
  return status && core::is_final(*status);
}

/// Why a server declined a stream: "MESSAGE (STATUS)", and the status.
struct refusal {
  std::string text;
  unsigned status = 0;
};

/// Why the server declined the upgrade: Beast 1.74 drops a declined
/// handshake's response, so ask again on `stream` (a fresh connection) with a
/// plain HTTP request carrying the same upgrade headers and read the answer.
/// The text is empty when the answer is not TaskMaster's.
template <class Stream>
refusal refusal_of(Stream& stream, const std::string& hostport,
                   const std::string& target, const std::string& token) {
  namespace http = beast::http;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, hostport);
  req.set(http::field::user_agent, "taskmasterd watch");
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::upgrade, "websocket");
  req.set(http::field::sec_websocket_version, "13");
  req.set(http::field::sec_websocket_key, "dGFza21hc3RlciB3YXRjaA==");
  if (!token.empty())
    req.set(http::field::authorization, "Bearer " + token);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  auto body = json::parse(res.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("error")
      || !body["error"].contains("message"))
    return {}; // not TaskMaster's answer
  return {fmt::format("{} ({}){}", body["error"]["message"].get<std::string>(),
                      res.result_int(),
                      res.result_int() == 401 ? token_hint(!token.empty())
                                              : ""),
          res.result_int()};
}

/// How often the server pings, from its upgrade answer; nullopt when it
/// does not say (an older server, or a proxy that dropped the header): then
/// only TCP keepalive watches the connection, since a guess could cut off a
/// server that pings less often.
std::optional<std::chrono::milliseconds>
ping_interval_of(const websocket::response_type& res) {
  auto i = res.find(http::ping_interval_header);
  if (i == res.end())
    return std::nullopt;
  std::string text{i->value()};
  if (!is_number(text) || text.size() > 9)
    return std::nullopt;
  auto ms = std::stoll(text);
  if (ms <= 0)
    return std::nullopt;
  return std::chrono::milliseconds{ms};
}

/// "45", "1.5" or "3.003": a duration in seconds for a message.
std::string seconds_text(std::chrono::milliseconds d) {
  return fmt::format("{:g}", d.count() / 1000.0);
}

/// Where a stream goes, and how to open another connection there.
struct endpoint {
  std::string host;
  std::string port;
  std::string hostport;
  bool tls = false;
};

/// A TCP connection to `at`, with TLS when the URL was https:// (the
/// certificate checked against the system's CAs or SSL_CERT_FILE, and
/// against the host name).
class connection {
public:
  /// Connects and completes the TLS handshake; with the WebSocket handshake
  /// after it, all within `handshake_limit`. Asio's blocking calls wait
  /// forever (socket timeouts only make them poll), so a watchdog shuts the
  /// socket down when the limit passes; streaming() calls it off.
  explicit connection(const endpoint& at) {
    tcp::resolver resolver{ioc_};
    auto addresses = resolver.resolve(at.host, at.port);
    watchdog_ = std::thread([this] { watch_the_clock(); });
    try {
      open(at, addresses);
    } catch (...) {
      // No destructor runs for a constructor that throws.
      stop_watchdog();
      if (fired_)
        throw beast::system_error{asio::error::timed_out};
      throw;
    }
  }

  ~connection() {
    stop_watchdog();
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Calls `f` with the websocket stream, whichever layer it runs on.
  template <class F>
  auto with_stream(F&& f) {
    return plain_ ? f(*plain_) : f(*secure_);
  }

  /// True when the watchdog cut the connection (no answer in time).
  bool timed_out() {
    std::lock_guard<std::mutex> guard{mtx_};
    return fired_;
  }

  /// After the handshake a stream may stay quiet for as long as nothing
  /// happens, but a live server pings at a known pace: given a
  /// `silence_limit`, the watchdog shuts the connection down once nothing
  /// at all (event or ping; see heard()) arrived for that long while the
  /// reader waited, which is how a stopped server or proxy that keeps the
  /// TCP connection open is noticed. TCP keepalive notices a vanished host.
  void streaming(std::optional<std::chrono::milliseconds> silence_limit) {
    stop_watchdog();
    if (fired_) // it fired just as the handshake ended
      throw beast::system_error{asio::error::timed_out};
    {
      std::lock_guard<std::mutex> guard{mtx_};
      done_ = false;
      // Without a known ping pace, no limit until closing() sets one.
      silence_limit_ = silence_limit.value_or(std::chrono::hours(24 * 365));
      last_heard_ = std::chrono::steady_clock::now();
    }
    watchdog_ = std::thread([this] { watch_the_silence(); });
    auto& sock = plain_ ? plain_->next_layer()
                        : beast::get_lowest_layer(secure_->next_layer());
    int on = 1;
    int idle = 30;
    int interval = 10;
    int count = 3;
    auto fd = sock.native_handle();
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  }

  /// Something arrived from the server (a message or a control frame).
  void heard() {
    std::lock_guard<std::mutex> guard{mtx_};
    last_heard_ = std::chrono::steady_clock::now();
  }

  /// Silence counts only while the reader waits for the server: not while
  /// it is stuck writing to a full stdout (`watch | less`, paused).
  void waiting(bool on) {
    std::lock_guard<std::mutex> guard{mtx_};
    waiting_ = on;
    if (on)
      last_heard_ = std::chrono::steady_clock::now();
  }

  /// The close handshake waits for the server's answer: at most `limit`,
  /// whether or not the server named its ping pace.
  void closing(std::chrono::milliseconds limit) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      silence_limit_ = std::min(silence_limit_, limit);
      waiting_ = true;
      last_heard_ = std::chrono::steady_clock::now();
    }
    cv_.notify_all();
  }

  /// True when the stream was cut for its silence.
  bool went_silent() {
    std::lock_guard<std::mutex> guard{mtx_};
    return silent_;
  }

  /// Closes the connection and calls its watchdog off first, so that it
  /// never shuts down a socket that reuses the descriptor.
  void close() {
    stop_watchdog();
    {
      std::lock_guard<std::mutex> guard{mtx_};
      fd_ = -1;
    }
    beast::error_code ignored;
    if (plain_)
      plain_->next_layer().close(ignored);
    else if (secure_)
      beast::get_lowest_layer(secure_->next_layer()).close(ignored);
  }

  static constexpr auto handshake_limit = std::chrono::seconds(10);

private:
  void open(const endpoint& at, const tcp::resolver::results_type& addresses) {
    if (!at.tls) {
      plain_.emplace(ioc_);
      connect(plain_->next_layer(), addresses);
      return;
    }
    tls_context_.emplace(ssl::context::tls_client);
    tls_context_->set_default_verify_paths();
    tls_context_->set_verify_mode(ssl::verify_peer);
    secure_.emplace(ioc_, *tls_context_);
    auto& tls = secure_->next_layer();
    connect(beast::get_lowest_layer(tls), addresses);
    // SNI, for proxies that serve several names on one address (never for
    // an address: RFC 6066).
    beast::error_code not_an_address;
    asio::ip::make_address(at.host, not_an_address);
    if (not_an_address
        && !::SSL_set_tlsext_host_name(tls.native_handle(), at.host.c_str()))
      throw beast::system_error{beast::error_code{
        static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()}};
    tls.set_verify_callback(ssl::host_name_verification(at.host));
    tls.handshake(ssl::stream_base::client);
  }

  void watch_the_clock() {
    std::unique_lock<std::mutex> guard{mtx_};
    if (cv_.wait_for(guard, handshake_limit, [this] { return done_; }))
      return;
    cut(fired_);
  }

  void watch_the_silence() {
    std::unique_lock<std::mutex> guard{mtx_};
    while (!done_) {
      auto now = std::chrono::steady_clock::now();
      if (waiting_ && now >= last_heard_ + silence_limit_) {
        // Bytes waiting unread: the server spoke, this process was what
        // stalled (stopped, or starved of CPU).
        int unread = 0;
        if (fd_ >= 0 && ::ioctl(fd_, FIONREAD, &unread) == 0 && unread > 0) {
          last_heard_ = now;
          continue;
        }
        cut(silent_);
        return;
      }
      // Woken early by closing() or stop_watchdog(), or at the deadline;
      // the loop looks again either way.
      cv_.wait_until(guard, waiting_ ? last_heard_ + silence_limit_
                                     : now + silence_limit_);
    }
  }

  /// Shuts the socket down under the watchdog's lock, saying why: the
  /// blocked reader then fails and asks the flag.
  void cut(bool& why) {
    why = true;
    if (fd_ >= 0)
      ::shutdown(fd_, SHUT_RDWR);
  }

  void stop_watchdog() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      done_ = true;
    }
    cv_.notify_all();
    if (watchdog_.joinable())
      watchdog_.join();
  }

  /// The first address that accepts.
  void connect(tcp::socket& sock, const tcp::resolver::results_type& addresses) {
    beast::error_code ec = asio::error::host_not_found;
    for (const auto& entry : addresses) {
      {
        std::lock_guard<std::mutex> guard{mtx_};
        if (fired_)
          break;
        fd_ = -1;
        beast::error_code ignored;
        sock.close(ignored);
        sock.open(entry.endpoint().protocol());
        fd_ = sock.native_handle();
      }
      sock.connect(entry.endpoint(), ec);
      if (!ec)
        break;
    }
    if (ec)
      throw beast::system_error{ec};
    sock.set_option(tcp::no_delay(true));
  }

  asio::io_context ioc_;
  std::optional<ssl::context> tls_context_;
  std::optional<websocket::stream<tcp::socket>> plain_;
  std::optional<websocket::stream<beast::ssl_stream<tcp::socket>>> secure_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false;
  bool fired_ = false;
  bool silent_ = false;
  bool waiting_ = false;
  std::chrono::milliseconds silence_limit_{0};
  std::chrono::steady_clock::time_point last_heard_;
  /// The socket the watchdog shuts down (-1: none open).
  int fd_ = -1;
  std::thread watchdog_;
};

} // namespace

int watch(const std::string& base_url, const std::string& token,
          const std::string& task, const std::string& topics,
          bool json_output) {
  std::string unknown;
  bool stats_asked = !topics.empty()
                     && (http::parse_topics(topics, unknown).value_or(0)
                         & http::topic_stats);
  auto address = split_server_url(base_url);
  endpoint at;
  at.tls = base_url.rfind("https://", 0) == 0;
  at.hostport = address.hostport;
  at.host = address.host;
  at.port = address.port.value_or(at.tls ? "443" : "80");
  std::string target = address.prefix + "/ws";
  std::string sep = "?";
  if (!task.empty()) {
    target += sep + "task=" + task;
    sep = "&";
  }
  // Stats messages carry the wait after a master restart, which watch
  // reports whatever the topics (their own lines only when asked for).
  if (!topics.empty())
    target += sep + "topics=" + topics
              + (stats_asked || json_output ? "" : ",stats");
  try {
    connection conn{at};
    return conn.with_stream([&](auto& ws) -> int {
      ws.set_option(websocket::stream_base::decorator(
        [&token](websocket::request_type& req) {
          req.set(beast::http::field::user_agent, "taskmasterd watch");
          if (!token.empty())
            req.set(beast::http::field::authorization, "Bearer " + token);
        }));
      websocket::response_type res;
      beast::error_code ec;
      ws.handshake(res, at.hostport, target, ec);
      if (ec == websocket::error::upgrade_declined) {
        // Some servers serve one connection at a time: let this one go.
        conn.close();
        connection again{at};
        refusal why;
        try {
          why = again.with_stream([&](auto& other) {
            return refusal_of(other.next_layer(), at.hostport, target, token);
          });
        } catch (const beast::system_error&) {
          if (again.timed_out())
            throw beast::system_error{asio::error::timed_out};
          throw;
        }
        if (why.text.empty()) {
          fmt::print(stderr,
                     "taskmasterd: {} answered the stream request with "
                     "something other than TaskMaster's; is it a TaskMaster "
                     "API? (--server or TASKMASTER_SERVER)\n",
                     base_url);
          return unreachable;
        }
        fmt::print(stderr, "taskmasterd: the server refused the stream: {}\n",
                   why.text);
        // Too many streams, or a stopping server: as for any command, one
        // that may succeed later.
        return why.status == 429 || why.status == 503 ? unreachable
                                                      : api_failure;
      }
      if (ec && conn.timed_out())
        throw beast::system_error{asio::error::timed_out};
      if (ec) {
        // Not declined, but no WebSocket either: another kind of server,
        // or one that hung up.
        fmt::print(stderr,
                   "taskmasterd: {} did not open a TaskMaster stream ({}); "
                   "is it a TaskMaster API? (--server or TASKMASTER_SERVER)\n",
                   base_url, ec.message());
        return unreachable;
      }
      auto ping_interval = ping_interval_of(res);
      std::optional<std::chrono::milliseconds> silence_limit;
      if (ping_interval)
        silence_limit = 3 * *ping_interval;
      conn.streaming(silence_limit);
      ws.control_callback(
        [&conn](websocket::frame_type, beast::string_view) { conn.heard(); });
      beast::flat_buffer buffer;
      // The restart wait as last shown (see note_restart_wait_change).
      json restart_wait_seen;
      for (;;) {
        buffer.clear();
        conn.waiting(true);
        ws.read(buffer, ec);
        conn.waiting(false);
        if (ec && conn.went_silent()) {
          fmt::print(stderr,
                     "taskmasterd: the server at {} sent nothing for {} s "
                     "although it pings every {} s: it is stuck, or the "
                     "connection to it is (--server or TASKMASTER_SERVER)\n",
                     base_url, seconds_text(*silence_limit),
                     seconds_text(*ping_interval));
          return unreachable;
        }
        if (ec == websocket::error::closed)
          throw beast::system_error{ec};
        if (ec) {
          fmt::print(stderr,
                     "taskmasterd: lost the stream from the server at {} "
                     "({})\n",
                     base_url, ec.message());
          return unreachable;
        }
        auto text = beast::buffers_to_string(buffer.data());
        auto msg = json::parse(text, nullptr, false);
        if (msg.is_discarded())
          continue;
        auto type = str(msg, "type");
        // A watched task that does not exist: the error, without the header.
        bool no_such_task = !task.empty() && type == "snapshot"
                            && msg["tasks"].empty();
        if (json_output) {
          std::cout << text << "\n" << std::flush;
        } else if (type == "snapshot" && !no_such_task) {
          print_snapshot(msg, base_url);
        } else if (type == "task") {
          print_task_event(msg);
        } else if (type == "worker") {
          print_worker_event(msg);
        } else if (type == "stats") {
          if (stats_asked)
            print_stats(msg);
          note_restart_wait_change(msg, restart_wait_seen);
        }
        if (type == "snapshot" && msg.contains("summary"))
          restart_wait_seen = restart_wait_of(msg["summary"]);
        std::cout << std::flush;
        if (task.empty())
          continue;
        if (type == "snapshot") {
          if (msg["tasks"].empty()) {
            fmt::print(stderr, "taskmasterd: no task with id '{}'\n", task);
            return api_failure;
          }
          const auto& t = msg["tasks"][0];
          if (is_final(t)) {
            if (!json_output)
              fmt::print("task {} already ended {}\n", task, str(t, "status"));
            return exit_code_of(t);
          }
        } else if (type == "task" && is_final(msg["task"])) {
          beast::error_code ignored;
          // The close waits for the server's answer: a server stopped just
          // now must not hold it forever.
          conn.closing(std::chrono::seconds(5));
          ws.close(websocket::close_code::normal, ignored);
          return exit_code_of(msg["task"]);
        }
      }
    });
  } catch (const beast::system_error& e) {
    if (e.code() == websocket::error::closed) {
      // A stream has no natural end (a watched task ending is handled
      // above): the server went away, and a script should see that.
      fmt::print(stderr, "taskmasterd: the server closed the stream (is it "
                         "shutting down?)\n");
      return unreachable;
    }
    if (e.code().category() == asio::error::get_ssl_category()) {
      fmt::print(stderr,
                 "taskmasterd: cannot reach the TaskMaster server at {} (TLS: "
                 "{}); taskmasterd itself serves plain HTTP, so https:// goes "
                 "through a TLS proxy with a certificate for this host name "
                 "from a CA trusted here (system CAs or SSL_CERT_FILE) "
                 "(--server or TASKMASTER_SERVER)\n",
                 base_url, e.code().message());
      return unreachable;
    }
    auto why = e.code() == asio::error::timed_out
                 ? fmt::format("no answer within {} s",
                               connection::handshake_limit.count())
                 : e.code().message();
    fmt::print(stderr,
               "taskmasterd: cannot reach the TaskMaster server at {} ({}); "
               "is it running? (--server or TASKMASTER_SERVER)\n",
               base_url, why);
    return unreachable;
  }
}

} // namespace taskmaster::client
