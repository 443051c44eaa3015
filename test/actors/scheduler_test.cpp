#include <catch2/catch.hpp>


#include "test/support/file_size_cap.hpp"
#include "test/support/in_process_master.hpp"

using namespace taskmaster;
using namespace taskmaster::test;
using namespace std::chrono_literals;

namespace {

/// A worker played by the test: a scoped actor that speaks the protocol.
struct fake_worker {
  caf::scoped_actor self;
  cluster_actor master;
  core::worker_info info;

  fake_worker(in_process_master& m, const std::string& id, uint32_t slots,
              uint64_t incarnation = 1)
    : self(m.system()), master(m.endpoint()) {
    info.id = id;
    info.host = "test";
    info.slots = slots;
    info.incarnation = incarnation;
  }

  register_reply join(std::vector<core::attempt_ref> running = {},
                      std::vector<core::attempt_result> results = {}) {
    register_reply reply;
    register_request req{info, std::move(running), std::move(results)};
    self
      ->request(master, 5s, register_atom::value, std::move(req),
                caf::actor_cast<worker_actor>(self))
      .receive([&](register_reply& r) { reply = std::move(r); },
               [](caf::error& err) { FAIL(caf::to_string(err)); });
    return reply;
  }

  /// The acknowledgements that came with the last assignment.
  std::vector<core::attempt_ref> acks_with_assign;

  std::vector<core::assignment> expect_assign() {
    std::vector<core::assignment> got;
    self->receive(
      [&](assign_atom, std::vector<core::assignment>& a,
          std::vector<core::attempt_ref>& acks) {
        got = std::move(a);
        acks_with_assign = std::move(acks);
      },
      caf::after(5s) >> [] { FAIL("no assignment arrived"); });
    return got;
  }

  std::vector<core::attempt_ref> expect(caf::atom_value which) {
    std::vector<core::attempt_ref> got;
    self->receive(
      [&](ack_atom, std::vector<core::attempt_ref>& refs) {
        CHECK(which == ack_atom::value);
        got = std::move(refs);
      },
      [&](kill_atom, std::vector<core::attempt_ref>& refs) {
        CHECK(which == kill_atom::value);
        got = std::move(refs);
      },
      caf::after(5s) >> [] { FAIL("nothing arrived"); });
    return got;
  }

  void report(core::attempt_ref ref, core::attempt_outcome outcome) {
    core::attempt_result r;
    r.ref = ref;
    r.outcome = outcome;
    r.has_exit_code = true;
    r.exit_code = outcome == core::attempt_outcome::succeeded ? 0 : 1;
    self->send(master, report_atom::value, info.id,
               std::vector<core::attempt_result>{r});
  }
};

std::vector<core::task_id> submit(in_process_master& m,
                                  std::vector<std::string> commands) {
  caf::scoped_actor self{m.system()};
  std::vector<core::task_spec> specs;
  for (auto& c : commands) {
    core::task_spec s;
    s.command = c;
    specs.push_back(std::move(s));
  }
  std::vector<core::task_id> ids;
  self->request(m.scheduler(), 5s, submit_atom::value, std::move(specs))
    .receive(
      [&](submit_reply& r) {
        REQUIRE(r.status == submit_status::ok);
        for (auto& t : r.tasks)
          ids.push_back(t.id);
      },
      [](caf::error& err) { FAIL(caf::to_string(err)); });
  return ids;
}

core::task_record lookup(in_process_master& m, core::task_id id) {
  caf::scoped_actor self{m.system()};
  core::task_record task;
  self->request(m.scheduler(), 5s, lookup_atom::value, id, uint32_t{0})
    .receive([&](task_lookup& r) { task = std::move(r.task); },
             [](caf::error& err) { FAIL(caf::to_string(err)); });
  return task;
}

in_process_master::options no_worker() {
  return {};
}

} // namespace

