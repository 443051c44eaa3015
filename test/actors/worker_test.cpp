#include <catch2/catch.hpp>

#include <future>
#include <map>

#include "test/support/in_process_master.hpp"

using namespace taskmaster;
using namespace taskmaster::test;
using namespace std::chrono_literals;

namespace {

/// Worker "w" with one slot, for the master the test plays.
template <class Master>
worker_node_actor spawn_worker(caf::actor_system& sys, const Master& master) {
  worker_options options;
  options.info.id = "w";
  options.info.slots = 1;
  options.info.incarnation = 9;
  return spawn_worker_node(sys, options, caf::actor_cast<cluster_actor>(master));
}

/// A master played by the test: it accepts the first registration, hands
/// out one task, answers the next heartbeat "who are you?", and holds the
/// second registration's answer until told to release it.
using fake_master_actor = cluster_actor::extend<caf::reacts_to<caf::ok_atom>>;

struct fake_master_state {
  int registrations = 0;
  bool asked_again = false;
  caf::typed_response_promise<register_reply> held;
  worker_actor worker;
};

fake_master_actor::behavior_type
fake_master(fake_master_actor::stateful_pointer<fake_master_state> self,
            caf::actor observer) {
  return {
    [=](register_atom, register_request& req,
        worker_actor& w) -> caf::result<register_reply> {
      auto& st = self->state;
      st.worker = w;
      if (++st.registrations == 1) {
        core::assignment work;
        work.ref = {1, 1, 1};
        work.command = "sleep 1; echo finished-while-registering";
        self->send(w, assign_atom::value, std::vector<core::assignment>{work},
                   std::vector<core::attempt_ref>{});
        return register_reply{true, {}, 50};
      }
      caf::anon_send(observer, register_atom::value, std::move(req));
      st.held = self->make_response_promise<register_reply>();
      return st.held;
    },
    [=](heartbeat_atom, const std::string&, uint64_t, double) -> bool {
      auto& st = self->state;
      if (st.registrations == 1 && !st.asked_again) {
        st.asked_again = true;
        return false;
      }
      return true;
    },
    [=](report_atom, const std::string&,
        std::vector<core::attempt_result>& results) {
      caf::anon_send(observer, report_atom::value, std::move(results));
    },
    [=](drain_atom, const std::string&) {},
    [=](leave_atom, const std::string&) { return true; },
    [=](caf::ok_atom) {
      self->state.held.deliver(register_reply{true, {}, 50});
    },
  };
}

/// Stops the actors it is given when the test ends, passed or not: a failed
/// REQUIRE skips the test's last lines, and the actor system's destructor
/// would wait for the actors for ever (the test run hung until CTest's
/// timeout).
class stop_at_end {
public:
  template <class... Handles>
  explicit stop_at_end(const Handles&... actors)
    : actors_{caf::actor_cast<caf::actor>(actors)...} {
  }
  ~stop_at_end() {
    for (auto& a : actors_)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
  stop_at_end(const stop_at_end&) = delete;
  stop_at_end& operator=(const stop_at_end&) = delete;

private:
  std::vector<caf::actor> actors_;
};

} // namespace

TEST_CASE("a result that ends while the worker registers again is reported "
          "once the registration is accepted",
          "[actors][worker]") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor test{sys};
  auto master = sys.spawn(fake_master, caf::actor{test});
  auto worker = spawn_worker(sys, master);
  stop_at_end stop{worker, master};
  // The second registration: the attempt still runs, no result yet.
  test->receive(
    [](register_atom, const register_request& req) {
      CHECK(req.running == std::vector<core::attempt_ref>{{1, 1, 1}});
      CHECK(req.results.empty());
    },
    caf::after(10s) >> [] { FAIL("the worker did not register again"); });
  // Let the task end while the registration's answer is held back.
  std::this_thread::sleep_for(1500ms);
  caf::anon_send(master, caf::ok_atom::value);
  bool reported = false;
  test->receive(
    [&](report_atom, const std::vector<core::attempt_result>& results) {
      REQUIRE(results.size() == 1);
      CHECK(results[0].ref == core::attempt_ref{1, 1, 1});
      CHECK(results[0].outcome == core::attempt_outcome::succeeded);
      CHECK(results[0].stdout_tail == "finished-while-registering\n");
      reported = true;
    },
    caf::after(5s) >> [] {});
  CHECK(reported);
}

