// Runs a parsed query over a Model: each chain narrows a collection step by
// step; and / or / not combine results of the same collection.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string_view>
#include <functional>
#include <map>

#include "model.h"
#include "parser.h"
#include "views/views.h"

namespace jitprof::query {
namespace {

using jitlog::StageKind;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

enum class Kind { Traces, Guards, Methods, Ops, Samples };

constexpr std::array<std::string_view, 5> kKindNames = {"traces", "guards", "methods", "ops", "samples"};  // by Kind

const char* kind_name(Kind kind) { return kKindNames[static_cast<std::size_t>(kind)].data(); }

// A collection's kind: loops and bridges are traces too.
Kind kind_of(const std::string& collection) {
  const auto found = std::find(kKindNames.begin(), kKindNames.end(), collection);
  return found == kKindNames.end() ? Kind::Traces : static_cast<Kind>(found - kKindNames.begin());
}

using Mask = std::vector<char>;
using Predicate = std::function<bool(std::size_t)>;
using Metric = std::function<double(std::size_t)>;

struct Set {
  Kind kind;
  Mask mask;
};

// What a step takes between its parentheses, checked before its builder runs.
enum class Takes {
  Nothing,       // samples()
  Glob,          // contains('call_assembler')
  OptionalGlob,  // hasbridge() or hasbridge('*f*'): "*" when absent
  Category,      // category('jit')
  Stage,         // stage(asm) or stage('asm')
  Traces,        // in(hot): a query over traces
};

// A step's argument once checked against what the step takes.
struct Argument {
  std::string text;        // the glob, category or stage
  std::size_t column = 0;  // where it is, for errors about its value
  Mask traces;             // Takes::Traces: the traces the query selects
};

class Evaluator;

// One step of a collection: a filter, which builds a Predicate, or a number,
// which builds a Metric. Error messages list the steps as name(params), in
// the order of their table.
struct StepRow {
  const char* name;
  Takes takes;
  const char* params;
  Predicate (Evaluator::*filter)(const Argument&);
  Metric (Evaluator::*number)(const Argument&);
};

StepRow filter(const char* name, Takes takes, const char* params, Predicate (Evaluator::*build)(const Argument&)) {
  return {name, takes, params, build, nullptr};
}

StepRow number(const char* name, Takes takes, const char* params, Metric (Evaluator::*build)(const Argument&)) {
  return {name, takes, params, nullptr, build};
}

StepRow number(const char* name, Metric (Evaluator::*build)(const Argument&)) {
  return number(name, Takes::Nothing, "", build);
}

// What samples.function(...), leaf(...) and category(...) test in a stack.
enum class StackTest { Function, Leaf };

class Evaluator {
 public:
  Evaluator(const Model::Data& data, const Limits& limits)
      : data_(data), limits_(limits), deadline_(Clock::now() + limits.max_time) {}

  Set eval(const Expr& expr) {
    switch (expr.kind) {
      case Expr::Kind::Chain: return chain(expr);
      case Expr::Kind::Not: {
        Set inner = eval(*expr.children[0]);
        for (char& in : inner.mask) in = !in;
        return inner;
      }
      case Expr::Kind::And:
      case Expr::Kind::Or: {
        Set left = eval(*expr.children[0]);
        const Set right = eval(*expr.children[1]);
        if (left.kind != right.kind)
          throw QueryError(expr.column, fmt::format("'{}' joins queries over one collection, not {} and {}",
                                                    expr.kind == Expr::Kind::And ? "and" : "or", kind_name(left.kind),
                                                    kind_name(right.kind)));
        for (std::size_t i = 0; i < left.mask.size(); ++i)
          left.mask[i] = expr.kind == Expr::Kind::And ? (left.mask[i] && right.mask[i]) : (left.mask[i] || right.mask[i]);
        return left;
      }
    }
    return {Kind::Traces, {}};
  }

  std::size_t size(Kind kind) const {
    switch (kind) {
      case Kind::Traces: return data_.traces.size();
      case Kind::Guards: return data_.guards.size();
      case Kind::Methods: return data_.methods.size();
      case Kind::Ops: return data_.ops.size();
      case Kind::Samples: return data_.profile->samples.size();
    }
    return 0;
  }

