#include "event_loop.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "listener.hpp"

namespace workflowd::http {
namespace {

constexpr std::uint64_t kListenerId = 0;
constexpr std::uint64_t kWakeId = 1;
constexpr std::uint64_t kFirstConnectionId = 2;
// The loop wakes at least this often to check deadlines and the stop flag.
constexpr std::chrono::milliseconds kMaxWait{500};
// After running out of file descriptors, accepting pauses this long (or until one is freed).
constexpr std::chrono::milliseconds kAcceptPause{100};
// A 408 or a refusal of a request must be taken by the client within this time.
constexpr std::chrono::milliseconds kErrorWriteTimeout{1000};
constexpr std::chrono::seconds kCapWarningInterval{60};
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr int kAcceptBatch = 64;
// States of a request's task (Connection::task).
constexpr int kTaskQueued = 0;
constexpr int kTaskRunning = 1;
constexpr int kTaskCancelled = 2;

// The current errno as text (strerror is not thread-safe).
std::string ErrnoText() { return std::generic_category().message(errno); }

std::string Serialize(const Response& res, bool keep_alive, bool head_only) {
  return wire::Serialize(wire::Response{.status = res.status,
                                        .content_type = res.content_type,
                                        .body = res.body,
                                        .headers = res.headers},
                         keep_alive, head_only);
}

Request ToRequest(wire::Request&& req) {
  Request request;
  request.method = std::move(req.method);
  request.path = std::move(req.path);
  for (auto& [key, value] : req.query) request.query.emplace(std::move(key), std::move(value));
  for (auto& [key, value] : req.headers) request.headers.emplace(std::move(key), std::move(value));
  request.body = std::move(req.body);
  return request;
}

}  // namespace

EventLoop::EventLoop(const ServerOptions& options, ConnectionMetrics* metrics, const Router& router,
                     const std::vector<std::size_t>& lane_threads)
    : options_(options), metrics_(metrics), router_(router), next_id_(kFirstConnectionId) {
  for (std::size_t threads : lane_threads) lanes_.push_back(std::make_unique<WorkLane>(threads));
}

EventLoop::~EventLoop() {
  for (auto& lane : lanes_) lane->Stop();
  while (!connections_.empty()) Close(*connections_.begin()->second, std::nullopt);
  for (int fd : {listen_fd_, epoll_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

int EventLoop::Open() {
  listen_fd_ = Listen(options_.name, options_.bind_address, options_.port);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    throw std::runtime_error(options_.name + ": cannot create its event loop: " + ErrnoText());
  }
  for (auto [fd, id] : {std::pair{listen_fd_, kListenerId}, std::pair{wake_fd_, kWakeId}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      throw std::runtime_error(options_.name + ": cannot create its event loop: " + ErrnoText());
    }
  }
  for (auto& lane : lanes_) lane->Start();
  return BoundPort(listen_fd_);
}

void EventLoop::RequestStop() noexcept {
  stopping_.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

void EventLoop::PostCompletion(Completion completion) {
  {
    std::lock_guard lock(completions_mu_);
    completions_.push_back(std::move(completion));
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

void EventLoop::Run() {
  std::array<epoll_event, 128> events{};
  while (!stopping_.load()) {
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                             WaitMilliseconds(Clock::now()));
    if (n < 0 && errno != EINTR) {
      spdlog::error("{}: epoll_wait failed: {}", options_.name, ErrnoText());
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t id = events[i].data.u64;
      if (id == kListenerId) {
        Accept();
      } else if (id == kWakeId) {
        std::uint64_t count = 0;
        [[maybe_unused]] const ssize_t r = ::read(wake_fd_, &count, sizeof(count));
        DrainCompletions();
      } else if (auto it = connections_.find(id); it != connections_.end()) {
        OnEvent(*it->second, events[i].events);
      }
    }
    Sweep(Clock::now());
  }
  // Stopping: no new connections, let running handlers finish, then close everything.
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  ::close(listen_fd_);
  listen_fd_ = -1;
  for (auto& lane : lanes_) lane->Stop();
  while (!connections_.empty()) Close(*connections_.begin()->second, std::nullopt);
}

int EventLoop::WaitMilliseconds(Clock::time_point now) const {
  Clock::time_point next = now + kMaxWait;
  if (accept_paused_) next = std::min(next, accept_resume_at_);
  for (const auto& [id, connection] : connections_) {
    if (connection->state != Connection::State::kBusy) next = std::min(next, connection->deadline);
  }
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  return static_cast<int>(std::max<std::int64_t>(0, wait));
}

void EventLoop::Accept() {
  // A bounded batch per wake: the loop reads the connections it admitted before a burst of new
  // ones could push them out again (the listener stays readable for the rest).
  for (int accepted = 0; accepted < kAcceptBatch;) {
    sockaddr_storage addr{};
    socklen_t length = sizeof(addr);
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &length,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Admit(fd, AddressOf(addr));
      ++accepted;
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      // Out of descriptors or memory: make room, or stop accepting for a moment (the listener
      // would otherwise wake the loop again at once).
      if (Connection* victim = LongestWaiting(nullptr)) {
        Close(*victim, CloseReason::kEvicted);
        continue;
      }
      WarnRateLimited("cannot accept a connection: {}", ErrnoText());
      SetListenerEvents(0);
      accept_paused_ = true;
      accept_resume_at_ = Clock::now() + kAcceptPause;
    }
    return;  // EAGAIN, or an error to retry on the next wake
  }
}

std::size_t EventLoop::ConnectionsFrom(const std::string& address) const {
  auto it = per_address_.find(address);
  return it == per_address_.end() ? 0 : it->second;
}

bool EventLoop::MakeRoom(const std::string& address) {
  if (ConnectionsFrom(address) >= options_.max_connections_per_address) {
    Connection* victim = LongestWaiting(&address);
    if (victim == nullptr) return false;
    WarnRateLimited("{} has {} open connections (the cap): closed its longest-waiting one", address,
                    ConnectionsFrom(address));
    Close(*victim, CloseReason::kEvicted);
  }
  if (connections_.size() >= options_.max_connections) {
    Connection* victim = LongestWaiting(nullptr);
    if (victim == nullptr) return false;
    WarnRateLimited("{} open connections (the cap): closed the longest-waiting one, from {}",
                    connections_.size(), victim->address);
    Close(*victim, CloseReason::kEvicted);
  }
  return true;
}

void EventLoop::Admit(int fd, std::string address) {
  if (!MakeRoom(address)) {
    WarnRateLimited("no room for a connection from {}: every connection has a request in progress",
                    address);
    CutOff(CloseReason::kRefused);
    ::close(fd);
    return;
  }
  const int yes = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  const std::uint64_t id = next_id_++;
  auto connection = std::make_unique<Connection>(id, fd, address, options_.limits);
  const Clock::time_point now = Clock::now();
  connection->waiting_since = now;
  connection->deadline = now + options_.request_timeout;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    spdlog::warn("{}: cannot watch a connection: {}", options_.name, ErrnoText());
    ::close(fd);
    return;
  }
  ++per_address_[address];
  Connection& admitted = *connections_.emplace(id, std::move(connection)).first->second;
  if (metrics_ != nullptr) metrics_->Opened();
  // A client usually sends its request right after connecting: take it now, so that a complete
  // request is being answered (and cannot be pushed out by later connections) at once.
  Read(admitted);
}

// The connection (of `address`, or any) that has waited longest for its request, among those
// reading one (or lingering); when there is none, the one whose request has waited longest for a
// worker, which is then cancelled (a flood of complete requests cannot lock probes out either).
// Null when every connection has a request being answered or written.
Connection* EventLoop::LongestWaiting(const std::string* address) {
  auto older = [](const Connection* a, const Connection* b) {
    return b == nullptr || a->waiting_since < b->waiting_since ||
           (a->waiting_since == b->waiting_since && a->id < b->id);
  };
  Connection* oldest = nullptr;
  std::vector<Connection*> queued;
  for (const auto& [id, connection] : connections_) {
    if (address != nullptr && connection->address != *address) continue;
    if (connection->state == Connection::State::kBusy) {
      if (connection->task->load() == kTaskQueued) queued.push_back(connection.get());
      continue;
    }
    if (connection->state == Connection::State::kWriting) continue;
    if (older(connection.get(), oldest)) oldest = connection.get();
  }
  if (oldest != nullptr) return oldest;
  std::sort(queued.begin(), queued.end(),
            [&](const Connection* a, const Connection* b) { return older(a, b); });
  for (Connection* candidate : queued) {
    int expected = kTaskQueued;
    if (candidate->task->compare_exchange_strong(expected, kTaskCancelled)) return candidate;
  }
  return nullptr;
}

void EventLoop::OnEvent(Connection& c, std::uint32_t events) {
  if (c.state == Connection::State::kBusy) {
    if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
      c.peer_gone = true;
      Unwatch(c);
    }
    return;
  }
  if ((events & EPOLLERR) != 0) {
    Close(c, std::nullopt);
  } else if (c.state == Connection::State::kReading) {
    Read(c);
  } else if (c.state == Connection::State::kLingering) {
    Discard(c);
  } else {
    Flush(c);
  }
}

void EventLoop::Read(Connection& c) {
  // Enough to hold the largest acceptable request and see that the next one exceeds it.
  const std::size_t max_buffer =
      options_.limits.max_header_bytes + options_.limits.max_body_bytes + (64 << 10);
  std::array<char, 16384> buffer{};
  while (c.in.size() < max_buffer) {
    const ssize_t n = ::recv(c.fd, buffer.data(), buffer.size(), 0);
    if (n > 0) {
      if (!c.request_started) {
        c.request_started = true;
        // The first request's time runs from the connection's start; later ones' from their
        // first byte.
        if (c.served > 0) c.deadline = Clock::now() + options_.request_timeout;
      }
      c.in.append(buffer.data(), static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < buffer.size()) break;
      continue;
    }
    if (n == 0) {
      c.eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    Close(c, std::nullopt);
    return;
  }
  Parse(c);
}

void EventLoop::Parse(Connection& c) {
  switch (c.parser.Parse(c.in)) {
    case wire::RequestParser::Status::kIncomplete:
      if (c.eof) {
        Close(c, std::nullopt);
      } else if (c.parser.WantsContinue() && !c.continue_sent) {
        c.continue_sent = true;
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        if (::send(c.fd, kContinue.data(), kContinue.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(kContinue.size())) {
          Close(c, std::nullopt);
        }
      }
      return;
    case wire::RequestParser::Status::kError: {
      const Response res = ErrorResponse(c.parser.error_status(), c.parser.error_message());
      spdlog::debug("{}: refused a request from {}: {}", options_.name, c.address,
                    c.parser.error_message());
      StartWrite(c, Serialize(res, false, false), true, kErrorWriteTimeout);
      return;
    }
    case wire::RequestParser::Status::kComplete:
      Dispatch(c);
      return;
  }
}

void EventLoop::Dispatch(Connection& c) {
  c.state = Connection::State::kBusy;
  SetEvents(c, 0);
  auto request = std::make_shared<wire::Request>(std::move(c.parser.request()));
  c.parser.Reset();
  const bool keep_alive = request->keep_alive && !c.eof;
  c.task = std::make_shared<std::atomic<int>>(kTaskQueued);
  std::size_t lane = router_.LaneFor(request->method, request->path);
  if (lane >= lanes_.size()) lane = Server::kDefaultLane;
  lanes_[lane]->Post([this, id = c.id, request, keep_alive, task = c.task] {
    int expected = kTaskQueued;
    if (!task->compare_exchange_strong(expected, kTaskRunning)) return;  // its client was closed
    const bool head_only = request->method == "HEAD";
    const Response res = router_.Respond(ToRequest(std::move(*request)));
    PostCompletion(Completion{id, Serialize(res, keep_alive, head_only), keep_alive});
  });
}

void EventLoop::DrainCompletions() {
  std::deque<Completion> ready;
  {
    std::lock_guard lock(completions_mu_);
    ready.swap(completions_);
  }
  for (Completion& completion : ready) {
    auto it = connections_.find(completion.id);
    if (it == connections_.end()) continue;
    Connection& c = *it->second;
    if (c.peer_gone) {
      Close(c, std::nullopt);
      continue;
    }
    ++c.served;
    StartWrite(c, std::move(completion.bytes), !completion.keep_alive, options_.write_timeout);
  }
}

void EventLoop::StartWrite(Connection& c, std::string bytes, bool close_after,
                           std::chrono::milliseconds timeout) {
  c.state = Connection::State::kWriting;
  c.out = std::move(bytes);
  c.out_pos = 0;
  c.close_after_write = close_after;
  c.deadline = Clock::now() + timeout;
  Flush(c);
}

void EventLoop::Flush(Connection& c) {
  while (c.out_pos < c.out.size()) {
    const ssize_t n =
        ::send(c.fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_pos += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      SetEvents(c, EPOLLOUT);
      return;
    }
    Close(c, std::nullopt);
    return;
  }
  if (c.close_after_write) {
    Linger(c);
    return;
  }
  // Kept alive: wait for the next request (maybe already buffered: pipelined).
  const Clock::time_point now = Clock::now();
  c.out.clear();
  c.out_pos = 0;
  c.state = Connection::State::kReading;
  c.continue_sent = false;
  c.request_started = !c.in.empty();
  c.waiting_since = now;
  c.deadline = now + (c.in.empty() ? options_.idle_timeout : options_.request_timeout);
  SetEvents(c, EPOLLIN);
  if (!c.in.empty()) Parse(c);
}

void EventLoop::Linger(Connection& c) {
  if (c.eof) {
    Close(c, std::nullopt);
    return;
  }
  ::shutdown(c.fd, SHUT_WR);
  c.state = Connection::State::kLingering;
  c.in.clear();
  c.out.clear();
  c.deadline = Clock::now() + kLingerTime;
  SetEvents(c, EPOLLIN);
}

void EventLoop::Discard(Connection& c) {
  std::array<char, 16384> buffer{};
  for (int reads = 0; reads < 64; ++reads) {  // a flood waits for the next turn
    const ssize_t n = ::recv(c.fd, buffer.data(), buffer.size(), 0);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    Close(c, std::nullopt);  // the client closed too (or the connection broke)
    return;
  }
}

void EventLoop::Sweep(Clock::time_point now) {
  if (accept_paused_ && now >= accept_resume_at_) {
    accept_paused_ = false;
    SetListenerEvents(EPOLLIN);
  }
  std::vector<std::uint64_t> expired;
  for (const auto& [id, connection] : connections_) {
    if (connection->state != Connection::State::kBusy && now >= connection->deadline) {
      expired.push_back(id);
    }
  }
  for (std::uint64_t id : expired) {
    Connection& c = *connections_.at(id);
    if (c.state == Connection::State::kWriting) {
      Close(c, CloseReason::kWriteTimeout);
    } else if (c.state == Connection::State::kLingering) {
      Close(c, std::nullopt);
    } else if (c.request_started) {
      CutOff(CloseReason::kRequestTimeout);
      StartWrite(c, Serialize(ErrorResponse(408), false, false), true, kErrorWriteTimeout);
    } else {
      // Nothing of a request: a kept-alive connection's idle end is normal.
      Close(c, c.served == 0 ? std::optional(CloseReason::kRequestTimeout) : std::nullopt);
    }
  }
}

void EventLoop::SetEvents(const Connection& c, std::uint32_t events) const {
  if (!c.registered) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = c.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void EventLoop::SetListenerEvents(std::uint32_t events) const {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = kListenerId;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
}

void EventLoop::Unwatch(Connection& c) const {
  if (!c.registered) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  c.registered = false;
}

void EventLoop::Close(Connection& c, std::optional<CloseReason> reason) {
  if (reason) CutOff(*reason);
  Unwatch(c);
  ::close(c.fd);
  if (auto it = per_address_.find(c.address); it != per_address_.end() && --it->second == 0) {
    per_address_.erase(it);
  }
  if (metrics_ != nullptr) metrics_->Closed();
  connections_.erase(c.id);
}

void EventLoop::CutOff(CloseReason reason) const noexcept {
  if (metrics_ != nullptr) metrics_->CutOff(reason);
}

template <typename... Args>
void EventLoop::WarnRateLimited(fmt::format_string<Args...> format, Args&&... args) {
  const Clock::time_point now = Clock::now();
  if (now < next_warning_) return;
  next_warning_ = now + kCapWarningInterval;
  spdlog::warn("{}: {} (said at most once a minute)", options_.name,
               fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace workflowd::http
