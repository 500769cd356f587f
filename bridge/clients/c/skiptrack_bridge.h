/*
 * SkipTrack bridge, wire protocol v1: message layout and a decoder in plain C99 (header only).
 *
 * A message is one ZeroMQ frame: the topic in ASCII ("head", "hand/left", "hand/right", "status"), one NUL byte,
 * then the body below, little-endian, no padding. Subscribe with the topic *including* its NUL:
 *     zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "head", 5);
 * bridge/PROTOCOL.md is the reference; the offsets here are its table. The decoder reads fields byte by byte,
 * so it works on any host byte order and needs no packed structs.
 *
 * Conventions: OpenXR axes (right-handed, +Y up, -Z forward), metres, quaternions (x, y, z, w), times in
 * nanoseconds of the tracker's CLOCK_MONOTONIC.
 */
#ifndef SKIPTRACK_BRIDGE_H
#define SKIPTRACK_BRIDGE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SKT_VERSION 1
#define SKT_JOINT_COUNT 26
#define SKT_MAX_TOPIC 10 /* strlen("hand/right") */

/* Body sizes in bytes (after topic and NUL). */
#define SKT_POSE_HEADER_SIZE 104
#define SKT_HEAD_SIZE 160
#define SKT_HAND_SIZE 962
#define SKT_STATUS_SIZE 48

/* Pose header offsets (head and hand bodies). */
#define SKT_OFF_MAGIC 0            /* 4 bytes "SKTP" */
#define SKT_OFF_VERSION 4          /* u8 */
#define SKT_OFF_KIND 5             /* u8, enum skt_kind */
#define SKT_OFF_TRACKING_FLAGS 6   /* u8, XrSpaceLocationFlags (low 4 bits) */
#define SKT_OFF_MESSAGE_FLAGS 7    /* u8, bit 0 = repeat */
#define SKT_OFF_EXIT_STAGE 8       /* u32 */
#define SKT_OFF_ACTIVE_FRACTION 12 /* f32 in [0, 1] */
#define SKT_OFF_MSG_SEQ 16         /* u64, per topic */
#define SKT_OFF_SEQ 24             /* u64, the tracker's frame sequence number */
#define SKT_OFF_T_NS 32            /* i64, capture time */
#define SKT_OFF_PUBLISH_T_NS 40    /* i64 */
#define SKT_OFF_DISPLAY_T_NS 48    /* i64, predicted display time */
#define SKT_OFF_LINEAR_VELOCITY 56 /* 3 x f64, m/s */
#define SKT_OFF_ANGULAR_VELOCITY 80 /* 3 x f64, rad/s */
/* Head body. */
#define SKT_OFF_POSITION 104    /* 3 x f64, m */
#define SKT_OFF_ORIENTATION 128 /* 4 x f64, (x, y, z, w) */
/* Hand body. */
#define SKT_OFF_JOINTS 104      /* 26 x (3 x f32 position, 4 x f32 orientation, f32 radius) = 832 bytes */
#define SKT_OFF_JOINT_FLAGS 936 /* 26 x u8: 0x00, 0x03 (valid) or 0x0f (valid and tracked) */
/* Status body. */
#define SKT_OFF_STATUS_STATE 6             /* u8, enum skt_tracker_state */
#define SKT_OFF_STATUS_HEAD_RATE_HZ 8      /* f64 */
#define SKT_OFF_STATUS_MSG_SEQ 16          /* u64 */
#define SKT_OFF_STATUS_PUBLISH_T_NS 24     /* i64 */
#define SKT_OFF_STATUS_MESSAGES_SENT 32    /* u64 */
#define SKT_OFF_STATUS_MESSAGES_DROPPED 40 /* u64 */

enum skt_kind { SKT_HEAD = 1, SKT_HAND_LEFT = 2, SKT_HAND_RIGHT = 3, SKT_STATUS = 4 };
enum skt_tracker_state { SKT_STARTING = 0, SKT_TRACKING = 1, SKT_LOST = 2, SKT_STOPPING = 3 };
enum skt_location_flags { /* XrSpaceLocationFlags */
    SKT_ORIENTATION_VALID = 1, SKT_POSITION_VALID = 2, SKT_ORIENTATION_TRACKED = 4, SKT_POSITION_TRACKED = 8
};
#define SKT_REPEAT 0x01

