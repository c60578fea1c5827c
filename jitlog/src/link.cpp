#include "link.h"

#include <algorithm>
#include <charconv>
#include <string_view>
#include <unordered_map>

namespace jitprof::jitlog {
namespace {

struct OpRef {
  std::size_t trace;
  std::size_t stage;
  std::size_t op;
};

// The stage whose op indices GuardRef uses: asm when the trace got that far.
const Stage* link_stage(const Trace& trace) {
  if (const Stage* asm_stage = trace.stage(StageKind::Asm)) return asm_stage;
  return trace.stage(StageKind::Opt);
}

std::optional<std::uint64_t> loop_number_in_descr(std::string_view descr) {
  // JitCellToken descrs print as "<Loop7>"; "<Loop-1>" is a temporary callback.
  constexpr std::string_view prefix = "<Loop";
  if (!descr.starts_with(prefix) || !descr.ends_with(">")) return std::nullopt;
  std::uint64_t number = 0;
  const char* first = descr.data() + prefix.size();
  const char* last = descr.data() + descr.size() - 1;
  auto [end, ec] = std::from_chars(first, last, number);
  if (ec != std::errc{} || end != last) return std::nullopt;
  return number;
}

class Linker {
 public:
  explicit Linker(Forest& forest) : forest_(forest) {}

  void run(const std::vector<Stitch>& stitches, const std::vector<std::uint64_t>& aborted) {
    index_traces();
    for (std::uint64_t id : aborted)
      if (Trace* trace = find(id)) trace->aborted = true;
    link_bridges(stitches);
    index_ops();
    resolve_redirects();
    link_jumps_and_calls();
    credit_counters();
  }

 private:
  void index_traces() {
    forest_.index_by_id.clear();
    for (std::size_t i = 0; i < forest_.traces.size(); ++i) {
      const Trace& trace = forest_.traces[i];
      forest_.index_by_id[trace.id] = i;
      if (!trace.code) continue;
      by_start_[trace.code->start] = i;  // newest wins
    }
  }

  Trace* find(std::uint64_t id) {
    auto it = forest_.index_by_id.find(id);
    return it == forest_.index_by_id.end() ? nullptr : &forest_.traces[it->second];
  }

  // A bridge hangs off the newest guard with its start descr that was compiled
  // before it; descr uids are addresses and may be reused after frees.
  void link_bridges(const std::vector<Stitch>& stitches) {
    std::unordered_map<std::uint64_t, GuardRef> guards;
    for (Trace& trace : forest_.traces) {
      if (trace.logged_as_bridge) {
        auto guard = guards.find(trace.start_descr);
        if (guard != guards.end()) trace.parent_guard = guard->second;
      }
      if (const Stage* stage = link_stage(trace)) {
        for (std::size_t i = 0; i < stage->ops.size(); ++i) {
          const Operation& op = stage->ops[i];
          if (op.is_guard() && op.descr_number) guards[*op.descr_number] = GuardRef{trace.id, i};
        }
      }
    }
    for (const Stitch& stitch : stitches) {
      auto bridge = by_start_.find(stitch.address);
      if (bridge != by_start_.end()) forest_.traces[bridge->second].stitched_at = stitch.address;
    }
    for (Trace& trace : forest_.traces) {
      // A "bridge" from the interpreter (function entry) is never stitched to a guard.
      trace.kind = trace.logged_as_bridge && (trace.parent_guard || trace.stitched_at) ? TraceKind::Bridge
                                                                                        : TraceKind::Loop;
      if (trace.kind == TraceKind::Bridge) bridge_by_descr_[trace.start_descr] = trace.id;
      if (!trace.parent_guard) continue;
      Trace* parent = find(trace.parent_guard->trace_id);
      if (parent == nullptr) continue;
      for (Stage& stage : parent->stages)
        for (Operation& op : stage.ops)
          if (op.is_guard() && op.descr_number == trace.start_descr) op.bridge = trace.id;
    }
  }

