/*
 * delay: hold every packet of an NFQUEUE for a fixed time, then accept it.
 *
 * This kernel has no netem qdisc, so bench/netem emulates network latency
 * with an iptables rule (inside a private network namespace) that sends the
 * TCP packets on the loopback device to NFQUEUE, and this program, which
 * keeps each packet D microseconds after it arrived in the queue before it
 * returns the ACCEPT verdict. Packets are released in arrival order; since
 * every packet waits the same D, each one leaves D after it arrived,
 * independently of the others (the queue is a pipeline, not a serialiser).
 *
 * Usage: delay QUEUE_NUM DELAY_US
 * Prints "ready" on stdout once the queue is bound, then runs until SIGTERM
 * or SIGINT, when it prints the packet count and the achieved hold times
 * (mean and max overshoot past D) on stderr.
 *
 * Build: cc -O2 -o delay delay.c -lnetfilter_queue -lnfnetlink
 * (Debian: libnetfilter-queue-dev).
 */
#define _GNU_SOURCE
#include <arpa/inet.h> /* before the kernel headers */
#include <errno.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#define RING (1u << 16) /* packets held at once, at most */

struct held {
    uint32_t id;
    uint64_t due_ns;
};

static struct held ring[RING];
static unsigned head, tail; /* ring[head..tail) are held, oldest first */
static uint64_t delay_ns;
static volatile sig_atomic_t stop;
static uint64_t count, late_sum_ns, late_max_ns, dropped;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Called by nfq_handle_packet for each queued packet: remember it. */
static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg,
                     struct nfq_data *nfa, void *data)
{
    (void)msg;
    (void)data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (ph == NULL)
        return 0;
    uint32_t id = ntohl(ph->packet_id);
    if (tail - head == RING) { /* full: let it through undelayed */
        dropped++;
        return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
    }
    ring[tail % RING] = (struct held){id, now_ns() + delay_ns};
    tail++;
    return 0;
}

/* Accepts every held packet whose time has come. */
static void release_due(struct nfq_q_handle *qh)
{
    uint64_t now = now_ns();
    while (head != tail && ring[head % RING].due_ns <= now) {
        struct held *h = &ring[head % RING];
        uint64_t late = now - h->due_ns;
        late_sum_ns += late;
        if (late > late_max_ns)
            late_max_ns = late;
        count++;
        if (nfq_set_verdict(qh, h->id, NF_ACCEPT, 0, NULL) < 0)
            perror("nfq_set_verdict");
        head++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s QUEUE_NUM DELAY_US\n", argv[0]);
        return 2;
    }
    int qnum = atoi(argv[1]);
    delay_ns = (uint64_t)(atof(argv[2]) * 1000.0);

    /* Wake-ups exactly when asked: the default timer slack is 50 us. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct nfq_handle *h = nfq_open();
    if (h == NULL) {
        perror("nfq_open");
        return 1;
    }
    struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)qnum, on_packet, NULL);
    if (qh == NULL) {
        perror("nfq_create_queue");
        return 1;
    }
    /* Metadata only: the verdict needs the packet id, not the payload. */
    if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
        perror("nfq_set_mode");
        return 1;
    }
    nfq_set_queue_maxlen(qh, RING);
    int fd = nfq_fd(h);
    /* A large receive buffer so that bursts are not lost (ENOBUFS). */
    int rcvbuf = 8 << 20;
    nfnl_rcvbufsiz(nfq_nfnlh(h), rcvbuf);

    printf("ready\n");
    fflush(stdout);

    char buf[4096] __attribute__((aligned));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    while (!stop) {
        release_due(qh);
        struct timespec timeout, *tp = NULL;
        if (head != tail) {
            uint64_t due = ring[head % RING].due_ns, now = now_ns();
            uint64_t wait = due > now ? due - now : 0;
            timeout.tv_sec = (time_t)(wait / 1000000000u);
            timeout.tv_nsec = (long)(wait % 1000000000u);
            tp = &timeout;
        }
        int r = ppoll(&pfd, 1, tp, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            perror("ppoll");
            break;
        }
        if (r > 0 && (pfd.revents & POLLIN)) {
            /* Drain everything that is readable now. */
            for (;;) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0) {
                    if (errno == ENOBUFS) {
                        fprintf(stderr, "delay: queue overrun (ENOBUFS)\n");
                        continue;
                    }
                    break;
                }
                nfq_handle_packet(h, buf, (int)n);
            }
        }
    }
    /* Report, then let the rest through before leaving. */
    fprintf(stderr,
            "delay: %llu packets held %.1f us, released on average %.1f us late "
            "(max %.1f us), %llu passed undelayed (ring full)\n",
            (unsigned long long)count, (double)delay_ns / 1e3,
            count ? (double)late_sum_ns / (double)count / 1e3 : 0.0,
            (double)late_max_ns / 1e3, (unsigned long long)dropped);
    for (; head != tail; head++)
        nfq_set_verdict(qh, ring[head % RING].id, NF_ACCEPT, 0, NULL);
    nfq_destroy_queue(qh);
    nfq_close(h);
    return 0;
}
