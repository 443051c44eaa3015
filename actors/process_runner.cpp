#include "actors/process_runner.hpp"

#include <pthread.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

extern char** environ;

namespace taskmaster {

namespace {

using steady = std::chrono::steady_clock;

core::time_ms wall_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev)
                           : fmt::format("signal {}", sig);
}

void close_fd(int& fd) {
  if (fd >= 0) {
    ::close(fd);
    fd = -1;
  }
}

/// Appends `data` and keeps only the last `limit` bytes (amortised: trims
/// once the buffer holds twice the limit).
void append_tail(std::string& buf, const char* data, size_t n, size_t limit) {
  buf.append(data, n);
  if (buf.size() > 2 * limit)
    buf.erase(0, buf.size() - limit);
}

void trim_tail(std::string& buf, size_t limit) {
  if (buf.size() > limit)
    buf.erase(0, buf.size() - limit);
}

/// Everything the child of spawn_shell needs, prepared by the parent: the
/// child shares the parent's memory until it execs, so it only makes system
/// calls.
struct exec_request {
  char* const* argv;
  char* const* envp;
  /// The signals to set back to SIG_DFL (see signals_to_reset).
  const int* reset_signals;
  size_t reset_count;
  int stdout_fd;
  int stderr_fd;
  /// The daemon's pid, to tell whether it died before the child asked to
  /// die with it (see die_with_daemon).
  pid_t daemon_pid;
  /// Where to stop closing descriptors one by one if close_range fails.
  int max_fd;
  /// Set by the child when it cannot exec (the memory is shared).
  int error = 0;
};

/// Closes every descriptor from 3 up (in a child, before exec).
void close_from_3(int max_fd) {
  if (::close_range(3, ~0U, 0) != 0) // ENOSYS before Linux 5.9
    for (int fd = 3; fd < max_fd; ++fd)
      ::close(fd);
}

/// The signals a child sets back to SIG_DFL before exec. exec resets caught
/// signals by itself, but an ignored one would stay ignored in the task, and
/// a handler of ours must not run in a vforked child (it shares our memory)
/// between unblocking and exec. Resetting all 62 cost 12 us per spawn here.
/// Instead: the signals changed when the runner starts (the daemon sets its
/// dispositions in main, before any runner), and those that programs and
/// libraries commonly change at any time, as cpp-httplib's server does with
/// SIGPIPE when a gateway starts after a local worker's runner.
std::vector<int> signals_to_reset() {
  std::vector<int> result{SIGHUP,  SIGINT,  SIGQUIT, SIGPIPE,  SIGALRM,
                          SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD,  SIGTSTP,
                          SIGTTIN, SIGTTOU, SIGXFSZ, SIGWINCH, SIGURG};
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction current {};
    if (sig != SIGKILL && sig != SIGSTOP
        && std::find(result.begin(), result.end(), sig) == result.end()
        && ::sigaction(sig, nullptr, &current) == 0
        && current.sa_handler != SIG_DFL)
      result.push_back(sig);
  }
  return result;
}

void reset_signals(const int* signals, size_t count) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (size_t i = 0; i < count; ++i)
    ::sigaction(signals[i], &dfl, nullptr);
}

/// Asks the kernel to SIGKILL the calling child when the thread that
/// started it ends: the runner's thread ends only after killing its children
/// itself, so this acts when the daemon dies without a word (kill -9, the
/// OOM killer). Its tasks then run again elsewhere; a shell left running
/// would make that a second copy, working at once and reporting to no one.
/// Only the shell gets it (and a command it execs, `exec cmd`): the rest of
/// the group is the orphan guard's (see orphan_guard), this is the second
/// line for a shell the guard never saw listed. Returns 0, errno, or ESRCH
/// when the daemon was already gone.
int die_with_daemon(pid_t daemon_pid) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    return errno;
  return ::getppid() == daemon_pid ? 0 : ESRCH;
}