TEST_CASE("a worker registers, runs what it is assigned and gets an ack once "
          "its result is journaled",
          "[actors][protocol]") {
  in_process_master m{no_worker()};
  fake_worker w{m, "fake", 1};
  CHECK(w.join().accepted);
  auto ids = submit(m, {"echo one", "echo two"});
  auto first = w.expect_assign();
  REQUIRE(first.size() == 1);
  CHECK(first[0].command == "echo one");
  CHECK(first[0].ref == core::attempt_ref{ids[0], 1, 1});
  w.report(first[0].ref, core::attempt_outcome::succeeded);
  CHECK(w.expect(ack_atom::value) == std::vector<core::attempt_ref>{first[0].ref});
  // The acknowledged result is on disk before the ack went out.
  m.journal().flush();
  CHECK(lookup(m, ids[0]).status == core::task_status::succeeded);
  auto second = w.expect_assign();
  REQUIRE(second.size() == 1);
  CHECK(second[0].ref.task == ids[1]);
}

TEST_CASE("under load an acknowledgement rides on the worker's next "
          "assignment",
          "[actors][protocol]") {
  auto opts = no_worker();
  // No acknowledgement goes out on its own during the test.
  opts.ack_delay = std::chrono::hours(1);
  in_process_master m{opts};
  fake_worker w{m, "fake", 1};
  CHECK(w.join().accepted);
  auto ids = submit(m, {"echo one", "echo two", "echo three"});
  auto first = w.expect_assign();
  REQUIRE(first.size() == 1);
  w.report(first[0].ref, core::attempt_outcome::succeeded);
  // The next task goes out at once, before the result is on disk: it cannot
  // carry that result's acknowledgement yet.
  auto second = w.expect_assign();
  REQUIRE(second.size() == 1);
  CHECK(w.acks_with_assign.empty());
  m.journal().flush();
  CHECK(lookup(m, ids[0]).status == core::task_status::succeeded);
  w.report(second[0].ref, core::attempt_outcome::succeeded);
  auto third = w.expect_assign();
  REQUIRE(third.size() == 1);
  CHECK(third[0].ref.task == ids[2]);
  CHECK(w.acks_with_assign == std::vector<core::attempt_ref>{first[0].ref});
}

TEST_CASE("a second process with a connected worker's id is refused",
          "[actors][protocol]") {
  in_process_master m{no_worker()};
  fake_worker a{m, "same", 1, 1};
  fake_worker b{m, "same", 1, 2};
  CHECK(a.join().accepted);
  auto reply = b.join();
  CHECK_FALSE(reply.accepted);
  CHECK(reply.message == "worker id 'same' is already connected from another "
                         "process");
}

TEST_CASE("a worker whose id or labels would not print as themselves is "
          "refused",
          "[actors][protocol]") {
  in_process_master m{no_worker()};
  fake_worker spaced{m, "a b", 1};
  auto reply = spaced.join();
  CHECK_FALSE(reply.accepted);
  CHECK(reply.message == "refused: its worker id holds a space");
  fake_worker escaping{m, "w1", 1};
  escaping.info.labels = {{"zone", "eu\x1b[31m"}};
  reply = escaping.join();
  CHECK_FALSE(reply.accepted);
  CHECK(reply.message
        == "refused: the value of label 'zone' holds a control character");
  fake_worker fine{m, "w1", 1};
  CHECK(fine.join().accepted);
}

TEST_CASE("a cancel reaches the worker as a kill", "[actors][protocol]") {
  in_process_master m{no_worker()};
  fake_worker w{m, "fake", 1};
  w.join();
  auto ids = submit(m, {"sleep 60"});
  auto work = w.expect_assign();
  caf::scoped_actor client{m.system()};
  client->request(m.scheduler(), 5s, cancel_atom::value, ids[0])
    .receive([](cancel_reply& r) { CHECK(r.result == cancel_result::cancelled); },
             [](caf::error& err) { FAIL(caf::to_string(err)); });
  CHECK(w.expect(kill_atom::value) == std::vector<core::attempt_ref>{work[0].ref});
}


