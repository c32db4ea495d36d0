/* clockshift: an LD_PRELOAD shim that adds an offset to CLOCK_REALTIME, and to nothing else.
 *
 * The offset (signed ns, decimal) is read from the file named by $CLOCKSHIFT_FILE, again at
 * most every 10 ms of CLOCK_MONOTONIC, so writing the file steps the wall clock of a running
 * process the way an NTP step does. CLOCK_MONOTONIC (and BOOTTIME) stay untouched, as on a
 * real host; a missing or unreadable file keeps the offset last read (0 at first).
 * Built by bench/clock_trial at run time: gcc -shared -fPIC -O2 -o clockshift.so clockshift.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#define NS_PER_S 1000000000LL
#define REREAD_NS 10000000LL

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static long long offset_ns;            /* the node's threads race on these benignly: 64-bit */
static long long read_at_ns = -1;      /* stores are atomic on x86-64, and any value is valid */

static clock_gettime_fn real_fn(void) {
    if (!real_clock_gettime)
        real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    return real_clock_gettime;
}

static long long current_offset_ns(void) {
    struct timespec mono;
    if (real_fn()(CLOCK_MONOTONIC, &mono) != 0)
        return offset_ns;
    long long now = mono.tv_sec * NS_PER_S + mono.tv_nsec;
    if (read_at_ns < 0 || now - read_at_ns >= REREAD_NS) {
        const char *path = getenv("CLOCKSHIFT_FILE");
        FILE *f = path ? fopen(path, "r") : NULL;
        if (f) {
            long long value;
            if (fscanf(f, "%lld", &value) == 1)
                offset_ns = value;
            fclose(f);
        }
        read_at_ns = now;
    }
    return offset_ns;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int rc = real_fn()(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        long long t = ts->tv_sec * NS_PER_S + ts->tv_nsec + current_offset_ns();
        ts->tv_sec = t / NS_PER_S;
        ts->tv_nsec = t % NS_PER_S;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
