#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "config/taskmaster_config.hpp"

using namespace taskmaster;

namespace {

/// Keys and raw values of the [global] section of an INI file.
std::map<std::string, std::string> ini_keys(const std::string& path) {
  std::ifstream in{path};
  REQUIRE(in.good());
  std::map<std::string, std::string> keys;
  std::string line;
  std::string section;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == ';' || line[first] == '#')
      continue;
    if (line[first] == '[') {
      section = line.substr(first + 1, line.find(']') - first - 1);
      continue;
    }
    auto eq = line.find('=');
    if (section == "global" && eq != std::string::npos) {
      auto key = line.substr(first, eq - first);
      key.erase(key.find_last_not_of(" \t") + 1);
      keys[key] = line.substr(eq + 1);
    }
  }
  return keys;
}

} // namespace

TEST_CASE("the reference taskmasterd.ini lists every option with its default",
          "[config]") {
  auto path = std::string{TASKMASTER_SOURCE_DIR} + "/config/taskmasterd.ini";
  auto keys = ini_keys(path);
  taskmaster_config defaults;
  auto names = defaults.option_names();
  std::set<std::string> option_set(names.begin(), names.end());
  std::set<std::string> ini_set;
  for (const auto& [k, v] : keys)
    ini_set.insert(k);
  CHECK(ini_set == option_set);
  // Loading the reference file changes no value.
  taskmaster_config loaded;
  REQUIRE(loaded.parse_args({"--config-file=" + path}).empty());
  CHECK(loaded.option_values() == defaults.option_values());
}

TEST_CASE("options come from the command line and from a config file",
          "[config]") {
  taskmaster_config cfg;
  REQUIRE(cfg.parse_args({"--role=worker", "--master=10.0.0.5:6000",
                          "--slots=3", "--labels=gpu=1,zone=b",
                          "--kill-grace=250ms"})
            .empty());
  REQUIRE(cfg.validate().empty());
  CHECK(cfg.role == "worker");
  CHECK(cfg.master_host == "10.0.0.5");
  CHECK(cfg.master_port == 6000);
  CHECK(cfg.effective_slots() == 3);
  CHECK(cfg.worker_labels.at("zone") == "b");
  CHECK(cfg.kill_grace == std::chrono::milliseconds(250));
  auto file = std::string{"/tmp/taskmaster-config-test.ini"};
  {
    std::ofstream out{file};
    out << "[global]\nrole=\"master\"\nhttp-port=9999\nmax-queued=5\n";
  }
  taskmaster_config from_file;
  REQUIRE(from_file.parse_args({"--config-file", file}).empty());
  CHECK(from_file.role == "master");
  CHECK(from_file.http_port == 9999);
  CHECK(from_file.max_queued == 5);
  std::remove(file.c_str());
}

