// OpenSSL requires the calling thread's error queue to be empty before each
// TLS I/O call; SSL_get_error() reports whatever is queued. CAF 0.17's
// openssl module does not clear the queue after a failed handshake, so one
// rejected connection (a plain or wrongly certified worker) leaves an error
// behind on the middleman thread, and the next read on a healthy connection
// is taken as fatal: every good worker was disconnected each time a bad one
// knocked. These wrappers, exported from the executable so they take
// precedence over libssl's symbols for libcaf_openssl, clear the queue first
// and then call the real functions.
#include <dlfcn.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {

template <class Fn>
Fn next_symbol(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

} // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static auto real = next_symbol<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static auto real = next_symbol<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static auto real = next_symbol<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return real(ssl);
}

int SSL_connect(SSL* ssl) {
  static auto real = next_symbol<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(ssl);
}

} // extern "C"
