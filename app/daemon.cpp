#include "app/daemon.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string_view>
#include <thread>
#include <utility>

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <fmt/format.h>

#include "actors/log.hpp"
#include "actors/messages.hpp"
#include "actors/monitor.hpp"
#include "actors/scheduler.hpp"
#include "actors/store/task_journal.hpp"
#include "actors/task_metrics.hpp"
#include "actors/worker.hpp"
#include "config/defaults.hpp"
#include "http/gateway.hpp"

namespace taskmaster {

namespace {

int64_t millis(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x).count();
}

/// Blocks until SIGTERM or SIGINT, then arms a second one to force the exit.
/// While waiting, hands freed heap memory back to the system every few
/// seconds: bursts (a 10,000-task batch and its JSON) leave free pages that
/// malloc keeps otherwise.
int wait_for_shutdown_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = -1;
  while (sig < 0) {
    timespec interval{5, 0};
    sig = sigtimedwait(&set, nullptr, &interval);
    if (sig < 0)
      ::malloc_trim(0);
  }
  std::thread{[set] {
    int again = 0;
    sigwait(&set, &again);
    log::warn("second {} during shutdown: exiting now",
              again == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stderr);
    ::_exit(128 + again);
  }}.detach();
  return sig;
}

/// True when something else listens on HOST:PORT (binding it fails with
/// EADDRINUSE), as opposed to a port that cannot be opened for another
/// reason: CAF's error does not tell the two apart.
bool port_taken(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                    std::to_string(port).c_str(), &hints, &found)
      != 0)
    return false;
  bool taken = false;
  for (auto* a = found; a != nullptr && !taken; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
                      a->ai_protocol);
    if (fd < 0)
      continue;
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    taken = ::bind(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EADDRINUSE;
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return taken;
}

/// Where a standalone master keeps the cluster port it moved to, so that
/// workers that joined on it find it again after a restart.
std::string moved_port_file(const taskmaster_config& cfg) {
  return cfg.data_dir + "/cluster-port";
}

