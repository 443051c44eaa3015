#include "http/gateway_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "http/api_error.hpp"
#include "http/request_guards.hpp"

namespace taskmaster::http {

namespace {

bool wait_readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) > 0;
}

std::string lowercase(std::string_view in) {
  std::string out{in};
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

void address_of(const sockaddr_storage& addr, std::string& ip, int& port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
    port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    ::inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof(buf));
    port = ntohs(a.sin6_port);
  }
  ip = buf;
}

/// httplib::Stream over a plain socket, with a read buffer (httplib reads
/// request lines a byte at a time).
class socket_stream : public httplib::Stream {
public:
  socket_stream(int fd, time_t read_timeout_sec, time_t write_timeout_sec)
    : fd_(fd),
      read_timeout_ms_(static_cast<int>(read_timeout_sec * 1000)),
      write_timeout_ms_(static_cast<int>(write_timeout_sec * 1000)) {
  }

  /// `give_up` is asked while a read waits: true ends the read as a
  /// timeout would (see process_and_close_socket).
  void give_up_when(std::function<bool()> give_up) {
    give_up_ = std::move(give_up);
  }

  bool is_readable() const override {
    return pos_ < end_ || wait_for_data();
  }

  bool is_writable() const override {
    pollfd p{fd_, POLLOUT, 0};
    return ::poll(&p, 1, write_timeout_ms_) > 0
           && (p.revents & (POLLERR | POLLHUP)) == 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == end_) {
      if (!wait_for_data())
        return -1;
      ssize_t n;
      do {
        n = ::recv(fd_, buf_, sizeof(buf_), 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0)
        return n;
      pos_ = 0;
      end_ = static_cast<size_t>(n);
    }
    auto n = std::min(size, end_ - pos_);
    std::memcpy(ptr, buf_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable())
      return -1;
    ssize_t n;
    do {
      n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      address_of(addr, ip, port);
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      address_of(addr, ip, port);
  }

  socket_t socket() const override {
    return fd_;
  }

  /// True when bytes are buffered (pipelined requests).
  bool buffered() const {
    return pos_ < end_;
  }

private:
  /// Waits up to the read timeout for bytes, in slices so that give_up_
  /// can end the wait early.
  bool wait_for_data() const {
    for (int waited = 0; waited < read_timeout_ms_;) {
      auto slice = std::min(100, read_timeout_ms_ - waited);
      if (wait_readable(fd_, slice))
        return true;
      waited += slice;
      if (give_up_ && give_up_())
        return false;
    }
    return false;
  }

  int fd_;
  std::function<bool()> give_up_;
  int read_timeout_ms_;
  int write_timeout_ms_;
  char buf_[4096];
  size_t pos_ = 0;
  size_t end_ = 0;
};

} // namespace

namespace {

/// True when a header line of `head` (lowercased, up to the blank line that
/// ends the head) satisfies `pred`.
template <class Pred>
bool any_header_line(std::string_view head, Pred pred) {
  auto line_end = head.find("\r\n");
  if (line_end == std::string_view::npos)
    return false;
  auto headers = lowercase(head.substr(line_end + 2));
  size_t pos = 0;
  while (pos < headers.size()) {
    auto eol = headers.find("\r\n", pos);
    auto line = std::string_view{headers}.substr(
      pos, eol == std::string::npos ? std::string::npos : eol - pos);
    if (line.empty())
      return false;
    if (pred(line))
      return true;
    if (eol == std::string::npos)
      return false;
    pos = eol + 2;
  }
  return false;
}

} // namespace

bool is_websocket_upgrade(std::string_view head) {
  auto line_end = head.find("\r\n");
  if (line_end == std::string_view::npos)
    return false;
  auto request_line = head.substr(0, line_end);
  if (request_line.rfind("GET /ws", 0) != 0)
    return false;
  auto after_path = request_line.size() > 7 ? request_line[7] : '\0';
  if (after_path != ' ' && after_path != '?')
    return false;
  return any_header_line(head, [](std::string_view line) {
    return line.rfind("upgrade:", 0) == 0
           && line.find("websocket") != std::string_view::npos;
  });
}

bool lacks_body_length(std::string_view head) {
  if (head.find("\r\n") == std::string_view::npos)
    return false;
  auto method = head.substr(0, head.find(' '));
  if (method != "POST" && method != "PUT" && method != "PATCH")
    return false;
  return !any_header_line(head, [](std::string_view line) {
    return line.rfind("content-length:", 0) == 0
           || line.rfind("transfer-encoding:", 0) == 0;
  });
}

namespace {

/// Answers with an error and closes the connection (before httplib has
/// read anything).
void refuse(socket_t sock, std::string_view status_line, const api_error& err) {
  auto body = error_body(err);
  auto response = fmt::format("HTTP/1.1 {}\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: {}\r\nConnection: close\r\n"
                              "\r\n{}",
                              status_line, body.size(), body);
  ::send(sock, response.data(), response.size(), MSG_NOSIGNAL);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
}

/// Whether what follows the request answered last on this thread may be
/// part of it (body_left_unread). httplib's logger hook sets it once the
/// answer is written; the connection loop, on the same thread, reads it as soon as
/// process_request returns.
thread_local bool answered_with_body_unread = false;

} // namespace

gateway_server::gateway_server(upgrade_handler on_upgrade,
                               size_t max_header_bytes)
  : on_upgrade_(std::move(on_upgrade)), max_header_bytes_(max_header_bytes) {
  set_logger([](const httplib::Request& req, const httplib::Response&) {
    answered_with_body_unread = body_left_unread(req);
  });
}

void gateway_server::use_threads(size_t threads) {
  new_task_queue = [this, threads] {
    auto* pool = new counting_pool(threads);
    pool_ = pool;
    return pool;
  };
}