int exec_shell(void* arg) {
  auto* r = static_cast<exec_request*>(arg);
  if (int e = die_with_daemon(r->daemon_pid); e != 0) {
    r->error = e;
    ::_exit(127);
  }
  // The daemon's handlers mean nothing in the task: default dispositions.
  reset_signals(r->reset_signals, r->reset_count);
  int devnull = ::open("/dev/null", O_RDONLY);
  if (::setpgid(0, 0) != 0 || devnull < 0 || ::dup2(devnull, 0) < 0
      || ::dup2(r->stdout_fd, 1) < 0 || ::dup2(r->stderr_fd, 2) < 0) {
    r->error = errno;
    ::_exit(127);
  }
  // Nothing else of the daemon's (client sockets, the journal, pipes of
  // other tasks) reaches the task, whatever its CLOEXEC flags.
  close_from_3(r->max_fd);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve("/bin/sh", r->argv, r->envp);
  r->error = errno;
  ::_exit(127);
}

} // namespace

struct process_runner::child {
  core::assignment work;
  pid_t pid = -1;
  int pidfd = -1;
  int out_fd = -1;
  int err_fd = -1;
  std::string out;
  std::string err;
  uint64_t out_bytes = 0;
  uint64_t err_bytes = 0;
  core::time_ms started_at = 0;
  std::optional<steady::time_point> deadline;
  std::optional<steady::time_point> kill_at;
  /// After SIGKILL: when the runner stops waiting for the shell to end (see
  /// process_runner::stop_reap_limit).
  std::optional<steady::time_point> abandon_at;
  /// After the shell exited: read what is left in the pipes until then.
  std::optional<steady::time_point> drain_until;
  /// The runner is done waiting for the shell: it exited, or was abandoned.
  bool exited = false;
  /// wait_status holds the shell's status (not so for an abandoned shell).
  bool has_status = false;
  int wait_status = 0;
  /// Readiness of the pidfd that did not come with an exit the runner could
  /// reap (a tracer reaps the process first), in a row.
  int unreapable_wakeups = 0;
  /// Its group's entry in the orphan guard (-1: none).
  int guard_entry = -1;
  core::time_ms finished_at = 0;
  /// Set when the runner ended the attempt (timeout, kill request).
  core::attempt_outcome forced = core::attempt_outcome::running;
  std::string reason;
};

process_runner::process_runner(runner_options options, exit_handler on_exit)
  : options_(std::move(options)), on_exit_(std::move(on_exit)) {
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry{*e};
    auto name = entry.substr(0, entry.find('='));
    if (std::find(options_.hidden_env.begin(), options_.hidden_env.end(), name)
        == options_.hidden_env.end())
      base_env_.push_back(std::move(entry));
  }
  if (!options_.run_as.empty()) {
    auto* pw = ::getpwnam(options_.run_as.c_str());
    if (pw == nullptr)
      throw std::runtime_error(
        fmt::format("--run-as: no such user '{}'", options_.run_as));
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    int count = 64;
    groups_.resize(static_cast<size_t>(count));
    if (::getgrouplist(pw->pw_name, pw->pw_gid, groups_.data(), &count) < 0) {
      groups_.resize(static_cast<size_t>(count));
      ::getgrouplist(pw->pw_name, pw->pw_gid, groups_.data(), &count);
    }
    groups_.resize(static_cast<size_t>(count));
    // Replace identity variables so the task sees its own user.
    auto drop = [&](const char* name) {
      std::string prefix = std::string{name} + "=";
      base_env_.erase(std::remove_if(base_env_.begin(), base_env_.end(),
                                     [&](const std::string& e) {
                                       return e.rfind(prefix, 0) == 0;
                                     }),
                      base_env_.end());
    };
    for (auto* name : {"HOME", "USER", "LOGNAME"})
      drop(name);
    base_env_.push_back(fmt::format("HOME={}", pw->pw_dir));
    base_env_.push_back(fmt::format("USER={}", pw->pw_name));
    base_env_.push_back(fmt::format("LOGNAME={}", pw->pw_name));
  }
  reset_ = signals_to_reset();
  spawn_stack_ = std::make_unique<char[]>(spawn_stack_size);
  if (auto n = ::sysconf(_SC_OPEN_MAX); n > 0)
    max_fd_ = static_cast<int>(std::min<long>(n, 1 << 20));
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0)
    throw std::runtime_error(fmt::format("eventfd: {}", std::strerror(errno)));
  thread_ = std::thread{[this] {
    ::pthread_setname_np(::pthread_self(), "tm.runner");
    run();
  }};
}

