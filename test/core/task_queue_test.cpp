#include <catch2/catch.hpp>

#include <vector>

#include "actors/core/task_queue.hpp"

using namespace taskmaster::core;

namespace {

constexpr time_ms aging = 60'000;

task_id pop_best(task_queue& q) {
  REQUIRE(q.classes().size() == 1);
  return q.pop_front(q.classes().begin()->first);
}

} // namespace

TEST_CASE("tasks of one priority leave the queue in submission order",
          "[core][queue]") {
  task_queue q{aging};
  for (task_id id = 1; id <= 5; ++id)
    q.push(id, priority::medium, {}, 1000 + static_cast<time_ms>(id));
  for (task_id id = 1; id <= 5; ++id)
    CHECK(pop_best(q) == id);
  CHECK(q.size() == 0);
}

TEST_CASE("a CRITICAL task overtakes queued LOW tasks", "[core][queue]") {
  task_queue q{aging};
  for (task_id id = 1; id <= 100; ++id)
    q.push(id, priority::low, {}, 1000 + static_cast<time_ms>(id));
  q.push(101, priority::critical, {}, 2000);
  CHECK(q.size(priority::low) == 100);
  CHECK(q.size(priority::critical) == 1);
  CHECK(pop_best(q) == 101);
  CHECK(pop_best(q) == 1);
}

TEST_CASE("a LOW task that waited long enough goes before fresh CRITICAL ones",
          "[core][queue][aging]") {
  task_queue q{aging};
  q.push(1, priority::low, {}, 0);
  // Three levels of aging make LOW equal to CRITICAL; one millisecond more
  // and the old LOW task ranks first.
  q.push(2, priority::critical, {}, 3 * aging + 1);
  CHECK(pop_best(q) == 1);
  CHECK(pop_best(q) == 2);
  // Less than three intervals apart: CRITICAL still wins.
  q.push(3, priority::low, {}, 10 * aging);
  q.push(4, priority::critical, {}, 10 * aging + 1);
  CHECK(pop_best(q) == 4);
}

TEST_CASE("erasing a queued task keeps counts right", "[core][queue]") {
  task_queue q{aging};
  q.push(1, priority::high, {}, 0);
  q.push(2, priority::high, {}, 1);
  CHECK(q.erase(1, priority::high, {}, 0));
  CHECK_FALSE(q.erase(1, priority::high, {}, 0));
  CHECK_FALSE(q.erase(2, priority::high, {}, 0)); // queued with another time
  CHECK(q.size(priority::high) == 1);
  CHECK(pop_best(q) == 2);
  CHECK(q.classes().empty());
}

TEST_CASE("tasks with different label constraints form separate classes",
          "[core][queue]") {
  task_queue q{aging};
  q.push(1, priority::medium, {{"gpu", "1"}}, 0);
  q.push(2, priority::medium, {}, 1);
  q.push(3, priority::medium, {{"gpu", "1"}}, 2);
  REQUIRE(q.classes().size() == 2);
  CHECK(q.classes().count("gpu=1") == 1);
  CHECK(q.class_of({{"gpu", "1"}})->entries.size() == 2);
  CHECK(q.class_of({{"ssd", "1"}}) == nullptr);
  CHECK(q.pop_front("gpu=1") == 1);
  CHECK(q.pop_front("") == 2);
  CHECK(q.pop_front("gpu=1") == 3);
}

TEST_CASE("absorbing another queue keeps every task's rank and the counts",
          "[core][queue]") {
  task_queue q{aging};
  task_queue held{aging};
  q.push(10, priority::critical, {}, 5000);
  q.push(11, priority::low, {{"gpu", "1"}}, 5000);
  held.push(1, priority::medium, {}, 1000);
  held.push(2, priority::low, {}, 1001);
  held.push(3, priority::medium, {{"gpu", "1"}}, 1002);
  held.push(4, priority::high, {{"zone", "b"}}, 1003);
  q.absorb(held);
  CHECK(held.size() == 0);
  CHECK(held.classes().empty());
  CHECK(q.size() == 6);
  CHECK(q.size(priority::medium) == 2);
  CHECK(q.size(priority::low) == 2);
  CHECK(q.classes().size() == 3);
  // Within a class, by rank across both: a CRITICAL task 4 s younger
  // still goes first (ranks differ by an aging interval per level).
  auto& plain = q.classes().at("");
  std::vector<task_id> order;
  for (const auto& [entry, prio] : plain.entries)
    order.push_back(entry.second);
  CHECK(order == std::vector<task_id>{10, 1, 2});
  CHECK(q.class_of({{"zone", "b"}}) != nullptr);
  CHECK(q.erase(3, priority::medium, {{"gpu", "1"}}, 1002));
  CHECK(q.size() == 5);
}
