#pragma once
// The peers (bench/peers/peers.py --serve) in a child process whose timed
// rounds alternate with ours: after each of our rounds the child times one
// pass of every peer, so that a machine that slows down or speeds up during
// the run (a shared VM does, by tens of percent within minutes) moves both
// sides' figures alike, and their ratio means something. Protocol: the child
// prints "ready" once its peers are built and warmed up, answers each line we
// send with "done" after one round, and at the end of its stdin writes its
// JSON and exits.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>

extern char** environ;

namespace reuseformer_bench {

class peer_process {
 public:
  // Starts `/bin/sh -c command`; returns at once (the child builds its peers
  // meanwhile). Throws std::runtime_error when it cannot be started.
  explicit peer_process(std::string command) : command_(std::move(command)) {
    ::signal(SIGPIPE, SIG_IGN);  // a child that died is reported by the next read, not by a signal
    int to[2], from[2];
    if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0) fail("cannot create pipes");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from[1], 1);
    char shell[] = "/bin/sh", flag[] = "-c";
    char* argv[] = {shell, flag, command_.data(), nullptr};
    const int spawned = ::posix_spawn(&pid_, shell, &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(to[0]);
    ::close(from[1]);
    if (spawned != 0) {
      ::close(to[1]);
      ::close(from[0]);
      fail("cannot start it");
    }
    in_ = ::fdopen(to[1], "w");
    out_ = ::fdopen(from[0], "r");
  }
  peer_process(const peer_process&) = delete;
  peer_process& operator=(const peer_process&) = delete;
  ~peer_process() {
    if (in_ != nullptr) finish(std::nothrow);
  }

  // Waits until the child's peers are warmed up.
  void ready() { expect("ready"); }

  // One timed pass of every peer, while ours wait.
  void round() {
    std::fputs("next\n", in_);
    std::fflush(in_);
    expect("done");
  }

  // Ends the rounds and waits for the child to write its JSON. Throws when it failed.
  void finish() {
    if (finish(std::nothrow) != 0) fail("exited with a failure");
  }

 private:
  int finish(std::nothrow_t) {
    std::fclose(in_);
    in_ = nullptr;
    std::fclose(out_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  }

  void expect(const std::string& word) {
    char line[256] = {};
    if (std::fgets(line, sizeof line, out_) == nullptr || line != word + "\n")
      fail("expected '" + word + "', found " +
           (line[0] ? std::string(1, '\'').append(line).append("'") : "the end of its output"));
  }

  [[noreturn]] void fail(const std::string& why) const { throw std::runtime_error("peers (" + command_ + "): " + why); }

  std::string command_;
  pid_t pid_ = -1;
  std::FILE* in_ = nullptr;
  std::FILE* out_ = nullptr;
};

}  // namespace reuseformer_bench