  // A metric by name without arguments, for sort(...).
  Metric metric_named(Kind kind, const std::string& name, std::size_t column) {
    const StepRow* row = find_step(kind, name);
    if (row == nullptr || row->number == nullptr)
      throw QueryError(column, fmt::format("{} cannot be sorted by '{}' (metrics: {})", kind_name(kind), name,
                                           step_list(kind, false)));
    const Step step{name, column, {}, std::nullopt};
    return (this->*row->number)(argument(step, row->takes));
  }

  void tick() {
    // Checked every few thousand items: a query stops at its time limit.
    if ((++ticks_ & 4095) == 0 && Clock::now() > deadline_)
      throw QueryError(0, fmt::format("the query took longer than {} ms: narrow it", limits_.max_time.count()));
  }

  const jitlog::Trace& trace(std::size_t index) const { return *data_.traces[index].trace; }

  // Which merge point each op of a stage comes from, computed once per stage.
  const std::vector<const jitlog::MergePoint*>& sources(std::size_t trace_index, StageKind kind) {
    auto [it, fresh] = sources_.try_emplace({trace_index, kind});
    if (fresh)
      if (const jitlog::Stage* stage = trace(trace_index).stage(kind)) it->second = jitlog::op_sources(trace(trace_index), *stage);
    return it->second;
  }

 private:
  // The steps of each collection, filters first (tables below the class).
  static const std::map<Kind, std::vector<StepRow>> kSteps;

  static const StepRow* find_step(Kind kind, const std::string& name) {
    for (const StepRow& row : kSteps.at(kind))
      if (name == row.name) return &row;
    return nullptr;
  }

  // "contains(op glob), hasbridge([function glob]), ...": a collection's filters or numbers.
  static std::string step_list(Kind kind, bool filters) {
    std::string list;
    for (const StepRow& row : kSteps.at(kind)) {
      if ((row.filter != nullptr) != filters) continue;
      if (!list.empty()) list += ", ";
      list += fmt::format("{}({})", row.name, row.params);
    }
    return list;
  }

  Set chain(const Expr& expr) {
    const Kind kind = kind_of(expr.collection);
    Set set{kind, Mask(size(kind), 1)};
    if (expr.collection == "loops" || expr.collection == "bridges") {
      const auto wanted = expr.collection == "loops" ? jitlog::TraceKind::Loop : jitlog::TraceKind::Bridge;
      for (std::size_t i = 0; i < set.mask.size(); ++i) set.mask[i] = trace(i).kind == wanted;
    }
    for (const Step& step : expr.steps) apply(set, step);
    return set;
  }

  void apply(Set& set, const Step& step) {
    const StepRow* row = find_step(set.kind, step.name);
    if (row == nullptr)
      throw QueryError(step.column, fmt::format("{} have no step '{}' (filters: {}; numbers: {})", kind_name(set.kind),
                                                step.name, step_list(set.kind, true), step_list(set.kind, false)));
    if (row->filter) {
      const Predicate predicate = (this->*row->filter)(argument(step, row->takes));
      if (step.compare)
        throw QueryError(step.compare->column, fmt::format("{}(...) is a filter, not a number: drop the comparison", step.name));
      for (std::size_t i = 0; i < set.mask.size(); ++i) {
        tick();
        if (set.mask[i] && !predicate(i)) set.mask[i] = 0;
      }
      return;
    }
    const Metric metric = (this->*row->number)(argument(step, row->takes));
    if (!step.compare)
      throw QueryError(step.column, fmt::format("{}() is a number: compare it, e.g. {}() > 0", step.name, step.name));
    const double scale = step.compare->percent ? percent_scale(set, step, metric) : 1;
    for (std::size_t i = 0; i < set.mask.size(); ++i) {
      tick();
      if (set.mask[i]) set.mask[i] = holds(metric(i) * scale, *step.compare);
    }
  }

