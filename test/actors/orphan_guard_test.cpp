#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "actors/orphan_guard.hpp"
#include "test/support/wait.hpp"

using namespace taskmaster;
using namespace std::chrono_literals;

namespace {

/// A process group as a task makes one: a shell leading it, with a child
/// of its own. Returns the group id (the shell's pid).
pid_t start_group() {
  char sh[] = "/bin/sh";
  char c[] = "-c";
  char script[] = "sleep 300 & sleep 300";
  char* argv[] = {sh, c, script, nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execv("/bin/sh", argv);
    ::_exit(127);
  }
  REQUIRE(pid > 0);
  ::setpgid(pid, pid); // whichever of the two runs first
  // Both members are there before the test goes on.
  REQUIRE(taskmaster::test::eventually([&] {
    std::ifstream children{"/proc/" + std::to_string(pid) + "/task/"
                           + std::to_string(pid) + "/children"};
    std::string first, second;
    return static_cast<bool>(children >> first >> second);
  }));
  return pid;
}

/// True while some process of group `pgid` is alive (zombies aside: a
/// group whose members all died and wait for their parent counts as gone).
bool group_alive(pid_t pgid) {
  for (const auto& entry : std::filesystem::directory_iterator{"/proc"}) {
    std::ifstream stat{entry.path() / "stat"};
    std::string line;
    if (!std::getline(stat, line))
      continue;
    // pid (comm) state ppid pgrp ...: comm may hold spaces, so from the end
    // of it.
    auto close = line.rfind(')');
    if (close == std::string::npos)
      continue;
    std::istringstream rest{line.substr(close + 2)};
    std::string state;
    long ppid = 0;
    long pgrp = 0;
    rest >> state >> ppid >> pgrp;
    if (pgrp == pgid && state != "Z" && state != "X")
      return true;
  }
  return false;
}

} // namespace

TEST_CASE("the orphan guard kills the groups still listed when its daemon "
          "goes, and holds none of the daemon's descriptors",
          "[actors][guard]") {
  int unrelated[2];
  REQUIRE(::pipe(unrelated) == 0);
  std::optional<orphan_guard> guard{std::in_place};
  REQUIRE(guard->active());
  auto guard_pid = guard->pid();
  // Only stdin, stdout, stderr and its lifeline: a socket the daemon closes
  // must close.
  REQUIRE(taskmaster::test::eventually([&] {
    size_t open = 0;
    for ([[maybe_unused]] const auto& fd : std::filesystem::directory_iterator{
           "/proc/" + std::to_string(guard_pid) + "/fd"})
      ++open;
    return open <= 4;
  }));
  std::ifstream comm{"/proc/" + std::to_string(guard_pid) + "/comm"};
  std::string name;
  comm >> name;
  CHECK(name == "tm.orphan-guard");
  auto listed = start_group();
  auto taken_off = start_group();
  CHECK(guard->add(listed) >= 0);
  guard->remove(guard->add(taken_off));
  // SIGTERM or SIGINT meant for the daemon's group does not end the guard.
  ::kill(guard_pid, SIGTERM);
  ::kill(guard_pid, SIGINT);
  std::this_thread::sleep_for(100ms);
  CHECK(::waitpid(guard_pid, nullptr, WNOHANG) == 0);
  CHECK(group_alive(listed));
  // The daemon's end: its end of the lifeline closes.
  guard.reset();
  CHECK(taskmaster::test::eventually(
    [&] { return ::waitpid(listed, nullptr, WNOHANG) == listed; }, 5s));
  CHECK(taskmaster::test::eventually([&] { return !group_alive(listed); }, 5s));
  CHECK(group_alive(taken_off));
  ::kill(-taken_off, SIGKILL);
  ::waitpid(taken_off, nullptr, 0);
  // Without the guard, the test leaves nothing behind either.
  ::kill(-listed, SIGKILL);
  ::waitpid(listed, nullptr, WNOHANG);
  ::close(unrelated[0]);
  ::close(unrelated[1]);
}
