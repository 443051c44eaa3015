#pragma once

#include <atomic>
#include <chrono>
#include <functional>

#include <httplib.h>

/// cpp-httplib's server with one addition: a request to upgrade to a
/// WebSocket on /ws is handed over (socket and all) instead of being served.
/// Debian's cpp-httplib 0.11 has no WebSocket support, and the REST API and
/// the stream must share one port.
namespace taskmaster::http {

/// httplib's thread pool, counting busy threads and the connections that
/// wait for one.
class counting_pool : public httplib::TaskQueue {
public:
  explicit counting_pool(size_t threads) : threads_(threads), pool_(threads) {
  }

  void enqueue(std::function<void()> fn) override {
    ++waiting_;
    pool_.enqueue([this, fn = std::move(fn)] {
      ++busy_;
      --waiting_;
      struct done {
        std::atomic<size_t>& busy;
        ~done() {
          --busy;
        }
      } guard{busy_};
      fn();
    });
  }

  void shutdown() override {
    pool_.shutdown();
  }

  /// True when every thread serves a connection and another waits for one.
  /// (A connection only just accepted while threads are idle does not
  /// count: one of them takes it at once.)
  bool saturated() const {
    return waiting_.load() > 0 && busy_.load() >= threads_;
  }

private:
  size_t threads_;
  httplib::ThreadPool pool_;
  std::atomic<size_t> waiting_{0};
  std::atomic<size_t> busy_{0};
};

class gateway_server : public httplib::Server {
public:
  /// Takes ownership of the socket of an upgrade request (not yet read).
  using upgrade_handler = std::function<void(int fd)>;

  /// A first request head longer than `max_header_bytes` is answered 431
  /// before httplib reads it.
  gateway_server(upgrade_handler on_upgrade, size_t max_header_bytes);

  /// Serves connections on `threads` threads. A keep-alive connection keeps
  /// its thread only while no other connection waits for one: then it is
  /// closed after its current request (`Connection: close`), or at once if
  /// it is idle, so a few busy clients (dashboard tabs, pollers) cannot hold
  /// every thread.
  void use_threads(size_t threads);

  /// While every thread is busy and a connection waits, a request that has
  /// been arriving for longer than this is cut off (10 s unless set).
  void set_slow_request_limit(std::chrono::milliseconds limit) {
    slow_request_limit_ = limit;
  }

private:
  /// True when an accepted connection waits for a thread and none is idle.
  bool others_waiting() const;

  /// Closes a connection whose last request may go on past what was read
  /// (body_left_unread), after its answer.
  void close_after_unread_body(socket_t sock);

  /// Replaces httplib's per-connection loop: peek at the request head; an
  /// upgrade goes to `on_upgrade_`, anything else runs the keep-alive loop
  /// through process_request.
  bool process_and_close_socket(socket_t sock) override;

  upgrade_handler on_upgrade_;
  size_t max_header_bytes_;
  std::chrono::milliseconds slow_request_limit_{std::chrono::seconds(10)};
  /// The pool of the current listen (httplib creates it, and deletes it
  /// after every connection has returned).
  std::atomic<counting_pool*> pool_{nullptr};
};

/// True when `head` (the start of a request) asks to upgrade /ws to a
/// WebSocket. Exposed for tests and the fuzzer.
bool is_websocket_upgrade(std::string_view head);

/// True when `head` (a complete request head) is a POST, PUT or PATCH with
/// neither Content-Length nor Transfer-Encoding. cpp-httplib would read such
/// a body until the connection closes, holding a pool thread for the whole
/// read timeout, so these are answered 411 at once.
bool lacks_body_length(std::string_view head);

} // namespace taskmaster::http
