#include <algorithm>
#include <cctype>
#include <fstream>

#include "symbols/symbols.h"

namespace jitprof::symbols {

KernelSymbols KernelSymbols::load(const std::string& path) {
  KernelSymbols symbols;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // "ffffffff81000000 T _stext [module]"
    const std::size_t first_space = line.find(' ');
    if (first_space == std::string::npos || line.size() < first_space + 4) continue;
    const char type = static_cast<char>(std::tolower(static_cast<unsigned char>(line[first_space + 1])));
    if (type != 't' && type != 'w') continue;  // functions only
    const std::uint64_t address = std::strtoull(line.substr(0, first_space).c_str(), nullptr, 16);
    if (address == 0) continue;  // hidden by kptr_restrict
    std::string name = line.substr(first_space + 3);
    if (const std::size_t tab = name.find('\t'); tab != std::string::npos) name.resize(tab);
    symbols.names_.emplace_back(address, std::move(name));
  }
  std::sort(symbols.names_.begin(), symbols.names_.end());
  return symbols;
}

std::optional<Symbol> KernelSymbols::symbolize(std::uint64_t address) const {
  auto after = std::upper_bound(names_.begin(), names_.end(), address,
                                [](std::uint64_t value, const auto& entry) { return value < entry.first; });
  if (after == names_.begin()) return std::nullopt;
  const auto& [start, name] = *std::prev(after);
  return Symbol{"[kernel.kallsyms]", {}, name, address - start, {}, {}};
}

}  // namespace jitprof::symbols
