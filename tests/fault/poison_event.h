// The fault suite's poison event: one event in a quorum subscription that
// crashes every instance handling it, among innocent events in flight with
// it. Only the poison may be dead-lettered.
#pragma once

#include <string>

#include "scenario.h"
#include "tern/tern.h"

// `binary` is the fault service; its logs and ledger go in `dir`. The
// subscription queue is a quorum queue or a classic one.
void poison_event(tern::Client& client, const std::string& binary, const std::string& dir, bool quorum,
                  Scenario& s);
