#include <catch2/catch.hpp>

#include "test/support/in_process_master.hpp"

using namespace taskmaster;
using namespace taskmaster::test;
using namespace std::chrono_literals;

namespace {

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

} // namespace

TEST_CASE("a result that ends while the worker registers again is reported "
          "once the registration is accepted",
          "[actors][worker]") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor test{sys};
  auto master = sys.spawn(fake_master, caf::actor{test});
  worker_options options;
  options.info.id = "w";
  options.info.slots = 1;
  options.info.incarnation = 9;
  auto worker = sys.spawn(worker_node, options,
                          caf::actor_cast<cluster_actor>(master));
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
  caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(master, caf::exit_reason::user_shutdown);
}
