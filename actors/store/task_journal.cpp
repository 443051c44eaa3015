#include "actors/store/task_journal.hpp"

#include <pthread.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <unordered_map>

#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace taskmaster::store {

namespace {

using nlohmann::json;

/// 2 added stdout_bytes and stderr_bytes (at the end, as ALTER TABLE puts
/// them, so the positional INSERT fits both).
constexpr int schema_version = 2;

/// SQLite's default: a checkpoint once the WAL holds this many pages.
constexpr int checkpoint_frames = 1000;

/// What insert_now() writes on its caller's thread at most, queued writes
/// and new tasks together (see batch_bytes): about 0.1 ms of SQLite work
/// here. More goes to the writer thread.
constexpr size_t inline_bytes = 64 * 1024;

/// Roughly what a task's row costs to write.
size_t row_bytes(const core::task_record& t) {
  return 256 + t.spec.command.size() + t.spec.name.size()
         + t.spec.description.size() + t.stdout_tail.size()
         + t.stderr_tail.size() + t.reason.size();
}

constexpr const char* schema = R"sql(
CREATE TABLE IF NOT EXISTS tasks (
  id INTEGER PRIMARY KEY,
  status INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  command TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  timeout_seconds INTEGER NOT NULL,
  spec_max_retries INTEGER NOT NULL,
  max_retries INTEGER NOT NULL,
  labels TEXT NOT NULL,
  env TEXT NOT NULL,
  run_at INTEGER NOT NULL,
  idempotency_key TEXT NOT NULL,
  retry_backoff_ms INTEGER NOT NULL,
  retry_backoff_max_ms INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  not_before INTEGER NOT NULL,
  queued_at INTEGER NOT NULL,
  attempts TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  exit_code INTEGER,
  stdout BLOB NOT NULL,
  stderr BLOB NOT NULL,
  reason TEXT NOT NULL,
  stdout_bytes INTEGER NOT NULL DEFAULT 0,
  stderr_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS connected_workers (id TEXT PRIMARY KEY);
)sql";

constexpr const char* upsert_sql = R"sql(
INSERT OR REPLACE INTO tasks VALUES
  (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
   ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)
)sql";

/// What changes after admission: an UPDATE of these costs a fraction of
/// rewriting the row (no delete and insert, no spec to bind and copy).
constexpr const char* update_sql = R"sql(
UPDATE tasks SET status = ?2, started_at = ?3, finished_at = ?4,
  not_before = ?5, queued_at = ?6, attempts = ?7, worker_id = ?8,
  exit_code = ?9, stdout = ?10, stderr = ?11, reason = ?12,
  stdout_bytes = ?13, stderr_bytes = ?14
WHERE id = ?1
)sql";

constexpr const char* select_sql = R"sql(
SELECT id, status, priority, command, name, description, timeout_seconds,
       spec_max_retries, max_retries, labels, env, run_at, idempotency_key,
       retry_backoff_ms, retry_backoff_max_ms, created_at, started_at,
       finished_at, not_before, queued_at, attempts, worker_id, exit_code,
       stdout, stderr, reason, stdout_bytes, stderr_bytes
FROM tasks ORDER BY id
)sql";

std::string encode_map(const core::string_map& m) {
  return m.empty() ? std::string{} : json(m).dump();
}

core::string_map decode_map(const std::string& text) {
  if (text.empty())
    return {};
  return json::parse(text).get<core::string_map>();
}

/// JSON text of a string (quoted, escaped).
std::string quoted(const std::string& text) {
  // Worker ids and most reasons are plain printable ASCII: no escaping to
  // do, and no JSON value to build for every state change of every task.
  bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (plain)
    return '"' + text + '"';
  return json(text).dump(-1, ' ', false, json::error_handler_t::replace);
}

/// The attempts as a JSON array. Written directly rather than through a
/// json DOM: this runs for every state change of every task.
std::string encode_attempts(const std::vector<core::attempt_record>& attempts) {
  if (attempts.empty())
    return {};
  std::string out = "[";
  for (const auto& a : attempts) {
    if (out.size() > 1)
      out += ',';
    fmt::format_to(std::back_inserter(out),
                   R"({{"n":{},"e":{},"w":{},"s":{},"f":{},"o":{},"r":{})",
                   a.number, a.epoch, quoted(a.worker_id), a.started_at,
                   a.finished_at, static_cast<int>(a.outcome),
                   quoted(a.reason));
    if (a.has_exit_code)
      fmt::format_to(std::back_inserter(out), R"(,"x":{})", a.exit_code);
    out += '}';
  }
  out += ']';
  return out;
}

