// The Python source files a jitlog's traces come from, read at the end of a
// recording so that a bundle shows source lines on any machine (section SRCS).
#pragma once

#include <string>

#include "jitlog/jitlog.h"

namespace jitprof::record {

// JSON lines {"file", "text"}: each readable file named by a merge point, up
// to 1 MiB each and 32 MiB in all. Files that do not exist (<builtin>/...) are skipped.
std::string source_files(const jitlog::Forest& forest);

}  // namespace jitprof::record
