#include <catch2/catch.hpp>

#include "http/json_codec.hpp"

using namespace taskmaster;
using namespace taskmaster::http;

namespace {

constexpr core::time_ms now = 1'800'000'000'000;

core::task_spec decode_ok(const std::string& body) {
  auto result = decode_submission(body, request_limits{}, now);
  REQUIRE(std::holds_alternative<submission>(result));
  auto& sub = std::get<submission>(result);
  REQUIRE(sub.specs.size() == 1);
  return sub.specs[0];
}

std::string decode_error(const std::string& body,
                         request_limits limits = {}) {
  auto result = decode_submission(body, limits, now);
  REQUIRE(std::holds_alternative<api_error>(result));
  return std::get<api_error>(result).message;
}

} // namespace

TEST_CASE("only the command is required; priority defaults to MEDIUM",
          "[http][codec]") {
  auto spec = decode_ok(R"({"command": "true"})");
  CHECK(spec.command == "true");
  CHECK(spec.prio == core::priority::medium);
  CHECK(spec.max_retries == -1);
  CHECK(spec.run_at == 0);
}

TEST_CASE("every field decodes", "[http][codec]") {
  auto spec = decode_ok(R"({"command": "make", "name": "build",
    "description": "d", "priority": "critical", "timeout_seconds": 60,
    "max_retries": 2, "labels": {"os": "linux"}, "env": {"CC": "gcc"},
    "delay_seconds": 1.5, "idempotency_key": "k",
    "retry_backoff_seconds": 0.5, "retry_backoff_max_seconds": 10})");
  CHECK(spec.prio == core::priority::critical);
  CHECK(spec.timeout_seconds == 60);
  CHECK(spec.max_retries == 2);
  CHECK(spec.labels.at("os") == "linux");
  CHECK(spec.env.at("CC") == "gcc");
  CHECK(spec.run_at == now + 1500);
  CHECK(spec.idempotency_key == "k");
  CHECK(spec.retry_backoff_ms == 500);
  CHECK(spec.retry_backoff_max_ms == 10'000);
}

TEST_CASE("run_at takes RFC 3339 and not together with delay_seconds",
          "[http][codec]") {
  auto spec = decode_ok(R"({"command": "x", "run_at": "2027-06-01T08:00:00Z"})");
  CHECK(spec.run_at == core::parse_rfc3339("2027-06-01T08:00:00Z"));
  CHECK(decode_error(R"({"command": "x", "run_at": "2027-06-01T08:00:00Z",
                         "delay_seconds": 3})")
          .find("not both")
        != std::string::npos);
}

TEST_CASE("limits name the field and the bound", "[http][codec]") {
  request_limits limits;
  limits.max_command_bytes = 10;
  limits.max_labels = 1;
  CHECK(decode_error(R"({"command": "01234567890"})", limits)
        == "'command' is 11 bytes long; the limit is 10");
  CHECK(decode_error(R"({"command": "x", "labels": {"a": "1", "b": "2"}})",
                     limits)
        == "'labels' has 2 entries; the limit is 1");
  CHECK(decode_error(R"({"command": "x", "env": {"A=B": "1"}})")
          .find("must not contain")
        != std::string::npos);
  CHECK(decode_error(R"({"command": "x", "labels": {"a": "1\u0000"}})")
          .find("must not contain NUL")
        != std::string::npos);
  // What no worker's label may hold, no task's may (it stayed QUEUED).
  CHECK(decode_error(R"({"command": "x", "labels": {"a": "\u0001"}})")
        == "'labels': the value of label 'a' holds a control character (no "
           "worker can have such a label)");
  CHECK(decode_error(R"({"command": "x", "labels": {"a\u200bb": "1"}})")
        == "'labels': a label key holds an invisible character (no worker "
           "can have such a label)");
  // Labels may hold ',' and '=' (a worker's --labels escapes them).
  auto odd = decode_ok(R"({"command": "x", "labels": {"p": "/a,/b", "k=1": "v"}})");
  CHECK(odd.labels.at("p") == "/a,/b");
  CHECK(odd.labels.at("k=1") == "v");
  CHECK(decode_error(R"({"command": "x", "max_retries": 1000})")
        == "'max_retries' must be at most 100");
  CHECK(decode_error(R"([{"command": "x"}, {"command": ""}])")
        == "[1].command must not be empty");
  // A cap below the backoff used to be raised to it without a word.
  CHECK(decode_error(R"({"command": "x", "retry_backoff_seconds": 5,
                         "retry_backoff_max_seconds": 1})")
        == "'retry_backoff_max_seconds' must not be less than "
           "'retry_backoff_seconds'");
  // 0 ms means "the default" inside: a 0 used to retry after 1 s, doubling.
  CHECK(decode_error(R"({"command": "x", "retry_backoff_seconds": 0})")
        == "'retry_backoff_seconds' must be at least 0.001 (1 ms); leave it "
           "out for the master's --retry-backoff");
  CHECK(decode_error(R"({"command": "x", "retry_backoff_max_seconds": 0.0004})")
          .find("'retry_backoff_max_seconds' must be at least 0.001")
        != std::string::npos);
  CHECK(decode_ok(R"({"command": "x", "retry_backoff_seconds": 0.001})")
          .retry_backoff_ms
        == 1);
  // A task may not pass for another attempt or task.
  CHECK(decode_error(R"([{"command": "x"},
                         {"command": "x", "env": {"TASKMASTER_ATTEMPT": "9"}}])")
        == "[1].env[\"TASKMASTER_ATTEMPT\"] is set by TaskMaster for each "
           "attempt");
  CHECK(decode_error(R"({"command": "x", "env": {"TASKMASTER_TASK_ID": "1"}})")
        == "'env'[\"TASKMASTER_TASK_ID\"] is set by TaskMaster for each "
           "attempt");
}

