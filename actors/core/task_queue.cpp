#include "actors/core/task_queue.hpp"

namespace taskmaster::core {

task_queue::task_queue(time_ms aging_interval)
  : aging_interval_(aging_interval > 0 ? aging_interval : 1) {
}

void task_queue::push(task_id id, priority prio, const string_map& labels,
                      time_ms ready_since) {
  auto& cls = classes_[format_labels(labels)];
  if (cls.entries.empty())
    cls.labels = labels;
  if (cls.entries.emplace(std::make_pair(rank(prio, ready_since), id), prio)
        .second) {
    ++size_;
    ++per_priority_[static_cast<size_t>(prio)];
  }
}

bool task_queue::erase(task_id id, priority prio, const string_map& labels,
                       time_ms ready_since) {
  auto c = classes_.find(format_labels(labels));
  if (c == classes_.end()
      || c->second.entries.erase({rank(prio, ready_since), id}) == 0)
    return false;
  if (c->second.entries.empty())
    classes_.erase(c);
  --size_;
  --per_priority_[static_cast<size_t>(prio)];
  return true;
}

const task_queue::placement_class*
task_queue::class_of(const string_map& labels) const {
  auto c = classes_.find(format_labels(labels));
  return c == classes_.end() ? nullptr : &c->second;
}

task_id task_queue::pop_front(const std::string& class_key) {
  auto c = classes_.find(class_key);
  auto head = c->second.entries.begin();
  auto id = head->first.second;
  --size_;
  --per_priority_[static_cast<size_t>(head->second)];
  c->second.entries.erase(head);
  if (c->second.entries.empty())
    classes_.erase(c);
  return id;
}

void task_queue::absorb(task_queue& other) {
  size_ += other.size_;
  for (size_t i = 0; i < priority_count; ++i)
    per_priority_[i] += other.per_priority_[i];
  for (auto& [key, cls] : other.classes_) {
    auto& mine = classes_[key];
    if (mine.entries.empty()) {
      // The usual case after a restart wait (new tasks went out at once):
      // the whole class moves in constant time.
      mine.labels = cls.labels;
      mine.entries.swap(cls.entries);
      continue;
    }
    mine.entries.merge(cls.entries);
    // What merge leaves behind was queued here already: counted once.
    for (const auto& [entry, prio] : cls.entries) {
      --size_;
      --per_priority_[static_cast<size_t>(prio)];
    }
  }
  other.classes_.clear();
  other.size_ = 0;
  other.per_priority_ = {};
}

} // namespace taskmaster::core
