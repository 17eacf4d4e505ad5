// Benchmark event producer: structured CloudEvents JSON over tenants x environments with a chosen
// match rate, produced as fast as possible (a backlog) or at a steady rate (latency runs).
//
// Every event carries data.produced_at_ns (CLOCK_REALTIME, taken just before rd_kafka_producev) so
// the benchmark can compute produce -> row committed / provider start against PostgreSQL's
// timestamps (same machine, same clock).
//
// The event mix (must agree with bench/bench.py, which writes the definitions):
//   tenants bt0000..bt{T-1}, environments prod / staging (first E of them), and per tenant x
//   environment one definition for each of
//     customer.created   condition data.customer.country eq "US" and tier in [gold, silver]
//     order.placed       condition data.amount gt 100
//     payment.received   no condition
//     subscription.activated  no condition
//     invoice.paid       condition data.customer.email regex ^[^@]+@example\.com$
//   A matching event is one of those types with data that satisfies its condition (one execution).
//   A non-matching event is, alternately, a type no definition triggers on (page.viewed,
//   audit.logged) or a defined type whose condition fails (country DE / amount 5), so both the
//   index miss and the condition evaluation are exercised.
//
// Modes:
//   producer produce --brokers B --topic T --count N [--rate R] [--match PCT] ...
//   producer copyfile --out FILE --count N ...   rows for COPY into a workflow_executions-shaped
//                                                 table, with the trigger_event the daemon stores
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string mode;
  std::string brokers = "127.0.0.1:9092";
  std::string topic;
  std::string out;
  std::string id_prefix = "ev";
  long long count = 100000;
  double rate = 0;    // events/s; 0 = as fast as possible
  double match = 20;  // percent
  int tenants = 50;
  int envs = 2;
  int tenant_offset = 0;
  uint64_t seed = 1;
  int linger_ms = 20;
  int payload_pad = 0;  // extra bytes of filler in data
};

[[noreturn]] void Usage(const char* msg) {
  std::fprintf(stderr, "producer: %s\n", msg);
  std::fprintf(stderr,
               "usage: producer produce --brokers B --topic T --count N [--rate EV_PER_S] "
               "[--match PCT] [--tenants N] [--envs N] [--tenant-offset N] [--id-prefix P] "
               "[--seed S] [--linger-ms MS]\n"
               "       producer copyfile --out FILE --count N [--match ...]\n");
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  if (argc < 2) Usage("missing mode");
  Options o;
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--brokers")
      o.brokers = next();
    else if (a == "--topic")
      o.topic = next();
    else if (a == "--out")
      o.out = next();
    else if (a == "--id-prefix")
      o.id_prefix = next();
    else if (a == "--count")
      o.count = std::stoll(next());
    else if (a == "--rate")
      o.rate = std::stod(next());
    else if (a == "--match")
      o.match = std::stod(next());
    else if (a == "--tenants")
      o.tenants = std::stoi(next());
    else if (a == "--envs")
      o.envs = std::stoi(next());
    else if (a == "--tenant-offset")
      o.tenant_offset = std::stoi(next());
    else if (a == "--seed")
      o.seed = std::stoull(next());
    else if (a == "--linger-ms")
      o.linger_ms = std::stoi(next());
    else if (a == "--pad")
      o.payload_pad = std::stoi(next());
    else
      Usage(("unknown option " + a).c_str());
  }
  if (o.envs < 1 || o.envs > 2) Usage("--envs must be 1 or 2");
  return o;
}

const char* kEnvs[] = {"prod", "staging"};
const char* kCountries[] = {"US", "DE"};

struct Event {
  std::string key;    // tenant id: per-tenant order, spread over partitions
  std::string value;  // CloudEvents JSON
  // What the daemon stores as trigger_event (copyfile mode), without the Kafka coordinates.
  std::string tenant, env, type, id, time, data;
};

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string Rfc3339(int64_t ns) {
  time_t s = static_cast<time_t>(ns / 1000000000);
  tm t;
  gmtime_r(&s, &t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<int>((ns % 1000000000) / 1000));
  return buf;
}

class Generator {
 public:
  explicit Generator(const Options& o) : o_(o), rng_(o.seed) {}

