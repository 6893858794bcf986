#include "client/router_client.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "common/grpc_status.h"
#include "security/tls.h"

namespace blockserve::client {
namespace {

absl::Status LineError(std::string_view source, int line, const char* what) {
  return absl::InvalidArgumentError(
      absl::StrCat(absl::string_view(source.data(), source.size()), ":", line, ": ", what));
}

grpc::ClientContext* WithTimeout(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return &context;
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

absl::StatusOr<std::vector<v1::Passage>> ParsePassagesJsonl(std::istream& in,
                                                            std::string_view source) {
  std::vector<v1::Passage> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      return LineError(source, n, "not a JSON object (or not valid UTF-8)");
    }
    if (!j.is_object()) return LineError(source, n, "expected a JSON object {\"id\", \"text\"}");
    v1::Passage p;
    if (auto id = j.find("id"); id != j.end()) {
      if (id->is_string()) {
        p.set_id(id->get<std::string>());
      } else if (id->is_number_integer()) {
        p.set_id(std::to_string(id->get<int64_t>()));
      } else {
        return LineError(source, n, "\"id\" must be a string or an integer");
      }
    }
    auto text = j.find("text");
    if (text == j.end() || !text->is_string()) {
      return LineError(source, n, "expected a string field \"text\"");
    }
    p.set_text(text->get<std::string>());
    out.push_back(std::move(p));
  }
  return out;
}

uint64_t ShardKeyHash(const v1::Passage& p) {
  const std::string& key = p.id().empty() ? p.text() : p.id();
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 offset basis
  for (const char c : key) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;  // FNV-1a 64 prime
  }
  return h;
}

int ShardOf(const v1::Passage& p, int count) {
  return count <= 1 ? 0 : static_cast<int>(ShardKeyHash(p) % static_cast<uint64_t>(count));
}

std::vector<v1::Passage> PassagesOfShard(const std::vector<v1::Passage>& all, int index,
                                         int count) {
  std::vector<v1::Passage> out;
  for (const v1::Passage& p : all) {
    if (ShardOf(p, count) == index) out.push_back(p);
  }
  return out;
}

absl::StatusOr<std::vector<v1::Passage>> ReadPassagesJsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return ParsePassagesJsonl(in, path);
}

RouterClient::RouterClient(std::shared_ptr<grpc::ChannelInterface> channel)
    : stub_(v1::Router::NewStub(std::move(channel))) {}

std::shared_ptr<grpc::Channel> RouterClient::Connect(const std::string& address) {
  return *Connect(address, RouterCredentials{});
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> RouterClient::Connect(
    const std::string& address, const RouterCredentials& credentials) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials =
      security::RouterClientCredentials(credentials.ca_file, absl::Seconds(60));
  if (!credentials.token.empty()) {
    if (credentials.ca_file.empty()) {
      return absl::InvalidArgumentError(
          "a bearer token is sent over TLS only: give the router's CA (--tls_ca)");
    }
    channel_credentials = grpc::CompositeChannelCredentials(
        channel_credentials, grpc::AccessTokenCredentials(credentials.token));
  }
  return grpc::CreateCustomChannel(address, channel_credentials, args);
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("token file ", path, ": cannot be read"));
  std::string line;
  std::getline(in, line);
  const std::string token(absl::StripAsciiWhitespace(line));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, ": no token in it"));
  }
  return token;
}

absl::StatusOr<IngestProgress> RouterClient::Ingest(
    const std::vector<v1::Passage>& passages, const IngestOptions& options,
    const std::function<void(const IngestProgress&)>& progress) {
  IngestProgress p;
  p.total = passages.size();
  const absl::Time start = absl::Now();
  const size_t batch = std::max(1, options.batch);
  for (size_t begin = 0; begin < passages.size(); begin += batch) {
    v1::IngestRequest request;
    request.set_force_reencode(options.force_reencode);
    const size_t end = std::min(passages.size(), begin + batch);
    for (size_t i = begin; i < end; ++i) *request.add_passages() = passages[i];
    grpc::ClientContext context;
    v1::IngestResponse response;
    const grpc::Status s =
        stub_->Ingest(WithTimeout(context, options.batch_timeout), request, &response);
    if (!s.ok()) return FromGrpcStatus(s);
    for (const v1::EncodeResult& r : response.results()) {
      if (r.status().code() != 0) {
        ++p.failed;
        p.failures.push_back(absl::StrCat(
            r.id().empty() ? absl::StrCat("#", begin + r.index()) : r.id(), ": ",
            absl::StatusCodeToString(static_cast<absl::StatusCode>(r.status().code())), ": ",
            r.status().message()));
      } else if (r.already_cached()) {
        ++p.cached;
      } else {
        ++p.encoded;
      }
    }
    p.done = end;
    p.tokens_encoded += response.stats().tokens_encoded();
    p.tokens_cached += response.stats().tokens_cached();
    p.encoder = response.encoder_server();
    p.elapsed_s = absl::ToDoubleSeconds(absl::Now() - start);
    if (progress) progress(p);
  }
  p.elapsed_s = absl::ToDoubleSeconds(absl::Now() - start);
  return p;
}

absl::StatusOr<Answer> RouterClient::Ask(
    const v1::GenerateRequest& request, absl::Duration timeout,
    const std::function<void(const v1::TokenChunk&)>& on_chunk) {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> reader =
      stub_->Generate(WithTimeout(context, timeout), request);
  Answer answer;
  bool summarized = false;
  v1::GenerateEvent event;
  while (reader->Read(&event)) {
    if (event.has_summary()) {
      answer.summary = event.summary();
      summarized = true;
      continue;
    }
    const v1::TokenChunk& chunk = event.tokens();
    answer.text += chunk.text();
    answer.token_ids.insert(answer.token_ids.end(), chunk.token_ids().begin(),
                            chunk.token_ids().end());
    if (on_chunk) on_chunk(chunk);
  }
  if (const grpc::Status s = reader->Finish(); !s.ok()) return FromGrpcStatus(s);
  if (!summarized) return absl::InternalError("the router ended the answer without a summary");
  return answer;
}

absl::StatusOr<v1::StatsResponse> RouterClient::Stats(bool include_backends,
                                                      absl::Duration timeout) {
  grpc::ClientContext context;
  v1::StatsRequest request;
  request.set_include_backends(include_backends);
  v1::StatsResponse response;
  if (const grpc::Status s = stub_->GetStats(WithTimeout(context, timeout), request, &response);
      !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response;
}

}  // namespace blockserve::client
