#include "http/json_text.hpp"

#include <iterator>
#include <type_traits>

#include <fmt/format.h>

namespace taskmaster::http {

namespace {

void append_time(std::string& out, core::time_ms t) {
  if (t == 0) {
    out += "null";
    return;
  }
  // Tasks written together mostly share their timestamps (a batch has one
  // created_at): remember the last one formatted on this thread.
  thread_local core::time_ms last = 0;
  thread_local std::string text;
  if (t != last) {
    text = core::format_rfc3339(t);
    last = t;
  }
  out += '"';
  out += text;
  out += '"';
}

void append_map(std::string& out, const core::string_map& m) {
  out += '{';
  bool first = true;
  for (const auto& [k, v] : m) {
    if (!first)
      out += ',';
    first = false;
    append_json_string(out, k);
    out += ':';
    append_json_string(out, v);
  }
  out += '}';
}

template <class T>
void append_field(std::string& out, std::string_view key, const T& value) {
  out += ",\"";
  out += key;
  out += "\":";
  if constexpr (std::is_arithmetic_v<T>)
    out += std::to_string(value);
  else
    out += value;
}

void append_string_field(std::string& out, std::string_view key,
                         std::string_view value) {
  out += ",\"";
  out += key;
  out += "\":";
  append_json_string(out, value);
}

void append_optional_string(std::string& out, std::string_view key,
                            const std::string& value) {
  if (value.empty())
    append_field(out, key, "null");
  else
    append_string_field(out, key, value);
}

} // namespace

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      case '\b':
        out += "\\b";
        ++i;
        continue;
      case '\f':
        out += "\\f";
        ++i;
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
      ++i;
      continue;
    }
    auto len = core::utf8_sequence(text, i);
    if (len == 0) {
      // One replacement per "maximal subpart" (Unicode's rule, and what
      // nlohmann does): a lead byte and the continuation bytes that could
      // still belong to it.
      size_t skip = 1;
      unsigned char lo = 0x80;
      unsigned char hi = 0xBF;
      size_t len = 0;
      if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
      } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
      } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
      }
      while (skip < len && i + skip < text.size()) {
        auto cc = static_cast<unsigned char>(text[i + skip]);
        if (cc < lo || cc > hi)
          break;
        ++skip;
        lo = 0x80;
        hi = 0xBF;
      }
      out += "\xEF\xBF\xBD";
      i += skip;
    } else {
      out.append(text.substr(i, len));
      i += len;
    }
  }
  out += '"';
}

void append_task(std::string& out, const core::task_record& t, bool full) {
  out += "{\"id\":";
  out += std::to_string(t.id);
  append_string_field(out, "name", t.spec.name);
  append_string_field(out, "description", t.spec.description);
  append_string_field(out, "command", t.spec.command);
  append_string_field(out, "priority", core::to_string(t.spec.prio));
  append_string_field(out, "status", core::to_string(t.status));
  append_string_field(out, "reason", t.reason);
  append_field(out, "timeout_seconds", t.spec.timeout_seconds);
  append_field(out, "max_retries", t.max_retries);
  out += ",\"labels\":";
  append_map(out, t.spec.labels);
  out += ",\"attempts\":[";
  bool first = true;
  for (const auto& a : t.attempts) {
    if (!first)
      out += ',';
    first = false;
    out += "{\"attempt\":";
    out += std::to_string(a.number);
    append_string_field(out, "worker_id", a.worker_id);
    out += ",\"started_at\":";
    append_time(out, a.started_at);
    out += ",\"finished_at\":";
    append_time(out, a.finished_at);
    if (a.has_exit_code)
      append_field(out, "exit_code", a.exit_code);
    else
      append_field(out, "exit_code", "null");
    append_string_field(out, "outcome", core::to_string(a.outcome));
    append_string_field(out, "reason", a.reason);
    out += '}';
  }
  out += ']';
  append_optional_string(out, "worker_id", t.worker_id);
  if (t.has_exit_code)
    append_field(out, "exit_code", t.exit_code);
  else
    append_field(out, "exit_code", "null");
  out += ",\"created_at\":";
  append_time(out, t.created_at);
  out += ",\"started_at\":";
  append_time(out, t.started_at);
  out += ",\"finished_at\":";
  append_time(out, t.finished_at);
  out += ",\"run_at\":";
  append_time(out, t.spec.run_at);
  append_optional_string(out, "idempotency_key", t.spec.idempotency_key);
  if (full) {
    out += ",\"env\":";
    append_map(out, t.spec.env);
    append_string_field(out, "stdout", t.stdout_tail);
    append_string_field(out, "stderr", t.stderr_tail);
    append_field(out, "stdout_bytes", t.stdout_bytes);
    append_field(out, "stderr_bytes", t.stderr_bytes);
    // Decided on raw bytes: the text above may have grown by U+FFFD.
    append_field(out, "stdout_truncated",
                 t.stdout_bytes > t.stdout_tail.size() ? "true" : "false");
    append_field(out, "stderr_truncated",
                 t.stderr_bytes > t.stderr_tail.size() ? "true" : "false");
  }
  out += '}';
}

} // namespace taskmaster::http
