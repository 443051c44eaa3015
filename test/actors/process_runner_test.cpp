#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>

#include <fmt/format.h>

#include "actors/process_runner.hpp"
#include "test/support/temp_dir.hpp"
#include "test/support/wait.hpp"

using namespace taskmaster;
using namespace std::chrono_literals;

namespace {

/// Collects results from the runner thread.
struct collector {
  std::mutex mtx;
  std::condition_variable cv;
  std::map<core::task_id, core::attempt_result> results;
  /// Task ids in the order their results came.
  std::vector<core::task_id> order;
  /// How many results each call of the handler carried.
  std::vector<size_t> batches;

  process_runner::exit_handler handler() {
    return [this](std::vector<core::attempt_result> batch) {
      std::lock_guard<std::mutex> guard{mtx};
      batches.push_back(batch.size());
      for (auto& r : batch) {
        order.push_back(r.ref.task);
        results[r.ref.task] = std::move(r);
      }
      cv.notify_all();
    };
  }

  core::attempt_result wait(core::task_id id,
                            std::chrono::seconds limit = 10s) {
    std::unique_lock<std::mutex> guard{mtx};
    REQUIRE(cv.wait_for(guard, limit, [&] { return results.count(id) > 0; }));
    return results[id];
  }
};

/// Runner options with one slot: attempts beyond it wait in the runner.
runner_options one_slot() {
  runner_options o;
  o.slots = 1;
  return o;
}

/// Runner options with two slots, holding results up to `report_hold`.
runner_options two_slots(std::chrono::milliseconds report_hold) {
  runner_options o;
  o.slots = 2;
  o.report_hold = report_hold;
  return o;
}

core::assignment work(core::task_id id, std::string command,
                      uint32_t timeout = 0) {
  core::assignment a;
  a.ref = {id, 1};
  a.command = std::move(command);
  a.timeout_seconds = timeout;
  return a;
}

/// True while `pid` exists and is not a zombie (a killed orphan stays a
/// zombie until init reaps it).
bool process_alive(pid_t pid) {
  std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
  std::string pid_field, comm, state;
  if (!(stat >> pid_field >> comm >> state))
    return false;
  return state != "Z" && state != "X";
}

} // namespace

TEST_CASE("exit codes, output and environment are captured",
          "[actors][runner]") {
  collector c;
  process_runner runner{{}, c.handler()};
  auto ok = work(1, "echo out; echo err >&2; echo $FOO");
  ok.env = {{"FOO", "bar"}};
  runner.start(ok);
  runner.start(work(2, "exit 3"));
  runner.start(work(3, "kill -9 $$"));
  auto r1 = c.wait(1);
  CHECK(r1.outcome == core::attempt_outcome::succeeded);
  CHECK(r1.exit_code == 0);
  CHECK(r1.stdout_tail == "out\nbar\n");
  CHECK(r1.stderr_tail == "err\n");
  CHECK(r1.stdout_bytes == 8);
  CHECK(r1.stderr_bytes == 4);
  CHECK(r1.finished_at >= r1.started_at);
  auto r2 = c.wait(2);
  CHECK(r2.outcome == core::attempt_outcome::failed);
  CHECK(r2.exit_code == 3);
  auto r3 = c.wait(3);
  CHECK(r3.outcome == core::attempt_outcome::failed);
  CHECK(r3.exit_code == 137);
  CHECK(r3.reason == "killed by SIGKILL");
  // The task's id and attempt are TaskMaster's, whatever its env says (the
  // API refuses them; a task journaled before that may still carry them).
  auto posing = work(4, "echo $TASKMASTER_TASK_ID/$TASKMASTER_ATTEMPT");
  posing.ref.attempt = 2;
  posing.env = {{"TASKMASTER_TASK_ID", "99"}, {"TASKMASTER_ATTEMPT", "x"}};
  runner.start(posing);
  CHECK(c.wait(4).stdout_tail == "4/2\n");
}

