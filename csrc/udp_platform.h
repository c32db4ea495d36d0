/*
 * Platform layer of aeronpy._udp: batched datagram receive/send over a non-blocking IPv4 or
 * IPv6 socket that Python's socket module created (so WSAStartup, bind and socket options stay
 * portable Python).
 *
 * On Linux the batch calls use recvmmsg/sendmmsg (one system call per batch). Everywhere
 * (and on Linux when use_mmsg == 0, so the fallback is tested there too) a portable loop of
 * recvfrom/sendto does the same job. Every error is classified and counted in
 * udp_counters; nothing here raises or blocks (except udp_wait_readable, by request).
 */
#ifndef AERONPY_UDP_PLATFORM_H
#define AERONPY_UDP_PLATFORM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#  ifndef _WIN32_WINNT
#    define _WIN32_WINNT 0x0600   /* WSAPoll: Windows Vista and later */
#  endif
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <winsock2.h>
#  include <ws2tcpip.h>
typedef SOCKET udp_sock_t;
#  define UDP_LAST_ERROR() WSAGetLastError()
#  define UDP_ERR_WOULD_BLOCK(e) ((e) == WSAEWOULDBLOCK)
#  define UDP_ERR_CONN_REFUSED(e) ((e) == WSAECONNRESET || (e) == WSAECONNREFUSED)
#  define UDP_ERR_NOBUFS(e) ((e) == WSAENOBUFS)
#  define UDP_ERR_INTR(e) ((e) == WSAEINTR)
#  define UDP_ERR_MSGSIZE(e) ((e) == WSAEMSGSIZE)
typedef int udp_socklen_t;
#else
#  include <errno.h>
#  include <poll.h>
#  include <sys/types.h>
#  include <sys/socket.h>
#  include <netinet/in.h>
#  include <arpa/inet.h>
#  include <sys/uio.h>
typedef int udp_sock_t;
#  define UDP_LAST_ERROR() errno
#  define UDP_ERR_WOULD_BLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)
#  define UDP_ERR_CONN_REFUSED(e) ((e) == ECONNREFUSED)
#  define UDP_ERR_NOBUFS(e) ((e) == ENOBUFS || (e) == ENOMEM)
#  define UDP_ERR_INTR(e) ((e) == EINTR)
#  define UDP_ERR_MSGSIZE(e) ((e) == EMSGSIZE)
typedef socklen_t udp_socklen_t;
#endif

#ifdef __linux__
#  define UDP_HAVE_MMSG 1
#else
#  define UDP_HAVE_MMSG 0
#endif

/* Bounded retries of a call interrupted by a signal (EINTR) or hit by a stale ICMP error. */
#define UDP_RETRY_MAX 8

typedef struct udp_counters {
    uint64_t datagrams_in;
    uint64_t bytes_in;
    uint64_t datagrams_out;
    uint64_t bytes_out;
    uint64_t send_would_block;  /* datagram dropped: socket send buffer full (EAGAIN) */
    uint64_t conn_refused;      /* ICMP port unreachable reported (ECONNREFUSED / WSAECONNRESET) */
    uint64_t nobufs;            /* datagram dropped: kernel out of buffers (ENOBUFS) */
    uint64_t truncated;         /* received datagram larger than a slot: dropped */
    uint64_t oversize_out;      /* datagram larger than a send slot: refused before sending */
    uint64_t other_errors;      /* anything else: counted, never raised */
    uint64_t frames_coalesced;  /* frames appended to a datagram already queued to the same peer */
} udp_counters;

/* Preallocated arena of `capacity` slots of `slot_bytes` each, with per-slot metadata. */
typedef struct udp_batch {
    int capacity;
    int slot_bytes;
    int count;                  /* queued datagrams (send batches only) */
    unsigned char *arena;
    int *lens;                  /* datagram length per slot; -1 when truncated */
    /* Peer key per slot. IPv4: the address key itself, (ipv4 host order << 16) | port.
     * IPv6: a 64-bit digest of the address (udp_digest6), compared before the address. */
    uint64_t *keys;
#if UDP_HAVE_MMSG
    struct mmsghdr *msgs;
    struct iovec *iovs;
#endif
    union udp_addr *addrs;
    int family;                 /* AF_INET or AF_INET6: the socket's, fixed at init */
    int addr_len;               /* sizeof the family's sockaddr */
} udp_batch;

