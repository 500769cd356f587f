/*
 * skiptrack_listen: subscribe to a SkipTrack publisher and print each message as key=value pairs, one line each.
 *
 *   gcc -O2 -std=c99 -Wall -o skiptrack_listen skiptrack_listen.c -lzmq -lm
 *   ./skiptrack_listen [--endpoint tcp://127.0.0.1:5556] [--topic head]... [--count N] [--timeout-ms MS]
 *   ./skiptrack_listen --decode < vectors.hex     (one hex-encoded message per line; prints each decoded)
 *
 * Exit status: 0 when done, 1 on a receive timeout, 2 on bad usage or a ZeroMQ error.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "skiptrack_bridge.h"

static void print_f64s(const char *key, const double *v, int n) {
    printf(" %s=", key);
    for (int i = 0; i < n; ++i) printf("%s%.17g", i ? "," : "", v[i]);
}

static void print_message(const skt_message *m) {
    if (m->kind == SKT_STATUS) {
        const skt_status *s = &m->status;
        printf("topic=status msg_seq=%llu publish_t_ns=%lld state=%u repeat=%d head_rate_hz=%.17g "
               "messages_sent=%llu messages_dropped=%llu\n",
               (unsigned long long)s->msg_seq, (long long)s->publish_t_ns, s->state, s->message_flags & SKT_REPEAT,
               s->head_rate_hz, (unsigned long long)s->messages_sent, (unsigned long long)s->messages_dropped);
        return;
    }
    const skt_pose *p = &m->pose;
    printf("topic=%s msg_seq=%llu seq=%llu t_ns=%lld publish_t_ns=%lld display_t_ns=%lld tracking_flags=%u "
           "repeat=%d exit_stage=%lu active_fraction=%.9g",
           m->topic, (unsigned long long)p->msg_seq, (unsigned long long)p->seq, (long long)p->t_ns,
           (long long)p->publish_t_ns, (long long)p->display_t_ns, p->tracking_flags, p->message_flags & SKT_REPEAT,
           (unsigned long)p->exit_stage, p->active_fraction);
    print_f64s("linear_velocity", p->linear_velocity, 3);
    print_f64s("angular_velocity", p->angular_velocity, 3);
    print_f64s("position", p->position, 3);
    print_f64s("orientation", p->orientation, 4);
    if (m->kind != SKT_HEAD) {
        for (int j = 0; j < SKT_JOINT_COUNT; ++j) {
            const skt_joint *q = &p->joints[j];
            printf(" joint%d=%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%u", j, q->position[0], q->position[1],
                   q->position[2], q->orientation[0], q->orientation[1], q->orientation[2], q->orientation[3],
                   q->radius, q->flags);
        }
    }
    printf("\n");
}

static int hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode hex lines from stdin (an empty line is an empty message); print one line per input line: the message,
 * or "error=CODE reason" when the decoder rejects it. */
static int decode_stdin(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        size_t len = (size_t)n / 2;
        uint8_t *buf = malloc(len ? len : 1);
        int bad = n % 2 != 0;
        for (size_t i = 0; !bad && i < len; ++i) {
            int hi = hex_value(line[2 * i]), lo = hex_value(line[2 * i + 1]);
            bad = hi < 0 || lo < 0;
            buf[i] = (uint8_t)(hi << 4 | lo);
        }
        if (bad) {
            fprintf(stderr, "not a hex line: %s\n", line);
            free(buf);
            free(line);
            return 2;
        }
        skt_message m;
        int err = skt_decode(buf, len, &m);
        if (err == SKT_OK)
            print_message(&m);
        else
            printf("error=%d %s\n", err, skt_error_string(err));
        free(buf);
    }
    free(line);
    return 0;
}

static int listen(const char *endpoint, const char **topics, int n_topics, long count, int timeout_ms) {
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    for (int i = 0; i < n_topics; ++i) zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i]) + 1);
    if (zmq_connect(sub, endpoint) != 0) {
        fprintf(stderr, "cannot connect to %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(sub);
        zmq_ctx_term(ctx);
        return 2;
    }
    int status = 0;
    uint8_t buf[2048];
    for (long seen = 0; count <= 0 || seen < count;) {
        int n = zmq_recv(sub, buf, sizeof buf, 0);
        if (n < 0) {
            fprintf(stderr, "no message within %d ms (%s)\n", timeout_ms, zmq_strerror(zmq_errno()));
            status = 1;
            break;
        }
        if (n > (int)sizeof buf) {
            fprintf(stderr, "skipping a %d-byte message: longer than any v1 message\n", n);
            continue;
        }
        skt_message m;
        int err = skt_decode(buf, (size_t)n, &m);
        if (err != SKT_OK) {
            fprintf(stderr, "skipping a message: %s\n", skt_error_string(err));
            continue;
        }
        print_message(&m);
        fflush(stdout);
        ++seen;
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return status;
}

int main(int argc, char **argv) {
    const char *endpoint = "tcp://127.0.0.1:5556";
    const char *topics[4] = {"head", "hand/left", "hand/right", "status"};
    const char *chosen[4];
    int n_chosen = 0;
    long count = 0;
    int timeout_ms = -1;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--decode")) return decode_stdin();
        if (i + 1 >= argc) {
            fprintf(stderr, "usage: %s [--decode] [--endpoint E] [--topic T]... [--count N] [--timeout-ms MS]\n",
                    argv[0]);
            return 2;
        }
        if (!strcmp(argv[i], "--endpoint"))
            endpoint = argv[++i];
        else if (!strcmp(argv[i], "--topic") && n_chosen < 4)
            chosen[n_chosen++] = argv[++i];
        else if (!strcmp(argv[i], "--count"))
            count = atol(argv[++i]);
        else if (!strcmp(argv[i], "--timeout-ms"))
            timeout_ms = atoi(argv[++i]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (n_chosen == 0) return listen(endpoint, topics, 4, count, timeout_ms);
    return listen(endpoint, chosen, n_chosen, count, timeout_ms);
}