std::vector<core::attempt_record> decode_attempts(const std::string& text) {
  std::vector<core::attempt_record> result;
  if (text.empty())
    return result;
  for (const auto& j : json::parse(text)) {
    core::attempt_record a;
    a.number = j.at("n").get<uint32_t>();
    a.epoch = j.value("e", 0u);
    a.worker_id = j.at("w").get<std::string>();
    a.started_at = j.at("s").get<core::time_ms>();
    a.finished_at = j.at("f").get<core::time_ms>();
    a.outcome = static_cast<core::attempt_outcome>(j.at("o").get<int>());
    a.reason = j.at("r").get<std::string>();
    if (auto x = j.find("x"); x != j.end()) {
      a.exit_code = x->get<int32_t>();
      a.has_exit_code = true;
    }
    result.push_back(std::move(a));
  }
  return result;
}

void bind_text(sqlite3_stmt* stmt, int index, const std::string& text) {
  sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()),
                    SQLITE_TRANSIENT);
}

void bind_blob(sqlite3_stmt* stmt, int index, const std::string& bytes) {
  sqlite3_bind_blob(stmt, index, bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_TRANSIENT);
}

/// Binds, from parameter `c` on, the fields that change after admission,
/// in the order both the full row and the update list them (update_sql).
void bind_changing_fields(sqlite3_stmt* s, int c, const core::task_record& t) {
  sqlite3_bind_int64(s, c++, t.started_at);
  sqlite3_bind_int64(s, c++, t.finished_at);
  sqlite3_bind_int64(s, c++, t.not_before);
  sqlite3_bind_int64(s, c++, t.queued_at);
  bind_text(s, c++, encode_attempts(t.attempts));
  bind_text(s, c++, t.worker_id);
  if (t.has_exit_code)
    sqlite3_bind_int(s, c++, t.exit_code);
  else
    sqlite3_bind_null(s, c++);
  bind_blob(s, c++, t.stdout_tail);
  bind_blob(s, c++, t.stderr_tail);
  bind_text(s, c++, t.reason);
  sqlite3_bind_int64(s, c++, static_cast<sqlite3_int64>(t.stdout_bytes));
  sqlite3_bind_int64(s, c++, static_cast<sqlite3_int64>(t.stderr_bytes));
}

std::string column_text(sqlite3_stmt* stmt, int index) {
  auto* data = sqlite3_column_blob(stmt, index);
  auto size = sqlite3_column_bytes(stmt, index);
  if (data == nullptr || size <= 0)
    return {};
  return std::string{static_cast<const char*>(data), static_cast<size_t>(size)};
}

} // namespace

