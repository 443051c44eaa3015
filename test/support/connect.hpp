#pragma once

#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>

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

} // namespace taskmaster::test
