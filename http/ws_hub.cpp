#include "http/ws_hub.hpp"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <charconv>
#include <deque>
#include <optional>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>

#include "actors/log.hpp"
#include "http/api_error.hpp"
#include "http/auth.hpp"

namespace taskmaster::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

namespace {

constexpr uint8_t all_topics = stream_event::tasks | stream_event::workers
                               | stream_event::stats;

} // namespace

class ws_hub::session : public std::enable_shared_from_this<session> {
public:
  /// A non-empty `refusal` answers the upgrade with 429 and that text.
  session(ws_hub& hub, tcp::socket socket, uint64_t id, std::string address,
          std::string refusal)
    : hub_(hub),
      ws_(std::move(socket)),
      id_(id),
      address_(std::move(address)),
      refusal_(std::move(refusal)) {
  }

  uint64_t id() const {
    return id_;
  }

  const std::string& address() const {
    return address_;
  }

  void start() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(hub_.options_.max_header_bytes));
    parser_->body_limit(0);
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
    bhttp::async_read(beast::get_lowest_layer(ws_), buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec,
                                                  size_t) {
                        self->on_request(ec);
                      });
  }

  void deliver_snapshot(std::shared_ptr<const std::string> json, uint64_t seq) {
    if (state_ != state::awaiting_snapshot)
      return;
    snapshot_seq_ = seq;
    state_ = state::live;
    enqueue(std::move(json));
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& e : pending)
      deliver(e);
    if (resync_after_snapshot_) {
      resync_after_snapshot_ = false;
      resync();
    }
  }

  void deliver(const stream_event& e) {
    if ((topics_ & e.topic) == 0)
      return;
    if (task_filter_ != 0
        && (e.topic != stream_event::tasks || e.task != task_filter_))
      return;
    if (state_ == state::awaiting_snapshot) {
      if (pending_bytes_ >= hub_.options_.max_queue_bytes) {
        pending_.clear();
        pending_bytes_ = 0;
        resync_after_snapshot_ = true;
      } else {
        pending_bytes_ += e.json->size();
        pending_.push_back(e);
      }
      return;
    }
    if (state_ != state::live || e.seq <= snapshot_seq_)
      return;
    enqueue(e.json);
  }

  /// Normal closure, e.g. at shutdown.
  void close(websocket::close_code code, const std::string& why) {
    if (state_ == state::closed || state_ == state::closing)
      return;
    if (state_ == state::handshake) {
      drop();
      return;
    }
    state_ = state::closing;
    queue_.clear();
    queued_bytes_ = 0;
    ws_.async_close(websocket::close_reason{code, why},
                    [self = shared_from_this()](beast::error_code) {
                      self->finish();
                    });
  }

  /// Closes the TCP connection at once (dead or hopelessly slow peer).
  void drop() {
    if (state_ == state::closed)
      return;
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both,
                                                   ec);
    beast::get_lowest_layer(ws_).socket().close(ec);
    finish();
  }

