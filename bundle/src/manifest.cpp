#include "bundle/manifest.h"

#include <fmt/format.h>

#include <algorithm>

namespace jitprof::bundle {
namespace {

using nlohmann::json;

template <class T>
void put(json& out, const char* key, const std::optional<T>& value) {
  if (value) out[key] = *value;
}

// Reads the fields of one JSON object of the manifest, checking each type.
class Fields {
 public:
  Fields(const json& object, std::string path) : object_(object), path_(std::move(path)) {
    if (!object.is_object()) throw ManifestError(fmt::format("manifest field '{}' must be an object", path_));
  }

  template <class T>
  void take(const char* key, T& out) const {
    if (const json* value = find(key)) out = convert<T>(*value, key);
  }
  template <class T>
  void take(const char* key, std::optional<T>& out) const {
    if (const json* value = find(key)) out = convert<T>(*value, key);
  }
  // A nested object, read by `read`; absent or null leaves `out` empty.
  template <class T, class Read>
  void take_object(const char* key, std::optional<T>& out, Read read) const {
    const json* value = find(key);
    if (value == nullptr) return;
    out = read(Fields(*value, name(key)));
  }
  const json* find(const char* key) const {
    const auto found = object_.find(key);
    return found == object_.end() || found->is_null() ? nullptr : &*found;
  }
  bool is_null(const char* key) const {
    const auto found = object_.find(key);
    return found != object_.end() && found->is_null();
  }
  std::string name(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  template <class T>
  T convert(const json& value, const char* key) const {
    bool ok = false;
    if constexpr (std::is_same_v<T, std::string>) ok = value.is_string();
    else if constexpr (std::is_same_v<T, bool>) ok = value.is_boolean();
    else if constexpr (std::is_floating_point_v<T>) ok = value.is_number();
    else if constexpr (std::is_same_v<T, std::vector<std::string>>)
      ok = value.is_array() && std::all_of(value.begin(), value.end(), [](const json& word) { return word.is_string(); });
    else if constexpr (std::is_signed_v<T>) ok = value.is_number_integer();
    else ok = value.is_number_unsigned();
    if (!ok)
      throw ManifestError(fmt::format("manifest field '{}' must be {}, not {}", name(key), expected<T>(), value.type_name()));
    return value.get<T>();
  }
  template <class T>
  static const char* expected() {
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    else if constexpr (std::is_same_v<T, bool>) return "true or false";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of strings";
    else if constexpr (std::is_signed_v<T>) return "an integer";
    else return "a non-negative integer";
  }

  const json& object_;
  std::string path_;
};

json perf_json(const Manifest::Perf& perf) {
  if (perf.state == Manifest::Perf::State::Off) return nullptr;
  if (perf.state == Manifest::Perf::State::Refused) return {{"refused", perf.refused}};
  json out = {{"event", perf.event}, {"rate_hz", perf.rate_hz}, {"kernel_frames", perf.kernel_frames}};
  put(out, "children", perf.children);
  put(out, "samples", perf.samples);
  put(out, "samples_all_processes", perf.samples_all_processes);
  put(out, "lost", perf.lost);
  put(out, "throttled", perf.throttled);
  put(out, "kernel_symbols_named", perf.kernel_symbols_named);
  put(out, "threads", perf.threads);
  put(out, "achieved_hz", perf.achieved_hz);
  return out;
}

Manifest::Perf read_perf(const Fields& in) {
  Manifest::Perf perf;
  if (in.find("refused")) {
    perf.state = Manifest::Perf::State::Refused;
    in.take("refused", perf.refused);
    return perf;
  }
  in.take("event", perf.event);
  in.take("rate_hz", perf.rate_hz);
  in.take("kernel_frames", perf.kernel_frames);
  in.take("children", perf.children);
  in.take("samples", perf.samples);
  in.take("samples_all_processes", perf.samples_all_processes);
  in.take("lost", perf.lost);
  in.take("throttled", perf.throttled);
  in.take("kernel_symbols_named", perf.kernel_symbols_named);
  in.take("threads", perf.threads);
  in.take("achieved_hz", perf.achieved_hz);
  return perf;
}

json details_json(const Manifest& manifest) {
  json out = json::object();
  if (const auto& host = manifest.host)
    out["host"] = {{"name", host->name}, {"system", host->system}, {"release", host->release}, {"machine", host->machine}};
  if (const auto& clock = manifest.clock) out["clock"] = {{"monotonic_ns", clock->monotonic_ns}, {"unix_s", clock->unix_s}};
  if (const auto& vmprof = manifest.vmprof)
    out["vmprof"] = {{"rate_hz", vmprof->rate_hz}, {"native_frames", vmprof->native_frames}};
  if (const auto& perf = manifest.perf) out["perf"] = perf_json(*perf);
  if (const auto& capture = manifest.crash_capture) {
    out["crash_capture"] = {{"ptrace", capture->ptrace}};
    put(out["crash_capture"], "reason", capture->reason);
  }
  if (const auto& exit = manifest.exit) {
    out["exit"] = {{"code", exit->code}};
    put(out["exit"], "signal", exit->signal);
    put(out["exit"], "signal_name", exit->signal_name);
    put(out["exit"], "crash_thread", exit->crash_thread);
  }
  if (const auto& sections = manifest.sections) {
    out["sections"] = json::object();
    put(out["sections"], "jitlog_bytes", sections->jitlog_bytes);
    put(out["sections"], "vmprof_bytes", sections->vmprof_bytes);
    put(out["sections"], "jit_code_bytes", sections->jit_code_bytes);
  }
  if (const auto& attach = manifest.attach) {
    out["attach"] = {{"jit_names", attach->jit_names}, {"explanation", attach->explanation}};
    put(out["attach"], "jitlog_path", attach->jitlog_path);
    put(out["attach"], "jit_code_bytes", attach->jit_code_bytes);
  }
  return out;
}

void read_details(const Fields& in, Manifest& manifest) {
  in.take_object("host", manifest.host, [](const Fields& host) {
    Manifest::Host out;
    host.take("name", out.name);
    host.take("system", out.system);
    host.take("release", out.release);
    host.take("machine", out.machine);
    return out;
  });
  in.take_object("clock", manifest.clock, [](const Fields& clock) {
    Manifest::Clock out;
    clock.take("monotonic_ns", out.monotonic_ns);
    clock.take("unix_s", out.unix_s);
    return out;
  });
  in.take_object("vmprof", manifest.vmprof, [](const Fields& vmprof) {
    Manifest::Vmprof out;
    vmprof.take("rate_hz", out.rate_hz);
    vmprof.take("native_frames", out.native_frames);
    return out;
  });
  // null: perf sampling was off.
  if (in.is_null("perf")) manifest.perf.emplace().state = Manifest::Perf::State::Off;
  else in.take_object("perf", manifest.perf, read_perf);
  in.take_object("crash_capture", manifest.crash_capture, [](const Fields& capture) {
    Manifest::CrashCapture out;
    capture.take("ptrace", out.ptrace);
    capture.take("reason", out.reason);
    return out;
  });
  in.take_object("exit", manifest.exit, [](const Fields& exit) {
    Manifest::Exit out;
    exit.take("code", out.code);
    exit.take("signal", out.signal);
    exit.take("signal_name", out.signal_name);
    exit.take("crash_thread", out.crash_thread);
    return out;
  });
  in.take_object("sections", manifest.sections, [](const Fields& sections) {
    Manifest::SectionBytes out;
    sections.take("jitlog_bytes", out.jitlog_bytes);
    sections.take("vmprof_bytes", out.vmprof_bytes);
    sections.take("jit_code_bytes", out.jit_code_bytes);
    return out;
  });
  in.take_object("attach", manifest.attach, [](const Fields& attach) {
    Manifest::Attach out;
    attach.take("jit_names", out.jit_names);
    attach.take("explanation", out.explanation);
    attach.take("jitlog_path", out.jitlog_path);
    attach.take("jit_code_bytes", out.jit_code_bytes);
    return out;
  });
}

}  // namespace

json to_json(const Manifest& manifest) {
  json out = details_json(manifest);
  out["jitprof_version"] = manifest.jitprof_version;
  put(out, "mode", manifest.mode);
  out["command"] = manifest.command;
  put(out, "pid", manifest.pid);
  put(out, "start_time", manifest.start_time);
  put(out, "end_time", manifest.end_time);
  put(out, "duration_s", manifest.duration_s);
  put(out, "target_cpu_s", manifest.target_cpu_s);
  put(out, "pypy_logs", manifest.pypy_logs);
  put(out, "pypy_version", manifest.pypy_version);
  put(out, "vm", manifest.vm);
  out["state"] = manifest.state;
  put(out, "target_exited", manifest.target_exited);
  return out;
}

std::string encode(const Manifest& manifest) {
  return to_json(manifest).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Manifest manifest_from_json(const json& document) {
  if (!document.is_object()) throw ManifestError("the manifest is not a JSON object");
  const Fields in(document, "");
  Manifest manifest;
  in.take("jitprof_version", manifest.jitprof_version);
  in.take("mode", manifest.mode);
  in.take("command", manifest.command);
  in.take("pid", manifest.pid);
  in.take("start_time", manifest.start_time);
  in.take("end_time", manifest.end_time);
  in.take("duration_s", manifest.duration_s);
  in.take("target_cpu_s", manifest.target_cpu_s);
  in.take("pypy_logs", manifest.pypy_logs);
  in.take("pypy_version", manifest.pypy_version);
  in.take("vm", manifest.vm);
  in.take("state", manifest.state);
  in.take("target_exited", manifest.target_exited);
  read_details(in, manifest);
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
