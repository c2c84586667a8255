// multiproc/multiproc.hpp — everything: Python's multiprocessing, done properly in C++.
//
//   #include <multiproc/multiproc.hpp>
//   namespace mp = multiproc;
#pragma once

#include <multiproc/any_value.hpp>
#include <multiproc/barrier.hpp>
#include <multiproc/codec.hpp>
#include <multiproc/condition.hpp>
#include <multiproc/error.hpp>
#include <multiproc/event.hpp>
#include <multiproc/executor.hpp>
#include <multiproc/handover.hpp>
#include <multiproc/manager.hpp>
#include <multiproc/mutex.hpp>
#include <multiproc/pipe.hpp>
#include <multiproc/placed.hpp>
#include <multiproc/pool.hpp>
#include <multiproc/process.hpp>
#include <multiproc/queue.hpp>
#include <multiproc/recursive_mutex.hpp>
#include <multiproc/segment.hpp>
#include <multiproc/semaphore.hpp>
#include <multiproc/shared_array.hpp>
#include <multiproc/shared_memory.hpp>
#include <multiproc/shared_value.hpp>
#include <multiproc/typecode.hpp>
#include <multiproc/version.hpp>
#include <multiproc/wait.hpp>
