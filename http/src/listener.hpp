// The listening socket and socket addresses of the server.
#pragma once

#include <sys/socket.h>

#include <string>

namespace workflowd::http {

// Binds and listens on host:port (non-blocking, close-on-exec) with SO_REUSEADDR (a restart does
// not wait for TIME_WAIT) and without SO_REUSEPORT (a second server on a port in use gets a clear
// error instead of silently sharing it). Returns the listening socket; throws std::runtime_error
// "<what> cannot bind to host:port: <why>".
int Listen(const std::string& what, const std::string& host, int port);

// The port a bound socket has (the picked one after binding port 0); 0 when unknown.
int BoundPort(int fd);

// The IP address of a peer as text ("127.0.0.1", "::1"); "unknown" for other families.
std::string AddressOf(const sockaddr_storage& addr);

// "host:port", or "[host]:port" for an IPv6 address.
std::string HostPort(const std::string& host, int port);

}  // namespace workflowd::http