process_runner::~process_runner() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  wake();
  if (thread_.joinable())
    thread_.join();
  close_fd(wake_fd_);
}

void process_runner::start(core::assignment work) {
  std::vector<core::assignment> one;
  one.push_back(std::move(work));
  start(std::move(one));
}

void process_runner::start(std::vector<core::assignment> work) {
  if (work.empty())
    return;
  active_ += work.size();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& w : work)
      inbox_.push_back(command{command::start, std::move(w), {}});
  }
  wake();
}

void process_runner::kill(const core::attempt_ref& ref,
                          core::attempt_outcome outcome, std::string reason) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    command cmd{command::kill, {}, ref, outcome, std::move(reason)};
    inbox_.push_back(std::move(cmd));
  }
  wake();
}

void process_runner::take_back(const core::attempt_ref& ref,
                               std::string reason) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    command cmd{command::take_back, {}, ref, core::attempt_outcome::returned,
                std::move(reason)};
    inbox_.push_back(std::move(cmd));
  }
  wake();
}

void process_runner::hand_back_waiting(std::string reason) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    command cmd{command::hand_back, {}, {}};
    cmd.reason = std::move(reason);
    inbox_.push_back(std::move(cmd));
  }
  wake();
}

void process_runner::wake() {
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
}

void process_runner::handle(command& cmd) {
  if (cmd.kind == command::start) {
    waiting_attempt entry;
    if (cmd.work.start_within_ms > 0)
      entry.give_up_at = steady::now()
                         + std::chrono::milliseconds(cmd.work.start_within_ms);
    entry.work = std::move(cmd.work);
    // Behind everything of the same or a lower rank, ahead of the rest.
    auto pos = std::find_if(waiting_.begin(), waiting_.end(),
                            [&](const waiting_attempt& w) {
                              return entry.work.rank < w.work.rank;
                            });
    waiting_.insert(pos, std::move(entry));
    start_waiting();
    return;
  }
  if (cmd.kind == command::hand_back) {
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (const auto& w : waiting)
      end_unstarted(w.work, core::attempt_outcome::returned, cmd.reason);
    return;
  }
  auto w = std::find_if(waiting_.begin(), waiting_.end(),
                        [&](const waiting_attempt& x) {
                          return x.work.ref == cmd.ref;
                        });
  if (w != waiting_.end()) {
    auto work = std::move(w->work);
    waiting_.erase(w);
    end_unstarted(work, cmd.outcome, std::move(cmd.reason));
    return;
  }
  // Too late to take back: it runs and reports as usual.
  if (cmd.kind == command::take_back)
    return;
  auto i = children_.find(cmd.ref);
  if (i == children_.end())
    return;
  auto& c = *i->second;
  if (c.exited || c.forced != core::attempt_outcome::running)
    return;
  c.forced = cmd.outcome;
  c.reason = std::move(cmd.reason);
  signal_group(c, SIGTERM);
  c.kill_at = steady::now() + options_.kill_grace;
}

