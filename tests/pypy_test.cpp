// PyPy's per-thread blocks and code objects, read from this machine's real
// libpypy and from live pypy3 processes (nothing in them is stopped).
#include <gtest/gtest.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <chrono>
#include <sstream>

#include "jitlog/jitlog.h"
#include "pypy/code_objects.h"
#include "pypy/jit_codemap.h"
#include "pypy/thread_locals.h"
#include "symbols/symbols.h"
#include "test_process.h"
#include "vmprof/profile.h"

namespace fs = std::filesystem;
namespace pypy = jitprof::pypy;
namespace jitlog = jitprof::jitlog;
using jitprof::testing::Background;

namespace {

// Three threads parked on an Event, and functions with names found nowhere else.
constexpr const char* kProbeProgram = R"(import os, sys, threading, _vmprof

def jitprof_probe_alpha():
    return 1

def jitprof_probe_beta(x):
    return x + 1

class JitprofProbeGamma:
    def jitprof_probe_method(self):
        return 2

# vmprof writes every code object's name and unique id; no sampling is wanted.
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
_vmprof.enable(fd, 0.001, 0, 0, 0, 0)
_vmprof.disable()  # flushes what enable wrote; the ids stay on the code objects

stop = threading.Event()
native_ids = []
def park():
    native_ids.append(threading.get_native_id())
    stop.wait()
threads = [threading.Thread(target=park) for _ in range(3)]
for thread in threads:
    thread.start()
while len(native_ids) < 3:
    pass
print("threads", *native_ids, flush=True)
print("ready", flush=True)
stop.wait(120)
)";

std::string shell_output(const std::string& command) {
  std::string out;
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return out;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

template <typename T>
std::optional<T> peek(pid_t pid, std::uint64_t address) {
  T value;
  const iovec local{&value, sizeof value}, remote{reinterpret_cast<void*>(address), sizeof value};
  if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) != sizeof value) return std::nullopt;
  return value;
}

// One probe process for the whole suite: starting pypy3 takes a while.
class PyPy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("jitprof-pypy-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    source_ = dir_ / "jitprof_probe.py";
    std::ofstream(source_) << kProbeProgram;
    probe_ = new Background({JITPROF_PYPY, source_.string(), (dir_ / "probe.prof").string()}, dir_, "probe");
    ready_ = probe_->wait_for_output("ready\n", 60);
  }
  static void TearDownTestSuite() {
    delete probe_;
    fs::remove_all(dir_);
  }
  void SetUp() override { ASSERT_TRUE(ready_) << probe_->err(); }

  static pid_t pid() { return probe_->pid(); }
  static pypy::LoadedLibpypy libpypy() {
    const auto loaded = pypy::find_libpypy(pid());
    EXPECT_TRUE(loaded.has_value());
    return loaded.value_or(pypy::LoadedLibpypy{});
  }
  // The line of the probe program that holds `text`.
  static std::uint32_t probe_line(const std::string& text) {
    std::istringstream source(kProbeProgram);
    std::string line;
    for (std::uint32_t number = 1; std::getline(source, line); ++number)
      if (line.find(text) != std::string::npos) return number;
    return 0;
  }

  // Every code object's name by unique id, as the probe's own vmprof stream has it.
  static const std::unordered_map<std::uint64_t, jitprof::vmprof::CodeName>& code_names() {
    static const auto profile = jitprof::vmprof::read_profile(dir_ / "probe.prof");
    return profile.code_names;
  }

  static inline fs::path dir_, source_;
  static inline Background* probe_ = nullptr;
  static inline bool ready_ = false;
};

