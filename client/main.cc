// blockserve: the command-line client of the BlockServe router (see client/README.md).
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "client/cli.h"

int main(int argc, char** argv) {
  blockserve::client::CliEnv env;
  env.out = &std::cout;
  env.err = &std::cerr;
  env.err_is_terminal = isatty(STDERR_FILENO) != 0;
  env.out_is_terminal = isatty(STDOUT_FILENO) != 0;
  if (const char* router = std::getenv("BLOCKSERVE_ROUTER"); router != nullptr && *router) {
    env.default_router = router;
  }
  return blockserve::client::RunCli(std::vector<std::string>(argv + 1, argv + argc), env);
}
