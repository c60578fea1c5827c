#include "bundle/sections.h"

#include "bundle/text.h"
#include "text_codec.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <string_view>

namespace jitprof::bundle {
namespace {

using nlohmann::json;

void append_line(const json& line, std::string& frame) {
  frame += json_text(line);
  frame += '\n';
}

// The section's lines that parse as JSON objects, in order.
template <class Record, class Decode>
std::vector<Record> read_lines(const Bundle& bundle, SectionType type, Decode decode) {
  const std::vector<std::uint8_t> bytes = bundle.stream(type);
  std::vector<Record> records;
  std::string_view rest(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find('\n'), rest.size());
    const json line = json::parse(rest.substr(0, end), nullptr, false);
    rest.remove_prefix(std::min(end + 1, rest.size()));
    if (line.is_object()) records.push_back(decode(line));
  }
  return records;
}

// A field's value, or `fallback` when it is absent or of another type.
template <class T>
T field(const json& line, const char* key, T fallback = T{}) {
  const auto found = line.find(key);
  if (found == line.end()) return fallback;
  if constexpr (std::is_same_v<T, std::string>) {
    return text_of(*found).value_or(fallback);
  } else if constexpr (std::is_same_v<T, bool>) {
    return found->is_boolean() ? found->template get<bool>() : fallback;
  } else if constexpr (std::is_floating_point_v<T>) {
    return found->is_number() ? found->template get<T>() : fallback;
  } else if constexpr (std::is_signed_v<T>) {
    return found->is_number_integer() ? found->template get<T>() : fallback;
  } else {
    return found->is_number_unsigned() ? found->template get<T>() : fallback;
  }
}

constexpr std::array<const char*, 5> kTaskKinds = {"fork", "exit", "comm", "exec", "python-name"};

json source_json(const std::vector<SourceLocation>& source) {
  json frames = json::array();
  for (const SourceLocation& frame : source)
    frames.push_back({{"function", stored_text(frame.function)}, {"file", stored_text(frame.file)}, {"line", frame.line}});
  return frames;
}

json symbol_json(const SymbolRecord& record) {
  json line = {{"pid", record.pid},           {"address", record.address},          {"path", stored_text(record.path)},
               {"build_id", record.build_id}, {"name", stored_text(record.name)}, {"offset", record.offset}};
  if (!record.source.empty()) line["source"] = source_json(record.source);
  if (!record.component.empty()) line["component"] = record.component;
  return line;
}

SymbolRecord symbol_of(const json& line) {
  SymbolRecord record{field<std::uint32_t>(line, "pid"), field<std::uint64_t>(line, "address"),
                      field<std::string>(line, "path"),  field<std::string>(line, "build_id"),
                      field<std::string>(line, "name"),  field<std::uint64_t>(line, "offset"), {},
                      field<std::string>(line, "component")};
  if (const auto source = line.find("source"); source != line.end() && source->is_array())
    for (const json& frame : *source)
      if (frame.is_object())
        record.source.push_back(
            {field<std::string>(frame, "function"), field<std::string>(frame, "file"), field<std::int64_t>(frame, "line")});
  return record;
}

}  // namespace

const char* task_kind_name(TaskRecord::Kind kind) { return kTaskKinds[static_cast<std::size_t>(kind)]; }

void encode(const MappingRecord& record, std::string& frame) {
  append_line({{"t", record.time_ns}, {"pid", record.pid}, {"tid", record.tid},
               {"start", record.start}, {"length", record.length}, {"offset", record.file_offset},
               {"prot", record.prot}, {"flags", record.flags}, {"major", record.major}, {"minor", record.minor},
               {"inode", record.inode}, {"path", stored_text(record.path)}},
              frame);
}

std::vector<MappingRecord> read_mappings(const Bundle& bundle) {
  return read_lines<MappingRecord>(bundle, MappingRecord::kSection, [](const json& line) {
    return MappingRecord{field<std::uint64_t>(line, "t"),      field<std::uint32_t>(line, "pid"),
                         field<std::uint32_t>(line, "tid"),    field<std::uint64_t>(line, "start"),
                         field<std::uint64_t>(line, "length"), field<std::uint64_t>(line, "offset"),
                         field<std::uint32_t>(line, "prot"),   field<std::uint32_t>(line, "flags"),
                         field<std::uint32_t>(line, "major"),  field<std::uint32_t>(line, "minor"),
                         field<std::uint64_t>(line, "inode"),  field<std::string>(line, "path")};
  });
}

void encode(const TaskRecord& record, std::string& frame) {
  append_line({{"t", record.time_ns}, {"kind", task_kind_name(record.kind)}, {"pid", record.pid}, {"tid", record.tid},
               {"ppid", record.parent_pid}, {"ptid", record.parent_tid}, {"comm", stored_text(record.comm)}},
              frame);
}

std::vector<TaskRecord> read_tasks(const Bundle& bundle) {
  std::vector<TaskRecord> tasks;
  for (std::optional<TaskRecord>& task : read_lines<std::optional<TaskRecord>>(bundle, TaskRecord::kSection, [](const json& line) {
         const std::string kind = field<std::string>(line, "kind");
         std::optional<TaskRecord> task;
         for (std::size_t i = 0; i < kTaskKinds.size(); ++i)
           if (kind == kTaskKinds[i])
             task = TaskRecord{static_cast<TaskRecord::Kind>(i),      field<std::uint64_t>(line, "t"),
                               field<std::uint32_t>(line, "pid"),     field<std::uint32_t>(line, "tid"),
                               field<std::uint32_t>(line, "ppid"),    field<std::uint32_t>(line, "ptid"),
                               field<std::string>(line, "comm")};
         return task;
       }))
    if (task) tasks.push_back(std::move(*task));
  return tasks;
}