TEST_CASE("only the tail of long output is kept", "[actors][runner]") {
  collector c;
  runner_options o;
  o.output_tail_bytes = 1000;
  process_runner runner{o, c.handler()};
  runner.start(work(1, "seq 1 100000"));
  auto r = c.wait(1);
  CHECK(r.stdout_tail.size() == 1000);
  CHECK(r.stdout_tail.substr(r.stdout_tail.size() - 7) == "100000\n");
  // The count says how much was cut: `seq 1 100000` writes 588,895 bytes.
  CHECK(r.stdout_bytes == 588'895);
  CHECK(r.stderr_bytes == 0);
}

TEST_CASE("a timeout kills the whole process group", "[actors][runner]") {
  taskmaster::test::temp_dir dir;
  collector c;
  runner_options o;
  o.kill_grace = 500ms;
  process_runner runner{o, c.handler()};
  auto pidfile = dir / "pids";
  runner.start(work(1,
                    "sleep 30 & echo $! > " + pidfile
                      + "; trap '' TERM; sleep 30",
                    1));
  auto r = c.wait(1, 15s);
  CHECK(r.outcome == core::attempt_outcome::timed_out);
  CHECK(r.reason == "timed out after 1 s");
  auto took = r.finished_at - r.started_at;
  CHECK(took >= 1000);
  CHECK(took < 5000);
  std::ifstream in{pidfile};
  pid_t background = 0;
  in >> background;
  REQUIRE(background > 0);
  CHECK(taskmaster::test::eventually([&] { return !process_alive(background); },
                                     2s));
}

TEST_CASE("a kill request ends an attempt with the given outcome",
          "[actors][runner]") {
  collector c;
  process_runner runner{{}, c.handler()};
  runner.start(work(1, "sleep 60"));
  CHECK(taskmaster::test::eventually([&] { return runner.active() == 1; }));
  runner.kill({1, 1}, core::attempt_outcome::cancelled, "cancelled by test");
  auto r = c.wait(1);
  CHECK(r.outcome == core::attempt_outcome::cancelled);
  CHECK(r.reason == "cancelled by test");
  CHECK(r.finished_at - r.started_at < 1000);
  CHECK(runner.active() == 0);
  // Unknown attempts are ignored.
  runner.kill({9, 9}, core::attempt_outcome::cancelled, "nobody");
}

TEST_CASE("background processes left by a finished task are killed",
          "[actors][runner]") {
  taskmaster::test::temp_dir dir;
  collector c;
  process_runner runner{{}, c.handler()};
  auto pidfile = dir / "pid";
  runner.start(work(1, "sleep 30 & echo $! > " + pidfile));
  auto r = c.wait(1);
  CHECK(r.outcome == core::attempt_outcome::succeeded);
  std::ifstream in{pidfile};
  pid_t background = 0;
  in >> background;
  REQUIRE(background > 0);
  CHECK(taskmaster::test::eventually([&] { return !process_alive(background); },
                                     2s));
}

TEST_CASE("hidden daemon variables do not reach tasks", "[actors][runner]") {
  ::setenv("TASKMASTER_TEST_SECRET", "s3cret", 1);
  collector c;
  runner_options o;
  o.hidden_env = {"TASKMASTER_TEST_SECRET"};
  process_runner runner{o, c.handler()};
  runner.start(work(1, "echo \"[${TASKMASTER_TEST_SECRET:-}]\""));
  CHECK(c.wait(1).stdout_tail == "[]\n");
  ::unsetenv("TASKMASTER_TEST_SECRET");
}

TEST_CASE("stopping the runner ends what runs as returned",
          "[actors][runner]") {
  collector c;
  {
    process_runner runner{{}, c.handler()};
    runner.start(work(1, "sleep 60"));
    CHECK(taskmaster::test::eventually([&] { return runner.active() == 1; }));
  }
  auto r = c.wait(1);
  CHECK(r.outcome == core::attempt_outcome::returned);
}

/// A process that another process traces stands in for one in
/// uninterruptible sleep: once killed, its parent cannot reap it until the
/// tracer lets go (when the tracer exits).
class tracer {
public:
  explicit tracer(pid_t pid) {
    int report[2];
    int hold[2];
    REQUIRE(::pipe(report) == 0);
    REQUIRE(::pipe(hold) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(report[0]);
      ::close(hold[1]);
      char seized = ::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) == 0 ? 'y'
                                                                       : 'n';
      [[maybe_unused]] auto w = ::write(report[1], &seized, 1);
      char ignored;
      while (::read(hold[0], &ignored, 1) > 0) {
      }
      ::_exit(0);
    }
    ::close(report[1]);
    ::close(hold[0]);
    hold_ = hold[1];
    char seized = 'n';
    [[maybe_unused]] auto got = ::read(report[0], &seized, 1);
    ::close(report[0]);
    attached_ = seized == 'y';
    if (!attached_)
      WARN("ptrace is not permitted here: the case is skipped");
  }

  ~tracer() {
    let_go();
  }

  bool attached() const {
    return attached_;
  }

  void let_go() {
    if (hold_ < 0)
      return;
    ::close(hold_);
    hold_ = -1;
    ::waitpid(pid_, nullptr, 0);
  }

private:
  pid_t pid_ = -1;
  int hold_ = -1;
  bool attached_ = false;
};

