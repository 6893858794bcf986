// The `blockserve` command line: ingest a JSONL corpus, ask questions, read stats.
// Run `blockserve --help` for the commands and flags.
//
// Exit codes: 0 success; 1 the router answered with an error (or some passages were
// rejected); 2 bad command line or input file; 3 the router could not be reached or
// the call timed out.
#ifndef BLOCKSERVE_CLIENT_CLI_H_
#define BLOCKSERVE_CLIENT_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace blockserve::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;

struct CliEnv {
  std::ostream* out;            // answers, stats
  std::ostream* err;            // progress, summaries of ask, errors
  bool err_is_terminal = false;  // progress redraws one line with \r when true
  bool out_is_terminal = false;  // control characters in answers are shown as U+FFFD
  std::string default_router = "localhost:50050";
  std::string default_tls_ca;      // $BLOCKSERVE_TLS_CA
  std::string default_token_file;  // $BLOCKSERVE_TOKEN_FILE
  std::string job_completion_index;  // $JOB_COMPLETION_INDEX (an indexed Job's pod): ingest --shards
};

// Runs the command line `args` (without the program name); returns the exit code.
int RunCli(const std::vector<std::string>& args, const CliEnv& env);

std::string CliUsage();

// `text` with control characters other than newline and tab replaced by U+FFFD: a
// model can emit any character, and these would move a terminal's cursor or change
// its colours.
std::string TerminalSafe(const std::string& text);

}  // namespace blockserve::client

#endif  // BLOCKSERVE_CLIENT_CLI_H_