  // A share of the whole: all samples for samples(), else the collection's sum.
  double percent_scale(const Set& set, const Step& step, const Metric& metric) const {
    double whole = 0;
    if (step.name == "samples") {
      whole = double(data_.profile->samples.size());
    } else {
      for (std::size_t i = 0; i < set.mask.size(); ++i) whole += metric(i);
    }
    return whole > 0 ? 100.0 / whole : 0;
  }

  static bool holds(double value, const Comparison& compare) {
    if (compare.op == ">") return value > compare.value;
    if (compare.op == ">=") return value >= compare.value;
    if (compare.op == "<") return value < compare.value;
    if (compare.op == "<=") return value <= compare.value;
    if (compare.op == "==") return value == compare.value;
    return value != compare.value;
  }

  // --- arguments -------------------------------------------------------------

  static void arity(const Step& step, std::size_t least, std::size_t most) {
    if (step.args.size() < least || step.args.size() > most) {
      const std::string wanted = least == most ? std::to_string(least) : fmt::format("{} to {}", least, most);
      throw QueryError(step.column, fmt::format("{}(...) takes {} argument{}, not {}", step.name, wanted,
                                                most == 1 ? "" : "s", step.args.size()));
    }
  }

  static std::string text(const Step& step, std::size_t index, const char* what) {
    const Arg& arg = step.args[index];
    if (arg.kind != Arg::Kind::String)
      throw QueryError(arg.column, fmt::format("{}(...) takes {} in quotes, e.g. {}('{}')", step.name, what, step.name,
                                               arg.text.empty() ? "*" : arg.text));
    return arg.text;
  }

  // A glob argument, or "*" when it is optional and absent.
  static std::string glob(const Step& step, bool optional = false) {
    arity(step, optional ? 0 : 1, 1);
    return step.args.empty() ? "*" : text(step, 0, "a glob");
  }

  Mask traces_of(const Step& step) {
    arity(step, 1, 1);
    const Set inner = eval(*step.args[0].query);
    if (inner.kind != Kind::Traces)
      throw QueryError(step.args[0].column, fmt::format("in(...) takes a query over traces, not {}", kind_name(inner.kind)));
    return inner.mask;
  }

  // A step's arguments checked against what its row says it takes: their count, then their kind.
  Argument argument(const Step& step, Takes takes) {
    switch (takes) {
      case Takes::Nothing:
        arity(step, 0, 0);
        return {};
      case Takes::Glob: return {glob(step), 0, {}};
      case Takes::OptionalGlob: return {glob(step, true), 0, {}};
      case Takes::Category:
        arity(step, 1, 1);
        return {text(step, 0, "a category"), 0, {}};
      case Takes::Stage: {
        arity(step, 1, 1);
        const Arg& arg = step.args[0];
        return {arg.kind == Arg::Kind::Name ? arg.text : text(step, 0, "a stage"), arg.column, {}};
      }
      case Takes::Traces: return {"", 0, traces_of(step)};
    }
    return {};
  }

  // --- what filters and numbers look at --------------------------------------

  bool source_matches(const jitlog::MergePoint* point, const std::string& pattern, bool file) const {
    return point && glob_match(pattern, file ? point->file : point->function);
  }

  // Whether an op of a trace's stage comes from a function matching `pattern`.
  bool op_in_function(std::size_t trace_index, StageKind stage, std::size_t op, const std::string& pattern) {
    return source_matches(sources(trace_index, stage)[op], pattern, false);
  }

  bool has_bridge(std::size_t trace_index, const std::string& pattern, std::optional<std::size_t> guard_op) const {
    for (std::size_t bridge : data_.traces[trace_index].bridges) {
      const jitlog::Trace& child = trace(bridge);
      if (guard_op && child.parent_guard->op_index != *guard_op) continue;
      if (source_matches(child.source(), pattern, false)) return true;
    }
    return false;
  }

  const jitlog::Operation& operation(std::size_t trace_index, StageKind stage, std::size_t op) const {
    return trace(trace_index).stage(stage)->ops[op];
  }

  double asm_op_samples(std::size_t trace_index, std::size_t op) const {
    const auto& samples = data_.traces[trace_index].op_samples;
    return op < samples.size() ? double(samples[op]) : 0.0;
  }

