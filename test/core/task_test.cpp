#include <catch2/catch.hpp>

#include "actors/core/task.hpp"
#include "actors/core/time.hpp"

using namespace taskmaster::core;

TEST_CASE("priorities and statuses print and parse by their API names",
          "[core][task]") {
  CHECK(to_string(priority::critical) == "CRITICAL");
  CHECK(parse_priority("LOW") == priority::low);
  CHECK(parse_priority("HIGH") == priority::high);
  CHECK(parse_priority("high") == priority::high);
  CHECK(parse_priority("Critical") == priority::critical);
  CHECK_FALSE(parse_priority("HIGHER"));
  CHECK_FALSE(parse_priority("URGENT"));
  CHECK(to_string(task_status::timed_out) == "TIMED_OUT");
  CHECK(parse_task_status("CANCELLED") == task_status::cancelled);
  CHECK(parse_task_status("timed_out") == task_status::timed_out);
  CHECK_FALSE(parse_task_status("DONE"));
  CHECK(is_final(task_status::succeeded));
  CHECK_FALSE(is_final(task_status::running));
}

TEST_CASE("labels parse from k=v lists and print canonically",
          "[core][task]") {
  auto labels = parse_labels("zone=b,gpu=1");
  REQUIRE(labels);
  CHECK(labels->size() == 2);
  CHECK(format_labels(*labels) == "gpu=1,zone=b");
  CHECK(parse_labels("")->empty());
  CHECK(parse_labels("a=")->at("a").empty());
  CHECK_FALSE(parse_labels("novalue"));
  CHECK_FALSE(parse_labels("=x"));
  CHECK_FALSE(parse_labels("gpu=1,gpu=2"));
  CHECK(parse_labels("a=1,,b=2,")->size() == 2);
  CHECK(parse_labels("url=a=b")->at("url") == "a=b");
  // A backslash keeps a comma, an = or a backslash in a value.
  auto path = parse_labels(R"(PATH=/a\,/b,X=\\)");
  REQUIRE(path);
  CHECK(path->at("PATH") == "/a,/b");
  CHECK(path->at("X") == "\\");
  // Any other backslash is part of the value.
  CHECK(parse_labels(R"(RE=^\d+$,P=C:\tmp\)")->at("RE") == R"(^\d+$)");
  CHECK(parse_labels(R"(P=C:\tmp\)")->at("P") == R"(C:\tmp\)");
  // The canonical form escapes what would be read another way, so it reads
  // back the same and two different maps never print alike.
  string_map tricky{{"a", "1,b=2"}, {"k=ey", "\\"}};
  CHECK(parse_labels(format_labels(tricky)) == tricky);
  CHECK(format_labels(tricky)
        != format_labels(string_map{{"a", "1"}, {"b", "2"}}));
}

TEST_CASE("a worker matches when it carries every wanted label",
          "[core][task]") {
  string_map worker{{"gpu", "1"}, {"zone", "b"}};
  CHECK(labels_match({}, worker));
  CHECK(labels_match({{"gpu", "1"}}, worker));
  CHECK_FALSE(labels_match({{"gpu", "0"}}, worker));
  CHECK_FALSE(labels_match({{"ssd", "1"}}, worker));
}

TEST_CASE("timestamps are RFC 3339 UTC with milliseconds", "[core][time]") {
  CHECK(format_rfc3339(0).empty());
  CHECK(format_rfc3339(1) == "1970-01-01T00:00:00.001Z");
  CHECK(format_rfc3339(1795718103123) == "2026-11-26T18:35:03.123Z");
  CHECK(parse_rfc3339("2026-11-26T18:35:03.123Z") == 1795718103123);
  CHECK(parse_rfc3339("2026-11-26T19:35:03.123+01:00") == 1795718103123);
  CHECK(parse_rfc3339("2026-11-26T18:35:03Z") == 1795718103000);
  CHECK(parse_rfc3339("2026-11-26T18:35:03.1Z") == 1795718103100);
  CHECK_FALSE(parse_rfc3339("2026-11-26"));
  CHECK_FALSE(parse_rfc3339("2026-13-01T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2026-11-26T18:35:03"));
  CHECK_FALSE(parse_rfc3339("2026-11-26T18:35:03Zjunk"));
}

TEST_CASE("worker ids and labels print as what they are",
          "[core][task][labels]") {
  CHECK(worker_id_problem("build-3.eu").empty());
  CHECK(worker_id_problem("ビルド").empty());
  CHECK(worker_id_problem("") == "is empty");
  CHECK(worker_id_problem(std::string(129, 'w')) == "is longer than 128 bytes");
  CHECK(worker_id_problem("bad\xffid") == "is not valid UTF-8");
  CHECK(worker_id_problem("bad\xfeid") == "is not valid UTF-8");
  CHECK(worker_id_problem("a b") == "holds a space");
  CHECK(worker_id_problem("a\tb") == "holds a control character");
  CHECK(worker_id_problem("red\x1b[31m") == "holds a control character");
  CHECK(worker_id_problem("c1\xc2\x9b") == "holds a control character");
  CHECK(worker_id_problem("over\xc0\xaflong") == "is not valid UTF-8");
  CHECK(worker_id_problem("w1\u200b") == "holds an invisible character");
  CHECK(worker_id_problem("w\u2028") == "holds an invisible character");
  CHECK(worker_id_problem("rtl\u202e") == "holds an invisible character");
  CHECK(worker_id_problem("nb\u00a0sp") == "holds a space");
  CHECK(worker_id_problem("ideo\u3000") == "holds a space");
  CHECK(worker_labels_problem({{"zone", "eu west"}, {"gpu", "ä100"}}).empty());
  CHECK(worker_labels_problem({{"k\xff", "v"}}) == "a label key is not valid "
                                                   "UTF-8");
  CHECK(worker_labels_problem({{"k", "v\n"}})
        == "the value of label 'k' holds a control character");
}