void gateway_server::close_after_unread_body(socket_t sock) {
  // The answer is out; closing with unread data would send a reset, which
  // can destroy it before the client reads it. Stop writing, then read and
  // drop what the client still sends, for a moment, and not while another
  // connection waits for this thread or the server stops.
  ::shutdown(sock, SHUT_WR);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  size_t budget = 4 * 1024 * 1024;
  std::vector<char> sink(16 * 1024);
  while (budget > 0 && std::chrono::steady_clock::now() < deadline
         && !others_waiting() && svr_sock_ != INVALID_SOCKET) {
    if (!wait_readable(sock, 100))
      continue;
    auto n = ::recv(sock, sink.data(), sink.size(), 0);
    if (n <= 0)
      break;
    budget -= std::min(budget, static_cast<size_t>(n));
  }
  ::close(sock);
}

bool gateway_server::others_waiting() const {
  auto* pool = pool_.load();
  return pool != nullptr && pool->saturated();
}

bool gateway_server::process_and_close_socket(socket_t sock) {
  // Look at the request head without consuming it: either Beast reads it
  // (upgrade) or httplib does (everything else).
  auto started = std::chrono::steady_clock::now();
  std::vector<char> buffer(max_header_bytes_ + 1);
  auto* head = buffer.data();
  ssize_t seen = 0;
  // A connection that sends nothing holds one of the pool's threads: give
  // the first request head a few seconds, not the whole read timeout.
  auto deadline = started + std::chrono::seconds(std::min<time_t>(
                    read_timeout_sec_ > 0 ? read_timeout_sec_ : 5, 5));
  bool complete = false;
  while (static_cast<size_t>(seen) < buffer.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
    if (left <= 0 || !wait_readable(sock, static_cast<int>(left)))
      break;
    auto n = ::recv(sock, head, buffer.size(), MSG_PEEK);
    if (n <= 0)
      break;
    if (n == seen) {
      // Nothing new since the last peek (the head arrives in pieces); the
      // socket stays readable because of what is already queued.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    seen = n;
    if (std::string_view{head, static_cast<size_t>(seen)}.find("\r\n\r\n")
        != std::string_view::npos) {
      complete = true;
      break;
    }
    // A TLS ClientHello (record type 22) never ends in a blank line: answer
    // now rather than after the deadline, so an https:// client fails fast.
    if (head[0] == '\x16')
      break;
  }
  if (seen > 0 && head[0] == '\x16') {
    // Read what was peeked: closing with unread data sends a reset, which
    // can destroy the answer before the client reads it.
    ::recv(sock, head, static_cast<size_t>(seen), 0);
    refuse(sock, "400 Bad Request",
           api_error{api_errc::invalid_request,
                     "this port serves plain HTTP, not TLS: use an http:// "
                     "URL, or put a TLS proxy in front for https://",
                     0});
    return false;
  }
  if (!complete && static_cast<size_t>(seen) == buffer.size()) {
    refuse(sock, "431 Request Header Fields Too Large",
           api_error{api_errc::headers_too_large,
                     fmt::format("the request head is longer than {} bytes "
                                 "(--max-header-bytes)",
                                 max_header_bytes_),
                     0});
    return false;
  }
  if (complete && lacks_body_length({head, static_cast<size_t>(seen)})) {
    std::string_view text{head, static_cast<size_t>(seen)};
    refuse(sock, "411 Length Required",
           api_error{api_errc::length_required,
                     body_length_missing(text.substr(0, text.find(' '))), 0});
    return false;
  }
  if (seen > 0 && is_websocket_upgrade({head, static_cast<size_t>(seen)})) {
    on_upgrade_(sock);
    return true;
  }
  socket_stream strm{sock, read_timeout_sec_, write_timeout_sec_};
  // A client that trickles a request (a byte now and then, each within the
  // read timeout) would hold this thread for as long as it likes. While
  // other connections wait for a thread, a request still arriving after
  // slow_request_limit_ is cut off instead.
  auto request_start = started;
  strm.give_up_when([&] {
    return std::chrono::steady_clock::now() - request_start
             > slow_request_limit_
           && others_waiting();
  });
  // stop() closes the listening socket at once, but is_running() stays true
  // until every connection loop has returned: watch the socket instead, or
  // an idle keep-alive client holds up shutdown for the whole timeout.
  auto stopping = [this] { return svr_sock_ == INVALID_SOCKET; };
  auto ok = false;
  for (auto count = keep_alive_max_count_; count > 0 && !stopping(); --count) {
    if (!strm.buffered()) {
      // Wait for the next request on this connection, noticing a stop.
      auto waited = std::chrono::milliseconds(0);
      auto limit = std::chrono::seconds(keep_alive_timeout_sec_);
      bool readable = false;
      // The first request's head is here already (peeked above); an idle
      // connection is not worth a thread that another connection waits for.
      bool first = count == keep_alive_max_count_;
      while (waited < limit && !stopping()) {
        if (wait_readable(sock, 100)) {
          readable = true;
          break;
        }
        waited += std::chrono::milliseconds(100);
        if (!first && others_waiting())
          break;
      }
      if (!readable)
        break;
    }
    bool connection_closed = false;
    if (count != keep_alive_max_count_)
      request_start = std::chrono::steady_clock::now();
    answered_with_body_unread = false;
    ok = process_request(strm, count == 1 || stopping() || others_waiting(),
                         connection_closed, nullptr);
    if (answered_with_body_unread) {
      // What follows may be part of this request: never a request.
      close_after_unread_body(sock);
      return ok;
    }
    if (!ok || connection_closed)
      break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

} // namespace taskmaster::http
