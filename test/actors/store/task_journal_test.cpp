#include <catch2/catch.hpp>

#include <atomic>
#include <vector>

#include "actors/store/task_journal.hpp"
#include "test/support/temp_dir.hpp"

using namespace taskmaster;
using namespace taskmaster::test;

namespace {

core::task_record sample(core::task_id id) {
  core::task_record t;
  t.id = id;
  t.spec.command = "echo " + std::to_string(id);
  t.spec.name = "n";
  t.spec.description = "d";
  t.spec.prio = core::priority::high;
  t.spec.timeout_seconds = 5;
  t.spec.max_retries = 3;
  t.spec.labels = {{"gpu", "1"}};
  t.spec.env = {{"A", "b=c"}};
  t.spec.run_at = 99;
  t.spec.idempotency_key = "key-" + std::to_string(id);
  t.spec.retry_backoff_ms = 10;
  t.spec.retry_backoff_max_ms = 20;
  t.status = core::task_status::failed;
  t.created_at = 1;
  t.started_at = 2;
  t.finished_at = 3;
  t.not_before = 4;
  t.queued_at = 5;
  t.max_retries = 3;
  core::attempt_record a;
  a.number = 1;
  a.worker_id = "w";
  a.started_at = 2;
  a.finished_at = 3;
  a.exit_code = 7;
  a.has_exit_code = true;
  a.outcome = core::attempt_outcome::failed;
  a.reason = "exit code 7";
  t.attempts = {a};
  t.worker_id = "w";
  t.exit_code = 7;
  t.has_exit_code = true;
  t.stdout_tail = std::string("bin\0ary", 7);
  t.stderr_tail = "err";
  t.reason = "exit code 7";
  return t;
}

} // namespace

TEST_CASE("the journal gives back exactly what was written",
          "[store][journal]") {
  temp_dir dir;
  std::string error;
  {
    auto j = store::task_journal::open(dir.path(), {}, error);
    REQUIRE(j);
    CHECK(j->load().tasks.empty());
    j->write({sample(1), sample(2)}, {});
    j->flush();
  }
  auto j = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(j);
  auto back = j->load();
  REQUIRE(back.tasks.size() == 2);
  CHECK(back.last_id == 2);
  const auto& t = back.tasks[0];
  auto want = sample(1);
  CHECK(t.spec.command == want.spec.command);
  CHECK(t.spec.labels == want.spec.labels);
  CHECK(t.spec.env == want.spec.env);
  CHECK(t.spec.idempotency_key == "key-1");
  CHECK(t.spec.retry_backoff_max_ms == 20);
  CHECK(t.status == core::task_status::failed);
  CHECK(t.queued_at == 5);
  REQUIRE(t.attempts.size() == 1);
  CHECK(t.attempts[0].reason == "exit code 7");
  CHECK(t.attempts[0].exit_code == 7);
  CHECK(t.attempts[0].outcome == core::attempt_outcome::failed);
  CHECK(t.stdout_tail == want.stdout_tail);
  CHECK(t.has_exit_code);
}

TEST_CASE("deleted tasks stay deleted and their ids are not reused",
          "[store][journal]") {
  temp_dir dir;
  std::string error;
  {
    auto j = store::task_journal::open(dir.path(), {}, error);
    j->load();
    j->write({sample(1), sample(2), sample(3)}, {});
    j->write({}, {3});
    j->flush();
  }
  auto j = store::task_journal::open(dir.path(), {}, error);
  auto back = j->load();
  CHECK(back.tasks.size() == 2);
  CHECK(back.last_id == 3);
}

TEST_CASE("commit callbacks run in order once the data is durable",
          "[store][journal]") {
  temp_dir dir;
  std::string error;
  auto j = store::task_journal::open(dir.path(), {}, error);
  j->load();
  std::vector<int> order;
  std::mutex mtx;
  for (int i = 0; i < 200; ++i)
    j->write({sample(static_cast<core::task_id>(i + 1))}, {}, [&, i](bool ok) {
      CHECK(ok);
      std::lock_guard<std::mutex> guard{mtx};
      order.push_back(i);
    });
  j->flush();
  REQUIRE(order.size() == 200);
  for (int i = 0; i < 200; ++i)
    CHECK(order[static_cast<size_t>(i)] == i);
  // Many writes share commits.
  CHECK(j->commits() <= 200);
}

TEST_CASE("a data directory serves one master at a time", "[store][journal]") {
  temp_dir dir;
  std::string error;
  auto first = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(first);
  auto second = store::task_journal::open(dir.path(), {}, error);
  CHECK_FALSE(second);
  CHECK(error.find("in use by another master") != std::string::npos);
  first.reset();
  CHECK(store::task_journal::open(dir.path(), {}, error));
}

TEST_CASE("an unusable data directory is reported", "[store][journal]") {
  std::string error;
  CHECK_FALSE(store::task_journal::open("/proc/taskmaster-cannot-exist", {},
                                        error));
  CHECK(error.find("cannot create data directory") != std::string::npos);
}
