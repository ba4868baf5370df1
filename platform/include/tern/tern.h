// Everything a service author needs.
#pragma once

#include "tern/call.h"
#include "tern/client.h"
#include "tern/context.h"
#include "tern/error.h"
#include "tern/events.h"
#include "tern/filter.h"
#include "tern/log.h"
#include "tern/options.h"
#include "tern/service.h"