/* One peer address of either family (one slot's source or destination). */
typedef union udp_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} udp_addr;

/* An IPv6 peer crosses into Python as the bytes of its address key: a marker byte (1, so the
 * key, read big-endian, is above every IPv4 key, which fits in 48 bits), the 16 address
 * bytes, then the port (big-endian). Scoped (link-local) addresses are refused earlier. */
#define UDP_KEY6_BYTES 19

static uint64_t udp_key_of(const struct sockaddr_in *a) {
    return ((uint64_t)ntohl(a->sin_addr.s_addr) << 16) | (uint64_t)ntohs(a->sin_port);
}

static void udp_addr_of(uint64_t key, struct sockaddr_in *a) {
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)(key & 0xFFFFu));
    a->sin_addr.s_addr = htonl((uint32_t)(key >> 16));
}

/* FNV-1a over the address and port: a cheap first compare for coalescing frames to a peer. */
static uint64_t udp_digest6(const struct sockaddr_in6 *a) {
    const unsigned char *p = (const unsigned char *)&a->sin6_addr;
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 16; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    h ^= (uint64_t)a->sin6_port; h *= 1099511628211ULL;
    return h;
}

static uint64_t udp_addr_digest(const udp_addr *a) { return udp_digest6(&a->v6); }

static int udp_same6(const struct sockaddr_in6 *a, const struct sockaddr_in6 *b) {
    return a->sin6_port == b->sin6_port &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
}

static void udp_key6_bytes(const udp_batch *b, int i, unsigned char *out) {
    const struct sockaddr_in6 *a = &b->addrs[i].v6;
    out[0] = 1;
    memcpy(out + 1, &a->sin6_addr, 16);
    memcpy(out + 17, &a->sin6_port, 2);      /* network order is big-endian already */
}

/* Fill `a` from the UDP_KEY6_BYTES bytes of an IPv6 address key; -1 if they are not one. */
static int udp_addr6_of_bytes(const unsigned char *k, udp_addr *a) {
    if (k[0] != 1) return -1;
    memset(a, 0, sizeof(*a));
    a->v6.sin6_family = AF_INET6;
    memcpy(&a->v6.sin6_addr, k + 1, 16);
    memcpy(&a->v6.sin6_port, k + 17, 2);
    return 0;
}

static void udp_batch_free(udp_batch *b) {
    free(b->arena); free(b->lens); free(b->keys); free(b->addrs);
#if UDP_HAVE_MMSG
    free(b->msgs); free(b->iovs);
#endif
    memset(b, 0, sizeof(*b));
}

/* Returns 0 on success, -1 when out of memory or given a bad argument (b is then left empty).
 * `family`: the socket's, AF_INET or AF_INET6. */
static int udp_batch_init(udp_batch *b, int capacity, int slot_bytes, int family) {
    memset(b, 0, sizeof(*b));
    if (capacity <= 0 || slot_bytes <= 0 || (family != AF_INET && family != AF_INET6)) return -1;
    b->family = family;
    b->addr_len = family == AF_INET6 ? (int)sizeof(struct sockaddr_in6) : (int)sizeof(struct sockaddr_in);
    b->capacity = capacity;
    b->slot_bytes = slot_bytes;
    b->arena = (unsigned char *)malloc((size_t)capacity * (size_t)slot_bytes);
    b->lens = (int *)calloc((size_t)capacity, sizeof(int));
    b->keys = (uint64_t *)calloc((size_t)capacity, sizeof(uint64_t));
    b->addrs = (udp_addr *)calloc((size_t)capacity, sizeof(udp_addr));
    if (!b->arena || !b->lens || !b->keys || !b->addrs) { udp_batch_free(b); return -1; }
#if UDP_HAVE_MMSG
    b->msgs = (struct mmsghdr *)calloc((size_t)capacity, sizeof(struct mmsghdr));
    b->iovs = (struct iovec *)calloc((size_t)capacity, sizeof(struct iovec));
    if (!b->msgs || !b->iovs) { udp_batch_free(b); return -1; }
#endif
    return 0;
}