/// The port an earlier start moved to, or 0 without one. A file that holds
/// no port number (edited by hand) is named in the log and removed, and one
/// that cannot be read is named: the default port is tried then, and moved
/// from again if taken.
uint16_t read_moved_port(const taskmaster_config& cfg) {
  auto path = moved_port_file(cfg);
  std::ifstream in{path};
  if (!in) {
    if (errno != ENOENT)
      log::warn("cannot read {} ({}): trying port {}", path,
                std::strerror(errno), cfg.cluster_port);
    return 0;
  }
  std::string text;
  std::getline(in, text);
  auto first = text.find_first_not_of(" \t\r");
  auto last = text.find_last_not_of(" \t\r");
  auto digits = first == std::string::npos
                  ? std::string_view{}
                  : std::string_view{text}.substr(first, last - first + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(digits.data(),
                                   digits.data() + digits.size(), port);
  if (ec == std::errc{} && end == digits.data() + digits.size() && port > 0
      && port < 65536)
    return static_cast<uint16_t>(port);
  std::remove(path.c_str());
  log::warn("{} held no port number ('{}'): removed, trying port {}", path,
            text.substr(0, 40), cfg.cluster_port);
  return 0;
}

/// Writes the file whole or not at all (a crash mid-write must not leave
/// another port number in it); false when it could not.
bool keep_moved_port(const taskmaster_config& cfg, uint16_t port) {
  auto path = moved_port_file(cfg);
  auto temp = path + ".new";
  {
    std::ofstream out{temp, std::ios::trunc};
    out << port << "\n";
    out.flush();
    if (!out)
      return false;
  }
  return std::rename(temp.c_str(), path.c_str()) == 0;
}

/// CAF settings shared by masters and workers; must run before the actor
/// system exists.
void configure_actor_system(taskmaster_config& cfg) {
  // CAF's default work-stealing scheduler polls for work even when idle
  // (3.5% of a core per idle daemon here); the sharing scheduler sleeps on a
  // condition variable (0.2%). Workers and masters spend most of their time
  // waiting for processes and messages.
  if (caf::get_if(&caf::content(cfg), "scheduler.policy") == nullptr)
    cfg.set("scheduler.policy", caf::atom("sharing"));
  // One actor thread (CAF's default is at least 4). The scheduler is a single
  // actor either way, and every other actor here does little per message:
  // more threads only hand messages from thread to thread. Measured on 2
  // cores: with 4 threads a task cost the master about 10 context switches
  // and W1 ran at 0.71 of the spawn rate; with 1, about 5 and 0.75, and W6
  // (200 workers) kept its latency. A worker process's actors run on its
  // network thread instead (see spawn_worker_node). --scheduler.max-threads=N
  // overrides it.
  if (caf::get_if(&caf::content(cfg), "scheduler.max-threads") == nullptr)
    cfg.set("scheduler.max-threads", size_t{1});
  // With one thread, an actor must not keep it for as long as its mailbox
  // refills (CAF's default): under a flood of submissions the scheduler would
  // starve the cluster endpoint, and with it the workers' heartbeats.
  if (caf::get_if(&caf::content(cfg), "scheduler.max-throughput") == nullptr)
    cfg.set("scheduler.max-throughput", size_t{100});
  // Messages from other nodes are deserialized on the network thread itself
  // instead of being handed to a pool thread first (CAF's default is one on
  // small machines, up to four): one thread hand-off less per message.
  if (caf::get_if(&caf::content(cfg), "middleman.workers") == nullptr)
    cfg.set("middleman.workers", size_t{0});
  // Middleman heartbeats are off by default in CAF 0.17: without them a
  // frozen peer keeps its connection "up" forever.
  cfg.set("middleman.heartbeat-interval", cfg.heartbeat_interval);
  cfg.set("middleman.connection-timeout", cfg.heartbeat_timeout);
  // Nodes of different protocol versions refuse each other at the handshake.
  cfg.set("middleman.app-identifiers",
          std::vector<std::string>{
            fmt::format("taskmaster/{}", protocol_version)});
  cfg.add_message_types<caf::id_block::taskmaster>();
  cfg.load<caf::io::middleman>();
  if (cfg.tls()) {
    // Mutual TLS: both sides present a certificate signed by the cluster CA.
    cfg.openssl_certificate = cfg.tls_cert;
    cfg.openssl_key = cfg.tls_key;
    cfg.openssl_cafile = cfg.tls_ca;
    cfg.load<caf::openssl::manager>();
  }
  for (const auto& w : cfg.warnings())
    log::warn("{}", w);
}

worker_options make_worker_options(const taskmaster_config& cfg,
                                   orphan_guard* guard) {
  worker_options o;
  o.info.id = cfg.effective_worker_id();
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  o.info.host = host;
  o.info.slots = cfg.effective_slots();
  o.info.labels = cfg.worker_labels;
  o.info.incarnation = std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32);
  o.master_host = cfg.master_host;
  o.master_port = cfg.master_port;
  o.tls = cfg.tls();
  o.reconnect = core::retry_policy{millis(cfg.reconnect_backoff),
                                   millis(cfg.reconnect_backoff_max)};
  o.runner.output_tail_bytes = cfg.output_tail_bytes;
  o.runner.kill_grace = std::chrono::milliseconds(millis(cfg.kill_grace));
  o.runner.run_as = cfg.run_as;
  // Task environments never carry the daemon's own secrets.
  o.runner.hidden_env = {"TASKMASTER_API_TOKEN"};
  o.runner.guard = guard;
  return o;
}

/// Asks `worker` to stop gracefully and waits for it. The worker bounds its
/// own stop (grace, then hand-back, then a bounded wait for acknowledgements)
/// except while it holds finished results for an unreachable master; a second
/// signal ends that wait (see wait_for_shutdown_signal). The question is asked
/// again after each timeout, so a worker actor that died meanwhile (its
/// promise then answers nobody) ends the wait at once.
void stop_worker(caf::actor_system& sys, const worker_node_actor& worker,
                 caf::timespan grace) {
  caf::scoped_actor self{sys};
  for (auto asking = true; asking;) {
    asking = false;
    self
      ->request(worker, grace + std::chrono::seconds(10), shutdown_atom::value,
                static_cast<uint32_t>(millis(grace)))
      .receive([](bool) {},
               [&](caf::error& err) {
                 if (err == caf::sec::request_timeout) {
                   asking = true;
                   return;
                 }
                 log::warn("the worker did not stop cleanly: {}",
                           caf::to_string(err));
               });
  }
  self->send_exit(worker, caf::exit_reason::user_shutdown);
}

