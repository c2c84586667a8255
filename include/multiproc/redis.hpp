// multiproc/redis.hpp — multiproc::redis: the same Queue, Lock, Pool and Manager on a Redis
// server, so that a program moves beyond one machine by changing a constructor.
//
//   namespace mp = multiproc;
//   mp::redis::Queue<Job> jobs("redis://10.0.0.5:6379/0", "jobs", 1000);   // any host
//   jobs.put(job);  ...  std::optional<Job> j = jobs.get_for(1s);
//
// Link the CMake target multiproc::redis (built when hiredis is found: Debian's libhiredis-dev).
// What each object guarantees when a process, a host or the server dies is in its header:
// redis/client.hpp (connections, reconnects, timeouts), redis/queue.hpp, redis/sync.hpp,
// redis/pool.hpp, redis/manager.hpp. README.md, "Beyond one machine", compares them with the
// local objects.
#pragma once

#include <multiproc/redis/client.hpp>
#include <multiproc/redis/manager.hpp>
#include <multiproc/redis/pool.hpp>
#include <multiproc/redis/sync.hpp>
#include <multiproc/redis/queue.hpp>