TEST_CASE("a true/false option takes =true and =false, on the command line "
          "over the config file",
          "[config]") {
  taskmaster_config bare;
  REQUIRE(bare.parse_args({"--journal-fsync", "--insecure"}).empty());
  CHECK(bare.journal_fsync);
  CHECK(bare.insecure);
  taskmaster_config valued;
  REQUIRE(valued.parse_args({"--journal-fsync=true", "--insecure=On"}).empty());
  CHECK(valued.journal_fsync);
  CHECK(valued.insecure);
  auto file = std::string{"/tmp/taskmaster-config-flag-test-"}
              + std::to_string(::getpid()) + ".ini";
  {
    std::ofstream out{file};
    out << "[global]\njournal-fsync=true\ninsecure=true\n";
  }
  taskmaster_config overridden;
  REQUIRE(overridden
            .parse_args({"--config-file=" + file, "--journal-fsync=false",
                         "--insecure=0"})
            .empty());
  CHECK_FALSE(overridden.journal_fsync);
  CHECK_FALSE(overridden.insecure);
  taskmaster_config from_file;
  REQUIRE(from_file.parse_args({"--config-file=" + file}).empty());
  CHECK(from_file.journal_fsync);
  // --dump-config shows what the daemon would run with, the override too.
  auto dumped = [&](std::vector<std::string> args) {
    std::ostringstream captured;
    auto* previous = std::cout.rdbuf(captured.rdbuf());
    taskmaster_config dumping;
    args.push_back("--dump-config");
    auto err = dumping.parse_args(args);
    std::cout.rdbuf(previous);
    CHECK(err.empty());
    CHECK(dumping.cli_helptext_printed);
    return captured.str();
  };
  auto overridden_dump = dumped({"--config-file=" + file,
                                 "--journal-fsync=false", "--insecure",
                                 "--retention=336h", "--kill-grace=12h",
                                 "--shutdown-grace=36h"});
  CHECK_THAT(overridden_dump, Catch::Contains("\njournal-fsync=false\n"));
  CHECK_THAT(overridden_dump, Catch::Contains("\ninsecure=true\n"));
  CHECK_THAT(dumped({"--config-file=" + file}),
             Catch::Contains("\njournal-fsync=true\n"));
  // Days as hours (CAF reads no "d" in a file), no secret, and the daemon
  // reads it back to the same values.
  CHECK_THAT(overridden_dump, Catch::Contains("\nretention=336h\n"));
  // CAF 0.17.6 writes an even number of hours as days, rounded down.
  CHECK_THAT(overridden_dump, Catch::Contains("\nkill-grace=12h\n"));
  CHECK_THAT(overridden_dump, Catch::Contains("\nshutdown-grace=36h\n"));
  auto with_token = dumped({"--api-token=" + std::string(32, 'k')});
  CHECK_THAT(with_token, !Catch::Contains("kkkk"));
  CHECK_THAT(with_token, Catch::Contains("\n; api-token is set (not shown)\n"));
  {
    std::ofstream out{file};
    out << overridden_dump;
  }
  taskmaster_config reread;
  REQUIRE(reread.parse_args({"--config-file=" + file}).empty());
  CHECK(reread.journal_fsync == false);
  CHECK(reread.insecure);
  CHECK(dumped({"--config-file=" + file}) == overridden_dump);
  // A string that starts with a quote reads back too.
  {
    std::ofstream out{file};
    out << "[global]\nworker-id=\"\\\"odd\\\\name\"\n";
  }
  auto quoted_dump = dumped({"--config-file=" + file});
  {
    std::ofstream out{file};
    out << quoted_dump;
  }
  taskmaster_config quoted;
  REQUIRE(quoted.parse_args({"--config-file=" + file}).empty());
  CHECK(quoted.worker_id == "\"odd\\name");
  std::remove(file.c_str());
  taskmaster_config bad;
  CHECK(bad.parse_args({"--journal-fsync=maybe"})
        == "invalid value in --journal-fsync=maybe (expected true or false) "
           "(see --help)");
  taskmaster_config twice;
  CHECK(twice.parse_args({"--journal-fsync=true", "--journal-fsync=false"})
        == "--journal-fsync given twice");
}

TEST_CASE("a cluster port given on the command line or in the file is "
          "known as chosen",
          "[config]") {
  taskmaster_config plain;
  REQUIRE(plain.parse_args({"--http-port=9000"}).empty());
  CHECK_FALSE(plain.cluster_port_chosen());
  taskmaster_config given;
  REQUIRE(given.parse_args({"--cluster-port=50051"}).empty());
  CHECK(given.cluster_port_chosen());
  auto file = std::string{"/tmp/taskmaster-config-port-test.ini"};
  {
    std::ofstream out{file};
    out << "[global]\ncluster-port=6000\n";
  }
  taskmaster_config from_file;
  REQUIRE(from_file.parse_args({"--config-file", file}).empty());
  CHECK(from_file.cluster_port_chosen());
  CHECK(from_file.cluster_port == 6000);
  std::remove(file.c_str());
}

