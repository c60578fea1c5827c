// The Firefox Profiler's Gecko profile format (what Firefox itself emits; the
// profiler upgrades and processes it on load). Layout, versions and the rules
// by which the profiler reads a frame's location string: docs/firefox-format.md.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <unordered_map>

#include "bundle/text.h"
#include "export/export.h"

namespace jitprof::exports {
namespace {

using correlate::Category;
using nlohmann::json;

constexpr int kGeckoProfileVersion = 36;

// meta.categories: the profiler colours frames by these. Index 0 is the
// default ("grey" is required of it); subcategory 0 is always the category.
struct FirefoxCategory {
  const char* name;
  const char* color;
  std::vector<const char*> subcategories;
};
const std::vector<FirefoxCategory> kCategories = {
    {"Other", "grey", {"Other"}},
    {"Python", "blue", {"Other"}},
    {"JIT", "green", {"Other", "Trace", "Inlined Python", "Helper", "No jitlog"}},
    {"Interpreter", "yellow", {"Other", "Interpreter", "Other runtime"}},
    {"GC / CC", "orange", {"Other", "Minor collection", "Major collection", "Outside collections"}},
    {"JIT compiler", "lightblue", {"Other", "Tracing", "Optimizer", "Backend", "Metainterp", "Guard failure / blackhole"}},
    {"Native", "purple", {"Other"}},
    {"Kernel", "red", {"Other"}},
};

// (category, subcategory) of a frame's category in kCategories.
std::pair<int, int> category_of(Category category) {
  switch (category) {
    case Category::Python: return {1, 0};
    case Category::JitTrace: return {2, 1};
    case Category::JitInlined: return {2, 2};
    case Category::JitHelper: return {2, 3};
    case Category::JitAnonymous: return {2, 4};
    case Category::Interpreter: return {3, 1};
    case Category::Runtime: return {3, 2};
    case Category::GcMinor: return {4, 1};
    case Category::GcMajor: return {4, 2};
    case Category::Gc: return {4, 3};
    case Category::JitTracing: return {5, 1};
    case Category::JitOptimizer: return {5, 2};
    case Category::JitBackend: return {5, 3};
    case Category::JitMetainterp: return {5, 4};
    case Category::GuardFailure: return {5, 5};
    case Category::Native: return {6, 0};
    case Category::Kernel: return {7, 0};
  }
  return {0, 0};
}

// The profiler derives a frame's function from its location string:
// "NAME (FILE:LINE)" is a script function (LINE its first line), "NAME (in
// LIB)" a symbolicated native function, anything else a label.
class Locations {
 public:
  explicit Locations(const correlate::Profile& profile) {
    // A Python function's frames carry the line sampled; its first line (the
    // smallest seen, as in `jitprof report`) names the function, so that all
    // its lines are one function in the profiler.
    for (const auto& frame : profile.frames) {
      if (!is_python(frame)) continue;
      auto [line, fresh] = first_line_.try_emplace({frame.name, frame.file}, frame.line);
      if (!fresh && frame.line > 0 && (line->second <= 0 || frame.line < line->second)) line->second = frame.line;
    }
  }

  std::string location(const correlate::Frame& frame) const {
    const std::string library = std::filesystem::path(frame.file).filename().string();
    switch (frame.category) {
      case Category::Python:
      case Category::JitInlined:
        return fmt::format("{} ({}:{})", frame.name, frame.file.empty() ? "<unknown>" : frame.file,
                           std::max<std::int64_t>(1, first_line_.at({frame.name, frame.file})));
      case Category::Kernel: return fmt::format("{} (in kernel)", frame.name);
      case Category::JitTrace:
      case Category::JitHelper:
      case Category::JitAnonymous: break;
      default:
        if (correlate::is_runtime_phase(frame)) break;  // a label: "[GC minor]"
        if (frame.name.starts_with("0x")) return frame.name;  // an address without a symbol
        return fmt::format("{} (in {})", frame.name, library.empty() ? "?" : library);
    }
    return correlate::frame_label(frame);  // labels: "[jit] trace 4 (loop)"
  }