TEST_CASE("encoded tasks carry every documented field", "[http][codec]") {
  core::task_record t;
  t.id = 7;
  t.spec.command = "echo hi";
  t.spec.prio = core::priority::high;
  t.status = core::task_status::succeeded;
  t.created_at = 1;
  t.has_exit_code = true;
  t.exit_code = 0;
  t.stdout_tail = "hi\n\xff";
  auto j = encode_task(t, true);
  for (const char* field :
       {"id", "name", "description", "command", "priority", "status",
        "timeout_seconds", "max_retries", "labels", "env", "attempts",
        "worker_id", "exit_code", "stdout", "stderr", "created_at",
        "started_at", "finished_at", "reason", "stdout_bytes",
        "stderr_bytes", "stdout_truncated", "stderr_truncated"})
    CHECK(j.contains(field));
  CHECK(j["priority"] == "HIGH");
  CHECK(j["started_at"].is_null());
  CHECK(j["worker_id"].is_null());
  CHECK(j["created_at"] == "1970-01-01T00:00:00.001Z");
  // Invalid UTF-8 in output does not break the answer.
  CHECK_NOTHROW(dump(j));
  // Cut or not is decided on the raw bytes, not on the replaced text.
  CHECK(j["stdout_truncated"] == false);
  t.stdout_bytes = 5;
  CHECK(encode_task(t, true)["stdout_truncated"] == true);
  CHECK_FALSE(encode_task(t, false).contains("stdout"));
}

TEST_CASE("numbers beyond a double are a JSON error, not a crash",
          "[http][codec][fuzz]") {
  // Found by fuzz_submission: nlohmann throws out_of_range, not parse_error.
  auto result = decode_submission("382222222222222222222222222222222222e2222222",
                                  request_limits{}, now);
  REQUIRE(std::holds_alternative<api_error>(result));
  CHECK(std::get<api_error>(result).code == api_errc::invalid_json);
  CHECK_FALSE(std::holds_alternative<submission>(
    decode_submission(R"({"command": "x", "timeout_seconds": 1e999})",
                      request_limits{}, now)));
}

TEST_CASE("task text escapes like nlohmann and replaces invalid UTF-8",
          "[http][codec]") {
  for (std::string s : {std::string{"plain"}, std::string{"q\"b\\s/"},
                        std::string{"tab\tnl\ncr\rbell\x07"},
                        std::string{"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
                        std::string{"bad \xff\xfe end"},
                        std::string{"cut \xe2\x82"},
                        std::string{"surrogate \xed\xa0\x80"},
                        std::string("nul\0inside", 10)}) {
    std::string ours;
    append_json_string(ours, s);
    auto theirs = json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    CHECK(json::parse(ours) == json::parse(theirs));
  }
  core::task_record t;
  t.id = 3;
  t.spec.command = "echo \"hi\"";
  t.spec.labels = {{"k", "v"}};
  t.spec.env = {{"A", "1"}};
  t.attempts.push_back(core::attempt_record{1, 0, "w", 5, 6, 0, true,
                                            core::attempt_outcome::succeeded, ""});
  auto j = json::parse(task_text(t, true));
  CHECK(j["command"] == "echo \"hi\"");
  CHECK(j["labels"]["k"] == "v");
  CHECK(j["env"]["A"] == "1");
  CHECK(j["attempts"][0]["exit_code"] == 0);
  CHECK(j["attempts"][0]["outcome"] == "SUCCEEDED");
  CHECK(j["worker_id"].is_null());
}