namespace {

/// A master played by the test: it accepts the registration, hands out
/// `batch` at once and passes every report on to the observer.
fake_master_actor::behavior_type
batch_master(fake_master_actor::pointer self, caf::actor observer,
             std::vector<core::assignment> batch) {
  return {
    [=](register_atom, register_request&, worker_actor& w) {
      self->send(w, assign_atom::value, batch,
                 std::vector<core::attempt_ref>{});
      return register_reply{true, {}, 50};
    },
    [=](heartbeat_atom, const std::string&, uint64_t, double) { return true; },
    [=](report_atom, const std::string&,
        std::vector<core::attempt_result>& results) {
      for (auto& r : results)
        caf::anon_send(observer, report_atom::value, std::move(r));
    },
    [=](drain_atom, const std::string&) {},
    [=](leave_atom, const std::string&) { return true; },
    [=](caf::ok_atom) {},
  };
}

core::assignment job(core::task_id id, std::string command) {
  core::assignment work;
  work.ref = {id, 1, 1};
  work.command = std::move(command);
  return work;
}

using results_by_task = std::map<core::task_id, core::attempt_result>;

/// Waits up to `limit` for one result a batch_master passed on.
bool collect_result(caf::scoped_actor& test, results_by_task& results,
                    std::chrono::milliseconds limit) {
  bool got = false;
  test->receive(
    [&](report_atom, const core::attempt_result& r) {
      results[r.ref.task] = r;
      got = true;
    },
    caf::after(limit) >> [] {});
  return got;
}

} // namespace

TEST_CASE("a worker that reaches its master by address runs on the network "
          "thread and does the same job",
          "[actors][worker]") {
  // What a worker process spawns (no master in its process): the worker and
  // executor as brokers (see spawn_worker_node). The master here shares the
  // actor system, so CAF hands the worker the actor itself; the worker's
  // own side is the same as across nodes.
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor test{sys};
  auto master = sys.spawn(
    batch_master, caf::actor{test},
    std::vector<core::assignment>{job(1, "echo over-the-network-thread"),
                                  job(2, "echo oops >&2; exit 3")});
  auto port = sys.middleman().publish(master, 0, "127.0.0.1");
  REQUIRE(port);
  worker_options options;
  options.info.id = "by-address";
  options.info.slots = 1;
  options.info.incarnation = 7;
  options.master_host = "127.0.0.1";
  options.master_port = *port;
  auto worker = spawn_worker_node(sys, options, cluster_actor{});
  stop_at_end stop{worker, master};
  results_by_task results;
  while (results.size() < 2)
    REQUIRE(collect_result(test, results, 10s));
  CHECK(results[1].outcome == core::attempt_outcome::succeeded);
  CHECK(results[1].stdout_tail == "over-the-network-thread\n");
  CHECK(results[2].outcome == core::attempt_outcome::failed);
  CHECK(results[2].exit_code == 3);
  CHECK(results[2].stderr_tail == "oops\n");
  // It stops as the worker of a process does.
  test->request(worker, 10s, shutdown_atom::value, uint32_t{1000})
    .receive([](bool stopped) { CHECK(stopped); },
             [](caf::error& err) { FAIL(caf::to_string(err)); });
}

