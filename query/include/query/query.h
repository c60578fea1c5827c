// A small, safe query language over a bundle's traces, guards, Python
// functions, IR ops and samples (docs/query.md). Its own parser: nothing is
// evaluated as code, input length, nesting and running time are bounded, and
// every error names the column it is about.
//
//   traces.contains('call_assembler').hasbridge('*my_func*')
//   methods.callsites() > 5
//   guards.failures() > 1000 and guards.in(hot)
//   traces.samples() > 1% .sort(samples).limit(10)
//   ops.name('new_with_vtable').in(hot)
//   traces.removed('new_with_vtable') > 0
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bundle/bundle.h"
#include "correlate/profile.h"

namespace jitprof::query {

class QueryError : public std::runtime_error {
 public:
  QueryError(std::size_t column, const std::string& message);
  std::size_t column() const { return column_; }  // 1-based; 0 when about the whole query

 private:
  std::size_t column_;
};

struct Limits {
  std::size_t max_length = 4096;      // characters of query text
  unsigned max_depth = 32;            // nested parentheses and in(...) queries
  std::size_t max_pattern = 256;      // characters of one glob or string
  std::chrono::milliseconds max_time{5000};
};

// What queries read, computed once per bundle: per-trace samples and stage
// differences, Python functions with their call sites, per-op samples.
class Model {
 public:
  Model(const correlate::Profile& profile, const bundle::Bundle& bundle);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  struct Data;
  const Data& data() const { return *data_; }

 private:
  std::unique_ptr<Data> data_;
};

struct Result {
  std::string collection;              // "traces", "guards", "methods", "ops", "samples"
  std::vector<std::string> columns;    // the keys of each row, in display order
  std::vector<nlohmann::json> rows;    // after sorting and limit
  std::size_t total = 0;               // matches before the limit
};

// Parses and runs `text`. Throws QueryError (with a column) for malformed
// queries, unknown names, mixed collections, and queries over their limits.
Result run(const Model& model, std::string_view text, const Limits& limits = {});

nlohmann::json result_json(const Result& result);

// "*" any run of characters, "?" one character; the whole text must match.
// Linear in practice: no backtracking blow-up on patterns like "*a*a*a*b".
bool glob_match(std::string_view pattern, std::string_view text);

// An op name against a glob; a pattern without wildcards also matches the
// typed variants of an op ("call_assembler" matches call_assembler_i/_r/_f/_n).
bool op_name_match(std::string_view pattern, std::string_view name);

}  // namespace jitprof::query
