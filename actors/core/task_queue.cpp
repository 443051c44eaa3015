#include "actors/core/task_queue.hpp"

namespace taskmaster::core {

task_queue::task_queue(time_ms aging_interval)
  : aging_interval_(aging_interval > 0 ? aging_interval : 1) {
}

void task_queue::push(task_id id, priority prio, const string_map& labels,
                      time_ms ready_since) {
  if (contains(id))
    return;
  auto key = format_labels(labels);
  auto r = rank(prio, ready_since);
  auto& cls = classes_[key];
  if (cls.entries.empty())
    cls.labels = labels;
  cls.entries.emplace(r, id);
  index_.emplace(id, location{std::move(key), r, prio});
  ++per_priority_[static_cast<size_t>(prio)];
}

bool task_queue::erase(task_id id) {
  auto i = index_.find(id);
  if (i == index_.end())
    return false;
  auto c = classes_.find(i->second.class_key);
  c->second.entries.erase({i->second.rank, id});
  if (c->second.entries.empty())
    classes_.erase(c);
  --per_priority_[static_cast<size_t>(i->second.prio)];
  index_.erase(i);
  return true;
}

const task_queue::placement_class* task_queue::class_of(task_id id) const {
  auto i = index_.find(id);
  if (i == index_.end())
    return nullptr;
  auto c = classes_.find(i->second.class_key);
  return c == classes_.end() ? nullptr : &c->second;
}

task_id task_queue::pop_front(const std::string& class_key) {
  auto id = classes_.at(class_key).entries.begin()->second;
  erase(id);
  return id;
}

} // namespace taskmaster::core