/// Starts a task that execs `sleep 60` and returns the pid it runs as.
pid_t start_sleeper(process_runner& runner, const std::string& pid_file) {
  runner.start(work(1, fmt::format("echo $$ > {0}.tmp && mv {0}.tmp {0} && "
                                   "exec sleep 60",
                                   pid_file)));
  pid_t pid = 0;
  REQUIRE(taskmaster::test::eventually([&] {
    std::ifstream in{pid_file};
    return static_cast<bool>(in >> pid);
  }));
  return pid;
}

TEST_CASE("stopping the runner does not wait for good on a process that "
          "SIGKILL does not end",
          "[actors][runner]") {
  taskmaster::test::temp_dir dir;
  collector c;
  auto runner = std::make_unique<process_runner>(runner_options{}, c.handler());
  auto pid = start_sleeper(*runner, dir / "pid");
  tracer holder{pid};
  if (!holder.attached())
    return;
  auto start = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { runner.reset(); });
  bool in_time = stopped.wait_for(30s) == std::future_status::ready;
  auto took = std::chrono::steady_clock::now() - start;
  // The tracer's exit hands the killed process back to us, its parent.
  holder.let_go();
  stopped.get();
  CHECK(in_time);
  CHECK(took >= process_runner::stop_reap_limit - 100ms);
  auto r = c.wait(1);
  CHECK(r.outcome == core::attempt_outcome::returned);
  CHECK_FALSE(r.has_exit_code);
  CHECK_THAT(r.reason, Catch::Contains("left running"));
  CHECK(taskmaster::test::eventually(
    [&] { return ::waitpid(pid, nullptr, WNOHANG) == pid; }));
}

TEST_CASE("a kill request ends an attempt whose process SIGKILL does not end "
          "within a bounded time, and frees its slot",
          "[actors][runner]") {
  taskmaster::test::temp_dir dir;
  collector c;
  auto options = one_slot();
  options.kill_grace = 100ms;
  process_runner runner{options, c.handler()};
  auto pid = start_sleeper(runner, dir / "pid");
  tracer holder{pid};
  if (!holder.attached())
    return;
  auto cpu_seconds = [] {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec)
           + static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  auto cpu_before = cpu_seconds();
  auto start = std::chrono::steady_clock::now();
  runner.kill({1, 1}, core::attempt_outcome::cancelled, "cancelled");
  runner.start(work(2, "echo next"));
  auto r = c.wait(1, 30s);
  auto took = std::chrono::steady_clock::now() - start;
  // Waiting on the killed, traced process did not spin on its pidfd.
  CHECK(cpu_seconds() - cpu_before < 0.5);
  CHECK(r.outcome == core::attempt_outcome::cancelled);
  CHECK_FALSE(r.has_exit_code);
  CHECK_THAT(r.reason, Catch::StartsWith("cancelled; ")
                         && Catch::Contains("left running"));
  CHECK(took >= options.kill_grace + process_runner::stop_reap_limit - 100ms);
  CHECK(took < options.kill_grace + process_runner::stop_reap_limit + 5s);
  // The slot went to the next attempt.
  CHECK(c.wait(2).stdout_tail == "next\n");
  // Reaped when the tracer lets go (the runner's thread reaps it; the test
  // finds it gone).
  holder.let_go();
  CHECK(taskmaster::test::eventually([&] {
    return ::waitpid(pid, nullptr, WNOHANG) < 0 && errno == ECHILD;
  }));
}

TEST_CASE("tasks inherit no descriptor of the daemon but stdin, stdout and "
          "stderr",
          "[actors][runner]") {
  // A descriptor without close-on-exec, as a library might leave one.
  int leaked = ::open("/dev/null", O_RDONLY);
  REQUIRE(::dup2(leaked, 100) == 100);
  collector c;
  process_runner runner{{}, c.handler()};
  runner.start(work(1, "if [ -e /proc/$$/fd/100 ]; then echo inherited; else "
                       "echo clean; fi; [ -e /proc/$$/fd/2 ] && echo has-stderr"));
  CHECK(c.wait(1).stdout_tail == "clean\nhas-stderr\n");
  ::close(100);
  ::close(leaked);
}

