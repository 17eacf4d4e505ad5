#include "event_intake.hpp"

#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

#include "workflowd/common/clock.hpp"

namespace workflowd::daemon {
namespace {

consumers::KafkaSourceConfig SourceConfigFrom(const Config& config) {
  consumers::KafkaSourceConfig kc;
  kc.brokers = config.kafka.brokers;
  kc.group_id = config.kafka.group_id;
  kc.topics = config.kafka.topics;
  kc.properties = config.kafka.properties;
  kc.commit_interval = config.kafka.commit_interval;
  kc.client_id = "workflowd-" + config.instance_id;
  return kc;
}

}  // namespace

decoding::DecoderConfig DecoderFrom(const KafkaConfig& k) {
  decoding::DecoderConfig d;
  d.mode = k.format == "cloudevents" ? decoding::DecoderConfig::Mode::kCloudEvents
           : k.format == "flat"      ? decoding::DecoderConfig::Mode::kFlat
                                     : decoding::DecoderConfig::Mode::kAuto;
  d.flat.id = k.flat.id;
  d.flat.type = k.flat.event_name;
  d.flat.tenant = k.flat.tenant;
  d.flat.environment = k.flat.environment;
  d.flat.time = k.flat.time;
  d.flat.data = k.flat.data;
  d.flat.source = k.flat.source;
  d.max_record_bytes = k.max_record_bytes;
  return d;
}

EventIntake::EventIntake(const Config& config, const matching::DefinitionIndexHolder& index,
                         pipeline::PipelineMetrics& metrics)
    : source_(SourceConfigFrom(config)),
      dead_letters_(config.kafka.brokers, config.kafka.dlq_topic, config.kafka.properties,
                    config.kafka.max_record_bytes,
                    pipeline::EventPipelineOptions{}.dead_letter_timeout),
      db_(config.database.url, config.database.connect_timeout),
      executions_(db_),
      record_source_(source_),
      dead_letter_sink_(dead_letters_),
      writer_(executions_, config.instance_id, config.dispatch.lease),
      pipeline_(
          [&config] {
            pipeline::EventPipelineOptions po;
            po.decoder = DecoderFrom(config.kafka);
            po.consumer_group = config.kafka.group_id;
            po.batch_size = config.kafka.batch_size;
            po.batch_timeout = config.kafka.batch_timeout;
            return po;
          }(),
          record_source_, dead_letter_sink_, writer_, index, metrics, SystemClock::Instance()) {}

EventIntake::~EventIntake() {
  // A way out before the shutdown sequence (an exception): the pipeline stops too.
  if (stop_ != nullptr) *stop_ = true;
  Stop();
}

void EventIntake::Start(std::atomic<bool>& stop) {
  stop_ = &stop;
  thread_ = std::thread([this, &stop] {
    try {
      pipeline_.Run(stop);
    } catch (const std::exception& e) {
      spdlog::critical("event pipeline failed: {}", e.what());
      failed_ = true;
      stop = true;
    }
  });
}

void EventIntake::Stop() noexcept {
  if (thread_.joinable()) thread_.join();
}

}  // namespace workflowd::daemon
