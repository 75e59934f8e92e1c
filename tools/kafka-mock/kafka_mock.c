/*
 * kafka-mock: run librdkafka's in-memory mock Kafka cluster as a standalone
 * process so that other processes (the Swift services, kcat, tests) can use it.
 *
 * Build: cc -O2 -Wall -o kafka-mock kafka_mock.c -lrdkafka   (librdkafka-dev)
 *
 * Usage: kafka-mock [--brokers N] [--partitions N] [--topic NAME]...
 *   Creates topics device.online and device.offline (plus every --topic) with
 *   N partitions each, prints the bootstrap address alone on the first line of
 *   stdout, then runs until SIGTERM/SIGINT (exit 0).
 *   SIGUSR1: take every broker down (prints "brokers down").
 *   SIGUSR2: bring every broker back up (prints "brokers up").
 *   Wait for those lines rather than sleeping: with librdkafka 2.0.2 a mock
 *   command (set_down/set_up, cluster destroy) now and then takes ~1 s, when the
 *   mock thread is not woken before its 1 s poll timeout.
 *
 * The mock brokers listen on 127.0.0.1 on ephemeral ports only.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 64

static volatile sig_atomic_t stop_requested = 0;
static volatile sig_atomic_t down_requested = 0;
static volatile sig_atomic_t up_requested = 0;

static void on_signal(int sig) {
    switch (sig) {
    case SIGTERM:
    case SIGINT: stop_requested = 1; break;
    case SIGUSR1: down_requested = 1; break;
    case SIGUSR2: up_requested = 1; break;
    default: break;
    }
}

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [--brokers N] [--partitions N] [--topic NAME]...\n"
            "  defaults: 1 broker, 4 partitions, topics device.online and device.offline\n",
            prog);
}

static int parse_positive(const char *s, const char *what) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 10000) {
        fprintf(stderr, "kafka-mock: invalid %s: %s\n", what, s);
        exit(2);
    }
    return (int)v;
}

/* Send librdkafka log lines to stderr, leaving stdout for the bootstrap line. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    /* Expected: the owning handle has no bootstrap.servers (it never connects). */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers") != NULL)
        return;
    fprintf(stderr, "kafka-mock: rdkafka log %d %s: %s\n", level, fac, buf);
}

int main(int argc, char **argv) {
    int brokers = 1;
    int partitions = 4;
    const char *topics[MAX_TOPICS];
    int ntopics = 0;
    char errstr[512];

    topics[ntopics++] = "device.online";
    topics[ntopics++] = "device.offline";

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--brokers") == 0 || strcmp(a, "--partitions") == 0 ||
             strcmp(a, "--topic") == 0) && i + 1 >= argc) {
            fprintf(stderr, "kafka-mock: %s needs a value\n", a);
            usage(argv[0]);
            return 2;
        }
        if (strcmp(a, "--brokers") == 0) {
            brokers = parse_positive(argv[++i], "broker count");
        } else if (strcmp(a, "--partitions") == 0) {
            partitions = parse_positive(argv[++i], "partition count");
        } else if (strcmp(a, "--topic") == 0) {
            if (ntopics >= MAX_TOPICS) {
                fprintf(stderr, "kafka-mock: too many topics (max %d)\n", MAX_TOPICS);
                return 2;
            }
            topics[ntopics++] = argv[++i];
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(argv[0]);
            return 0;
        } else {
            fprintf(stderr, "kafka-mock: unknown argument: %s\n", a);
            usage(argv[0]);
            return 2;
        }
    }

    /* Install handlers before creating anything, so an early signal is not fatal. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Block our signals while librdkafka spawns its threads, so they inherit a
     * blocked mask and the signals are delivered to the main thread only. */
    sigset_t ours, old;
    sigemptyset(&ours);
    sigaddset(&ours, SIGTERM);
    sigaddset(&ours, SIGINT);
    sigaddset(&ours, SIGUSR1);
    sigaddset(&ours, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &ours, &old);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    /* The handle only owns the mock cluster; it never connects anywhere. */
    if (rd_kafka_conf_set(conf, "client.id", "kafka-mock", errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-mock: conf: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        fprintf(stderr, "kafka-mock: rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(conf); /* not owned by rk on failure */
        return 1;
    }

    rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(rk, brokers);
    if (mcluster == NULL) {
        fprintf(stderr, "kafka-mock: rd_kafka_mock_cluster_new failed\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    for (int t = 0; t < ntopics; t++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(mcluster, topics[t], partitions, brokers < 3 ? brokers : 3);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kafka-mock: create topic %s: %s\n", topics[t], rd_kafka_err2str(err));
            rd_kafka_mock_cluster_destroy(mcluster);
            rd_kafka_destroy(rk);
            return 1;
        }
    }

    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
    fflush(stdout);
    fprintf(stderr, "kafka-mock: %d broker(s), %d partition(s), %d topic(s), pid %ld\n", brokers,
            partitions, ntopics, (long)getpid());

    const struct timespec tick = {0, 50 * 1000 * 1000};
    while (!stop_requested) {
        if (down_requested) {
            down_requested = 0;
            for (int32_t id = 1; id <= brokers; id++) {
                rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_down(mcluster, id);
                if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
                    fprintf(stderr, "kafka-mock: set_down %d: %s\n", (int)id, rd_kafka_err2str(err));
            }
            printf("brokers down\n");
            fflush(stdout);
        }
        if (up_requested) {
            up_requested = 0;
            for (int32_t id = 1; id <= brokers; id++) {
                rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_up(mcluster, id);
                if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
                    fprintf(stderr, "kafka-mock: set_up %d: %s\n", (int)id, rd_kafka_err2str(err));
            }
            printf("brokers up\n");
            fflush(stdout);
        }
        nanosleep(&tick, NULL); /* EINTR on a signal just ends the tick early */
    }

    /* May take up to ~1 s (see above). */
    fprintf(stderr, "kafka-mock: shutting down\n");
    rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(rk);
    return 0;
}