  // The items whose trace the in(...) query selects; `trace_of` gives an item's trace.
  template <class TraceOf>
  static Predicate within(const Argument& arg, TraceOf trace_of) {
    auto mask = std::make_shared<Mask>(arg.traces);
    return [mask, trace_of](std::size_t i) { return (*mask)[trace_of(i)] != 0; };
  }

  // --- traces ----------------------------------------------------------------

  Predicate trace_contains(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) {
      for (const jitlog::Stage& stage : trace(i).stages)
        for (const jitlog::Operation& op : stage.ops)
          if (op_name_match(pattern, op.name)) return true;
      return false;
    };
  }

  Predicate trace_hasbridge(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) { return has_bridge(i, pattern, std::nullopt); };
  }

  Predicate trace_function(const Argument& arg) { return trace_source(arg.text, false); }
  Predicate trace_file(const Argument& arg) { return trace_source(arg.text, true); }
  Predicate trace_source(const std::string& pattern, bool file) {
    return [this, pattern, file](std::size_t i) { return source_matches(trace(i).source(), pattern, file); };
  }

  Predicate trace_inlines(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) {
      for (const std::string& function : data_.traces[i].inlined)
        if (glob_match(pattern, function)) return true;
      return false;
    };
  }

  Predicate trace_in(const Argument& arg) {
    return within(arg, [](std::size_t i) { return i; });
  }

  Metric trace_samples(const Argument&) {
    return [this](std::size_t i) { return double(data_.traces[i].samples); };
  }
  Metric trace_entries(const Argument&) {
    return [this](std::size_t i) { return double(trace(i).entry_count); };
  }
  Metric trace_executions(const Argument&) {
    return [this](std::size_t i) { return double(trace(i).executions()); };
  }
  Metric trace_bridges(const Argument&) {
    return [this](std::size_t i) { return double(data_.traces[i].bridges.size()); };
  }
  Metric trace_id(const Argument&) {
    return [this](std::size_t i) { return double(trace(i).id); };
  }
  Metric trace_line(const Argument&) {
    return [this](std::size_t i) {
      const auto* point = trace(i).source();
      return point ? double(point->line) : 0.0;
    };
  }

  // The stage ops(), guards() and failures() count: asm, else opt.
  const jitlog::Stage* counted_stage(std::size_t i) const {
    const jitlog::Stage* stage = trace(i).stage(StageKind::Asm);
    return stage ? stage : trace(i).stage(StageKind::Opt);
  }
  Metric trace_ops(const Argument&) {
    return [this](std::size_t i) {
      const jitlog::Stage* stage = counted_stage(i);
      return stage ? double(stage->ops.size()) : 0.0;
    };
  }
  Metric trace_guards(const Argument&) { return guard_total(false); }
  Metric trace_failures(const Argument&) { return guard_total(true); }
  Metric guard_total(bool failures) {
    return [this, failures](std::size_t i) {
      const jitlog::Stage* stage = counted_stage(i);
      if (stage == nullptr) return 0.0;
      double total = 0;
      for (const auto& op : stage->ops)
        if (op.is_guard()) total += failures ? double(op.counter) : 1.0;
      return total;
    };
  }

  // removed(op) and added(op): noopt -> opt.
  Metric trace_removed(const Argument& arg) { return stage_difference(arg.text, true); }
  Metric trace_added(const Argument& arg) { return stage_difference(arg.text, false); }
  Metric stage_difference(const std::string& pattern, bool removed) {
    return [this, pattern, removed](std::size_t i) {
      double count = 0;
      for (const auto& [op, n] : removed ? data_.traces[i].removed : data_.traces[i].added)
        if (op_name_match(pattern, op)) count += double(n);
      return count;
    };
  }

  // --- guards ----------------------------------------------------------------

  const jitlog::Operation& guard_op(std::size_t i) const {
    return operation(data_.guards[i].trace, StageKind::Asm, data_.guards[i].op);
  }

  Predicate guard_name(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) { return op_name_match(pattern, guard_op(i).name); };
  }
  Predicate guard_function(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) {
      return op_in_function(data_.guards[i].trace, StageKind::Asm, data_.guards[i].op, pattern);
    };
  }
  Predicate guard_hasbridge(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) {
      return has_bridge(data_.guards[i].trace, pattern, data_.guards[i].op);
    };
  }
  Predicate guard_in(const Argument& arg) {
    return within(arg, [this](std::size_t i) { return data_.guards[i].trace; });
  }

  Metric guard_failures(const Argument&) {
    return [this](std::size_t i) { return double(guard_op(i).counter); };
  }
  Metric guard_samples(const Argument&) {
    return [this](std::size_t i) { return asm_op_samples(data_.guards[i].trace, data_.guards[i].op); };
  }
  Metric guard_trace(const Argument&) {
    return [this](std::size_t i) { return double(trace(data_.guards[i].trace).id); };
  }
  Metric guard_index(const Argument&) {
    return [this](std::size_t i) { return double(data_.guards[i].op); };
  }

  // --- methods ---------------------------------------------------------------

  Predicate method_name(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) { return glob_match(pattern, data_.methods[i].name); };
  }
  Predicate method_file(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) { return glob_match(pattern, data_.methods[i].file); };
  }
  // Methods appearing in the selected traces.
  Predicate method_in(const Argument& arg) {
    auto inside = std::make_shared<std::set<std::pair<std::string, std::string>>>();
    for (std::size_t t = 0; t < arg.traces.size(); ++t)
      if (arg.traces[t]) inside->insert(data_.traces[t].functions.begin(), data_.traces[t].functions.end());
    return [this, inside](std::size_t i) { return inside->count({data_.methods[i].name, data_.methods[i].file}) > 0; };
  }

  Metric method_callsites(const Argument&) {
    return [this](std::size_t i) { return double(data_.methods[i].callsites.size()); };
  }
  Metric method_self(const Argument&) {
    return [this](std::size_t i) { return double(data_.methods[i].self); };
  }
  Metric method_total(const Argument&) {
    return [this](std::size_t i) { return double(data_.methods[i].total); };
  }
  Metric method_traces(const Argument&) {
    return [this](std::size_t i) { return double(data_.methods[i].traces); };
  }
  Metric method_line(const Argument&) {
    return [this](std::size_t i) { return double(data_.methods[i].line); };
  }

  // --- ops -------------------------------------------------------------------

  Predicate op_name(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) {
      const OpInfo& op = data_.ops[i];
      return op_name_match(pattern, operation(op.trace, op.stage, op.op).name);
    };
  }
  Predicate op_stage(const Argument& arg) {
    const auto stage = jitlog::parse_stage_name(arg.text);
    if (!stage) throw QueryError(arg.column, "the stages are noopt, opt and asm");
    return [this, stage](std::size_t i) { return data_.ops[i].stage == *stage; };
  }
  Predicate op_function(const Argument& arg) {
    return [this, pattern = arg.text](std::size_t i) {
      const OpInfo& op = data_.ops[i];
      return op_in_function(op.trace, op.stage, op.op, pattern);
    };
  }
  Predicate op_in(const Argument& arg) {
    return within(arg, [this](std::size_t i) { return data_.ops[i].trace; });
  }

  Metric op_samples(const Argument&) {
    return [this](std::size_t i) {
      const OpInfo& op = data_.ops[i];
      return op.stage == StageKind::Asm ? asm_op_samples(op.trace, op.op) : 0.0;
    };
  }
  Metric op_index(const Argument&) {
    return [this](std::size_t i) { return double(data_.ops[i].op); };
  }
  Metric op_trace(const Argument&) {
    return [this](std::size_t i) { return double(trace(data_.ops[i].trace).id); };
  }

  // --- samples ---------------------------------------------------------------

  Predicate sample_in(const Argument& arg) {
    const correlate::Profile& profile = *data_.profile;
    auto mask = std::make_shared<Mask>(arg.traces);
    return [this, mask, &profile](std::size_t i) {
      const auto& sample = profile.samples[i];
      if (!sample.trace) return false;
      auto index = data_.trace_by_id.find(*sample.trace);
      return index != data_.trace_by_id.end() && (*mask)[index->second] != 0;
    };
  }
  Predicate sample_function(const Argument& arg) { return sample_stacks(arg.text, StackTest::Function); }
  Predicate sample_leaf(const Argument& arg) { return sample_stacks(arg.text, StackTest::Leaf); }
  // The sample's own category: its runtime phase, else its innermost frame's.
  Predicate sample_category(const Argument& arg) {
    const correlate::Profile& profile = *data_.profile;
    return [&profile, name = arg.text](std::size_t i) { return name == correlate::category_name(profile.samples[i].category); };
  }

  // Decided once per distinct stack, then looked up per sample.
  Predicate sample_stacks(const std::string& pattern, StackTest test) {
    const correlate::Profile& profile = *data_.profile;
    auto per_stack = std::make_shared<std::vector<char>>(profile.stacks.size(), 0);
    for (std::size_t s = 0; s < profile.stacks.size(); ++s) {
      const auto& stack = profile.stacks[s];
      if (stack.empty()) continue;
      const correlate::Frame& leaf = profile.frames[stack.back()];
      if (test == StackTest::Leaf) {
        (*per_stack)[s] = glob_match(pattern, correlate::frame_label(leaf));
      } else {
        for (std::uint32_t id : stack) {
          const correlate::Frame& frame = profile.frames[id];
          const bool python = frame.category == correlate::Category::Python ||
                              frame.category == correlate::Category::JitInlined;
          if (python && glob_match(pattern, frame.name)) (*per_stack)[s] = 1;
        }
      }
    }
    return [per_stack, &profile](std::size_t i) { return (*per_stack)[profile.samples[i].stack] != 0; };
  }

  Metric sample_tid(const Argument&) {
    return [this](std::size_t i) { return double(data_.profile->samples[i].tid); };
  }
  // Milliseconds after the first sample.
  Metric sample_time(const Argument&) {
    const std::uint64_t first = data_.first_sample_ns;
    return [this, first](std::size_t i) { return double(data_.profile->samples[i].time_ns - first) / 1e6; };
  }

  const Model::Data& data_;
  const Limits& limits_;
  Clock::time_point deadline_;
  std::uint64_t ticks_ = 0;
  std::map<std::pair<std::size_t, StageKind>, std::vector<const jitlog::MergePoint*>> sources_;
};

