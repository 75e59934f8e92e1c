#ifndef HEARTBEAT_CRDKAFKA_SHIM_H
#define HEARTBEAT_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>

/* rd_kafka_producev and its RD_KAFKA_V_* macros are variadic and not imported by Swift. */
static inline rd_kafka_resp_err_t heartbeat_kafka_produce(rd_kafka_t *rk, const char *topic,
                                                          const void *key, size_t key_len,
                                                          const void *value, size_t value_len,
                                                          void *opaque) {
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}
#endif
