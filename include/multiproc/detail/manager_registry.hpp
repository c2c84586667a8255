// multiproc/detail/manager_registry.hpp — private, included by manager.hpp: registering C++ types with a Manager and calling them through ObjectProxy (issue 14, being built).
#pragma once