TEST_F(PyPy, LayoutOfTheRealLibpypyAgreesWithReadelf) {
  const fs::path path = libpypy().path;
  ASSERT_TRUE(jitprof::symbols::is_libpypy(path.string())) << path;
  const pypy::ThreadLocalLayout layout = pypy::read_thread_local_layout(path);

  // readelf -lW: "TLS Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align".
  std::istringstream segments(shell_output("readelf -lW " + path.string()));
  std::string line;
  std::optional<std::uint64_t> tls_size, tls_align;
  while (std::getline(segments, line)) {
    std::istringstream fields(line);
    std::string type, offset, vaddr, paddr, file_size, memory_size, flags, align;
    if (fields >> type >> offset >> vaddr >> paddr >> file_size >> memory_size >> flags >> align && type == "TLS") {
      tls_size = std::stoull(memory_size, nullptr, 16);
      tls_align = std::stoull(align, nullptr, 16);
    }
  }
  ASSERT_TRUE(tls_size.has_value()) << "readelf shows no TLS segment in " << path;
  EXPECT_EQ(layout.tls_size, *tls_size);
  EXPECT_EQ(layout.tls_align, *tls_align);

  // readelf -rW: "Offset Info Type ..."; exactly one DTPMOD64.
  std::istringstream relocations(shell_output("readelf -rW " + path.string() + " | grep R_X86_64_DTPMOD64"));
  std::vector<std::uint64_t> dtpmod;
  while (std::getline(relocations, line)) dtpmod.push_back(std::stoull(line, nullptr, 16));
  ASSERT_EQ(dtpmod.size(), 1u);
  EXPECT_EQ(layout.dtpmod_slot_vaddr, dtpmod[0]);

  const std::string notes = shell_output("readelf -nW " + path.string());
  EXPECT_FALSE(layout.build_id.empty());
  EXPECT_NE(notes.find("Build ID: " + layout.build_id), std::string::npos) << notes;

  EXPECT_EQ(layout.shadow_stack_offset, layout.tls_size - 8);
  const std::set<std::uint32_t> offsets{layout.ready_offset, layout.thread_ident_offset, layout.list_next_offset,
                                        layout.shadow_stack_offset};
  EXPECT_EQ(offsets.size(), 4u) << "fields at distinct offsets";
  for (std::uint32_t offset : offsets) {
    EXPECT_LT(offset, layout.tls_size);
    EXPECT_EQ(offset % 4, 0u);
  }
  EXPECT_EQ(layout.thread_ident_offset % 8, 0u);
  EXPECT_EQ(layout.list_next_offset % 8, 0u);
  EXPECT_NE(layout.thread_list_head_vaddr, 0u);
  std::printf("%s: TLS %#llx bytes, DTPMOD64 slot %#llx, list head %#llx, ready +%#x, thread_ident +%#x, "
              "next +%#x, shadow stack +%#x\n",
              path.c_str(), static_cast<unsigned long long>(layout.tls_size),
              static_cast<unsigned long long>(layout.dtpmod_slot_vaddr),
              static_cast<unsigned long long>(layout.thread_list_head_vaddr), layout.ready_offset,
              layout.thread_ident_offset, layout.list_next_offset, layout.shadow_stack_offset);
}

// The library a function of this process comes from.
fs::path library_of(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (const std::size_t at = line.find('/'); at != std::string::npos && fs::path(line.substr(at)).filename() == name)
      return line.substr(at);
  return {};
}

std::string layout_error(const fs::path& path) {
  try {
    pypy::read_thread_local_layout(path);
  } catch (const pypy::LayoutError& error) {
    return error.what();
  }
  return "no error";
}

