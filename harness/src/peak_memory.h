// Peak resident memory per sample: the kernel keeps one high-water mark (VmHWM) per process; writing "5" to
// /proc/self/clear_refs resets it (Linux >= 4.0), so each sample's peak is its own, not the run's so far.
#pragma once

namespace lmlab::harness_detail {

// Returns freed heap memory to the kernel (malloc_trim), then resets the mark to the current resident size.
// True when the high-water mark was reset; false when the kernel refused (the peak is then the process's).
bool reset_peak_rss();

}  // namespace lmlab::harness_detail
