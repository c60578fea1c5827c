// `jitprof profile FILE`: summary and top functions of a vmprof profile.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "views/views.h"
#include "vmprof/profile.h"

namespace jitprof::cli {
namespace {

using nlohmann::json;
using vmprof::Profile;

std::string function_label(const Profile& profile, std::uint64_t uid) {
  const vmprof::CodeName* name = profile.code_name(uid);
  if (name == nullptr) return fmt::format("<unknown code {}>", hex(uid));
  if (name->kind.empty()) return name->raw;
  return fmt::format("{}  {}:{}", name->function, name->file, name->line);
}

std::string format_time(const vmprof::Timestamp& time) {
  return fmt::format("{:%Y-%m-%d %H:%M:%S} UTC", fmt::gmtime(static_cast<std::time_t>(time.seconds)));
}

void print_profile_text(const json& out, const Profile& profile, const std::string& file) {
  const auto samples = out["samples"].get<std::uint64_t>();
  std::uint64_t frames = 0;
  for (const auto& sample : profile.samples) frames += profile.stack(sample).size();
  std::cout << fmt::format("profile {} ({} bytes)\n", file, with_commas(profile.bytes_read));
  std::cout << fmt::format("{}, vmprof format {}, {}-bit, sampling every {} us, mode: {}\n", out["interpreter"].get<std::string>(),
                           out["version"].get<unsigned>(), out["word_size"].get<unsigned>() * 8,
                           out["period_usec"].get<std::uint64_t>(), out["mode"].get<std::string>());
  if (profile.start_time)
    std::cout << fmt::format("started {}{}\n", format_time(*profile.start_time),
                             out["duration_s"].is_null() ? ", no trailer (cut short?)"
                                                         : fmt::format(", ran {:.3f} s", out["duration_s"].get<double>()));
  std::cout << fmt::format("samples: {} ({} stack frames on average), {} code objects named\n", with_commas(samples),
                           samples ? frames / std::max<std::uint64_t>(1, profile.samples.size()) : 0,
                           with_commas(profile.code_names.size()));
  const json& leaf = out["leaf"];
  const auto share = [&](const char* where) {
    const auto count = leaf[where].get<std::uint64_t>();
    return fmt::format("{} ({})", with_commas(count), percent(double(count), double(samples)));
  };
  std::cout << fmt::format("innermost Python frame: JIT code {}, interpreter {}", share("jit"), share("interpreter"));
  if (profile.header.profiles_native()) std::cout << fmt::format("; leaf in native code {}", share("native"));
  std::cout << "\n";
  if (!out["functions"].empty()) {
    std::cout << fmt::format("\ntop functions (self = innermost Python frame):\n");
    std::cout << fmt::format("{:>7} {:>8} {:>7} {:>8} {:>6}  {}\n", "self%", "self", "total%", "total", "jit%",
                             "function");
    for (const json& function : out["functions"]) {
      const auto self = function["self"].get<std::uint64_t>(), total = function["total"].get<std::uint64_t>();
      std::cout << fmt::format("{:>7} {:>8} {:>7} {:>8} {:>6}  {}\n", percent(double(self), double(samples)),
                               with_commas(self), percent(double(total), double(samples)), with_commas(total),
                               percent(function["self_jit"].get<double>(), double(self)),
                               function_label(profile, function["uid"].get<std::uint64_t>()));
    }
  }
}

}  // namespace

int run_profile(const ProfileOptions& options) {
  const Profile profile = load_profile(options.file);
  show(options, views::vmprof_json(profile, options.top),
       [&](const json& out) { print_profile_text(out, profile, options.file); });
  return report_diagnostics(options.file, profile.warnings, profile.error);
}

}  // namespace jitprof::cli