private:
  enum class state { handshake, awaiting_snapshot, live, closing, closed };

  void finish() {
    if (state_ == state::closed)
      return;
    state_ = state::closed;
    hub_.remove(id_);
  }

  void reject(bhttp::status status, api_errc code, const std::string& message) {
    response_.emplace(status, parser_->get().version());
    response_->set(bhttp::field::content_type, "application/json");
    response_->set(bhttp::field::connection, "close");
    response_->body() = error_body(api_error{code, message, 0});
    response_->prepare_payload();
    bhttp::async_write(beast::get_lowest_layer(ws_), *response_,
                       [self = shared_from_this()](beast::error_code, size_t) {
                         self->drop();
                       });
  }

  void on_request(beast::error_code ec) {
    if (ec) {
      if (ec == bhttp::error::header_limit)
        return reject(bhttp::status::request_header_fields_too_large,
                      api_errc::headers_too_large,
                      "the upgrade request headers are too large");
      return drop();
    }
    const auto& req = parser_->get();
    if (!refusal_.empty())
      return reject(bhttp::status::too_many_requests,
                    api_errc::too_many_connections, refusal_);
    auto [path, params, repeated] = parse_stream_target(std::string_view{
      req.target().data(), req.target().size()});
    if (req.method() != bhttp::verb::get || path != "/ws")
      return reject(bhttp::status::not_found, api_errc::not_found,
                    "WebSocket upgrades are served on GET /ws");
    // As on the REST routes: a mistyped or doubled parameter is an error,
    // not something to guess about.
    if (!repeated.empty())
      return reject(bhttp::status::bad_request, api_errc::invalid_request,
                    fmt::format("query parameter '{}' is given more than "
                                "once",
                                repeated));
    for (const auto& [name, value] : params)
      if (name != "task" && name != "topics" && name != "token")
        return reject(bhttp::status::bad_request, api_errc::invalid_request,
                      fmt::format("unknown query parameter '{}' (/ws takes "
                                  "task, topics and token)",
                                  name));
    if (!websocket::is_upgrade(req))
      return reject(bhttp::status::bad_request, api_errc::invalid_request,
                    "expected a WebSocket upgrade request");
    if (hub_.options_.authorize) {
      auto why = hub_.options_.authorize(
        std::string{req[bhttp::field::authorization]}, params["token"],
        std::string{req[bhttp::field::sec_websocket_protocol]});
      if (!why.empty())
        return reject(bhttp::status::unauthorized, api_errc::unauthorized,
                      why);
    }
    if (auto i = params.find("task"); i != params.end()) {
      auto& text = i->second;
      auto [end, err] = std::from_chars(text.data(), text.data() + text.size(),
                                        task_filter_);
      if (err != std::errc{} || end != text.data() + text.size()
          || task_filter_ == 0)
        return reject(bhttp::status::bad_request, api_errc::invalid_request,
                      fmt::format("'task' must be a task id, not \"{}\"",
                                  text));
    }
    if (auto i = params.find("topics"); i != params.end()) {
      std::string unknown;
      auto topics = parse_topics(i->second, unknown);
      if (!topics)
        return reject(bhttp::status::bad_request, api_errc::invalid_request,
                      fmt::format("unknown topic \"{}\" (tasks, workers, "
                                  "stats)",
                                  unknown));
      topics_ = *topics;
      if (topics_ == 0)
        return reject(bhttp::status::bad_request, api_errc::invalid_request,
                      "'topics' names no topic");
    }
    // A watched task's news are task events: without them it never ends.
    if (task_filter_ != 0 && (topics_ & stream_event::tasks) == 0)
      return reject(bhttp::status::bad_request, api_errc::invalid_request,
                    "'task' needs the tasks topic");
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout timeouts;
    timeouts.handshake_timeout = std::chrono::seconds(10);
    // Beast pings after half the idle timeout, and closes after all of it.
    timeouts.idle_timeout = 2 * hub_.options_.ping_interval;
    timeouts.keep_alive_pings = true;
    ws_.set_option(timeouts);
    ws_.read_message_max(hub_.options_.max_message_bytes);
    // Answer with one of the offered subprotocols (browsers insist): plain
    // "taskmaster", else the token-carrying one the client sent.
    std::string chosen;
    std::string_view offered{req[bhttp::field::sec_websocket_protocol].data(),
                             req[bhttp::field::sec_websocket_protocol].size()};
    for (auto p : websocket_subprotocols(offered)) {
      if (p == "taskmaster")
        chosen = p;
      else if (chosen.empty() && p.rfind("taskmaster.", 0) == 0)
        chosen = p;
    }
    ws_.set_option(websocket::stream_base::decorator(
      [chosen, ping = hub_.options_.ping_interval](
        websocket::response_type& res) {
        res.set(bhttp::field::server, "taskmasterd");
        res.set(ping_interval_header, std::to_string(ping.count()));
        if (!chosen.empty())
          res.set(bhttp::field::sec_websocket_protocol, chosen);
      }));
    ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
      self->on_accept(ec);
    });
  }

  void on_accept(beast::error_code ec) {
    if (ec)
      return drop();
    state_ = state::awaiting_snapshot;
    hub_.request_snapshot_(id_, task_filter_, topics_);
    read();
  }

  /// Reads (and ignores) what the client sends; this is also how a close
  /// from the client or a dead connection is noticed.
  void read() {
    ws_.async_read(incoming_, [self = shared_from_this()](beast::error_code ec,
                                                          size_t) {
      if (ec)
        return self->finish();
      self->incoming_.consume(self->incoming_.size());
      self->read();
    });
  }

  void enqueue(std::shared_ptr<const std::string> json) {
    if (queued_bytes_ + json->size() > hub_.options_.max_queue_bytes
        && !queue_.empty()) {
      if (++resyncs_ > hub_.options_.max_resyncs) {
        log::warn("WebSocket client {} cannot keep up: dropped", address_);
        return drop();
      }
      resync();
      return;
    }
    queued_bytes_ += json->size();
    queue_.push_back(std::move(json));
    if (!writing_)
      write();
  }

  /// Drops what is queued (but the message being written) and starts over
  /// with a fresh snapshot.
  void resync() {
    while (queue_.size() > (writing_ ? 1u : 0u)) {
      queued_bytes_ -= queue_.back()->size();
      queue_.pop_back();
    }
    pending_.clear();
    pending_bytes_ = 0;
    state_ = state::awaiting_snapshot;
    hub_.request_snapshot_(id_, task_filter_, topics_);
  }

  void write() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(*queue_.front()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->writing_ = false;
                      if (ec)
                        return self->drop();
                      if (self->state_ == state::closed
                          || self->state_ == state::closing)
                        return;
                      self->queued_bytes_ -= self->queue_.front()->size();
                      self->queue_.pop_front();
                      if (self->queue_.empty())
                        self->resyncs_ = 0;
                      else
                        self->write();
                    });
  }

  ws_hub& hub_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  beast::flat_buffer incoming_;
  std::optional<bhttp::request_parser<bhttp::empty_body>> parser_;
  std::optional<bhttp::response<bhttp::string_body>> response_;
  uint64_t id_;
  std::string address_;
  std::string refusal_;
  core::task_id task_filter_ = 0;
  uint8_t topics_ = all_topics;
  state state_ = state::handshake;
  uint64_t snapshot_seq_ = 0;
  std::vector<stream_event> pending_;
  size_t pending_bytes_ = 0;
  bool resync_after_snapshot_ = false;
  std::deque<std::shared_ptr<const std::string>> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  size_t resyncs_ = 0;
};

