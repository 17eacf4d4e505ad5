// Where the event pipeline sends the records it cannot process (the dead-letter topic in the
// daemon, a fake in the unit tests).
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "workflowd/decoding/dead_letter.hpp"

namespace workflowd::pipeline {

// Dead letters that were not all acknowledged. Retryable() when sending them again may succeed
// (the broker is away, a timeout).
class DeadLetterError : public std::runtime_error {
 public:
  DeadLetterError(const std::string& message, bool retryable)
      : std::runtime_error(message), retryable_(retryable) {}
  bool Retryable() const noexcept { return retryable_; }

 private:
  bool retryable_;
};

class DeadLetterSink {
 public:
  virtual ~DeadLetterSink() = default;

  // Sends the letters and returns once every one of them is durable; throws DeadLetterError when
  // not all were acknowledged within `timeout` (a retry sends them all again).
  virtual void SendAll(const std::vector<decoding::DeadLetter>& letters,
                       std::chrono::milliseconds timeout) = 0;

  // Where the letters go, for logs (the dead-letter topic).
  virtual const std::string& destination() const = 0;
};

}  // namespace workflowd::pipeline
