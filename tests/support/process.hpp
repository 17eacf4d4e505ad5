// Runs the built workflowd binary (or any program) as a child process for end-to-end tests:
// captures its output, sends signals, waits with a bound.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace workflowd::testing {

class ChildProcess {
 public:
  // Starts `argv[0]` with `argv`, adding `env` ("K=V") to the current environment.
  // stdout and stderr are merged and captured.
  ChildProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      dup2(fds[1], STDERR_FILENO);
      for (const auto& e : env) putenv(strdup(e.c_str()));
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    read_fd_ = fds[0];
    reader_ = std::thread([this] {
      char buf[4096];
      ssize_t n;
      while ((n = read(read_fd_, buf, sizeof buf)) > 0) {
        std::lock_guard lock(mu_);
        output_.append(buf, static_cast<size_t>(n));
      }
    });
  }

  ~ChildProcess() {
    if (!exited_) {
      kill(pid_, SIGKILL);
      Wait(std::chrono::seconds(10));
    }
    if (reader_.joinable()) reader_.join();
    close(read_fd_);
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  void Signal(int sig) { kill(pid_, sig); }

  // Exit code (128 + signal when killed), or -1 if it did not end within `timeout`.
  int Wait(std::chrono::milliseconds timeout) {
    if (exited_) return exit_code_;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (reader_.joinable()) reader_.join();
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  // Waits until the output contains `text`; false after `timeout` or when the process ended first.
  bool WaitForOutput(const std::string& text, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Output().find(text) != std::string::npos) return true;
      int status = 0;
      if (!exited_ && waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (reader_.joinable()) reader_.join();
        return Output().find(text) != std::string::npos;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  std::string Output() const {
    std::lock_guard lock(mu_);
    return output_;
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int read_fd_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  mutable std::mutex mu_;
  std::string output_;
  std::thread reader_;
};

// Runs a command to completion and returns {exit code, output}.
inline std::pair<int, std::string> RunCommand(
    const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  ChildProcess p(argv, env);
  int code = p.Wait(timeout);
  return {code, p.Output()};
}

}  // namespace workflowd::testing