TEST_CASE("a worker holds prefetched attempts up to a bound and hands them "
          "back unstarted when it shuts down",
          "[actors][worker]") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor test{sys};
  // One slot: the first runs, the next three wait in the worker, the fifth
  // is beyond what a one-slot worker may hold.
  auto master = sys.spawn(
    batch_master, caf::actor{test},
    std::vector<core::assignment>{job(1, "sleep 0.5; echo ran"),
                                  job(2, "echo never"), job(3, "echo never"),
                                  job(4, "echo never"), job(5, "echo never")});
  auto worker = spawn_worker(sys, master);
  stop_at_end stop{worker, master};
  results_by_task results;
  auto collect = [&](std::chrono::milliseconds limit) {
    return collect_result(test, results, limit);
  };
  REQUIRE(collect(5s));
  REQUIRE(results.count(5) == 1);
  CHECK(results[5].outcome == core::attempt_outcome::returned);
  CHECK(results[5].reason == "the worker holds all it can");
  caf::anon_send(worker, shutdown_atom::value, uint32_t{5000});
  while ((results.count(2) == 0 || results.count(3) == 0
          || results.count(4) == 0)
         && collect(5s)) {
  }
  // Handed back at once, before the running attempt's half second is up.
  CHECK(results.count(1) == 0);
  for (core::task_id waited : {2, 3, 4}) {
    REQUIRE(results.count(waited) == 1);
    CHECK(results[waited].outcome == core::attempt_outcome::returned);
    CHECK(results[waited].reason == "the worker shut down before it started");
    CHECK(results[waited].started_at == 0);
  }
  // Handed back at once: the running attempt (half a second) reports later.
  while (results.count(1) == 0 && collect(5s)) {
  }
  REQUIRE(results.count(1) == 1);
  CHECK(results[1].outcome == core::attempt_outcome::succeeded);
  CHECK(results[1].stdout_tail == "ran\n");
}

namespace {

/// A master played by the test that forgets a stopping worker: it takes the
/// report of the worker's one task without acknowledging it (as when its
/// journal cannot commit, or after marking the worker LOST) and then answers
/// heartbeats "who are you?". The second registration goes to the observer
/// and its results are acknowledged.
struct forgetful_master_state {
  int registrations = 0;
  bool reported = false;
};

fake_master_actor::behavior_type
forgetful_master(fake_master_actor::stateful_pointer<forgetful_master_state> self,
                 caf::actor observer) {
  return {
    [=](register_atom, register_request& req,
        worker_actor& w) -> register_reply {
      auto& st = self->state;
      if (++st.registrations == 1) {
        self->send(w, assign_atom::value,
                   std::vector<core::assignment>{job(1, "sleep 0.3; echo kept")},
                   std::vector<core::attempt_ref>{});
      } else {
        std::vector<core::attempt_ref> acks;
        for (const auto& r : req.results)
          acks.push_back(r.ref);
        self->send(w, ack_atom::value, std::move(acks));
        caf::anon_send(observer, register_atom::value, std::move(req));
      }
      return register_reply{true, {}, 50};
    },
    [=](heartbeat_atom, const std::string&, uint64_t, double) {
      auto& st = self->state;
      return !(st.reported && st.registrations == 1);
    },
    [=](report_atom, const std::string&, std::vector<core::attempt_result>&) {
      self->state.reported = true;
    },
    [=](drain_atom, const std::string&) {},
    [=](leave_atom, const std::string& id) {
      caf::anon_send(observer, leave_atom::value, id);
      return true;
    },
    [=](caf::ok_atom) {},
  };
}

} // namespace

TEST_CASE("a stopping worker that the master forgot registers again to hand "
          "over its result before it leaves",
          "[actors][worker][shutdown]") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor test{sys};
  auto master = sys.spawn(forgetful_master, caf::actor{test});
  auto worker = spawn_worker(sys, master);
  stop_at_end stop{worker, master};
  std::this_thread::sleep_for(100ms);
  // Asked as the daemon asks (a request: the answer comes once it has left).
  auto stopped = std::async(std::launch::async, [&] {
    caf::scoped_actor asker{sys};
    bool answer = false;
    asker->request(worker, 20s, shutdown_atom::value, uint32_t{5000})
      .receive([&](bool ok) { answer = ok; }, [](caf::error&) {});
    return answer;
  });
  // It used to leave at once with the unacknowledged result.
  bool registered_again = false;
  test->receive(
    [&](register_atom, const register_request& req) {
      REQUIRE(req.results.size() == 1);
      CHECK(req.results[0].outcome == core::attempt_outcome::succeeded);
      CHECK(req.results[0].stdout_tail == "kept\n");
      registered_again = true;
    },
    caf::after(10s) >> [] {});
  CHECK(registered_again);
  bool left = false;
  test->receive([&](leave_atom, const std::string& id) { left = id == "w"; },
                caf::after(10s) >> [] {});
  CHECK(left);
  REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
  CHECK(stopped.get());
}