TEST_F(PyPy, OtherFilesAreRejectedNamingWhatIsMissing) {
  const fs::path libc = library_of("libc.so.6");
  ASSERT_FALSE(libc.empty());
  // libc has thread-local storage but no DTPMOD64 relocation.
  EXPECT_EQ(layout_error(libc), "no R_X86_64_DTPMOD64 relocation (libpypy's TLS module id slot)");
  const std::string readelf = shell_output("readelf -lW " + libc.string());
  EXPECT_NE(readelf.find("TLS"), std::string::npos) << "libc has a PT_TLS segment, so the test reaches relocations";

  const fs::path no_tls = dir_ / "no_tls.so";
  ASSERT_EQ(std::system(("cc -shared -o " + no_tls.string() + " -x c /dev/null").c_str()), 0);
  EXPECT_EQ(layout_error(no_tls), "no PT_TLS segment: " + no_tls.string() + " has no thread-local storage");

  EXPECT_EQ(layout_error(source_), source_.string() + ": not a 64-bit x86-64 ELF file");
  EXPECT_NE(layout_error(dir_ / "missing.so").find("cannot open"), std::string::npos);
}

TEST_F(PyPy, FindsEveryThreadsBlockInTheLiveProcess) {
  const auto loaded = libpypy();
  const pypy::ThreadLocalLayout layout = pypy::read_thread_local_layout(loaded.path);
  const auto live = pypy::inspect_thread_locals(pid(), layout, loaded.load_bias);
  ASSERT_TRUE(live.has_value());
  EXPECT_GE(live->module_id, 1u);
  ASSERT_GE(live->blocks.size(), 4u);

  std::set<pid_t> expected{pid()};
  std::istringstream printed(probe_->out());
  std::string word;
  printed >> word;
  ASSERT_EQ(word, "threads");
  for (pid_t tid; printed >> tid;) expected.insert(tid);
  ASSERT_EQ(expected.size(), 4u) << probe_->out();

  std::set<pid_t> found;
  for (const auto& block : live->blocks) {
    found.insert(block.tid);
    EXPECT_EQ(peek<std::uint32_t>(pid(), block.address + layout.ready_offset), 42u);
    EXPECT_EQ(peek<std::uint64_t>(pid(), block.address + layout.thread_ident_offset), block.thread_ident);
    // Static TLS (x86-64 variant II): the block ends where the thread pointer points.
    const std::uint64_t rounded = (layout.tls_size + layout.tls_align - 1) / layout.tls_align * layout.tls_align;
    EXPECT_EQ(block.address + rounded, block.thread_ident);

    // Every thread runs Python code: its shadow stack holds {next, value,
    // kind} entries of kind 1 (interpreted: a code object's unique id) or 3 (JIT).
    const auto names = code_names();
    std::uint64_t entry = peek<std::uint64_t>(pid(), block.address + layout.shadow_stack_offset).value_or(0);
    std::size_t interpreted = 0;
    for (int depth = 0; entry && depth < 1000; ++depth) {
      const auto kind = peek<std::uint64_t>(pid(), entry + 16), value = peek<std::uint64_t>(pid(), entry + 8);
      ASSERT_TRUE(kind && value) << "unreadable shadow stack entry of thread " << block.tid;
      ASSERT_TRUE(*kind == 1 || *kind == 3) << "kind " << *kind << " in thread " << block.tid;
      if (*kind == 1) {
        ++interpreted;
        EXPECT_TRUE(names.count(*value)) << "unique id " << *value << " is not one vmprof named";
      }
      entry = peek<std::uint64_t>(pid(), entry).value_or(0);
    }
    EXPECT_GE(interpreted, 1u) << "thread " << block.tid;
  }
  EXPECT_EQ(found, expected);
}

