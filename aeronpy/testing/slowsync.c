/* LD_PRELOAD shim of the slow-disk trial (bench/slowdisk_trial) and the soak's --slow-disks
 * (aeronpy/testing/slowdisk.py): fsync, fdatasync, msync(MS_SYNC) and sync_file_range
 * sleep a configured time, then do the real call (the shim only slows, it never fails a call).
 *
 * $SLOWSYNC_FILE names a control file of one line, re-read at most every 10 ms so the trial can
 * change it while the process runs:  "delay_us every_n jitter_us random"
 *   delay_us   sleep before an affected call (0: no call is slowed)
 *   every_n    affect every Nth call (1: every call); random = 1: each call with chance 1/N
 *   jitter_us  add a uniform 0..jitter_us to each affected call's sleep
 * A missing or unreadable file means no delay. $SLOWSYNC_SEED seeds the random choices.
 * $SLOWSYNC_STATS (optional) names a file this shim rewrites after every call with
 * "calls slowed injected_ns real_ns real_max_ns" (the real_* figures time the real calls alone).
 * Calls from any thread; the sleep happens where the real call would block (the GIL is already
 * released around os.fsync / os.fdatasync). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long long cfg_delay_us, cfg_every = 1, cfg_jitter_us, cfg_random, read_at_ns = -1;
static unsigned long long call_no, rng_state;
static long long st_calls, st_slowed, st_injected_ns, st_real_ns, st_real_max_ns;
static int stats_fd = -2;

static long long mono_ns(void) {
    struct timespec t;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &t);    /* not through any other preload */
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static unsigned long long next_random(void) {            /* xorshift64*, under the lock */
    if (rng_state == 0) {
        const char *s = getenv("SLOWSYNC_SEED");
        rng_state = (s ? strtoull(s, NULL, 10) : 0) * 2654435761ULL + (unsigned long long)getpid() + 1;
    }
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void refresh_locked(long long now) {
    if (read_at_ns >= 0 && now - read_at_ns < 10000000LL) return;
    read_at_ns = now;
    const char *p = getenv("SLOWSYNC_FILE");
    long long d = 0, n = 1, j = 0, r = 0;
    FILE *f = p ? fopen(p, "re") : NULL;
    if (f) {
        if (fscanf(f, "%lld %lld %lld %lld", &d, &n, &j, &r) < 1) d = 0;
        fclose(f);
    }
    cfg_delay_us = d > 0 ? d : 0; cfg_every = n > 0 ? n : 1;
    cfg_jitter_us = j > 0 ? j : 0; cfg_random = r;
}

/* how long this call sleeps, in ns (0: not slowed) */
static long long delay_for_call(void) {
    long long ns = 0;
    pthread_mutex_lock(&lock);
    refresh_locked(mono_ns());
    call_no++;
    if (cfg_delay_us > 0) {
        int hit = cfg_random ? (next_random() % (unsigned long long)cfg_every) == 0
                             : (call_no % (unsigned long long)cfg_every) == 0;
        if (hit) {
            ns = cfg_delay_us * 1000LL;
            if (cfg_jitter_us > 0) ns += (long long)(next_random() % (unsigned long long)(cfg_jitter_us + 1)) * 1000LL;
        }
    }
    pthread_mutex_unlock(&lock);
    return ns;
}

static void sleep_ns(long long ns) {
    struct timespec t = {ns / 1000000000LL, ns % 1000000000LL};
    while (nanosleep(&t, &t) != 0) {}                    /* EINTR: sleep the rest */
}

static void record(long long injected_ns, long long real_ns) {
    char line[160];
    pthread_mutex_lock(&lock);
    st_calls++;
    if (injected_ns) { st_slowed++; st_injected_ns += injected_ns; }
    st_real_ns += real_ns;
    if (real_ns > st_real_max_ns) st_real_max_ns = real_ns;
    if (stats_fd == -2) {
        const char *p = getenv("SLOWSYNC_STATS");
        stats_fd = p ? open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644) : -1;
    }
    if (stats_fd >= 0) {
        int n = snprintf(line, sizeof line, "%lld %lld %lld %lld %lld\n", st_calls, st_slowed,
                         st_injected_ns, st_real_ns, st_real_max_ns);
        if (pwrite(stats_fd, line, (size_t)n, 0) < 0) { /* statistics only */ }
    }
    pthread_mutex_unlock(&lock);
}

#define SLOWED(call)                                          \
    long long injected = delay_for_call();                    \
    if (injected) sleep_ns(injected);                         \
    long long t0 = mono_ns();                                 \
    int rc = call;                                            \
    record(injected, mono_ns() - t0);                         \
    return rc;

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    SLOWED(real(fd))
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    SLOWED(real(fd))
}

int msync(void *addr, size_t length, int flags) {
    static int (*real)(void *, size_t, int);
    if (!real) real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
    if (!(flags & MS_SYNC)) return real(addr, length, flags);
    SLOWED(real(addr, length, flags))
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    static int (*real)(int, off64_t, off64_t, unsigned int);
    if (!real) real = (int (*)(int, off64_t, off64_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
    SLOWED(real(fd, offset, nbytes, flags))
}