std::unique_ptr<task_journal> task_journal::open(const std::string& dir,
                                                 journal_options options,
                                                 std::string& error) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    error = fmt::format("cannot create data directory {}: {}", dir,
                        std::strerror(errno));
    return nullptr;
  }
  auto lock_path = dir + "/lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    error = fmt::format("cannot open {}: {}", lock_path, std::strerror(errno));
    return nullptr;
  }
  // A master killed a moment ago may still be exiting (a large one frees
  // its memory first): give it a little time before refusing.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (std::chrono::steady_clock::now() >= give_up) {
      char holder[32] = {};
      auto n = ::pread(lock_fd, holder, sizeof holder - 1, 0);
      ::close(lock_fd);
      std::string pid{holder, static_cast<size_t>(std::max<ssize_t>(n, 0))};
      pid.erase(pid.find_last_not_of(" \n") + 1);
      error = fmt::format("data directory {} is in use by another master{}",
                          dir, pid.empty() ? "" : " (pid " + pid + ")");
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Who holds it, for the message above (only a hint: failing to write it
  // changes nothing else).
  auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd, 0) == 0)
    [[maybe_unused]] auto n = ::pwrite(lock_fd, pid.data(), pid.size(), 0);
  // SQLite's allocation statistics take a global mutex per malloc; nothing
  // reads them. Takes effect only before SQLite initialises (first open).
  static const bool configured = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)configured;
  auto path = dir + "/taskmaster.db";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                        | SQLITE_OPEN_NOMUTEX,
                      nullptr)
      != SQLITE_OK) {
    error = fmt::format("cannot open {}: {}", path,
                        db != nullptr ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    ::close(lock_fd);
    return nullptr;
  }
  std::unique_ptr<task_journal> journal{new task_journal(db, options, lock_fd)};
  // Exclusive locking: only this process ever opens the database (the flock
  // above), so SQLite can skip its file locks per transaction and keep the
  // WAL index in memory instead of a shared-memory file.
  auto setup = fmt::format("PRAGMA locking_mode=EXCLUSIVE; "
                           "PRAGMA journal_mode=WAL; PRAGMA synchronous={}; "
                           "PRAGMA busy_timeout=5000; {}",
                           options.fsync_commits ? "FULL" : "NORMAL", schema);
  if (!journal->exec(setup.c_str())) {
    error = fmt::format("cannot initialise {}: {}", path, sqlite3_errmsg(db));
    return nullptr;
  }
  sqlite3_stmt* version = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &version, nullptr);
  int found = 0;
  if (sqlite3_step(version) == SQLITE_ROW)
    found = sqlite3_column_int(version, 0);
  sqlite3_finalize(version);
  if (found == 1) {
    // A journal from before the byte counts: they read 0 (unknown). One
    // transaction, so a crash midway leaves version 1 to upgrade again.
    if (!journal->exec("BEGIN; ALTER TABLE tasks ADD COLUMN stdout_bytes "
                       "INTEGER NOT NULL DEFAULT 0; ALTER TABLE tasks ADD "
                       "COLUMN stderr_bytes INTEGER NOT NULL DEFAULT 0; "
                       "PRAGMA user_version=2; COMMIT;")) {
      error = fmt::format("cannot upgrade {} to schema version 2: {}", path,
                          sqlite3_errmsg(db));
      journal->exec("ROLLBACK");
      return nullptr;
    }
    found = schema_version;
  }
  if (found == 0) {
    journal->exec(
      fmt::format("PRAGMA user_version={}", schema_version).c_str());
  } else if (found != schema_version) {
    error = fmt::format("{} has schema version {}, this build reads {}", path,
                        found, schema_version);
    return nullptr;
  }
  if (sqlite3_prepare_v2(db, upsert_sql, -1, &journal->upsert_, nullptr)
        != SQLITE_OK
      || sqlite3_prepare_v2(db, update_sql, -1, &journal->update_, nullptr)
           != SQLITE_OK
      || sqlite3_prepare_v2(db, "DELETE FROM tasks WHERE id = ?1", -1,
                            &journal->erase_, nullptr)
           != SQLITE_OK
      || sqlite3_prepare_v2(db,
                            "INSERT OR REPLACE INTO meta VALUES ('last_id', ?1)",
                            -1, &journal->set_last_id_, nullptr)
           != SQLITE_OK
      || sqlite3_prepare_v2(db,
                            "INSERT OR IGNORE INTO connected_workers "
                            "VALUES (?1)",
                            -1, &journal->worker_joined_, nullptr)
           != SQLITE_OK
      || sqlite3_prepare_v2(db, "DELETE FROM connected_workers WHERE id = ?1",
                            -1, &journal->worker_gone_, nullptr)
           != SQLITE_OK
      || sqlite3_prepare_v2(db, "BEGIN", -1, &journal->begin_, nullptr)
           != SQLITE_OK
      || sqlite3_prepare_v2(db, "COMMIT", -1, &journal->commit_, nullptr)
           != SQLITE_OK
      || sqlite3_prepare_v2(db, "ROLLBACK", -1, &journal->rollback_, nullptr)
           != SQLITE_OK) {
    error = fmt::format("cannot prepare statements on {}: {}", path,
                        sqlite3_errmsg(db));
    return nullptr;
  }
  // This hook replaces SQLite's automatic checkpoint (which is one, so a
  // later PRAGMA wal_autocheckpoint would replace it in turn): run() does
  // the checkpoints, on the writer thread.
  sqlite3_wal_hook(db, &task_journal::note_wal_size, journal.get());
  journal->writer_ = std::thread{[j = journal.get()] {
    ::pthread_setname_np(::pthread_self(), "tm.journal");
    j->run();
  }};
  return journal;
}

