#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

namespace taskmaster::test {

/// Connects `sock` (opened or not) to the host and port of an
/// `http://HOST:PORT` URL, for tests that speak HTTP or WebSocket by hand.
/// Returns "HOST:PORT", the value of a Host header.
inline std::string connect_to(boost::asio::ip::tcp::socket& sock,
                              const std::string& url) {
  auto hostport = url.substr(url.find("://") + 3);
  auto colon = hostport.rfind(':');
  boost::asio::ip::tcp::resolver resolver{sock.get_executor()};
  boost::asio::connect(sock, resolver.resolve(hostport.substr(0, colon),
                                              hostport.substr(colon + 1)));
  return hostport;
}

/// Sends `request` as it is on a fresh connection and returns everything the
/// server answers until it closes the connection.
inline std::string raw_request(const std::string& url,
                               const std::string& request) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket sock{ioc};
  connect_to(sock, url);
  boost::asio::write(sock, boost::asio::buffer(request));
  std::string response;
  boost::system::error_code ec;
  char buf[4096];
  for (;;) {
    auto n = sock.read_some(boost::asio::buffer(buf), ec);
    if (ec)
      break;
    response.append(buf, n);
  }
  return response;
}

/// A listening TCP socket on a free loopback port (written to `port`), or on
/// `wanted` when given, for tests that play a server by hand (one that never
/// answers, one that hangs up, a proxy) or hold a port. Returns -1 when it
/// cannot; the caller closes it.
inline int listen_on_loopback(uint16_t& port, uint16_t wanted = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(wanted);
  socklen_t length = sizeof address;
  if (fd < 0
      || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0
      || ::listen(fd, 16) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length)
           != 0) {
    if (fd >= 0)
      ::close(fd);
    return -1;
  }
  port = ntohs(address.sin_port);
  return fd;
}

} // namespace taskmaster::test
