/* The start-up floor for bench/compare: a static program that does nothing
 * but what every engine does before its first byte of TLS, i.e. wait for
 * the client on fd 0. Spawned exactly as the engines are (socket as fds
 * 0/1, pipes as FDR/FDW, the same environment), waited for and killed the
 * same way, so its CPU is the price of fork/exec/exit of a static binary.
 * Built by bench/compare: gcc -static -O2 startup_floor.c */
#include <unistd.h>

int main(void)
{
  char c;
  return read(0, &c, 1) < 0;
}