// Adding a step is adding a row (and its builder above).
const std::map<Kind, std::vector<StepRow>> Evaluator::kSteps = {
    {Kind::Traces,
     {
         filter("contains", Takes::Glob, "op glob", &Evaluator::trace_contains),
         filter("hasbridge", Takes::OptionalGlob, "[function glob]", &Evaluator::trace_hasbridge),
         filter("function", Takes::Glob, "glob", &Evaluator::trace_function),
         filter("file", Takes::Glob, "glob", &Evaluator::trace_file),
         filter("inlines", Takes::Glob, "glob", &Evaluator::trace_inlines),
         filter("in", Takes::Traces, "traces query", &Evaluator::trace_in),
         number("samples", &Evaluator::trace_samples),
         number("entries", &Evaluator::trace_entries),
         number("executions", &Evaluator::trace_executions),
         number("ops", &Evaluator::trace_ops),
         number("guards", &Evaluator::trace_guards),
         number("bridges", &Evaluator::trace_bridges),
         number("failures", &Evaluator::trace_failures),
         number("removed", Takes::Glob, "op glob", &Evaluator::trace_removed),
         number("added", Takes::Glob, "op glob", &Evaluator::trace_added),
         number("line", &Evaluator::trace_line),
         number("id", &Evaluator::trace_id),
     }},
    {Kind::Guards,
     {
         filter("name", Takes::Glob, "glob", &Evaluator::guard_name),
         filter("function", Takes::Glob, "glob", &Evaluator::guard_function),
         filter("hasbridge", Takes::OptionalGlob, "[function glob]", &Evaluator::guard_hasbridge),
         filter("in", Takes::Traces, "traces query", &Evaluator::guard_in),
         number("failures", &Evaluator::guard_failures),
         number("samples", &Evaluator::guard_samples),
         number("trace", &Evaluator::guard_trace),
         number("index", &Evaluator::guard_index),
     }},
    {Kind::Methods,
     {
         filter("name", Takes::Glob, "glob", &Evaluator::method_name),
         filter("file", Takes::Glob, "glob", &Evaluator::method_file),
         filter("in", Takes::Traces, "traces query", &Evaluator::method_in),
         number("callsites", &Evaluator::method_callsites),
         number("self", &Evaluator::method_self),
         number("total", &Evaluator::method_total),
         number("samples", &Evaluator::method_total),
         number("traces", &Evaluator::method_traces),
         number("line", &Evaluator::method_line),
     }},
    {Kind::Ops,
     {
         filter("name", Takes::Glob, "glob", &Evaluator::op_name),
         filter("stage", Takes::Stage, "'noopt'|'opt'|'asm'", &Evaluator::op_stage),
         filter("function", Takes::Glob, "glob", &Evaluator::op_function),
         filter("in", Takes::Traces, "traces query", &Evaluator::op_in),
         number("samples", &Evaluator::op_samples),
         number("index", &Evaluator::op_index),
         number("trace", &Evaluator::op_trace),
     }},
    {Kind::Samples,
     {
         filter("in", Takes::Traces, "traces query", &Evaluator::sample_in),
         filter("function", Takes::Glob, "glob", &Evaluator::sample_function),
         filter("leaf", Takes::Glob, "glob", &Evaluator::sample_leaf),
         filter("category", Takes::Category, "name", &Evaluator::sample_category),
         number("tid", &Evaluator::sample_tid),
         number("time", &Evaluator::sample_time),
     }},
};

