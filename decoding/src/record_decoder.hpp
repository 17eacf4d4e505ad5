// The decoder of one record: the dispatch between formats and the steps they share are in
// decoder.cpp, each format in its own file (structured.cpp, binary.cpp, flat.cpp), the attribute
// rules they all apply in attributes.cpp.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "json_document.hpp"
#include "workflowd/decoding/decoder.hpp"

namespace workflowd::decoding::detail {

// The members of a structured CloudEvent, from one pass over the object. Of a repeated name the
// last value counts, as in nlohmann::json (which the decoder used before).
struct StructuredMembers {
  std::optional<dom::element> specversion, id, source, type, subject, time, datacontenttype, data,
      data_base64, tenant, environment;
  // The other members by name, in nlohmann::json's order (bytewise), which decides which of
  // several bad extension attributes the detail names.
  std::map<std::string_view, dom::element> others;
};

class RecordDecoder {
 public:
  // Decodes into `envelope`, which must be empty (new or ResetForReuse), parsing with `parsers`.
  // With `pending`, the data is not built but left there (for StagedDecoder::BuildData) and
  // `wants_data` is not asked.
  RecordDecoder(const RawRecord& record, const DecoderConfig& config,
                const std::function<DataNeed(const Envelope&)>* wants_data, Parsers& parsers,
                PendingData* pending, Envelope& envelope)
      : record_(record),
        config_(config),
        wants_data_(wants_data),
        parsers_(parsers),
        pending_(pending),
        envelope_(envelope) {}

  // False with failure() set when the record is a dead letter.
  bool Run() { return Decode(); }
  Failure& failure() { return failure_; }

 private:
  bool Fail(DeadLetterReason reason, std::string detail) {
    failure_ = Failure{reason, std::move(detail)};
    return false;
  }
  bool Fail(Failure failure) {
    failure_ = std::move(failure);
    return false;
  }

  // Asked once everything but the data is decoded and validated.
  DataNeed WantsData() const {
    return wants_data_ == nullptr ? DataNeed{} : (*wants_data_)(envelope_);
  }

  // decoder.cpp: the format of the record, and what every format does with it.
  bool Decode();
  bool CheckSize();
  void CopyPlainHeaders();
  // JSON data (already validated by its parse); built only when wanted (or left pending).
  bool SetJsonData(dom::element data);
  // Non-JSON data (BuildBytesData); built only when wanted (or left pending).
  bool SetBytesAsData(std::string_view bytes, const std::string_view* base64);

  // binary.cpp: CloudEvents, binary mode.
  // Collects ce_* attributes and the content type; rejects conflicting repeats.
  bool ScanHeaders();
  std::optional<std::string_view> CeHeader(const std::string& name);
  bool RequiredCeHeader(const std::string& name, DeadLetterReason missing, std::string& out);
  bool DecodeBinary();

  // structured.cpp: CloudEvents, structured mode.
  bool IsCoreAttribute(std::string_view name) const;
  static StructuredMembers CollectMembers(dom::object event, const DecoderConfig& config);
  bool RequiredMember(const std::optional<dom::element>& value, std::string_view name,
                      DeadLetterReason missing, std::string& out);
  bool OptionalStringMember(const std::optional<dom::element>& value, std::string_view name,
                            std::string& out);
  bool DecodeStructured(dom::object event);
  bool SetStructuredData(const StructuredMembers& m);

  // flat.cpp: flat envelopes.
  // A required string field; a null value counts as missing.
  bool RequiredFlatString(dom::element document, const std::string& path, DeadLetterReason missing,
                          std::string& out, bool allow_integer = false);
  bool DecodeFlat(dom::element document);
  bool SetFlatTime(dom::element time, const std::string& path);

  // attributes.cpp: shared by all formats.
  bool SetTime(std::string_view text, std::string_view field);
  // Field formats shared by all envelope kinds. `prefix` is "ce_" in binary mode, for details.
  bool ValidateCommon(std::string_view prefix);

  const RawRecord& record_;
  const DecoderConfig& config_;
  const std::function<DataNeed(const Envelope&)>* wants_data_;  // null: all, always
  Parsers& parsers_;
  PendingData* pending_;  // not null: leave the data there
  Envelope& envelope_;
  Failure failure_;

  bool has_content_type_ = false;
  std::string_view content_type_;
  bool has_ce_specversion_header_ = false;
  std::map<std::string, std::string_view> ce_headers_;  // attribute name -> value
};

}  // namespace workflowd::decoding::detail
