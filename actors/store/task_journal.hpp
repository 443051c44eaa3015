#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "actors/core/task.hpp"

struct sqlite3;
struct sqlite3_stmt;

/// The master's durable memory: every accepted task and every state change,
/// in SQLite (WAL). Writes are queued and committed by one writer thread in
/// batches (group commit), so a busy scheduler does not wait on the disk and
/// many submissions share one commit. Callers learn that their writes are
/// durable through a callback that runs after the commit. A caller with
/// nothing else to do may commit a few new tasks on its own thread instead
/// (insert_now): on an idle master that saves the two thread hand-offs a
/// queued commit costs on the way from a submission to its dispatch.
namespace taskmaster::store {

struct journal_options {
  /// `true`: fsync every commit (survives power loss). `false`: WAL with
  /// synchronous=NORMAL, which survives any crash of the process.
  bool fsync_commits = false;
  /// How long state changes (write()) may wait, from the first of them
  /// queued, for others to share their commit. New tasks (insert()),
  /// barrier() and flush() commit at once, taking everything queued with
  /// them.
  /// Only acknowledgements to workers wait on these commits, and a worker
  /// keeps a result until it is acknowledged, so a crash loses nothing.
  std::chrono::milliseconds group_delay{10};
};

/// What a restart reads back.
struct journal_contents {
  std::vector<core::task_record> tasks;
  core::task_id last_id = 0;
  /// This start's epoch: one more than the last start's, already durable.
  uint32_t epoch = 1;
  /// Workers that may run attempts an earlier master sent but never
  /// journaled: all those connected when a master crashed, and those a
  /// master that stopped cleanly was still waiting for (see
  /// stopped_dispatching).
  std::vector<std::string> connected_workers;
};

class task_journal {
public:
  /// Opens or creates `<dir>/taskmaster.db`. Returns nullptr and sets
  /// `error` when the directory or database cannot be used, or another
  /// process has it open.
  static std::unique_ptr<task_journal>
  open(const std::string& dir, journal_options options, std::string& error);

  ~task_journal();

  task_journal(const task_journal&) = delete;
  task_journal& operator=(const task_journal&) = delete;

  /// Reads everything back. Call before the first `write`.
  journal_contents load();

  /// Called with `true` once a write (and everything queued before it) is
  /// durable, or `false` when the commit failed; on the writer thread, or on
  /// the thread of an insert_now() that committed it. It runs with the
  /// database held: it must not call into the journal.
  using commit_callback = std::function<void(bool)>;

  /// Queues upserts and deletes; they may wait group_delay for company. A
  /// task already in the journal is updated in the fields that change after
  /// admission (status, times, attempts, outcome); its spec, written with
  /// the task, is never rewritten (scheduler_core only sets it on admission).
  void write(std::vector<core::task_record> upserts,
             std::vector<core::task_id> deletes,
             commit_callback committed = {});

  /// Queues tasks not in the journal yet (just admitted), written whole;
  /// commits at once.
  void insert(std::vector<core::task_record> fresh,
              commit_callback committed = {});

  /// Commits `fresh` as insert() would, with everything queued before it,
  /// on the calling thread, and returns whether the commit succeeded (false
  /// without trying once the journal has failed or is closing). Returns
  /// nullopt, leaving `fresh` untouched, when it would wait or write much:
  /// the writer thread holds the database (a commit, its callbacks, a
  /// checkpoint) or wants it for a checkpoint; commits are fsynced; or
  /// `fresh` and the queue together exceed about 64 KiB. Queue them with
  /// insert() then. Callbacks of the queued writes it takes along run on the
  /// calling thread.
  std::optional<bool> insert_now(std::vector<core::task_record>& fresh);

  /// Records workers that connected (`joined`, committed at once: a worker
  /// is given nothing before its row is durable) and workers that left or
  /// were lost (`gone`, which may wait for company). After a crash, the next
  /// master waits for the workers still recorded before it dispatches.
  void note_workers(std::vector<std::string> joined,
                    std::vector<std::string> gone,
                    commit_callback committed = {});

  /// `committed` runs once everything queued before it is durable; commits
  /// at once.
  void barrier(commit_callback committed);