static void udp_count_send_error(udp_counters *c, int e) {
    if (UDP_ERR_WOULD_BLOCK(e)) c->send_would_block++;
    else if (UDP_ERR_CONN_REFUSED(e)) c->conn_refused++;
    else if (UDP_ERR_NOBUFS(e)) c->nobufs++;
    else c->other_errors++;
}

/* Portable receive: up to `max` datagrams with recvfrom. Returns slots filled. A datagram
   dropped as truncated counts against `max` too (`taken`), as recvmmsg's batch does: a flood
   of oversize datagrams once kept one call looping for as long as it lasted. */
static int udp_recv_portable(udp_sock_t s, udp_batch *b, int max, udp_counters *c) {
    int n = 0, retries = 0, taken = 0;
    while (n < max && taken++ < max) {
        udp_addr *from = &b->addrs[n];
        udp_socklen_t from_len = (udp_socklen_t)sizeof(*from);
        char *slot = (char *)(b->arena + (size_t)n * (size_t)b->slot_bytes);
        /* recvfrom's length parameter is int on Windows, size_t elsewhere: slot_bytes is int. */
        long r = (long)recvfrom(s, slot, b->slot_bytes, 0, (struct sockaddr *)from, &from_len);
        if (r < 0) {
            int e = UDP_LAST_ERROR();
            if (UDP_ERR_WOULD_BLOCK(e)) break;
            if ((UDP_ERR_INTR(e) || UDP_ERR_CONN_REFUSED(e)) && retries++ < UDP_RETRY_MAX) {
                if (UDP_ERR_CONN_REFUSED(e)) c->conn_refused++;
                continue;
            }
            if (UDP_ERR_MSGSIZE(e)) {  /* Windows reports a truncated datagram this way */
                c->truncated++;
                continue;
            }
            if (!UDP_ERR_INTR(e) && !UDP_ERR_CONN_REFUSED(e)) c->other_errors++;
            break;
        }
        if (r >= b->slot_bytes) {      /* slot is one byte larger than the largest datagram */
            c->truncated++;
            continue;
        }
        b->lens[n] = (int)r;
        b->keys[n] = b->family == AF_INET6 ? udp_digest6(&from->v6) : udp_key_of(&from->v4);
        c->datagrams_in++;
        c->bytes_in += (uint64_t)r;
        n++;
    }
    return n;
}

/* Portable send of the queued batch with sendto. Returns datagrams sent. */
static int udp_send_portable(udp_sock_t s, udp_batch *b, udp_counters *c) {
    int sent = 0;
    for (int i = 0; i < b->count; i++) {
        const char *slot = (const char *)(b->arena + (size_t)i * (size_t)b->slot_bytes);
        int retries = 0;
        for (;;) {
            long r = (long)sendto(s, slot, b->lens[i], 0, &b->addrs[i].sa,
                                  (udp_socklen_t)b->addr_len);
            if (r >= 0) { sent++; c->datagrams_out++; c->bytes_out += (uint64_t)r; break; }
            int e = UDP_LAST_ERROR();
            if ((UDP_ERR_INTR(e) || UDP_ERR_CONN_REFUSED(e)) && retries++ < UDP_RETRY_MAX) {
                if (UDP_ERR_CONN_REFUSED(e)) c->conn_refused++;
                continue;
            }
            udp_count_send_error(c, e);
            break;
        }
    }
    b->count = 0;
    return sent;
}