  void Make(long long seq, int64_t produced_at_ns, Event& ev) {
    bool matched = uniform_(rng_) * 100.0 < o_.match;
    int tenant = o_.tenant_offset + static_cast<int>(rng_() % static_cast<uint64_t>(o_.tenants));
    int env = static_cast<int>(rng_() % static_cast<uint64_t>(o_.envs));
    int kind = static_cast<int>(rng_() % 5);
    char tbuf[32];
    std::snprintf(tbuf, sizeof tbuf, "bt%04d", tenant);
    ev.tenant = tbuf;
    ev.env = kEnvs[env];
    ev.id = o_.id_prefix + "-" + std::to_string(seq);
    ev.key = ev.tenant;
    std::string country = "US", tier = "gold";
    double amount = 250.5;
    if (matched) {
      static const char* kTypes[] = {"customer.created", "order.placed", "payment.received",
                                     "subscription.activated", "invoice.paid"};
      ev.type = kTypes[kind];
      if (rng_() % 2) tier = "silver";
    } else if (unmatched_flip_++ % 2 == 0) {
      ev.type = kind % 2 ? "page.viewed" : "audit.logged";  // no definition triggers on these
    } else if (kind % 2 == 0) {
      ev.type = "customer.created";  // condition fails: country
      country = kCountries[1];
    } else {
      ev.type = "order.placed";  // condition fails: amount
      amount = 5;
    }
    ev.time = Rfc3339(produced_at_ns);
    char data[768];
    int n = std::snprintf(
        data, sizeof data,
        "{\"produced_at_ns\":%" PRId64
        ",\"customer\":{\"id\":\"cus_%lld\",\"email\":\"user%lld@example.com\",\"country\":\"%s\","
        "\"tier\":\"%s\"},\"amount\":%.2f,\"currency\":\"USD\",\"items\":[{\"sku\":\"sku-1\","
        "\"qty\":2},{\"sku\":\"sku-7\",\"qty\":1}],\"channel\":\"web\"",
        produced_at_ns, seq, seq, country.c_str(), tier.c_str(), amount);
    ev.data.assign(data, static_cast<size_t>(n));
    if (o_.payload_pad > 0) {
      ev.data += ",\"pad\":\"";
      ev.data.append(static_cast<size_t>(o_.payload_pad), 'x');
      ev.data += '"';
    }
    ev.data += '}';
    ev.value.clear();
    ev.value.reserve(512 + ev.data.size());
    ev.value += "{\"specversion\":\"1.0\",\"id\":\"";
    ev.value += ev.id;
    ev.value += "\",\"source\":\"/bench/producer\",\"type\":\"";
    ev.value += ev.type;
    ev.value += "\",\"tenantid\":\"";
    ev.value += ev.tenant;
    ev.value += "\",\"environmentid\":\"";
    ev.value += ev.env;
    ev.value += "\",\"time\":\"";
    ev.value += ev.time;
    ev.value += "\",\"datacontenttype\":\"application/json\",\"data\":";
    ev.value += ev.data;
    ev.value += '}';
  }

 private:
  const Options& o_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  uint64_t unmatched_flip_ = 0;
};

std::atomic<long long> g_delivered{0};
std::atomic<long long> g_failed{0};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  if (m->err) {
    if (g_failed++ == 0)
      std::fprintf(stderr, "producer: delivery failed: %s\n", rd_kafka_err2str(m->err));
  } else {
    ++g_delivered;
  }
}

void Set(rd_kafka_conf_t* conf, const char* k, const std::string& v) {
  char err[512];
  if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "producer: %s=%s: %s\n", k, v.c_str(), err);
    std::exit(2);
  }
}

