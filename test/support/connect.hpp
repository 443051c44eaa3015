#pragma once

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

} // namespace taskmaster::test
