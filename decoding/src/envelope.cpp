#include "workflowd/decoding/envelope.hpp"

namespace workflowd::decoding {

std::string_view ToString(EnvelopeFormat format) {
  switch (format) {
    case EnvelopeFormat::kCloudEventsStructured:
      return "cloudevents_structured";
    case EnvelopeFormat::kCloudEventsBinary:
      return "cloudevents_binary";
    case EnvelopeFormat::kFlat:
      return "flat";
  }
  return "unknown";
}

matching::EventView ViewOf(const Envelope& envelope,
                           std::vector<matching::Header>& header_storage) {
  header_storage.clear();
  header_storage.reserve(envelope.headers.size());
  for (const auto& [name, value] : envelope.headers) header_storage.push_back({name, value});
  matching::EventView view;
  view.id = envelope.id;
  view.type = envelope.type;
  view.source = envelope.source;
  view.subject = envelope.subject;
  view.tenant = envelope.tenant;
  view.environment = envelope.environment;
  view.time = envelope.time_text;
  view.data = envelope.data.is_null() ? nullptr : &envelope.data;
  view.headers = header_storage;
  return view;
}

}  // namespace workflowd::decoding
