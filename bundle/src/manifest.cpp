#include "bundle/manifest.h"

#include <fmt/format.h>

#include <algorithm>

namespace jitprof::bundle {
namespace {

using nlohmann::json;

// Each part of the manifest lists its fields once, for both directions: a
// visitor is called with (name, field) for values and (name, field, list)
// for nested objects, where `list` lists the nested object's fields.
template <class Host, class Visitor>
void host_fields(Host& host, Visitor& visit) {
  visit("name", host.name);
  visit("system", host.system);
  visit("release", host.release);
  visit("machine", host.machine);
}

template <class Clock, class Visitor>
void clock_fields(Clock& clock, Visitor& visit) {
  visit("monotonic_ns", clock.monotonic_ns);
  visit("unix_s", clock.unix_s);
}

template <class Vmprof, class Visitor>
void vmprof_fields(Vmprof& vmprof, Visitor& visit) {
  visit("rate_hz", vmprof.rate_hz);
  visit("native_frames", vmprof.native_frames);
}

// The fields of sampling that was on (refused and off are told apart by the codec).
template <class Perf, class Visitor>
void perf_fields(Perf& perf, Visitor& visit) {
  visit("event", perf.event);
  visit("rate_hz", perf.rate_hz);
  visit("kernel_frames", perf.kernel_frames);
  visit("children", perf.children);
  visit("samples", perf.samples);
  visit("samples_all_processes", perf.samples_all_processes);
  visit("lost", perf.lost);
  visit("throttled", perf.throttled);
  visit("kernel_symbols_named", perf.kernel_symbols_named);
  visit("threads", perf.threads);
  visit("achieved_hz", perf.achieved_hz);
}

template <class Capture, class Visitor>
void crash_capture_fields(Capture& capture, Visitor& visit) {
  visit("ptrace", capture.ptrace);
  visit("reason", capture.reason);
}

template <class Exit, class Visitor>
void exit_fields(Exit& exit, Visitor& visit) {
  visit("code", exit.code);
  visit("signal", exit.signal);
  visit("signal_name", exit.signal_name);
  visit("crash_thread", exit.crash_thread);
}

template <class Sections, class Visitor>
void section_fields(Sections& sections, Visitor& visit) {
  visit("jitlog_bytes", sections.jitlog_bytes);
  visit("vmprof_bytes", sections.vmprof_bytes);
  visit("jit_code_bytes", sections.jit_code_bytes);
}

template <class Attach, class Visitor>
void attach_fields(Attach& attach, Visitor& visit) {
  visit("jit_names", attach.jit_names);
  visit("explanation", attach.explanation);
  visit("jitlog_path", attach.jitlog_path);
  visit("jit_code_bytes", attach.jit_code_bytes);
}

template <class Manifest, class Visitor>
void manifest_fields(Manifest& manifest, Visitor& visit) {
  visit("jitprof_version", manifest.jitprof_version);
  visit("mode", manifest.mode);
  visit("command", manifest.command);
  visit("pid", manifest.pid);
  visit("start_time", manifest.start_time);
  visit("end_time", manifest.end_time);
  visit("duration_s", manifest.duration_s);
  visit("target_cpu_s", manifest.target_cpu_s);
  visit("pypy_logs", manifest.pypy_logs);
  visit("pypy_version", manifest.pypy_version);
  visit("vm", manifest.vm);
  visit("state", manifest.state);
  visit("target_exited", manifest.target_exited);
  visit("host", manifest.host, [](auto& host, auto& nested) { host_fields(host, nested); });
  visit("clock", manifest.clock, [](auto& clock, auto& nested) { clock_fields(clock, nested); });
  visit("vmprof", manifest.vmprof, [](auto& vmprof, auto& nested) { vmprof_fields(vmprof, nested); });
  visit("crash_capture", manifest.crash_capture, [](auto& capture, auto& nested) { crash_capture_fields(capture, nested); });
  visit("exit", manifest.exit, [](auto& exit, auto& nested) { exit_fields(exit, nested); });
  visit("sections", manifest.sections, [](auto& sections, auto& nested) { section_fields(sections, nested); });
  visit("attach", manifest.attach, [](auto& attach, auto& nested) { attach_fields(attach, nested); });
}

// Writes each field present into a JSON object.
struct Writer {
  json& out;

  template <class T>
  void operator()(const char* key, const T& value) {
    out[key] = value;
  }
  template <class T>
  void operator()(const char* key, const std::optional<T>& value) {
    if (value) out[key] = *value;
  }
  template <class T, class List>
  void operator()(const char* key, const std::optional<T>& value, List list) {
    if (!value) return;
    Writer nested{out[key] = json::object()};
    list(*value, nested);
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
  template <class T, class List>
  void operator()(const char* key, std::optional<T>& out, List list) {
    const json* value = find(key);
    if (value == nullptr) return;
    Reader nested(*value, name(key));
    list(out.emplace(), nested);
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
      ok = value.is_string();
      expected = "a string";
    } else if constexpr (std::is_same_v<T, bool>) {
      ok = value.is_boolean();
      expected = "true or false";
    } else if constexpr (std::is_floating_point_v<T>) {
      ok = value.is_number();
      expected = "a number";
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      ok = value.is_array() && std::all_of(value.begin(), value.end(), [](const json& word) { return word.is_string(); });
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
json perf_json(const Manifest::Perf& perf) {
  if (perf.state == Manifest::Perf::State::Off) return nullptr;
  if (perf.state == Manifest::Perf::State::Refused) return {{"refused", perf.refused}};
  json out = json::object();
  Writer writer{out};
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

json to_json(const Manifest& manifest) {
  json out = json::object();
  Writer writer{out};
  manifest_fields(manifest, writer);
  if (manifest.perf) out["perf"] = perf_json(*manifest.perf);
  return out;
}

std::string encode(const Manifest& manifest) {
  return to_json(manifest).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

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
