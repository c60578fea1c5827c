// perf's jitdump format (tools/perf/Documentation/jitdump-specification.txt):
// a file header, then one JIT_CODE_LOAD record per trace with its name and
// machine code, then JIT_CODE_CLOSE. `perf inject --jit` turns the records
// into ELF images that `perf report` and `perf annotate` read.
#include <elf.h>

#include <string>
#include <vector>

#include "export/export.h"

namespace jitprof::exports {
namespace {

constexpr std::uint32_t kMagic = 0x4A695444;  // "JiTD"
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kCodeLoad = 0;
constexpr std::uint32_t kCodeClose = 3;

class Writer {
 public:
  explicit Writer(std::ostream& out) : out_(out) {}
  void u32(std::uint32_t value) { put(value, 4); }
  void u64(std::uint64_t value) { put(value, 8); }
  void bytes(const void* data, std::size_t size) { out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(size)); }

 private:
  void put(std::uint64_t value, int width) {
    char buffer[8];
    for (int i = 0; i < width; ++i) buffer[i] = static_cast<char>(value >> (8 * i));
    out_.write(buffer, width);
  }
  std::ostream& out_;
};

// The block as it was in memory, as far as the jitlog has it: each op's bytes
// at its offset; the GC table and prologue before the first op are not logged
// and stay zero.
std::vector<std::uint8_t> code_of(const jitlog::Trace& trace) {
  std::vector<std::uint8_t> code(trace.code->end - trace.code->start, 0);
  if (const jitlog::Stage* stage = trace.stage(jitlog::StageKind::Asm))
    for (const jitlog::Operation& op : stage->ops)
      if (op.code && op.code->offset + op.code->bytes.size() <= code.size())
        std::copy(op.code->bytes.begin(), op.code->bytes.end(), code.begin() + static_cast<std::ptrdiff_t>(op.code->offset));
  return code;
}

}  // namespace

void write_jitdump(const jitlog::Forest& forest, std::uint32_t pid, std::uint64_t load_time_ns, std::ostream& out) {
  Writer writer(out);
  const std::uint32_t machine = forest.header.machine == "aarch64" ? EM_AARCH64
                                : forest.header.word_size == 4     ? EM_386
                                                                   : EM_X86_64;
  writer.u32(kMagic);
  writer.u32(kVersion);
  writer.u32(40);  // header size
  writer.u32(machine);
  writer.u32(0);  // padding
  writer.u32(pid);
  writer.u64(load_time_ns);
  writer.u64(0);  // flags
  for (const jitlog::Trace& trace : forest.traces) {
    if (!trace.code || trace.code->end <= trace.code->start) continue;
    const std::string name = trace_symbol(trace);
    const std::vector<std::uint8_t> code = code_of(trace);
    const std::uint32_t size = static_cast<std::uint32_t>(16 + 4 + 4 + 8 * 4 + name.size() + 1 + code.size());
    writer.u32(kCodeLoad);
    writer.u32(size);
    writer.u64(load_time_ns);
    writer.u32(pid);
    writer.u32(pid);
    writer.u64(trace.code->start);  // vma
    writer.u64(trace.code->start);  // code address
    writer.u64(code.size());
    writer.u64(trace.id);  // code index: unique per load
    writer.bytes(name.c_str(), name.size() + 1);
    writer.bytes(code.data(), code.size());
  }
  writer.u32(kCodeClose);
  writer.u32(16);
  writer.u64(load_time_ns);
}

}  // namespace jitprof::exports
