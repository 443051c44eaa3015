#include "actors/worker.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <type_traits>

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include "actors/log.hpp"

namespace taskmaster {

namespace {

// The helpers below take either implementation of the worker's actor (see
// spawn_worker_node): `Self` is its stateful actor type.

constexpr auto request_timeout = std::chrono::seconds(10);

/// How long a stopping worker waits for the master to acknowledge its last
/// results after the shutdown grace.
constexpr core::time_ms ack_wait_ms = 5000;

std::string master_address(const worker_options& o) {
  return fmt::format("{}:{}", o.master_host, o.master_port);
}

template <class Self>
void connect(Self* self);

template <class Self>
void schedule_reconnect(Self* self, const std::string& why) {
  auto& st = self->state;
  ++st.failures;
  auto delay = st.options.reconnect.delay(
    st.failures, std::uniform_real_distribution<double>{0.0, 1.0}(st.rng));
  if (st.failures == 1 || st.failures % 20 == 0)
    log::warn("cannot reach the master at {}: {} (attempt {}, retrying with "
              "backoff)",
              master_address(st.options), why, st.failures);
  self->delayed_send(self, std::chrono::milliseconds(delay),
                     reconnect_atom::value);
}

template <class Self>
void forget_master(Self* self) {
  auto& st = self->state;
  if (st.master)
    self->demonitor(st.master.address());
  st.master = cluster_actor{};
  st.registered = false;
  st.connecting = false;
}

template <class Self>
void send_report(Self* self, std::vector<core::attempt_result> results) {
  auto& st = self->state;
  if (st.registered && st.master && !results.empty())
    self->send(st.master, report_atom::value, st.options.info.id,
               std::move(results));
}

template <class Self>
void finish_shutdown(Self* self) {
  auto& st = self->state;
  if (st.stopped.pending())
    st.stopped.deliver(true);
  for (auto& p : st.also_stopped)
    p.deliver(true);
  st.also_stopped.clear();
}

/// A command ran and ended: the master must learn its result. (A hand-back
/// or a refusal only puts the task back in the queue.)
bool ran_to_an_end(const core::attempt_result& r) {
  return r.started_at != 0 && r.outcome != core::attempt_outcome::returned
         && r.outcome != core::attempt_outcome::lost;
}

/// Moves a stopping worker along: hand back what still runs after the grace,
/// wait (bounded) for the last acknowledgements, then leave.
template <class Self>
void check_shutdown(Self* self) {
  auto& st = self->state;
  if (!st.stopping || !st.stopped.pending())
    return;
  auto now = log::wall_clock_ms();
  if (!st.running.empty()) {
    if ((st.grace_over || now >= st.stop_deadline) && !st.handed_back) {
      st.handed_back = true;
      log::info("shutdown grace over: handing back {} running task(s)",
                st.running.size());
      for (const auto& [ref, work] : st.running)
        self->send(st.executor, kill_atom::value, ref,
                   core::attempt_outcome::returned,
                   std::string{"the worker shut down before it finished"});
    }
    return;
  }
  // A registration on its way (bounded by its timeout) decides what is
  // next: it hands over what this worker holds, and it is left properly.
  if (st.connecting && st.master)
    return;
  if (!st.unacked.empty() && st.registered
      && now < std::max(st.stop_deadline, st.ack_wait_from) + ack_wait_ms)
    return;
  // Results of commands that ran exist only here until the master has them
  // on disk: leaving would run those commands again. While the master is
  // away (the reconnect loop keeps going), wait for it; a second signal to
  // the daemon still exits at once. Hand-backs need no such care: the master
  // requeues those tasks anyway.
  auto ran = std::count_if(st.unacked.begin(), st.unacked.end(),
                           [](const auto& entry) {
                             return ran_to_an_end(entry.second);
                           });
  if (ran > 0 && !st.registered && !st.master_refused) {
    if (!st.holding_announced) {
      st.holding_announced = true;
      log::warn("holding {} finished result(s) until the master at {} takes "
                "them; a second SIGTERM leaves without them (those tasks "
                "would run again)",
                ran, master_address(st.options));
    }
    return;
  }
  if (!st.unacked.empty())
    log::warn("leaving with {} unacknowledged result(s); the master will "
              "requeue those tasks",
              st.unacked.size());
  if (st.registered && st.master) {
    st.registered = false;
    self->request(st.master, std::chrono::seconds(5), leave_atom::value,
                  st.options.info.id)
      .then([self](bool) { finish_shutdown(self); },
            [self](caf::error&) { finish_shutdown(self); });
    return;
  }
  finish_shutdown(self);
}

template <class Self>
void do_register(Self* self) {
  auto& st = self->state;
  register_request req;
  req.info = st.options.info;
  for (const auto& [ref, work] : st.running)
    req.running.push_back(ref);
  std::set<core::attempt_ref> sent;
  for (const auto& [ref, result] : st.unacked) {
    req.results.push_back(result);
    sent.insert(ref);
  }
  self
    ->request(st.master, request_timeout, register_atom::value, std::move(req),
              caf::actor_cast<worker_actor>(self))
    .then(
      [self, sent](register_reply& reply) {
        auto& st = self->state;
        st.connecting = false;
        if (!reply.accepted) {
          log::error("the master refused this worker: {}", reply.message);
          forget_master(self);
          st.master_refused = true;
          schedule_reconnect(self, reply.message);
          check_shutdown(self);
          return;
        }
        st.registered = true;
        st.master_refused = false;
        // Back from an outage while stopping: the held results get a full
        // wait for their acknowledgements.
        if (st.stopping && st.holding_announced)
          st.ack_wait_from = log::wall_clock_ms();
        st.holding_announced = false;
        if (st.failures > 0 || !st.local_master)
          log::info("registered with the master at {} as {} ({} slot{})",
                    st.local_master ? std::string{"this process"}
                                    : master_address(st.options),
                    st.options.info.id, st.options.info.slots,
                    st.options.info.slots == 1 ? "" : "s");
        st.failures = 0;
        st.heartbeat_interval_ms = reply.heartbeat_interval_ms;
        // Attempts that ended while the registration was on its way were
        // reported to nobody: report them now.
        std::vector<core::attempt_result> late;
        for (const auto& [ref, result] : st.unacked)
          if (sent.count(ref) == 0)
            late.push_back(result);
        send_report(self, std::move(late));
        if (st.stopping)
          self->send(st.master, drain_atom::value, st.options.info.id);
      },
      [self](caf::error& err) {
        forget_master(self);
        schedule_reconnect(self, self->system().render(err));
      });
}

template <class Self>
void connect(Self* self) {
  auto& st = self->state;
  if (st.connecting || st.registered)
    return;
  st.connecting = true;
  if (st.local_master) {
    st.master = st.local_master;
    self->monitor(st.master);
    do_register(self);
    return;
  }
  auto& sys = self->system();
  caf::io::middleman_actor mm
    = st.options.tls ? sys.openssl_manager().actor_handle()
                     : sys.middleman().actor_handle();
  self
    ->request(mm, request_timeout, caf::connect_atom::value,
              st.options.master_host, st.options.master_port)
    .then(
      [self](const caf::node_id&, caf::strong_actor_ptr& ptr,
             const std::set<std::string>&) {
        auto& st = self->state;
        if (!ptr) {
          st.connecting = false;
          schedule_reconnect(self, "nothing is published on that port");
          return;
        }
        st.master = caf::actor_cast<cluster_actor>(ptr);
        self->monitor(st.master);
        do_register(self);
      },
      [self](caf::error& err) {
        self->state.connecting = false;
        if (err == caf::sec::incompatible_application_ids) {
          self->state.master_refused = true;
          schedule_reconnect(
            self, fmt::format("it runs a different TaskMaster protocol "
                              "version (this worker speaks taskmaster/{}); "
                              "run the same release on both",
                              protocol_version));
          check_shutdown(self);
        } else if (err == caf::sec::disconnect_during_handshake) {
          // What a TLS mismatch looks like from here: a plain worker at a TLS
          // master, a certificate the master's CA did not sign, or the
          // other way round. CAF says no more than this.
          schedule_reconnect(
            self, fmt::format("the master closed the connection during the "
                              "handshake ({}): if the cluster uses mutual TLS, "
                              "check that both sides have --tls-cert, "
                              "--tls-key and the same --tls-ca, and that the "
                              "CA signed this worker's certificate",
                              self->state.options.tls ? "this worker uses TLS"
                                                      : "this worker does "
                                                        "not use TLS"));
        } else {
          schedule_reconnect(self, self->system().render(err));
        }
      });
}

/// Runs attempts through a process_runner and reports each end to `parent`.
template <class Self>
executor_actor::behavior_type executor(Self* self, worker_node_actor parent,
                                       runner_options options) {
  auto runner = std::make_shared<process_runner>(
    std::move(options), [parent](std::vector<core::attempt_result> results) {
      caf::anon_send(parent, exited_atom::value, std::move(results));
    });
  // The runner lives as long as the actor; its destructor kills what still
  // runs and reports it.
  self->attach_functor([runner]() mutable { runner.reset(); });
  return {
    [runner](run_atom, std::vector<core::assignment>& work) {
      runner->start(std::move(work));
    },
    [runner](kill_atom, const core::attempt_ref& ref,
             core::attempt_outcome outcome, std::string& reason) {
      runner->kill(ref, outcome, std::move(reason));
    },
    [runner](reclaim_atom, const core::attempt_ref& ref) {
      runner->take_back(ref, "handed back unstarted for a slot idling on "
                             "another worker");
    },
    [runner](drain_atom, std::string& reason) {
      runner->hand_back_waiting(std::move(reason));
    },
  };
}

/// `Self` is `worker_node_broker` or `worker_node_actor`'s stateful actor.
template <class Self>
worker_node_actor::behavior_type
worker_node(Self* self, worker_options options, cluster_actor local_master) {
  auto& st = self->state;
  st.options = std::move(options);
  st.local_master = std::move(local_master);
  st.rng.seed(std::random_device{}());
  st.options.runner.slots = st.options.info.slots;
  // The executor runs on the worker's thread, whichever that is.
  auto parent = caf::actor_cast<worker_node_actor>(self);
  if constexpr (std::is_same_v<Self, worker_node_broker>) {
    st.executor = self->system().middleman().spawn_broker(
      executor<broker_of<executor_actor>>, parent, st.options.runner);
    self->link_to(st.executor);
  } else {
    st.executor = self->template spawn<caf::linked>(
      executor<executor_actor::base>, parent, st.options.runner);
  }
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    if (st.master && msg.source == st.master.address()) {
      log::warn("lost the connection to the master: {}",
                self->system().render(msg.reason));
      forget_master(self);
      st.failures = 0;
      schedule_reconnect(self, "connection lost");
    }
  });
  self->send(self, reconnect_atom::value);
  self->send(self, beat_atom::value);
  return {
    [self](assign_atom, std::vector<core::assignment>& batch,
           const std::vector<core::attempt_ref>& acks) {
      auto& st = self->state;
      for (const auto& ref : acks)
        st.unacked.erase(ref);
      std::vector<core::attempt_result> refused;
      std::vector<core::assignment> accepted;
      for (auto& work : batch) {
        if (st.running.count(work.ref) != 0)
          continue;
        // Beyond its slots a worker holds prefetched attempts, up to a bound
        // the master never exceeds.
        if (st.stopping
            || st.running.size()
                 >= st.options.info.slots * core::max_held_per_slot) {
          core::attempt_result r;
          r.ref = work.ref;
          r.outcome = core::attempt_outcome::returned;
          r.reason = st.stopping ? "the worker is shutting down"
                                 : "the worker holds all it can";
          st.unacked[r.ref] = r;
          refused.push_back(std::move(r));
          continue;
        }
        st.running.emplace(work.ref, work);
        accepted.push_back(std::move(work));
      }
      if (!accepted.empty())
        self->send(st.executor, run_atom::value, std::move(accepted));
      send_report(self, std::move(refused));
      check_shutdown(self);
    },
    [self](kill_atom, const std::vector<core::attempt_ref>& refs) {
      auto& st = self->state;
      for (const auto& ref : refs)
        if (st.running.count(ref) != 0)
          self->send(st.executor, kill_atom::value, ref,
                     core::attempt_outcome::cancelled,
                     std::string{"cancelled by the master"});
    },
    [self](reclaim_atom, const std::vector<core::attempt_ref>& refs) {
      auto& st = self->state;
      for (const auto& ref : refs)
        if (st.running.count(ref) != 0)
          self->send(st.executor, reclaim_atom::value, ref);
    },
    [self](ack_atom, const std::vector<core::attempt_ref>& refs) {
      auto& st = self->state;
      for (const auto& ref : refs)
        st.unacked.erase(ref);
      check_shutdown(self);
    },
    [self](exited_atom, std::vector<core::attempt_result>& results) {
      auto& st = self->state;
      for (const auto& r : results) {
        st.running.erase(r.ref);
        st.unacked[r.ref] = r;
      }
      send_report(self, std::move(results));
      check_shutdown(self);
    },
    [self](reconnect_atom) { connect(self); },
    [self](beat_atom) {
      auto& st = self->state;
      if (st.registered && st.master) {
        double load[1] = {0};
        ::getloadavg(load, 1);
        self
          ->request(st.master,
                    std::chrono::milliseconds(3 * st.heartbeat_interval_ms),
                    heartbeat_atom::value, st.options.info.id,
                    st.options.info.incarnation, load[0])
          .then(
            [self](bool known) {
              auto& st = self->state;
              if (!known && st.registered && st.stopping
                  && st.unacked.empty() && st.running.empty()) {
                // Drained and marked LEFT by the master: nothing to rejoin.
                st.registered = false;
                check_shutdown(self);
              } else if (!known && st.registered) {
                // Forgotten (marked LOST, or LEFT with results it never
                // acknowledged): register again, which hands over what this
                // worker still runs and holds.
                log::warn("the master no longer knows this worker; "
                          "registering again");
                st.registered = false;
                st.connecting = true;
                do_register(self);
              }
            },
            [](caf::error&) {
              // Connection trouble shows up as a down message.
            });
      }
      check_shutdown(self);
      self->delayed_send(self,
                         std::chrono::milliseconds(st.heartbeat_interval_ms),
                         beat_atom::value);
    },
    [self](shutdown_atom, uint32_t grace_ms) -> caf::result<bool> {
      auto& st = self->state;
      if (st.stopped.pending()) {
        st.also_stopped.push_back(
          self->template make_response_promise<bool>());
        return st.also_stopped.back();
      }
      st.stopping = true;
      st.stop_deadline = log::wall_clock_ms() + grace_ms;
      st.stopped = self->template make_response_promise<bool>();
      log::info("shutting down: taking no new tasks, {} on hand, up to {} ms "
                "to finish",
                st.running.size(), grace_ms);
      if (st.registered && st.master)
        self->send(st.master, drain_atom::value, st.options.info.id);
      // Prefetched attempts go back to the master unstarted, so they do not
      // keep this worker busy through the grace.
      self->send(st.executor, drain_atom::value,
                 std::string{"the worker shut down before it started"});
      // At the deadline itself, not at the next heartbeat's check.
      self->delayed_send(self, std::chrono::milliseconds(grace_ms),
                         tick_atom::value);
      auto result = st.stopped;
      check_shutdown(self);
      return result;
    },
    [self](tick_atom) {
      self->state.grace_over = true;
      check_shutdown(self);
    },
  };
}

} // namespace

worker_node_actor spawn_worker_node(caf::actor_system& sys,
                                    worker_options options,
                                    cluster_actor local_master) {
  if (local_master)
    return sys.spawn(
      worker_node<worker_node_actor::stateful_base<worker_node_state>>,
      std::move(options), std::move(local_master));
  return sys.middleman().spawn_broker(worker_node<worker_node_broker>,
                                      std::move(options),
                                      std::move(local_master));
}

} // namespace taskmaster
