#include "export/export.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <unordered_map>

#include "bundle/text.h"

namespace jitprof::exports {

void write_collapsed(const correlate::Profile& profile, std::ostream& out) {
  std::vector<std::uint64_t> counts(profile.stacks.size(), 0);
  for (const auto& sample : profile.samples) ++counts[sample.stack];
  std::vector<std::string> labels;
  labels.reserve(profile.frames.size());
  for (const auto& frame : profile.frames) {
    std::string label = correlate::frame_label(frame);
    // ';' separates frames, the last space the count and a newline stacks: keep them out of names.
    std::replace(label.begin(), label.end(), ';', ':');
    std::replace(label.begin(), label.end(), '\n', ' ');
    labels.push_back(std::move(label));
  }
  // Stacks that differ only in what labels leave out (the line a function
  // was at) make one line, in the order they first appear.
  std::vector<std::pair<std::string, std::uint64_t>> lines;
  std::unordered_map<std::string, std::size_t> line_index;
  for (std::size_t stack = 0; stack < profile.stacks.size(); ++stack) {
    if (counts[stack] == 0) continue;
    std::string line;
    for (std::uint32_t id : profile.stacks[stack]) line += (line.empty() ? "" : ";") + labels[id];
    if (line.empty()) line = "[unknown]";
    const auto [at, fresh] = line_index.try_emplace(line, lines.size());
    if (fresh) lines.emplace_back(std::move(line), 0);
    lines[at->second].second += counts[stack];
  }
  for (const auto& [line, count] : lines) out << line << ' ' << count << '\n';
}

void write_speedscope(const correlate::Profile& profile, const std::string& name, std::ostream& out) {
  using nlohmann::json;
  // One speedscope frame per label, so a function is one node whatever line it was at.
  json frames = json::array();
  std::map<std::string, std::size_t> index_of_label;
  std::vector<std::size_t> index_of_frame(profile.frames.size());
  for (std::size_t i = 0; i < profile.frames.size(); ++i) {
    const correlate::Frame& frame = profile.frames[i];
    const std::string label = correlate::frame_label(frame);
    auto [it, fresh] = index_of_label.try_emplace(label, frames.size());
    if (fresh) {
      json item = {{"name", label}};
      const std::string& file = frame.source_file.empty() ? frame.file : frame.source_file;
      if (!file.empty()) item["file"] = file;
      frames.push_back(std::move(item));
    }
    index_of_frame[i] = it->second;
  }
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::vector<const correlate::Sample*>> by_thread;
  for (const auto& sample : profile.samples) by_thread[{sample.pid, sample.tid}].push_back(&sample);
  json profiles = json::array();
  for (const auto& [ids, samples] : by_thread) {
    const auto [pid, tid] = ids;
    json stacks = json::array(), weights = json::array();
    for (const correlate::Sample* sample : samples) {
      json stack = json::array();
      for (std::uint32_t id : profile.stacks[sample->stack]) stack.push_back(index_of_frame[id]);
      stacks.push_back(std::move(stack));
      weights.push_back(profile.seconds_per_sample);
    }
    const double end = double(samples.size()) * profile.seconds_per_sample;
    profiles.push_back({{"type", "sampled"},
                        {"name", correlate::thread_label(profile.thread(pid, tid), tid)},
                        {"unit", "seconds"},
                        {"startValue", 0},
                        {"endValue", end},
                        {"samples", std::move(stacks)},
                        {"weights", std::move(weights)}});
  }
  const json document = {{"$schema", "https://www.speedscope.app/file-format-schema.json"},
                         {"shared", {{"frames", std::move(frames)}}},
                         {"profiles", std::move(profiles)},
                         {"name", name},
                         {"activeProfileIndex", 0},
                         {"exporter", "jitprof " JITPROF_VERSION}};
  out << bundle::json_text(document) << '\n';
}

std::string trace_symbol(const jitlog::Trace& trace) {
  std::string name = fmt::format("pypy:{} {}", jitlog::trace_kind_name(trace.kind), trace.id);
  if (const jitlog::MergePoint* point = trace.source())
    name += fmt::format(" {} {}:{}", point->function, std::filesystem::path(point->file).filename().string(),
                        point->line);
  return name;
}

void write_perf_map(const jitlog::Forest& forest, std::ostream& out) {
  for (const jitlog::Trace& trace : forest.traces) {
    if (!trace.code) continue;
    out << fmt::format("{:x} {:x} {}\n", trace.code->start, trace.code->end - trace.code->start, trace_symbol(trace));
  }
}

}  // namespace jitprof::exports
