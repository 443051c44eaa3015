#include "http/stream_target.hpp"

#include <charconv>

namespace taskmaster::http {

namespace {

std::string percent_decode(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int value = 0;
      auto [end, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3,
                                       value, 16);
      if (ec == std::errc{} && end == in.data() + i + 3) {
        out += static_cast<char>(value);
        i += 2;
        continue;
      }
    }
    out += in[i] == '+' ? ' ' : in[i];
  }
  return out;
}

} // namespace

stream_target parse_stream_target(std::string_view target) {
  std::map<std::string, std::string> params;
  std::string repeated;
  auto q = target.find('?');
  std::string path{target.substr(0, q)};
  if (q == std::string_view::npos)
    return {path, params, repeated};
  auto query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (!pair.empty()) {
      auto name = percent_decode(pair.substr(0, eq));
      auto value = eq == std::string_view::npos
                     ? std::string{}
                     : percent_decode(pair.substr(eq + 1));
      if (!params.emplace(name, std::move(value)).second && repeated.empty())
        repeated = name;
    }
    if (amp == std::string_view::npos)
      break;
    query = query.substr(amp + 1);
  }
  return {path, params, repeated};
}

std::optional<uint8_t> parse_topics(std::string_view list,
                                    std::string& unknown) {
  uint8_t topics = 0;
  for (;;) {
    auto comma = list.find(',');
    auto topic = list.substr(0, comma);
    if (topic == "tasks")
      topics |= topic_tasks;
    else if (topic == "workers")
      topics |= topic_workers;
    else if (topic == "stats")
      topics |= topic_stats;
    else if (!topic.empty()) {
      unknown = std::string{topic};
      return std::nullopt;
    }
    if (comma == std::string_view::npos)
      return topics;
    list = list.substr(comma + 1);
  }
}

} // namespace taskmaster::http
