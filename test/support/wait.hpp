#pragma once

#include <chrono>
#include <thread>

namespace taskmaster::test {

/// Polls `condition` every few milliseconds until it holds or `limit`
/// passes. Tests use it to wait for effects in other processes or threads,
/// never for a fixed time.
template <class Condition>
bool eventually(Condition condition,
                std::chrono::milliseconds limit = std::chrono::seconds(10),
                std::chrono::milliseconds step = std::chrono::milliseconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (condition())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(step);
  }
}

} // namespace taskmaster::test