#if UDP_HAVE_MMSG
static int udp_recv_mmsg(udp_sock_t s, udp_batch *b, int max, udp_counters *c) {
    for (int i = 0; i < max; i++) {
        b->iovs[i].iov_base = b->arena + (size_t)i * (size_t)b->slot_bytes;
        b->iovs[i].iov_len = (size_t)b->slot_bytes;
        memset(&b->msgs[i].msg_hdr, 0, sizeof(b->msgs[i].msg_hdr));
        b->msgs[i].msg_hdr.msg_name = &b->addrs[i];
        b->msgs[i].msg_hdr.msg_namelen = sizeof(udp_addr);
        b->msgs[i].msg_hdr.msg_iov = &b->iovs[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_len = 0;
    }
    int r = -1;
    for (int retries = 0; retries <= UDP_RETRY_MAX; retries++) {
        r = recvmmsg(s, b->msgs, (unsigned int)max, MSG_DONTWAIT, NULL);
        if (r >= 0) break;
        int e = errno;
        if (UDP_ERR_WOULD_BLOCK(e)) return 0;
        if (UDP_ERR_CONN_REFUSED(e)) { c->conn_refused++; continue; }
        if (UDP_ERR_INTR(e)) continue;
        c->other_errors++;
        return 0;
    }
    if (r < 0) return 0;
    for (int i = 0; i < r; i++) {
        unsigned int len = b->msgs[i].msg_len;
        if ((b->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || len >= (unsigned int)b->slot_bytes) {
            c->truncated++;
            b->lens[i] = -1;
            continue;
        }
        b->lens[i] = (int)len;
        b->keys[i] = b->family == AF_INET6 ? udp_digest6(&b->addrs[i].v6) : udp_key_of(&b->addrs[i].v4);
        c->datagrams_in++;
        c->bytes_in += len;
    }
    /* slots of truncated datagrams carry lens == -1; the caller skips them */
    return r;
}

static int udp_send_mmsg(udp_sock_t s, udp_batch *b, udp_counters *c) {
    int total = b->count, i = 0, sent = 0, retries = 0;
    for (int k = 0; k < total; k++) {
        b->iovs[k].iov_base = b->arena + (size_t)k * (size_t)b->slot_bytes;
        b->iovs[k].iov_len = (size_t)b->lens[k];
        memset(&b->msgs[k].msg_hdr, 0, sizeof(b->msgs[k].msg_hdr));
        b->msgs[k].msg_hdr.msg_name = &b->addrs[k];
        b->msgs[k].msg_hdr.msg_namelen = (socklen_t)b->addr_len;
        b->msgs[k].msg_hdr.msg_iov = &b->iovs[k];
        b->msgs[k].msg_hdr.msg_iovlen = 1;
    }
    while (i < total) {
        int r = sendmmsg(s, b->msgs + i, (unsigned int)(total - i), MSG_DONTWAIT);
        if (r > 0) {
            for (int k = i; k < i + r; k++) { c->datagrams_out++; c->bytes_out += b->msgs[k].msg_len; }
            i += r; sent += r;
            continue;
        }
        int e = errno;
        if ((UDP_ERR_INTR(e) || UDP_ERR_CONN_REFUSED(e)) && retries++ < UDP_RETRY_MAX) {
            if (UDP_ERR_CONN_REFUSED(e)) c->conn_refused++;
            continue;
        }
        udp_count_send_error(c, e);  /* the datagram at i failed: drop it, keep the rest */
        i++;
    }
    b->count = 0;
    return sent;
}
#endif

/* Receive up to `max` (<= capacity) datagrams. Returns the number of slots used; slots with
 * lens[i] == -1 held a truncated datagram and must be skipped. */
static int udp_recv_batch(udp_sock_t s, udp_batch *b, int max, int use_mmsg, udp_counters *c) {
    if (max > b->capacity) max = b->capacity;
    if (max <= 0) return 0;
#if UDP_HAVE_MMSG
    if (use_mmsg) return udp_recv_mmsg(s, b, max, c);
#else
    (void)use_mmsg;
#endif
    return udp_recv_portable(s, b, max, c);
}

static int udp_send_batch(udp_sock_t s, udp_batch *b, int use_mmsg, udp_counters *c) {
    if (b->count <= 0) return 0;
#if UDP_HAVE_MMSG
    if (use_mmsg) return udp_send_mmsg(s, b, c);
#else
    (void)use_mmsg;
#endif
    return udp_send_portable(s, b, c);
}

/* Copy one datagram (head then body, either may be empty) into the next free slot, to `to`
 * (an IPv6 socket's peer; its `key` is udp_digest6 of it) or, when `to` is NULL, to the IPv4
 * address key `key`. Returns 0, or -1 if it does not fit a slot, or -2 if the batch is full. */
static int udp_batch_queue(udp_batch *b, uint64_t key, const udp_addr *to,
                           const unsigned char *head, int head_len,
                           const unsigned char *body, int body_len) {
    if (b->count >= b->capacity) return -2;
    if (head_len < 0 || body_len < 0 || head_len + body_len >= b->slot_bytes) return -1;
    unsigned char *slot = b->arena + (size_t)b->count * (size_t)b->slot_bytes;
    if (head_len) memcpy(slot, head, (size_t)head_len);
    if (body_len) memcpy(slot + head_len, body, (size_t)body_len);
    b->lens[b->count] = head_len + body_len;
    b->keys[b->count] = key;
    if (to) b->addrs[b->count] = *to;
    else udp_addr_of(key, &b->addrs[b->count].v4);
    b->count++;
    return 0;
}

/* Queue a whole frame to `key`, appending it to the latest datagram already queued to that
 * peer when the result stays within `max_len` bytes (Aeron's batching of several frames per
 * datagram): a burst of small messages costs one datagram per MTU, not one per message.
 * Only the latest slot of a peer is extended, so frames to one peer keep their order.
 * Returns 0 when queued in a new slot, 1 when appended, -1 / -2 as udp_batch_queue. */
static int udp_batch_append_frame(udp_batch *b, uint64_t key, const udp_addr *to,
                                  const unsigned char *frame, int frame_len, int max_len,
                                  udp_counters *c) {
    for (int i = b->count - 1; i >= 0; i--) {
        if (b->keys[i] != key) continue;
        if (to && !udp_same6(&b->addrs[i].v6, &to->v6)) continue;   /* a digest collision */
        if (b->lens[i] >= 0 && frame_len >= 0 && b->lens[i] + frame_len <= max_len &&
                b->lens[i] + frame_len < b->slot_bytes) {
            memcpy(b->arena + (size_t)i * (size_t)b->slot_bytes + (size_t)b->lens[i], frame,
                   (size_t)frame_len);
            b->lens[i] += frame_len;
            c->frames_coalesced++;
            return 1;
        }
        break;  /* the latest datagram to this peer is full: start a new one after it */
    }
    return udp_batch_queue(b, key, to, frame, frame_len, NULL, 0);
}

/* Wait until the socket is readable or timeout_ns passes (<= 0: only check).
 * 1 readable, 0 timeout or signal, -1 error. Linux waits to the nanosecond (ppoll), so a
 * client that parks until its next scheduled send wakes on time; elsewhere the wait is
 * rounded up to whole milliseconds (poll / WSAPoll). */
static int udp_wait_readable(udp_sock_t s, long long timeout_ns) {
    if (timeout_ns < 0) timeout_ns = 0;
#ifdef _WIN32
    WSAPOLLFD p;
    p.fd = s; p.events = POLLRDNORM; p.revents = 0;
    long long ms = (timeout_ns + 999999LL) / 1000000LL;
    int r = WSAPoll(&p, 1, ms > 2000000000LL ? 2000000000 : (int)ms);
#else
    struct pollfd p;
    p.fd = s; p.events = POLLIN; p.revents = 0;
#  ifdef __linux__
    struct timespec ts;
    ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
    ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
    int r = ppoll(&p, 1, &ts, NULL);
#  else
    long long ms = (timeout_ns + 999999LL) / 1000000LL;
    int r = poll(&p, 1, ms > 2000000000LL ? 2000000000 : (int)ms);
#  endif
    if (r < 0 && errno == EINTR) return 0;
#endif
    if (r < 0) return -1;
    return r > 0 ? 1 : 0;
}

#endif /* AERONPY_UDP_PLATFORM_H */
