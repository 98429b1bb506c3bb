/*
 * aleph-agent: the guest's end of the node's control channel: a virtio-serial port
 * named org.aleph.ctl (qemu) and vsock port 1024 (Firecracker, whose guests have no
 * virtio-serial; one connection at a time, each a session). It exists for VMs restored from a snapshot: what the
 * snapshot froze must not leak into the new life, and a busybox shell cannot set the
 * clock to the nanosecond nor force the kernel to reseed its random generator (that
 * takes the RNDADDENTROPY and RNDRESEEDCRNG ioctls). Static, libc only; started by the
 * init, idle until the node writes to the port.
 *
 * Protocol, one line each way:
 *   time <seconds> <nanoseconds>   set CLOCK_REALTIME          -> "ok time"
 *   seed <hex, up to 256 bytes>    credit it to the kernel's pool, then reseed -> "ok seed"
 *   net <ip/prefix> <gw> [<ip6/prefix> <gw6>]   move eth0 to this life's address (a
 *                                  restored Firecracker guest has a new tap) -> "ok net"
 *   anything else                  -> "err <word> unknown"
 * A failed call answers "err <word> <errno>".
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "org.aleph.ctl"
#define MAX_SEED 256
#define VSOCK_PORT 1024

static int find_port(char *path, size_t size) {
  char name_file[128], name[64];
  for (int i = 0; i < 8; i++) {
    for (int j = 0; j < 8; j++) {
      snprintf(name_file, sizeof name_file, "/sys/class/virtio-ports/vport%dp%d/name", i, j);
      FILE *f = fopen(name_file, "r");
      if (!f) continue;
      int found = fgets(name, sizeof name, f) && strncmp(name, PORT_NAME, strlen(PORT_NAME)) == 0;
      fclose(f);
      if (found) {
        snprintf(path, size, "/dev/vport%dp%d", i, j);
        return 0;
      }
    }
  }
  return -1;
}

static void reply(int fd, const char *text) {
  size_t len = strlen(text);
  while (len > 0) {
    ssize_t n = write(fd, text, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text += n;
    len -= (size_t)n;
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Runs `busybox ip` with argv (NULL-terminated, argv[0] = "ip"); 0 when it exits 0. */
static int ip(char *const argv[]) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execv("/bin/busybox", argv);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) if (errno != EINTR) return -1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int move_address(char *args) {
  char *v4 = strtok(args, " "), *gw = strtok(NULL, " "), *v6 = strtok(NULL, " "), *gw6 = strtok(NULL, " ");
  if (!v4 || !gw || (v6 && !gw6)) return EINVAL;
  char *flush[] = {"ip", "addr", "flush", "dev", "eth0", "scope", "global", NULL};
  char *add[] = {"ip", "addr", "add", v4, "dev", "eth0", NULL};
  char *route[] = {"ip", "route", "replace", "default", "via", gw, NULL};
  char *add6[] = {"ip", "-6", "addr", "add", v6, "dev", "eth0", NULL};
  char *route6[] = {"ip", "-6", "route", "replace", "default", "via", gw6, "dev", "eth0", NULL};
  if (ip(flush) != 0 || ip(add) != 0 || ip(route) != 0) return EIO;
  if (v6 && (ip(add6) != 0 || ip(route6) != 0)) return EIO;
  return 0;
}

static void handle(int port, char *line) {
  char out[96];
  if (strncmp(line, "net ", 4) == 0) {
    int err = move_address(line + 4);
    if (err == 0) reply(port, "ok net\n");
    else { snprintf(out, sizeof out, "err net %d\n", err); reply(port, out); }
    return;
  }
  if (strncmp(line, "time ", 5) == 0) {
    struct timespec ts;
    char *end;
    ts.tv_sec = (time_t)strtoll(line + 5, &end, 10);
    ts.tv_nsec = strtol(end, NULL, 10);
    if (ts.tv_nsec < 0 || ts.tv_nsec >= 1000000000L) ts.tv_nsec = 0;
    if (clock_settime(CLOCK_REALTIME, &ts) == 0) reply(port, "ok time\n");
    else { snprintf(out, sizeof out, "err time %d\n", errno); reply(port, out); }
    return;
  }
  if (strncmp(line, "seed ", 5) == 0) {
    struct { struct rand_pool_info info; unsigned char bytes[MAX_SEED]; } pool;
    const char *hex = line + 5;
    size_t n = 0;
    while (n < MAX_SEED && hexval(hex[2 * n]) >= 0 && hexval(hex[2 * n + 1]) >= 0) {
      pool.bytes[n] = (unsigned char)(hexval(hex[2 * n]) << 4 | hexval(hex[2 * n + 1]));
      n++;
    }
    pool.info.entropy_count = (int)(n * 8);
    pool.info.buf_size = (int)n;
    int rnd = open("/dev/urandom", O_WRONLY);
    int ok = rnd >= 0 && n > 0 && ioctl(rnd, RNDADDENTROPY, &pool) == 0 && ioctl(rnd, RNDRESEEDCRNG) == 0;
    int err = errno;
    if (rnd >= 0) close(rnd);
    if (ok) reply(port, "ok seed\n");
    else { snprintf(out, sizeof out, "err seed %d\n", n == 0 ? EINVAL : err); reply(port, out); }
    return;
  }
  char word[16] = {0};
  sscanf(line, "%15s", word);
  snprintf(out, sizeof out, "err %s unknown\n", word);
  reply(port, out);
}

/* Answers the lines read from fd until it closes (vsock) or forever (serial: 0 means no host yet). */
static void serve(int fd, int serial) {
  char line[2 * MAX_SEED + 64];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, line + have, sizeof line - 1 - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!serial) return;
      usleep(100000); /* no host connected yet */
      continue;
    }
    have += (size_t)n;
    line[have] = '\0';
    char *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = '\0';
      handle(fd, line);
      size_t rest = have - (size_t)(nl + 1 - line);
      memmove(line, nl + 1, rest);
      have = rest;
      line[have] = '\0';
    }
    if (have == sizeof line - 1) have = 0; /* an over-long line: drop it */
  }
}

/* The vsock listener, in a child: the transport module may load after we start. */
static void serve_vsock(void) {
  if (fork() != 0) return;
  int s = -1;
  for (int tries = 0; s < 0; tries++) {
    s = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (s >= 0) {
      struct sockaddr_vm addr = {0};
      addr.svm_family = AF_VSOCK;
      addr.svm_cid = VMADDR_CID_ANY;
      addr.svm_port = VSOCK_PORT;
      if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 4) != 0) { close(s); s = -1; }
    }
    if (s < 0) {
      if (tries >= 100) _exit(0); /* no vsock in this VM */
      usleep(50000);
    }
  }
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) { if (errno != EINTR) usleep(100000); continue; }
    serve(c, 0);
    close(c);
  }
}

int main(void) {
  char path[64];
  serve_vsock();
  /* The port appears once virtio_console is loaded; give up quietly without one. */
  for (int tries = 0; find_port(path, sizeof path) != 0; tries++) {
    if (tries >= 100) return 0;
    usleep(50000);
  }
  int port = open(path, O_RDWR | O_NOCTTY);
  if (port < 0) return 1;
  serve(port, 1);
  return 0;
}
