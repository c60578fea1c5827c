#include "source_lines.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

#include <algorithm>
#include <cstdlib>

namespace jitprof::symbols {

namespace {

// Deeper chains mean corrupt DWARF, not real code.
constexpr std::size_t kMaxInlineDepth = 64;

// Separate debug files are looked up by build id in the standard places
// (/usr/lib/debug/.build-id, then next to the file).
char* debuginfo_path = nullptr;
const Dwfl_Callbacks kOfflineCallbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

std::string attribute_string(Dwarf_Die* die, unsigned name) {
  Dwarf_Attribute attribute;
  // _integrate follows DW_AT_abstract_origin: inlined copies keep their name there.
  if (dwarf_attr_integrate(die, name, &attribute) == nullptr) return {};
  const char* text = dwarf_formstring(&attribute);
  return text ? text : "";
}

std::int64_t attribute_number(Dwarf_Die* die, unsigned name) {
  Dwarf_Attribute attribute;
  Dwarf_Word value = 0;
  if (dwarf_attr(die, name, &attribute) == nullptr || dwarf_formudata(&attribute, &value) != 0) return 0;
  return static_cast<std::int64_t>(value);
}

std::string function_name(Dwarf_Die* die) {
  std::string name = attribute_string(die, DW_AT_name);
  return name.empty() ? attribute_string(die, DW_AT_linkage_name) : name;
}

}  // namespace

SourceLines::SourceLines(const std::string& elf_path) {
  dwfl_ = dwfl_begin(&kOfflineCallbacks);
  if (dwfl_ == nullptr) return;
  // Reported at its link-time addresses: callers pass addresses minus the load bias.
  Dwfl_Module* module = dwfl_report_elf(dwfl_, elf_path.c_str(), elf_path.c_str(), -1, 0, false);
  dwfl_report_end(dwfl_, nullptr, nullptr);
  Dwarf_Addr bias = 0;
  has_dwarf_ = module != nullptr && dwfl_module_getdwarf(module, &bias) != nullptr;
}

SourceLines::~SourceLines() {
  if (dwfl_ != nullptr) dwfl_end(dwfl_);
}

std::vector<SourceFrame> SourceLines::at(std::uint64_t vaddr) {
  std::vector<SourceFrame> innermost_first;
  if (!has_dwarf_) return innermost_first;
  std::lock_guard lock(mutex_);
  Dwfl_Module* module = dwfl_addrmodule(dwfl_, vaddr);
  if (module == nullptr) return innermost_first;
  Dwarf_Addr bias = 0;
  Dwarf_Die* unit = dwfl_module_addrdie(module, vaddr, &bias);
  if (unit == nullptr) return innermost_first;

  std::string file;
  std::int64_t line = 0;
  if (Dwfl_Line* found = dwfl_module_getsrc(module, vaddr)) {
    int line_number = 0;
    if (const char* name = dwfl_lineinfo(found, nullptr, &line_number, nullptr, nullptr, nullptr)) file = name;
    line = line_number;
  }
  Dwarf_Files* files = nullptr;
  std::size_t file_count = 0;
  dwarf_getsrcfiles(unit, &files, &file_count);

  // Scopes come innermost first. Past an inlined call they continue with its
  // abstract origin, so the concrete caller is found from that call's own
  // DIE, which also says where in the caller the call was.
  Dwarf_Die* scopes = nullptr;
  int scope_count = dwarf_getscopes(unit, vaddr - bias, &scopes);
  for (int i = 0; i < scope_count; ++i) {
    const int tag = dwarf_tag(&scopes[i]);
    if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram) continue;
    innermost_first.push_back({function_name(&scopes[i]), file, line});
    if (tag == DW_TAG_subprogram || innermost_first.size() >= kMaxInlineDepth) break;
    const auto call_file = static_cast<std::size_t>(attribute_number(&scopes[i], DW_AT_call_file));
    const char* caller_file =
        files != nullptr && call_file < file_count ? dwarf_filesrc(files, call_file, nullptr, nullptr) : nullptr;
    file = caller_file ? caller_file : "";
    line = attribute_number(&scopes[i], DW_AT_call_line);
    Dwarf_Die* caller_scopes = nullptr;
    const int caller_count = dwarf_getscopes_die(&scopes[i], &caller_scopes);
    std::free(scopes);
    scopes = caller_scopes;
    scope_count = caller_count;
    i = 0;  // caller_scopes[0] is the inlined call itself
  }
  std::free(scopes);
  std::reverse(innermost_first.begin(), innermost_first.end());
  return innermost_first;
}

}  // namespace jitprof::symbols