TEST_CASE("bad options are one clear line", "[config]") {
  taskmaster_config a;
  CHECK(a.parse_args({"--no-such-option=1"})
        == "unknown option --no-such-option (see --help)");
  taskmaster_config b;
  CHECK(b.parse_args({"--http-port=http"})
        == "invalid value in --http-port=http (expected a whole number from 0 "
           "to 65535) (see --help)");
  taskmaster_config b2;
  CHECK(b2.parse_args({"--kill-grace=5"})
        == "invalid value in --kill-grace=5 (expected a duration with its "
           "unit, e.g. 250ms, 5s, 2min, 1h) (see --help)");
  taskmaster_config b3;
  CHECK(b3.parse_args({"--data-dir="}) == "--data-dir needs a value (see --help)");
  taskmaster_config c;
  CHECK(c.parse_args({"stray"}) == "unexpected argument 'stray' (see --help)");
  taskmaster_config d;
  REQUIRE(d.parse_args({"--role=boss"}).empty());
  CHECK(d.validate() == "unknown role 'boss' (standalone, master or worker)");
  taskmaster_config body;
  REQUIRE(body.parse_args({"--max-body-bytes=0"}).empty());
  CHECK(body.validate() == "--max-body-bytes must be at least 1024");
  taskmaster_config e;
  REQUIRE(e.parse_args({"--labels=novalue"}).empty());
  CHECK(e.validate()
        == "invalid --labels 'novalue': expected k=v,k=v with each key once");
  taskmaster_config e2;
  REQUIRE(e2.parse_args({"--labels=gpu=1,gpu=2"}).empty());
  CHECK(e2.validate()
        == "invalid --labels 'gpu=1,gpu=2': expected k=v,k=v with each key "
           "once");
  taskmaster_config f;
  REQUIRE(f.parse_args({"--master=nohost"}).empty());
  CHECK(f.validate() == "invalid --master 'nohost': expected HOST:PORT");
  // Durations: never negative, and positive where 0 means nothing.
  taskmaster_config h;
  REQUIRE(h.parse_args({"--prefetch-budget=-1s"}).empty());
  CHECK(h.validate() == "--prefetch-budget must be 0 or more");
  taskmaster_config i;
  REQUIRE(i.parse_args({"--request-timeout=0s"}).empty());
  CHECK(i.validate() == "--request-timeout must be positive");
  taskmaster_config j;
  REQUIRE(j.parse_args({"--retry-backoff=-5s"}).empty());
  CHECK(j.validate() == "--retry-backoff must be 0 or more");
  taskmaster_config k;
  REQUIRE(k.parse_args({"--prefetch-budget=0s"}).empty());
  CHECK(k.validate().empty());
  // Pings more often than every second would be traffic for nothing; less
  // often than hourly, no proxy keeps the connection.
  taskmaster_config l;
  REQUIRE(l.parse_args({"--ws-ping-interval=500ms"}).empty());
  CHECK(l.validate() == "--ws-ping-interval must be between 1s and 1h");
  taskmaster_config m;
  REQUIRE(m.parse_args({"--ws-ping-interval=2h"}).empty());
  CHECK(m.validate() == "--ws-ping-interval must be between 1s and 1h");
  // Acknowledgements to workers wait for these commits.
  taskmaster_config n;
  REQUIRE(n.parse_args({"--journal-group-delay=11s"}).empty());
  CHECK(n.validate() == "--journal-group-delay must be between 0s and 10s");
  taskmaster_config o;
  REQUIRE(o.parse_args({"--journal-group-delay=0s"}).empty());
  CHECK(o.validate().empty());
  taskmaster_config g;
  CHECK(g.parse_args({"--config-file=/nonexistent/x.ini"})
        == "cannot read config file /nonexistent/x.ini");
}

