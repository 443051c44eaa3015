#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>

#include "actors/core/scheduler_core.hpp"
#include "actors/core/time.hpp"

using namespace taskmaster::core;

namespace {

scheduler_settings test_settings() {
  scheduler_settings s;
  s.aging_interval = 60'000;
  s.retry = retry_policy{1000, 30'000};
  s.heartbeat_timeout = 5'000;
  // Tests jump the clock between ticks; only the stall tests tick at a
  // realistic pace (see stall_settings).
  s.tick_interval = 3'600'000;
  s.reconcile_grace = 10'000;
  s.restart_hold = 8'000;
  s.max_queued = 1000;
  // The prefetch cases count in tasks of a few ms.
  s.prefetch_budget = 5;
  s.retention = 0;
  s.retention_max_finished = 0;
  return s;
}

/// test_settings() for master start number `epoch` (see attempt_ref).
scheduler_settings in_epoch(uint32_t epoch) {
  auto s = test_settings();
  s.epoch = epoch;
  return s;
}

struct fixture {
  explicit fixture(scheduler_settings settings = test_settings())
    : core{settings, [this] { return random_value; }} {
  }

  double random_value = 1.0;
  scheduler_core core;
  time_ms now = 1'000'000;
  plan last;

  task_spec spec(const std::string& command,
                 priority prio = priority::medium) {
    task_spec s;
    s.command = command;
    s.prio = prio;
    return s;
  }

  task_id submit(task_spec s) {
    auto admitted = core.admit({std::move(s)}, now);
    REQUIRE(admitted.ids.size() == 1);
    last = plan{};
    core.activate(admitted.ids, now, last);
    return admitted.ids[0];
  }

  task_id submit(const std::string& command,
                 priority prio = priority::medium) {
    return submit(spec(command, prio));
  }

  worker_info info(const std::string& id, uint32_t slots,
                   string_map labels = {}, uint64_t incarnation = 7) {
    worker_info w;
    w.id = id;
    w.host = id + ".local";
    w.slots = slots;
    w.labels = std::move(labels);
    w.incarnation = incarnation;
    return w;
  }

  plan join(const std::string& id, uint32_t slots, string_map labels = {}) {
    plan p;
    CHECK(core.register_worker(info(id, slots, std::move(labels)), {}, {}, now,
                               p)
          == register_outcome::accepted);
    return p;
  }

  attempt_result result(attempt_ref ref, attempt_outcome outcome,
                        int32_t exit_code = 0) {
    attempt_result r;
    r.ref = ref;
    r.outcome = outcome;
    r.exit_code = exit_code;
    r.has_exit_code = outcome == attempt_outcome::succeeded
                      || outcome == attempt_outcome::failed;
    r.started_at = now - 10;
    r.finished_at = now;
    r.stdout_tail = "out";
    r.stdout_bytes = 70'000;
    return r;
  }

  plan report(const std::string& worker, attempt_result r) {
    plan p;
    core.report(worker, {std::move(r)}, now, p);
    return p;
  }

  const task_record& task(task_id id) {
    auto* t = core.find(id);
    REQUIRE(t != nullptr);
    return *t;
  }
};

std::vector<task_id> assigned_ids(const plan& p) {
  std::vector<task_id> ids;
  for (const auto& [worker, work] : p.assignments)
    ids.push_back(work.ref.task);
  return ids;
}

} // namespace

TEST_CASE_METHOD(fixture, "a task waits for a worker and runs when one joins",
                 "[core][scheduler]") {
  auto id = submit("echo hi");
  CHECK(last.assignments.empty());
  CHECK(task(id).status == task_status::queued);
  CHECK(core.reason_of(task(id)) == "no worker is connected");
  auto p = join("w1", 2);
  REQUIRE(p.assignments.size() == 1);
  CHECK(p.assignments[0].first == "w1");
  CHECK(p.assignments[0].second.command == "echo hi");
  CHECK(p.assignments[0].second.ref == attempt_ref{id, 1});
  CHECK(task(id).status == task_status::running);
  CHECK(task(id).worker_id == "w1");
  // The plan says the worker joined before the task started.
  REQUIRE(p.worker_changes.size() == 1);
  CHECK(p.worker_changes[0].task_changes_before == 0);
  REQUIRE(p.task_changes.size() == 1);
  CHECK(p.task_changes[0].to == task_status::running);
  now += 50;
  auto done = report("w1", result({id, 1}, attempt_outcome::succeeded));
  CHECK(task(id).status == task_status::succeeded);
  CHECK(task(id).stdout_tail == "out");
  CHECK(task(id).stdout_bytes == 70'000);
  CHECK(task(id).finished_at == now);
  REQUIRE(done.acks.size() == 1);
  CHECK(done.acks[0].second == attempt_ref{id, 1});
}

TEST_CASE_METHOD(fixture, "tasks are dispatched only into free slots",
                 "[core][scheduler]") {
  join("w1", 2);
  for (int i = 0; i < 5; ++i)
    submit("true");
  CHECK(core.stats().running == 2);
  CHECK(core.stats().queued == 3);
  CHECK(core.cluster().free_slots() == 0);
  CHECK(core.reason_of(task(3)) == "waiting for a free slot");
  // A task that ran a minute: far too long to prefetch behind.
  auto done = result({1, 1}, attempt_outcome::succeeded);
  done.started_at = now - 60'000;
  auto p = report("w1", done);
  CHECK(assigned_ids(p) == std::vector<task_id>{3});
}

TEST_CASE_METHOD(fixture,
                 "with every slot busy, a CRITICAL task submitted after 100 "
                 "LOW tasks is the next to start",
                 "[core][scheduler][priority]") {
  join("w1", 1);
  auto busy = submit("sleep 10");
  for (int i = 0; i < 100; ++i) {
    now += 1;
    submit("low", priority::low);
  }
  now += 1;
  auto critical = submit("critical", priority::critical);
  CHECK(core.stats().queued_by_priority[3] == 1);
  CHECK(core.stats().queued_by_priority[0] == 100);
  auto p = report("w1", result({busy, 1}, attempt_outcome::succeeded));
  CHECK(assigned_ids(p) == std::vector<task_id>{critical});
  p = report("w1", result({critical, 1}, attempt_outcome::succeeded));
  CHECK(assigned_ids(p) == std::vector<task_id>{busy + 1});
}

TEST_CASE_METHOD(fixture, "LOW tasks do not starve under a stream of HIGH ones",
                 "[core][scheduler][aging]") {
  join("w1", 1);
  auto running = submit("first", priority::high);
  auto low = submit("low", priority::low);
  // A new HIGH task arrives every 10 s; each runs 10 s.
  bool low_started = false;
  for (int round = 0; round < 30 && !low_started; ++round) {
    now += 10'000;
    submit("high", priority::high);
    auto p = report("w1", result({running, 1}, attempt_outcome::succeeded));
    REQUIRE(p.assignments.size() == 1);
    running = p.assignments[0].second.ref.task;
    low_started = running == low;
  }
  CHECK(low_started);
  // Two levels of aging at 60 s each: it starts after about 120 s.
  CHECK(now - task(low).created_at <= 130'000);
}

TEST_CASE_METHOD(fixture, "the least loaded worker gets the next task",
                 "[core][scheduler][placement]") {
  join("a", 4);
  join("b", 4);
  std::map<std::string, int> per_worker;
  for (int i = 0; i < 8; ++i) {
    submit("true");
    REQUIRE(last.assignments.size() == 1);
    ++per_worker[last.assignments[0].first];
  }
  CHECK(per_worker["a"] == 4);
  CHECK(per_worker["b"] == 4);
}

TEST_CASE_METHOD(fixture,
                 "a task with labels no worker has stays queued with a "
                 "reason, and runs when a fitting worker joins",
                 "[core][scheduler][labels]") {
  join("cpu", 4);
  auto s = spec("nvidia-smi");
  s.labels = {{"gpu", "1"}};
  auto gpu_task = submit(s);
  auto plain = submit("true");
  CHECK(task(gpu_task).status == task_status::queued);
  CHECK(core.reason_of(task(gpu_task))
        == "no connected worker has the labels gpu=1");
  CHECK(task(plain).status == task_status::running);
  auto p = join("gpu-box", 1, {{"gpu", "1"}});
  REQUIRE(p.assignments.size() == 1);
  CHECK(p.assignments[0].first == "gpu-box");
  CHECK(p.assignments[0].second.ref.task == gpu_task);
}

TEST_CASE_METHOD(fixture, "a failing task is retried with backoff",
                 "[core][scheduler][retry]") {
  join("w1", 1);
  auto s = spec("flaky");
  s.max_retries = 2;
  auto id = submit(s);
  report("w1", result({id, 1}, attempt_outcome::failed, 3));
  CHECK(task(id).status == task_status::queued);
  CHECK(task(id).not_before == now + 1000);
  CHECK(core.reason_of(task(id)).find("retry 1 of 2") != std::string::npos);
  // Waiting, it runs nowhere; the failed attempt keeps where and how it ran.
  CHECK(task(id).worker_id.empty());
  CHECK(task(id).started_at == 0);
  CHECK_FALSE(task(id).has_exit_code);
  CHECK(task(id).attempts[0].worker_id == "w1");
  CHECK(task(id).attempts[0].exit_code == 3);
  plan p;
  core.tick(now + 999, p);
  CHECK(p.assignments.empty());
  now += 1000;
  core.tick(now, p);
  REQUIRE(assigned_ids(p) == std::vector<task_id>{id});
  CHECK(p.assignments[0].second.ref.attempt == 2);
  report("w1", result({id, 2}, attempt_outcome::failed, 3));
  CHECK(task(id).not_before == now + 2000);
  now += 2000;
  p = plan{};
  core.tick(now, p);
  report("w1", result({id, 3}, attempt_outcome::failed, 3));
  CHECK(task(id).status == task_status::failed);
  CHECK(task(id).exit_code == 3);
  REQUIRE(task(id).attempts.size() == 3);
  CHECK(task(id).attempts[0].outcome == attempt_outcome::failed);
}

TEST_CASE_METHOD(fixture, "a timed-out attempt ends TIMED_OUT without retries",
                 "[core][scheduler]") {
  join("w1", 1);
  auto id = submit("sleep 60");
  auto r = result({id, 1}, attempt_outcome::timed_out);
  r.reason = "timed out after 1 s";
  report("w1", r);
  CHECK(task(id).status == task_status::timed_out);
  CHECK(task(id).reason == "timed out after 1 s");
}

TEST_CASE_METHOD(fixture,
                 "tasks of a lost worker are requeued as a new attempt and "
                 "its late result is ignored",
                 "[core][scheduler][liveness]") {
  join("a", 1);
  auto id = submit("work");
  REQUIRE(task(id).worker_id == "a");
  join("b", 1);
  plan p;
  core.worker_lost("a", "connection closed", now, p);
  REQUIRE(assigned_ids(p) == std::vector<task_id>{id});
  CHECK(p.assignments[0].first == "b");
  CHECK(p.assignments[0].second.ref.attempt == 2);
  // Each change carries the task as it left it, for its event: back in the
  // queue with the reason and no worker, then started on "b".
  REQUIRE(p.task_changes.size() == 2);
  CHECK(p.task_changes[0].to == task_status::queued);
  CHECK(p.task_changes[0].worker_id.empty());
  CHECK(p.task_changes[0].attempts == 1);
  CHECK(p.task_changes[0].reason == "worker a lost: connection closed");
  CHECK(p.task_changes[1].to == task_status::running);
  CHECK(p.task_changes[1].worker_id == "b");
  CHECK(p.task_changes[1].attempts == 2);
  CHECK(task(id).attempts[0].outcome == attempt_outcome::lost);
  CHECK(core.cluster().find("a")->status == worker_status::lost);
  // The worker's own change says why, and what it held.
  REQUIRE(p.worker_changes.size() == 1);
  CHECK(p.worker_changes[0].reason == "connection closed");
  CHECK(p.worker_changes[0].requeued == 1);
  // "a" comes back still running attempt 1: it is told to kill it.
  plan back;
  core.register_worker(info("a", 1), {{id, 1}}, {}, now, back);
  REQUIRE(back.kills.size() == 1);
  CHECK(back.kills[0].second == attempt_ref{id, 1});
  // Its late result is acknowledged but changes nothing; the plan says it
  // was dropped, and why, for the log.
  auto late = report("a", result({id, 1}, attempt_outcome::succeeded));
  CHECK(late.acks.size() == 1);
  CHECK(task(id).status == task_status::running);
  REQUIRE(late.dropped.size() == 1);
  CHECK(late.dropped[0].worker_id == "a");
  CHECK(late.dropped[0].ref == attempt_ref{id, 1});
  CHECK(late.dropped[0].why
        == "the attempt was given up (LOST: worker a lost: connection "
           "closed); the task is RUNNING after 2 attempts");
  auto done = report("b", result({id, 2}, attempt_outcome::succeeded));
  CHECK(done.dropped.empty());
  CHECK(task(id).status == task_status::succeeded);
  CHECK(task(id).attempts.size() == 2);
  // The same result again (its acknowledgement lost) drops nothing.
  auto again = report("b", result({id, 2}, attempt_outcome::succeeded));
  CHECK(again.acks.size() == 1);
  CHECK(again.dropped.empty());
  CHECK(task(id).status == task_status::succeeded);
}

TEST_CASE_METHOD(fixture,
                 "a failed attempt's result sent again while its task waits "
                 "to retry is not reported as dropped",
                 "[core][scheduler][liveness]") {
  join("a", 1);
  auto s = spec("flaky");
  s.max_retries = 1;
  auto id = submit(s);
  report("a", result({id, 1}, attempt_outcome::failed, 1));
  REQUIRE(task(id).status == task_status::queued);
  auto again = report("a", result({id, 1}, attempt_outcome::failed, 1));
  CHECK(again.acks.size() == 1);
  CHECK(again.dropped.empty());
  CHECK(task(id).status == task_status::queued);
  // So is a started attempt its worker handed back (a shutdown grace over).
  join("b", 1);
  now += 2'000;
  auto handed = submit("long");
  auto ref = task(handed).current_ref();
  auto worker = task(handed).worker_id;
  report(worker, result(ref, attempt_outcome::returned));
  REQUIRE(task(handed).attempts[0].outcome == attempt_outcome::returned);
  CHECK(report(worker, result(ref, attempt_outcome::returned)).dropped.empty());
  // A result that differs from what the attempt ended with is dropped.
  auto other = result(ref, attempt_outcome::succeeded);
  CHECK(report(worker, other).dropped.size() == 1);
}

TEST_CASE_METHOD(fixture,
                 "a task whose workers are lost too often fails, and the last "
                 "loss does not count it as requeued",
                 "[core][scheduler][liveness]") {
  auto id = submit("work");
  for (uint32_t i = 1; i <= test_settings().max_lost_attempts; ++i) {
    auto worker = "w" + std::to_string(i);
    join(worker, 1);
    REQUIRE(task(id).worker_id == worker);
    plan p;
    core.worker_lost(worker, "connection closed", now, p);
    REQUIRE(p.worker_changes.size() == 1);
    bool last_loss = i == test_settings().max_lost_attempts;
    CHECK(p.worker_changes[0].requeued == (last_loss ? 0u : 1u));
    CHECK(task(id).status
          == (last_loss ? task_status::failed : task_status::queued));
  }
}

TEST_CASE_METHOD(fixture, "a worker without heartbeats is declared LOST",
                 "[core][scheduler][liveness]") {
  join("a", 1);
  auto id = submit("work");
  now += 4000;
  CHECK(core.heartbeat("a", 7, 0.5, now) == heartbeat_outcome::ok);
  plan p;
  core.tick(now + 5000, p);
  CHECK(core.cluster().find("a")->status == worker_status::up);
  core.tick(now + 5001, p);
  CHECK(core.cluster().find("a")->status == worker_status::lost);
  CHECK(task(id).status == task_status::queued);
  CHECK(task(id).worker_id.empty());
  CHECK(task(id).started_at == 0);
  CHECK(task(id).attempts[0].worker_id == "a");
  CHECK(core.heartbeat("a", 7, 0.5, now) == heartbeat_outcome::must_register);
}

/// The scheduler's real pace: a tick every 100 ms.
scheduler_settings paced_settings() {
  auto s = test_settings();
  s.tick_interval = 100;
  return s;
}

struct paced_fixture : fixture {
  paced_fixture() : fixture(paced_settings()) {
  }

  /// Ticks every 100 ms for `ms`, as a running master does.
  void run_for(time_ms ms) {
    for (time_ms t = 0; t < ms; t += 100) {
      now += 100;
      plan p;
      core.tick(now, p);
    }
  }
};

TEST_CASE_METHOD(paced_fixture, "time the master did not run counts against "
                                "no worker's heartbeats",
                 "[core][scheduler][liveness]") {
  join("a", 1);
  auto id = submit("work");
  run_for(1000);
  CHECK(core.heartbeat("a", 7, 0.5, now) == heartbeat_outcome::ok);
  // Stopped for 8 s (longer than the 5 s timeout): on resuming it blames
  // nobody, and says how long it was away.
  now += 8000;
  plan p;
  CHECK(core.tick(now, p) == 7900);
  CHECK(core.cluster().find("a")->status == worker_status::up);
  CHECK(task(id).status == task_status::running);
  // The credit is the stall's length, not a pardon: silent afterwards, the
  // worker is LOST a timeout later.
  run_for(4800);
  CHECK(core.cluster().find("a")->status == worker_status::up);
  run_for(400);
  CHECK(core.cluster().find("a")->status == worker_status::lost);
}

TEST_CASE_METHOD(paced_fixture, "a connection lost during a master stall "
                                "leaves the worker's tasks for it to reclaim",
                 "[core][scheduler][liveness][recovery]") {
  join("a", 1);
  join("b", 1);
  auto id = submit("work");
  auto on = task(id).worker_id;
  auto other = on == "a" ? "b" : "a";
  run_for(1000);
  // The master resumes after 8 s; the worker had given up on the
  // connection meanwhile, and that news comes before the first tick.
  now += 8000;
  plan lost;
  core.worker_lost(on, "connection lost", now, lost);
  CHECK(core.cluster().find(on)->status == worker_status::lost);
  CHECK(task(id).status == task_status::running);
  CHECK(lost.assignments.empty()); // not given to the other worker
  REQUIRE(lost.worker_changes.size() == 1);
  CHECK(lost.worker_changes[0].requeued == 0);
  CHECK(lost.worker_changes[0].reason.find("while the master was stalled")
        != std::string::npos);
  plan p;
  core.tick(now, p);
  // It registers again with the result it held: the task ends with its one
  // attempt, and never ran on the other worker.
  plan back;
  CHECK(core.register_worker(info(on, 1), {},
                             {result(task(id).current_ref(),
                                     attempt_outcome::succeeded)},
                             now + 5, back)
        == register_outcome::accepted);
  CHECK(task(id).status == task_status::succeeded);
  CHECK(task(id).attempts.size() == 1);
  CHECK(core.cluster().find(other)->running.empty());
}

TEST_CASE_METHOD(paced_fixture, "outside a stall a lost connection requeues "
                                "at once",
                 "[core][scheduler][liveness]") {
  join("a", 1);
  auto id = submit("work");
  run_for(1000);
  plan p;
  core.worker_lost("a", "connection lost", now, p);
  CHECK(task(id).status == task_status::queued);
}

TEST_CASE_METHOD(fixture, "a second process with a connected worker's id is "
                          "refused",
                 "[core][scheduler]") {
  join("a", 1);
  plan p;
  CHECK(core.register_worker(info("a", 1, {}, 99), {}, {}, now, p)
        == register_outcome::duplicate_id);
  // The same process reconnecting is fine.
  CHECK(core.register_worker(info("a", 1, {}, 7), {}, {}, now, p)
        == register_outcome::accepted);
}

TEST_CASE_METHOD(fixture, "a task that keeps losing its worker fails",
                 "[core][scheduler][liveness]") {
  auto id = submit("crash-the-box");
  for (int i = 0; i < 5; ++i) {
    join("a", 1);
    plan p;
    core.worker_lost("a", "gone", now, p);
  }
  CHECK(task(id).status == task_status::failed);
  CHECK(task(id).attempts.size() == 5);
}

TEST_CASE_METHOD(fixture, "cancel follows the documented rules",
                 "[core][scheduler][cancel]") {
  join("w1", 1);
  auto running = submit("sleep 60");
  auto queued = submit("sleep 60");
  plan p;
  CHECK(core.cancel(queued, now, p) == cancel_outcome::cancelled);
  CHECK(task(queued).status == task_status::cancelled);
  CHECK(core.stats().queued == 0);
  CHECK(core.cancel(queued, now, p) == cancel_outcome::already_cancelled);
  p = plan{};
  CHECK(core.cancel(running, now, p) == cancel_outcome::cancelled);
  REQUIRE(p.kills.size() == 1);
  CHECK(p.kills[0] == std::make_pair(std::string{"w1"}, attempt_ref{running, 1}));
  // The slot frees when the worker reports the process gone.
  CHECK(core.cluster().free_slots() == 0);
  CHECK(task(running).stdout_tail.empty());
  auto cancel_time = task(running).finished_at;
  now += 500;
  auto killed = report("w1", result({running, 1}, attempt_outcome::cancelled));
  CHECK(core.cluster().free_slots() == 1);
  // What the process wrote before it was killed is kept (and journaled);
  // the task stays CANCELLED as of the request.
  CHECK(task(running).status == task_status::cancelled);
  CHECK(task(running).stdout_tail == "out");
  CHECK(task(running).stdout_bytes == 70'000);
  CHECK(task(running).finished_at == cancel_time);
  CHECK(task(running).reason == "cancelled by request");
  CHECK(killed.amended == std::vector<task_id>{running});
  CHECK(killed.task_changes.empty());
  CHECK(killed.dropped.empty());
  auto done = submit("true");
  report("w1", result({done, 1}, attempt_outcome::succeeded));
  CHECK(core.cancel(done, now, p) == cancel_outcome::conflict);
  CHECK(core.cancel(9999, now, p) == cancel_outcome::not_found);
}

TEST_CASE_METHOD(fixture, "the queue bound refuses a whole batch",
                 "[core][scheduler][backpressure]") {
  std::vector<task_spec> batch(1000, spec("true"));
  CHECK_FALSE(core.admit(batch, now).queue_full);
  auto refused = core.admit({spec("one more")}, now);
  CHECK(refused.queue_full);
  CHECK(refused.ids.empty());
  CHECK(core.task_count() == 1000);
}

TEST_CASE_METHOD(fixture, "an idempotency key returns the existing task",
                 "[core][scheduler][idempotency]") {
  auto s = spec("true");
  s.idempotency_key = "nightly-2026-11-26";
  auto first = submit(s);
  auto again = core.admit({s, s}, now);
  CHECK(again.ids == std::vector<task_id>{first, first});
  CHECK(again.created == std::vector<bool>{false, false});
  CHECK(core.task_count() == 1);
}

TEST_CASE_METHOD(fixture,
                 "an idempotency key reused for another task refuses the "
                 "whole batch",
                 "[core][scheduler][idempotency]") {
  auto s = spec("backup /srv");
  s.idempotency_key = "nightly";
  auto first = submit(s);

  SECTION("against a task it already names") {
    auto other = s;
    other.env["DEST"] = "b";
    auto refused = core.admit({spec("fresh"), other}, now);
    REQUIRE(refused.conflict);
    CHECK(refused.conflict->index == 1);
    CHECK(refused.conflict->key == "nightly");
    CHECK(refused.conflict->field == "env");
    CHECK(refused.conflict->task == first);
    CHECK(refused.ids.empty());
    CHECK(core.task_count() == 1); // "fresh" was not admitted either
  }
  SECTION("against an earlier spec of the same batch") {
    auto a = spec("a");
    a.idempotency_key = "k";
    auto b = spec("b");
    b.idempotency_key = "k";
    auto refused = core.admit({spec("x"), a, b}, now);
    REQUIRE(refused.conflict);
    CHECK(refused.conflict->index == 2);
    CHECK(refused.conflict->field == "command");
    CHECK(refused.conflict->task == 0);
    CHECK(refused.conflict->earlier == 1);
    CHECK(core.task_count() == 1);
  }
  SECTION("a field given as the master's default is the field left out") {
    auto explicit_defaults = s;
    explicit_defaults.max_retries = 0;          // test_settings: 0 retries
    explicit_defaults.retry_backoff_ms = 1000;  // and a 1 s ... 30 s backoff
    explicit_defaults.retry_backoff_max_ms = 30'000;
    auto again = core.admit({explicit_defaults}, now);
    CHECK_FALSE(again.conflict);
    CHECK(again.ids == std::vector<task_id>{first});
  }
  SECTION("a retry budget left to the master is the one it had at "
          "admission, after a restart with another default") {
    auto settings = test_settings();
    settings.default_max_retries = 3;
    scheduler_core restarted{settings, [] { return 1.0; }};
    restarted.restore({*core.find(first)}, first, now);
    auto as_admitted = s;
    as_admitted.max_retries = 0; // what it got: the old default
    auto again = restarted.admit({as_admitted}, now);
    CHECK_FALSE(again.conflict);
    CHECK(again.ids == std::vector<task_id>{first});
    auto left_out = restarted.admit({s}, now); // the same request, again
    CHECK_FALSE(left_out.conflict);
  }
  SECTION("a repeat of a known key later in the batch is compared too") {
    auto other = s;
    other.command = "backup /home";
    auto refused = core.admit({s, spec("fresh"), other}, now);
    REQUIRE(refused.conflict);
    CHECK(refused.conflict->index == 2);
    CHECK(refused.conflict->task == first);
    CHECK(core.task_count() == 1);
  }
  SECTION("a conflict is answered before a full queue") {
    std::vector<task_spec> fill(999, spec("true"));
    REQUIRE_FALSE(core.admit(fill, now).queue_full);
    auto other = s;
    other.command = "backup /home";
    auto refused = core.admit({spec("one too many"), other}, now);
    CHECK(refused.conflict);
    CHECK_FALSE(refused.queue_full);
  }
  SECTION("a later start is the same task (delay_seconds counts from each "
          "submission)") {
    auto retried = s;
    retried.run_at = now + 30'000;
    auto again = core.admit({retried}, now + 1000);
    CHECK_FALSE(again.conflict);
    CHECK(again.ids == std::vector<task_id>{first});
  }
  SECTION("every field a client sets counts") {
    std::vector<std::pair<std::string, std::function<void(task_spec&)>>>
      changes{
        {"name", [](task_spec& t) { t.name = "n"; }},
        {"description", [](task_spec& t) { t.description = "d"; }},
        {"priority", [](task_spec& t) { t.prio = priority::high; }},
        {"timeout_seconds", [](task_spec& t) { t.timeout_seconds = 9; }},
        {"max_retries", [](task_spec& t) { t.max_retries = 3; }},
        {"labels", [](task_spec& t) { t.labels["zone"] = "b"; }},
        {"retry_backoff_seconds", [](task_spec& t) { t.retry_backoff_ms = 5; }},
        {"retry_backoff_max_seconds",
         [](task_spec& t) { t.retry_backoff_max_ms = 5; }},
      };
    for (const auto& [field, change] : changes) {
      auto other = s;
      change(other);
      auto refused = core.admit({other}, now);
      REQUIRE(refused.conflict);
      CHECK(refused.conflict->field == field);
    }
  }
}

TEST_CASE_METHOD(fixture, "a delayed task stays queued until its time",
                 "[core][scheduler][delay]") {
  join("w1", 1);
  auto s = spec("later");
  s.run_at = now + 5000;
  auto id = submit(s);
  CHECK(task(id).status == task_status::queued);
  CHECK(core.reason_of(task(id)).rfind("scheduled to start at", 0) == 0);
  plan p;
  core.tick(now + 4999, p);
  CHECK(p.assignments.empty());
  core.tick(now + 5000, p);
  CHECK(assigned_ids(p) == std::vector<task_id>{id});
}

TEST_CASE_METHOD(fixture, "a draining worker takes nothing new and leaves",
                 "[core][scheduler][shutdown]") {
  join("a", 2);
  auto id = submit("work");
  plan p;
  core.drain("a", now, p);
  submit("next");
  CHECK(last.assignments.empty());
  auto done = report("a", result({id, 1}, attempt_outcome::succeeded));
  CHECK(core.cluster().find("a")->status == worker_status::left);
  // It left after its last task ended.
  REQUIRE(done.task_changes.size() == 1);
  REQUIRE(done.worker_changes.size() == 1);
  CHECK(done.worker_changes[0].task_changes_before == 1);
}

TEST_CASE_METHOD(fixture, "a worker leaving hands back what it still holds",
                 "[core][scheduler][shutdown]") {
  join("a", 1);
  auto id = submit("work");
  plan p;
  core.leave("a", now, p);
  CHECK(task(id).status == task_status::queued);
  CHECK(task(id).attempts[0].outcome == attempt_outcome::returned);
  REQUIRE(p.worker_changes.size() == 1);
  CHECK(p.worker_changes[0].requeued == 1);
  CHECK(p.worker_changes[0].task_changes_before == 1);
  join("b", 1);
  CHECK(task(id).status == task_status::running);
}

TEST_CASE("after a restart, queued tasks keep their order and running ones "
          "wait for their worker",
          "[core][scheduler][recovery]") {
  fixture before;
  before.join("a", 1);
  auto running = before.submit("sleep 60");
  auto first = before.submit("q1");
  before.now += 1;
  auto second = before.submit("q2");
  std::vector<task_record> saved;
  for (auto id : {running, first, second})
    saved.push_back(before.task(id));

  fixture after;
  after.core.restore(saved, second, after.now);
  CHECK(after.core.stats().queued == 2);
  CHECK(after.core.stats().running == 1);
  CHECK(after.submit("new") == second + 1);
  CHECK(after.core.reason_of(after.task(running))
        == "the master restarted: waiting up to 10 s for worker a to come "
           "back and claim it");
  plan p;
  // The worker comes back still running the attempt, and with a result.
  REQUIRE(after.core.register_worker(after.info("a", 2), {{running, 1}}, {},
                                     after.now, p)
          == register_outcome::accepted);
  CHECK(p.kills.empty());
  CHECK(assigned_ids(p) == std::vector<task_id>{first});
  CHECK(after.core.reason_of(after.task(running)).empty());
  after.report("a", after.result({running, 1}, attempt_outcome::succeeded));
  CHECK(after.task(running).status == task_status::succeeded);
}

TEST_CASE("after a restart, an unclaimed running task is requeued after the "
          "grace period",
          "[core][scheduler][recovery]") {
  fixture before;
  before.join("a", 1);
  auto id = before.submit("sleep 60");
  fixture after;
  after.core.restore({before.task(id)}, id, after.now);
  plan p;
  after.core.tick(after.now + 9'999, p);
  CHECK(after.task(id).status == task_status::running);
  after.core.tick(after.now + 10'000, p);
  CHECK(after.task(id).status == task_status::queued);
  CHECK(after.task(id).attempts[0].outcome == attempt_outcome::lost);
}

TEST_CASE("after a restart, a worker's held result completes its task",
          "[core][scheduler][recovery]") {
  fixture before;
  before.join("a", 1);
  auto id = before.submit("echo done");
  fixture after;
  after.core.restore({before.task(id)}, id, after.now);
  plan p;
  after.core.register_worker(after.info("a", 1), {},
                             {after.result({id, 1}, attempt_outcome::succeeded)},
                             after.now, p);
  CHECK(after.task(id).status == task_status::succeeded);
  CHECK(p.acks.size() == 1);
}

TEST_CASE_METHOD(fixture, "listings are newest first and page with a cursor",
                 "[core][scheduler][query]") {
  for (int i = 0; i < 25; ++i)
    submit(i % 2 == 0 ? spec("even", priority::high) : spec("odd"));
  task_filter f;
  f.limit = 10;
  auto page1 = core.list(f);
  REQUIRE(page1.tasks.size() == 10);
  CHECK(page1.tasks.front()->id == 25);
  CHECK(page1.next_cursor == 16);
  f.cursor = page1.next_cursor;
  auto page2 = core.list(f);
  CHECK(page2.tasks.front()->id == 15);
  f.cursor = 6;
  auto page3 = core.list(f);
  CHECK(page3.tasks.size() == 5);
  CHECK(page3.next_cursor == 0);
  task_filter high;
  high.prio = priority::high;
  high.status = task_status::queued;
  high.limit = 100;
  CHECK(core.list(high).tasks.size() == 13);
}

TEST_CASE("retention forgets the oldest finished tasks",
          "[core][scheduler][retention]") {
  auto settings = test_settings();
  settings.retention_max_finished = 2;
  scheduler_core core{settings, [] { return 0.0; }};
  time_ms now = 1000;
  plan p;
  core.register_worker(worker_info{"w", "h", 1, {}, 1}, {}, {}, now, p);
  for (int i = 0; i < 3; ++i) {
    auto a = core.admit({task_spec{"true"}}, now);
    core.activate(a.ids, now, p);
    attempt_result r;
    r.ref = {a.ids[0], 1};
    r.outcome = attempt_outcome::succeeded;
    core.report("w", {r}, ++now, p);
  }
  plan pruned;
  core.tick(now, pruned);
  CHECK(pruned.removed == std::vector<task_id>{1});
  CHECK(core.find(1) == nullptr);
  CHECK(core.task_count() == 2);
}

TEST_CASE("after a restart, an attempt the journal never saw is adopted "
          "from the worker that runs it, not run again",
          "[core][scheduler][recovery]") {
  // Epoch 1 dispatched attempt 1 and crashed before journaling it: the
  // journal holds the task QUEUED without attempts.
  fixture before;
  auto id = before.submit("sleep 8");
  auto queued = before.task(id);
  scheduler_core after{in_epoch(2), [] { return 1.0; }};
  after.restore({queued}, id, 1000);
  plan p;
  worker_info w{"a", "h", 2, {}, 7};
  // The worker still runs epoch 1's attempt 1.
  attempt_ref old{id, 1, 1};
  after.register_worker(w, {old}, {}, 1000, p);
  CHECK(p.kills.empty());
  CHECK(p.assignments.empty());
  const auto* task = after.find(id);
  REQUIRE(task->status == task_status::running);
  CHECK(task->current_ref() == old);
  CHECK(task->worker_id == "a");
  CHECK(after.cluster().find("a")->running.count(old) == 1);
  // Its result ends the task, once.
  attempt_result done;
  done.ref = old;
  done.outcome = attempt_outcome::succeeded;
  done.started_at = 900;
  done.finished_at = 1001;
  plan r;
  after.report("a", {done}, 1001, r);
  CHECK(after.find(id)->status == task_status::succeeded);
  CHECK(after.find(id)->attempts.size() == 1);
  // A claim that is not the task's next attempt (the journal moved on, or
  // it names this master's epoch) is killed as before.
  auto again = before.submit("sleep 8");
  after.restore({before.task(again)}, again, 1002);
  plan q;
  after.register_worker(worker_info{"b", "h", 1, {}, 8}, {{again, 2, 1}}, {},
                        1002, q);
  REQUIRE(q.kills.size() == 1);
  CHECK(q.kills[0].second == attempt_ref{again, 2, 1});
}

TEST_CASE("after a restart, the tasks left are not dispatched until the "
          "workers that ran tasks are back, so a held result of an "
          "unjournaled attempt is adopted",
          "[core][scheduler][recovery]") {
  fixture before;
  before.join("a", 2);
  auto journaled = before.submit("sleep 60");
  auto unjournaled = before.submit("true");
  // Epoch 1 sent `unjournaled` to "a" too, and crashed before its RUNNING
  // state was committed.
  auto as_queued = before.task(unjournaled);
  as_queued.status = task_status::queued;
  as_queued.attempts.clear();
  as_queued.worker_id.clear();
  as_queued.started_at = 0;
  fixture after{in_epoch(2)};
  after.core.restore({before.task(journaled), as_queued}, unjournaled,
                     after.now);
  // A fresh worker comes back first: it gets nothing yet.
  auto p = after.join("fresh", 1);
  CHECK(p.assignments.empty());
  CHECK(after.core.reason_of(after.task(unjournaled))
        == "the master restarted: tasks queued before it wait until worker a "
           "is back, or "
             + format_rfc3339(after.now + test_settings().restart_hold)
             + " at the latest");
  // "a" comes back with the journaled attempt still running and the other
  // one's result: both are its own, and nothing runs twice.
  attempt_result done;
  done.ref = {unjournaled, 1, 0};
  done.outcome = attempt_outcome::succeeded;
  done.started_at = after.now - 5;
  done.finished_at = after.now - 1;
  plan back;
  REQUIRE(after.core.register_worker(after.info("a", 2),
                                     {before.task(journaled).current_ref()},
                                     {done}, after.now, back)
          == register_outcome::accepted);
  CHECK(back.kills.empty());
  CHECK(back.assignments.empty());
  CHECK(after.task(unjournaled).status == task_status::succeeded);
  CHECK(after.task(unjournaled).attempts.size() == 1);
  CHECK(after.task(journaled).status == task_status::running);
  // Nothing left to wait for.
  CHECK(after.core.awaited_after_restart().empty());
}

TEST_CASE("after a restart, a held hand-back makes the worker's next attempt "
          "of the task adoptable",
          "[core][scheduler][recovery]") {
  // Epoch 1 had attempt 1 on "a" journaled, took it back unstarted, sent
  // attempt 2 to "a" again, and crashed before journaling either change.
  fixture before{in_epoch(1)};
  before.join("a", 1);
  auto id = before.submit("echo once");
  REQUIRE(before.task(id).current_ref() == attempt_ref{id, 1, 1});
  fixture after{in_epoch(2)};
  after.core.restore({before.task(id)}, id, after.now);
  attempt_result back;
  back.ref = {id, 1, 1};
  back.outcome = attempt_outcome::returned;
  back.finished_at = after.now - 20;
  attempt_result done;
  done.ref = {id, 2, 1};
  done.outcome = attempt_outcome::succeeded;
  done.started_at = after.now - 10;
  done.finished_at = after.now - 5;
  plan p;
  // Held in any order; both are the worker's own, and the task ran once.
  REQUIRE(after.core.register_worker(after.info("a", 1), {}, {done, back},
                                     after.now, p)
          == register_outcome::accepted);
  CHECK(p.assignments.empty());
  CHECK(p.kills.empty());
  CHECK(p.acks.size() == 2);
  CHECK(after.task(id).status == task_status::succeeded);
  REQUIRE(after.task(id).attempts.size() == 2);
  CHECK(after.task(id).attempts[0].outcome == attempt_outcome::returned);
  CHECK(after.task(id).attempts[1].outcome == attempt_outcome::succeeded);
}

namespace {

/// Ticks `f` up to `end`, its workers heartbeating throughout, and checks
/// that nothing is dispatched before `end`. Returns what is dispatched at
/// `end`, and in `not_back` the workers the hold gave up on.
std::vector<task_id> hold_ends_at(fixture& f, time_ms end,
                                  std::vector<std::string>* not_back = nullptr) {
  auto heartbeat_all = [&](time_ms at) {
    for (const auto& [id, w] : f.core.cluster().workers())
      CHECK(f.core.heartbeat(id, w.info.incarnation, 0, at)
            == heartbeat_outcome::ok);
  };
  for (auto at = f.now + 1'000; at < end; at += 1'000) {
    heartbeat_all(at);
    plan tick;
    f.core.tick(at, tick);
    CHECK(tick.assignments.empty());
    CHECK(tick.workers_not_back.empty());
  }
  heartbeat_all(end - 1);
  plan tick;
  f.core.tick(end - 1, tick);
  CHECK(tick.assignments.empty());
  CHECK(tick.workers_not_back.empty());
  heartbeat_all(end);
  plan last;
  f.core.tick(end, last);
  if (not_back != nullptr)
    *not_back = last.workers_not_back;
  return assigned_ids(last);
}

} // namespace

TEST_CASE("after a restart, the master waits for its workers restart_hold "
          "at most",
          "[core][scheduler][recovery]") {
  fixture before;
  before.join("a", 1);
  auto running = before.submit("sleep 60");
  auto queued = before.submit("true");
  fixture after;
  after.core.restore({before.task(running), before.task(queued)}, queued,
                     after.now);
  auto p = after.join("other", 1);
  CHECK(p.assignments.empty());
  CHECK(hold_ends_at(after, after.now + test_settings().restart_hold)
        == std::vector<task_id>{queued});
  // "a" never claims its task: at the end of the grace it runs again, and
  // the plan names it for the log.
  auto later = after.now + test_settings().reconcile_grace;
  CHECK(after.core.heartbeat("other", 7, 0, later) == heartbeat_outcome::ok);
  plan grace_over;
  after.core.tick(later, grace_over);
  REQUIRE(grace_over.unclaimed.size() == 1);
  CHECK(grace_over.unclaimed[0]
        == std::make_pair(std::string{"a"}, before.task(running).current_ref()));
  CHECK(after.task(running).status == task_status::queued);
}

TEST_CASE("after a crash, the master waits for every worker that was "
          "connected, even with nothing RUNNING in the journal",
          "[core][scheduler][recovery]") {
  // Epoch 1 sent the only task to "a" and crashed before journaling it as
  // RUNNING: the journal has it QUEUED, and "a" and "b" as connected.
  fixture before{in_epoch(1)};
  before.join("a", 1);
  auto id = before.submit("echo once");
  auto sent = before.task(id).current_ref();
  auto as_journaled = before.task(id);
  as_journaled.status = task_status::queued;
  as_journaled.attempts.clear();
  as_journaled.worker_id.clear();
  as_journaled.started_at = 0;
  fixture after{in_epoch(2)};
  after.core.restore({as_journaled}, id, after.now, {"a", "b"});
  CHECK(after.core.reason_of(after.task(id))
        == "the master restarted: tasks queued before it wait until workers "
           "a, b are back, or "
             + format_rfc3339(after.now + test_settings().restart_hold)
             + " at the latest");
  // "b" is back first: nothing goes to it, "a" may run the task.
  auto p = after.join("b", 1);
  CHECK(p.assignments.empty());
  plan back;
  REQUIRE(after.core.register_worker(after.info("a", 1), {sent}, {}, after.now,
                                     back)
          == register_outcome::accepted);
  CHECK(back.kills.empty());
  CHECK(back.assignments.empty());
  CHECK(after.task(id).status == task_status::running);
  CHECK(after.task(id).worker_id == "a");
  CHECK(after.task(id).attempts.size() == 1);
  // Both back: nothing left to wait for.
  CHECK(after.core.awaited_after_restart().empty());
}

TEST_CASE("during the wait after a restart, new tasks run at once and the "
          "tasks left keep their order for after it, requeued ones too",
          "[core][scheduler][recovery]") {
  // Epoch 1: "a" and "b" connected, a task RUNNING on "b", two QUEUED.
  fixture before{in_epoch(1)};
  before.join("b", 1);
  auto on_b = before.submit("sleep 60");
  auto first = before.submit("echo first", priority::low);
  auto second = before.submit("echo second", priority::low);
  REQUIRE(before.task(first).status == task_status::queued);
  fixture after{in_epoch(2)};
  after.core.restore({before.task(on_b), before.task(first),
                      before.task(second)},
                     second, after.now, {"a", "b"});
  REQUIRE(after.core.awaited_after_restart()
          == std::vector<std::string>{"a", "b"});
  // A new worker: the tasks left wait ("a" may run one of them) ...
  auto p = after.join("c", 2);
  CHECK(p.assignments.empty());
  // ... but a task submitted now runs at once, even a LOW one.
  after.now += 100;
  auto fresh = after.submit("echo fresh", priority::low);
  CHECK(after.task(fresh).status == task_status::running);
  CHECK(after.task(fresh).worker_id == "c");
  CHECK(after.core.reason_of(after.task(first)).rfind(
          "the master restarted: tasks queued before it wait until workers "
          "a, b are back",
          0)
        == 0);
  // "b" comes back without its attempt: the task goes back to the queue,
  // and waits with the others ("a" may have been sent its next attempt).
  plan back;
  REQUIRE(after.core.register_worker(after.info("b", 1), {}, {}, after.now,
                                     back)
          == register_outcome::accepted);
  CHECK(after.task(on_b).status == task_status::queued);
  CHECK(back.assignments.empty());
  CHECK(after.core.stats().queued == 3);
  // Another new task goes to "b", the one free slot beside "c"'s second.
  auto fresh2 = after.submit("echo fresh2", priority::low);
  CHECK(after.task(fresh2).status == task_status::running);
  // "a" is back: the three left go out in their order, into the slots
  // there are (a's 1 and c's 1; "b" holds fresh2).
  plan a_back;
  REQUIRE(after.core.register_worker(after.info("a", 1), {}, {}, after.now,
                                     a_back)
          == register_outcome::accepted);
  CHECK(assigned_ids(a_back) == std::vector<task_id>{on_b, first});
  CHECK(after.task(second).status == task_status::queued);
  CHECK(after.core.reason_of(after.task(second)).find("the master restarted")
        == std::string::npos);
}

TEST_CASE("after a crash with no task queued or running, nothing waits for "
          "the workers that were connected",
          "[core][scheduler][recovery]") {
  fixture before;
  before.join("a", 1);
  auto id = before.submit("true");
  before.report("a", before.result(before.task(id).current_ref(),
                                   attempt_outcome::succeeded));
  REQUIRE(before.task(id).status == task_status::succeeded);
  fixture after;
  after.core.restore({before.task(id)}, id, after.now, {"a"});
  CHECK(after.core.awaited_after_restart().empty());
  after.join("other", 1);
  auto next = after.submit("true");
  CHECK(after.task(next).status == task_status::running);
}

namespace {

/// Epoch 1 journaled a task RUNNING on "a", lost "a", sent attempt 2 to
/// "b", and crashed before journaling that (nothing is QUEUED): the task as
/// journaled, and attempt 2.
std::pair<task_record, attempt_ref> moved_on_before_crash() {
  fixture before{in_epoch(1)};
  before.join("a", 1);
  auto id = before.submit("echo once");
  auto journaled = before.task(id);
  before.join("b", 1);
  plan lost;
  before.core.worker_lost("a", "connection lost", before.now, lost);
  REQUIRE(before.task(id).worker_id == "b");
  REQUIRE(before.task(id).current_ref().attempt == 2);
  return {journaled, before.task(id).current_ref()};
}

} // namespace

TEST_CASE("after a crash, a task journaled RUNNING on a lost worker waits "
          "for the worker its unjournaled next attempt went to",
          "[core][scheduler][recovery]") {
  auto [journaled, second] = moved_on_before_crash();
  auto id = journaled.id;
  fixture after{in_epoch(2)};
  after.core.restore({journaled}, id, after.now, {"a", "b"});
  CHECK(after.core.awaited_after_restart()
        == std::vector<std::string>{"a", "b"});
  // "a" comes back without the attempt: the task goes back to the queue,
  // and stays there while "b" is awaited.
  auto p = after.join("a", 1);
  CHECK(p.assignments.empty());
  CHECK(after.task(id).status == task_status::queued);
  plan back;
  REQUIRE(after.core.register_worker(after.info("b", 1), {second}, {},
                                     after.now, back)
          == register_outcome::accepted);
  CHECK(back.kills.empty());
  CHECK(back.assignments.empty());
  CHECK(after.task(id).status == task_status::running);
  CHECK(after.task(id).worker_id == "b");
  CHECK(after.task(id).current_ref() == second);
}

TEST_CASE("after a crash, the worker an unjournaled next attempt went to "
          "has it adopted even before the journaled one is back",
          "[core][scheduler][recovery]") {
  for (bool finished : {false, true}) {
    CAPTURE(finished);
    auto [journaled, second] = moved_on_before_crash();
    auto id = journaled.id;
    fixture after{in_epoch(2)};
    after.core.restore({journaled}, id, after.now, {"a", "b"});
    // "b" comes back first, running attempt 2 or holding its result; "a"
    // never does.
    plan back;
    std::vector<attempt_ref> running;
    std::vector<attempt_result> held;
    if (finished)
      held.push_back(after.result(second, attempt_outcome::succeeded));
    else
      running.push_back(second);
    REQUIRE(after.core.register_worker(after.info("b", 1), running, held,
                                       after.now, back)
            == register_outcome::accepted);
    CHECK(back.kills.empty());
    CHECK(back.assignments.empty());
    const auto& t = after.task(id);
    CHECK(t.status
          == (finished ? task_status::succeeded : task_status::running));
    CHECK(t.worker_id == "b");
    REQUIRE(t.attempts.size() == 2);
    CHECK(t.attempts[0].outcome == attempt_outcome::lost);
    CHECK(t.attempts[1].epoch == 1);
    // Nothing is left to claim on "a": its grace runs out on nothing.
    auto later = after.now + test_settings().reconcile_grace + 1;
    CHECK(after.core.heartbeat("b", 7, 0, later) == heartbeat_outcome::ok);
    plan tick;
    after.core.tick(later, tick);
    CHECK(tick.assignments.empty());
    CHECK(tick.unclaimed.empty());
    CHECK(after.task(id).attempts.size() == 2);
    CHECK(after.task(id).worker_id == "b");
  }
}

TEST_CASE("the restart hold names a few of the workers it waits for",
          "[core][scheduler][recovery]") {
  fixture before;
  auto id = before.submit("true");
  fixture after;
  after.core.restore({before.task(id)}, id, after.now,
                     {"w1", "w2", "w3", "w4", "w5"});
  after.join("w2", 1);
  CHECK(after.core.reason_of(after.task(id)).rfind(
          "the master restarted: tasks queued before it wait until workers "
          "w1, w3, w4 and 1 more are back, or ",
          0)
        == 0);
}

TEST_CASE("after a crash, a connected worker that never comes back holds "
          "dispatching restart_hold at most",
          "[core][scheduler][recovery]") {
  fixture before;
  before.join("a", 1);
  auto id = before.submit("true");
  auto as_journaled = before.task(id);
  as_journaled.status = task_status::queued;
  as_journaled.attempts.clear();
  as_journaled.worker_id.clear();
  as_journaled.started_at = 0;
  fixture after;
  after.core.restore({as_journaled}, id, after.now, {"a", "b"});
  auto p = after.join("other", 1);
  CHECK(p.assignments.empty());
  after.join("b", 1);
  // A master stopped now would keep waiting for "a" (and so would its
  // successor).
  CHECK(after.core.awaited_after_restart() == std::vector<std::string>{"a"});
  auto end = after.now + test_settings().restart_hold;
  std::vector<std::string> not_back;
  CHECK(hold_ends_at(after, end, &not_back) == std::vector<task_id>{id});
  // The journal forgets "a", so the next restart does not wait for it.
  CHECK(not_back == std::vector<std::string>{"a"});
  CHECK(after.core.awaited_after_restart().empty());
}

TEST_CASE_METHOD(fixture, "a result from a worker that does not hold the "
                          "attempt is ignored",
                 "[core][scheduler]") {
  join("a", 1);
  join("b", 1);
  auto id = submit("work");
  auto holder = task(id).worker_id;
  auto other = holder == "a" ? std::string{"b"} : std::string{"a"};
  report(other, result(task(id).current_ref(), attempt_outcome::succeeded));
  CHECK(task(id).status == task_status::running);
  report(holder, result(task(id).current_ref(), attempt_outcome::succeeded));
  CHECK(task(id).status == task_status::succeeded);
}

namespace {

/// Reports `ref` as a success that ran `run_ms`.
attempt_result quick(fixture& f, attempt_ref ref, time_ms run_ms) {
  auto r = f.result(ref, attempt_outcome::succeeded);
  r.started_at = f.now - run_ms;
  return r;
}

} // namespace

TEST_CASE_METHOD(fixture, "workers of fast tasks are fed ahead of their slots",
                 "[core][scheduler][prefetch]") {
  join("w1", 2);
  for (int i = 0; i < 10; ++i)
    submit("true");
  // No history yet: only the free slots.
  CHECK(core.stats().running == 2);
  // A 1 ms result: 5 ms of budget would allow five more per slot, but a
  // worker holds at most three more per slot.
  auto p = report("w1", quick(*this, {1, 1}, 1));
  CHECK(assigned_ids(p) == std::vector<task_id>{3, 4, 5, 6, 7, 8, 9});
  CHECK(core.cluster().find("w1")->running.size() == 8);
  CHECK(core.cluster().find("w1")->prefetch == 6);
  // The slots in use never count the prefetched attempts.
  CHECK(core.stats().slots_used == 2);
  CHECK(core.stats().slots_total == 2);
  CHECK(core.cluster().free_slots() == 0);
  CHECK(core.cluster().room() == 0);
  // Slower tasks shrink the lookahead: at about 3 ms each, one per slot fits
  // the 5 ms budget.
  for (task_id id : {2, 3, 4}) {
    p = report("w1", quick(*this, {id, 1}, 6));
    if (core.cluster().find("w1")->prefetch < 3)
      break;
  }
  CHECK(core.cluster().find("w1")->prefetch == 2);
}

TEST_CASE_METHOD(fixture, "slow tasks are never prefetched",
                 "[core][scheduler][prefetch]") {
  join("w1", 2);
  for (int i = 0; i < 6; ++i)
    submit("true");
  // 11 ms: even two slots side by side would keep a later task waiting
  // longer than the 5 ms budget.
  auto p = report("w1", quick(*this, {1, 1}, 11));
  CHECK(assigned_ids(p) == std::vector<task_id>{3});
  CHECK(core.cluster().find("w1")->prefetch == 0);
  CHECK(core.cluster().find("w1")->running.size() == 2);
  // Fast ones after a very slow one win prefetching back only gradually.
  p = report("w1", quick(*this, {2, 1}, 60'000));
  for (task_id id : {3, 4})
    report("w1", quick(*this, {id, 1}, 1));
  CHECK(core.cluster().find("w1")->prefetch == 0);
}

TEST_CASE_METHOD(fixture, "a free slot anywhere wins over prefetching",
                 "[core][scheduler][prefetch]") {
  join("fast", 1);
  submit("true");
  // 3 ms tasks: 5 ms of budget allows one ahead.
  report("fast", quick(*this, {1, 1}, 3));
  REQUIRE(core.cluster().find("fast")->prefetch == 1);
  // "fast" is busy but has prefetch room ...
  auto busy = submit("true");
  CHECK(task(busy).worker_id == "fast");
  // ... and "idle" joins with a free slot: that slot wins.
  join("idle", 1);
  auto next = submit("true");
  CHECK(task(next).worker_id == "idle");
  // Only prefetch room is left, on "fast".
  auto ahead = submit("true");
  CHECK(task(ahead).worker_id == "fast");
  auto waits = submit("true");
  CHECK(task(waits).status == task_status::queued);
  CHECK(core.reason_of(task(waits)) == "waiting for a free slot");
}

TEST_CASE_METHOD(fixture, "prefetched attempts carry a start deadline and "
                          "their queue rank",
                 "[core][scheduler][prefetch]") {
  join("w1", 1);
  submit("true");
  auto p = report("w1", quick(*this, {1, 1}, 1));
  CHECK(p.assignments.empty());
  submit("true"); // takes the slot
  auto ahead = submit("true", priority::high);
  REQUIRE(last.assignments.size() == 1);
  CHECK(last.assignments[0].second.ref.task == ahead);
  CHECK(last.assignments[0].second.start_within_ms
        == static_cast<uint32_t>(core.prefetch_wait_limit()));
  CHECK(last.assignments[0].second.rank
        == now - static_cast<time_ms>(priority::high) * 60'000);
  CHECK(core.prefetch_wait_limit() == 50);
}

TEST_CASE_METHOD(fixture, "an attempt handed back unstarted keeps its place "
                          "and stops prefetching to that worker",
                 "[core][scheduler][prefetch]") {
  join("w1", 1);
  submit("true");
  report("w1", quick(*this, {1, 1}, 3));
  auto running = submit("true");
  now += 10;
  auto prefetched = submit("true");
  REQUIRE(task(prefetched).status == task_status::running);
  now += 10;
  auto later = submit("true");
  REQUIRE(task(later).status == task_status::queued);
  now += 100;
  attempt_result back;
  back.ref = {prefetched, 1};
  back.outcome = attempt_outcome::returned;
  back.finished_at = now;
  back.reason = "not started within 50 ms on this worker";
  auto p = report("w1", back);
  CHECK(core.cluster().find("w1")->prefetch == 0);
  // Back in the queue ahead of the task submitted after it, and nothing
  // more goes to the busy worker.
  CHECK(task(prefetched).status == task_status::queued);
  CHECK(task(prefetched).attempts.size() == 1);
  CHECK(p.assignments.empty());
  p = report("w1", quick(*this, {running, 1}, 1));
  CHECK(assigned_ids(p) == std::vector<task_id>{prefetched});
}

TEST_CASE_METHOD(fixture, "a worker that registers again learns its pace "
                          "afresh",
                 "[core][scheduler][prefetch]") {
  join("w1", 4);
  submit("true");
  report("w1", quick(*this, {1, 1}, 1));
  REQUIRE(core.cluster().find("w1")->prefetch == 12);
  core.worker_lost("w1", "test", now, last);
  join("w1", 1);
  CHECK(core.cluster().find("w1")->prefetch == 0);
  for (int i = 0; i < 4; ++i)
    submit("true");
  CHECK(core.cluster().find("w1")->running.size() == 1);
}

TEST_CASE_METHOD(fixture, "a lost worker's prefetched attempts are requeued "
                          "with its running ones",
                 "[core][scheduler][prefetch]") {
  join("w1", 1);
  submit("true");
  report("w1", quick(*this, {1, 1}, 1));
  auto a = submit("true");
  auto b = submit("true");
  REQUIRE(core.cluster().find("w1")->running.size() == 2);
  join("w2", 1);
  plan p;
  core.worker_lost("w1", "connection lost", now, p);
  // Both lost their first attempt; one of them already has a second.
  CHECK(task(a).attempts.size() + task(b).attempts.size() == 3);
  for (auto id : {a, b}) {
    CHECK(task(id).attempts[0].outcome == attempt_outcome::lost);
    CHECK(task(id).status != task_status::failed);
  }
  // One runs on w2, the other waits for it.
  CHECK(core.cluster().find("w2")->running.size() == 1);
  CHECK(core.stats().queued == 1);
}

TEST_CASE("a prefetch budget of zero feeds only free slots",
          "[core][scheduler][prefetch]") {
  auto settings = test_settings();
  settings.prefetch_budget = 0;
  scheduler_core core{settings, [] { return 0.5; }};
  plan p;
  worker_info w;
  w.id = "w1";
  w.slots = 2;
  core.register_worker(w, {}, {}, 1000, p);
  auto admitted = core.admit(std::vector<task_spec>(6, task_spec{}), 1000);
  core.activate(admitted.ids, 1000, p);
  attempt_result r;
  r.ref = {admitted.ids[0], 1};
  r.outcome = attempt_outcome::succeeded;
  r.started_at = 1000;
  r.finished_at = 1000;
  plan after;
  core.report("w1", {r}, 1000, after);
  CHECK(after.assignments.size() == 1);
  CHECK(core.cluster().find("w1")->running.size() == 2);
}

TEST_CASE_METHOD(fixture, "a task handed back unstarted waits for a free "
                          "slot instead of hopping to the next busy worker",
                 "[core][scheduler][prefetch]") {
  join("w1", 1);
  join("w2", 1);
  auto a = submit("true");
  auto b = submit("true");
  report(task(a).worker_id, quick(*this, {a, 1}, 3));
  report(task(b).worker_id, quick(*this, {b, 1}, 3));
  REQUIRE(core.cluster().find("w1")->prefetch == 1);
  REQUIRE(core.cluster().find("w2")->prefetch == 1);
  auto long1 = submit("sleep 60");
  auto long2 = submit("sleep 60");
  REQUIRE(task(long1).worker_id != task(long2).worker_id);
  auto t = submit("true");
  REQUIRE(task(t).status == task_status::running);
  auto holder = task(t).worker_id;
  auto other = holder == "w1" ? std::string{"w2"} : std::string{"w1"};
  attempt_result back;
  back.ref = {t, 1};
  back.outcome = attempt_outcome::returned;
  back.finished_at = now;
  report(holder, back);
  // It never ran: no start time. "other" still has prefetch room but no
  // free slot, so the task waits in the queue.
  CHECK(task(t).attempts[0].started_at == 0);
  CHECK(task(t).status == task_status::queued);
  CHECK(core.cluster().find(other)->running.size() == 1);
  CHECK(core.cluster().find(holder)->prefetch == 0);
  auto on_other = task(long1).worker_id == other ? long1 : long2;
  auto p = report(other, quick(*this, {on_other, 1}, 1));
  CHECK(assigned_ids(p) == std::vector<task_id>{t});
  CHECK(task(t).worker_id == other);
}

namespace {

/// The default 100 ms budget.
scheduler_settings default_budget() {
  auto s = test_settings();
  s.prefetch_budget = scheduler_settings{}.prefetch_budget;
  return s;
}

/// Two 1-slot workers that have each run a 10 ms task, so both take three
/// prefetched attempts beyond their slot; tasks of 10 ms are worth asking
/// back for an idle slot.
struct two_fast_workers : fixture {
  two_fast_workers() : fixture{default_budget()} {
    join("w1", 1, {{"gpu", "yes"}});
    join("w2", 1);
    auto a = submit("true");
    auto b = submit("true");
    report(task(a).worker_id, quick(*this, {a, 1}, 10));
    report(task(b).worker_id, quick(*this, {b, 1}, 10));
    REQUIRE(core.cluster().find("w1")->prefetch == 3);
    REQUIRE(core.cluster().find("w2")->prefetch == 3);
  }

  std::vector<task_id> on(const std::string& worker,
                          const std::vector<task_id>& ids) {
    std::vector<task_id> mine;
    for (auto id : ids)
      if (task(id).worker_id == worker)
        mine.push_back(id);
    return mine;
  }

  /// Six tasks: each worker runs one and holds two, and nothing is left in
  /// the queue. Returns them by worker.
  std::pair<std::vector<task_id>, std::vector<task_id>> six_tasks() {
    std::vector<task_id> ids;
    for (int i = 0; i < 6; ++i)
      ids.push_back(submit("true"));
    return {on("w1", ids), on("w2", ids)};
  }
};

} // namespace

TEST_CASE_METHOD(two_fast_workers,
                 "a slot left idle at the end of the queue takes back an "
                 "attempt another worker holds unstarted",
                 "[core][scheduler][prefetch][reclaim]") {
  auto [w1, w2] = six_tasks();
  REQUIRE(w1.size() == 3);
  REQUIRE(w2.size() == 3);
  CHECK(core.stats().queued == 0);
  // While w2 still has work, nothing is asked back.
  for (size_t i = 0; i < 2; ++i)
    CHECK(report("w2", quick(*this, {w2[i], 1}, 10)).reclaims.empty());
  // Its last one done, w2's slot idles while w1 holds two unstarted: w1 is
  // asked for the one it would start last.
  auto p = report("w2", quick(*this, {w2[2], 1}, 10));
  REQUIRE(p.reclaims.size() == 1);
  CHECK(p.reclaims[0] == std::pair<std::string, attempt_ref>{
                           "w1", attempt_ref{w1[2], 1}});
  // One request per idle slot: asking again waits for its answer.
  plan again;
  core.tick(now, again);
  CHECK(again.reclaims.empty());
  // w1 hands it back unstarted: it runs on w2 at once, and w1 keeps its
  // prefetch (being asked is no sign its tasks run long).
  attempt_result back;
  back.ref = {w1[2], 1};
  back.outcome = attempt_outcome::returned;
  back.finished_at = now;
  back.reason = "handed back for an idle slot elsewhere";
  p = report("w1", back);
  REQUIRE(assigned_ids(p) == std::vector<task_id>{w1[2]});
  CHECK(task(w1[2]).worker_id == "w2");
  // Its second attempt, and its wait is counted once.
  CHECK(p.assignments[0].second.ref.attempt == 2);
  REQUIRE(!p.task_changes.empty());
  CHECK(p.task_changes.back().to == task_status::running);
  CHECK_FALSE(p.task_changes.back().new_wait);
  CHECK(task(w1[2]).attempts.size() == 2);
  CHECK(task(w1[2]).attempts[0].started_at == 0);
  CHECK(core.cluster().find("w1")->prefetch == 3);
  CHECK(core.cluster().find("w1")->reclaiming.empty());
  // w2 is busy again; w1 still holds one unstarted, and nothing idles.
  CHECK(p.reclaims.empty());
}

TEST_CASE_METHOD(two_fast_workers,
                 "only attempts handed over beyond the slots are asked back, "
                 "not one running in a slot",
                 "[core][scheduler][prefetch][reclaim]") {
  // A LOW task in a slot has the highest rank of all, but it runs.
  auto low = submit("sleep 600", priority::low);
  auto holder = task(low).worker_id;
  auto other = holder == "w1" ? std::string{"w2"} : std::string{"w1"};
  std::vector<task_id> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(submit("true"));
  auto held = on(holder, ids);
  REQUIRE(held.size() == 2);
  plan p;
  for (auto id : on(other, ids))
    p = report(other, quick(*this, {id, 1}, 10));
  REQUIRE(p.reclaims.size() == 1);
  CHECK(p.reclaims[0].first == holder);
  CHECK(p.reclaims[0].second.task != low);
  CHECK(p.reclaims[0].second == attempt_ref{held[1], 1});
}

TEST_CASE_METHOD(two_fast_workers,
                 "an attempt asked back after it started ends as usual and "
                 "the request with it",
                 "[core][scheduler][prefetch][reclaim]") {
  auto [w1, w2] = six_tasks();
  for (auto id : w2)
    report("w2", quick(*this, {id, 1}, 10));
  REQUIRE(core.cluster().find("w1")->reclaiming.size() == 1);
  // Too late: w1 had started all three, and reports them done.
  report("w1", quick(*this, {w1[0], 1}, 10));
  report("w1", quick(*this, {w1[1], 1}, 10));
  auto p = report("w1", quick(*this, {w1[2], 1}, 10));
  CHECK(task(w1[2]).status == task_status::succeeded);
  CHECK(task(w1[2]).attempts.size() == 1);
  CHECK(core.cluster().find("w1")->reclaiming.empty());
  CHECK(core.cluster().find("w1")->running.empty());
  CHECK(p.reclaims.empty());
}

TEST_CASE_METHOD(two_fast_workers,
                 "an idle slot takes back only what its labels allow",
                 "[core][scheduler][prefetch][reclaim]") {
  std::vector<task_id> ids;
  for (int i = 0; i < 3; ++i) {
    auto s = spec("true");
    s.labels = {{"gpu", "yes"}};
    ids.push_back(submit(s));
  }
  // All three on w1 (one running, two held); w2 idles but cannot run them.
  CHECK(on("w1", ids).size() == 3);
  CHECK(core.cluster().find("w2")->free_slots() == 1);
  CHECK(last.reclaims.empty());
  CHECK(core.cluster().find("w1")->reclaiming.empty());
}

TEST_CASE("each idle slot has one request out at a time, and only for "
          "tasks its labels allow",
          "[core][scheduler][prefetch][reclaim]") {
  fixture f{default_budget()};
  auto gpu = [&] {
    auto s = f.spec("true");
    s.labels = {{"gpu", "yes"}};
    return f.submit(s);
  };
  f.join("w1", 1, {{"gpu", "yes"}});
  auto warm = gpu();
  f.report("w1", quick(f, {warm, 1}, 10));
  REQUIRE(f.core.cluster().find("w1")->prefetch == 3);
  std::vector<task_id> ids{gpu(), gpu(), gpu()};
  REQUIRE(f.core.cluster().find("w1")->running.size() == 3);
  // w2 can run them and idles: it asks for the last one.
  auto p = f.join("w2", 1, {{"gpu", "yes"}});
  REQUIRE(p.reclaims.size() == 1);
  CHECK(p.reclaims[0].second == attempt_ref{ids[2], 1});
  // w3 idles too, but cannot run them; w2's request is still out. Nothing
  // more is asked, now or at the next tick.
  p = f.join("w3", 1);
  CHECK(p.reclaims.empty());
  plan tick;
  f.core.tick(f.now, tick);
  CHECK(tick.reclaims.empty());
  CHECK(f.core.cluster().find("w1")->reclaiming.size() == 1);
  // The holder is lost with the request out: nothing stale is left, and its
  // tasks run elsewhere.
  plan lost;
  f.core.worker_lost("w1", "connection lost", f.now, lost);
  CHECK(f.core.cluster().find("w1")->reclaiming.empty());
  CHECK(f.core.cluster().find("w1")->prefetched.empty());
  CHECK(f.core.cluster().find("w2")->running.size() == 1);
}

TEST_CASE("attempts of tasks of a few milliseconds are not asked back",
          "[core][scheduler][prefetch][reclaim]") {
  fixture f{default_budget()};
  f.join("w1", 1);
  f.join("w2", 1);
  auto a = f.submit("true");
  auto b = f.submit("true");
  f.report(f.task(a).worker_id, quick(f, {a, 1}, 1));
  f.report(f.task(b).worker_id, quick(f, {b, 1}, 1));
  std::vector<task_id> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(f.submit("true"));
  plan p;
  for (auto id : ids)
    if (f.task(id).worker_id == "w2")
      p = f.report("w2", quick(f, {id, 1}, 1));
  // w2 idles while w1 holds two, but w1 starts them within a millisecond or
  // two: cheaper than a hand-back.
  CHECK(f.core.cluster().find("w2")->running.empty());
  CHECK(f.core.cluster().find("w1")->running.size() == 3);
  CHECK(p.reclaims.empty());
}

TEST_CASE_METHOD(fixture, "a task whose worker is lost keeps its place in "
                          "the queue",
                 "[core][scheduler]") {
  join("w1", 1);
  auto first = submit("sleep 60");
  now += 1000;
  auto later = submit("true");
  REQUIRE(task(later).status == task_status::queued);
  plan lost;
  core.worker_lost("w1", "connection lost", now, lost);
  REQUIRE(task(first).status == task_status::queued);
  // Ahead of the task submitted after it; its wait goes on from when it was
  // first queued, and was counted then.
  auto p = join("w2", 1);
  REQUIRE(assigned_ids(p) == std::vector<task_id>{first});
  CHECK(p.task_changes.back().queue_wait == 1000);
  CHECK_FALSE(p.task_changes.back().new_wait);
  CHECK(task(later).status == task_status::queued);
}

TEST_CASE_METHOD(fixture,
                 "a stopping master dispatches nothing more but still takes "
                 "results",
                 "[core][scheduler][shutdown]") {
  join("w1", 1);
  auto running = submit("sleep 1");
  auto waiting = submit("true");
  CHECK(task(running).status == task_status::running);
  core.stop_dispatching();
  // The slot frees: the queued task stays queued for the next start.
  auto p = report("w1", result({running, 1}, attempt_outcome::succeeded));
  CHECK(task(running).status == task_status::succeeded);
  REQUIRE(p.acks.size() == 1);
  CHECK(p.assignments.empty());
  CHECK(task(waiting).status == task_status::queued);
  // Nor does a new worker or a tick start anything.
  CHECK(join("w2", 4).assignments.empty());
  plan tick;
  now += 1000;
  core.tick(now, tick);
  CHECK(tick.assignments.empty());
  CHECK(task(waiting).status == task_status::queued);
}
