// A service binary run as a child process, for the tests that break things
// around real instances (tests/fault, tests/cluster). Not thread-safe.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

class ServiceProcess {
 public:
  // Starts `binary` with this process's environment plus `env` (NAME=value,
  // later entries win), stdout and stderr to `log`. Returns once it logged
  // that it is serving; throws if it did not within 20 s.
  ServiceProcess(const std::string& binary, std::string log, const std::vector<std::string>& env)
      : log_(std::move(log)) {
    // getenv() finds the first of duplicate names: keep only the last.
    std::vector<std::string> vars;
    auto set = [&vars](const std::string& var) {
      const std::string name = var.substr(0, var.find('=') + 1);
      std::erase_if(vars, [&](const std::string& v) { return v.starts_with(name); });
      vars.push_back(var);
    };
    for (char** e = environ; *e != nullptr; ++e) set(*e);
    for (const auto& v : env) set(v);
    std::vector<char*> envp;
    for (auto& v : vars) envp.push_back(v.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::string program = binary;
    char* argv[] = {program.data(), nullptr};
    const int rc = posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + binary);
    started_pid_ = pid_;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < until) {  // bounded wait for its "serving" line
      if (output().find(" serving: ") != std::string::npos) return;
      // Killed by a signal before its line (a poison request it took at
      // once): exited() reports it; anything else is a failure to start.
      int raw = 0;
      if (waitpid(pid_, &raw, WNOHANG) == pid_) {
        pid_ = 0;
        if (WIFSIGNALED(raw)) {
          killed_by_ = WTERMSIG(raw);
          crashed_ = true;
          return;
        }
        throw std::runtime_error(log_ + ": the service exited before serving:\n" + output());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error(log_ + ": the service did not start serving:\n" + output());
  }
  // Kills it (SIGKILL), if it still runs.
  ~ServiceProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGCONT);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  ServiceProcess(const ServiceProcess&) = delete;
  ServiceProcess& operator=(const ServiceProcess&) = delete;

  // 0 once it has been waited for; started_pid() stays.
  pid_t pid() const { return pid_; }
  pid_t started_pid() const { return started_pid_; }
  void signal(int sig) { kill(pid_, sig); }
  // Waits for the process to exit; its exit status, or -1.
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
    killed_by_ = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  // Without blocking: whether the process has exited, and if so its exit
  // status (or -1) in *status.
  bool exited(int* status) {
    if (crashed_) {
      crashed_ = false;
      *status = -1;
      return true;
    }
    int raw = 0;
    if (pid_ == 0 || waitpid(pid_, &raw, WNOHANG) != pid_) return false;
    pid_ = 0;
    killed_by_ = WIFSIGNALED(raw) ? WTERMSIG(raw) : 0;
    *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    return true;
  }
  // Once it has exited: the signal that ended it, or 0 (it exited).
  int killed_by() const { return killed_by_; }
  // Its state letter in /proc/PID/stat ('T': stopped), or 0.
  char state() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');
    return pid_ > 0 && paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : 0;
  }
  // What it printed so far.
  std::string output() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = 0;
  bool crashed_ = false;   // killed by a signal before it was serving
  pid_t started_pid_ = 0;
  int killed_by_ = 0;
  std::string log_;
};
