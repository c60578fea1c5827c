#include "bundle/manifest.h"

#include <fmt/format.h>

#include <algorithm>

#include "bundle/text.h"
#include "text_codec.h"

namespace jitprof::bundle {
namespace {

using nlohmann::json;

// Each part of the manifest lists its fields once, for both directions: a
// visitor is called with (name, field) for values and (name, field, fields)
// for nested objects, `fields` listing the nested object's own.
template <class Visitor, class Field, class... Rest>
void visit_fields(Visitor& visit, const char* name, Field& field, Rest&... rest) {
  visit(name, field);
  if constexpr (sizeof...(rest) > 0) visit_fields(visit, rest...);
}
template <class Visitor, class Field, class Fields, class... Rest>
void visit_objects(Visitor& visit, const char* name, Field& field, const Fields& fields, Rest&... rest) {
  visit(name, field, fields);
  if constexpr (sizeof...(rest) > 0) visit_objects(visit, rest...);
}

constexpr auto host_fields = [](auto& host, auto& visit) {
  visit_fields(visit, "name", host.name, "system", host.system, "release", host.release, "machine", host.machine);
};
constexpr auto clock_fields = [](auto& clock, auto& visit) {
  visit_fields(visit, "monotonic_ns", clock.monotonic_ns, "unix_s", clock.unix_s);
};
constexpr auto vmprof_fields = [](auto& vmprof, auto& visit) {
  visit_fields(visit, "rate_hz", vmprof.rate_hz, "native_frames", vmprof.native_frames, "sampling", vmprof.sampling);
};
// Sampling that was on (refused and off are told apart by the codec).
constexpr auto perf_fields = [](auto& perf, auto& visit) {
  visit_fields(visit, "event", perf.event, "rate_hz", perf.rate_hz, "kernel_frames", perf.kernel_frames, "children",
               perf.children, "samples", perf.samples, "samples_all_processes", perf.samples_all_processes, "lost",
               perf.lost, "throttled", perf.throttled, "kernel_symbols_named", perf.kernel_symbols_named, "threads",
               perf.threads, "achieved_hz", perf.achieved_hz);
};
constexpr auto crash_capture_fields = [](auto& capture, auto& visit) {
  visit_fields(visit, "ptrace", capture.ptrace, "reason", capture.reason);
};
constexpr auto exit_fields = [](auto& exit, auto& visit) {
  visit_fields(visit, "code", exit.code, "signal", exit.signal, "signal_name", exit.signal_name, "crash_thread",
               exit.crash_thread);
};
constexpr auto section_fields = [](auto& sections, auto& visit) {
  visit_fields(visit, "jitlog_bytes", sections.jitlog_bytes, "vmprof_bytes", sections.vmprof_bytes, "jit_code_bytes",
               sections.jit_code_bytes);
};
constexpr auto attach_fields = [](auto& attach, auto& visit) {
  visit_fields(visit, "jit_names", attach.jit_names, "explanation", attach.explanation, "jitlog_path",
               attach.jitlog_path, "jit_code_bytes", attach.jit_code_bytes);
};
constexpr auto python_stacks_fields = [](auto& stacks, auto& visit) {
  visit_fields(visit, "source", stacks.source, "unavailable", stacks.unavailable, "processes", stacks.processes,
               "samples", stacks.samples, "lost", stacks.lost, "dropped", stacks.dropped, "program_runs",
               stacks.program_runs, "program_ns", stacks.program_ns);
};
constexpr auto phases_fields = [](auto& phases, auto& visit) {
  visit_fields(visit, "source", phases.source, "note", phases.note, "log_path", phases.log_path, "pid", phases.pid,
               "sections", phases.sections);
};
constexpr auto manifest_fields = [](auto& manifest, auto& visit) {
  visit_fields(visit, "jitprof_version", manifest.jitprof_version, "mode", manifest.mode, "command", manifest.command,
               "pid", manifest.pid, "start_time", manifest.start_time, "end_time", manifest.end_time, "duration_s",
               manifest.duration_s, "target_cpu_s", manifest.target_cpu_s, "recorder_cpu_s", manifest.recorder_cpu_s,
               "recorder_peak_rss_kib", manifest.recorder_peak_rss_kib, "pypy_logs", manifest.pypy_logs,
               "pypy_version", manifest.pypy_version, "vm", manifest.vm, "jit", manifest.jit, "state", manifest.state, "target_exited",
               manifest.target_exited);
  visit_objects(visit, "host", manifest.host, host_fields, "clock", manifest.clock, clock_fields, "vmprof",
                manifest.vmprof, vmprof_fields, "crash_capture", manifest.crash_capture, crash_capture_fields, "exit",
                manifest.exit, exit_fields, "sections", manifest.sections, section_fields, "attach", manifest.attach,
                attach_fields, "python_stacks", manifest.python_stacks, python_stacks_fields, "phases",
                manifest.phases, phases_fields);
};

// Writes each field present into a JSON object; text as stored (bytes kept,
// text_codec.h) or as shown (left to the output's U+FFFD).
struct Writer {
  json& out;
  ManifestText text;

