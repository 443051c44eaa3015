#pragma once

#include <cstdint>

#include "actors/core/time.hpp"

namespace taskmaster::core {

/// Exponential backoff with "equal jitter": the n-th delay is drawn uniformly
/// from [d/2, d] where d = min(cap, base * 2^(n-1)). Half the delay is
/// guaranteed, so retries never stampede back at once, and the randomness is
/// passed in so tests use fixed values.
struct retry_policy {
  time_ms base = 1000;
  time_ms cap = 60'000;

  /// `failures` counts from 1; `unit_random` is in [0, 1].
  time_ms delay(uint32_t failures, double unit_random) const;
};

} // namespace taskmaster::core
