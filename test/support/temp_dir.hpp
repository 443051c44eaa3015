#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace taskmaster::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class temp_dir {
public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string{base != nullptr ? base : "/tmp"}
                       + "/taskmaster-test-XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }

  /// Kept when TASKMASTER_TEST_KEEP is set, to read the daemons' logs.
  ~temp_dir() {
    if (std::getenv("TASKMASTER_TEST_KEEP") != nullptr)
      return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const {
    return path_;
  }

  std::string operator/(const std::string& name) const {
    return path_ + "/" + name;
  }

private:
  std::string path_;
};

} // namespace taskmaster::test
