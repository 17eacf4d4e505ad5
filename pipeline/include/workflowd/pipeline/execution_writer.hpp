// Where the event pipeline records the executions it planned (PostgreSQL in the daemon, a fake in
// the unit tests).
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "workflowd/store/errors.hpp"
#include "workflowd/store/execution_repository.hpp"

namespace workflowd::pipeline {

// A batch's rows as the writer renders them ahead of the write (ExecutionWriter::Render): the text
// of the rows, and the dispatch lease they are written with, if any.
struct RenderedRows {
  std::string text;
  std::optional<store::PendingLease> lease;
};

class ExecutionWriter {
 public:
  virtual ~ExecutionWriter() = default;

  // The rows rendered for InsertPending ahead of the write: the pipeline renders a batch while the
  // previous one is being written. Called on the pipeline's thread, possibly while InsertPending
  // runs on the writing thread.
  virtual RenderedRows Render(const std::vector<store::NewExecution>& executions) const = 0;

  // Inserts pending executions in one transaction, skipping any that exist already; returns how
  // many rows were new. Rows refused for their data are left out and listed in `rejected` (by
  // index), the others committed. Consecutive rows with the same number in `groups` (one per
  // row) are written or refused together. `rendered`: Render(executions), or null.
  // Throws store::StoreError: Retryable() when nothing was written and a later try may succeed.
  virtual size_t InsertPending(const std::vector<store::NewExecution>& executions,
                               const RenderedRows* rendered,
                               std::vector<store::RejectedExecution>& rejected,
                               std::span<const size_t> groups) = 0;
};

}  // namespace workflowd::pipeline
