/* What plain C gets on this machine: the ceiling the Cython engines are judged against.
 *
 * One sender thread (send, sendmmsg, or sendmsg with UDP_SEGMENT) and one receiver thread
 * (recvmmsg with UDP_GRO, splitting coalesced buffers, napping 50 us between empty reads
 * with the kernel's default 50 us timer slack, like udpbench's receiver) on a loopback
 * socket pair. No header checks beyond counting:
 * this is the floor of per-datagram work. Prints one JSON object.
 *
 * It asks the kernel for what udpbench asks for, so that the ratio judges udpbench's own
 * code and not its choice of kernel features: the receiving socket has the server's 8 MiB
 * buffer, kernel receive timestamps (SO_TIMESTAMPNS, which udpbench needs for delay) and
 * drop counts (SO_RXQ_OVFL); a GSO send carries as many segments as udpbench's (up to 128
 * and 65,000 bytes, or 64 on kernels before 6.x). See docs/decisions.md.
 *
 *   cc -O2 -pthread -o c_reference c_reference.c
 *   ./c_reference mmsg 1472 3
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define VLEN 64
#ifndef SO_RXQ_OVFL
#define SO_RXQ_OVFL 40
#endif
#define GSO_SEGMENTS 128      /* UDP_MAX_SEGMENTS since Linux 6.x; 64 before */
#define OLD_GSO_SEGMENTS 64
#define GSO_MAX_BYTES 65000
#define RXBUF 65536

static volatile int stop_rx;
static uint64_t delivered;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void *receive(void *arg) {
    int fd = *(int *)arg;
    static char bufs[VLEN][RXBUF];
    static char ctrl[VLEN][128];  /* timestamp, drop count and GRO size: 80 bytes */
    struct mmsghdr msgs[VLEN];
    struct iovec iovs[VLEN];
    struct timespec nap = {0, 50000};
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < VLEN; i++) {
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = RXBUF;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (!stop_rx) {
        for (int i = 0; i < VLEN; i++) {
            msgs[i].msg_hdr.msg_control = ctrl[i];
            msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
        }
        int got = recvmmsg(fd, msgs, VLEN, MSG_DONTWAIT, NULL);
        if (got <= 0) {
            nanosleep(&nap, NULL);
            continue;
        }
        for (int i = 0; i < got; i++) {
            unsigned len = msgs[i].msg_len, seg = len;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
                if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                    int g;
                    memcpy(&g, CMSG_DATA(c), sizeof g);
                    if (g > 0) seg = g;
                }
            delivered += seg ? (len + seg - 1) / seg : 1;
        }
        if (got < VLEN) nanosleep(&nap, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s send|mmsg|gso SIZE SECONDS\n", argv[0]);
        return 2;
    }
    const char *engine = argv[1];
    int size = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int batch = 1, one = 1, bufsize = 8 << 20;
    if (!strcmp(engine, "mmsg")) batch = VLEN;
    if (!strcmp(engine, "gso")) batch = GSO_MAX_BYTES / size < GSO_SEGMENTS ? GSO_MAX_BYTES / size : GSO_SEGMENTS;
    if (batch < 1 || size < 1 || size > 65507 || seconds <= 0 || seconds > 60) return 2;

    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)}, b = a;
    socklen_t al = sizeof a;
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    setsockopt(rx, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize);
    setsockopt(rx, SOL_UDP, UDP_GRO, &one, sizeof one);
    setsockopt(rx, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    setsockopt(rx, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    setsockopt(tx, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
    if (bind(rx, (void *)&a, sizeof a) || getsockname(rx, (void *)&a, &al)) return perror("rx"), 1;
    if (bind(tx, (void *)&b, sizeof b) || connect(tx, (void *)&a, sizeof a)) return perror("tx"), 1;

    pthread_t thread;
    pthread_create(&thread, NULL, receive, &rx);
    char *data = calloc(batch, size);
    struct mmsghdr msgs[VLEN];
    struct iovec iovs[VLEN];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < batch && i < VLEN; i++) {  /* sendmmsg's messages; GSO uses one */
        iovs[i].iov_base = data + i * size;
        iovs[i].iov_len = size;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    char ctrl[CMSG_SPACE(sizeof(uint16_t))] = {0};
    struct iovec giov = {data, (size_t)batch * size};
    struct msghdr gmsg = {.msg_iov = &giov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
    int gso_batch = batch;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&gmsg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t gso = size;
    memcpy(CMSG_DATA(cm), &gso, sizeof gso);

    uint64_t sent = 0, seq = 0, errors = 0, t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9), t;
    while ((t = now_ns()) < end) {
        int r;
        int n = engine[0] == 'g' ? gso_batch : batch;
        for (int i = 0; i < n; i++) memcpy(data + i * size + (size >= 24 ? 16 : 0), &seq, 8), seq++;
        if (batch == 1) r = send(tx, data, size, 0) < 0 ? -1 : 1;
        else if (engine[0] == 'm') r = sendmmsg(tx, msgs, batch, 0);
        else r = sendmsg(tx, &gmsg, 0) < 0 ? -1 : gso_batch;
        if (r > 0) sent += r;
        else if (gso_batch > OLD_GSO_SEGMENTS && sent == 0 && errno == EINVAL) {
            /* An older kernel takes at most 64 segments per send, as udpbench finds too. */
            gso_batch = OLD_GSO_SEGMENTS;
            giov.iov_len = (size_t)gso_batch * size;
        } else errors++;
    }
    double elapsed = (now_ns() - t0) / 1e9;
    usleep(200000);  /* let the receiver drain */
    stop_rx = 1;
    pthread_join(thread, NULL);
    printf("{\"engine\": \"%s\", \"size\": %d, \"sent\": %llu, \"delivered\": %llu, \"errors\": %llu, \"seconds\": %.6f}\n",
           engine, size, (unsigned long long)sent, (unsigned long long)delivered, (unsigned long long)errors, elapsed);
    return 0;
}
