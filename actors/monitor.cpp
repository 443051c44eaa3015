#include "actors/monitor.hpp"

#include <algorithm>

namespace taskmaster {

monitor_actor::behavior_type
monitor(monitor_actor::stateful_pointer<monitor_state> self,
        std::shared_ptr<task_metrics> metrics) {
  self->state.metrics = std::move(metrics);
  self->set_down_handler([=](const caf::down_msg& msg) {
    auto& subs = self->state.subscribers;
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const subscriber_actor& s) {
                                return s.address() == msg.source;
                              }),
               subs.end());
  });
  return {
    [=](event_atom, const event_batch& events) {
      self->state.metrics->record(events);
      // Forward the message itself: CAF messages are copy-on-write, so every
      // subscriber shares one copy of the batch.
      auto msg = self->current_mailbox_element()->move_content_to_message();
      for (const auto& s : self->state.subscribers)
        caf::anon_send(caf::actor_cast<caf::actor>(s), msg);
    },
    [=](caf::subscribe_atom, subscriber_actor& s) {
      self->monitor(s);
      self->state.subscribers.push_back(std::move(s));
    },
    [=](caf::unsubscribe_atom, const subscriber_actor& s) {
      auto& subs = self->state.subscribers;
      subs.erase(std::remove(subs.begin(), subs.end(), s), subs.end());
    },
  };
}

} // namespace taskmaster