int Produce(const Options& o) {
  if (o.topic.empty()) Usage("--topic is required");
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  Set(conf, "bootstrap.servers", o.brokers);
  Set(conf, "linger.ms", std::to_string(o.linger_ms));
  Set(conf, "batch.num.messages", "10000");
  Set(conf, "queue.buffering.max.messages", "1000000");
  Set(conf, "queue.buffering.max.kbytes", "1048576");
  Set(conf, "compression.codec", "none");
  Set(conf, "acks", "1");
  rd_kafka_conf_set_dr_msg_cb(conf, &OnDelivery);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    std::fprintf(stderr, "producer: %s\n", err);
    return 1;
  }
  Generator gen(o);
  Event ev;
  auto start = std::chrono::steady_clock::now();
  for (long long i = 0; i < o.count; ++i) {
    if (o.rate > 0) {
      // Steady rate: event i is due at start + i / rate, released in 1 ms ticks (the events due
      // within a tick go out together after one wake-up). At 5,000 events/s a sleep per event
      // woke this process 5,000 times a second, CPU taken from the machine under test; each
      // event still carries the time it was actually produced.
      constexpr int64_t kTickNs = 1000000;
      const int64_t due_ns = static_cast<int64_t>(1e9 * static_cast<double>(i) / o.rate);
      auto due = start + std::chrono::nanoseconds((due_ns + kTickNs - 1) / kTickNs * kTickNs);
      auto now = std::chrono::steady_clock::now();
      if (due > now) {
        rd_kafka_poll(rk, 0);
        std::this_thread::sleep_until(due);
      }
    }
    gen.Make(i, NowNs(), ev);
    while (true) {
      rd_kafka_resp_err_t e =
          rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o.topic.c_str()),
                            RD_KAFKA_V_KEY(const_cast<char*>(ev.key.data()), ev.key.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(ev.value.data()), ev.value.size()),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        std::fprintf(stderr, "producer: produce: %s\n", rd_kafka_err2str(e));
        return 1;
      }
      rd_kafka_poll(rk, 10);
    }
    if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 120000);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "{\"produced\":%lld,\"delivered\":%lld,\"failed\":%lld,\"seconds\":%.3f,\"rate\":%.0f}\n",
      o.count, g_delivered.load(), g_failed.load(), secs, o.count / secs);
  rd_kafka_destroy(rk);
  return g_failed > 0 || g_delivered != o.count ? 1 : 0;
}

// COPY text format escaping (backslash, tab, newline, carriage return).
void CopyEscape(std::string& out, const std::string& s) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
}

// Rows shaped like the daemon's INSERT into workflow_executions: id, tenant_id, environment_id,
// workflow_id, workflow_name, definition_version, provider, trigger_type, trigger_event_id,
// trigger_event (the same document TriggerEventJson builds), status, next_attempt_at.
int CopyFile(const Options& o) {
  if (o.out.empty()) Usage("--out is required");
  std::FILE* f = std::fopen(o.out.c_str(), "w");
  if (f == nullptr) {
    std::perror(o.out.c_str());
    return 1;
  }
  Options all = o;
  all.match = 100;
  Generator gen(all);
  Event ev;
  std::string line;
  int64_t base = NowNs();
  for (long long i = 0; i < o.count; ++i) {
    gen.Make(i, base + i, ev);
    // Daemon-style ids: "ex_" + 26 chars.
    char id[64];
    std::snprintf(id, sizeof id, "ex_bench%018lld", i);
    // The id bench.py gives the definition of this tenant x environment x event name, so the
    // rows are those the daemon would create (existing definitions).
    std::string type_dashed = ev.type;
    for (char& c : type_dashed)
      if (c == '.') c = '-';
    std::string wf = "b-" + ev.tenant + "-" + ev.env + "-" + type_dashed;
    std::string trigger =
        "{\"id\":\"" + ev.id + "\",\"data\":" + ev.data + ",\"time\":\"" + ev.time +
        "\",\"type\":\"" + ev.type +
        "\",\"kafka\":{\"topic\":\"bench.copy\",\"offset\":" + std::to_string(i) +
        ",\"partition\":" + std::to_string(i % 4) +
        "},\"format\":\"cloudevents\",\"source\":\"/bench/producer\",\"tenant\":\"" + ev.tenant +
        "\",\"environment\":\"" + ev.env + "\",\"datacontenttype\":\"application/json\"}";
    line.clear();
    line += id;
    line += '\t';
    line += ev.tenant;
    line += '\t';
    line += ev.env;
    line += '\t';
    line += wf;
    line += '\t';
    line += "Bench " + ev.type;
    line += "\t1\tmock\tevent\t";
    line += ev.id;
    line += '\t';
    CopyEscape(line, trigger);
    line += "\tpending\t";
    line += Rfc3339(base);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), f);
  }
  std::fclose(f);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  if (o.mode == "produce") return Produce(o);
  if (o.mode == "copyfile") return CopyFile(o);
  Usage("mode must be produce or copyfile");
}
