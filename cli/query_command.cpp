// `jitprof query FILE 'EXPR'`: the query language (query/) over a bundle.
#include <fmt/format.h>

#include <iostream>

#include "bundle/text.h"
#include "commands.h"
#include "common.h"
#include "query/query.h"

namespace jitprof::cli {
namespace {

using nlohmann::json;

std::string cell(const std::string& column, const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>();
  if (column == "share") return fmt::format("{:.1f}%", 100 * value.get<double>());
  if (value.is_number_float()) return fmt::format("{:.3f}", value.get<double>());
  if (value.is_number_unsigned()) return with_commas(value.get<std::uint64_t>());
  return bundle::json_text(value);
}

// The query with a caret under the column an error is about.
void print_error(const std::string& text, const query::QueryError& error) {
  std::cerr << "jitprof: error: query: " << error.what() << "\n";
  if (error.column() == 0 || error.column() > text.size() + 1) return;
  std::cerr << "  " << text << "\n  " << std::string(error.column() - 1, ' ') << "^\n";
}

}  // namespace

int run_query(const QueryOptions& options) {
  const auto correlated = load_correlated(options.file, "to query");
  if (!correlated) return 1;
  const query::Model model(correlated->profile, correlated->bundle);
  query::Result result;
  try {
    result = query::run(model, options.text);
  } catch (const query::QueryError& error) {
    print_error(options.text, error);
    return 2;
  }
  if (options.json) {
    json out = query::result_json(result);
    out["query"] = options.text;
    std::cout << bundle::json_text(out, 2) << "\n";
    return correlated->status;
  }
  std::cout << fmt::format("{}: {} match{}\n", result.collection, with_commas(result.total),
                           result.total == 1 ? "" : "es");
  const std::size_t shown = std::min(result.rows.size(), options.limit);
  if (shown == 0) return correlated->status;
  // Plain columns, each as wide as its widest cell.
  std::vector<std::size_t> widths;
  for (const auto& column : result.columns) widths.push_back(column.size());
  std::vector<std::vector<std::string>> table;
  for (std::size_t r = 0; r < shown; ++r) {
    std::vector<std::string> cells;
    for (std::size_t c = 0; c < result.columns.size(); ++c) {
      cells.push_back(cell(result.columns[c], result.rows[r].value(result.columns[c], json(nullptr))));
      widths[c] = std::min<std::size_t>(60, std::max(widths[c], cells.back().size()));
    }
    table.push_back(std::move(cells));
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      std::string text = cells[c].size() > widths[c] ? "..." + cells[c].substr(cells[c].size() - widths[c] + 3) : cells[c];
      line += fmt::format("{:<{}}  ", text, widths[c]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  };
  print_row(result.columns);
  for (const auto& cells : table) print_row(cells);
  if (result.rows.size() > shown || result.total > result.rows.size())
    std::cout << fmt::format("({} of {} shown; --limit N for more)\n", shown, with_commas(result.total));
  return correlated->status;
}

}  // namespace jitprof::cli