TEST_CASE("with a journal that cannot write, a cancel and a submission are "
          "answered as not stored",
          "[actors][journal]") {
  in_process_master m{no_worker()};
  auto ids = submit(m, {"sleep 60"});
  m.journal().flush();
  // The journal's log file may not grow any more: its next commit fails.
  auto wal = m.dir() / "data/taskmaster.db-wal";
  caf::scoped_actor client{m.system()};
  auto cancel = [&] {
    auto result = cancel_result::cancelled;
    client->request(m.scheduler(), 5s, cancel_atom::value, ids[0])
      .receive([&](cancel_reply& r) { result = r.result; },
               [](caf::error& err) { FAIL(caf::to_string(err)); });
    return result;
  };
  SECTION("a cancel, and the same cancel again") {
    {
      file_size_cap cap{wal};
      CHECK(cancel() == cancel_result::journal_failed);
    }
    CHECK_FALSE(m.journal().failure().empty());
    // Asked again, it is not on disk any more than it was: not a success.
    CHECK(cancel() == cancel_result::journal_failed);
  }
  SECTION("a submission") {
    file_size_cap cap{wal};
    std::vector<core::task_spec> specs(1);
    specs[0].command = "true";
    client->request(m.scheduler(), 5s, submit_atom::value, std::move(specs))
      .receive(
        [](submit_reply& r) { CHECK(r.status == submit_status::journal_failed); },
        [](caf::error& err) { FAIL(caf::to_string(err)); });
    CHECK_FALSE(m.journal().failure().empty());
  }
}

TEST_CASE("when a worker's actor goes away its task is requeued for another",
          "[actors][protocol]") {
  in_process_master m{no_worker()};
  auto id = [&] {
    fake_worker doomed{m, "doomed", 1};
    doomed.join();
    auto ids = submit(m, {"work"});
    doomed.expect_assign();
    return ids[0];
  }(); // the scoped actor terminates here: the scheduler sees it down
  fake_worker rescuer{m, "rescuer", 1};
  rescuer.join();
  auto work = rescuer.expect_assign();
  REQUIRE(work.size() == 1);
  CHECK(work[0].ref == core::attempt_ref{id, 2, 1});
  auto task = lookup(m, id);
  REQUIRE(task.attempts.size() == 2);
  CHECK(task.attempts[0].outcome == core::attempt_outcome::lost);
}

TEST_CASE("a worker that comes back with an unknown attempt is told to kill "
          "it, and its held result completes a current one",
          "[actors][protocol]") {
  in_process_master m{no_worker()};
  auto ids = submit(m, {"echo kept"});
  fake_worker w{m, "w", 2};
  core::attempt_result held;
  held.ref = {ids[0], 1};
  // Not current: the task has no attempt yet, so a held result is stale.
  w.join({core::attempt_ref{999, 1}}, {held});
  auto kills = w.expect(kill_atom::value);
  CHECK(kills == std::vector<core::attempt_ref>{core::attempt_ref{999, 1}});
}

TEST_CASE("the local worker runs real processes end to end",
          "[actors][worker]") {
  in_process_master::options o;
  o.worker_slots = 2;
  in_process_master m{o};
  auto ids = submit(m, {"echo via-actors", "exit 4"});
  caf::scoped_actor self{m.system()};
  for (auto id : ids)
    self->request(m.scheduler(), 10s, lookup_atom::value, id, uint32_t{5000})
      .receive(
        [&](task_lookup& r) {
          REQUIRE(r.found);
          if (id == ids[0]) {
            CHECK(r.task.status == core::task_status::succeeded);
            CHECK(r.task.stdout_tail == "via-actors\n");
          } else {
            CHECK(r.task.status == core::task_status::failed);
            CHECK(r.task.exit_code == 4);
          }
        },
        [](caf::error& err) { FAIL(caf::to_string(err)); });
}
