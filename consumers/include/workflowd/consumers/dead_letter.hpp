// A dead letter: a record that cannot be processed, as it goes to the dead-letter topic (its key,
// value and headers as they were, plus workflowd's reason headers). Planned by the pipeline,
// produced by the Kafka client; a plain value with no Kafka dependency (it belongs with the event
// decoding and its dead-letter reasons).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace workflowd::consumers {

struct DeadLetter {
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
};

}  // namespace workflowd::consumers
