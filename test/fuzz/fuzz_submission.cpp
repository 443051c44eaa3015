// libFuzzer target: the POST /tasks body decoder and the task encoder.
// Whatever the bytes, decoding returns tasks or an error, never crashes, and
// every task it accepts encodes back to valid JSON.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/json_codec.hpp"
#include "http/json_text.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taskmaster;
  http::request_limits limits;
  limits.max_batch_tasks = 64;
  std::string_view body{reinterpret_cast<const char*>(data), size};
  // Our string escaper must agree with nlohmann's (replacing bad UTF-8).
  std::string ours;
  http::append_json_string(ours, body);
  auto theirs = nlohmann::json(std::string{body}).dump(
    -1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (nlohmann::json::parse(ours) != nlohmann::json::parse(theirs))
    __builtin_trap();
  auto result = http::decode_submission(body, limits, 1'800'000'000'000);
  if (auto* sub = std::get_if<http::submission>(&result)) {
    for (auto& spec : sub->specs) {
      if (spec.command.empty() || spec.command.size() > limits.max_command_bytes)
        __builtin_trap();
      core::task_record t;
      t.id = 1;
      t.spec = spec;
      t.stdout_tail = spec.command; // arbitrary bytes in output
      auto text = http::dump(http::encode_task(t, true));
      if (nlohmann::json::parse(text, nullptr, false).is_discarded())
        __builtin_trap();
    }
  } else {
    const auto& err = std::get<http::api_error>(result);
    if (err.message.empty())
      __builtin_trap();
    http::error_body(err);
  }
  return 0;
}