task_journal::task_journal(sqlite3* db, journal_options options, int lock_fd)
  : db_(db), options_(options), lock_fd_(lock_fd) {
}

task_journal::~task_journal() {
  close();
  sqlite3_finalize(upsert_);
  sqlite3_finalize(update_);
  sqlite3_finalize(erase_);
  sqlite3_finalize(set_last_id_);
  sqlite3_finalize(worker_joined_);
  sqlite3_finalize(worker_gone_);
  sqlite3_finalize(begin_);
  sqlite3_finalize(commit_);
  sqlite3_finalize(rollback_);
  sqlite3_close(db_);
  ::close(lock_fd_);
}

bool task_journal::step(sqlite3_stmt* stmt) {
  auto rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE || rc == SQLITE_ROW;
}

bool task_journal::exec(const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    sqlite3_free(message);
    return false;
  }
  return true;
}

journal_contents task_journal::load() {
  journal_contents result;
  auto read_meta = [this](const char* key) -> int64_t {
    sqlite3_stmt* meta = nullptr;
    sqlite3_prepare_v2(db_, "SELECT value FROM meta WHERE key = ?1", -1, &meta,
                       nullptr);
    sqlite3_bind_text(meta, 1, key, -1, SQLITE_STATIC);
    int64_t value = 0;
    if (sqlite3_step(meta) == SQLITE_ROW)
      value = sqlite3_column_int64(meta, 0);
    sqlite3_finalize(meta);
    return value;
  };
  result.last_id = static_cast<core::task_id>(read_meta("last_id"));
  // Count this start before anything is dispatched in it.
  result.epoch = static_cast<uint32_t>(read_meta("epoch")) + 1;
  exec(fmt::format("INSERT OR REPLACE INTO meta VALUES ('epoch', {})",
                   result.epoch)
         .c_str());
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db_, select_sql, -1, &stmt, nullptr);
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    core::task_record t;
    int c = 0;
    t.id = static_cast<core::task_id>(sqlite3_column_int64(stmt, c++));
    t.status = static_cast<core::task_status>(sqlite3_column_int(stmt, c++));
    t.spec.prio = static_cast<core::priority>(sqlite3_column_int(stmt, c++));
    t.spec.command = column_text(stmt, c++);
    t.spec.name = column_text(stmt, c++);
    t.spec.description = column_text(stmt, c++);
    t.spec.timeout_seconds = static_cast<uint32_t>(sqlite3_column_int64(stmt, c++));
    t.spec.max_retries = sqlite3_column_int(stmt, c++);
    t.max_retries = static_cast<uint32_t>(sqlite3_column_int64(stmt, c++));
    t.spec.labels = decode_map(column_text(stmt, c++));
    t.spec.env = decode_map(column_text(stmt, c++));
    t.spec.run_at = sqlite3_column_int64(stmt, c++);
    t.spec.idempotency_key = column_text(stmt, c++);
    t.spec.retry_backoff_ms = static_cast<uint32_t>(sqlite3_column_int64(stmt, c++));
    t.spec.retry_backoff_max_ms = static_cast<uint32_t>(sqlite3_column_int64(stmt, c++));
    t.created_at = sqlite3_column_int64(stmt, c++);
    t.started_at = sqlite3_column_int64(stmt, c++);
    t.finished_at = sqlite3_column_int64(stmt, c++);
    t.not_before = sqlite3_column_int64(stmt, c++);
    t.queued_at = sqlite3_column_int64(stmt, c++);
    t.attempts = decode_attempts(column_text(stmt, c++));
    t.worker_id = column_text(stmt, c++);
    if (sqlite3_column_type(stmt, c) != SQLITE_NULL) {
      t.exit_code = sqlite3_column_int(stmt, c);
      t.has_exit_code = true;
    }
    ++c;
    t.stdout_tail = column_text(stmt, c++);
    t.stderr_tail = column_text(stmt, c++);
    t.reason = column_text(stmt, c++);
    t.stdout_bytes = static_cast<uint64_t>(sqlite3_column_int64(stmt, c++));
    t.stderr_bytes = static_cast<uint64_t>(sqlite3_column_int64(stmt, c++));
    if (t.id > result.last_id)
      result.last_id = t.id;
    result.tasks.push_back(std::move(t));
  }
  sqlite3_finalize(stmt);
  sqlite3_prepare_v2(db_, "SELECT id FROM connected_workers ORDER BY id", -1,
                     &stmt, nullptr);
  while (sqlite3_step(stmt) == SQLITE_ROW)
    result.connected_workers.push_back(column_text(stmt, 0));
  sqlite3_finalize(stmt);
  last_id_ = result.last_id;
  saved_last_id_ = result.last_id;
  return result;
}

