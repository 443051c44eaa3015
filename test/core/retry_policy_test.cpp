#include <catch2/catch.hpp>

#include "actors/core/retry_policy.hpp"

using namespace taskmaster::core;

TEST_CASE("retry delays double up to the cap", "[core][retry]") {
  retry_policy p{1000, 10'000};
  CHECK(p.delay(1, 1.0) == 1000);
  CHECK(p.delay(2, 1.0) == 2000);
  CHECK(p.delay(3, 1.0) == 4000);
  CHECK(p.delay(4, 1.0) == 8000);
  CHECK(p.delay(5, 1.0) == 10'000);
  CHECK(p.delay(60, 1.0) == 10'000);
}

TEST_CASE("jitter keeps at least half of each delay", "[core][retry]") {
  retry_policy p{1000, 10'000};
  CHECK(p.delay(1, 0.0) == 500);
  CHECK(p.delay(2, 0.5) == 1500);
  CHECK(p.delay(3, 0.0) == 2000);
  CHECK(p.delay(3, 7.0) == 4000);
  CHECK(p.delay(0, 1.0) == 0);
}
