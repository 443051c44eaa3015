#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

namespace taskmaster {

/// Kills the process groups of a daemon's tasks when the daemon dies without
/// stopping them (kill -9, the OOM killer, a crash, an exit at a second
/// signal). Left running, a task's processes would be a second copy beside
/// the attempt the master starts again, working at once and reporting to no
/// one.
///
/// A small process forked when the guard is built waits for the daemon to
/// go (the end of a pipe only the daemon holds), then sends SIGKILL to every
/// group still listed in a table the two share, and exits. Listing a group
/// and taking it off are a store to shared memory: no system call, nothing
/// per task for the guard process to do. A daemon that stops its tasks
/// itself takes them off first, so the guard then finds nothing to kill.
///
/// Not covered: a process that left its task's group (`setsid`), a group
/// started just as the daemon died (after its spawn, before it was listed),
/// and a guard process killed itself (`kill -9 -PGID` of the daemon's own
/// group, say).
///
/// Build it at the daemon's start, while it is one small thread: the fork
/// copies the daemon's memory map, and a page the daemon writes afterwards
/// is copied once more while the guard keeps the old one. One runner lists
/// and takes off, on its own thread: not thread-safe otherwise.
class orphan_guard {
public:
  /// Forks the guard process. Without one (fork failed) active() is false
  /// and listing does nothing.
  explicit orphan_guard(size_t capacity = 65536);

  /// Lets the guard process go (it kills what is still listed) and reaps it
  /// (waiting 2 s at most).
  ~orphan_guard();

  orphan_guard(const orphan_guard&) = delete;
  orphan_guard& operator=(const orphan_guard&) = delete;

  bool active() const {
    return guard_pid_ > 0;
  }

  /// The guard process's pid (for tests), or -1.
  pid_t pid() const {
    return guard_pid_;
  }

  /// Lists the group `pgid`; returns its entry, or -1 when there is no
  /// guard or no room.
  int add(pid_t pgid);

  /// Takes entry `entry` off (ignored when -1). Called before the group's
  /// leader is reaped: until then its id cannot be reused by another group.
  void remove(int entry);

private:
  /// Shared with the guard process; entries are read and written with
  /// atomic builtins (0: free).
  pid_t* table_ = nullptr;
  size_t capacity_ = 0;
  /// Entries not in use, taken from the back.
  std::vector<int> free_;
  /// The daemon's end of the pipe the guard process waits on.
  int lifeline_ = -1;
  pid_t guard_pid_ = -1;
};

} // namespace taskmaster
