#include "workflowd/metrics/admin_server.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "http_wire.hpp"

namespace workflowd::metrics {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kJsonContentType[] = "application/json";
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

// Non-UTF-8 bytes (a decoded path, an exception message) become U+FFFD instead of throwing.
std::string DumpJson(const nlohmann::json& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  return DumpJson(
      {{"error", {{"code", code}, {"message", message}, {"details", nlohmann::json::object()}}}});
}

struct StatusError {
  std::string code;
  std::string message;
};

// Bodies for errors that the server produces itself (no route, unparsable request, ...).
StatusError ErrorForStatus(int status) {
  switch (status) {
    case 400:
      return {"bad_request", "malformed HTTP request"};
    case 404:
      return {"not_found", "not found"};
    case 405:
      return {"method_not_allowed", "method not allowed"};
    case 408:
      return {"request_timeout", "the request was not received in time"};
    case 413:
      return {"payload_too_large", "request body too large"};
    case 414:
      return {"uri_too_long", "request URI too long"};
    case 416:
      return {"range_not_satisfiable", "range not satisfiable"};
    case 431:
      return {"headers_too_large", "request headers too large"};
    case 500:
      return {"internal", "internal error"};
    case 501:
      return {"not_implemented", "not implemented"};
    case 503:
      return {"unavailable", "service unavailable"};
    case 505:
      return {"http_version_not_supported", "HTTP version not supported"};
    default:
      return {"http_" + std::to_string(status), "HTTP status " + std::to_string(status)};
  }
}

// The current errno as text (strerror is not thread-safe).
std::string ErrnoText() { return std::generic_category().message(errno); }

std::string HostPort(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

struct CompiledPattern {
  std::string regex;
  std::vector<std::string> param_names;
};

bool IsIdentifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

std::string PatternError(const std::string& pattern, std::string_view problem,
                         const std::string& name) {
  std::string message = "route pattern \"";
  message += pattern;
  message += "\": ";
  message += problem;
  message += " \"";
  message += name;
  message += '"';
  return message;
}

// "/api/v1/workflows/:id" -> "/api/v1/workflows/([^/]+)" with param_names {"id"}.
CompiledPattern CompilePattern(const std::string& pattern) {
  if (pattern.empty() || pattern[0] != '/') {
    throw std::invalid_argument("route pattern \"" + pattern + "\" must start with /");
  }
  CompiledPattern compiled;
  std::set<std::string> seen;
  std::size_t pos = 0;
  while (pos < pattern.size()) {
    // pattern[pos] == '/'
    compiled.regex += '/';
    const std::size_t end = std::min(pattern.find('/', pos + 1), pattern.size());
    const std::string segment = pattern.substr(pos + 1, end - pos - 1);
    if (!segment.empty() && segment[0] == ':') {
      const std::string name = segment.substr(1);
      if (!IsIdentifier(name)) {
        throw std::invalid_argument(PatternError(pattern, "bad parameter name", name));
      }
      if (!seen.insert(name).second) {
        throw std::invalid_argument(PatternError(pattern, "duplicate parameter", name));
      }
      compiled.param_names.push_back(name);
      compiled.regex += "([^/]+)";
    } else {
      for (char c : segment) {
        if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr) compiled.regex += '\\';
        compiled.regex += c;
      }
    }
    pos = end;
  }
  return compiled;
}

nlohmann::json HealthJson(const HealthReport& report) {
  nlohmann::json checks = nlohmann::json::array();
  for (const HealthCheck& check : report.checks) {
    checks.push_back({{"name", check.name}, {"ok", check.ok}, {"detail", check.detail}});
  }
  return {{"status", report.ok ? "ok" : "unavailable"}, {"checks", std::move(checks)}};
}

bool IsKnownMethod(const std::string& method) {
  for (const char* known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    if (method == known) return true;
  }
  return false;
}

std::string AddressOf(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
  } else if (addr.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
  } else {
    return "unknown";
  }
  return text;
}