void process_runner::start_waiting() {
  // First what waited too long: after a stall of this process (SIGSTOP,
  // starved of CPU) the master has given those attempts to others. (A
  // suspended machine's monotonic clock stands still; the master's epoch
  // and attempt checks still refuse a stale result.)
  give_up_waiting(steady::now());
  while (!waiting_.empty() && (options_.slots == 0 || live_ < options_.slots)) {
    auto work = std::move(waiting_.front().work);
    waiting_.pop_front();
    spawn(std::move(work));
  }
}

void process_runner::give_up_waiting(steady::time_point now) {
  for (auto i = waiting_.begin(); i != waiting_.end();) {
    if (i->give_up_at && now >= *i->give_up_at) {
      auto work = std::move(i->work);
      i = waiting_.erase(i);
      end_unstarted(work, core::attempt_outcome::returned,
                    fmt::format("not started within {} ms on this worker "
                                "(its slots were busy, or the worker itself "
                                "did not run); handed back",
                                work.start_within_ms));
    } else {
      ++i;
    }
  }
}

void process_runner::end_unstarted(const core::assignment& work,
                                   core::attempt_outcome outcome,
                                   std::string reason) {
  core::attempt_result r;
  r.ref = work.ref;
  r.outcome = outcome;
  r.finished_at = wall_now();
  r.reason = std::move(reason);
  report(std::move(r));
}

