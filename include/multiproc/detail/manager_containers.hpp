// multiproc/detail/manager_containers.hpp — private, included by manager.hpp: DictProxy, ListProxy, NamespaceProxy, ValueProxy and Manager's dict/list/Namespace/Value (issue 14, being built).
#pragma once
