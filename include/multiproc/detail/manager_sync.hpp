// multiproc/detail/manager_sync.hpp — private, included by manager.hpp: QueueProxy, LockProxy, EventProxy and Manager's Queue/Lock/Event (issue 14, being built).
#pragma once
