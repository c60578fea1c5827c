// Runs a parsed query over a Model: each chain narrows a collection step by
// step; and / or / not combine results of the same collection.
#include <fmt/format.h>

#include <algorithm>
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

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::Traces: return "traces";
    case Kind::Guards: return "guards";
    case Kind::Methods: return "methods";
    case Kind::Ops: return "ops";
    case Kind::Samples: return "samples";
  }
  return "?";
}

Kind kind_of(const std::string& collection) {
  if (collection == "guards") return Kind::Guards;
  if (collection == "methods") return Kind::Methods;
  if (collection == "ops") return Kind::Ops;
  if (collection == "samples") return Kind::Samples;
  return Kind::Traces;  // traces, loops, bridges
}

using Mask = std::vector<char>;
using Predicate = std::function<bool(std::size_t)>;
using Metric = std::function<double(std::size_t)>;

struct Set {
  Kind kind;
  Mask mask;
};

// The steps each collection knows, for error messages.
const std::map<Kind, std::pair<const char*, const char*>> kSteps = {
    {Kind::Traces,
     {"contains(op glob), hasbridge([function glob]), function(glob), file(glob), inlines(glob), in(traces query)",
      "samples(), entries(), executions(), ops(), guards(), bridges(), failures(), removed(op glob), added(op glob), "
      "line(), id()"}},
    {Kind::Guards, {"name(glob), function(glob), hasbridge([function glob]), in(traces query)",
                    "failures(), samples(), trace(), index()"}},
    {Kind::Methods, {"name(glob), file(glob), in(traces query)", "callsites(), self(), total(), samples(), traces(), line()"}},
    {Kind::Ops, {"name(glob), stage('noopt'|'opt'|'asm'), function(glob), in(traces query)", "samples(), index(), trace()"}},
    {Kind::Samples, {"in(traces query), function(glob), leaf(glob), category(name)", "tid(), time()"}},
};

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
    Step step{name, column, {}, std::nullopt};
    Metric metric = metric_for(kind, step);
    if (!metric)
      throw QueryError(column, fmt::format("{} cannot be sorted by '{}' (metrics: {})", kind_name(kind), name,
                                           kSteps.at(kind).second));
    return metric;
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
    if (Predicate predicate = predicate_for(set.kind, step)) {
      if (step.compare)
        throw QueryError(step.compare->column, fmt::format("{}(...) is a filter, not a number: drop the comparison", step.name));
      for (std::size_t i = 0; i < set.mask.size(); ++i) {
        tick();
        if (set.mask[i] && !predicate(i)) set.mask[i] = 0;
      }
      return;
    }
    Metric metric = metric_for(set.kind, step);
    if (!metric)
      throw QueryError(step.column, fmt::format("{} have no step '{}' (filters: {}; numbers: {})", kind_name(set.kind),
                                                step.name, kSteps.at(set.kind).first, kSteps.at(set.kind).second));
    if (!step.compare)
      throw QueryError(step.column, fmt::format("{}() is a number: compare it, e.g. {}() > 0", step.name, step.name));
    const Comparison& compare = *step.compare;
    double scale = 1;
    if (compare.percent) {
      // A share of the whole: all samples for samples(), else the collection's sum.
      double whole = 0;
      if (step.name == "samples") {
        whole = double(data_.profile->samples.size());
      } else {
        for (std::size_t i = 0; i < set.mask.size(); ++i) whole += metric(i);
      }
      scale = whole > 0 ? 100.0 / whole : 0;
    }
    for (std::size_t i = 0; i < set.mask.size(); ++i) {
      tick();
      if (!set.mask[i]) continue;
      const double value = metric(i) * scale;
      bool keep = false;
      if (compare.op == ">") keep = value > compare.value;
      else if (compare.op == ">=") keep = value >= compare.value;
      else if (compare.op == "<") keep = value < compare.value;
      else if (compare.op == "<=") keep = value <= compare.value;
      else if (compare.op == "==") keep = value == compare.value;
      else keep = value != compare.value;
      set.mask[i] = keep;
    }
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

  bool source_matches(const jitlog::MergePoint* point, const std::string& pattern, bool file) const {
    return point && glob_match(pattern, file ? point->file : point->function);
  }

  bool has_bridge(std::size_t trace_index, const std::string& pattern, std::optional<std::size_t> guard_op) const {
    for (std::size_t bridge : data_.traces[trace_index].bridges) {
      const jitlog::Trace& child = trace(bridge);
      if (guard_op && child.parent_guard->op_index != *guard_op) continue;
      if (source_matches(child.source(), pattern, false)) return true;
    }
    return false;
  }

  // --- filters ---------------------------------------------------------------

  Predicate predicate_for(Kind kind, const Step& step) {
    const std::string& name = step.name;
    switch (kind) {
      case Kind::Traces:
        if (name == "contains") {
          const std::string pattern = glob(step);
          return [this, pattern](std::size_t i) {
            for (const jitlog::Stage& stage : trace(i).stages)
              for (const jitlog::Operation& op : stage.ops)
                if (op_name_match(pattern, op.name)) return true;
            return false;
          };
        }
        if (name == "hasbridge") {
          const std::string pattern = glob(step, true);
          return [this, pattern](std::size_t i) { return has_bridge(i, pattern, std::nullopt); };
        }
        if (name == "function" || name == "file") {
          const std::string pattern = glob(step);
          const bool file = name == "file";
          return [this, pattern, file](std::size_t i) { return source_matches(trace(i).source(), pattern, file); };
        }
        if (name == "inlines") {
          const std::string pattern = glob(step);
          return [this, pattern](std::size_t i) {
            for (const std::string& function : data_.traces[i].inlined)
              if (glob_match(pattern, function)) return true;
            return false;
          };
        }
        if (name == "in") {
          auto mask = std::make_shared<Mask>(traces_of(step));
          return [mask](std::size_t i) { return (*mask)[i] != 0; };
        }
        return nullptr;
      case Kind::Guards:
        if (name == "name") {
          const std::string pattern = glob(step);
          return [this, pattern](std::size_t i) {
            const GuardInfo& guard = data_.guards[i];
            return op_name_match(pattern, trace(guard.trace).stage(StageKind::Asm)->ops[guard.op].name);
          };
        }
        if (name == "function") {
          const std::string pattern = glob(step);
          return [this, pattern](std::size_t i) {
            const GuardInfo& guard = data_.guards[i];
            return source_matches(sources(guard.trace, StageKind::Asm)[guard.op], pattern, false);
          };
        }
        if (name == "hasbridge") {
          const std::string pattern = glob(step, true);
          return [this, pattern](std::size_t i) {
            return has_bridge(data_.guards[i].trace, pattern, data_.guards[i].op);
          };
        }
        if (name == "in") {
          auto mask = std::make_shared<Mask>(traces_of(step));
          return [this, mask](std::size_t i) { return (*mask)[data_.guards[i].trace] != 0; };
        }
        return nullptr;
      case Kind::Methods:
        if (name == "name" || name == "file") {
          const std::string pattern = glob(step);
          const bool file = name == "file";
          return [this, pattern, file](std::size_t i) {
            return glob_match(pattern, file ? data_.methods[i].file : data_.methods[i].name);
          };
        }
        if (name == "in") {
          const Mask mask = traces_of(step);
          auto inside = std::make_shared<std::set<std::pair<std::string, std::string>>>();
          for (std::size_t t = 0; t < mask.size(); ++t)
            if (mask[t]) inside->insert(data_.traces[t].functions.begin(), data_.traces[t].functions.end());
          return [this, inside](std::size_t i) { return inside->count({data_.methods[i].name, data_.methods[i].file}) > 0; };
        }
        return nullptr;
      case Kind::Ops:
        if (name == "name") {
          const std::string pattern = glob(step);
          return [this, pattern](std::size_t i) {
            const OpInfo& op = data_.ops[i];
            return op_name_match(pattern, trace(op.trace).stage(op.stage)->ops[op.op].name);
          };
        }
        if (name == "stage") {
          arity(step, 1, 1);
          const std::string wanted = step.args[0].kind == Arg::Kind::Name ? step.args[0].text : text(step, 0, "a stage");
          const auto stage = jitlog::parse_stage_name(wanted);
          if (!stage) throw QueryError(step.args[0].column, "the stages are noopt, opt and asm");
          return [this, stage](std::size_t i) { return data_.ops[i].stage == *stage; };
        }
        if (name == "function") {
          const std::string pattern = glob(step);
          return [this, pattern](std::size_t i) {
            const OpInfo& op = data_.ops[i];
            return source_matches(sources(op.trace, op.stage)[op.op], pattern, false);
          };
        }
        if (name == "in") {
          auto mask = std::make_shared<Mask>(traces_of(step));
          return [this, mask](std::size_t i) { return (*mask)[data_.ops[i].trace] != 0; };
        }
        return nullptr;
      case Kind::Samples: {
        const correlate::Profile& profile = *data_.profile;
        if (name == "in") {
          auto mask = std::make_shared<Mask>(traces_of(step));
          return [this, mask, &profile](std::size_t i) {
            const auto& sample = profile.samples[i];
            if (!sample.trace) return false;
            auto index = data_.trace_by_id.find(*sample.trace);
            return index != data_.trace_by_id.end() && (*mask)[index->second] != 0;
          };
        }
        if (name == "function" || name == "leaf" || name == "category") {
          const std::string pattern = name == "category" ? (arity(step, 1, 1), text(step, 0, "a category")) : glob(step);
          // Decided once per distinct stack, then looked up per sample.
          auto per_stack = std::make_shared<std::vector<char>>(profile.stacks.size(), 0);
          for (std::size_t s = 0; s < profile.stacks.size(); ++s) {
            const auto& stack = profile.stacks[s];
            if (stack.empty()) continue;
            const correlate::Frame& leaf = profile.frames[stack.back()];
            if (name == "leaf") {
              (*per_stack)[s] = glob_match(pattern, correlate::frame_label(leaf));
            } else if (name == "category") {
              (*per_stack)[s] = pattern == correlate::category_name(leaf.category);
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
        return nullptr;
      }
    }
    return nullptr;
  }

  // --- numbers ---------------------------------------------------------------

  Metric metric_for(Kind kind, const Step& step) {
    const std::string& name = step.name;
    auto none = [&] { arity(step, 0, 0); };
    switch (kind) {
      case Kind::Traces: {
        auto info = [this](std::size_t i) -> const TraceInfo& { return data_.traces[i]; };
        if (name == "removed" || name == "added") {
          const std::string pattern = glob(step);
          const bool removed = name == "removed";
          return [info, pattern, removed](std::size_t i) {
            double count = 0;
            for (const auto& [op, n] : removed ? info(i).removed : info(i).added)
              if (op_name_match(pattern, op)) count += double(n);
            return count;
          };
        }
        if (name == "samples") return none(), Metric([info](std::size_t i) { return double(info(i).samples); });
        if (name == "entries") return none(), Metric([this](std::size_t i) { return double(trace(i).entry_count); });
        if (name == "executions") return none(), Metric([this](std::size_t i) { return double(trace(i).executions()); });
        if (name == "bridges") return none(), Metric([info](std::size_t i) { return double(info(i).bridges.size()); });
        if (name == "id") return none(), Metric([this](std::size_t i) { return double(trace(i).id); });
        if (name == "line")
          return none(), Metric([this](std::size_t i) {
                   const auto* point = trace(i).source();
                   return point ? double(point->line) : 0.0;
                 });
        if (name == "ops" || name == "guards" || name == "failures") {
          none();
          return [this, name](std::size_t i) {
            const jitlog::Stage* stage = trace(i).stage(StageKind::Asm);
            if (stage == nullptr) stage = trace(i).stage(StageKind::Opt);
            if (stage == nullptr) return 0.0;
            if (name == "ops") return double(stage->ops.size());
            double total = 0;
            for (const auto& op : stage->ops)
              if (op.is_guard()) total += name == "guards" ? 1.0 : double(op.counter);
            return total;
          };
        }
        return nullptr;
      }
      case Kind::Guards: {
        auto op = [this](std::size_t i) -> const jitlog::Operation& {
          return trace(data_.guards[i].trace).stage(StageKind::Asm)->ops[data_.guards[i].op];
        };
        if (name == "failures") return none(), Metric([op](std::size_t i) { return double(op(i).counter); });
        if (name == "samples")
          return none(), Metric([this](std::size_t i) {
                   const auto& samples = data_.traces[data_.guards[i].trace].op_samples;
                   return data_.guards[i].op < samples.size() ? double(samples[data_.guards[i].op]) : 0.0;
                 });
        if (name == "trace") return none(), Metric([this](std::size_t i) { return double(trace(data_.guards[i].trace).id); });
        if (name == "index") return none(), Metric([this](std::size_t i) { return double(data_.guards[i].op); });
        return nullptr;
      }
      case Kind::Methods: {
        auto method = [this](std::size_t i) -> const MethodInfo& { return data_.methods[i]; };
        if (name == "callsites") return none(), Metric([method](std::size_t i) { return double(method(i).callsites.size()); });
        if (name == "self") return none(), Metric([method](std::size_t i) { return double(method(i).self); });
        if (name == "total" || name == "samples")
          return none(), Metric([method](std::size_t i) { return double(method(i).total); });
        if (name == "traces") return none(), Metric([method](std::size_t i) { return double(method(i).traces); });
        if (name == "line") return none(), Metric([method](std::size_t i) { return double(method(i).line); });
        return nullptr;
      }
      case Kind::Ops:
        if (name == "samples")
          return none(), Metric([this](std::size_t i) {
                   const OpInfo& op = data_.ops[i];
                   const auto& samples = data_.traces[op.trace].op_samples;
                   return op.stage == StageKind::Asm && op.op < samples.size() ? double(samples[op.op]) : 0.0;
                 });
        if (name == "index") return none(), Metric([this](std::size_t i) { return double(data_.ops[i].op); });
        if (name == "trace") return none(), Metric([this](std::size_t i) { return double(trace(data_.ops[i].trace).id); });
        return nullptr;
      case Kind::Samples: {
        const auto& samples = data_.profile->samples;
        if (name == "tid") return none(), Metric([&samples](std::size_t i) { return double(samples[i].tid); });
        if (name == "time") {
          none();
          const std::uint64_t first = data_.first_sample_ns;
          return [&samples, first](std::size_t i) { return double(samples[i].time_ns - first) / 1e6; };
        }
        return nullptr;
      }
    }
    return nullptr;
  }

  const Model::Data& data_;
  const Limits& limits_;
  Clock::time_point deadline_;
  std::uint64_t ticks_ = 0;
  std::map<std::pair<std::size_t, StageKind>, std::vector<const jitlog::MergePoint*>> sources_;
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