// A fixed set of threads running posted tasks in order of posting.
class WorkLane {
 public:
  explicit WorkLane(std::size_t threads) : thread_count_(std::max<std::size_t>(1, threads)) {}
  WorkLane(const WorkLane&) = delete;
  WorkLane& operator=(const WorkLane&) = delete;
  ~WorkLane() { Stop(); }

  void Start() {
    for (std::size_t i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { Run(); });
  }
  void Post(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  // Drops the tasks not started and waits for the running ones.
  void Stop() noexcept {
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      dropped.swap(tasks_);
    }
    cv_.notify_all();
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    threads_.clear();
  }

 private:
  void Run() noexcept {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (stopping_) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      try {
        task();
      } catch (const std::exception& e) {
        spdlog::error("admin http: a request task failed: {}", e.what());
      } catch (...) {
        spdlog::error("admin http: a request task failed with an unknown exception");
      }
    }
  }

  const std::size_t thread_count_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // last: joined before the state they use goes
};

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

struct Route {
  std::string method;
  std::regex regex;
  std::vector<std::string> param_names;
  HttpHandler handler;
};

struct Completion {
  std::uint64_t id;
  std::string bytes;
  bool keep_alive;
};

}  // namespace

struct AdminServer::Impl {
  Impl(const AdminServerOptions& options_in, Registry& registry_in, HealthProvider liveness_in,
       HealthProvider readiness_in)
      : options(options_in),
        registry(registry_in),
        scrapes(registry_in.AddCounter("workflowd_admin_scrapes_total",
                                       "Requests served on the admin server's /metrics path.")),
        closed(registry_in.AddCounter(
            "workflowd_admin_connections_closed_total",
            "Admin endpoint connections closed by the server, by reason: request_timeout (the "
            "request did not arrive in time), write_timeout (the client did not take the "
            "response), evicted (closed to make room under the connection caps), refused (no "
            "room: every connection had a request in progress)",
            {"reason"})),
        open_connections(registry_in.AddGauge("workflowd_admin_connections",
                                              "Open connections on the admin endpoint")),
        liveness(std::move(liveness_in)),
        readiness(std::move(readiness_in)),
        health_lane(1),
        metrics_lane(1),
        api_lane(options_in.api_threads) {
    limits.max_body_bytes = options.max_body_bytes;
    for (const char* reason : {"request_timeout", "write_timeout", "evicted", "refused"}) {
      closed.WithLabels({reason});
    }
  }

  ~Impl() {
    for (int fd : {listen_fd, epoll_fd, wake_fd}) {
      if (fd >= 0) ::close(fd);
    }
  }

  // --- handlers (worker threads) --------------------------------------------------------------

  HttpResponse ServeHealth(const HealthProvider& provider, std::string_view what) {
    HealthReport report{.ok = true, .checks = {}};
    if (provider) {
      try {
        report = provider();
      } catch (const std::exception& e) {
        spdlog::warn("admin http: {} provider failed: {}", what, e.what());
        report = {.ok = false,
                  .checks = {{.name = std::string(what), .ok = false, .detail = e.what()}}};
      }
    }
    return HttpResponse{.status = report.ok ? 200 : 503,
                        .content_type = kJsonContentType,
                        .body = DumpJson(HealthJson(report)),
                        .headers = {}};
  }

  HttpResponse ServeMetrics() {
    scrapes.Inc();
    std::vector<std::string> collect_errors;
    std::string body = registry.Serialize(&collect_errors);
    for (const std::string& error : collect_errors) {
      spdlog::warn("admin http: a metrics collect callback failed: {}", error);
    }
    return HttpResponse{
        .status = 200, .content_type = kMetricsContentType, .body = std::move(body), .headers = {}};
  }

