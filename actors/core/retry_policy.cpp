#include "actors/core/retry_policy.hpp"

#include <algorithm>

namespace taskmaster::core {

time_ms retry_policy::delay(uint32_t failures, double unit_random) const {
  if (failures == 0 || base <= 0)
    return 0;
  time_ms d = base;
  for (uint32_t i = 1; i < failures && d < cap; ++i)
    d *= 2;
  d = std::min(d, std::max(cap, base));
  unit_random = std::clamp(unit_random, 0.0, 1.0);
  auto half = d / 2;
  return half + static_cast<time_ms>(static_cast<double>(d - half) * unit_random);
}

} // namespace taskmaster::core
