#include <catch2/catch.hpp>

#include "actors/core/cluster_view.hpp"

using namespace taskmaster::core;

namespace {

worker_state& add(cluster_view& view, const std::string& id, uint32_t slots,
                  string_map labels = {}) {
  auto& w = view.workers()[id];
  w.info.id = id;
  w.info.slots = slots;
  w.info.labels = std::move(labels);
  return w;
}

} // namespace

TEST_CASE("placement picks the least loaded worker", "[core][placement]") {
  cluster_view view;
  auto& a = add(view, "a", 4);
  auto& b = add(view, "b", 2);
  view.assign(a, {1, 1});
  view.assign(a, {2, 1});
  // a: 2/4 busy, b: 0/2 busy
  CHECK(view.place({}).worker_id == "b");
  view.assign(b, {3, 1});
  // a: 2/4, b: 1/2 -> equal load, a has... more running; b wins on count
  CHECK(view.place({}).worker_id == "b");
  view.assign(b, {4, 1});
  CHECK(view.place({}).worker_id == "a");
  CHECK(view.free_slots() == 2);
  CHECK(view.used_slots() == 4);
  CHECK(view.total_slots() == 6);
}

TEST_CASE("placement spreads ties round-robin", "[core][placement]") {
  cluster_view view;
  auto& a = add(view, "a", 2);
  auto& b = add(view, "b", 2);
  view.assign(a, {1, 1});
  view.assign(b, {2, 1});
  a.running.clear();
  b.running.clear();
  // Both idle again: the one assigned longest ago goes first.
  CHECK(view.place({}).worker_id == "a");
}

TEST_CASE("placement honours labels and says why it cannot place",
          "[core][placement]") {
  cluster_view view;
  CHECK(view.place({}).reason == "no worker is connected");
  auto& cpu = add(view, "cpu", 1);
  CHECK(view.place({{"gpu", "1"}}).reason
        == "no connected worker has the labels gpu=1");
  add(view, "gpu", 1, {{"gpu", "1"}, {"zone", "a"}});
  CHECK(view.place({{"gpu", "1"}}).worker_id == "gpu");
  view.assign(cpu, {1, 1});
  view.assign(*view.find("gpu"), {2, 1});
  auto busy = view.place({{"gpu", "1"}});
  CHECK(busy.worker_id.empty());
  CHECK(busy.waiting_for_slot);
}

TEST_CASE("lost and draining workers take no work", "[core][placement]") {
  cluster_view view;
  add(view, "a", 1).status = worker_status::lost;
  add(view, "b", 1).status = worker_status::draining;
  CHECK(view.place({}).worker_id.empty());
  CHECK(view.free_slots() == 0);
  CHECK(view.count(worker_status::lost) == 1);
}
