#include "workflowd/http/server.hpp"

#include <spdlog/spdlog.h>

#include <stdexcept>
#include <utility>

#include "event_loop.hpp"
#include "listener.hpp"

namespace workflowd::http {

std::string_view CloseReasonName(CloseReason reason) noexcept {
  switch (reason) {
    case CloseReason::kRequestTimeout:
      return "request_timeout";
    case CloseReason::kWriteTimeout:
      return "write_timeout";
    case CloseReason::kEvicted:
      return "evicted";
    case CloseReason::kRefused:
      return "refused";
  }
  return "unknown";
}

Server::Server(ServerOptions options, ConnectionMetrics* metrics)
    : options_(std::move(options)), metrics_(metrics), lane_threads_{options_.handler_threads} {}

Server::~Server() { Stop(); }

Server::LaneId Server::AddLane(std::size_t threads) {
  if (started_) throw std::logic_error(options_.name + ": AddLane must be called before Start()");
  lane_threads_.push_back(threads);
  return lane_threads_.size() - 1;
}

void Server::Handle(const std::string& method, const std::string& path_pattern, Handler handler,
                    LaneId lane) {
  if (started_) throw std::logic_error(options_.name + ": Handle must be called before Start()");
  if (lane >= lane_threads_.size()) {
    throw std::invalid_argument("no lane " + std::to_string(lane) + " for " + method + " " +
                                path_pattern);
  }
  router_.Add(method, path_pattern, std::move(handler), lane);
}

void Server::Start() {
  if (started_) throw std::logic_error(options_.name + ": Start called twice");
  if (options_.port < 0 || options_.port > 65535) {
    throw std::runtime_error(options_.name + ": invalid port " + std::to_string(options_.port));
  }
  loop_ = std::make_unique<EventLoop>(options_, metrics_, router_, lane_threads_);
  const int port = loop_->Open();
  started_ = true;
  port_ = port;
  thread_ = std::thread([loop = loop_.get()] { loop->Run(); });
  spdlog::info("{} listening on {}", options_.name, HostPort(options_.bind_address, port_));
}

void Server::Stop() noexcept {
  if (!thread_.joinable()) return;
  loop_->RequestStop();
  try {
    thread_.join();
    spdlog::info("{} on {} stopped", options_.name, HostPort(options_.bind_address, port_));
  } catch (...) {
    // join() only throws on a broken invariant (self-join); nothing sensible to do in a noexcept
    // stop path but to leave.
  }
}

}  // namespace workflowd::http
