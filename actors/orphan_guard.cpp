#include "actors/orphan_guard.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace taskmaster {

namespace {

/// The guard process. The daemon may have had threads when it forked: only
/// system calls from here on.
[[noreturn]] void guard_main(int lifeline, int daemons_end, const pid_t* table,
                             size_t capacity, pid_t daemon) {
  // The daemon's end of the lifeline, held here too, would never let it
  // close (whatever number it has: stdout and stderr may have been closed).
  ::close(daemons_end);
  ::prctl(PR_SET_NAME, "tm.orphan-guard");
  // What is meant for the daemon is not for its guard: a Ctrl-C to the
  // terminal's process group, a SIGTERM to the group from a supervisor.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2,
                  SIGTSTP, SIGTTIN, SIGTTOU})
    ::sigaction(sig, &ignore, nullptr);
  // None of the daemon's descriptors stays open here (a socket it closes
  // must close), except stdin, stdout, stderr and the lifeline, moved to 3.
  if (lifeline != 3 && ::dup2(lifeline, 3) < 0)
    ::_exit(1);
  if (::close_range(4, ~0U, 0) != 0)
    for (int fd = 4; fd < 65536; ++fd)
      ::close(fd);
  if (::getppid() == daemon) {
    char byte;
    for (;;) {
      auto n = ::read(3, &byte, 1);
      if (n == 0 || (n < 0 && errno != EINTR))
        break;
    }
  }
  for (size_t i = 0; i < capacity; ++i) {
    pid_t pgid = __atomic_load_n(&table[i], __ATOMIC_ACQUIRE);
    if (pgid > 0)
      ::kill(-pgid, SIGKILL);
  }
  ::_exit(0);
}

} // namespace

orphan_guard::orphan_guard(size_t capacity) : capacity_(capacity) {
  void* shared = ::mmap(nullptr, capacity * sizeof(pid_t),
                        PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                        0);
  if (shared == MAP_FAILED)
    return;
  table_ = static_cast<pid_t*>(shared); // zero-filled: every entry free
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    return;
  auto daemon = ::getpid();
  guard_pid_ = ::fork();
  if (guard_pid_ == 0)
    guard_main(pipe_fds[0], pipe_fds[1], table_, capacity_, daemon);
  ::close(pipe_fds[0]);
  if (guard_pid_ < 0) {
    ::close(pipe_fds[1]);
    return;
  }
  lifeline_ = pipe_fds[1];
  free_.reserve(capacity_);
  for (size_t i = capacity_; i > 0; --i)
    free_.push_back(static_cast<int>(i - 1));
}

orphan_guard::~orphan_guard() {
  if (lifeline_ >= 0)
    ::close(lifeline_);
  // It kills what is still listed and exits at once; a guard stopped or held
  // by a debugger does not hold the daemon's exit for more than 2 s.
  for (int i = 0; guard_pid_ > 0 && i < 200; ++i) {
    auto r = ::waitpid(guard_pid_, nullptr, WNOHANG);
    if (r == guard_pid_ || (r < 0 && errno != EINTR))
      break;
    ::usleep(10'000);
  }
  if (table_ != nullptr)
    ::munmap(table_, capacity_ * sizeof(pid_t));
}

int orphan_guard::add(pid_t pgid) {
  if (!active() || free_.empty() || pgid <= 0)
    return -1;
  int entry = free_.back();
  free_.pop_back();
  __atomic_store_n(&table_[entry], pgid, __ATOMIC_RELEASE);
  return entry;
}

void orphan_guard::remove(int entry) {
  if (entry < 0)
    return;
  __atomic_store_n(&table_[entry], 0, __ATOMIC_RELEASE);
  free_.push_back(entry);
}

} // namespace taskmaster
