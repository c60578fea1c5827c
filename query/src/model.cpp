#include "model.h"

#include <algorithm>

#include "views/views.h"

namespace jitprof::query {
namespace {

using jitlog::StageKind;

bool is_python(const correlate::Frame& frame) {
  return frame.category == correlate::Category::Python || frame.category == correlate::Category::JitInlined;
}

// The model's methods by name and file, each added when first seen.
class Methods {
 public:
  explicit Methods(std::vector<MethodInfo>& methods) : methods_(methods) {}

  MethodInfo& operator()(const std::string& name, const std::string& file) {
    auto [it, fresh] = index_.try_emplace({name, file}, methods_.size());
    if (fresh) methods_.push_back({name, file, 0, 0, 0, {}, 0});
    return methods_[it->second];
  }

 private:
  std::vector<MethodInfo>& methods_;
  std::map<std::pair<std::string, std::string>, std::size_t> index_;
};

// Self and total samples as `jitprof report` counts them.
void add_reported(const correlate::Profile& profile, const bundle::Bundle& bundle, Methods& method) {
  const nlohmann::json report = views::report_json(profile, bundle, SIZE_MAX);
  for (const auto& function : report["functions"]) {
    MethodInfo& info = method(function["name"], function["file"]);
    info.line = function["line"];
    info.self = function["self"];
    info.total = function["total"];
  }
}

// The functions of a stage's merge points, and the call sites the JIT saw: a
// frame one level deeper than the point before it was called from that
// point's line.
void add_merge_points(const jitlog::Stage& stage, TraceInfo& info, Methods& method) {
  std::vector<const jitlog::MergePoint*> frames;  // innermost point per inline depth
  for (const jitlog::MergePoint& point : stage.merge_points) {
    info.functions.insert({point.function, point.file});
    if (point.inline_depth > 0) info.inlined.insert(point.function);
    frames.resize(point.inline_depth + 1, nullptr);
    frames[point.inline_depth] = &point;
    MethodInfo& callee = method(point.function, point.file);
    if (callee.line == 0 || point.line < callee.line) callee.line = point.line;
    if (point.inline_depth > 0 && frames[point.inline_depth - 1]) {
      const jitlog::MergePoint* caller = frames[point.inline_depth - 1];
      callee.callsites.insert({caller->function, caller->file, caller->line});
    }
  }
}

// Trace `i`: its samples, bridges, stage difference, ops, guards and functions.
void add_trace(Model::Data& data, std::size_t i, const std::map<std::uint64_t, views::TraceHeat>& heats,
               Methods& method) {
  const jitlog::Trace& trace = data.profile->forest.traces[i];
  TraceInfo& info = data.traces[i];
  info.trace = &trace;
  if (auto heat = heats.find(trace.id); heat != heats.end()) {
    info.samples = heat->second.total;
    info.op_samples = heat->second.per_asm_op;
  }
  if (trace.parent_guard)
    if (auto parent = data.trace_by_id.find(trace.parent_guard->trace_id); parent != data.trace_by_id.end())
      data.traces[parent->second].bridges.push_back(i);
  const jitlog::Stage* noopt = trace.stage(StageKind::NoOpt);
  const jitlog::Stage* opt = trace.stage(StageKind::Opt);
  if (noopt && opt) {
    const jitlog::StageDiff diff = jitlog::diff_stages(*noopt, *opt);
    info.removed = diff.removed;
    info.added = diff.added;
  }
  for (StageKind kind : {StageKind::NoOpt, StageKind::Opt, StageKind::Asm}) {
    const jitlog::Stage* stage = trace.stage(kind);
    if (stage == nullptr) continue;
    for (std::size_t op = 0; op < stage->ops.size(); ++op) {
      data.ops.push_back({i, kind, op});
      if (kind == StageKind::Asm && stage->ops[op].is_guard()) data.guards.push_back({i, op});
    }
    add_merge_points(*stage, info, method);
  }
  for (const auto& [name, file] : info.functions) ++method(name, file).traces;
}

// Calls the JIT did not inline: sampled stacks name the calling function
// (vmprof knows no call lines), one site per caller not seen in the traces.
void add_sampled_calls(const correlate::Profile& profile, Methods& method) {
  std::set<std::tuple<std::string, std::string, std::string, std::string>> stack_calls;  // callee, file, caller, file
  for (const auto& stack : profile.stacks) {
    for (std::size_t i = 1; i < stack.size(); ++i) {
      const correlate::Frame& caller = profile.frames[stack[i - 1]];
      const correlate::Frame& callee = profile.frames[stack[i]];
      if (is_python(caller) && is_python(callee) && !callee.trace)
        stack_calls.insert({callee.name, callee.file, caller.name, caller.file});
    }
  }
  for (const auto& [callee_name, callee_file, caller_name, caller_file] : stack_calls) {
    MethodInfo& callee = method(callee_name, callee_file);
    const bool known = std::any_of(callee.callsites.begin(), callee.callsites.end(), [&, &name = caller_name, &file = caller_file](const CallSite& site) {
      return std::get<0>(site) == name && std::get<1>(site) == file;
    });
    if (!known) callee.callsites.insert({caller_name, caller_file, -1});
  }
}

}  // namespace

QueryError::QueryError(std::size_t column, const std::string& message)
    : std::runtime_error(column ? "column " + std::to_string(column) + ": " + message : message), column_(column) {}

Model::Model(const correlate::Profile& profile, const bundle::Bundle& bundle) : data_(std::make_unique<Data>()) {
  Data& data = *data_;
  data.profile = &profile;
  if (!profile.samples.empty())
    data.first_sample_ns = std::min_element(profile.samples.begin(), profile.samples.end(), [](const auto& a, const auto& b) {
                             return a.time_ns < b.time_ns;
                           })->time_ns;
  const auto heats = views::heat_of_traces(profile);
  const auto& traces = profile.forest.traces;
  for (std::size_t i = 0; i < traces.size(); ++i) data.trace_by_id[traces[i].id] = i;

  Methods method(data.methods);
  add_reported(profile, bundle, method);
  data.traces.resize(traces.size());
  for (std::size_t i = 0; i < traces.size(); ++i) add_trace(data, i, heats, method);
  add_sampled_calls(profile, method);
}

Model::~Model() = default;

}  // namespace jitprof::query