json location(const jitlog::MergePoint* point, json row) {
  row["function"] = point ? json(point->function) : json(nullptr);
  row["file"] = point ? json(point->file) : json(nullptr);
  row["line"] = point ? json(point->line) : json(nullptr);
  return row;
}

json row_of(Kind kind, std::size_t i, const Model::Data& data, Evaluator& evaluator) {
  const correlate::Profile& profile = *data.profile;
  switch (kind) {
    case Kind::Traces: {
      const TraceInfo& info = data.traces[i];
      const double samples = double(profile.samples.size());
      return location(info.trace->source(), {{"id", info.trace->id},
                                             {"type", jitlog::trace_kind_name(info.trace->kind)},
                                             {"samples", info.samples},
                                             {"share", samples > 0 ? double(info.samples) / samples : 0.0},
                                             {"entries", info.trace->entry_count},
                                             {"bridges", info.bridges.size()}});
    }
    case Kind::Guards: {
      const GuardInfo& guard = data.guards[i];
      const jitlog::Trace& trace = *data.traces[guard.trace].trace;
      const jitlog::Operation& op = trace.stage(StageKind::Asm)->ops[guard.op];
      const auto& samples = data.traces[guard.trace].op_samples;
      return location(evaluator.sources(guard.trace, StageKind::Asm)[guard.op],
                      {{"trace", trace.id},
                       {"op", guard.op},
                       {"name", op.name},
                       {"failures", op.counter},
                       {"bridge", op.bridge ? json(*op.bridge) : json(nullptr)},
                       {"samples", guard.op < samples.size() ? samples[guard.op] : 0}});
    }
    case Kind::Methods: {
      const MethodInfo& method = data.methods[i];
      return {{"name", method.name}, {"file", method.file},   {"line", method.line},
              {"self", method.self}, {"total", method.total}, {"callsites", method.callsites.size()}};
    }
    case Kind::Ops: {
      const OpInfo& op = data.ops[i];
      const jitlog::Trace& trace = *data.traces[op.trace].trace;
      const jitlog::Operation& operation = trace.stage(op.stage)->ops[op.op];
      const auto& samples = data.traces[op.trace].op_samples;
      return location(evaluator.sources(op.trace, op.stage)[op.op],
                      {{"trace", trace.id},
                       {"stage", jitlog::stage_name(op.stage)},
                       {"op", op.op},
                       {"name", operation.name},
                       {"text", views::op_text(operation)},
                       {"samples", op.stage == StageKind::Asm && op.op < samples.size() ? samples[op.op] : 0}});
    }
    case Kind::Samples: {
      const correlate::Sample& sample = profile.samples[i];
      const auto& stack = profile.stacks[sample.stack];
      return {{"time_ms", double(sample.time_ns - data.first_sample_ns) / 1e6},
              {"tid", sample.tid},
              {"trace", sample.trace ? json(*sample.trace) : json(nullptr)},
              {"op", sample.op ? json(*sample.op) : json(nullptr)},
              {"leaf", stack.empty() ? json(nullptr) : json(correlate::frame_label(profile.frames[stack.back()]))}};
    }
  }
  return nullptr;
}

