#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

/// Every default of every option, in one place. config/taskmasterd.ini lists
/// the same values and a test keeps the two in sync.
namespace taskmaster::defaults {

using namespace std::chrono_literals;

// -- roles and addresses
inline constexpr const char* role = "standalone";
inline constexpr const char* http_bind = "127.0.0.1";
inline constexpr uint16_t http_port = 8080;
inline constexpr const char* cluster_bind = "127.0.0.1";
inline constexpr uint16_t cluster_port = 50051;
inline constexpr const char* data_dir = "./taskmaster-data";
inline constexpr const char* master = "127.0.0.1:50051";

// -- worker
/// Empty: the host name.
inline constexpr const char* worker_id = "";
/// 0: the number of cores.
inline constexpr uint32_t slots = 0;
inline constexpr const char* labels = "";
inline constexpr auto kill_grace = 5s;
inline constexpr auto shutdown_grace = 30s;
inline constexpr size_t output_tail_bytes = 64 * 1024;
inline constexpr auto reconnect_backoff = 100ms;
inline constexpr auto reconnect_backoff_max = 5s;

// -- scheduling
inline constexpr auto aging_interval = 60s;
inline constexpr uint32_t max_retries = 0;
inline constexpr auto retry_backoff = 1s;
inline constexpr auto retry_backoff_max = 60s;
inline constexpr size_t max_queued = 1'000'000;
inline constexpr auto heartbeat_interval = 1s;
inline constexpr auto heartbeat_timeout = 5s;
inline constexpr auto reconcile_grace = 30s;
inline constexpr auto prefetch_budget = 100ms;
inline constexpr uint32_t max_lost_attempts = 5;
inline constexpr auto retention = 168h;
inline constexpr size_t retention_max_tasks = 100'000;
inline constexpr bool journal_fsync = false;
inline constexpr auto journal_group_delay = 10ms;

// -- HTTP
inline constexpr size_t max_body_bytes = 16 * 1024 * 1024;
inline constexpr size_t http_threads = 32;
inline constexpr auto request_timeout = 10s;
inline constexpr size_t max_batch_tasks = 10'000;
inline constexpr auto ws_ping_interval = 15s;

// -- security
inline constexpr const char* api_token = "";
inline constexpr const char* api_token_file = "";
inline constexpr const char* tls_ca = "";
inline constexpr const char* tls_cert = "";
inline constexpr const char* tls_key = "";
inline constexpr bool insecure = false;
inline constexpr const char* run_as = "";

// -- request limits
inline constexpr size_t max_command_bytes = 64 * 1024;
inline constexpr size_t max_name_bytes = 256;
inline constexpr size_t max_description_bytes = 4096;
inline constexpr size_t max_labels = 32;
inline constexpr size_t max_label_bytes = 256;
inline constexpr size_t max_env = 256;
inline constexpr size_t max_env_bytes = 32 * 1024;
inline constexpr size_t max_header_bytes = 16 * 1024;
inline constexpr size_t ws_max_message_bytes = 64 * 1024;
inline constexpr size_t ws_max_clients_per_address = 64;

} // namespace taskmaster::defaults