  template <class T>
  void operator()(const char* key, const T& value) {
    out[key] = value_of(value);
  }
  template <class T>
  void operator()(const char* key, const std::optional<T>& value) {
    if (value) out[key] = value_of(*value);
  }
  template <class T, class Fields>
  void operator()(const char* key, const std::optional<T>& value, const Fields& fields) {
    if (!value) return;
    Writer nested{out[key] = json::object(), text};
    fields(*value, nested);
  }

 private:
  template <class T>
  json value_of(const T& value) const {
    if constexpr (std::is_same_v<T, std::string>) {
      return text == ManifestText::Stored ? stored_text(value) : json(value);
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      json words = json::array();
      for (const std::string& word : value) words.push_back(value_of(word));
      return words;
    } else {
      return value;
    }
  }
};

// Reads each field a JSON object has, checking its type. Absent and null
// fields keep their defaults; fields not listed are skipped.
class Reader {
 public:
  Reader(const json& object, std::string path) : object_(object), path_(std::move(path)) {
    if (!object.is_object()) throw ManifestError(fmt::format("manifest field '{}' must be an object", path_));
  }

  template <class T>
  void operator()(const char* key, T& out) {
    if (const json* value = find(key)) out = convert<T>(*value, key);
  }
  template <class T>
  void operator()(const char* key, std::optional<T>& out) {
    if (const json* value = find(key)) out = convert<T>(*value, key);
  }
  template <class T, class Fields>
  void operator()(const char* key, std::optional<T>& out, const Fields& fields) {
    const json* value = find(key);
    if (value == nullptr) return;
    Reader nested(*value, name(key));
    fields(out.emplace(), nested);
  }
  const json* find(const char* key) const {
    const auto found = object_.find(key);
    return found == object_.end() || found->is_null() ? nullptr : &*found;
  }

 private:
  std::string name(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  template <class T>
  T convert(const json& value, const char* key) const {
    bool ok = false;
    const char* expected = "";
    if constexpr (std::is_same_v<T, std::string>) {
      if (auto text = text_of(value)) return *text;
      expected = "a string";
    } else if constexpr (std::is_same_v<T, bool>) {
      ok = value.is_boolean();
      expected = "true or false";
    } else if constexpr (std::is_floating_point_v<T>) {
      ok = value.is_number();
      expected = "a number";
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      T words;
      for (const json& word : value.is_array() ? value : json::array())
        if (auto text = text_of(word)) words.push_back(std::move(*text));
      if (value.is_array() && words.size() == value.size()) return words;
      expected = "a list of strings";
    } else if constexpr (std::is_signed_v<T>) {
      ok = value.is_number_integer();
      expected = "an integer";
    } else {
      ok = value.is_number_unsigned();
      expected = "a non-negative integer";
    }
    if (!ok) throw ManifestError(fmt::format("manifest field '{}' must be {}, not {}", name(key), expected, value.type_name()));
    return value.get<T>();
  }

  const json& object_;
  std::string path_;
};

// null: sampling was off; {"refused": why}; or the fields of sampling that was on.
json perf_json(const Manifest::Perf& perf, ManifestText text) {
  if (perf.state == Manifest::Perf::State::Off) return nullptr;
  if (perf.state == Manifest::Perf::State::Refused) return {{"refused", perf.refused}};
  json out = json::object();
  Writer writer{out, text};
  perf_fields(perf, writer);
  return out;
}

Manifest::Perf read_perf(const json& value) {
  Manifest::Perf perf;
  if (value.is_null()) {
    perf.state = Manifest::Perf::State::Off;
    return perf;
  }
  Reader reader(value, "perf");
  if (reader.find("refused")) {
    perf.state = Manifest::Perf::State::Refused;
    reader("refused", perf.refused);
  } else {
    perf_fields(perf, reader);
  }
  return perf;
}

}  // namespace

json to_json(const Manifest& manifest, ManifestText text) {
  json out = json::object();
  Writer writer{out, text};
  manifest_fields(manifest, writer);
  if (manifest.perf) out["perf"] = perf_json(*manifest.perf, text);
  return out;
}

std::string encode(const Manifest& manifest) { return json_text(to_json(manifest, ManifestText::Stored)); }

Manifest manifest_from_json(const json& document) {
  if (!document.is_object()) throw ManifestError("the manifest is not a JSON object");
  Manifest manifest;
  Reader reader(document, "");
  manifest_fields(manifest, reader);
  if (const auto perf = document.find("perf"); perf != document.end()) manifest.perf = read_perf(*perf);
  return manifest;
}

ManifestRead read_manifest(const Bundle& bundle) {
  const Frame* frame = bundle.latest(sections::kManifest);
  if (frame == nullptr) return {std::nullopt, "the bundle has no manifest"};
  const json document = json::parse(frame->data, nullptr, false);
  if (document.is_discarded()) return {std::nullopt, "the manifest is not valid JSON"};
  try {
    return {manifest_from_json(document), {}};
  } catch (const ManifestError& error) {
    return {std::nullopt, error.what()};
  }
}

}  // namespace jitprof::bundle
