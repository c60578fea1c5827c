// Sections written as one JSON object a line (MAPS, TASK, SYMS, JLTM).
#pragma once

#include <nlohmann/json.hpp>

#include <vector>

#include "bundle/bundle.h"

namespace jitprof::bundle {

// The section's lines that parse as JSON objects, in order.
std::vector<nlohmann::json> json_lines(const Bundle& bundle, SectionType type);

// A MAPS line for anonymous executable memory: where PyPy's JIT puts machine code.
bool is_jit_mapping(const nlohmann::json& mapping);

}  // namespace jitprof::bundle
