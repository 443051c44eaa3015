#include "http/stream_bridge.hpp"

#include <algorithm>
#include <limits>

#include "actors/log.hpp"
#include "http/json_codec.hpp"

namespace taskmaster::http {

namespace {

constexpr auto tick_interval = std::chrono::seconds(1);
constexpr uint32_t snapshot_tasks = 100;

std::shared_ptr<const std::string> shared(const json& j) {
  return std::make_shared<const std::string>(dump(j));
}

std::shared_ptr<const std::string> shared(std::string text) {
  return std::make_shared<const std::string>(std::move(text));
}

/// A stats message to every session that asked for stats: the summary, and
/// the rates since the last tick. Only the tick (`new_window`) starts the
/// next window: one sent in between would make it a few milliseconds long.
void publish_stats(gateway_actor::stateful_pointer<stream_bridge_state> self,
                   const cluster_summary& summary, bool new_window) {
  auto& st = self->state;
  if (st.hub->session_count() == 0)
    return;
  auto now = log::wall_clock_ms();
  double seconds = std::max<double>(0.001, (now - st.last_tick) / 1000.0);
  json msg{{"type", "stats"},
           {"summary", encode_summary(summary)},
           {"finished_per_second", st.finished / seconds},
           {"submitted_per_second", st.submitted / seconds},
           {"at", core::format_rfc3339(now)}};
  if (new_window) {
    st.finished = 0;
    st.submitted = 0;
    st.last_tick = now;
  }
  // Stats are not part of the event sequence: every live session takes them.
  st.hub->publish({stream_event{std::numeric_limits<uint64_t>::max(),
                                stream_event::stats, 0, shared(msg)}});
}

} // namespace

gateway_actor::behavior_type
stream_bridge(gateway_actor::stateful_pointer<stream_bridge_state> self,
              ws_hub* hub, scheduler_actor scheduler, monitor_actor monitor) {
  self->state.hub = hub;
  self->state.scheduler = std::move(scheduler);
  self->state.last_tick = log::wall_clock_ms();
  self->send(monitor, caf::subscribe_atom::value,
             caf::actor_cast<subscriber_actor>(self));
  self->send(self, tick_atom::value);
  return {
    [self](event_atom, const event_batch& batch) {
      auto& st = self->state;
      for (const auto& e : batch.tasks) {
        if (e.change.created)
          ++st.submitted;
        if (core::is_final(e.change.to))
          ++st.finished;
      }
      // Nobody watching: nothing to encode.
      if (st.hub->session_count() == 0)
        return;
      auto now = log::wall_clock_ms();
      std::vector<stream_event> events;
      events.reserve(batch.tasks.size() + batch.workers.size());
      for (const auto& e : batch.tasks)
        events.push_back(stream_event{e.seq, stream_event::tasks, e.task.id,
                                      shared(encode_task_event(e))});
      auto tasks_end = events.size();
      for (const auto& e : batch.workers)
        events.push_back(
          stream_event{e.seq, stream_event::workers, 0,
                       shared(encode_worker_event(e, now))});
      // A batch covers several plans, so task and worker events interleave:
      // clients see seq go up one by one.
      std::inplace_merge(events.begin(), events.begin() + tasks_end,
                         events.end(),
                         [](const stream_event& a, const stream_event& b) {
                           return a.seq < b.seq;
                         });
      if (!events.empty())
        st.hub->publish(std::move(events));
      // After the events (the worker whose return ended it joins first).
      if (batch.restart_wait_changed)
        publish_stats(self, batch.summary, false);
    },
    [self](snapshot_atom, uint64_t session, core::task_id only,
           uint8_t topics) {
      auto hub = self->state.hub;
      bool with_tasks = (topics & stream_event::tasks) != 0;
      bool with_workers = (topics & stream_event::workers) != 0;
      self
        ->request(self->state.scheduler, std::chrono::seconds(10),
                  snapshot_atom::value, only,
                  with_tasks ? snapshot_tasks : uint32_t{0})
        .then(
          [hub, session, with_workers, with_tasks](const cluster_snapshot& snap) {
            hub->deliver_snapshot(session,
                                  shared(encode_snapshot(snap,
                                                         log::wall_clock_ms(),
                                                         with_workers,
                                                         with_tasks)),
                                  snap.seq);
          },
          [](caf::error& err) {
            log::warn("no snapshot for a WebSocket client: {}",
                      caf::to_string(err));
          });
    },
    [self](tick_atom) {
      self->delayed_send(self, tick_interval, tick_atom::value);
      if (self->state.hub->session_count() == 0) {
        self->state.finished = 0;
        self->state.submitted = 0;
        self->state.last_tick = log::wall_clock_ms();
        return;
      }
      self
        ->request(self->state.scheduler, std::chrono::seconds(5),
                  stats_atom::value)
        .then(
          [self](const cluster_summary& summary) {
            publish_stats(self, summary, true);
          },
          [](caf::error&) {});
    },
  };
}

} // namespace taskmaster::http
