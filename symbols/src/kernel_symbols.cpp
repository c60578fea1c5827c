#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <string_view>

#include "symbols/symbols.h"

namespace jitprof::symbols {

std::map<std::uint64_t, Symbol> kernel_symbols(const std::vector<std::uint64_t>& addresses, const std::string& path) {
  std::vector<std::uint64_t> wanted(addresses);
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  // For each wanted address, the greatest function start that has it as its
  // nearest wanted address at or above: the nearest function at or below a
  // wanted address is the greatest of these up to it.
  struct Start {
    std::uint64_t address = 0;
    std::string name;
    bool beats(std::uint64_t other_address, std::string_view other_name) const {
      return address != other_address ? address > other_address : name > other_name;
    }
  };
  std::vector<std::optional<Start>> closest(wanted.size());
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // "ffffffff81000000 T _stext\t[module]"
    const std::size_t first_space = line.find(' ');
    if (first_space == std::string::npos || line.size() < first_space + 4) continue;
    const char type = static_cast<char>(std::tolower(static_cast<unsigned char>(line[first_space + 1])));
    if (type != 't' && type != 'w') continue;  // functions only
    std::uint64_t address = 0;
    std::from_chars(line.data(), line.data() + first_space, address, 16);
    if (address == 0) continue;  // hidden by kptr_restrict
    const auto above = std::lower_bound(wanted.begin(), wanted.end(), address);
    if (above == wanted.end()) continue;
    std::string_view name = std::string_view(line).substr(first_space + 3);
    name = name.substr(0, name.find('\t'));
    auto& slot = closest[static_cast<std::size_t>(above - wanted.begin())];
    // Of two names at one address (aliases), the greater, whatever their order in the file.
    if (!slot || !slot->beats(address, name)) slot = Start{address, std::string(name)};
  }
  std::map<std::uint64_t, Symbol> named;
  const Start* nearest = nullptr;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    if (closest[i] && (!nearest || closest[i]->beats(nearest->address, nearest->name))) nearest = &*closest[i];
    if (nearest)
      named.emplace(wanted[i], Symbol{"[kernel.kallsyms]", {}, nearest->name, wanted[i] - nearest->address, {}, {}});
  }
  return named;
}

}  // namespace jitprof::symbols