TEST_CASE("a worker defaults to the host name and the core count",
          "[config]") {
  taskmaster_config cfg;
  CHECK_FALSE(cfg.effective_worker_id().empty());
  CHECK(cfg.effective_slots() >= 1);
}

namespace {

/// Parses a config file with `content`; returns parse_args' answer.
std::string parse_file(const std::string& content) {
  auto file = std::string{"/tmp/taskmaster-config-test-"}
              + std::to_string(::getpid()) + ".ini";
  {
    std::ofstream out{file};
    out << content;
  }
  taskmaster_config cfg;
  auto answer = cfg.parse_args({"--config-file=" + file});
  std::remove(file.c_str());
  // The file name varies; the tests compare what follows it.
  auto colon = answer.find(".ini");
  return colon == std::string::npos ? answer : answer.substr(colon + 4);
}

} // namespace

TEST_CASE("a config file entry CAF would drop silently is an error",
          "[config]") {
  // Each of these used to start a master on the default port, unannounced.
  CHECK(parse_file("[global]\nhttp-port=99999\n")
        == ": invalid value for http-port: 99999 (expected a whole number "
           "from 0 to 65535)");
  CHECK(parse_file("[global]\nhttp-port=\"8081\"\n")
        == ": invalid value for http-port: \"8081\" (expected a whole number "
           "from 0 to 65535)");
  CHECK(parse_file("[global]\nmax-body-bytes=-1\n")
        == ": invalid value for max-body-bytes: -1 (expected a whole number, "
           "0 or more)");
  CHECK(parse_file("[global]\nkill-grace=5\n")
        == ": invalid value for kill-grace: 5 (expected a duration with its "
           "unit, e.g. 250ms, 5s, 2min, 1h)");
  CHECK(parse_file("[global]\nhtp-port=8081\n")
        == ": unknown key 'htp-port' in [global]");
  CHECK(parse_file("[glbal]\nhttp-port=8081\n") == ": unknown section [glbal]");
  CHECK(parse_file("[scheduler]\nmax-thread=2\n")
        == ": unknown key 'max-thread' in [scheduler]");
  // Values CAF cannot read at all: it named a line (not always the right
  // one) and no key, and told to quote durations too.
  CHECK(parse_file("[global]\nlabels=gpu\n")
        == ", line 2: labels=gpu is not a value (expected a quoted string)");
  CHECK(parse_file("[global]\n; durations\nhttp-port=8081\n\n"
                   "kill-grace = 5x  \n")
        == ", line 5: kill-grace=5x is not a value (expected a duration with "
           "its unit, e.g. 250ms, 5s, 2min, 1h)");
  CHECK(parse_file("[global]\nretention=7d\n")
        == ", line 2: retention=7d is not a value (expected a duration with "
           "its unit, e.g. 250ms, 5s, 2min, 1h)");
  CHECK(parse_file("[global]\nslots=abc\n")
        == ", line 2: slots=abc is not a value (expected a whole number, 0 "
           "or more)");
  // The entry CAF stopped at is the one named, whatever comes before it
  // (a long string made a regex crash; an earlier hexadecimal number was
  // blamed instead).
  CHECK(parse_file("[global]\napi-token=\"" + std::string(30000, 't')
                   + "\"\nmax-queued=0x100\nhttp-port=80a\n")
        == ", line 4: http-port=80a is not a value (expected a whole number "
           "from 0 to 65535)");
  CHECK(parse_file("[global]\nhttp-port=8080 # the port\n")
        == ", line 2: http-port=8080 # the port is not a value (expected a "
           "whole number from 0 to 65535; comments start with ;)");
  CHECK(parse_file("[global]\nlabels=\"gpu=1\nhttp-port=8081\n")
        == ", line 2: labels=\"gpu=1 is not a value (its closing quote is "
           "missing)");
  // Lines inside a dictionary that spans several are not keys; "[ global ]"
  // is [global].
  CHECK(parse_file("[global]\nlabels=\"a=1\"\n[ global ]\nlabels=\"b\"\n")
        == ": labels given twice in [global] (lines 2 and 4)");
  CHECK(parse_file("[middleman]\nx={\n  a=1,\n}\ny={\n  a=1\n}\n")
          .find("given twice") == std::string::npos);
  // What CAF reads is left to it (and to the checks above).
  CHECK(parse_file("[global]\nlabels=\"gpu=1\" ; a comment\nkill-grace=2s\n"
                   "http-port=8081\nmax-body-bytes=-1\n")
        == ": invalid value for max-body-bytes: -1 (expected a whole number, "
           "0 or more)");
  // A key set twice: CAF kept the first when the second was not valid, so
  // a line added at the end of a copied file was ignored without a word.
  CHECK(parse_file("[global]\nhttp-port=8081\n; a comment = no key\n"
                   "http-port=70000\n")
        == ": http-port given twice in [global] (lines 2 and 4)");
  CHECK(parse_file("http-port=8081\n[global]\nhttp-port=8082\n")
        == ": http-port given twice in [global] (lines 1 and 3)");
  // The same key in two sections is two keys.
  CHECK(parse_file("[scheduler]\nmax-threads=2\n[middleman]\nworkers=0\n"
                   "[global]\nworkers=0\n")
          .find("given twice") == std::string::npos);
  // CAF's own sections, including those of modules loaded later, still work.
  CHECK(parse_file("[scheduler]\nmax-threads=2\n[middleman]\nworkers=0\n"
                   "[global]\nhttp-port=8081\nkill-grace=2s\n")
          .empty());
}