enum skt_error {
    SKT_OK = 0,
    SKT_E_NO_TOPIC = -1,  /* no NUL within the first 11 bytes */
    SKT_E_TOPIC = -2,     /* unknown topic */
    SKT_E_SHORT = -3,     /* body shorter than magic + version + kind */
    SKT_E_MAGIC = -4,
    SKT_E_VERSION = -5,
    SKT_E_KIND = -6,      /* kind does not match the topic */
    SKT_E_LENGTH = -7,
    SKT_E_FLAGS = -8,     /* reserved bits set, or joint flags other than 0x00, 0x03, 0x0f */
    SKT_E_NONFINITE = -9,
    SKT_E_RANGE = -10     /* active fraction outside [0, 1], orientation not unit, unknown state, negative rate */
};

typedef struct {
    float position[3];
    float orientation[4];
    float radius;
    uint8_t flags;
} skt_joint;

typedef struct {
    uint8_t tracking_flags;
    uint8_t message_flags;
    uint32_t exit_stage;
    float active_fraction;
    uint64_t msg_seq;
    uint64_t seq;
    int64_t t_ns;
    int64_t publish_t_ns;
    int64_t display_t_ns;
    double linear_velocity[3];
    double angular_velocity[3];
    double position[3];    /* head: the head; hand: the wrist (joint 1) */
    double orientation[4]; /* (x, y, z, w) */
    skt_joint joints[SKT_JOINT_COUNT]; /* hands only */
} skt_pose;

typedef struct {
    uint8_t state;
    uint8_t message_flags;
    double head_rate_hz;
    uint64_t msg_seq;
    int64_t publish_t_ns;
    uint64_t messages_sent;
    uint64_t messages_dropped;
} skt_status;

typedef struct {
    int kind; /* enum skt_kind */
    char topic[SKT_MAX_TOPIC + 1];
    skt_pose pose;     /* SKT_HEAD, SKT_HAND_LEFT, SKT_HAND_RIGHT */
    skt_status status; /* SKT_STATUS */
} skt_message;

static const char *const skt_topics[5] = {"", "head", "hand/left", "hand/right", "status"};

static inline uint64_t skt_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
static inline uint32_t skt_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline int64_t skt_i64(const uint8_t *p) {
    uint64_t u = skt_u64(p);
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}
static inline double skt_f64(const uint8_t *p) {
    uint64_t u = skt_u64(p);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}
