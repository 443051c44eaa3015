#include "actors/core/task.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>

namespace taskmaster::core {

namespace {

constexpr std::array<std::string_view, priority_count> priority_names{
  "LOW", "MEDIUM", "HIGH", "CRITICAL"};

constexpr std::array<std::string_view, task_status_count> status_names{
  "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"};

constexpr std::array<std::string_view, 7> outcome_names{
  "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "LOST",
  "RETURNED"};

/// Any case: the names are written upper case, but "high" in a request or
/// `?status=failed` in a URL means the same.
template <class Enum, size_t N>
std::optional<Enum> parse_enum(const std::array<std::string_view, N>& names,
                               std::string_view text) {
  auto same = [](std::string_view name, std::string_view text) {
    return name.size() == text.size()
           && std::equal(name.begin(), name.end(), text.begin(),
                         [](char a, char b) {
                           return a == std::toupper(static_cast<unsigned char>(b));
                         });
  };
  for (size_t i = 0; i < N; ++i)
    if (same(names[i], text))
      return static_cast<Enum>(i);
  return std::nullopt;
}

} // namespace

std::string_view to_string(priority x) {
  return priority_names[static_cast<size_t>(x)];
}

std::string_view to_string(task_status x) {
  return status_names[static_cast<size_t>(x)];
}

std::string_view to_string(attempt_outcome x) {
  return outcome_names[static_cast<size_t>(x)];
}

std::optional<priority> parse_priority(std::string_view text) {
  return parse_enum<priority>(priority_names, text);
}

std::optional<task_status> parse_task_status(std::string_view text) {
  return parse_enum<task_status>(status_names, text);
}

std::optional<attempt_outcome> parse_attempt_outcome(std::string_view text) {
  return parse_enum<attempt_outcome>(outcome_names, text);
}

bool is_final(task_status x) {
  return x != task_status::queued && x != task_status::running;
}

std::string to_string(const attempt_ref& x) {
  return fmt::format("{}#{}/{}", x.task, x.attempt, x.epoch);
}

std::optional<string_map> parse_labels(std::string_view text) {
  string_map result;
  std::string key;
  std::string value;
  bool in_value = false;
  bool ok = true;
  auto end_entry = [&] {
    if (!in_value && key.empty())
      return; // an empty entry (",," or a trailing comma)
    if (!in_value || key.empty() || !result.emplace(key, value).second)
      ok = false;
    key.clear();
    value.clear();
    in_value = false;
  };
  for (size_t i = 0; i < text.size() && ok; ++i) {
    char c = text[i];
    char next = i + 1 < text.size() ? text[i + 1] : '\0';
    if (c == '\\' && (next == '\\' || next == ',' || next == '=')) {
      (in_value ? value : key) += next;
      ++i;
    } else if (c == ',') {
      end_entry();
    } else if (c == '=' && !in_value) {
      in_value = true;
    } else {
      (in_value ? value : key) += c;
    }
  }
  end_entry();
  if (!ok)
    return std::nullopt;
  return result;
}

std::string format_labels(const string_map& labels) {
  auto append_escaped = [](std::string& out, const std::string& text) {
    for (char c : text) {
      if (c == '\\' || c == ',' || c == '=')
        out += '\\';
      out += c;
    }
  };
  std::string result;
  for (const auto& [key, value] : labels) {
    if (!result.empty())
      result += ',';
    append_escaped(result, key);
    result += '=';
    append_escaped(result, value);
  }
  return result;
}

bool labels_match(const string_map& want, const string_map& have) {
  for (const auto& [key, value] : want) {
    auto i = have.find(key);
    if (i == have.end() || i->second != value)
      return false;
  }
  return true;
}

std::string_view first_difference(const task_spec& a, const task_spec& b,
                                  const spec_defaults& defaults) {
  auto retries = [&](const task_spec& t) -> int64_t {
    return t.max_retries >= 0 ? t.max_retries : defaults.max_retries;
  };
  auto or_default = [](time_ms value, time_ms fallback) {
    return value > 0 ? value : fallback;
  };
  if (a.command != b.command)
    return "command";
  if (a.name != b.name)
    return "name";
  if (a.description != b.description)
    return "description";
  if (a.prio != b.prio)
    return "priority";
  if (a.timeout_seconds != b.timeout_seconds)
    return "timeout_seconds";
  if (retries(a) != retries(b))
    return "max_retries";
  if (a.labels != b.labels)
    return "labels";
  if (a.env != b.env)
    return "env";
  if (or_default(a.retry_backoff_ms, defaults.retry_backoff_ms)
      != or_default(b.retry_backoff_ms, defaults.retry_backoff_ms))
    return "retry_backoff_seconds";
  if (or_default(a.retry_backoff_max_ms, defaults.retry_backoff_max_ms)
      != or_default(b.retry_backoff_max_ms, defaults.retry_backoff_max_ms))
    return "retry_backoff_max_seconds";
  return {};
}

namespace {

/// Length of the valid UTF-8 sequence starting at `s[i]` (0 if there is
/// none), and its code point in `cp`.
size_t decode_utf8(std::string_view s, size_t i, uint32_t& cp) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t len;
  uint32_t min;
  cp = c;
  if (c < 0x80)
    return 1;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size())
    return 0;
  cp = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/// Characters that print as nothing or move others: zero-width ones, bidi
/// controls, line and paragraph separators, the byte order mark.
bool is_invisible(uint32_t cp) {
  return (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E)
         || (cp >= 0x2060 && cp <= 0x206F) || cp == 0xFEFF
         || (cp >= 0xFFF9 && cp <= 0xFFFB) || cp == 0x00AD;
}

/// Spaces other than U+0020.
bool is_other_space(uint32_t cp) {
  return cp == 0x00A0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A)
         || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/// "" for printable UTF-8; else what is wrong. C0 and C1 controls and DEL
/// are control characters; invisible ones (zero-width, bidi) are refused
/// too, and spaces unless `spaces`.
std::string printable_problem(std::string_view text, bool spaces) {
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    auto len = decode_utf8(text, i, cp);
    if (len == 0)
      return "is not valid UTF-8";
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
      return "holds a control character";
    if (is_invisible(cp))
      return "holds an invisible character";
    if ((cp == ' ' || is_other_space(cp)) && !spaces)
      return "holds a space";
    i += len;
  }
  return {};
}

} // namespace

size_t utf8_sequence(std::string_view s, size_t i) {
  uint32_t cp = 0;
  return decode_utf8(s, i, cp);
}

std::string worker_id_problem(std::string_view id) {
  if (id.empty())
    return "is empty";
  if (id.size() > 128)
    return "is longer than 128 bytes";
  return printable_problem(id, false);
}

std::string worker_labels_problem(const string_map& labels) {
  for (const auto& [key, value] : labels) {
    if (auto why = printable_problem(key, true); !why.empty())
      return fmt::format("a label key {}", why);
    if (auto why = printable_problem(value, true); !why.empty())
      return fmt::format("the value of label '{}' {}", key, why);
  }
  return {};
}

} // namespace taskmaster::core
