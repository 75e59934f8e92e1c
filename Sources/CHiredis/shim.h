#ifndef HEARTBEAT_CHIREDIS_SHIM_H
#define HEARTBEAT_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