TEST_CASE("an API token file must hold a token", "[config]") {
  auto file = std::string{"/tmp/taskmaster-token-test-"}
              + std::to_string(::getpid());
  auto write = [&](const std::string& text) {
    std::ofstream out{file};
    out << text;
  };
  write("");
  taskmaster_config empty;
  REQUIRE(empty.parse_args({"--api-token-file=" + file}).empty());
  CHECK(empty.validate().find("holds no token") != std::string::npos);
  write("  \n");
  taskmaster_config blank;
  REQUIRE(blank.parse_args({"--api-token-file=" + file}).empty());
  CHECK(blank.validate().find("holds no token") != std::string::npos);
  write("0123456789abcdefXYZ\n");
  taskmaster_config good;
  REQUIRE(good.parse_args({"--api-token-file=" + file}).empty());
  CHECK(good.validate().empty());
  CHECK(good.api_token == "0123456789abcdefXYZ");
  // Two sources: which one counts would be a guess.
  taskmaster_config both;
  REQUIRE(both.parse_args({"--api-token-file=" + file,
                           "--api-token=ABCDEFGHIJKLMNOPQRST"})
            .empty());
  CHECK(both.validate() == "give --api-token or --api-token-file, not both");
  std::remove(file.c_str());
}

TEST_CASE("after a crash the master waits a heartbeat timeout plus the "
          "longest reconnect backoff",
          "[config]") {
  taskmaster_config cfg;
  REQUIRE(cfg.parse_args({"--heartbeat-timeout=3s",
                          "--reconnect-backoff-max=20s"})
            .empty());
  CHECK(cfg.scheduler_settings().restart_hold == 23'000);
}

TEST_CASE("the retry backoff cap is not below the backoff", "[config]") {
  taskmaster_config cfg;
  REQUIRE(cfg.parse_args({"--retry-backoff=10s", "--retry-backoff-max=1s"})
            .empty());
  CHECK(cfg.validate()
        == "--retry-backoff-max must not be less than --retry-backoff");
}

TEST_CASE("an option given twice on the command line is refused",
          "[config]") {
  taskmaster_config cfg;
  CHECK(cfg.parse_args({"--role=master", "--role=worker"})
        == "--role given twice");
}