 private:
  static bool is_python(const correlate::Frame& frame) {
    return frame.category == Category::Python || frame.category == Category::JitInlined;
  }
  std::map<std::pair<std::string, std::string>, std::int64_t> first_line_;
};

// One thread's tables: strings, frames and stacks are per thread in this format.
class ThreadTables {
 public:
  ThreadTables(const correlate::Profile& profile, const Locations& locations)
      : profile_(profile), locations_(locations) {}

  // The stack-table index of a profile stack (root first), added on first use.
  json stack(std::uint32_t profile_stack) {
    auto [it, fresh] = stack_of_profile_stack_.try_emplace(profile_stack, -1);
    if (!fresh) return it->second < 0 ? json(nullptr) : json(it->second);
    std::int64_t prefix = -1;
    // What runs inside a runtime phase (GC, JIT compiler) is counted in the
    // phase's category, so that the profiler's category graph shows the phase.
    std::optional<Category> phase;
    for (std::uint32_t frame_id : profile_.stacks[profile_stack]) {
      const correlate::Frame& frame_data = profile_.frames[frame_id];
      if (correlate::is_runtime_phase(frame_data)) phase = frame_data.category;
      const std::int64_t frame = frame_index(frame_id, phase);
      auto [node, added] = stack_of_prefix_frame_.try_emplace({prefix, frame}, stacks_.size());
      if (added) stacks_.push_back(json::array({prefix < 0 ? json(nullptr) : json(prefix), frame}));
      prefix = static_cast<std::int64_t>(node->second);
    }
    it->second = prefix;
    return prefix < 0 ? json(nullptr) : json(prefix);
  }

  json to_json(json samples) && {
    return {{"samples", {{"schema", {{"stack", 0}, {"time", 1}, {"eventDelay", 2}}}, {"data", std::move(samples)}}},
            {"stackTable", {{"schema", {{"prefix", 0}, {"frame", 1}}}, {"data", std::move(stacks_)}}},
            {"frameTable",
             {{"schema",
               {{"location", 0},
                {"relevantForJS", 1},
                {"innerWindowID", 2},
                {"implementation", 3},
                {"line", 4},
                {"column", 5},
                {"category", 6},
                {"subcategory", 7}}},
              {"data", std::move(frames_)}}},
            {"markers",
             {{"schema", {{"name", 0}, {"startTime", 1}, {"endTime", 2}, {"phase", 3}, {"category", 4}, {"data", 5}}},
              {"data", json::array()}}},
            {"stringTable", std::move(strings_)}};
  }

 private:
  std::int64_t frame_index(std::uint32_t frame_id, std::optional<Category> phase) {
    auto [it, fresh] = frame_of_profile_frame_.try_emplace({frame_id, phase ? int(*phase) : -1}, frames_.size());
    if (fresh) {
      const correlate::Frame& frame = profile_.frames[frame_id];
      Category shown = phase.value_or(frame.category);
      // Metainterp code outside tracing: a guard failed (when PyPy's log timed the tracing).
      if (!phase && shown == Category::JitMetainterp && !profile_.phases.empty()) shown = Category::GuardFailure;
      const auto [category, subcategory] = category_of(shown);
      frames_.push_back(json::array({string_index(locations_.location(frame)), false, nullptr, nullptr,
                                     frame.line > 0 ? json(frame.line) : json(nullptr), nullptr, category,
                                     subcategory}));
    }
    return static_cast<std::int64_t>(it->second);
  }

  std::size_t string_index(const std::string& text) {
    auto [it, fresh] = string_ids_.try_emplace(text, strings_.size());
    if (fresh) strings_.push_back(text);
    return it->second;
  }