  void index_ops() {
    for (std::size_t t = 0; t < forest_.traces.size(); ++t) {
      auto& stages = forest_.traces[t].stages;
      for (std::size_t s = 0; s < stages.size(); ++s) {
        for (std::size_t o = 0; o < stages[s].ops.size(); ++o) {
          const Operation& op = stages[s].ops[o];
          if (!op.descr_number) continue;
          if (op.is_guard()) guard_ops_[*op.descr_number].push_back({t, s, o});
          if (op.name == "label") label_ops_[*op.descr_number].push_back({t, s, o});
        }
      }
    }
  }

  std::optional<std::uint64_t> trace_for_code(std::uint64_t target) {
    // x86 writes the new block's start address, other backends the trace id.
    auto by_address = by_start_.find(target);
    if (by_address != by_start_.end()) return forest_.traces[by_address->second].id;
    if (find(target) != nullptr) return target;
    return std::nullopt;
  }

  void resolve_redirects() {
    for (Redirect& redirect : forest_.redirects) {
      redirect.target_trace = trace_for_code(redirect.target);
      redirect_by_token_[redirect.old_token] = &redirect;
    }
  }

  std::optional<std::uint64_t> call_target(const Operation& op) {
    if (op.descr_number) {
      // A temporary callback token is redirected to the real code once it is
      // compiled, possibly more than once: follow a bounded chain.
      std::optional<std::uint64_t> target;
      std::uint64_t token = *op.descr_number;
      for (int hop = 0; hop < 16; ++hop) {
        auto redirect = redirect_by_token_.find(token);
        if (redirect == redirect_by_token_.end()) break;
        target = redirect->second->target_trace;
        token = redirect->second->new_token;
      }
      if (target) return target;
    }
    auto number = loop_number_in_descr(op.descr);
    if (number && find(*number) != nullptr) return number;
    return std::nullopt;
  }

  void link_jumps_and_calls() {
    for (Trace& trace : forest_.traces) {
      for (Stage& stage : trace.stages) {
        for (Operation& op : stage.ops) {
          if (op.is_call_assembler()) {
            op.target_trace = call_target(op);
          } else if (op.name == "jump" && op.descr_number) {
            auto label = label_ops_.find(*op.descr_number);
            if (label != label_ops_.end()) op.target_trace = forest_.traces[label->second.back().trace].id;
          }
        }
      }
    }
  }

  void credit_ops(const std::vector<OpRef>& refs, std::uint64_t count) {
    for (const OpRef& ref : refs) forest_.traces[ref.trace].stages[ref.stage].ops[ref.op].counter += count;
  }

  // vmprof-python adds bridge ('b') counts to the parent loop; here they go
  // to the bridge (its entries) and to the guard (its failures).
  void credit_counters() {
    for (Counter& counter : forest_.counters) {
      if (counter.count <= 0) continue;
      const auto count = static_cast<std::uint64_t>(counter.count);
      switch (counter.type) {
        case 'e':
          if (Trace* trace = find(counter.number)) {
            trace->entry_count += count;
            counter.matched = true;
          }
          break;
        case 'b': {
          auto bridge = bridge_by_descr_.find(counter.number);
          if (bridge != bridge_by_descr_.end()) {
            find(bridge->second)->entry_count += count;
            counter.matched = true;
          }
          auto guards = guard_ops_.find(counter.number);
          if (guards != guard_ops_.end()) {
            credit_ops(guards->second, count);
            counter.matched = true;
          }
          break;
        }
        case 'l': {
          auto labels = label_ops_.find(counter.number);
          if (labels == label_ops_.end()) break;
          credit_ops(labels->second, count);
          forest_.traces[labels->second.front().trace].label_count += count;
          counter.matched = true;
          break;
        }
        default: break;
      }
    }
  }

  Forest& forest_;
  std::unordered_map<std::uint64_t, std::size_t> by_start_;
  std::unordered_map<std::uint64_t, std::uint64_t> bridge_by_descr_;
  std::unordered_map<std::uint64_t, std::vector<OpRef>> guard_ops_;
  std::unordered_map<std::uint64_t, std::vector<OpRef>> label_ops_;
  std::unordered_map<std::uint64_t, const Redirect*> redirect_by_token_;
};

}  // namespace

void link_forest(Forest& forest, const std::vector<Stitch>& stitches, const std::vector<std::uint64_t>& aborted) {
  Linker(forest).run(stitches, aborted);
}

}  // namespace jitprof::jitlog
