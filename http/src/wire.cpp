#include "wire.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace workflowd::http::wire {
namespace {

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

// RFC 9110 tchar.
bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits "a=1&b=x+y" into decoded pairs; a key without '=' gets an empty value.
std::vector<std::pair<std::string, std::string>> ParseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      out.emplace_back(DecodeUrl(part, true), "");
    } else {
      out.emplace_back(DecodeUrl(part.substr(0, eq), true), DecodeUrl(part.substr(eq + 1), true));
    }
  }
  return out;
}

}  // namespace

std::string DecodeUrl(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexDigit(s[i + 1]) >= 0 && HexDigit(s[i + 2]) >= 0) {
      out += static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2]));
      i += 2;
    } else if (s[i] == '+' && plus_as_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

RequestParser::Status RequestParser::Fail(int status, std::string message) {
  error_status_ = status;
  error_message_ = std::move(message);
  return Status::kError;
}

void RequestParser::Reset() {
  request_ = Request();
  head_done_ = false;
  scanned_ = 0;
  body_start_ = 0;
  chunked_ = false;
  content_length_ = 0;
  chunk_pos_ = 0;
  wants_continue_ = false;
  error_status_ = 0;
  error_message_.clear();
}

RequestParser::Status RequestParser::Parse(std::string& in) {
  if (error_status_ != 0) return Status::kError;
  if (!head_done_) {
    // Empty lines before a request line are ignored (RFC 9112 2.2).
    if (scanned_ == 0) {
      const std::size_t first = in.find_first_not_of("\r\n");
      in.erase(0, first == std::string::npos ? in.size() : first);
      if (in.empty()) return Status::kIncomplete;
    }
    const std::size_t from = scanned_ > 2 ? scanned_ - 2 : 0;
    const std::size_t lf_lf = in.find("\n\n", from);
    const std::size_t lf_crlf = in.find("\n\r\n", from);
    const std::size_t end = std::min(lf_lf, lf_crlf);
    const std::size_t first_lf = in.find('\n');
    if ((first_lf == std::string::npos ? in.size() : first_lf) > limits_.max_request_line) {
      return Fail(414, "request line too long");
    }
    if (end == std::string::npos) {
      scanned_ = in.size();
      if (in.size() > limits_.max_header_bytes) return Fail(431, "request headers too large");
      return Status::kIncomplete;
    }
    const std::size_t head_size = end + (end == lf_lf ? 2 : 3);
    if (head_size > limits_.max_header_bytes) return Fail(431, "request headers too large");
    if (Status s = ParseHead(std::string_view{in}.substr(0, end)); s != Status::kIncomplete) {
      return s;
    }
    head_done_ = true;
    body_start_ = head_size;
    chunk_pos_ = head_size;
  }
  if (chunked_) return ParseChunked(in);
  if (in.size() > body_start_) wants_continue_ = false;
  if (in.size() - body_start_ < content_length_) return Status::kIncomplete;
  request_.body = in.substr(body_start_, content_length_);
  in.erase(0, body_start_ + content_length_);
  wants_continue_ = false;
  return Status::kComplete;
}

// `head`: the request line and the header lines, without the blank line that ends them.
// Returns kIncomplete when the head is good (the body is still to come).
RequestParser::Status RequestParser::ParseHead(std::string_view head) {
  std::vector<std::string_view> lines;
  while (true) {
    const std::size_t lf = head.find('\n');
    lines.push_back(StripCr(head.substr(0, lf)));
    if (lf == std::string_view::npos) break;
    head = head.substr(lf + 1);
  }
  if (lines.size() - 1 > limits_.max_headers) return Fail(431, "too many request headers");

  // Request line: METHOD SP target SP HTTP/1.x
  const std::string_view line = lines[0];
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Fail(400, "malformed request line");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method) || target.empty()) return Fail(400, "malformed request line");
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Fail(400, "malformed request target");
    }
  }
  bool http11 = false;
  if (version == "HTTP/1.1") {
    http11 = true;
  } else if (version != "HTTP/1.0") {
    return Fail(version.substr(0, 5) == "HTTP/" ? 505 : 400, "unsupported HTTP version");
  }
  request_.method = std::string(method);
  request_.target = std::string(target);

  bool has_length = false;
  bool has_encoding = false;
  bool close = false;
  bool keep_alive = false;
  bool expect_continue = false;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const std::string_view header = lines[i];
    if (!header.empty() && (header[0] == ' ' || header[0] == '\t')) {
      return Fail(400, "obsolete header line folding");
    }
    const std::size_t colon = header.find(':');
    if (colon == std::string_view::npos || !IsToken(header.substr(0, colon))) {
      return Fail(400, "malformed header line");
    }
    const std::string_view value = Trim(header.substr(colon + 1));
    for (char c : value) {
      if (c == '\0' || c == '\r' || c == '\n') return Fail(400, "malformed header value");
    }
    std::string name = ToLower(header.substr(0, colon));
    if (name == "content-length") {
      if (value.empty() || value.size() > 18 ||
          !std::all_of(value.begin(), value.end(),
                       [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
        return Fail(400, "malformed Content-Length");
      }
      const std::size_t length = std::stoull(std::string(value));
      if (has_length && length != content_length_) return Fail(400, "conflicting Content-Length");
      has_length = true;
      content_length_ = length;
    } else if (name == "transfer-encoding") {
      if (has_encoding || ToLower(value) != "chunked") {
        return Fail(501, "only the chunked transfer coding is supported");
      }
      has_encoding = true;
    } else if (name == "connection") {
      std::string_view tokens = value;
      while (!tokens.empty()) {
        const std::size_t comma = tokens.find(',');
        const std::string token = ToLower(Trim(tokens.substr(0, comma)));
        close = close || token == "close";
        keep_alive = keep_alive || token == "keep-alive";
        tokens = comma == std::string_view::npos ? std::string_view() : tokens.substr(comma + 1);
      }
    } else if (name == "expect") {
      expect_continue = ToLower(value) == "100-continue";
    }
    request_.headers.emplace_back(std::move(name), std::string(value));
  }
  if (has_length && has_encoding) {
    return Fail(400, "both Content-Length and Transfer-Encoding");
  }
  if (content_length_ > limits_.max_body_bytes) return Fail(413, "request body too large");
  chunked_ = has_encoding;
  request_.keep_alive = http11 ? !close : keep_alive && !close;
  wants_continue_ = http11 && expect_continue && (chunked_ || content_length_ > 0);

  // Origin form ("/path?query"), absolute form ("http://host/path"), or "*".
  std::string_view path = target;
  if (path.substr(0, 7) == "http://" || path.substr(0, 8) == "https://") {
    const std::size_t authority = path.find("//") + 2;
    const std::size_t slash = path.find_first_of("/?", authority);
    path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
  } else if (path != "*" && path[0] != '/') {
    return Fail(400, "malformed request target");
  }
  path = path.substr(0, path.find('#'));
  const std::size_t question = path.find('?');
  if (question != std::string_view::npos) {
    request_.query = ParseQuery(path.substr(question + 1));
    path = path.substr(0, question);
  }
  request_.path = path.empty() ? std::string("/") : DecodeUrl(path, false);
  return Status::kIncomplete;
}

