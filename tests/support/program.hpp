#pragma once
// A program this project builds (reuseformer-encode, reuseformer-plan) run as
// a user runs it: through /bin/sh, its stdout and stderr captured in files.
// Cross-compiled, the program runs under the emulator that runs the test.
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/catch.hpp"

// The emulator's words as the shell splits them (tests/CMakeLists.txt defines
// it when cross-compiling), or nothing.
#ifndef REUSEFORMER_PROGRAM_LAUNCHER
#define REUSEFORMER_PROGRAM_LAUNCHER ""
#endif

namespace reuseformer_test {

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

// The names in `dir`, hidden ones included (a leftover ".<name>.tmp-…" file
// must show), sorted.
inline std::vector<std::string> listing(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::ranges::sort(names);
  return names;
}

// `arg` quoted for /bin/sh: inside single quotes, with ' written as '\''.
inline std::string shell_quoted(const std::string& arg) {
  std::string out = "'";
  for (const char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct program_result {
  int status = -1;
  std::string out, err;  // everything the program wrote to stdout, to stderr
};

// Runs `program` with `args`; its output goes to capture_dir/stdout.txt and
// capture_dir/stderr.txt, so capture_dir should be outside any directory whose
// content a test checks.
inline program_result run_program(const std::string& program, const std::vector<std::string>& args,
                                  const std::filesystem::path& capture_dir) {
  std::string command = REUSEFORMER_PROGRAM_LAUNCHER;
  if (!command.empty()) command.append(" ");
  command.append(shell_quoted(program));
  // Appended piece by piece: `" " + shell_quoted(arg)` trips a false -Wrestrict in GCC 12.
  for (const std::string& arg : args) command.append(" ").append(shell_quoted(arg));
  const std::filesystem::path out = capture_dir / "stdout.txt", err = capture_dir / "stderr.txt";
  command.append(" > ").append(shell_quoted(out.string()));
  command.append(" 2> ").append(shell_quoted(err.string()));
  const int raw = std::system(command.c_str());
  INFO(command);
  REQUIRE(raw != -1);
  REQUIRE(WIFEXITED(raw));
  return {WEXITSTATUS(raw), read_text(out), read_text(err)};
}

}  // namespace reuseformer_test
