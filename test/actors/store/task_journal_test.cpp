#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include <sqlite3.h>
#include <sys/stat.h>

#include "actors/store/task_journal.hpp"
#include "test/support/file_size_cap.hpp"
#include "test/support/temp_dir.hpp"
#include "test/support/wait.hpp"

using namespace taskmaster;
using namespace taskmaster::test;
using namespace std::chrono_literals;

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
  t.stdout_bytes = 5'000'000'000;
  t.stderr_bytes = 3;
  t.reason = "exit code 7";
  return t;
}

/// A journal in `dir` with the given group delay, loaded and ready to write.
std::unique_ptr<store::task_journal>
open_loaded(const temp_dir& dir, std::chrono::milliseconds group_delay) {
  store::journal_options options;
  options.group_delay = group_delay;
  std::string error;
  auto j = store::task_journal::open(dir.path(), options, error);
  if (j)
    j->load();
  return j;
}

/// insert_now, tried again while the writer thread still holds the
/// database after a commit it has just reported (for 10 s at most).
std::optional<bool> insert_now_when_free(store::task_journal& j,
                                         std::vector<core::task_record>& fresh) {
  std::optional<bool> ok;
  eventually([&] { return (ok = j.insert_now(fresh)).has_value(); }, 10s, 1ms);
  return ok;
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
  CHECK(t.stdout_bytes == 5'000'000'000);
  CHECK(t.stderr_bytes == 3);
  CHECK(t.has_exit_code);
}

TEST_CASE("attempt reasons of any text survive the journal",
          "[store][journal]") {
  temp_dir dir;
  std::string error;
  const std::vector<std::string> reasons{
    "plain text",
    "with \"quotes\" and a \\ backslash",
    "two\nlines\tand a tab",
    "caf\xc3\xa9 \xe2\x9c\x93",
    "",
  };
  {
    auto j = store::task_journal::open(dir.path(), {}, error);
    REQUIRE(j);
    j->load();
    auto t = sample(1);
    for (size_t i = 0; i < reasons.size(); ++i) {
      core::attempt_record a = t.attempts[0];
      a.number = static_cast<uint32_t>(i + 2);
      a.reason = reasons[i];
      a.worker_id = i % 2 == 0 ? "w-1.a_b" : "w\"odd";
      t.attempts.push_back(a);
    }
    j->write({t}, {});
    j->flush();
  }
  auto j = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(j);
  auto back = j->load();
  REQUIRE(back.tasks.size() == 1);
  REQUIRE(back.tasks[0].attempts.size() == reasons.size() + 1);
  for (size_t i = 0; i < reasons.size(); ++i) {
    const auto& a = back.tasks[0].attempts[i + 1];
    CHECK(a.reason == reasons[i]);
    CHECK(a.worker_id == (i % 2 == 0 ? "w-1.a_b" : "w\"odd"));
  }
}

TEST_CASE("a journaled task's changes are written over its row",
          "[store][journal]") {
  temp_dir dir;
  std::string error;
  // Every field that changes after admission differs between the versions.
  auto queued = sample(1);
  queued.status = core::task_status::queued;
  queued.attempts.clear();
  queued.started_at = queued.finished_at = 0;
  queued.not_before = 0;
  queued.queued_at = 1;
  queued.has_exit_code = false;
  queued.worker_id.clear();
  queued.stdout_tail.clear();
  queued.stderr_tail.clear();
  queued.stdout_bytes = queued.stderr_bytes = 0;
  queued.reason.clear();
  {
    auto j = store::task_journal::open(dir.path(), {}, error);
    REQUIRE(j);
    j->load();
    j->insert({queued});
    // Then RUNNING, then finished, each as write() gets them.
    auto running = queued;
    running.status = core::task_status::running;
    running.started_at = 2;
    running.worker_id = "w";
    j->write({running}, {});
    // The spec is written with the task and never again.
    auto finished = sample(1);
    finished.spec.command = "not written";
    finished.spec.labels = {{"not", "written"}};
    j->write({finished}, {});
    // A task write() has not seen before is written whole.
    j->write({sample(2)}, {});
    j->flush();
    CHECK(j->failure().empty());
  }
  auto j = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(j);
  auto back = j->load();
  REQUIRE(back.tasks.size() == 2);
  auto want = sample(1);
  for (const auto& t : back.tasks) {
    CHECK(t.spec.command == "echo " + std::to_string(t.id));
    CHECK(t.spec.labels == want.spec.labels);
    CHECK(t.spec.env == want.spec.env);
    CHECK(t.spec.prio == core::priority::high);
    CHECK(t.created_at == 1);
    CHECK(t.status == core::task_status::failed);
    CHECK(t.started_at == 2);
    CHECK(t.finished_at == 3);
    CHECK(t.not_before == 4);
    CHECK(t.queued_at == 5);
    CHECK(t.worker_id == "w");
    CHECK(t.stderr_tail == "err");
    CHECK(t.stderr_bytes == 3);
    REQUIRE(t.attempts.size() == 1);
    CHECK(t.attempts[0].exit_code == 7);
    CHECK(t.has_exit_code);
    CHECK(t.exit_code == 7);
    CHECK(t.stdout_tail == want.stdout_tail);
    CHECK(t.stdout_bytes == 5'000'000'000);
    CHECK(t.reason == "exit code 7");
  }
}

TEST_CASE("a task changed twice within one commit ends as it was last",
          "[store][journal]") {
  temp_dir dir;
  std::string error;
  {
    auto j = open_loaded(dir, std::chrono::seconds(30));
    REQUIRE(j);
    auto queued = sample(1);
    queued.status = core::task_status::queued;
    j->insert({queued});
    j->flush();
    REQUIRE(j->commits() == 1);
    // Both changes wait for company; the insert takes them along, in one
    // commit.
    auto running = sample(1);
    running.status = core::task_status::running;
    running.reason = "running";
    j->write({running}, {});
    auto later = sample(1);
    later.spec.command = "not written";
    later.reason = "the last state";
    j->write({later}, {});
    std::atomic<bool> durable{false};
    j->insert({sample(2)}, [&](bool ok) { durable = ok; });
    CHECK(eventually([&] { return durable.load(); }, 10s, 1ms));
    CHECK(j->commits() == 2);
    CHECK(j->failure().empty());
  }
  auto j = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(j);
  auto back = j->load();
  REQUIRE(back.tasks.size() == 2);
  CHECK(back.tasks[0].spec.command == "echo 1");
  CHECK(back.tasks[0].status == core::task_status::failed);
  CHECK(back.tasks[0].reason == "the last state");
  CHECK(back.tasks[1].spec.command == "echo 2");
}

TEST_CASE("a journal of schema version 1 is upgraded in place",
          "[store][journal]") {
  temp_dir dir;
  {
    // The table as the first release wrote it, with one finished task.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((dir.path() + "/taskmaster.db").c_str(), &db)
            == SQLITE_OK);
    const char* v1 = R"sql(
CREATE TABLE tasks (id INTEGER PRIMARY KEY, status INTEGER NOT NULL,
  priority INTEGER NOT NULL, command TEXT NOT NULL, name TEXT NOT NULL,
  description TEXT NOT NULL, timeout_seconds INTEGER NOT NULL,
  spec_max_retries INTEGER NOT NULL, max_retries INTEGER NOT NULL,
  labels TEXT NOT NULL, env TEXT NOT NULL, run_at INTEGER NOT NULL,
  idempotency_key TEXT NOT NULL, retry_backoff_ms INTEGER NOT NULL,
  retry_backoff_max_ms INTEGER NOT NULL, created_at INTEGER NOT NULL,
  started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL,
  not_before INTEGER NOT NULL, queued_at INTEGER NOT NULL,
  attempts TEXT NOT NULL, worker_id TEXT NOT NULL, exit_code INTEGER,
  stdout BLOB NOT NULL, stderr BLOB NOT NULL, reason TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO tasks VALUES (7, 2, 1, 'echo old', '', '', 0, -1, 0, '', '', 0,
  '', 0, 0, 1, 2, 3, 0, 1, '', 'w', 0, 'old
', '', '');
PRAGMA user_version=1;
)sql";
    REQUIRE(sqlite3_exec(db, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  std::string error;
  {
    auto j = store::task_journal::open(dir.path(), {}, error);
    REQUIRE(j);
    auto back = j->load();
    REQUIRE(back.tasks.size() == 1);
    CHECK(back.tasks[0].spec.command == "echo old");
    CHECK(back.tasks[0].stdout_tail == "old\n");
    CHECK(back.tasks[0].stdout_bytes == 0); // unknown before version 2
    j->write({sample(8)}, {});
    j->flush();
  }
  auto j = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(j);
  auto back = j->load();
  REQUIRE(back.tasks.size() == 2);
  CHECK(back.tasks[1].stdout_bytes == 5'000'000'000);
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

TEST_CASE("connected workers are kept until the master stops dispatching",
          "[store][journal]") {
  using steady = std::chrono::steady_clock;
  temp_dir dir;
  std::string error;
  {
    // State changes would wait 30 s for company.
    auto j = open_loaded(dir, std::chrono::seconds(30));
    REQUIRE(j);
    std::atomic<bool> durable{false};
    auto start = steady::now();
    j->note_workers({"w1", "w2", "w3", "w4"}, {},
                    [&](bool ok) { durable = ok; });
    // A worker is given nothing before its row is on disk: joining commits
    // at once.
    CHECK(eventually([&] { return durable.load(); }, 10s, 1ms));
    CHECK(steady::now() - start < std::chrono::seconds(5));
    j->note_workers({}, {"w2"});
    j->note_workers({"w1"}, {});
    j->flush();
    // A crash, or a master that fails to start: nothing more.
  }
  {
    auto j = store::task_journal::open(dir.path(), {}, error);
    REQUIRE(j);
    CHECK(j->load().connected_workers
          == std::vector<std::string>{"w1", "w3", "w4"});
    // Stopped while still waiting for w3 after that crash: w3 stays. Notes
    // keep their order around it: w5 joins after the forget, and w1 leaves
    // and joins again before it.
    j->note_workers({}, {"w1"});
    j->note_workers({"w1"}, {});
    std::atomic<bool> durable{false};
    j->stopped_dispatching({"w3", "w1"}, [&](bool ok) { durable = ok; });
    j->note_workers({"w5"}, {});
    CHECK(eventually([&] { return durable.load(); }, 10s, 1ms));
  }
  auto j = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(j);
  CHECK(j->load().connected_workers
        == std::vector<std::string>{"w1", "w3", "w5"});
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

TEST_CASE("state changes share a commit; new tasks, barriers and flush do "
          "not wait",
          "[store][journal]") {
  using steady = std::chrono::steady_clock;
  temp_dir dir;
  auto j = open_loaded(dir, std::chrono::seconds(30));
  REQUIRE(j);
  std::atomic<int> done{0};
  auto start = steady::now();
  j->insert({sample(1)}, [&](bool ok) { done += ok ? 1 : 100; });
  CHECK(eventually([&] { return done.load() != 0; }, 10s, 1ms));
  CHECK(done.load() == 1);
  CHECK(steady::now() - start < std::chrono::seconds(5));
  auto before = j->commits();
  // Apart enough that each would get its own commit without the delay.
  for (int i = 0; i < 5; ++i) {
    j->write({sample(1)}, {});
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  j->barrier([&](bool ok) { done += ok ? 1 : 100; });
  CHECK(eventually([&] { return done.load() != 1; }, 10s, 1ms));
  CHECK(done.load() == 2);
  CHECK(j->commits() == before + 1);
  j->write({sample(2)}, {});
  j->flush();
  CHECK(steady::now() - start < std::chrono::seconds(5));
  CHECK(j->commits() == before + 2);
}

TEST_CASE("a lone state change commits after the group delay, unprompted",
          "[store][journal]") {
  using steady = std::chrono::steady_clock;
  temp_dir dir;
  auto j = open_loaded(dir, std::chrono::milliseconds(50));
  REQUIRE(j);
  std::atomic<bool> done{false};
  std::atomic<int64_t> took_ms{-1};
  auto start = steady::now();
  j->write({sample(1)}, {}, [&](bool ok) {
    took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                steady::now() - start)
                .count();
    done = ok;
  });
  CHECK(eventually([&] { return done.load(); }, 10s, 1ms));
  CHECK(took_ms.load() >= 50);
  CHECK(took_ms.load() < 5000);
  CHECK(j->commits() == 1);
}

TEST_CASE("a new task committed on the caller's thread takes what was "
          "queued along, first",
          "[store][journal]") {
  temp_dir dir;
  {
    auto j = open_loaded(dir, std::chrono::seconds(30));
    REQUIRE(j);
    j->insert({sample(1)});
    j->flush();
    auto before = j->commits();
    // A state change waiting for company (30 s) ...
    auto changed = sample(1);
    changed.status = core::task_status::succeeded;
    std::atomic<bool> told{false};
    std::thread::id told_on;
    j->write({changed}, {}, [&](bool ok) {
      told_on = std::this_thread::get_id();
      told = ok;
    });
    // ... goes with the new task, in the same commit, told on this thread.
    std::vector<core::task_record> fresh{sample(2)};
    auto ok = insert_now_when_free(*j, fresh);
    REQUIRE(ok.has_value());
    CHECK(*ok);
    CHECK(told.load());
    CHECK(told_on == std::this_thread::get_id());
    CHECK(j->commits() == before + 1);
  }
  std::string error;
  auto j = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(j);
  auto back = j->load();
  REQUIRE(back.tasks.size() == 2);
  CHECK(back.tasks[0].status == core::task_status::succeeded);
  CHECK(back.tasks[1].spec.command == "echo 2");
  CHECK(back.last_id == 2);
}

TEST_CASE("a journal that fsyncs its commits leaves them to its writer",
          "[store][journal]") {
  temp_dir dir;
  store::journal_options options;
  options.fsync_commits = true;
  std::string error;
  auto j = store::task_journal::open(dir.path(), options, error);
  REQUIRE(j);
  j->load();
  std::vector<core::task_record> fresh{sample(1)};
  CHECK_FALSE(j->insert_now(fresh).has_value());
  // Untouched, for insert().
  REQUIRE(fresh.size() == 1);
  CHECK(fresh[0].spec.command == "echo 1");
  CHECK(j->commits() == 0);
}

TEST_CASE("a failed commit on the caller's thread fails the journal",
          "[store][journal]") {
  temp_dir dir;
  auto j = open_loaded(dir, std::chrono::milliseconds(10));
  REQUIRE(j);
  j->insert({sample(1)});
  j->flush();
  {
    file_size_cap cap{dir / "taskmaster.db-wal"};
    std::vector<core::task_record> fresh{sample(2)};
    auto ok = insert_now_when_free(*j, fresh);
    REQUIRE(ok.has_value());
    CHECK_FALSE(*ok);
  }
  CHECK_FALSE(j->failure().empty());
  std::vector<core::task_record> more{sample(3)};
  auto ok = insert_now_when_free(*j, more);
  REQUIRE(ok.has_value());
  CHECK_FALSE(*ok);
}

TEST_CASE("what was queued first is written first when a new task commits "
          "on the caller's thread; much queued is left to the writer",
          "[store][journal]") {
  temp_dir dir;
  {
    auto j = open_loaded(dir, std::chrono::seconds(30));
    REQUIRE(j);
    j->insert({sample(1)});
    j->flush();
    // Deleted, then written again: in the other order it would be gone.
    j->write({}, {1});
    std::vector<core::task_record> again{sample(1)};
    auto ok = insert_now_when_free(*j, again);
    REQUIRE(ok.has_value());
    CHECK(*ok);
    // A finished task's output waiting for company is more than a caller
    // should write: the new task goes to the writer thread.
    auto chatty = sample(3);
    chatty.stdout_tail = std::string(70 * 1024, 'o');
    j->write({chatty}, {});
    std::vector<core::task_record> fresh{sample(2)};
    CHECK_FALSE(j->insert_now(fresh).has_value());
    REQUIRE(fresh.size() == 1);
    j->insert(std::move(fresh));
    j->flush();
  }
  std::string error;
  auto j = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(j);
  auto back = j->load();
  REQUIRE(back.tasks.size() == 3);
  CHECK(back.tasks[0].id == 1);
  CHECK(back.tasks[2].stdout_tail.size() == 70 * 1024);
}

TEST_CASE("the WAL is checkpointed when commits run on the caller's thread",
          "[store][journal]") {
  temp_dir dir;
  auto j = open_loaded(dir, std::chrono::milliseconds(10));
  REQUIRE(j);
  // A commit of one task writes a few pages; 3,000 of them fill a WAL of
  // several times the checkpoint size (1,000 pages) unless the writer
  // thread checkpoints in between.
  int on_caller = 0;
  for (core::task_id id = 1; id <= 3000; ++id) {
    std::vector<core::task_record> fresh{sample(id)};
    if (auto ok = j->insert_now(fresh)) {
      REQUIRE(*ok);
      ++on_caller;
    } else {
      j->insert(std::move(fresh));
    }
  }
  j->flush();
  CHECK(on_caller > 0);
  struct stat st {};
  REQUIRE(::stat((dir / "taskmaster.db-wal").c_str(), &st) == 0);
  // About 1,000 pages of 4 KiB once checkpointed, reused from the start.
  CHECK(st.st_size < 8 * 1024 * 1024);
  j.reset();
  std::string error;
  auto again = store::task_journal::open(dir.path(), {}, error);
  REQUIRE(again);
  CHECK(again->load().tasks.size() == 3000);
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