void encode(const SymbolRecord& record, std::string& frame) { append_line(symbol_json(record), frame); }

std::vector<SymbolRecord> read_symbols(const Bundle& bundle) {
  return read_lines<SymbolRecord>(bundle, SymbolRecord::kSection, symbol_of);
}

void encode(const JitCodeRecord& record, std::string& frame) {
  const std::string_view bytes(reinterpret_cast<const char*>(record.bytes.data()), record.bytes.size());
  append_line({{"pid", record.pid}, {"address", record.address}, {"hex", hex_of(bytes)}}, frame);
}

std::vector<JitCodeRecord> read_jit_code(const Bundle& bundle) {
  return read_lines<JitCodeRecord>(bundle, JitCodeRecord::kSection, [](const json& line) {
    const std::string bytes = bytes_of_hex(field<std::string>(line, "hex")).value_or("");
    return JitCodeRecord{field<std::uint32_t>(line, "pid"), field<std::uint64_t>(line, "address"),
                         std::vector<std::uint8_t>(bytes.begin(), bytes.end())};
  });
}

void encode(const SourceFileRecord& record, std::string& frame) {
  append_line({{"file", stored_text(record.file)}, {"text", stored_text(record.text)}}, frame);
}

std::vector<SourceFileRecord> read_source_files(const Bundle& bundle) {
  return read_lines<SourceFileRecord>(bundle, SourceFileRecord::kSection, [](const json& line) {
    return SourceFileRecord{field<std::string>(line, "file"), field<std::string>(line, "text")};
  });
}

void encode(const CodeNameRecord& record, std::string& frame) {
  append_line({{"pid", record.pid},
               {"id", record.unique_id},
               {"name", stored_text(record.name)},
               {"file", stored_text(record.file)},
               {"line", record.line}},
              frame);
}

std::vector<CodeNameRecord> read_code_names(const Bundle& bundle) {
  return read_lines<CodeNameRecord>(bundle, CodeNameRecord::kSection, [](const json& line) {
    return CodeNameRecord{field<std::uint32_t>(line, "pid"), field<std::uint64_t>(line, "id"),
                          field<std::string>(line, "name"), field<std::string>(line, "file"),
                          field<std::int64_t>(line, "line")};
  });
}

void encode(const JitCodemapRecord& record, std::string& frame) {
  append_line({{"pid", record.pid}, {"address", record.address}, {"ids", record.unique_ids}}, frame);
}

std::vector<JitCodemapRecord> read_jit_codemap(const Bundle& bundle) {
  return read_lines<JitCodemapRecord>(bundle, JitCodemapRecord::kSection, [](const json& line) {
    JitCodemapRecord record{field<std::uint32_t>(line, "pid"), field<std::uint64_t>(line, "address"), {}};
    if (const auto ids = line.find("ids"); ids != line.end() && ids->is_array())
      for (const json& id : *ids)
        if (id.is_number_unsigned()) record.unique_ids.push_back(id.get<std::uint64_t>());
    return record;
  });
}

std::string encode(const CrashRecord& record) {
  json crash = {{"signal", record.signal},
                {"signal_name", record.signal_name},
                {"code", record.code},
                {"fault_address", record.fault_address},
                {"tid", record.tid},
                {"registers", json::object()},
                {"frames", json::array()}};
  for (const auto& [name, value] : record.registers) crash["registers"][name] = value;
  for (const CrashFrame& frame : record.frames) {
    json entry = frame.symbol ? symbol_json(*frame.symbol) : json::object();
    entry["address"] = frame.address;
    entry["jit"] = frame.jit;
    crash["frames"].push_back(std::move(entry));
  }
  return json_text(crash);
}

std::optional<CrashRecord> read_crash(const Bundle& bundle) {
  const Frame* frame = bundle.latest(CrashRecord::kSection);
  if (frame == nullptr) return std::nullopt;
  const json crash = json::parse(frame->data, nullptr, false);
  if (!crash.is_object()) return std::nullopt;
  CrashRecord record{field<int>(crash, "signal"),          field<std::string>(crash, "signal_name"),
                     field<int>(crash, "code"),            field<std::uint64_t>(crash, "fault_address"),
                     field<std::uint32_t>(crash, "tid"),   {},
                     {}};
  if (const auto registers = crash.find("registers"); registers != crash.end() && registers->is_object())
    for (const auto& [name, value] : registers->items())
      if (value.is_number_unsigned()) record.registers.emplace_back(name, value.get<std::uint64_t>());
  if (const auto frames = crash.find("frames"); frames != crash.end() && frames->is_array())
    for (const json& entry : *frames) {
      if (!entry.is_object()) continue;
      CrashFrame parsed{field<std::uint64_t>(entry, "address"), field<bool>(entry, "jit"), std::nullopt};
      if (entry.contains("path")) parsed.symbol = symbol_of(entry);
      record.frames.push_back(std::move(parsed));
    }
  return record;
}

}  // namespace jitprof::bundle
