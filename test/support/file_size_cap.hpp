#pragma once

#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <string>

#include <catch2/catch.hpp>

namespace taskmaster::test {

/// While it lives, files of this process, and of the processes it starts
/// meanwhile (which inherit both), may not grow past a size (as on a full
/// disk, writes beyond fail with EFBIG; SIGXFSZ, which would kill the
/// writer, is ignored). A FAIL in between still restores both.
class file_size_cap {
public:
  /// Capped at `path`'s size.
  explicit file_size_cap(const std::string& path)
    : file_size_cap(size_of(path)) {
  }
  explicit file_size_cap(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &before_) == 0);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit capped = before_;
    capped.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &capped) == 0);
  }
  ~file_size_cap() {
    ::setrlimit(RLIMIT_FSIZE, &before_);
    std::signal(SIGXFSZ, old_handler_);
  }
  file_size_cap(const file_size_cap&) = delete;
  file_size_cap& operator=(const file_size_cap&) = delete;

private:
  static rlim_t size_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return static_cast<rlim_t>(st.st_size);
  }

  rlimit before_{};
  void (*old_handler_)(int) = nullptr;
};

} // namespace taskmaster::test