TEST_F(PyPy, NamesEveryCodeObjectVmprofNamedFromTheTargetsMemory) {
  const auto names = code_names();
  ASSERT_GT(names.size(), 500u);
  std::vector<std::uint64_t> known;
  for (const auto& [id, name] : names) known.push_back(id);
  std::uint64_t last_done = 0, last_total = 0;
  bool monotonic = true;
  const pypy::CodeScan scan = pypy::scan_code_objects(pid(), known, [&](std::uint64_t done, std::uint64_t total) {
    monotonic &= done >= last_done && done <= total;
    last_done = done, last_total = total;
  });
  ASSERT_TRUE(scan.layout.has_value());
  EXPECT_TRUE(monotonic);
  EXPECT_EQ(last_done, last_total);
  EXPECT_GT(scan.bytes_scanned, 1u << 20);
  std::printf("learned layout: type id %#llx, unique id +%#x, name +%#x, file +%#x, first line +%#x\n",
              static_cast<unsigned long long>(scan.layout->type_id), scan.layout->unique_id_offset,
              scan.layout->name_offset, scan.layout->filename_offset, scan.layout->first_line_offset);
  std::printf("named %zu of %zu known ids, %.1f MiB scanned in %.2f s\n", scan.names.size(), known.size(),
              static_cast<double>(scan.bytes_scanned) / (1 << 20), scan.seconds);

  std::map<std::uint64_t, const pypy::CodeName*> found;
  for (const auto& name : scan.names) found[name.unique_id] = &name;
  std::size_t wrong = 0, missing = 0;
  for (const auto& [id, expected] : names) {
    const auto at = found.find(id);
    if (at == found.end()) {
      ++missing;
      ADD_FAILURE() << "unnamed: " << expected.raw;
      continue;
    }
    const pypy::CodeName& name = *at->second;
    if (name.name != expected.function || name.file != expected.file || name.first_line != expected.line) {
      ++wrong;
      ADD_FAILURE() << "id " << id << ": " << name.name << ":" << name.first_line << ":" << name.file
                    << " where vmprof says " << expected.raw;
    }
  }
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(scan.names.size(), names.size()) << "only known ids are named";

  for (const std::string function : {"jitprof_probe_alpha", "jitprof_probe_beta", "jitprof_probe_method"}) {
    const auto probe = std::find_if(scan.names.begin(), scan.names.end(),
                                    [&](const pypy::CodeName& name) { return name.name == function; });
    ASSERT_NE(probe, scan.names.end()) << function;
    EXPECT_EQ(probe->file, source_.string());
    EXPECT_EQ(probe->first_line, probe_line("def " + function));
  }
}

TEST_F(PyPy, WithoutKnownIdsEveryCodeObjectIsNamed) {
  const auto names = code_names();
  const pypy::CodeScan scan = pypy::scan_code_objects(pid(), {});
  ASSERT_TRUE(scan.layout.has_value());
  std::printf("named %zu code objects without known ids (vmprof named %zu), %.2f s\n", scan.names.size(),
              names.size(), scan.seconds);
  std::size_t agree = 0;
  for (const auto& name : scan.names) {
    const auto expected = names.find(name.unique_id);
    agree += expected != names.end() && expected->second.function == name.name && expected->second.file == name.file &&
             expected->second.line == name.first_line;
  }
  EXPECT_GE(agree * 100, names.size() * 99) << agree << " of " << names.size();
  const auto alpha = std::find_if(scan.names.begin(), scan.names.end(),
                                  [](const pypy::CodeName& name) { return name.name == "jitprof_probe_alpha"; });
  ASSERT_NE(alpha, scan.names.end());
  EXPECT_EQ(alpha->file, source_.string());
}

// A hot loop with a small function the JIT inlines, and a second hot
// function; then it idles (polling for a file, too slowly to get hot) until
// the test has read its codemap, and exits so that its jitlog is complete.
constexpr const char* kJitProgram = R"(import os, sys, time

def inlined_helper(x):
    return (x * 7 + 3) & 0xffff

def outer_loop(n):
    total = 0
    for i in range(n):
        total += inlined_helper(i)
    return total

def second_hot(n):
    s = 0.0
    for i in range(n):
        s += i * 0.5
    return s

for _ in range(30):
    outer_loop(20000)
    second_hot(20000)
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.1)
)";