void process_runner::spawn(core::assignment work) {
  auto c = std::make_unique<child>();
  c->work = std::move(work);
  c->started_at = wall_now();
  auto fail = [&](const std::string& why) {
    core::attempt_result r;
    r.ref = c->work.ref;
    r.outcome = core::attempt_outcome::failed;
    r.started_at = c->started_at;
    r.finished_at = wall_now();
    r.reason = why;
    report(std::move(r));
  };
  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    fail(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
    return;
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    fail(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
    return;
  }
  // The daemon's environment, minus what the task sets, plus the task's
  // variables; the daemon's strings are pointed to, not copied. The task's
  // id and attempt always come from here (the API refuses them in `env`).
  std::vector<std::string> own;
  own.reserve(c->work.env.size() + 2);
  own.push_back(fmt::format("{}={}", core::task_id_variable, c->work.ref.task));
  own.push_back(fmt::format("{}={}", core::attempt_variable,
                            c->work.ref.attempt));
  for (const auto& [key, value] : c->work.env)
    if (key != core::task_id_variable && key != core::attempt_variable)
      own.push_back(key + "=" + value);
  auto replaced = [&](const std::string& entry) {
    for (const auto& o : own) {
      auto name_end = o.find('=') + 1;
      if (entry.compare(0, name_end, o, 0, name_end) == 0)
        return true;
    }
    return false;
  };
  std::vector<char*> envp;
  envp.reserve(base_env_.size() + own.size() + 1);
  for (auto& e : base_env_)
    if (!replaced(e))
      envp.push_back(e.data());
  for (auto& e : own)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh";
  std::string dash_c = "-c";
  char* argv[] = {sh.data(), dash_c.data(), c->work.command.data(), nullptr};
  sigset_t no_signals;
  sigemptyset(&no_signals);
  pid_t pid = -1;
  int pidfd = -1;
  int rc = 0;
  if (!uid_) {
    // What posix_spawn does, on a stack kept for the purpose: glibc maps and
    // unmaps a fresh one per call, and the unmap's TLB shootdown across the
    // daemon's threads cost more than the rest of the spawn. CLONE_VFORK
    // suspends this thread until the child has exec'd; every signal glibc
    // lets a program block stays blocked in the child until it has reset
    // the dispositions that need it (signals_to_reset), so no handler of
    // ours runs there on the shared memory. The binary is linked with
    // -z now: no lazy symbol binding runs in the child either.
    exec_request request{argv,   envp.data(), reset_.data(), reset_.size(),
                         out[1], err[1],      ::getpid(),   max_fd_};
    sigset_t all;
    sigset_t previous;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    // CLONE_PIDFD (Linux 5.2) returns the pidfd with the clone, one system
    // call fewer than pidfd_open. Older kernels refuse the flag (EINVAL) or
    // ignore it and leave pidfd at -1: pidfd_open or polling takes over
    // below. Out of descriptors for the pidfd alone, the task still runs
    // without one, as it did with pidfd_open.
    auto flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    if (clone_pidfd_)
      pid = ::clone(exec_shell, spawn_stack_.get() + spawn_stack_size,
                    flags | CLONE_PIDFD, &request, &pidfd);
    if (!clone_pidfd_
        || (pid < 0 && (errno == EINVAL || errno == EMFILE || errno == ENFILE))) {
      if (pid < 0 && errno == EINVAL)
        clone_pidfd_ = false;
      pidfd = -1;
      pid = ::clone(exec_shell, spawn_stack_.get() + spawn_stack_size, flags,
                    &request);
    }
    rc = pid < 0 ? errno : 0;
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (pid > 0 && request.error != 0) {
      ::waitpid(pid, nullptr, 0);
      close_fd(pidfd);
      rc = request.error;
    }
  } else {
    // posix_spawn cannot change the user: fork and drop privileges in the
    // child only. Everything the child needs is prepared above, and it calls
    // only async-signal-safe functions.
    auto uid = *uid_;
    auto gid = *gid_;
    auto max_fd = max_fd_;
    auto daemon_pid = ::getpid();
    pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      reset_signals(reset_.data(), reset_.size());
      ::sigprocmask(SIG_SETMASK, &no_signals, nullptr);
      int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      close_from_3(max_fd);
      if (::setgroups(groups_.size(), groups_.data()) != 0
          || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
        static const char msg[] = "taskmaster: cannot switch user\n";
        [[maybe_unused]] auto n = ::write(2, msg, sizeof(msg) - 1);
        ::_exit(126);
      }
      // After the switch of user, which clears the request.
      if (die_with_daemon(daemon_pid) != 0) {
        static const char msg[] = "taskmaster: cannot ask to die with the worker\n";
        [[maybe_unused]] auto n = ::write(2, msg, sizeof(msg) - 1);
        ::_exit(126);
      }
      ::execve("/bin/sh", argv, envp.data());
      ::_exit(127);
    }
    rc = pid < 0 ? errno : 0;
  }
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    fail(fmt::format("cannot start /bin/sh: {}", std::strerror(rc)));
    return;
  }
  ++live_;
  c->pid = pid;
  if (options_.guard != nullptr)
    c->guard_entry = options_.guard->add(pid);
  c->pidfd = pidfd >= 0 ? pidfd
                        : static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  c->out_fd = out[0];
  c->err_fd = err[0];
  if (c->work.timeout_seconds > 0)
    c->deadline = steady::now() + std::chrono::seconds(c->work.timeout_seconds);
  auto ref = c->work.ref;
  children_[ref] = std::move(c);
}

void process_runner::signal_group(child& c, int sig) {
  // The group id is the shell's pid. The shell is not reaped before its group
  // is killed (see run), so the id cannot have been reused.
  ::kill(-c.pid, sig);
}

bool process_runner::reap(child& c) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(c.pid), &info,
               WEXITED | WNOHANG | WNOWAIT)
        != 0
      || info.si_pid == 0)
    return false;
  // The shell exited but is not reaped yet, so its pid (the group id) cannot
  // be reused: kill what it left in its group, then reap it.
  ::kill(-c.pid, SIGKILL);
  unguard(c);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  c.exited = true;
  c.has_status = true;
  --live_;
  c.wait_status = status;
  c.finished_at = wall_now();
  close_fd(c.pidfd);
  // Processes that left the group could hold the pipes open.
  c.drain_until = steady::now() + std::chrono::milliseconds(200);
  return true;
}

