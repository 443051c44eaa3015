#include "http/auth.hpp"

#include <cctype>

#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace taskmaster::http {

bool tokens_equal(std::string_view expected, std::string_view given) {
  unsigned char a[SHA256_DIGEST_LENGTH];
  unsigned char b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(expected.data()),
         expected.size(), a);
  SHA256(reinterpret_cast<const unsigned char*>(given.data()), given.size(),
         b);
  return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

std::vector<std::string_view> websocket_subprotocols(std::string_view header) {
  std::vector<std::string_view> result;
  while (!header.empty()) {
    auto comma = header.find(',');
    auto p = header.substr(0, comma);
    while (!p.empty() && p.front() == ' ')
      p.remove_prefix(1);
    while (!p.empty() && p.back() == ' ')
      p.remove_suffix(1);
    result.push_back(p);
    if (comma == std::string_view::npos)
      break;
    header.remove_prefix(comma + 1);
  }
  return result;
}

bool token_check::accepts_header(std::string_view authorization) const {
  constexpr std::string_view prefix = "Bearer ";
  if (authorization.size() < prefix.size())
    return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i]))
        != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return tokens_equal(token_, authorization.substr(prefix.size()));
}

std::string token_check::check_websocket(std::string_view authorization,
                                         std::string_view token_param,
                                         std::string_view protocols) const {
  if (!enabled())
    return {};
  if (!authorization.empty() && accepts_header(authorization))
    return {};
  if (!token_param.empty() && tokens_equal(token_, token_param))
    return {};
  constexpr std::string_view marker = "taskmaster.bearer.";
  for (auto p : websocket_subprotocols(protocols))
    if (p.rfind(marker, 0) == 0 && tokens_equal(token_, p.substr(marker.size())))
      return {};
  if (authorization.empty() && token_param.empty())
    return "this stream needs the API token (Authorization: Bearer, or "
           "?token=)";
  return "the API token is wrong";
}

} // namespace taskmaster::http