TEST_F(PyPy, CodemapNamesTheFunctionsOfJitCodeAsTheJitlogDoes) {
  const fs::path source = dir_ / "jit_probe.py", log = dir_ / "jit_probe.jitlog", stop = dir_ / "jit_probe.stop";
  std::ofstream(source) << kJitProgram;
  Background target({JITPROF_PYPY, source.string(), stop.string()}, dir_, "jit_probe", {"JITLOG=" + log.string()});
  ASSERT_TRUE(target.wait_for_output("ready\n", 120)) << target.err();

  const auto loaded = pypy::find_libpypy(target.pid());
  ASSERT_TRUE(loaded.has_value());
  const auto started = std::chrono::steady_clock::now();
  const auto codemap = pypy::JitCodemap::read(target.pid(), loaded->path, loaded->load_bias);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(codemap.has_value()) << "no codemap head found";
  std::printf("codemap: %zu blocks, head at libpypy+%#llx, read in %.1f ms\n", codemap->blocks(),
              static_cast<unsigned long long>(codemap->head_address() - loaded->load_bias), seconds * 1e3);

  std::vector<std::uint64_t> ids;
  for (const auto& block : codemap->all_blocks())
    for (std::size_t i = 0; i + 4 <= block.info.size(); i += 4) ids.push_back(static_cast<std::uint64_t>(block.info[i]));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  ids.erase(std::remove(ids.begin(), ids.end(), 0u), ids.end());
  for (std::uint64_t id : ids) EXPECT_EQ(id % 4, 0u) << id;
  // Every code object is named: learning the layout from the codemap's few
  // ids alone (three consecutive ones here) sometimes settles on another type.
  const pypy::CodeScan scan = pypy::scan_code_objects(target.pid(), {});
  std::map<std::uint64_t, std::string> names;
  for (const auto& name : scan.names)
    if (std::binary_search(ids.begin(), ids.end(), name.unique_id)) names[name.unique_id] = name.name;
  std::printf("%zu distinct unique ids in the codemap, %zu named (code object scan %.2f s):", ids.size(), names.size(),
              scan.seconds);
  for (const auto& [id, name] : names) std::printf(" %llu=%s", static_cast<unsigned long long>(id), name.c_str());
  std::printf("\n");

  std::ofstream(stop).put('\n');
  ASSERT_EQ(target.wait(), 0) << target.err();
  const jitlog::Forest forest = jitlog::read_jitlog(log);
  ASSERT_FALSE(forest.error.has_value()) << forest.error->message;

  std::size_t loops = 0;
  for (const auto& trace : forest.traces) loops += trace.kind == jitlog::TraceKind::Loop && trace.code && !trace.aborted;
  std::printf("jitlog: %zu traces, %zu loops with code\n", forest.traces.size(), loops);
  EXPECT_GE(codemap->blocks(), loops);
  // Every block of machine code the jitlog names is a codemap block, keyed by its start.
  std::size_t with_code = 0, keyed = 0;
  for (const auto& trace : forest.traces) {
    if (!trace.code || trace.aborted) continue;
    ++with_code;
    keyed += std::any_of(codemap->all_blocks().begin(), codemap->all_blocks().end(),
                         [&](const auto& block) { return block.start == trace.code->start; });
  }
  std::printf("%zu of %zu traces with machine code start where a codemap block does\n", keyed, with_code);
  EXPECT_EQ(keyed, with_code);

  auto name_of = [&](std::uint64_t id) {
    const auto at = names.find(id);
    return at == names.end() ? std::string("?") : at->second;
  };
  // Checked: the asm ops of outer_loop's loops that have machine code and a
  // merge point. The jitlog gives an asm op the merge point of the opt-stage
  // op it aligns with, and a lowered op (getfield_gc_i -> gc_load_i) the one
  // of the op before it: so the op right after leave_portal_frame, back in
  // outer_loop by the opt stage, is given inlined_helper's RETURN_VALUE. The
  // inlined ops are therefore counted twice: by the merge point alone, and by
  // the merge point within enter_portal_frame ... leave_portal_frame, the
  // ops that bracket an inlined call.
  std::size_t outer_checked = 0, outer_right = 0, outer_traces = 0;
  std::size_t inner_checked = 0, inner_right = 0, bracketed_checked = 0, bracketed_right = 0;
  for (const auto& trace : forest.traces) {
    const jitlog::MergePoint* own = trace.source();
    if (trace.kind != jitlog::TraceKind::Loop || !trace.code || !own || own->function != "outer_loop") continue;
    const jitlog::Stage* stage = trace.stage(jitlog::StageKind::Asm);
    if (!stage) continue;
    ++outer_traces;
    const auto sources = jitlog::op_sources(trace, *stage);
    int portal_depth = 0;
    for (std::size_t i = 0; i < stage->ops.size(); ++i) {
      const auto& op = stage->ops[i];
      if (op.name == "enter_portal_frame") ++portal_depth;
      if (op.name == "leave_portal_frame") --portal_depth;
      if (!op.code || op.code->bytes.empty() || !sources[i]) continue;
      const auto frames = codemap->unique_ids_at(trace.code->start + op.code->offset);
      ++outer_checked;
      outer_right += !frames.empty() && name_of(frames.front()) == "outer_loop";
      if (sources[i]->function != "inlined_helper") continue;
      const bool inner = !frames.empty() && name_of(frames.back()) == "inlined_helper";
      ++inner_checked;
      inner_right += inner;
      if (portal_depth > 0) {
        ++bracketed_checked;
        bracketed_right += inner;
      }
      if (!inner) {
        std::string seen;
        for (std::uint64_t id : frames) seen += " " + name_of(id);
        std::printf("  trace %llu asm op %zu %s at +%llu%s: the codemap says%s\n",
                    static_cast<unsigned long long>(trace.id), i, std::string(op.name).c_str(),
                    static_cast<unsigned long long>(op.code->offset),
                    portal_depth > 0 ? "" : " (after leave_portal_frame)", seen.c_str());
      }
    }
  }
  std::printf("outer_loop: %zu loop traces; the outermost id names outer_loop at %zu of %zu asm ops; the innermost "
              "names inlined_helper at %zu of %zu ops whose merge point is in it, %zu of %zu of those within "
              "enter/leave_portal_frame\n",
              outer_traces, outer_right, outer_checked, inner_right, inner_checked, bracketed_right,
              bracketed_checked);
  ASSERT_GE(outer_traces, 1u);
  ASSERT_GT(outer_checked, 10u);
  ASSERT_GT(bracketed_checked, 5u);
  EXPECT_GE(outer_right * 100, outer_checked * 95);
  EXPECT_GE(bracketed_right * 100, bracketed_checked * 95);
  // Only the lowered op after each leave_portal_frame may disagree.
  EXPECT_LE(inner_checked - inner_right, (inner_checked - bracketed_checked) + bracketed_checked / 20);
}

TEST_F(PyPy, CodemapOfAProcessThatCompiledNothingIsEmpty) {
  Background idle({JITPROF_PYPY, "-c", "import time; time.sleep(30)"}, dir_, "idle");
  std::optional<pypy::LoadedLibpypy> loaded;
  for (int i = 0; i < 200 && !loaded; ++i) {
    loaded = pypy::find_libpypy(idle.pid());
    if (!loaded) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(loaded.has_value());
  const auto codemap = pypy::JitCodemap::read(idle.pid(), loaded->path, loaded->load_bias);
  std::printf("a process that compiled nothing: %s\n",
              codemap ? (std::to_string(codemap->blocks()) + " blocks").c_str() : "no codemap head found");
  EXPECT_TRUE(!codemap || codemap->blocks() == 0) << codemap->blocks() << " blocks";
}

TEST_F(PyPy, AProcessWithoutLibpypyHasNone) {
  Background sleeper({"sleep", "30"}, dir_, "sleep");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(pypy::find_libpypy(sleeper.pid()).has_value());
  EXPECT_FALSE(pypy::find_libpypy(999999999).has_value());
}

}  // namespace