ws_hub::ws_hub(ws_options options, snapshot_request request_snapshot)
  : options_(std::move(options)),
    request_snapshot_(std::move(request_snapshot)) {
}

ws_hub::~ws_hub() {
  stop();
}

void ws_hub::start() {
  work_ = std::make_unique<asio::executor_work_guard<
    asio::io_context::executor_type>>(ioc_.get_executor());
  thread_ = std::thread{[this] {
    ::pthread_setname_np(::pthread_self(), "tm.websocket");
    ioc_.run();
  }};
}

void ws_hub::stop() {
  stopped_ = true;
  if (!thread_.joinable())
    return;
  asio::post(ioc_, [this] {
    stopping_ = true;
    auto sessions = sessions_;
    for (auto& [id, s] : sessions)
      s->close(websocket::close_code::going_away, "taskmasterd is stopping");
    // Give the close handshakes a moment, then stop regardless.
    auto timer = std::make_shared<asio::steady_timer>(ioc_);
    timer->expires_after(std::chrono::milliseconds(sessions.empty() ? 0 : 500));
    timer->async_wait([this, timer](beast::error_code) {
      auto rest = sessions_;
      for (auto& [id, s] : rest)
        s->drop();
      work_.reset();
      ioc_.stop();
    });
  });
  thread_.join();
}

void ws_hub::accept(int fd) {
  if (stopped_) {
    ::close(fd);
    return;
  }
  asio::post(ioc_, [this, fd] {
    // httplib set receive/send timeouts on the socket; Asio does its own.
    timeval none{0, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    tcp::socket socket{ioc_};
    beast::error_code ec;
    socket.assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    std::string address = socket.remote_endpoint(ec).address().to_string(ec);
    if (stopping_) {
      socket.close(ec);
      return;
    }
    std::string refusal;
    if (per_address_[address] >= options_.max_sessions_per_address)
      refusal = fmt::format("{} WebSocket session{} from {} already; the "
                            "limit is {} (--ws-max-clients-per-address)",
                            per_address_[address],
                            per_address_[address] == 1 ? "" : "s", address,
                            options_.max_sessions_per_address);
    auto s = std::make_shared<session>(*this, std::move(socket), next_id_++,
                                       address, std::move(refusal));
    add(s);
    s->start();
  });
}

void ws_hub::deliver_snapshot(uint64_t session,
                              std::shared_ptr<const std::string> json,
                              uint64_t seq) {
  asio::post(ioc_, [this, session, json = std::move(json), seq]() mutable {
    auto i = sessions_.find(session);
    if (i != sessions_.end())
      i->second->deliver_snapshot(std::move(json), seq);
  });
}

void ws_hub::publish(std::vector<stream_event> events) {
  asio::post(ioc_, [this, events = std::move(events)] {
    auto sessions = sessions_;
    for (const auto& e : events)
      for (auto& [id, s] : sessions)
        s->deliver(e);
  });
}

void ws_hub::add(const std::shared_ptr<session>& s) {
  sessions_.emplace(s->id(), s);
  ++per_address_[s->address()];
  sessions_count_ = sessions_.size();
}

void ws_hub::remove(uint64_t id) {
  auto i = sessions_.find(id);
  if (i == sessions_.end())
    return;
  auto& count = per_address_[i->second->address()];
  if (count > 0 && --count == 0)
    per_address_.erase(i->second->address());
  sessions_.erase(i);
  sessions_count_ = sessions_.size();
}

} // namespace taskmaster::http