static inline float skt_f32(const uint8_t *p) {
    uint32_t u = skt_u32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline int skt_read_f64s(const uint8_t *p, double *out, int n) {
    for (int i = 0; i < n; ++i) {
        out[i] = skt_f64(p + 8 * i);
        if (!isfinite(out[i])) return SKT_E_NONFINITE;
    }
    return SKT_OK;
}

static inline const char *skt_error_string(int err) {
    switch (err) {
    case SKT_OK: return "ok";
    case SKT_E_NO_TOPIC: return "no NUL after the topic";
    case SKT_E_TOPIC: return "unknown topic";
    case SKT_E_SHORT: return "body too short";
    case SKT_E_MAGIC: return "bad magic";
    case SKT_E_VERSION: return "unsupported protocol version";
    case SKT_E_KIND: return "kind does not match topic";
    case SKT_E_LENGTH: return "wrong body length";
    case SKT_E_FLAGS: return "reserved or invalid flag bits";
    case SKT_E_NONFINITE: return "NaN or infinite value";
    case SKT_E_RANGE: return "value out of range";
    default: return "unknown error";
    }
}

static inline int skt_decode_status(const uint8_t *b, skt_message *out) {
    skt_status *s = &out->status;
    s->state = b[SKT_OFF_STATUS_STATE];
    s->message_flags = b[SKT_OFF_MESSAGE_FLAGS];
    s->head_rate_hz = skt_f64(b + SKT_OFF_STATUS_HEAD_RATE_HZ);
    s->msg_seq = skt_u64(b + SKT_OFF_STATUS_MSG_SEQ);
    s->publish_t_ns = skt_i64(b + SKT_OFF_STATUS_PUBLISH_T_NS);
    s->messages_sent = skt_u64(b + SKT_OFF_STATUS_MESSAGES_SENT);
    s->messages_dropped = skt_u64(b + SKT_OFF_STATUS_MESSAGES_DROPPED);
    if (s->message_flags & ~SKT_REPEAT) return SKT_E_FLAGS;
    if (s->state > SKT_STOPPING) return SKT_E_RANGE;
    if (!isfinite(s->head_rate_hz)) return SKT_E_NONFINITE;
    if (s->head_rate_hz < 0.0) return SKT_E_RANGE;
    return SKT_OK;
}

static inline int skt_decode_pose(const uint8_t *b, skt_message *out) {
    skt_pose *p = &out->pose;
    int err;
    p->tracking_flags = b[SKT_OFF_TRACKING_FLAGS];
    p->message_flags = b[SKT_OFF_MESSAGE_FLAGS];
    p->exit_stage = skt_u32(b + SKT_OFF_EXIT_STAGE);
    p->active_fraction = skt_f32(b + SKT_OFF_ACTIVE_FRACTION);
    p->msg_seq = skt_u64(b + SKT_OFF_MSG_SEQ);
    p->seq = skt_u64(b + SKT_OFF_SEQ);
    p->t_ns = skt_i64(b + SKT_OFF_T_NS);
    p->publish_t_ns = skt_i64(b + SKT_OFF_PUBLISH_T_NS);
    p->display_t_ns = skt_i64(b + SKT_OFF_DISPLAY_T_NS);
    if ((p->tracking_flags & ~0x0F) || (p->message_flags & ~SKT_REPEAT)) return SKT_E_FLAGS;
    if (!isfinite(p->active_fraction) || p->active_fraction < 0.0f || p->active_fraction > 1.0f) return SKT_E_RANGE;
    if ((err = skt_read_f64s(b + SKT_OFF_LINEAR_VELOCITY, p->linear_velocity, 3)) != SKT_OK) return err;
    if ((err = skt_read_f64s(b + SKT_OFF_ANGULAR_VELOCITY, p->angular_velocity, 3)) != SKT_OK) return err;
    if (out->kind == SKT_HEAD) {
        if ((err = skt_read_f64s(b + SKT_OFF_POSITION, p->position, 3)) != SKT_OK) return err;
        if ((err = skt_read_f64s(b + SKT_OFF_ORIENTATION, p->orientation, 4)) != SKT_OK) return err;
        double n = sqrt(p->orientation[0] * p->orientation[0] + p->orientation[1] * p->orientation[1] +
                        p->orientation[2] * p->orientation[2] + p->orientation[3] * p->orientation[3]);
        if (fabs(n - 1.0) > 1e-3) return SKT_E_RANGE;
        return SKT_OK;
    }
    for (int j = 0; j < SKT_JOINT_COUNT; ++j) {
        const uint8_t *q = b + SKT_OFF_JOINTS + 32 * j;
        skt_joint *joint = &p->joints[j];
        float values[8];
        for (int k = 0; k < 8; ++k) {
            values[k] = skt_f32(q + 4 * k);
            if (!isfinite(values[k])) return SKT_E_NONFINITE;
        }
        memcpy(joint->position, values, sizeof joint->position);
        memcpy(joint->orientation, values + 3, sizeof joint->orientation);
        joint->radius = values[7];
        joint->flags = b[SKT_OFF_JOINT_FLAGS + j];
        if (joint->flags != 0x00 && joint->flags != 0x03 && joint->flags != 0x0F) return SKT_E_FLAGS;
    }
    for (int k = 0; k < 3; ++k) p->position[k] = p->joints[1].position[k];
    for (int k = 0; k < 4; ++k) p->orientation[k] = p->joints[1].orientation[k];
    return SKT_OK;
}

/* Decode one frame (topic, NUL, body) into *out. Returns SKT_OK or a negative enum skt_error. */
static inline int skt_decode(const uint8_t *data, size_t len, skt_message *out) {
    size_t cut = 0;
    while (cut < len && cut <= SKT_MAX_TOPIC && data[cut] != 0) ++cut;
    if (cut >= len || cut > SKT_MAX_TOPIC) return SKT_E_NO_TOPIC;
    memset(out, 0, sizeof *out);
    for (int k = SKT_HEAD; k <= SKT_STATUS; ++k) {
        if (strlen(skt_topics[k]) == cut && memcmp(data, skt_topics[k], cut) == 0) out->kind = k;
    }
    if (out->kind == 0) return SKT_E_TOPIC;
    memcpy(out->topic, data, cut);
    const uint8_t *b = data + cut + 1;
    size_t n = len - cut - 1;
    if (n < 6) return SKT_E_SHORT;
    if (memcmp(b, "SKTP", 4) != 0) return SKT_E_MAGIC;
    if (b[SKT_OFF_VERSION] != SKT_VERSION) return SKT_E_VERSION;
    if (b[SKT_OFF_KIND] != out->kind) return SKT_E_KIND;
    size_t expected = out->kind == SKT_HEAD ? SKT_HEAD_SIZE : out->kind == SKT_STATUS ? SKT_STATUS_SIZE : SKT_HAND_SIZE;
    if (n != expected) return SKT_E_LENGTH;
    return out->kind == SKT_STATUS ? skt_decode_status(b, out) : skt_decode_pose(b, out);
}

#endif /* SKIPTRACK_BRIDGE_H */
