// Private to src/process/: the steps of ChildOptions (multiproc/process.hpp) that are plain
// system calls, run in a freshly forked child (one thread).
#pragma once

#include <string>
#include <vector>

namespace multiproc::detail {

//! Step 1: handlers become SIG_DFL (`handlers`), ignored signals too (`ignored`).
void reset_signal_dispositions(bool handlers, bool ignored) noexcept;

//! Step 3: closes every descriptor from 3 up except those in `keep`.
void close_fds_except(std::vector<int> keep) noexcept;

//! Step 4: comm (prctl PR_SET_NAME, 15 bytes) and the command-line area (/proc/self/stat's
//! arg_start..arg_end), overwritten with `title` cut to fit, then NULs.
void set_process_title(const std::string& title) noexcept;

}  // namespace multiproc::detail
