#include "actors/core/cluster_view.hpp"

#include <array>

#include <fmt/format.h>

namespace taskmaster::core {

std::string_view to_string(worker_status x) {
  static constexpr std::array<std::string_view, 4> names{"UP", "DRAINING",
                                                         "LOST", "LEFT"};
  return names[static_cast<size_t>(x)];
}

worker_state* cluster_view::find(const std::string& id) {
  auto i = workers_.find(id);
  return i == workers_.end() ? nullptr : &i->second;
}

const worker_state* cluster_view::find(const std::string& id) const {
  auto i = workers_.find(id);
  return i == workers_.end() ? nullptr : &i->second;
}

placement cluster_view::place(const string_map& want,
                                bool free_slot_only) const {
  const worker_state* best = nullptr;
  bool any_live = false;
  bool any_matching = false;
  for (const auto& [id, w] : workers_) {
    if (w.status != worker_status::up)
      continue;
    any_live = true;
    if (!labels_match(want, w.info.labels))
      continue;
    any_matching = true;
    if (free_slot_only ? w.free_slots() == 0 : w.room() == 0)
      continue;
    if (best == nullptr) {
      best = &w;
      continue;
    }
    // Compare running/slots without floating point: a/b < c/d <=> a*d < c*b.
    auto lhs = static_cast<uint64_t>(w.running.size()) * best->info.slots;
    auto rhs = static_cast<uint64_t>(best->running.size()) * w.info.slots;
    if (lhs < rhs
        || (lhs == rhs
            && (w.running.size() < best->running.size()
                || (w.running.size() == best->running.size()
                    && w.last_assigned < best->last_assigned))))
      best = &w;
  }
  placement result;
  if (best != nullptr) {
    result.worker_id = best->info.id;
  } else if (!any_live) {
    result.reason = "no worker is connected";
  } else if (!any_matching) {
    result.reason = fmt::format("no connected worker has the labels {}",
                                format_labels(want));
  } else {
    result.reason = "waiting for a free slot";
    result.waiting_for_slot = true;
  }
  return result;
}

void cluster_view::assign(worker_state& worker, const attempt_ref& ref) {
  worker.running.insert(ref);
  worker.last_assigned = ++assign_counter_;
}

uint32_t cluster_view::free_slots() const {
  uint32_t n = 0;
  for (const auto& [id, w] : workers_)
    if (w.status == worker_status::up)
      n += w.free_slots();
  return n;
}

uint32_t cluster_view::room() const {
  uint32_t n = 0;
  for (const auto& [id, w] : workers_)
    if (w.status == worker_status::up)
      n += w.room();
  return n;
}

uint32_t cluster_view::total_slots() const {
  uint32_t n = 0;
  for (const auto& [id, w] : workers_)
    if (w.status == worker_status::up || w.status == worker_status::draining)
      n += w.info.slots;
  return n;
}

uint32_t cluster_view::used_slots() const {
  uint32_t n = 0;
  for (const auto& [id, w] : workers_)
    if (w.status == worker_status::up || w.status == worker_status::draining)
      n += w.used_slots();
  return n;
}

size_t cluster_view::count(worker_status status) const {
  size_t n = 0;
  for (const auto& [id, w] : workers_)
    if (w.status == status)
      ++n;
  return n;
}

} // namespace taskmaster::core
