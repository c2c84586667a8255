// Private helpers over Linux process facts. Not installed.
#pragma once

#include <cstdint>
#include <string>
#include <sys/types.h>

namespace multiproc::detail {

//! The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or 0 if
//! unknown. Together with the pid it identifies a process across pid reuse.
std::uint64_t process_start_time(pid_t pid) noexcept;

//! This process's pid, cached (getpid() is a system call) and refreshed in forked children.
pid_t current_pid() noexcept;

//! This process's start time (cached per pid, so correct in forked children).
std::uint64_t self_start_time() noexcept;

//! Whether the process (pid, start_time) still runs: it exists, is not a zombie, and — when
//! start_time is not 0 — started at that time (so a reused pid does not count).
bool process_alive(pid_t pid, std::uint64_t start_time) noexcept;

//! CPUs this process may run on (sched_getaffinity), at least 1.
int available_cpus() noexcept;

//! The demangled name of a mangled type name ("i" → "int"); the input if demangling fails.
std::string demangle(const char* mangled);

}  // namespace multiproc::detail
