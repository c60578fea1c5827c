// The Python source files a jitlog's traces come from, read at the end of a
// recording so that a bundle shows source lines on any machine (section SRCS).
#pragma once

#include <vector>

#include "bundle/sections.h"
#include "jitlog/jitlog.h"

namespace jitprof::record {

// Each readable file named by a merge point, up to 1 MiB each and 32 MiB in
// all. Files that do not exist (<builtin>/...) are skipped.
std::vector<bundle::SourceFileRecord> source_files(const jitlog::Forest& forest);

}  // namespace jitprof::record
