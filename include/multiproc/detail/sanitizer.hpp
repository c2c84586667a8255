// multiproc/detail/sanitizer.hpp — telling ThreadSanitizer about synchronisation it cannot see.
// Private.
//
// TSan learns happens-before from atomics with acquire/release order and from the pthread calls
// it intercepts. multiproc synchronises some threads in ways it cannot see: through the kernel
// (a robust futex the kernel hands over when its holder died), and through asymmetric fences
// (membarrier(2): the fast side issues only a compiler barrier, which TSan ignores). Where such a
// hand-off orders plain data, the code says so with these macros, which compile to nothing
// unless the translation unit is built with -fsanitize=thread:
//
//   MULTIPROC_TSAN_RELEASE(p)   everything this thread did so far happens before ...
//   MULTIPROC_TSAN_ACQUIRE(p)   ... everything this thread does from here, once it synchronised
//                               with that release through p (an address naming the hand-off)
//
// Each use names the hand-off it stands for, as every non-seq_cst atomic names its partner.
// MULTIPROC_TSAN is 1 under ThreadSanitizer (g++ or clang), 0 otherwise.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define MULTIPROC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MULTIPROC_TSAN 1
#endif
#endif
#ifndef MULTIPROC_TSAN
#define MULTIPROC_TSAN 0
#endif

#if MULTIPROC_TSAN
extern "C" void __tsan_acquire(void* addr);  // the TSan runtime's (sanitizer/tsan_interface.h)
extern "C" void __tsan_release(void* addr);
#define MULTIPROC_TSAN_ACQUIRE(p) \
  ::__tsan_acquire(const_cast<void*>(static_cast<const volatile void*>(p)))
#define MULTIPROC_TSAN_RELEASE(p) \
  ::__tsan_release(const_cast<void*>(static_cast<const volatile void*>(p)))
#else
#define MULTIPROC_TSAN_ACQUIRE(p) static_cast<void>(0)
#define MULTIPROC_TSAN_RELEASE(p) static_cast<void>(0)
#endif
