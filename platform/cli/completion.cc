#include "completion.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <vector>

namespace tern::cli {
namespace {

// A bash word list, sorted, single-quoted for an associative array's value.
std::string quoted(std::vector<std::string> words) {
  std::sort(words.begin(), words.end());
  std::string out = "'";
  for (const auto& w : words) out += (out.size() > 1 ? " " : "") + w;
  return out + "'";
}

struct Table {
  std::map<std::string, std::string> commands, flags, values;
};

// For each command path ("tern", "tern dlq", "tern dlq list"; bash has no
// empty keys): the words it completes.
void collect(const CLI::App& app, const std::string& path, Table* table) {
  std::vector<std::string> commands, flags;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    commands.push_back(sub->get_name());
    collect(*sub, path + " " + sub->get_name(), table);
  }
  for (const CLI::Option* opt :
       app.get_options([](const CLI::Option* o) { return o->nonpositional(); })) {
    std::vector<std::string> names;
    for (const auto& l : opt->get_lnames()) names.push_back("--" + l);
    for (const auto& s : opt->get_snames()) names.push_back("-" + s);
    flags.insert(flags.end(), names.begin(), names.end());
    // A flag whose type name lists its choices ("{json,text}"): complete them.
    std::string type = opt->get_type_name();
    auto open = type.find('{'), close = type.find('}');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    const std::string choices = type.substr(open + 1, close - open - 1);
    std::vector<std::string> list;
    for (size_t at = 0; at <= choices.size();) {
      size_t comma = std::min(choices.find(',', at), choices.size());
      list.push_back(choices.substr(at, comma - at));
      at = comma + 1;
    }
    for (const auto& n : names) table->values[path + " " + n] = quoted(list);
  }
  table->commands[path] = quoted(commands);
  table->flags[path] = quoted(flags);
}

}  // namespace

std::string bash_completion(const CLI::App& app) {
  const std::string name = app.get_name();
  Table table;
  collect(app, name, &table);
  std::string out = fmt::format(
      "# bash completion for {0}, made by `{0} completion bash` from its parser's table.\n"
      "_{0}_complete() {{\n",
      name);
  for (const auto& [array, entries] :
       {std::pair{"commands", &table.commands}, std::pair{"flags", &table.flags},
        std::pair{"values", &table.values}}) {
    out += fmt::format("  local -A {}=(\n", array);
    for (const auto& [key, list] : *entries) out += fmt::format("    [\"{}\"]={}\n", key, list);
    out += "  )\n";
  }
  out += fmt::format(
      "  local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} path={0} next i\n"
      "  # The command path: the words so far that name a command under the last one.\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    next=\"$path ${{COMP_WORDS[i]}}\"\n"
      "    [[ -n ${{commands[$next]+x}} ]] && path=$next\n"
      "  done\n"
      "  local words=${{commands[$path]}}\n"
      "  if [[ -n ${{values[\"$path $prev\"]+x}} ]]; then\n"
      "    words=${{values[\"$path $prev\"]}}\n"
      "  elif [[ $cur == -* ]]; then\n"
      "    words=${{flags[$path]}}\n"
      "  fi\n"
      "  mapfile -t COMPREPLY < <(compgen -W \"$words\" -- \"$cur\")\n"
      "}}\n"
      "complete -F _{0}_complete {0}\n",
      name);
  return out;
}

}  // namespace tern::cli
