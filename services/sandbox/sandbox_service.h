/*  sandbox_service.h — the sandbox daemon: local stand-ins for the Google Sheets, Gmail and Dropbox APIs (the mock ERP). */
#ifndef SANDBOX_SERVICE_H
#define SANDBOX_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t sandbox_daemon;

#endif