RequestParser::Status RequestParser::ParseChunked(std::string& in) {
  constexpr std::size_t kMaxChunkLine = 1024;
  if (in.size() > body_start_) wants_continue_ = false;
  std::size_t pos = chunk_pos_;
  while (true) {
    const std::size_t lf = in.find('\n', pos);
    if (lf == std::string::npos) {
      if (in.size() - pos > kMaxChunkLine) return Fail(400, "malformed chunk size line");
      return Status::kIncomplete;
    }
    std::string_view size_line = StripCr(std::string_view{in}.substr(pos, lf - pos));
    size_line = Trim(size_line.substr(0, size_line.find(';')));
    if (size_line.empty() || size_line.size() > 15) return Fail(400, "malformed chunk size");
    std::size_t size = 0;
    for (char c : size_line) {
      const int digit = HexDigit(c);
      if (digit < 0) return Fail(400, "malformed chunk size");
      size = size * 16 + static_cast<std::size_t>(digit);
    }
    if (size == 0) {
      // Trailer lines (ignored) up to an empty line.
      std::size_t line_start = lf + 1;
      while (true) {
        const std::size_t end = in.find('\n', line_start);
        if (end == std::string::npos) {
          if (in.size() - lf > limits_.max_header_bytes) return Fail(431, "trailers too large");
          return Status::kIncomplete;
        }
        const bool empty =
            StripCr(std::string_view{in}.substr(line_start, end - line_start)).empty();
        line_start = end + 1;
        if (empty) break;
      }
      in.erase(0, line_start);
      return Status::kComplete;
    }
    if (request_.body.size() + size > limits_.max_body_bytes) {
      return Fail(413, "request body too large");
    }
    const std::size_t data = lf + 1;
    if (in.size() < data + size + 1) return Status::kIncomplete;
    std::size_t next = data + size;
    if (in[next] == '\r') {
      if (in.size() < next + 2) return Status::kIncomplete;
      ++next;
    }
    if (in[next] != '\n') return Fail(400, "malformed chunk");
    request_.body.append(in, data, size);
    pos = next + 1;
    chunk_pos_ = pos;
  }
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

std::string Serialize(const Response& response, bool keep_alive, bool head_only) {
  const int status = response.status;
  const bool no_body = status < 200 || status == 204 || status == 304;
  std::string out = "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += ReasonPhrase(status);
  out += "\r\n";
  if (!no_body) {
    if (!response.content_type.empty()) {
      out += "Content-Type: ";
      out += response.content_type;
      out += "\r\n";
    }
    out += "Content-Length: ";
    out += std::to_string(response.body.size());
    out += "\r\n";
  }
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [name, value] : response.headers) {
    // Handlers' headers never split the response or override its framing.
    const std::string lower = ToLower(name);
    if (!IsToken(name) || value.find_first_of("\r\n") != std::string::npos ||
        lower == "content-length" || lower == "connection" || lower == "transfer-encoding" ||
        (lower == "content-type" && !response.content_type.empty())) {
      continue;
    }
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
  if (!head_only && !no_body) out += response.body;
  return out;
}

}  // namespace workflowd::http::wire