TEST_CASE("tasks start with default signal dispositions and no blocked signal",
          "[actors][runner]") {
  // The daemon ignores and blocks signals of its own; its tasks must not.
  auto previous = ::signal(SIGHUP, SIG_IGN);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigset_t old_mask;
  ::pthread_sigmask(SIG_BLOCK, &usr2, &old_mask);
  collector c;
  {
    process_runner runner{{}, c.handler()};
    // Shell builtins only: a forked grep could read the mask dash sets
    // around its own fork.
    runner.start(work(1, "while IFS= read -r l; do case \"$l\" in "
                         "SigBlk:*|SigIgn:*) echo \"$l\";; esac; "
                         "done < /proc/$$/status"));
    auto r = c.wait(1);
    CHECK(r.outcome == core::attempt_outcome::succeeded);
    CHECK(r.stdout_tail
          == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    // Ignored after the runner started, as an HTTP server does with SIGPIPE.
    auto pipe_before = ::signal(SIGPIPE, SIG_IGN);
    runner.start(work(2, "while IFS= read -r l; do case \"$l\" in "
                         "SigIgn:*) echo \"$l\";; esac; "
                         "done < /proc/$$/status"));
    CHECK(c.wait(2).stdout_tail == "SigIgn:\t0000000000000000\n");
    ::signal(SIGPIPE, pipe_before);
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::signal(SIGHUP, previous);
}

TEST_CASE("a shell that cannot start is a failed attempt", "[actors][runner]") {
  collector c;
  process_runner runner{one_slot(), c.handler()};
  // An environment beyond what execve takes (E2BIG) fails the exec itself.
  auto huge = work(1, "true");
  huge.env["BIG"] = std::string(3 * 1024 * 1024, 'x');
  runner.start(huge);
  auto r = c.wait(1);
  CHECK(r.outcome == core::attempt_outcome::failed);
  CHECK(r.reason.find("cannot start /bin/sh") != std::string::npos);
  // The slot it took is free again.
  runner.start(work(2, "echo fine"));
  CHECK(c.wait(2).stdout_tail == "fine\n");
}

TEST_CASE("attempts beyond the slots wait and start in the master's order "
          "as slots free",
          "[actors][runner]") {
  collector c;
  process_runner runner{one_slot(), c.handler()};
  auto ranked = [](core::task_id id, core::time_ms rank) {
    auto w = work(id, "true");
    w.rank = rank;
    return w;
  };
  runner.start(work(1, "sleep 0.3"));
  // Arrival order 2, 3, 4, 5; queue order (rank) 3, 4, 5, 2 (4 and 5 tie
  // and keep their arrival order).
  runner.start(ranked(2, 900));
  runner.start(ranked(3, 100));
  runner.start(ranked(4, 500));
  runner.start(ranked(5, 500));
  CHECK(runner.active() == 5);
  auto first = c.wait(1);
  for (core::task_id id : {2, 3, 4, 5}) {
    auto r = c.wait(id);
    CHECK(r.outcome == core::attempt_outcome::succeeded);
    // One at a time: none started before the sleep ended.
    CHECK(r.started_at >= first.finished_at);
  }
  {
    std::lock_guard<std::mutex> guard{c.mtx};
    // One slot: results come in the order the attempts started.
    CHECK(c.order == std::vector<core::task_id>{1, 3, 4, 5, 2});
  }
  CHECK(taskmaster::test::eventually([&] { return runner.active() == 0; }));
}

TEST_CASE("a waiting attempt's timeout counts from its start",
          "[actors][runner]") {
  collector c;
  process_runner runner{one_slot(), c.handler()};
  runner.start(work(1, "sleep 0.6"));
  // Waits 0.6 s, then runs 0.6 s: within its 1 s only if the clock starts
  // when it does.
  runner.start(work(2, "sleep 0.6", 1));
  CHECK(c.wait(1).outcome == core::attempt_outcome::succeeded);
  CHECK(c.wait(2).outcome == core::attempt_outcome::succeeded);
}

TEST_CASE("a prefetched attempt that cannot start in time is handed back",
          "[actors][runner]") {
  collector c;
  process_runner runner{one_slot(), c.handler()};
  runner.start(work(1, "sleep 1; echo done"));
  auto prefetched = work(2, "echo never");
  prefetched.start_within_ms = 100;
  auto patient = work(3, "echo later");
  runner.start(prefetched);
  runner.start(patient);
  auto r2 = c.wait(2, 2s);
  CHECK(r2.outcome == core::attempt_outcome::returned);
  CHECK(r2.started_at == 0);
  CHECK(r2.reason.find("not started within 100 ms") != std::string::npos);
  {
    std::lock_guard<std::mutex> guard{c.mtx};
    // Long before the running attempt ended.
    CHECK(c.order == std::vector<core::task_id>{2});
  }
  // An attempt without a limit waits as long as it takes.
  CHECK(c.wait(1).stdout_tail == "done\n");
  CHECK(c.wait(3).stdout_tail == "later\n");
}

TEST_CASE("a waiting attempt can be killed or handed back without running",
          "[actors][runner]") {
  collector c;
  process_runner runner{one_slot(), c.handler()};
  runner.start(work(1, "sleep 0.5; echo done"));
  runner.start(work(2, "echo never2"));
  runner.start(work(3, "echo never3"));
  runner.start(work(4, "echo never4"));
  runner.kill({2, 1}, core::attempt_outcome::cancelled, "cancelled by test");
  auto r2 = c.wait(2, 1s);
  CHECK(r2.outcome == core::attempt_outcome::cancelled);
  CHECK(r2.reason == "cancelled by test");
  CHECK(r2.started_at == 0);
  CHECK_FALSE(r2.has_exit_code);
  runner.hand_back_waiting("going away");
  for (core::task_id id : {3, 4}) {
    auto r = c.wait(id, 1s);
    CHECK(r.outcome == core::attempt_outcome::returned);
    CHECK(r.reason == "going away");
    CHECK(r.stdout_tail.empty());
  }
  // The running one is untouched.
  auto r1 = c.wait(1);
  CHECK(r1.outcome == core::attempt_outcome::succeeded);
  CHECK(r1.stdout_tail == "done\n");
}

TEST_CASE("stopping the runner hands back what waits without running it",
          "[actors][runner]") {
  collector c;
  {
    process_runner runner{one_slot(), c.handler()};
    runner.start(work(1, "sleep 60"));
    runner.start(work(2, "echo never"));
    CHECK(runner.active() == 2);
  }
  CHECK(c.wait(1).outcome == core::attempt_outcome::returned);
  auto r2 = c.wait(2);
  CHECK(r2.outcome == core::attempt_outcome::returned);
  CHECK(r2.started_at == 0);
}

TEST_CASE("results wait for company only while attempts wait for a slot",
          "[actors][runner]") {
  using steady = std::chrono::steady_clock;
  SECTION("a result goes out at once when nothing waits") {
    collector c;
    process_runner runner{two_slots(60s), c.handler()};
    runner.start(work(1, "true"));
    CHECK(c.wait(1, 5s).outcome == core::attempt_outcome::succeeded);
    CHECK(runner.active() == 0);
  }
  SECTION("with every slot busy and work waiting, results go out together") {
    collector c;
    process_runner runner{two_slots(60s), c.handler()};
    // 1 and 2 run; 3 and 4 wait. 1's result waits for 2's, which frees the
    // slot for the last waiting attempt: both go in one report.
    runner.start({work(1, "true"), work(2, "sleep 0.2"), work(3, "sleep 0.5"),
                  work(4, "sleep 0.5")});
    c.wait(2, 5s);
    {
      std::lock_guard<std::mutex> guard{c.mtx};
      REQUIRE(c.batches.size() == 1);
      CHECK(c.batches[0] == 2);
      CHECK(c.results.count(1) == 1);
    }
    c.wait(3, 5s);
    c.wait(4, 5s);
    std::lock_guard<std::mutex> guard{c.mtx};
    CHECK(c.order.size() == 4);
  }
  SECTION("three slots' worth of results go out while work still waits") {
    collector c;
    process_runner runner{two_slots(60s), c.handler()};
    // 1 to 6 end at once, two at a time; 7 and 8 take their slots while 9
    // and 10 still wait, so only the size of the batch can send it.
    runner.start({work(1, "true"), work(2, "true"), work(3, "true"),
                  work(4, "true"), work(5, "true"), work(6, "true"),
                  work(7, "sleep 2"), work(8, "sleep 2"), work(9, "sleep 2"),
                  work(10, "sleep 2")});
    for (core::task_id id = 1; id <= 6; ++id)
      c.wait(id, 5s);
    std::lock_guard<std::mutex> guard{c.mtx};
    CHECK(c.batches == std::vector<size_t>{6});
  }
  SECTION("a held result goes out after report_hold at the latest") {
    collector c;
    process_runner runner{two_slots(100ms), c.handler()};
    auto start = steady::now();
    runner.start({work(1, "true"), work(2, "sleep 3"), work(3, "sleep 3"),
                  work(4, "sleep 3")});
    c.wait(1, 5s);
    CHECK(steady::now() - start < 2s);
    std::lock_guard<std::mutex> guard{c.mtx};
    CHECK(c.order == std::vector<core::task_id>{1});
  }
}