  /// A barrier that also forgets every connected worker but `keep`, for a
  /// master that has stopped dispatching: every assignment it sent is
  /// journaled with it, so the next start waits only for `keep` (workers an
  /// earlier master may have sent attempts it never journaled, not back
  /// yet). A master that crashes or fails to start keeps them all recorded.
  void stopped_dispatching(std::vector<std::string> keep,
                           commit_callback committed);

  /// Blocks until everything queued so far is committed.
  void flush();

  /// Commits what is queued and stops the writer thread.
  void close();

  /// Number of commits so far (for metrics and tests).
  uint64_t commits() const;

  /// Set when a commit failed; the journal then refuses further writes.
  std::string failure() const;

private:
  struct batch {
    std::vector<core::task_record> upserts;
    std::vector<core::task_id> deletes;
    std::vector<std::string> workers_joined;
    std::vector<std::string> workers_gone;
    /// Set: forget every connected worker but these.
    std::optional<std::vector<std::string>> forget_workers_but;
    commit_callback committed;
    /// The upserts are new tasks: insert without trying an update first.
    bool fresh = false;
    /// Commit at once (new tasks, barriers), not after group_delay.
    bool urgent = false;
  };

  void enqueue(batch b);

  /// Roughly what `b` costs to write, in bytes.
  static size_t batch_bytes(const batch& b);

  /// Writes a whole row (insert, or replace an existing one): the spec and
  /// creation time of `t`, and the fields that change after admission of
  /// `now` (the same task, maybe later).
  bool write_row(const core::task_record& t, const core::task_record& now);

  /// Writes the fields that change after admission; false if the task has
  /// no row yet or the update failed (`missing` tells which).
  bool update_row(const core::task_record& t, bool& missing);

  task_journal(sqlite3* db, journal_options options, int lock_fd);

  void run();

  /// Commits `work` and tells its callbacks; with `db_mtx_` held, on the
  /// writer thread or not.
  bool commit_and_report(std::deque<batch>& work, bool on_writer);

  bool commit(std::deque<batch>& batches);

  /// WAL frames after the last commit (sqlite3_wal_hook).
  static int note_wal_size(void* journal, sqlite3* db, const char* name,
                           int frames);

  bool exec(const char* sql);

  /// Runs a prepared statement without results and resets it.
  bool step(sqlite3_stmt* stmt);

  sqlite3* db_;
  journal_options options_;
  /// Holds an exclusive flock on `<dir>/lock` so two masters cannot share a
  /// data directory.
  int lock_fd_;
  sqlite3_stmt* upsert_ = nullptr;
  sqlite3_stmt* update_ = nullptr;
  sqlite3_stmt* erase_ = nullptr;
  sqlite3_stmt* set_last_id_ = nullptr;
  sqlite3_stmt* worker_joined_ = nullptr;
  sqlite3_stmt* worker_gone_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* rollback_ = nullptr;
  core::task_id last_id_ = 0;
  /// The last_id the database holds.
  core::task_id saved_last_id_ = 0;

  /// Held while the database is used: by the writer thread for its commits
  /// and checkpoints, by insert_now() for its commit. Taken before `mtx_`.
  std::mutex db_mtx_;
  /// Frames in the WAL (under `db_mtx_`). SQLite's automatic checkpoint is
  /// off: the writer thread checkpoints once its callbacks have run, so no
  /// answer waits for the database file to be rewritten.
  int wal_frames_ = 0;

  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::condition_variable flushed_cv_;
  std::deque<batch> queue_;
  /// batch_bytes of what `queue_` holds.
  size_t queued_bytes_ = 0;
  uint64_t queued_ = 0;
  uint64_t written_ = 0;
  uint64_t commits_ = 0;
  /// An urgent batch or a flush() is waiting: commit without delay.
  bool urgent_ = false;
  /// When the queue last went from empty to not empty.
  std::chrono::steady_clock::time_point first_queued_at_;
  /// The writer thread has ended (flush() stops waiting for it).
  bool writer_done_ = false;
  bool stopping_ = false;
  /// insert_now() left the WAL past the checkpoint size: the writer
  /// checkpoints.
  bool checkpoint_due_ = false;
  std::string failure_;
  std::thread writer_;
};

} // namespace taskmaster::store