void task_journal::write(std::vector<core::task_record> upserts,
                         std::vector<core::task_id> deletes,
                         commit_callback committed) {
  enqueue(batch{std::move(upserts), std::move(deletes), {}, {}, {},
                std::move(committed), false, false});
}

void task_journal::insert(std::vector<core::task_record> fresh,
                          commit_callback committed) {
  enqueue(
    batch{std::move(fresh), {}, {}, {}, {}, std::move(committed), true, true});
}

size_t task_journal::batch_bytes(const batch& b) {
  size_t n = 64 * (b.deletes.size() + b.workers_joined.size()
                   + b.workers_gone.size());
  for (const auto& t : b.upserts)
    n += row_bytes(t);
  return n;
}

std::optional<bool>
task_journal::insert_now(std::vector<core::task_record>& fresh) {
  if (options_.fsync_commits)
    return std::nullopt;
  size_t fresh_bytes = 0;
  for (const auto& t : fresh)
    fresh_bytes += row_bytes(t);
  if (fresh_bytes > inline_bytes)
    return std::nullopt;
  std::unique_lock<std::mutex> db_guard{db_mtx_, std::try_to_lock};
  if (!db_guard)
    return std::nullopt;
  std::deque<batch> work;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!failure_.empty() || stopping_)
      return false;
    // The writer waits for the database to checkpoint: its turn first, or
    // a caller committing in a loop would keep the WAL growing. Much queued
    // (outputs of finished tasks): the writer's, off the caller's thread.
    if (checkpoint_due_ || queued_bytes_ + fresh_bytes > inline_bytes)
      return std::nullopt;
    // What is queued was queued first: it commits first, in this commit.
    work.swap(queue_);
    queued_bytes_ = 0;
    urgent_ = false;
    work.push_back(batch{std::move(fresh), {}, {}, {}, {}, {}, true, true});
    ++queued_;
  }
  return commit_and_report(work, false);
}

void task_journal::note_workers(std::vector<std::string> joined,
                                std::vector<std::string> gone,
                                commit_callback committed) {
  bool urgent = !joined.empty();
  enqueue(batch{{}, {}, std::move(joined), std::move(gone), {},
                std::move(committed), false, urgent});
}

void task_journal::barrier(commit_callback committed) {
  enqueue(batch{{}, {}, {}, {}, {}, std::move(committed), false, true});
}

void task_journal::stopped_dispatching(std::vector<std::string> keep,
                                       commit_callback committed) {
  enqueue(
    batch{{}, {}, {}, {}, std::move(keep), std::move(committed), false, true});
}

void task_journal::enqueue(batch b) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (!failure_.empty() || stopping_) {
    guard.unlock();
    if (b.committed)
      b.committed(false);
    return;
  }
  // The writer needs waking when nothing was queued (it sleeps, or commits
  // and finds this when it loops), or when this cannot wait; otherwise it
  // is already counting down group_delay for what is queued.
  bool wake = queue_.empty() || b.urgent;
  if (queue_.empty())
    first_queued_at_ = std::chrono::steady_clock::now();
  urgent_ = urgent_ || b.urgent;
  queued_bytes_ += batch_bytes(b);
  queue_.push_back(std::move(b));
  ++queued_;
  if (wake)
    cv_.notify_one();
}

void task_journal::flush() {
  std::unique_lock<std::mutex> guard{mtx_};
  auto target = queued_;
  // What is queued commits now; what is being committed needs no hurry.
  if (!queue_.empty()) {
    urgent_ = true;
    cv_.notify_one();
  }
  flushed_cv_.wait(guard, [&] {
    return written_ >= target || !failure_.empty() || writer_done_;
  });
}

void task_journal::close() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_)
      return;
    stopping_ = true;
    cv_.notify_one();
  }
  if (writer_.joinable())
    writer_.join();
}

