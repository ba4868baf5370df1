// The fault suite's memory-alarm scenario (tests/fault/alarm_scenario.cc).
#pragma once

#include <string>

#include "load.h"
#include "scenario.h"

// A broker memory alarm under a load of calls and events whose handlers
// fail their first attempt at half of them (the retry path), and kill -9 of
// the subscribing instance mid-alarm. binary: the fault service; dir: where
// the ledgers and logs go.
void memory_alarm_scenario(tern::Client& client, const Attempts& attempts, Scenario& s, const std::string& binary,
                           const std::string& dir);
