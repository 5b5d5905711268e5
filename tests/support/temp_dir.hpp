#pragma once
// A fresh directory under the system's temporary directory, removed with its
// contents at scope exit: for tests that write files.
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/catch.hpp"

namespace reuseformer_test {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string name = (std::filesystem::temp_directory_path() / "reuseformer-test-XXXXXX").string();
    REQUIRE(::mkdtemp(name.data()) != nullptr);
    path = name;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return path / name; }

  // The names of the entries, in directory order.
  [[nodiscard]] std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
    return out;
  }
};

}  // namespace reuseformer_test