  void AddRoute(const std::string& method, const std::string& regex, std::vector<std::string> names,
                HttpHandler handler) {
    if (!IsKnownMethod(method) || method == "HEAD") {
      throw std::invalid_argument("unsupported HTTP method \"" + method + "\"");
    }
    routes.push_back(Route{method, std::regex(regex), std::move(names), std::move(handler)});
  }

  // Routing and the JSON error bodies; never throws for a handler's exception.
  HttpResponse Respond(const wire::Request& req) {
    HttpResponse res;
    if (!IsKnownMethod(req.method)) {
      res.status = 400;
    } else {
      const std::string& method = req.method == "HEAD" ? std::string("GET") : req.method;
      const Route* route = nullptr;
      std::smatch match;
      for (const Route& candidate : routes) {
        if (candidate.method == method && std::regex_match(req.path, match, candidate.regex)) {
          route = &candidate;
          break;
        }
      }
      if (route == nullptr) {
        res.status = 404;
      } else {
        HttpRequest request;
        request.method = req.method;
        request.path = req.path;
        for (std::size_t i = 0; i < route->param_names.size() && i + 1 < match.size(); ++i) {
          request.path_params.emplace(route->param_names[i], match[i + 1].str());
        }
        for (const auto& [key, value] : req.query) request.query.emplace(key, value);
        for (const auto& [key, value] : req.headers) request.headers.emplace(key, value);
        request.body = req.body;
        try {
          res = route->handler(request);
        } catch (const std::exception& e) {
          spdlog::error("admin http: {} {} failed: {}", req.method, req.path, e.what());
          res = HttpResponse{.status = 500, .body = ErrorBody("internal", "internal error")};
        } catch (...) {
          spdlog::error("admin http: {} {} failed with an unknown exception", req.method, req.path);
          res = HttpResponse{.status = 500, .body = ErrorBody("internal", "internal error")};
        }
      }
    }
    if (res.status >= 400 && res.body.empty()) {
      StatusError error = ErrorForStatus(res.status);
      if (res.status == 404) error.message = "no route for " + req.method + " " + req.path;
      res.body = ErrorBody(error.code, error.message);
      res.content_type = kJsonContentType;
    }
    spdlog::debug("admin http: {} {} -> {}", req.method, req.path, res.status);
    return res;
  }

  void PostCompletion(Completion completion) {
    {
      std::lock_guard lock(completions_mu);
      completions.push_back(std::move(completion));
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd, &one, sizeof(one));
  }

  // --- the event loop (its own thread) --------------------------------------------------------

  void Run() {
    std::array<epoll_event, 128> events{};
    while (!stopping.load()) {
      const int n = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                               WaitMilliseconds(Clock::now()));
      if (n < 0 && errno != EINTR) {
        spdlog::error("admin http: epoll_wait failed: {}", ErrnoText());
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      for (int i = 0; i < n; ++i) {
        const std::uint64_t id = events[i].data.u64;
        if (id == kListenerId) {
          Accept();
        } else if (id == kWakeId) {
          std::uint64_t count = 0;
          [[maybe_unused]] const ssize_t r = ::read(wake_fd, &count, sizeof(count));
          DrainCompletions();
        } else if (auto it = connections.find(id); it != connections.end()) {
          OnEvent(*it->second, events[i].events);
        }
      }
      Sweep(Clock::now());
    }
    // Stopping: no new connections, let running handlers finish, then close everything.
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
    ::close(listen_fd);
    listen_fd = -1;
    health_lane.Stop();
    metrics_lane.Stop();
    api_lane.Stop();
    while (!connections.empty()) Close(*connections.begin()->second, nullptr);
  }

  int WaitMilliseconds(Clock::time_point now) const {
    Clock::time_point next = now + kMaxWait;
    if (accept_paused) next = std::min(next, accept_resume_at);
    for (const auto& [id, connection] : connections) {
      if (connection->state != Connection::State::kBusy) {
        next = std::min(next, connection->deadline);
      }
    }
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
    return static_cast<int>(std::max<std::int64_t>(0, wait));
  }