uint64_t task_journal::commits() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return commits_;
}

std::string task_journal::failure() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return failure_;
}

void task_journal::run() {
  std::deque<batch> work;
  for (;;) {
    {
      std::unique_lock<std::mutex> guard{mtx_};
      cv_.wait(guard,
               [&] { return !queue_.empty() || stopping_ || checkpoint_due_; });
      if (queue_.empty() && stopping_)
        break;
      // State changes wait a little for company, counted from the first of
      // them: one commit (its WAL writes, its wake-ups) then serves many.
      // What queued during the last commit has had its company already.
      if (!queue_.empty() && !urgent_ && !stopping_
          && options_.group_delay.count() > 0)
        cv_.wait_until(guard, first_queued_at_ + options_.group_delay,
                       [&] { return urgent_ || stopping_ || checkpoint_due_; });
    }
    // An insert_now() may be committing: the queue is taken only with the
    // database held, so commits keep the order of the queue.
    std::lock_guard<std::mutex> db_guard{db_mtx_};
    bool checkpoint = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      urgent_ = false;
      checkpoint = checkpoint_due_;
      checkpoint_due_ = false;
      work.swap(queue_);
      queued_bytes_ = 0;
    }
    if (!work.empty())
      commit_and_report(work, true);
    work.clear();
    if (checkpoint || wal_frames_ >= checkpoint_frames) {
      // PASSIVE: copies what it can and never blocks; a failure here loses
      // nothing (the WAL keeps every commit) and is tried again after the
      // next commit.
      if (sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                    nullptr, nullptr)
          == SQLITE_OK)
        wal_frames_ = 0;
    }
  }
  {
    std::lock_guard<std::mutex> guard{mtx_};
    writer_done_ = true;
  }
  flushed_cv_.notify_all();
}

bool task_journal::commit_and_report(std::deque<batch>& work, bool on_writer) {
  bool ok = false;
  try {
    ok = commit(work);
  } catch (const std::exception& e) {
    // Nothing here should throw (the API refuses what JSON cannot encode;
    // memory could run out); if it does, the commit fails as a disk error
    // would, on whichever thread runs it.
    step(rollback_);
    saved_last_id_ = 0;
    std::lock_guard<std::mutex> guard{mtx_};
    if (failure_.empty())
      failure_ = fmt::format("the commit failed: {}", e.what());
  }
  {
    // Counted before the callbacks run, so whoever a callback wakes sees
    // this commit (and its failure) in commits() and failure().
    std::lock_guard<std::mutex> guard{mtx_};
    if (ok)
      ++commits_;
    else if (failure_.empty())
      failure_ = sqlite3_errmsg(db_);
  }
  for (auto& b : work)
    if (b.committed)
      b.committed(ok);
  {
    std::lock_guard<std::mutex> guard{mtx_};
    written_ += work.size();
    // The writer checkpoints after its own commits; after one on another
    // thread it is woken for it.
    if (wal_frames_ >= checkpoint_frames && !on_writer) {
      checkpoint_due_ = true;
      cv_.notify_one();
    }
  }
  flushed_cv_.notify_all();
  return ok;
}

int task_journal::note_wal_size(void* journal, sqlite3*, const char*,
                                int frames) {
  static_cast<task_journal*>(journal)->wal_frames_ = frames;
  return SQLITE_OK;
}

bool task_journal::write_row(const core::task_record& t,
                             const core::task_record& now) {
  auto* s = upsert_;
  int c = 1;
  sqlite3_bind_int64(s, c++, static_cast<sqlite3_int64>(t.id));
  sqlite3_bind_int(s, c++, static_cast<int>(now.status));
  sqlite3_bind_int(s, c++, static_cast<int>(t.spec.prio));
  bind_text(s, c++, t.spec.command);
  bind_text(s, c++, t.spec.name);
  bind_text(s, c++, t.spec.description);
  sqlite3_bind_int64(s, c++, t.spec.timeout_seconds);
  sqlite3_bind_int(s, c++, t.spec.max_retries);
  sqlite3_bind_int64(s, c++, t.max_retries);
  bind_text(s, c++, encode_map(t.spec.labels));
  bind_text(s, c++, encode_map(t.spec.env));
  sqlite3_bind_int64(s, c++, t.spec.run_at);
  bind_text(s, c++, t.spec.idempotency_key);
  sqlite3_bind_int64(s, c++, t.spec.retry_backoff_ms);
  sqlite3_bind_int64(s, c++, t.spec.retry_backoff_max_ms);
  sqlite3_bind_int64(s, c++, t.created_at);
  bind_changing_fields(s, c, now);
  return step(s);
}