  const correlate::Profile& profile_;
  const Locations& locations_;
  json strings_ = json::array(), frames_ = json::array(), stacks_ = json::array();
  std::unordered_map<std::string, std::size_t> string_ids_;
  std::map<std::pair<std::uint32_t, int>, std::size_t> frame_of_profile_frame_;  // (frame, phase or -1)
  std::map<std::pair<std::int64_t, std::int64_t>, std::size_t> stack_of_prefix_frame_;
  std::unordered_map<std::uint32_t, std::int64_t> stack_of_profile_stack_;
};

}  // namespace

void write_firefox(const correlate::Profile& profile, const std::string& name, std::ostream& out) {
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::vector<const correlate::Sample*>> by_thread;
  std::uint64_t first_ns = ~std::uint64_t{0};
  for (const auto& sample : profile.samples) {
    by_thread[{sample.pid, sample.tid}].push_back(&sample);
    first_ns = std::min(first_ns, sample.time_ns);
  }
  if (profile.samples.empty()) first_ns = profile.clock_monotonic_ns;
  // Sample times are milliseconds after meta.startTime (Unix milliseconds).
  const double start_unix_ms =
      profile.clock_unix_s > 0 ? (profile.clock_unix_s + (double(first_ns) - double(profile.clock_monotonic_ns)) / 1e9) * 1e3
                               : 0.0;
  const double interval_ms = profile.seconds_per_sample * 1e3;

  const Locations locations(profile);
  json threads = json::array();
  for (auto& [ids, samples] : by_thread) {
    const auto [pid, tid] = ids;
    std::stable_sort(samples.begin(), samples.end(),
                     [](const correlate::Sample* a, const correlate::Sample* b) { return a->time_ns < b->time_ns; });
    ThreadTables tables(profile, locations);
    json rows = json::array();
    for (const correlate::Sample* sample : samples)
      rows.push_back(json::array({tables.stack(sample->stack), double(sample->time_ns - first_ns) / 1e6, 0}));
    const double last_ms = samples.empty() ? 0.0 : double(samples.back()->time_ns - first_ns) / 1e6;
    json thread = std::move(tables).to_json(std::move(rows));
    // The process's main thread gets the profiler's main-thread name, so it
    // heads its process track; that track shows the process name, which
    // carries the main thread's own name ("MainThread") instead.
    thread["name"] = tid == pid ? "GeckoMain" : correlate::thread_label(profile.thread(pid, tid), tid);
    const correlate::ThreadName* main = profile.thread(pid, pid);
    thread["processName"] = main && !main->shown().empty() ? fmt::format("{} (pid {}): {}", name, pid, main->shown())
                                                           : fmt::format("{} (pid {})", name, pid);
    thread["processType"] = "default";
    thread["pid"] = pid;
    thread["tid"] = tid;
    thread["registerTime"] = 0;
    thread["unregisterTime"] = last_ms + interval_ms;
    threads.push_back(std::move(thread));
  }

  json categories = json::array();
  for (const FirefoxCategory& category : kCategories)
    categories.push_back({{"name", category.name}, {"color", category.color}, {"subcategories", category.subcategories}});
  const json document = {
      {"meta",
       {{"version", kGeckoProfileVersion},
        {"startTime", start_unix_ms},
        {"shutdownTime", nullptr},
        {"interval", interval_ms},
        {"processType", 0},
        {"product", fmt::format("jitprof {}: {}", JITPROF_VERSION, name)},
        {"categories", std::move(categories)},
        {"markerSchema", json::array()},
        // Frames are named already: no symbol-server lookups.
        {"presymbolicated", true},
        {"stackwalk", 1},
        {"debug", 0},
        {"gcpoison", 0},
        {"asyncstack", 0}}},
      {"libs", json::array()},
      {"threads", std::move(threads)},
      {"processes", json::array()},
      {"pausedRanges", json::array()}};
  out << bundle::json_text(document) << '\n';
}

}  // namespace jitprof::exports
