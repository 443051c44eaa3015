#include <catch2/catch.hpp>

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