const std::map<Kind, std::vector<std::string>> kColumns = {
    {Kind::Traces, {"id", "type", "function", "file", "line", "samples", "share", "entries", "bridges"}},
    {Kind::Guards, {"trace", "op", "name", "failures", "bridge", "samples", "function", "file", "line"}},
    {Kind::Methods, {"name", "file", "line", "self", "total", "callsites"}},
    {Kind::Ops, {"trace", "stage", "op", "name", "text", "samples", "function", "line"}},
    {Kind::Samples, {"time_ms", "tid", "trace", "op", "leaf"}},
};

// How results are ordered without sort(...): the most telling first.
const std::map<Kind, std::pair<const char*, bool>> kDefaultOrder = {
    {Kind::Traces, {"samples", true}}, {Kind::Guards, {"failures", true}}, {Kind::Methods, {"self", true}},
    {Kind::Ops, {"trace", false}},     {Kind::Samples, {"time", false}},
};

}  // namespace

Result run(const Model& model, std::string_view text, const Limits& limits) {
  const Query query = parse(text, limits);
  Evaluator evaluator(model.data(), limits);
  const Set set = evaluator.eval(*query.root);
  std::vector<std::size_t> items;
  for (std::size_t i = 0; i < set.mask.size(); ++i)
    if (set.mask[i]) items.push_back(i);

  const auto [default_metric, default_descending] = kDefaultOrder.at(set.kind);
  const std::string sort_by = query.sort ? query.sort->args[0].text : default_metric;
  const bool descending = query.sort ? !(query.sort->args.size() > 1 && query.sort->args[1].text == "asc") : default_descending;
  const Metric metric =
      evaluator.metric_named(set.kind, sort_by, query.sort ? query.sort->args[0].column : 0);
  std::vector<double> keys(set.mask.size());
  for (std::size_t item : items) {
    evaluator.tick();
    keys[item] = metric(item);
  }
  std::stable_sort(items.begin(), items.end(), [&](std::size_t a, std::size_t b) {
    return descending ? keys[a] > keys[b] : keys[a] < keys[b];
  });

  Result result;
  result.collection = kind_name(set.kind);
  result.columns = kColumns.at(set.kind);
  result.total = items.size();
  if (query.limit && items.size() > *query.limit) items.resize(*query.limit);
  for (std::size_t item : items) {
    evaluator.tick();
    result.rows.push_back(row_of(set.kind, item, model.data(), evaluator));
  }
  return result;
}

bool op_name_match(std::string_view pattern, std::string_view name) {
  if (glob_match(pattern, name)) return true;
  if (pattern.find_first_of("*?") != std::string_view::npos) return false;
  // The result-type suffix PyPy adds to op families: _i, _r, _f, _n.
  return name.size() == pattern.size() + 2 && name.starts_with(pattern) && name[pattern.size()] == '_' &&
         std::string_view("irfn").find(name.back()) != std::string_view::npos;
}

json result_json(const Result& result) {
  return {{"collection", result.collection}, {"columns", result.columns}, {"total", result.total}, {"rows", result.rows}};
}

bool glob_match(std::string_view pattern, std::string_view text) {
  // Two cursors; on a mismatch, retry from just after the last '*'. Each
  // retry moves the text cursor forward, so the work is O(pattern x text) at worst.
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace jitprof::query
