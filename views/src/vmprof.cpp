// The view of a vmprof profile: `jitprof profile`.
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "views/views.h"

namespace jitprof::views {
namespace {

using nlohmann::json;
using vmprof::FrameKind;
using vmprof::Profile;

bool is_python(FrameKind kind) { return kind == FrameKind::Interpreted || kind == FrameKind::Jitted; }

struct FunctionCounts {
  std::uint64_t self = 0;   // samples whose innermost Python frame is this function
  std::uint64_t total = 0;  // samples with this function anywhere on the stack
  std::uint64_t self_jit = 0;
};

// Where each sample was when taken, by the innermost entry of the stack.
struct Summary {
  std::uint64_t samples = 0;
  std::uint64_t in_jit = 0;          // innermost Python frame runs JIT code
  std::uint64_t in_interpreter = 0;  // innermost Python frame is interpreted
  std::uint64_t in_native = 0;       // leaf is a native frame (native mode)
  std::uint64_t frames = 0;
  std::unordered_map<std::uint64_t, FunctionCounts> functions;  // by code uid
  std::unordered_set<std::uint64_t> threads;
};

Summary summarize(const Profile& profile) {
  Summary summary;
  std::unordered_set<std::uint64_t> seen;
  for (const auto& sample : profile.samples) {
    const auto stack = profile.stack(sample);
    summary.samples += sample.count;
    summary.frames += stack.size();
    summary.threads.insert(sample.thread_id);
    if (!stack.empty() && stack.front().kind == FrameKind::Native) summary.in_native += sample.count;
    seen.clear();
    bool leaf_found = false;
    for (const auto& frame : stack) {
      if (!is_python(frame.kind)) continue;
      FunctionCounts& counts = summary.functions[frame.value];
      if (!leaf_found) {
        leaf_found = true;
        counts.self += sample.count;
        const bool jit = frame.kind == FrameKind::Jitted;
        if (jit) counts.self_jit += sample.count;
        (jit ? summary.in_jit : summary.in_interpreter) += sample.count;
      }
      // A function counts once per sample for total, even when recursive or
      // listed both as JIT-inlined and as interpreted.
      if (seen.insert(frame.value).second) counts.total += sample.count;
    }
  }
  return summary;
}

std::string mode_text(const vmprof::Header& header) {
  std::string mode;
  auto add = [&](bool on, const char* name) {
    if (on) mode += (mode.empty() ? "" : ", ") + std::string(name);
  };
  add(header.is_rpython(), "rpython");
  add(header.profiles_memory(), "memory");
  add(header.profiles_lines(), "lines");
  add(header.profiles_native(), "native");
  add(header.real_time(), "real-time");
  return mode.empty() ? "plain" : mode;
}

}  // namespace

json vmprof_json(const Profile& profile, std::size_t top) {
  const Summary summary = summarize(profile);
  std::vector<std::pair<std::uint64_t, FunctionCounts>> ranked(summary.functions.begin(), summary.functions.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    if (a.second.self != b.second.self) return a.second.self > b.second.self;
    if (a.second.total != b.second.total) return a.second.total > b.second.total;
    return a.first < b.first;
  });
  if (ranked.size() > top) ranked.resize(top);
  std::optional<double> duration;
  if (profile.start_time && profile.end_time)
    duration = double(profile.end_time->seconds - profile.start_time->seconds) +
               double(profile.end_time->microseconds - profile.start_time->microseconds) / 1e6;
  const auto& header = profile.header;
  json out = {{"bytes", profile.bytes_read},
              {"interpreter", header.interpreter},
              {"version", header.version},
              {"period_usec", header.period_usec},
              {"word_size", header.word_size},
              {"flags", header.flags},
              {"mode", mode_text(header)},
              {"samples", summary.samples},
              {"sample_records", profile.samples.size()},
              {"threads", summary.threads.size()},
              {"code_objects", profile.code_names.size()},
              {"has_trailer", profile.has_trailer},
              {"leaf", {{"jit", summary.in_jit}, {"interpreter", summary.in_interpreter}, {"native", summary.in_native}}}};
  out["duration_s"] = duration ? json(*duration) : json(nullptr);
  out["meta"] = json::object();
  for (const auto& [key, value] : profile.meta) out["meta"][key] = value;
  out["functions"] = json::array();
  for (const auto& [uid, counts] : ranked) {
    const vmprof::CodeName* name = profile.code_name(uid);
    out["functions"].push_back({{"uid", uid},
                                {"name", name ? name->function : ""},
                                {"file", name ? name->file : ""},
                                {"line", name ? name->line : 0},
                                {"self", counts.self},
                                {"self_jit", counts.self_jit},
                                {"total", counts.total}});
  }
  out.update(diagnostics_json(profile.warnings, profile.error));
  return out;
}

}  // namespace jitprof::views