int run_master(taskmaster_config& cfg, bool with_worker, orphan_guard* guard) {
  std::string error;
  std::shared_ptr<store::task_journal> journal = store::task_journal::open(
    cfg.data_dir, store::journal_options{
      cfg.journal_fsync,
      std::chrono::duration_cast<std::chrono::milliseconds>(
        cfg.journal_group_delay)}, error);
  if (!journal) {
    fmt::print(stderr, "taskmasterd: {}\n", error);
    return 1;
  }
  auto restored = journal->load();
  configure_actor_system(cfg);
  caf::actor_system sys{cfg};
  auto metrics = std::make_shared<task_metrics>();
  auto monitor_handle = sys.spawn(monitor, metrics);
  scheduler_options sched_opts;
  sched_opts.settings = cfg.scheduler_settings();
  // Its own worker dies with it, and the results it holds with it.
  sched_opts.answers_wait_for_disk = with_worker;
  sched_opts.heartbeat_interval_ms = static_cast<uint32_t>(
    millis(cfg.heartbeat_interval));
  auto scheduler_handle = sys.spawn(scheduler, sched_opts, journal,
                                    std::move(restored), monitor_handle);
  auto endpoint = sys.spawn(cluster_endpoint, scheduler_handle);
  // Stops the actors, then closes the journal, before the actor system goes
  // (made after the journal, it would go first): the journal writer's last
  // callbacks send to the scheduler, and must find the system they send
  // through. Runs once, on every way out.
  bool actors_stopped = false;
  auto shutdown_actors = [&] {
    if (std::exchange(actors_stopped, true))
      return;
    caf::anon_send_exit(endpoint, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(scheduler_handle, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(monitor_handle, caf::exit_reason::user_shutdown);
    caf::scoped_actor self{sys};
    self->wait_for(endpoint, scheduler_handle, monitor_handle);
    journal->close();
  };
  struct on_exit {
    std::function<void()> run;
    ~on_exit() {
      run();
    }
  } stop_actors_on_exit{shutdown_actors};
  // With TLS configured the cluster port is published through the openssl
  // module only, so a plain connection cannot reach it.
  auto publish = [&](uint16_t port) {
    return cfg.tls() ? caf::openssl::publish(endpoint, port,
                                             cfg.cluster_bind.c_str(), true)
                     : sys.middleman().publish(endpoint, port,
                                               cfg.cluster_bind.c_str(), true);
  };
  // A standalone master's own worker needs no cluster port, so a second one
  // on this host (another --http-port and --data-dir) must not fail for the
  // default one being taken. It moves to any free port and keeps it in its
  // data directory, and takes that port first from then on: workers that
  // joined there find it again after a restart. A port the user chose is
  // kept or refused.
  bool may_move = with_worker && !cfg.cluster_port_chosen()
                  && cfg.cluster_port != 0;
  auto moved_before = may_move ? read_moved_port(cfg) : uint16_t{0};
  auto port_tried = moved_before != 0 ? moved_before : cfg.cluster_port;
  auto published = publish(port_tried);
  if (published && moved_before != 0)
    log::info("cluster port {}, as at the last start (kept in {}: delete it "
              "to go back to {})",
              *published, moved_port_file(cfg), cfg.cluster_port);
  if (!published && moved_before != 0) {
    published = publish(port_tried = cfg.cluster_port);
    if (published) {
      std::remove(moved_port_file(cfg).c_str());
      log::warn("cluster port {}, kept from the last start, is taken: back "
                "on {} (workers that joined on {} must be pointed here)",
                moved_before, cfg.cluster_port, moved_before);
    }
  }
  if (!published && may_move && port_taken(cfg.cluster_bind, port_tried)) {
    published = publish(port_tried = 0);
    if (published) {
      bool kept = keep_moved_port(cfg, *published);
      log::warn("cluster port {} is taken{}: workers connect to port {} "
                "instead ({}; --cluster-port picks one)",
                cfg.cluster_port,
                moved_before != 0
                  ? fmt::format(", and so is {}, kept from the last start",
                                moved_before)
                  : std::string{},
                *published,
                kept ? "kept in " + moved_port_file(cfg) + " for the next start"
                     : "it could not be kept in " + moved_port_file(cfg));
    }
  }
  if (!published) {
    fmt::print(stderr, "taskmasterd: cannot listen for workers on {}:{}: {}\n",
               cfg.cluster_bind,
               port_tried == 0 ? std::string{"any port"}
                               : std::to_string(port_tried),
               port_tried != 0 && port_taken(cfg.cluster_bind, port_tried)
                 ? std::string{"the port is in use (another taskmasterd? "
                               "--cluster-port picks another)"}
                 : sys.render(published.error()));
    shutdown_actors();
    return 1;
  }
  http::gateway_options gw;
  gw.bind = cfg.http_bind;
  gw.port = cfg.http_port;
  gw.threads = cfg.http_threads;
  gw.routes.max_body_bytes = cfg.max_body_bytes;
  gw.request_timeout = cfg.request_timeout;
  gw.routes.limits.max_batch_tasks = cfg.max_batch_tasks;
  gw.routes.limits.max_command_bytes = cfg.max_command_bytes;
  gw.routes.limits.max_name_bytes = cfg.max_name_bytes;
  gw.routes.limits.max_description_bytes = cfg.max_description_bytes;
  gw.routes.limits.max_labels = cfg.max_labels;
  gw.routes.limits.max_label_bytes = cfg.max_label_bytes;
  gw.routes.limits.max_env = cfg.max_env;
  gw.routes.limits.max_env_value_bytes = cfg.max_env_bytes;
  gw.routes.api_token = cfg.api_token;
  gw.routes.journal_problem = [journal] { return journal->failure(); };
  gw.routes.max_header_bytes = cfg.max_header_bytes;
  gw.websocket.max_message_bytes = cfg.ws_max_message_bytes;
  gw.websocket.max_sessions_per_address = cfg.ws_max_clients_per_address;
  gw.websocket.ping_interval
    = std::chrono::milliseconds(millis(cfg.ws_ping_interval));
  http::gateway gateway{sys, scheduler_handle, monitor_handle, metrics, gw};
  auto bound = gateway.start();
  if (auto* why = std::get_if<std::string>(&bound)) {
    fmt::print(stderr, "taskmasterd: {}\n", *why);
    shutdown_actors();
    return 1;
  }
  auto http_port = std::get<uint16_t>(bound);
  worker_node_actor local_worker;
  if (with_worker) {
    auto options = make_worker_options(cfg, guard);
    local_worker = spawn_worker_node(
      sys, options, caf::actor_cast<cluster_actor>(endpoint));
  }
  fmt::print("taskmasterd: {} ready\n"
             "  API and dashboard: http://{}:{}/{}\n"
             "  cluster port:      {}:{} (workers: --master={}:{}){}\n"
             "  data directory:    {}\n",
             with_worker ? "standalone master with a local worker" : "master",
             cfg.http_bind, http_port,
             cfg.api_token.empty() ? "" : " (API token required)",
             cfg.cluster_bind, *published, cfg.cluster_bind, *published,
             cfg.tls() ? " mutual TLS" : "", cfg.data_dir);
  std::fflush(stdout);
  auto sig = wait_for_shutdown_signal();
  log::info("{}: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  // The scheduler stops first: no more dispatching, submissions answered
  // 503, long polls answered now, the journal flushed. It keeps taking
  // results, so the local worker's last ones are journaled by the second
  // barrier.
  auto stop_scheduler = [&] {
    caf::scoped_actor self{sys};
    self->request(scheduler_handle, std::chrono::seconds(30),
                  shutdown_atom::value)
      .receive([](bool ok) {
                 if (!ok)
                   log::error("the journal could not be flushed");
               },
               [](caf::error& err) {
                 log::error("the scheduler did not stop cleanly: {}",
                            caf::to_string(err));
               });
  };
  stop_scheduler();
  if (local_worker) {
    stop_worker(sys, local_worker, cfg.shutdown_grace);
    stop_scheduler();
  }
  gateway.stop();
  shutdown_actors();
  // A supervisor should hear of it: what changed since is not on disk.
  if (auto failure = journal->failure(); !failure.empty()) {
    log::error("stopped; the journal had failed ({}): changes since then "
               "are lost",
               failure);
    return 1;
  }
  log::info("stopped");
  return 0;
}

int run_worker(taskmaster_config& cfg, orphan_guard* guard) {
  configure_actor_system(cfg);
  caf::actor_system sys{cfg};
  auto options = make_worker_options(cfg, guard);
  auto worker = spawn_worker_node(sys, options, cluster_actor{});
  fmt::print("taskmasterd: worker {} ({} slot{}{}{}) for the master at {}:{}\n",
             options.info.id, options.info.slots,
             options.info.slots == 1 ? "" : "s",
             options.info.labels.empty() ? "" : ", labels ",
             core::format_labels(options.info.labels), options.master_host,
             options.master_port);
  std::fflush(stdout);
  auto sig = wait_for_shutdown_signal();
  log::info("{}: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  stop_worker(sys, worker, cfg.shutdown_grace);
  log::info("stopped");
  return 0;
}

} // namespace

void tune_malloc() {
  // glibc gives each thread that allocates its own arena (up to 8 per core);
  // memory freed in one arena is not reused by another, which let a master
  // holding 200,000 queued tasks grow to twice the heap it used. A few
  // arenas are plenty for a daemon whose work is a handful of actors.
  ::mallopt(M_ARENA_MAX, static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
}

void open_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd)
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF)
      ::open("/dev/null", O_RDWR); // takes the lowest free number: fd
}

void block_shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

int run_daemon(taskmaster_config& cfg) {
  // A daemon that runs tasks starts its orphan guard first, while it is one
  // small thread (see orphan_guard).
  if (cfg.role == "master")
    return run_master(cfg, false, nullptr);
  orphan_guard guard;
  if (!guard.active())
    log::warn("no orphan guard ({}): if this daemon dies without stopping "
              "its tasks, their processes will run on",
              std::strerror(errno));
  if (cfg.role == "worker")
    return run_worker(cfg, &guard);
  return run_master(cfg, true, &guard);
}

} // namespace taskmaster
