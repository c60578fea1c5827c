// Resolution of the links between traces once all records are read.
#pragma once

#include <cstdint>
#include <vector>

#include "jitlog/jitlog.h"

namespace jitprof::jitlog {

struct Stitch {  // STITCH_BRIDGE: the guard `descr` now jumps to the block at `address`
  std::uint64_t descr;
  std::uint64_t address;
};

void link_forest(Forest& forest, const std::vector<Stitch>& stitches, const std::vector<std::uint64_t>& aborted);

}  // namespace jitprof::jitlog
