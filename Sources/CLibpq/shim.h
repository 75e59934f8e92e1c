#ifndef HEARTBEAT_CLIBPQ_SHIM_H
#define HEARTBEAT_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
