#pragma once

#include <string>
#include <variant>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/messages.hpp"
#include "http/api_error.hpp"

/// The blocking facade HTTP handler threads use to talk to the scheduler:
/// one request, one answer, bounded by a timeout. Handler threads are not
/// actors; this is the only place they meet CAF.
namespace taskmaster::http {

class scheduler_client {
public:
  scheduler_client(caf::actor_system& sys, scheduler_actor scheduler,
                   caf::timespan timeout)
    : sys_(sys), scheduler_(std::move(scheduler)), timeout_(timeout) {
  }

  /// Sends `xs...` and waits for a `T` (at most the timeout plus `extra`).
  /// Reads go ahead of the scheduler's queued work (`urgent`) so a page of
  /// tasks does not wait behind a burst of dispatching.
  template <class T, class... Ts>
  std::variant<T, api_error> ask_within(caf::timespan extra, Ts&&... xs) {
    caf::scoped_actor self{sys_};
    std::variant<T, api_error> result{
      api_error{api_errc::unavailable, "the scheduler did not answer", 1}};
    self->template request<caf::message_priority::high>(
          scheduler_, timeout_ + extra, std::forward<Ts>(xs)...)
      .receive([&](T& value) { result = std::move(value); },
               [&](caf::error& err) {
                 result = api_error{api_errc::unavailable,
                                    "the scheduler did not answer: "
                                      + sys_.render(err),
                                    1};
               });
    return result;
  }

  template <class T, class... Ts>
  std::variant<T, api_error> ask(Ts&&... xs) {
    return ask_within<T>(caf::timespan{0}, std::forward<Ts>(xs)...);
  }

private:
  caf::actor_system& sys_;
  scheduler_actor scheduler_;
  caf::timespan timeout_;
};

} // namespace taskmaster::http
