#include "bundle/json_lines.h"

#include <sys/mman.h>

#include <sstream>

namespace jitprof::bundle {

std::vector<nlohmann::json> json_lines(const Bundle& bundle, SectionType type) {
  const auto bytes = bundle.stream(type);
  std::vector<nlohmann::json> lines;
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json value = nlohmann::json::parse(line, nullptr, false);
    if (value.is_object()) lines.push_back(std::move(value));
  }
  return lines;
}

bool is_jit_mapping(const nlohmann::json& mapping) {
  // perf names anonymous memory "//anon" (or "[anon:...]" when the process named it).
  const std::string path = mapping.value("path", "");
  const bool anonymous = path.empty() || path == "//anon" || path.starts_with("[anon");
  return anonymous && (mapping.value("prot", 0u) & PROT_EXEC);
}

}  // namespace jitprof::bundle