  void Accept() {
    // A bounded batch per wake: the loop reads the connections it admitted before a burst of new
    // ones could push them out again (the listener stays readable for the rest).
    for (int accepted = 0; accepted < kAcceptBatch;) {
      sockaddr_storage addr{};
      socklen_t length = sizeof(addr);
      const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &length,
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
          Close(*victim, "evicted");
          continue;
        }
        WarnRateLimited("cannot accept a connection: {}", ErrnoText());
        SetListenerEvents(0);
        accept_paused = true;
        accept_resume_at = Clock::now() + kAcceptPause;
      }
      return;  // EAGAIN, or an error to retry on the next wake
    }
  }

  std::size_t ConnectionsFrom(const std::string& address) const {
    auto it = per_address.find(address);
    return it == per_address.end() ? 0 : it->second;
  }

  // Makes room under both caps for a connection from `address`; false when there is none.
  bool MakeRoom(const std::string& address) {
    if (ConnectionsFrom(address) >= options.max_connections_per_address) {
      Connection* victim = LongestWaiting(&address);
      if (victim == nullptr) return false;
      WarnRateLimited("{} has {} open connections (the cap): closed its longest-waiting one",
                      address, ConnectionsFrom(address));
      Close(*victim, "evicted");
    }
    if (connections.size() >= options.max_connections) {
      Connection* victim = LongestWaiting(nullptr);
      if (victim == nullptr) return false;
      WarnRateLimited("{} open connections (the cap): closed the longest-waiting one, from {}",
                      connections.size(), victim->address);
      Close(*victim, "evicted");
    }
    return true;
  }

  void Admit(int fd, std::string address) {
    if (!MakeRoom(address)) {
      WarnRateLimited(
          "no room for a connection from {}: every connection has a request in "
          "progress",
          address);
      closed.WithLabels({"refused"}).Inc();
      ::close(fd);
      return;
    }
    const int yes = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    const std::uint64_t id = next_id++;
    auto connection = std::make_unique<Connection>(id, fd, address, limits);
    const Clock::time_point now = Clock::now();
    connection->waiting_since = now;
    connection->deadline = now + options.request_timeout;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      spdlog::warn("admin http: cannot watch a connection: {}", ErrnoText());
      ::close(fd);
      return;
    }
    ++per_address[address];
    Connection& admitted = *connections.emplace(id, std::move(connection)).first->second;
    open_connections.Inc();
    // A client usually sends its request right after connecting: take it now, so that a complete
    // request is being answered (and cannot be pushed out by later connections) at once.
    Read(admitted);
  }

  // The connection (of `address`, or any) that has waited longest for its request, among those
  // reading one (or lingering); when there is none, the one whose request has waited longest for
  // a worker, which is then cancelled (a flood of complete requests cannot lock probes out
  // either). Null when every connection has a request being answered or written.
  Connection* LongestWaiting(const std::string* address) {
    auto older = [](const Connection* a, const Connection* b) {
      return b == nullptr || a->waiting_since < b->waiting_since ||
             (a->waiting_since == b->waiting_since && a->id < b->id);
    };
    Connection* oldest = nullptr;
    std::vector<Connection*> queued;
    for (const auto& [id, connection] : connections) {
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

  // Each handler below may close (and destroy) `c`: it is its last use.
  void OnEvent(Connection& c, std::uint32_t events) {
    if (c.state == Connection::State::kBusy) {
      if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
        c.peer_gone = true;
        Unwatch(c);
      }
      return;
    }
    if ((events & EPOLLERR) != 0) {
      Close(c, nullptr);
    } else if (c.state == Connection::State::kReading) {
      Read(c);
    } else if (c.state == Connection::State::kLingering) {
      Discard(c);
    } else {
      Flush(c);
    }
  }

  void Read(Connection& c) {
    // Enough to hold the largest acceptable request and see that the next one exceeds it.
    const std::size_t max_buffer = limits.max_header_bytes + limits.max_body_bytes + (64 << 10);
    std::array<char, 16384> buffer{};
    while (c.in.size() < max_buffer) {
      const ssize_t n = ::recv(c.fd, buffer.data(), buffer.size(), 0);
      if (n > 0) {
        if (!c.request_started) {
          c.request_started = true;
          // The first request's time runs from the connection's start; later ones' from their
          // first byte.
          if (c.served > 0) c.deadline = Clock::now() + options.request_timeout;
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
      Close(c, nullptr);
      return;
    }
    Parse(c);
  }

  void Parse(Connection& c) {
    switch (c.parser.Parse(c.in)) {
      case wire::RequestParser::Status::kIncomplete:
        if (c.eof) {
          Close(c, nullptr);
        } else if (c.parser.WantsContinue() && !c.continue_sent) {
          c.continue_sent = true;
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          if (::send(c.fd, kContinue.data(), kContinue.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(kContinue.size())) {
            Close(c, nullptr);
          }
        }
        return;
      case wire::RequestParser::Status::kError: {
        StatusError error = ErrorForStatus(c.parser.error_status());
        HttpResponse res{.status = c.parser.error_status(),
                         .body = ErrorBody(error.code, c.parser.error_message())};
        spdlog::debug("admin http: refused a request from {}: {}", c.address,
                      c.parser.error_message());
        StartWrite(c, Serialize(res, false, false), true, kErrorWriteTimeout);
        return;
      }
      case wire::RequestParser::Status::kComplete:
        Dispatch(c);
        return;
    }
  }

  static std::string Serialize(const HttpResponse& res, bool keep_alive, bool head_only) {
    return wire::Serialize(wire::Response{.status = res.status,
                                          .content_type = res.content_type,
                                          .body = res.body,
                                          .headers = res.headers},
                           keep_alive, head_only);
  }

  WorkLane& LaneFor(const std::string& path) {
    if (path == "/healthz" || path == "/readyz") return health_lane;
    if (path == "/metrics") return metrics_lane;
    return api_lane;
  }

  void Dispatch(Connection& c) {
    c.state = Connection::State::kBusy;
    SetEvents(c, 0);
    auto request = std::make_shared<wire::Request>(std::move(c.parser.request()));
    c.parser.Reset();
    const bool keep_alive = request->keep_alive && !c.eof;
    c.task = std::make_shared<std::atomic<int>>(kTaskQueued);
    LaneFor(request->path).Post([this, id = c.id, request, keep_alive, task = c.task] {
      int expected = kTaskQueued;
      if (!task->compare_exchange_strong(expected, kTaskRunning)) return;  // its client was closed
      const bool head_only = request->method == "HEAD";
      PostCompletion(
          Completion{id, Serialize(Respond(*request), keep_alive, head_only), keep_alive});
    });
  }

  void DrainCompletions() {
    std::deque<Completion> ready;
    {
      std::lock_guard lock(completions_mu);
      ready.swap(completions);
    }
    for (Completion& completion : ready) {
      auto it = connections.find(completion.id);
      if (it == connections.end()) continue;
      Connection& c = *it->second;
      if (c.peer_gone) {
        Close(c, nullptr);
        continue;
      }
      ++c.served;
      StartWrite(c, std::move(completion.bytes), !completion.keep_alive, options.write_timeout);
    }
  }

  void StartWrite(Connection& c, std::string bytes, bool close_after,
                  std::chrono::milliseconds timeout) {
    c.state = Connection::State::kWriting;
    c.out = std::move(bytes);
    c.out_pos = 0;
    c.close_after_write = close_after;
    c.deadline = Clock::now() + timeout;
    Flush(c);
  }

  void Flush(Connection& c) {
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
      Close(c, nullptr);
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
    c.deadline = now + (c.in.empty() ? options.idle_timeout : options.request_timeout);
    SetEvents(c, EPOLLIN);
    if (!c.in.empty()) Parse(c);
  }

  void Linger(Connection& c) {
    if (c.eof) {
      Close(c, nullptr);
      return;
    }
    ::shutdown(c.fd, SHUT_WR);
    c.state = Connection::State::kLingering;
    c.in.clear();
    c.out.clear();
    c.deadline = Clock::now() + kLingerTime;
    SetEvents(c, EPOLLIN);
  }

  void Discard(Connection& c) {
    std::array<char, 16384> buffer{};
    for (int reads = 0; reads < 64; ++reads) {  // a flood waits for the next turn
      const ssize_t n = ::recv(c.fd, buffer.data(), buffer.size(), 0);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      Close(c, nullptr);  // the client closed too (or the connection broke)
      return;
    }
  }

  void Sweep(Clock::time_point now) {
    if (accept_paused && now >= accept_resume_at) {
      accept_paused = false;
      SetListenerEvents(EPOLLIN);
    }
    std::vector<std::uint64_t> expired;
    for (const auto& [id, connection] : connections) {
      if (connection->state != Connection::State::kBusy && now >= connection->deadline) {
        expired.push_back(id);
      }
    }
    for (std::uint64_t id : expired) {
      Connection& c = *connections.at(id);
      if (c.state == Connection::State::kWriting) {
        Close(c, "write_timeout");
      } else if (c.state == Connection::State::kLingering) {
        Close(c, nullptr);
      } else if (c.request_started) {
        closed.WithLabels({"request_timeout"}).Inc();
        StatusError error = ErrorForStatus(408);
        HttpResponse res{.status = 408, .body = ErrorBody(error.code, error.message)};
        StartWrite(c, Serialize(res, false, false), true, kErrorWriteTimeout);
      } else {
        // Nothing of a request: a kept-alive connection's idle end is normal.
        Close(c, c.served == 0 ? "request_timeout" : nullptr);
      }
    }
  }

  void SetEvents(const Connection& c, std::uint32_t events) const {
    if (!c.registered) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = c.id;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void SetListenerEvents(std::uint32_t events) const {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = kListenerId;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, listen_fd, &ev);
  }

  void Unwatch(Connection& c) const {
    if (!c.registered) return;
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
    c.registered = false;
  }

  // Destroys `c`. `reason`: the label of workflowd_admin_connections_closed_total, or null for an
  // ordinary close.
  void Close(Connection& c, const char* reason) {
    if (reason != nullptr) closed.WithLabels({reason}).Inc();
    Unwatch(c);
    ::close(c.fd);
    if (auto it = per_address.find(c.address); it != per_address.end() && --it->second == 0) {
      per_address.erase(it);
    }
    open_connections.Dec();
    connections.erase(c.id);
  }

  template <typename... Args>
  void WarnRateLimited(fmt::format_string<Args...> format, Args&&... args) {
    const Clock::time_point now = Clock::now();
    if (now < next_warning) return;
    next_warning = now + kCapWarningInterval;
    spdlog::warn("admin http: {} (said at most once a minute)",
                 fmt::format(format, std::forward<Args>(args)...));
  }

  const AdminServerOptions& options;
  wire::Limits limits;
  Registry& registry;
  Counter& scrapes;
  CounterFamily& closed;
  Gauge& open_connections;
  HealthProvider liveness;
  HealthProvider readiness;
  std::vector<Route> routes;

  int listen_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::atomic<bool> stopping{false};

  // Loop thread only.
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections;
  std::unordered_map<std::string, std::size_t> per_address;
  std::uint64_t next_id = kFirstConnectionId;
  bool accept_paused = false;
  Clock::time_point accept_resume_at;
  Clock::time_point next_warning;

  std::mutex completions_mu;
  std::deque<Completion> completions;

  WorkLane health_lane;
  WorkLane metrics_lane;
  WorkLane api_lane;
};

AdminServer::AdminServer(AdminServerOptions options, Registry& registry, HealthProvider liveness,
                         HealthProvider readiness)
    : options_(std::move(options)),
      impl_(std::make_unique<Impl>(options_, registry, std::move(liveness), std::move(readiness))) {
  Impl* impl = impl_.get();
  impl->AddRoute("GET", "/metrics", {},
                 [impl](const HttpRequest&) { return impl->ServeMetrics(); });
  impl->AddRoute("GET", "/healthz", {}, [impl](const HttpRequest&) {
    return impl->ServeHealth(impl->liveness, "liveness");
  });
  impl->AddRoute("GET", "/readyz", {}, [impl](const HttpRequest&) {
    return impl->ServeHealth(impl->readiness, "readiness");
  });
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Handle(const std::string& method, const std::string& path_pattern,
                         HttpHandler handler) {
  if (started_) throw std::logic_error("AdminServer::Handle must be called before Start()");
  if (!handler) throw std::invalid_argument("empty handler for " + method + " " + path_pattern);
  CompiledPattern compiled = CompilePattern(path_pattern);
  impl_->AddRoute(method, compiled.regex, std::move(compiled.param_names), std::move(handler));
}

namespace {

// Binds and listens on host:port with SO_REUSEADDR (a restart does not wait for TIME_WAIT) and
// without SO_REUSEPORT (a second server on a port in use gets a clear error instead of silently
// sharing it). Returns the listening socket; throws std::runtime_error naming host:port.
int Listen(const std::string& host, int port) {
  const std::string where = HostPort(host, port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found) != 0 ||
      found == nullptr) {
    throw std::runtime_error("admin HTTP server cannot bind to " + where +
                             ": the address cannot be resolved or used");
  }
  int error = 0;
  int fd = -1;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) break;
    error = errno;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(found);
  if (fd < 0) {
    throw std::runtime_error("admin HTTP server cannot bind to " + where + ": " +
                             std::generic_category().message(error));
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t length = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) return 0;
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  }
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return 0;
}

}  // namespace

void AdminServer::Start() {
  if (started_) throw std::logic_error("AdminServer::Start called twice");
  const std::string& host = options_.bind_address;
  if (options_.port < 0 || options_.port > 65535) {
    throw std::runtime_error("admin HTTP server: invalid port " + std::to_string(options_.port));
  }
  Impl& impl = *impl_;
  impl.listen_fd = Listen(host, options_.port);
  impl.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  impl.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl.epoll_fd < 0 || impl.wake_fd < 0) {
    throw std::runtime_error(std::string("admin HTTP server: cannot create its event loop: ") +
                             ErrnoText());
  }
  for (auto [fd, id] : {std::pair{impl.listen_fd, kListenerId}, std::pair{impl.wake_fd, kWakeId}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(impl.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      throw std::runtime_error(std::string("admin HTTP server: cannot create its event loop: ") +
                               ErrnoText());
    }
  }
  started_ = true;
  port_ = BoundPort(impl.listen_fd);
  impl.health_lane.Start();
  impl.metrics_lane.Start();
  impl.api_lane.Start();
  thread_ = std::thread([&impl] { impl.Run(); });
  spdlog::info("admin HTTP server listening on {}", HostPort(host, port_));
}

void AdminServer::Stop() noexcept {
  if (!thread_.joinable()) return;
  impl_->stopping.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(impl_->wake_fd, &one, sizeof(one));
  try {
    thread_.join();
    spdlog::info("admin HTTP server on {} stopped", HostPort(options_.bind_address, port_));
  } catch (...) {
    // join() only throws on a broken invariant (self-join); nothing sensible to do in a noexcept
    // stop path but to leave.
  }
}

}  // namespace workflowd::metrics
