/* A bulk TLS client in C on OpenSSL, for bench/compare: the second client
 * beside Python's ssl module, with its own heap layout and its own read and
 * write sizes, so that a bulk figure that depends on either shows up as a
 * disagreement between the two.
 *
 *   bulk_client [-p | -n] HOST PORT send|recv BYTES
 *
 * send: write BYTES (256 KiB per SSL_write), then shut the socket for
 *       writing (a FIN, no close_notify: what the Python client does) and
 *       read to EOF, so that nothing unread (session tickets) turns the
 *       close into a reset.
 * recv: read BYTES (SSL_read into 256 KiB), then close.
 * -p    plain TCP, no TLS (for the plain relay).
 * -n    send a close_notify before the FIN or the close (for upstream's
 *       libtls build: OpenSSL 3 under libretls 3.7 takes a bare EOF as an
 *       error, and the engine exits 98).
 * TLS 1.2 or 1.3, whatever the server picks; no certificate check (the
 * key is a throw-away). Prints "PROTOCOL SUITE" on stdout after the
 * handshake; exits 1 on any failure, with a line on stderr. Everything is
 * bounded by alarm(2).
 * Built by bench/compare: gcc -O2 bulk_client.c -lssl -lcrypto
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define CHUNK (256 * 1024)
#define DEADLINE_S 120

static void die(const char *what)
{
  fprintf(stderr, "bulk_client: %s: %s\n", what, errno ? strerror(errno) : "failed");
  ERR_print_errors_fp(stderr);
  exit(1);
}

static int tcp_connect(const char *host, const char *port)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
  int fd = -1, one = 1;
  if (getaddrinfo(host, port, &hints, &res)) die("getaddrinfo");
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    if (!connect(fd, ai->ai_addr, ai->ai_addrlen)) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) die("connect");
  /* as curl and the Python client do */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int main(int argc, char **argv)
{
  int plain = 0, notify = 0, fd, sending;
  unsigned long long total, done = 0;
  SSL_CTX *ctx = 0;
  SSL *ssl = 0;
  char *buf;

  if (argc > 1 && (!strcmp(argv[1], "-p") || !strcmp(argv[1], "-n"))) {
    if (argv[1][1] == 'p') plain = 1; else notify = 1;
    argv++;
    argc--;
  }
  if (argc != 5 || (strcmp(argv[3], "send") && strcmp(argv[3], "recv"))) {
    fprintf(stderr, "usage: bulk_client [-p | -n] HOST PORT send|recv BYTES\n");
    return 100;
  }
  sending = !strcmp(argv[3], "send");
  total = strtoull(argv[4], 0, 10);
  alarm(DEADLINE_S);
  buf = calloc(1, CHUNK);
  if (!buf) die("calloc");
  fd = tcp_connect(argv[1], argv[2]);

  if (!plain) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, 0);
    ssl = SSL_new(ctx);
    if (!ssl || !SSL_set_fd(ssl, fd)) die("SSL_new");
    SSL_set_tlsext_host_name(ssl, "localhost");
    errno = 0;
    if (SSL_connect(ssl) != 1) die("handshake");
    printf("%s %s\n", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
  } else {
    printf("none none\n");
  }
  fflush(stdout);

  while (done < total) {
    size_t want = total - done < CHUNK ? (size_t)(total - done) : CHUNK;
    int n;
    errno = 0;
    if (plain)
      n = sending ? (int)write(fd, buf, want) : (int)read(fd, buf, want);
    else
      n = sending ? SSL_write(ssl, buf, (int)want) : SSL_read(ssl, buf, (int)want);
    if (n <= 0) die(sending ? "write" : "read (EOF before the end?)");
    done += (unsigned long long)n;
  }

  /* one SSL_shutdown sends the close_notify and returns without waiting */
  if (notify) SSL_shutdown(ssl);
  if (sending) {
    /* the end of the stream as a FIN; then wait for the far side's */
    if (shutdown(fd, SHUT_WR) < 0) die("shutdown");
    for (;;) {
      ssize_t n = read(fd, buf, CHUNK);
      if (n == 0) break;
      if (n < 0) {
        if (errno == ECONNRESET) break;
        die("read to EOF");
      }
    }
  }
  close(fd);
  if (ssl) SSL_free(ssl);
  if (ctx) SSL_CTX_free(ctx);
  free(buf);
  return 0;
}
