// tern completion bash: a bash completion script made from the parser's own
// table of commands and flags, so it cannot offer a flag a command refuses.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace tern::cli {

// The script: `source <(tern completion bash)`, or save it as
// /etc/bash_completion.d/tern. Completes command names at each level
// (tern dlq <TAB>: list replay), each command's flags, and the values of
// flags that take one of a fixed set (--format-error <TAB>: json text).
std::string bash_completion(const CLI::App& app);

}  // namespace tern::cli
