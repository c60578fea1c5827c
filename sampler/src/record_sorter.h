// Puts the records of several rings back in time order. Each CPU has its own
// ring, so a sample can be read before the mmap record (in another ring) of
// the library it runs in. A record is handed out only once no ring can still
// hold an earlier one: up to the horizon, the earliest moment at which a ring
// was last read, since whatever a ring yields later was written after that.
#pragma once

#include <cstddef>
#include <cstdint>
#include <variant>
#include <vector>

#include "record_parser.h"

namespace jitprof::sampler {

// What a Listener is told of, in time order.
using TimedRecord = std::variant<DecodedSample, Mapping, TaskEvent>;

std::uint64_t time_of(const TimedRecord& record);

class RecordSorter {
 public:
  explicit RecordSorter(std::size_t rings);

  void add(TimedRecord record);
  // Ring number `ring` is about to be read, at `time`.
  void ring_read_at(std::size_t ring, std::uint64_t time);

  // The records up to the horizon, in time order; at equal times, task and
  // mapping records before samples, so that a sample is resolved in the
  // address space of its moment. Records of equal rank keep their order.
  std::vector<TimedRecord> take_ready();
  // Every record, in the same order: for once the rings are read for the last time.
  std::vector<TimedRecord> take_all();

 private:
  std::vector<TimedRecord> take_until(std::uint64_t horizon);

  std::vector<TimedRecord> pending_;
  std::vector<std::uint64_t> last_read_;  // per ring
};

}  // namespace jitprof::sampler