bool task_journal::update_row(const core::task_record& t, bool& missing) {
  auto* s = update_;
  int c = 1;
  sqlite3_bind_int64(s, c++, static_cast<sqlite3_int64>(t.id));
  sqlite3_bind_int(s, c++, static_cast<int>(t.status));
  bind_changing_fields(s, c, t);
  auto ok = step(s);
  missing = ok && sqlite3_changes(db_) == 0;
  return ok && !missing;
}

bool task_journal::commit(std::deque<batch>& batches) {
  if (!step(begin_))
    return false;
  auto ok = true;
  // A task changed more than once within one commit (started and ended
  // within the group delay) is written once, as it is last: a short task
  // costs an insert and one update instead of two. Within one batch a task
  // appears once (the scheduler writes each changed task once per plan).
  // A task inserted in this commit keeps the spec it was inserted with.
  std::unordered_map<core::task_id, const core::task_record*> last;
  std::unordered_map<core::task_id, const core::task_record*> inserted;
  // Only state changes (not new tasks) can repeat a task: bulk submissions
  // skip the bookkeeping.
  bool changes = std::any_of(batches.begin(), batches.end(),
                             [](const batch& b) {
                               return !b.fresh && !b.upserts.empty();
                             });
  if (batches.size() > 1 && changes)
    for (const auto& b : batches)
      for (const auto& t : b.upserts) {
        last[t.id] = &t;
        if (b.fresh)
          inserted[t.id] = &t;
      }
  for (const auto& b : batches) {
    for (const auto& t : b.upserts) {
      if (!last.empty() && last[t.id] != &t)
        continue;
      const auto* whole = &t;
      if (auto i = inserted.find(t.id); i != inserted.end())
        whole = i->second;
      bool missing = true;
      // Inserted in this commit: no row to update yet.
      if (!b.fresh && whole == &t && ok)
        ok = update_row(t, missing) || missing;
      if (missing && ok)
        ok = write_row(*whole, t);
      if (t.id > last_id_)
        last_id_ = t.id;
    }
    for (auto id : b.deletes) {
      sqlite3_bind_int64(erase_, 1, static_cast<sqlite3_int64>(id));
      ok = ok && sqlite3_step(erase_) == SQLITE_DONE;
      sqlite3_reset(erase_);
    }
    auto note = [&](sqlite3_stmt* stmt, const std::string& id) {
      bind_text(stmt, 1, id);
      ok = ok && step(stmt);
    };
    for (const auto& id : b.workers_joined)
      note(worker_joined_, id);
    for (const auto& id : b.workers_gone)
      note(worker_gone_, id);
    if (b.forget_workers_but && ok) {
      std::vector<std::string> recorded;
      sqlite3_stmt* all = nullptr;
      ok = sqlite3_prepare_v2(db_, "SELECT id FROM connected_workers", -1,
                              &all, nullptr)
           == SQLITE_OK;
      int rc = SQLITE_DONE;
      while (ok && (rc = sqlite3_step(all)) == SQLITE_ROW)
        recorded.push_back(column_text(all, 0));
      ok = ok && rc == SQLITE_DONE;
      sqlite3_finalize(all);
      const auto& keep = *b.forget_workers_but;
      for (const auto& id : recorded)
        if (std::find(keep.begin(), keep.end(), id) == keep.end())
          note(worker_gone_, id);
    }
  }
  // Remember the highest id ever used, so ids are not reused after the tasks
  // that carried them were deleted by retention.
  if (last_id_ != saved_last_id_) {
    sqlite3_bind_int64(set_last_id_, 1, static_cast<sqlite3_int64>(last_id_));
    ok = ok && step(set_last_id_);
    saved_last_id_ = last_id_;
  }
  if (!ok) {
    step(rollback_);
    saved_last_id_ = 0;
    return false;
  }
  return step(commit_);
}

} // namespace taskmaster::store