void process_runner::finish(child& c) {
  close_fd(c.pidfd);
  close_fd(c.out_fd);
  close_fd(c.err_fd);
  core::attempt_result r;
  r.ref = c.work.ref;
  r.started_at = c.started_at;
  r.finished_at = c.finished_at != 0 ? c.finished_at : wall_now();
  trim_tail(c.out, options_.output_tail_bytes);
  trim_tail(c.err, options_.output_tail_bytes);
  r.stdout_tail = std::move(c.out);
  r.stderr_tail = std::move(c.err);
  r.stdout_bytes = c.out_bytes;
  r.stderr_bytes = c.err_bytes;
  // An abandoned shell (see abandon) has no status.
  if (c.has_status && WIFEXITED(c.wait_status)) {
    r.has_exit_code = true;
    r.exit_code = WEXITSTATUS(c.wait_status);
  } else if (c.has_status && WIFSIGNALED(c.wait_status)) {
    // Shell convention: 128 + signal number.
    r.has_exit_code = true;
    r.exit_code = 128 + WTERMSIG(c.wait_status);
  }
  if (c.forced != core::attempt_outcome::running) {
    r.outcome = c.forced;
    r.reason = c.reason;
  } else if (!c.has_status) {
    r.outcome = core::attempt_outcome::failed;
    r.reason = "the shell's exit status could not be read";
  } else if (WIFEXITED(c.wait_status) && WEXITSTATUS(c.wait_status) == 0) {
    r.outcome = core::attempt_outcome::succeeded;
  } else {
    r.outcome = core::attempt_outcome::failed;
    if (WIFSIGNALED(c.wait_status))
      r.reason = fmt::format("killed by {}", signal_name(WTERMSIG(c.wait_status)));
  }
  report(std::move(r));
}

void process_runner::report(core::attempt_result r) {
  if (held_.empty())
    held_since_ = steady::now();
  held_.push_back(std::move(r));
}

void process_runner::flush_due_reports() {
  // Results wait for company only while attempts wait for a slot, and at
  // most report_hold; three slots' worth of them always go out (as many as
  // a worker holds prefetched).
  auto hold_limit = std::max<size_t>(options_.slots * 3, 1);
  if (!held_.empty()
      && (waiting_.empty() || held_.size() >= hold_limit
          || steady::now() >= held_since_ + options_.report_hold))
    flush_reports();
}

void process_runner::flush_reports() {
  if (held_.empty())
    return;
  auto batch = std::move(held_);
  held_.clear();
  active_ -= batch.size();
  on_exit_(std::move(batch));
}

