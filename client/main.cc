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
  for (auto [name, out] : {std::pair{"BLOCKSERVE_ROUTER", &env.default_router},
                           std::pair{"BLOCKSERVE_TLS_CA", &env.default_tls_ca},
                           std::pair{"BLOCKSERVE_TOKEN_FILE", &env.default_token_file},
                           std::pair{"JOB_COMPLETION_INDEX", &env.job_completion_index}}) {
    if (const char* value = std::getenv(name); value != nullptr && *value) *out = value;
  }
  return blockserve::client::RunCli(std::vector<std::string>(argv + 1, argv + argc), env);
}
