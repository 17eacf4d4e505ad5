// The server's event loop (its own thread): accepts connections under the caps, reads and parses
// requests with their deadlines, hands complete ones to the worker lanes, writes the responses,
// and closes what took too long. Private to http/ (Server owns one between Start() and Stop()).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "wire.hpp"
#include "work_lane.hpp"
#include "workflowd/http/router.hpp"
#include "workflowd/http/server.hpp"

namespace workflowd::http {

using Clock = std::chrono::steady_clock;

struct Connection {
  // kLingering: its last response sent and its sending side shut, it reads and discards what the
  // client still sends until the client closes (or a moment passes): closing with unread input
  // would reset the connection and could destroy the response before the client read it.
  enum class State { kReading, kBusy, kWriting, kLingering };

  Connection(std::uint64_t id_in, int fd_in, std::string address_in, const wire::Limits& limits)
      : id(id_in), fd(fd_in), address(std::move(address_in)), parser(limits) {}

  std::uint64_t id;
  int fd;
  std::string address;
  State state = State::kReading;
  std::string in;
  wire::RequestParser parser;
  std::string out;
  std::size_t out_pos = 0;
  bool close_after_write = false;
  // Since when it waits for its current request (connection start, or end of the previous
  // response): the longest waiting one is closed first when a cap is reached.
  Clock::time_point waiting_since;
  Clock::time_point deadline;    // reading: of the whole request; writing: of the response
  bool request_started = false;  // a byte of the current request has arrived
  bool continue_sent = false;
  bool eof = false;        // the client shut its sending side
  bool peer_gone = false;  // busy and hung up: close once the handler is done
  bool registered = true;  // in the epoll set
  std::uint64_t served = 0;
  // Busy: whether its request's task is queued, running or cancelled (shared with the task).
  std::shared_ptr<std::atomic<int>> task;
};

class EventLoop {
 public:
  // `router` and `metrics` (may be null) must outlive the loop; `lane_threads`: the threads of
  // each lane, by Server::LaneId.
  EventLoop(const ServerOptions& options, ConnectionMetrics* metrics, const Router& router,
            const std::vector<std::size_t>& lane_threads);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Binds, creates the epoll set and starts the lanes; returns the bound port. Throws
  // std::runtime_error when the bind or the epoll set fails.
  int Open();
  // Serves until RequestStop(); then stops accepting, lets running handlers finish (queued ones
  // are dropped), and closes every connection.
  void Run();
  // Thread-safe; Run() returns soon after.
  void RequestStop() noexcept;

 private:
  struct Completion {
    std::uint64_t id;
    std::string bytes;
    bool keep_alive;
  };

  void PostCompletion(Completion completion);
  void DrainCompletions();
  int WaitMilliseconds(Clock::time_point now) const;
  void Accept();
  std::size_t ConnectionsFrom(const std::string& address) const;
  bool MakeRoom(const std::string& address);
  void Admit(int fd, std::string address);
  Connection* LongestWaiting(const std::string* address);
  // Each of these may close (and destroy) `c`: it is its last use.
  void OnEvent(Connection& c, std::uint32_t events);
  void Read(Connection& c);
  void Parse(Connection& c);
  void Dispatch(Connection& c);
  void StartWrite(Connection& c, std::string bytes, bool close_after,
                  std::chrono::milliseconds timeout);
  void Flush(Connection& c);
  void Linger(Connection& c);
  void Discard(Connection& c);
  void Sweep(Clock::time_point now);
  void SetEvents(const Connection& c, std::uint32_t events) const;
  void SetListenerEvents(std::uint32_t events) const;
  void Unwatch(Connection& c) const;
  // Destroys `c`; `reason`: why the server cut it off, none for an ordinary close.
  void Close(Connection& c, std::optional<CloseReason> reason);
  void CutOff(CloseReason reason) const noexcept;
  template <typename... Args>
  void WarnRateLimited(fmt::format_string<Args...> format, Args&&... args);

  const ServerOptions& options_;
  ConnectionMetrics* const metrics_;
  const Router& router_;
  std::vector<std::unique_ptr<WorkLane>> lanes_;

  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};

  // Loop thread only.
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
  std::unordered_map<std::string, std::size_t> per_address_;
  std::uint64_t next_id_;
  bool accept_paused_ = false;
  Clock::time_point accept_resume_at_;
  Clock::time_point next_warning_;

  std::mutex completions_mu_;
  std::deque<Completion> completions_;
};

}  // namespace workflowd::http
