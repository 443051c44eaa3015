#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "actors/core/task.hpp"
#include "http/stream_target.hpp"

/// The live event stream: WebSocket sessions (Boost.Beast) on the gateway's
/// own Asio thread. The HTTP server hands over upgraded sockets; the gateway
/// actor feeds snapshots and events. Everything here runs on the hub's one
/// thread; the public functions post to it and are safe from any thread.
///
/// Per session: a snapshot first, then the deltas newer than it. Each
/// session has a bounded send queue: a client that cannot keep up is resynced
/// (queue dropped, fresh snapshot), and one that keeps falling behind is
/// dropped. It never slows the scheduler or other clients. Beast answers
/// pings and sends its own; a silent peer is closed.
namespace taskmaster::http {

/// One event, serialized once and shared by every session that wants it.
struct stream_event {
  enum topic_t : uint8_t {
    tasks = topic_tasks,
    workers = topic_workers,
    stats = topic_stats,
  };
  /// Position in the event sequence; sessions skip what their snapshot
  /// already covers. Stats are outside the sequence (the maximum value).
  uint64_t seq = 0;
  topic_t topic = tasks;
  /// For task events: the task, for `?task=` filters.
  core::task_id task = 0;
  std::shared_ptr<const std::string> json;
};

struct ws_options {
  /// Bytes queued for one session before it is resynced.
  size_t max_queue_bytes = 16 * 1024 * 1024;
  /// Resyncs in a row (without the queue ever draining) before a session is
  /// dropped as dead.
  size_t max_resyncs = 3;
  /// Largest message a client may send.
  size_t max_message_bytes = 64 * 1024;
  /// Sessions allowed from one address.
  size_t max_sessions_per_address = 64;
  /// Beast pings every client this often and drops one that answered
  /// nothing within the next interval. (A ping waits behind a message being
  /// written, so a client too slow to take a large snapshot in one interval
  /// is dropped.) Sent to clients in the upgrade's answer
  /// (ping_interval_header), so they can tell a silent server from a quiet
  /// one.
  std::chrono::milliseconds ping_interval{15'000};
  /// Request-head size limit for the upgrade request.
  size_t max_header_bytes = 16 * 1024;
  /// Checked before the upgrade is accepted: returns an error text (the
  /// upgrade is refused with 401) or an empty string.
  std::function<std::string(const std::string& authorization,
                            const std::string& token_param,
                            const std::string& protocols)>
    authorize;
};

class ws_hub {
public:
  /// Called on the hub thread when a session needs a snapshot: session id,
  /// task filter (0 for all) and the session's topics (stream_event::topic_t
  /// bits: the snapshot carries only their parts).
  using snapshot_request
    = std::function<void(uint64_t, core::task_id, uint8_t)>;

  ws_hub(ws_options options, snapshot_request request_snapshot);
  ~ws_hub();

  void start();

  /// Closes every session (normal closure) and stops the thread.
  void stop();

  /// Takes over an accepted socket whose request (not yet read) is an
  /// upgrade to /ws.
  void accept(int fd);

  /// A snapshot for one session: `json` is the snapshot message, `seq` the
  /// last event batch it covers.
  void deliver_snapshot(uint64_t session, std::shared_ptr<const std::string> json,
                        uint64_t seq);

  /// Events for every interested session.
  void publish(std::vector<stream_event> events);

  size_t session_count() const {
    return sessions_count_.load();
  }

  class session;

private:
  friend class session;

  void add(const std::shared_ptr<session>& s);
  void remove(uint64_t id);

  ws_options options_;
  snapshot_request request_snapshot_;
  boost::asio::io_context ioc_;
  std::unique_ptr<boost::asio::executor_work_guard<
    boost::asio::io_context::executor_type>>
    work_;
  std::thread thread_;
  std::map<uint64_t, std::shared_ptr<session>> sessions_;
  std::map<std::string, size_t> per_address_;
  uint64_t next_id_ = 1;
  std::atomic<size_t> sessions_count_{0};
  bool stopping_ = false;
  /// Set by stop(): sockets handed over afterwards are closed at once.
  std::atomic<bool> stopped_{false};
};

} // namespace taskmaster::http