void process_runner::run() {
  std::vector<pollfd> fds;
  std::vector<std::pair<child*, int>> owners; // which child, which stream
  char buf[65536];
  for (;;) {
    std::vector<command> commands;
    bool stop = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      commands.swap(inbox_);
      stop = stopping_;
    }
    // Report what ended before starting anything (new or waiting): a spawn
    // blocks this thread until the shell has exec'd. Only results that may
    // wait for company (flush_due_reports) stay behind.
    auto now = steady::now();
    std::vector<core::attempt_ref> done;
    for (auto& [ref, cp] : children_) {
      auto& c = *cp;
      bool pipes_closed = c.out_fd < 0 && c.err_fd < 0;
      bool drained = c.drain_until && now >= *c.drain_until;
      if (c.exited && (pipes_closed || drained))
        done.push_back(ref);
    }
    for (const auto& ref : done) {
      auto node = children_.extract(ref);
      finish(*node.mapped());
    }
    flush_due_reports();
    for (auto& cmd : commands)
      handle(cmd);
    if (stop)
      break;
    start_waiting();
    now = steady::now();
    flush_due_reports();
    // Deadlines: timeouts, grace periods, pipe drains, waiting attempts,
    // held results.
    std::optional<steady::time_point> next;
    auto consider = [&](const std::optional<steady::time_point>& t) {
      if (t && (!next || *t < *next))
        next = t;
    };
    if (!abandoned_.empty()) {
      reap_abandoned();
      if (!abandoned_.empty())
        consider(now + std::chrono::seconds(1));
    }
    if (!held_.empty())
      consider(held_since_ + options_.report_hold);
    for (const auto& w : waiting_)
      consider(w.give_up_at);
    for (auto& [ref, cp] : children_) {
      auto& c = *cp;
      if (!c.exited && c.deadline && now >= *c.deadline
          && c.forced == core::attempt_outcome::running) {
        c.forced = core::attempt_outcome::timed_out;
        c.reason = fmt::format("timed out after {} s", c.work.timeout_seconds);
        signal_group(c, SIGTERM);
        c.kill_at = now + options_.kill_grace;
      }
      if (!c.exited && c.kill_at && now >= *c.kill_at) {
        signal_group(c, SIGKILL);
        c.kill_at.reset();
        c.abandon_at = now + stop_reap_limit;
      }
      if (!c.exited && c.abandon_at && now >= *c.abandon_at)
        abandon(c);
      // Without a pidfd (kernels before 5.3) exits are found by polling.
      if (!c.exited && c.pidfd < 0 && reap(c))
        consider(now); // a slot is free: start what waits at once
      if (c.exited && c.out_fd < 0 && c.err_fd < 0) {
        // Found just now by polling: finish it on the next round.
        consider(now);
        continue;
      }
      if (!c.exited) {
        if (c.forced == core::attempt_outcome::running)
          consider(c.deadline);
        consider(c.kill_at);
        consider(c.abandon_at);
        if (c.pidfd < 0)
          consider(now + std::chrono::milliseconds(10));
      }
      consider(c.drain_until);
    }
    fds.clear();
    owners.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    owners.emplace_back(nullptr, 0);
    for (auto& [ref, cp] : children_) {
      auto& c = *cp;
      if (!c.exited && c.pidfd >= 0) {
        fds.push_back({c.pidfd, POLLIN, 0});
        owners.emplace_back(&c, 0);
      }
      if (c.out_fd >= 0) {
        fds.push_back({c.out_fd, POLLIN, 0});
        owners.emplace_back(&c, 1);
      }
      if (c.err_fd >= 0) {
        fds.push_back({c.err_fd, POLLIN, 0});
        owners.emplace_back(&c, 2);
      }
    }
    int timeout_ms = -1;
    if (next) {
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
                    *next - steady::now())
                    .count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(wait + 1, 0, 60'000));
    }
    int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n <= 0)
      continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0)
        continue;
      auto [c, stream] = owners[i];
      if (c == nullptr) {
        uint64_t value;
        [[maybe_unused]] auto r = ::read(wake_fd_, &value, sizeof(value));
        continue;
      }
      if (stream == 0) {
        // Readable again and again without an exit to reap: a tracer holds
        // the process. Polling every 10 ms then, not spinning on the pidfd.
        if (reap(*c))
          c->unreapable_wakeups = 0;
        else if (++c->unreapable_wakeups >= 2)
          close_fd(c->pidfd);
        continue;
      }
      // One read per readiness: poll said it will not block, and what is
      // left makes the next poll return at once. (No O_NONBLOCK, no read
      // that only learns EAGAIN: two system calls fewer per task.)
      int& fd = stream == 1 ? c->out_fd : c->err_fd;
      std::string& tail = stream == 1 ? c->out : c->err;
      uint64_t& total = stream == 1 ? c->out_bytes : c->err_bytes;
      auto got = ::read(fd, buf, sizeof(buf));
      if (got > 0) {
        append_tail(tail, buf, static_cast<size_t>(got),
                    options_.output_tail_bytes);
        total += static_cast<uint64_t>(got);
      } else if (got == 0 || errno != EINTR) {
        close_fd(fd);
      }
    }
  }
  // Stopping: kill and report whatever still runs, hand back what waits.
  for (const auto& w : waiting_)
    end_unstarted(w.work, core::attempt_outcome::returned,
                  "the worker shut down before it started");
  waiting_.clear();
  for (auto& [ref, cp] : children_)
    if (!cp->exited)
      ::kill(-cp->pid, SIGKILL);
  reap_killed(steady::now() + stop_reap_limit);
  for (auto& [ref, cp] : children_) {
    auto& c = *cp;
    if (c.forced == core::attempt_outcome::running) {
      c.forced = core::attempt_outcome::returned;
      c.reason = "the worker shut down";
    }
    if (!c.exited)
      abandon(c);
    finish(c);
  }
  children_.clear();
  flush_reports();
}

