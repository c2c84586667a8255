// multiproc/detail/thread_safety.hpp — clang's thread-safety annotations (-Wthread-safety), or
// nothing. Private: the macros mark Mutex, RecursiveMutex and PlacedMutex as capabilities and
// their lock/unlock as acquiring/releasing them, so that a user's clang build with
// -Wthread-safety checks the callers (data marked `__attribute__((guarded_by(m)))` touched without
// holding m, a lock not released on some path). They expand to nothing on other compilers.
#pragma once

#if defined(__clang__)
#define MULTIPROC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define MULTIPROC_THREAD_ANNOTATION(x)
#endif

#define MULTIPROC_CAPABILITY(name) MULTIPROC_THREAD_ANNOTATION(capability(name))
#define MULTIPROC_ACQUIRE(...) MULTIPROC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define MULTIPROC_RELEASE(...) MULTIPROC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define MULTIPROC_TRY_ACQUIRE(...) MULTIPROC_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