void process_runner::unguard(child& c) {
  unguard(c.guard_entry);
}

void process_runner::unguard(int& guard_entry) {
  if (options_.guard != nullptr)
    options_.guard->remove(guard_entry);
  guard_entry = -1;
}

process_runner::reap_outcome process_runner::reap_if_exited(pid_t pid,
                                                            int& guard_entry,
                                                            int& status) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info,
               WEXITED | WNOHANG | WNOWAIT)
      != 0) {
    if (errno != ECHILD)
      return reap_outcome::not_yet;
    unguard(guard_entry);
    return reap_outcome::gone;
  }
  if (info.si_pid != pid)
    return reap_outcome::not_yet;
  // Off the orphan guard's list while its group id is still taken.
  unguard(guard_entry);
  ::waitpid(pid, &status, 0);
  return reap_outcome::reaped;
}

void process_runner::abandon(child& c) {
  c.exited = true;
  --live_;
  c.finished_at = wall_now();
  c.reason += fmt::format("; its process had not ended {} s after SIGKILL and "
                          "was left running",
                          std::chrono::duration_cast<std::chrono::seconds>(
                            stop_reap_limit)
                            .count());
  close_fd(c.pidfd);
  // What it writes from now on is not waited for.
  c.drain_until = steady::now();
  // Still listed with the orphan guard until it is reaped.
  abandoned_.emplace_back(c.pid, c.guard_entry);
  c.guard_entry = -1;
}

void process_runner::reap_abandoned() {
  abandoned_.erase(std::remove_if(abandoned_.begin(), abandoned_.end(),
                                  [&](std::pair<pid_t, int>& a) {
                                    int status = 0;
                                    return reap_if_exited(a.first, a.second,
                                                          status)
                                           != reap_outcome::not_yet;
                                  }),
                   abandoned_.end());
}

void process_runner::reap_killed(steady::time_point give_up_at) {
  bool woke_for_nothing = false;
  for (;;) {
    std::vector<pollfd> fds;
    size_t pending = 0;
    bool reaped_any = false;
    for (auto& [ref, cp] : children_) {
      auto& c = *cp;
      if (c.exited)
        continue;
      int status = 0;
      auto outcome = reap_if_exited(c.pid, c.guard_entry, status);
      if (outcome != reap_outcome::not_yet) {
        c.exited = true;
        c.has_status = outcome == reap_outcome::reaped;
        c.wait_status = status;
        c.finished_at = wall_now();
        reaped_any = true;
        continue;
      }
      ++pending;
      if (c.pidfd >= 0)
        fds.push_back({c.pidfd, POLLIN, 0});
    }
    auto now = steady::now();
    if (pending == 0 || now >= give_up_at)
      return;
    auto left_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     give_up_at - now)
                     .count();
    auto slice_ms = static_cast<int>(std::clamp<int64_t>(left_ms + 1, 1, 10));
    // Without a pidfd for each, or when a readable pidfd's process could not
    // be reaped (a tracer gets it first): short sleeps, not a spin.
    if (fds.size() < pending || (woke_for_nothing && !reaped_any))
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(slice_ms, 5)));
    else
      woke_for_nothing = ::poll(fds.data(), fds.size(), slice_ms) > 0;
  }
}

} // namespace taskmaster
